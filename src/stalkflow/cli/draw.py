"""``stalkflow draw``: a workflow's steps and events as Mermaid text, an HTML page or SVG.

Drawing needs no engine: the workflow's module is imported and its graph built
(:func:`~stalkflow.representation.get_workflow_representation`), nothing runs.
"""

from __future__ import annotations

from pathlib import Path

import click

from stalkflow.cli._app import reported
from stalkflow.cli._loading import load_target

#: The format an output file's suffix implies; any other suffix (or stdout): mermaid.
_FORMAT_OF_SUFFIX = {".html": "html", ".htm": "html", ".svg": "svg"}


@click.command()
@click.argument("workflow", metavar="MODULE:WORKFLOW")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["mermaid", "html", "svg"]),
    help="Mermaid text, an HTML page that renders it, or an SVG picture drawn here "
    "(default: from -o's suffix, else mermaid).",
)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file."
)
def draw(workflow: str, fmt: str | None, output: Path | None) -> None:
    """Draw a workflow's steps and events.

    As a Mermaid flowchart, an HTML page that renders it (with Mermaid's script,
    from a CDN), or an SVG picture drawn here, which needs no script.

    \b
    stalkflow draw myapp.flows:Research                  # Mermaid text on stdout
    stalkflow draw myapp.flows:Research -o research.html # a page that renders it
    stalkflow draw myapp.flows:Research -o research.svg  # a picture, no script
    """
    from stalkflow.representation import get_workflow_representation, to_html, to_mermaid, to_svg

    with reported():
        target = load_target(workflow)
        if fmt is None:
            suffix = "" if output is None else output.suffix.lower()
            fmt = _FORMAT_OF_SUFFIX.get(suffix, "mermaid")
        graph = get_workflow_representation(target)
        name = target.__name__ if isinstance(target, type) else type(target).__name__
        title = f"{name} (stalkflow)"
        if fmt == "svg":
            text = to_svg(graph, title=title)
        elif fmt == "html":
            text = to_html(to_mermaid(graph), title=title)
        else:
            text = to_mermaid(graph)
        if output is None:
            click.echo(text, nl=not text.endswith("\n"))
            return
        output.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        click.echo(f"wrote {output} ({fmt})", err=True)
