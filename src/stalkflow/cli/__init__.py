"""The ``stalkflow`` command: run, watch, answer, cancel and draw workflows.

::

    stalkflow run myapp.flows:Research --kw topic=pirates
    stalkflow runs list --status running
    stalkflow runs show RUN_ID
    stalkflow send RUN_ID '{"type": "HumanResponseEvent", "value": {"response": "yes"}}'
    stalkflow cancel RUN_ID
    stalkflow draw myapp.flows:Research --format svg -o research.svg
    stalkflow worker -w myapp.flows --concurrency 4
    stalkflow serve -m myapp.flows --port 8080

With no configuration ``run`` uses the embedded engine: the whole run happens in
this process. With ``STALKFLOW_REDIS_URL`` (or ``--redis-url``) it submits to the
distributed engine, whose workers execute the steps, and follows the run from
here. ``runs``, ``send`` and ``cancel`` reach runs that other processes started,
so they need the distributed engine: its store is shared, the embedded one is not.

Nothing is ever imported because a message or the store names it: events given to
``send`` are built only from classes of the modules you name (``-m``), of the
registered workflows (``STALKFLOW_WORKFLOWS``) or of stalkflow itself.

One module per command (or pair of related commands): ``run``, ``runs``,
``events`` (``send``, ``cancel``), ``draw``, ``serve`` (``worker``, ``serve``).
Beside them: ``_app`` (the group, shared options, settings), ``_loading`` (modules
and ``MODULE:WORKFLOW`` references), ``_reader`` (the read-only engine over the
shared store) and ``_display`` (events, values and errors as text). Every module
imports the rest of stalkflow lazily, so ``stalkflow --help`` stays fast.
"""

from stalkflow.cli import draw, events, run, runs, serve
from stalkflow.cli._app import main

main.add_command(run.run)
main.add_command(runs.runs)
main.add_command(events.send)
main.add_command(events.cancel)
main.add_command(draw.draw)
main.add_command(serve.worker)
main.add_command(serve.serve)

__all__ = ["main"]
