"""The ``stalkflow`` command with no configuration: the embedded engine, drawing, errors.

Every test runs the command as a subprocess and checks its output and exit status.
"""

from __future__ import annotations

import html
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.cli._harness import REPO_ROOT, embedded_env, stalkflow, stalkflow_all

FLOWS = "tests.cli.cli_flows"


def test_run_streams_step_progress_and_user_events_then_prints_the_result() -> None:
    done = stalkflow(
        "run",
        f"{FLOWS}:Pipeline",
        "--kw",
        "text=one two three four five",
        "--kw",
        "parts=2",
        "--json-kw",
        '{"label": "demo"}',
        env=embedded_env(),
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"words": 5, "label": "demo"}
    progress = done.stderr
    assert f"of {FLOWS}.Pipeline (embedded)" in progress
    assert "step split started (StartEvent)" in progress
    assert progress.count("step count started (Chunk)") == 2
    assert 'event Progress {"message": "counting chunk 0"}' in progress
    assert "step total finished -> StopEvent" in progress
    assert "done in" in progress
    assert "5 step execution(s)" in progress


def test_quiet_prints_only_the_result_and_a_string_result_as_is() -> None:
    done = stalkflow(
        "run", f"{FLOWS}:approval", "--kw", "item=invoice-7", "--input", "-q",
        env=embedded_env(),
        stdin="approved\n",
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert done.stdout == "invoice-7: approved\n"
    assert "Approve invoice-7?" in done.stderr  # the prompt
    assert "step ask" not in done.stderr


def test_a_failed_run_exits_1_with_the_step_and_its_error() -> None:
    done = stalkflow("run", f"{FLOWS}:broken", "--kw", "what=eggs", env=embedded_env())

    assert done.returncode == 1
    assert done.stdout == ""
    assert "Error: step explode failed: ValueError: cannot handle eggs" in done.stderr
    assert "failed: step explode raised ValueError: cannot handle eggs" in done.stderr
    assert "Traceback" not in done.stderr


#: (arguments, exit status, what stderr says)
BAD_ARGUMENTS: list[tuple[list[str], int, str]] = [
    (["run", "no_such_module:Flow"], 1, "Cannot import module 'no_such_module'"),
    (["run", f"{FLOWS}:Nope"], 1, f"Module {FLOWS} has no attribute 'Nope'"),
    (["run", f"{FLOWS}:Progress"], 1, "is not a Workflow class or instance"),
    (["run", FLOWS], 1, "defines 4 workflows"),
    (["run", f"{FLOWS}:Pipeline", "--kw", "oops"], 2, "'oops' is not KEY=VALUE"),
    (["run", f"{FLOWS}:Pipeline", "--json-kw", "[1]"], 2, "must be a JSON object"),
]
#: Commands on stored runs, which the embedded engine cannot serve.
STORED_RUN_COMMANDS: list[list[str]] = [
    ["runs", "list"],
    ["runs", "show", "some-run"],
    ["send", "some-run", '{"type": "HumanResponseEvent", "value": {"response": "x"}}'],
    ["cancel", "some-run"],
]


def test_bad_arguments_are_reported_without_a_traceback() -> None:
    outcomes = stalkflow_all([args for args, _, _ in BAD_ARGUMENTS], env=embedded_env())

    for (args, status, message), done in zip(BAD_ARGUMENTS, outcomes, strict=True):
        assert done.returncode == status, (args, done.stderr)
        assert message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr


def test_commands_on_stored_runs_explain_that_they_need_the_distributed_engine() -> None:
    outcomes = stalkflow_all(STORED_RUN_COMMANDS, env=embedded_env())

    for args, done in zip(STORED_RUN_COMMANDS, outcomes, strict=True):
        assert done.returncode == 1, (args, done.stderr)
        assert "needs the distributed engine" in done.stderr
        assert "STALKFLOW_REDIS_URL" in done.stderr


def test_draw_prints_mermaid_from_the_console_script() -> None:
    done = stalkflow("draw", f"{FLOWS}:Pipeline", env=embedded_env(), script=True)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "flowchart TD"
    assert '    step_split("split"):::step' in lines
    assert "    event_Chunk --> step_count" in lines


def test_draw_writes_a_mermaid_file_and_a_self_contained_html_page(tmp_path: Path) -> None:
    mermaid_file, html_file = tmp_path / "flow.mmd", tmp_path / "flow.html"

    as_mermaid = stalkflow("draw", f"{FLOWS}:approval", "-o", str(mermaid_file), env=embedded_env())
    as_html = stalkflow(
        "draw", f"{FLOWS}:approval", "--format", "html", "-o", str(html_file), env=embedded_env()
    )

    assert as_mermaid.returncode == 0 and as_html.returncode == 0, as_html.stderr
    assert f"wrote {html_file} (html)" in as_html.stderr
    mermaid = mermaid_file.read_text()
    assert mermaid.startswith("flowchart TD\n")
    page = html_file.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>Approval (stalkflow)</title>" in page
    # the Mermaid text, escaped, inside the element Mermaid renders
    body = page.split('<pre class="mermaid">', 1)[1].split("</pre>", 1)[0]
    assert html.unescape(body).strip() == mermaid.strip()
    assert "mermaid.initialize" in page


def test_draw_svg_is_a_standalone_picture_naming_the_steps(tmp_path: Path) -> None:
    svg_file = tmp_path / "flow.svg"

    printed, written = stalkflow_all(
        [
            ["draw", f"{FLOWS}:Pipeline", "--format", "svg"],
            ["draw", f"{FLOWS}:Pipeline", "-o", str(svg_file)],  # the format from the suffix
        ],
        env=embedded_env(),
    )

    assert printed.returncode == 0 and written.returncode == 0, written.stderr
    assert f"wrote {svg_file} (svg)" in written.stderr
    assert svg_file.read_text() == printed.stdout
    svg = ET.fromstring(printed.stdout)
    ns = {"svg": "http://www.w3.org/2000/svg"}
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    assert svg.findtext("svg:title", namespaces=ns) == "Pipeline (stalkflow)"
    nodes = {
        g.get("data-node-id"): g.get("class") for g in svg.iterfind(".//svg:g[@data-node-id]", ns)
    }
    assert {nodes["split"], nodes["count"], nodes["total"]} == {"node node-step"}
    labels = {text.text for text in svg.iterfind(".//svg:g[@data-node-id]/svg:text", ns)}
    assert {"split", "count", "total", "StartEvent", "Chunk", "Counted", "StopEvent"} <= labels
    edges = {(p.get("data-source"), p.get("data-target")) for p in svg.iterfind(".//svg:path", ns)}
    assert {("split", "Chunk"), ("Chunk", "count"), ("count", "Counted")} <= edges


def test_serve_without_the_server_extra_says_what_to_install() -> None:
    # fastapi and uvicorn made unimportable: as on an install without [server]
    code = (
        "import sys; sys.modules['fastapi'] = None; sys.modules['uvicorn'] = None\n"
        "from stalkflow.cli import main\n"
        "main(['serve'], prog_name='stalkflow')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=embedded_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert done.returncode == 1
    assert "pip install 'stalkflow[server]'" in done.stderr
    assert "Traceback" not in done.stderr
