"""``python -m stalkflow.cli``: the ``stalkflow`` command."""

from stalkflow.cli import main

if __name__ == "__main__":  # pragma: no cover
    main(prog_name="stalkflow")
