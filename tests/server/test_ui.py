"""The run viewer (``/ui/``): what a person sees in a browser, and the routes behind it.

The browser test starts a real uvicorn server (with an API key) on a free port,
runs a workflow that streams events, keeps typed state and waits for a human,
and opens the pages in headless Chromium driven by Selenium: the runs list, then
the run's page, whose event log, status and state change live when the human
answers. Screenshots are saved in the test's tmp directory (printed; pytest
shows it when the test fails).

Chromium and chromedriver come from Debian (``chromium``, ``chromium-driver``;
``.ci/run`` installs them); without them the browser test skips locally and fails
in CI.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import BaseModel
from tests.conftest import require_service
from tests.server._helpers import asgi_client, eventually, free_port

from stalkflow import Context, Workflow, step
from stalkflow.engine import Engine
from stalkflow.events import Event, HumanResponseEvent, InputRequiredEvent, StartEvent, StopEvent
from stalkflow.server import WorkflowServer
from stalkflow.server.ui import state_view

KEY = "ui-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Without these, Chromium tries the network at start, and this machine has none.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1360,1500",
)


class Progress(Event):
    message: str


class Drafted(Event):
    title: str


class ReviewState(BaseModel):
    title: str = ""
    drafts: int = 0
    reviewer: str | None = None


class Publish(Workflow):
    """Drafts a post, streams its progress, and waits for a human to approve it."""

    @step
    async def draft(self, ctx: Context[ReviewState], ev: StartEvent) -> Drafted:
        """Write the draft."""
        async with ctx.store.edit_state() as state:
            state.title = ev.title
            state.drafts += 1
        ctx.write_event_to_stream(Progress(message=f"drafting {ev.title}"))
        return Drafted(title=ev.title)

    @step
    async def review(self, ctx: Context[ReviewState], ev: Drafted) -> InputRequiredEvent:
        ctx.write_event_to_stream(Progress(message="draft ready for review"))
        return InputRequiredEvent(prefix=f"Publish '{ev.title}'?")

    @step
    async def publish(self, ctx: Context[ReviewState], ev: HumanResponseEvent) -> StopEvent:
        await ctx.store.set("reviewer", ev.response)
        return StopEvent(result=f"published by {ev.response}")


class Tally(Workflow):
    """Untyped state, one step."""

    @step
    async def count(self, ctx: Context, ev: StartEvent) -> StopEvent:
        await ctx.store.set("seen", {"items": [1, 2]})
        await ctx.store.set("last", Progress(message="typed value in untyped state"))
        return StopEvent(result="counted")


def make_server(engine: Engine, **options: Any) -> WorkflowServer:
    server = WorkflowServer(engine=engine, api_key=KEY, **options)
    server.add_workflow("publish", Publish(engine=engine, timeout=60))
    server.add_workflow("tally", Tally(engine=engine))
    return server


# --- the routes, in process -----------------------------------------------------------


async def test_pages_are_public_but_every_run_detail_needs_the_key() -> None:
    engine = Engine.embedded()
    async with asgi_client(make_server(engine)) as client:
        started = await client.post(
            "/workflows/publish/run-nowait", json={"kwargs": {"title": "Hi"}}, headers=AUTH
        )
        run_id = started.json()["handler_id"]

        listing = await client.get("/ui/")
        assert listing.status_code == 200
        assert "text/html" in listing.headers["content-type"]
        assert "script-src 'self'" in listing.headers["content-security-policy"]
        page = await client.get(f"/ui/runs/{run_id}")
        assert page.status_code == 200
        assert f'data-run-id="{run_id}"' in page.text
        assert "Hi" not in page.text  # the page is a shell: data comes from the API
        assert (await client.get("/ui")).headers["location"] == "/ui/"
        assert (await client.get("/ui/static/ui.js")).status_code == 200
        assert (await client.get("/ui/static/../app.py")).status_code == 404
        assert (await client.get("/ui/runs/not%20an%20id")).status_code == 404

        for path in (
            f"/handlers/{run_id}/state",
            "/workflows/publish/representation.svg",
            "/handlers",
        ):
            assert (await client.get(path)).status_code == 401, path
        assert (await client.get("/handlers/nope/state", headers=AUTH)).status_code == 404
        await client.post(f"/handlers/{run_id}/cancel", headers=AUTH)


async def test_state_endpoint_shows_typed_and_untyped_state() -> None:
    engine = Engine.embedded()
    async with asgi_client(make_server(engine)) as client:
        started = await client.post(
            "/workflows/publish/run-nowait", json={"kwargs": {"title": "Hi"}}, headers=AUTH
        )
        run_id = started.json()["handler_id"]

        async def drafted() -> bool:
            body = (await client.get(f"/handlers/{run_id}/state", headers=AUTH)).json()
            return bool(body["state"]["drafts"] == 1)

        await eventually(drafted, what="the draft step's state")
        body = (await client.get(f"/handlers/{run_id}/state", headers=AUTH)).json()
        assert body["typed"] is True
        assert body["state_type"] == "ReviewState"
        assert body["state"] == {"title": "Hi", "drafts": 1, "reviewer": None}
        assert body["version"] >= 1

        done = await client.post("/workflows/tally/run", json={}, headers=AUTH)
        tally = await client.get(f"/handlers/{done.json()['handler_id']}/state", headers=AUTH)
        assert tally.json()["typed"] is False
        assert tally.json()["state"] == {
            "seen": {"items": [1, 2]},
            "last": {"message": "typed value in untyped state"},
        }
        await client.post(f"/handlers/{run_id}/cancel", headers=AUTH)


def test_state_view_reads_without_importing() -> None:
    envelope = {"__is_pydantic": True, "value": {"a": 1}, "qualified_name": "nowhere.Thing"}
    blob = json.dumps({"x": json.dumps([envelope]), "y": "not json: a pickle"})
    assert state_view(blob, typed=False) == {"x": [{"a": 1}], "y": "not json: a pickle"}
    assert state_view(None, typed=True) == {}


async def test_graph_is_an_svg_picture_of_steps_and_events() -> None:
    engine = Engine.embedded()
    async with asgi_client(make_server(engine)) as client:
        response = await client.get("/workflows/publish/representation.svg", headers=AUTH)
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/svg+xml"
        assert (
            await client.get("/workflows/nope/representation.svg", headers=AUTH)
        ).status_code == 404
    svg = ET.fromstring(response.text)
    ns = {"svg": "http://www.w3.org/2000/svg"}
    nodes = {
        g.get("data-node-id"): g.get("class") for g in svg.iterfind(".//svg:g[@data-node-id]", ns)
    }
    assert nodes["draft"] == "node node-step"
    assert nodes["review"] == "node node-step"
    assert nodes["publish"] == "node node-step"
    assert nodes["InputRequiredEvent"] == "node node-event"
    assert nodes["external_step"] == "node node-external"
    labels = {text.text for text in svg.iterfind(".//svg:g[@data-node-id]/svg:text", ns)}
    assert {"draft", "review", "publish", "StartEvent", "Drafted", "StopEvent"} <= labels
    edges = {(p.get("data-source"), p.get("data-target")) for p in svg.iterfind(".//svg:path", ns)}
    assert ("StartEvent", "draft") in edges
    assert ("draft", "Drafted") in edges
    # top to bottom: a step sits below the event it accepts
    y = {
        rect_of.get("data-node-id"): float(rect.get("y", "nan"))
        for rect_of in svg.iterfind(".//svg:g[@data-node-id]", ns)
        for rect in rect_of.iterfind("svg:rect", ns)
    }
    assert y["StartEvent"] < y["draft"] < y["Drafted"] < y["review"] < y["publish"]


async def test_the_pages_can_be_switched_off() -> None:
    engine = Engine.embedded()
    async with asgi_client(make_server(engine, ui=False)) as client:
        assert (await client.get("/ui/")).status_code == 401  # an API path like any other
        assert (await client.get("/ui/", headers=AUTH)).status_code == 404


# --- in a browser ---------------------------------------------------------------------


@pytest.fixture
def live_url() -> Iterator[str]:
    """A uvicorn server on a free port, in a thread of this process, with an API key."""
    engine = Engine.embedded()
    server = make_server(engine, sse_heartbeat_interval=0.5, stream_poll_s=0.5)
    port = free_port()
    config = uvicorn.Config(
        server.app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, name="ui-test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not uv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        uv.should_exit = True
        thread.join(10)


@pytest.fixture
def browser() -> Iterator[Any]:
    def available() -> bool:
        import selenium  # noqa: F401

        return shutil.which(CHROMIUM) is not None and shutil.which(CHROMEDRIVER) is not None

    require_service("Headless Chromium (chromium, chromium-driver, selenium)", available)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    with tempfile.TemporaryDirectory(prefix="stalkflow-chromium-") as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        driver.set_page_load_timeout(15)
        try:
            yield driver
        finally:
            driver.quit()


def wait_for(driver: Any, check: Callable[[Any], Any], what: str, timeout_s: float = 10) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout_s, poll_frequency=0.05).until(check)
    except TimeoutException:
        pytest.fail(f"the page never showed {what}; it shows:\n{text_of(driver, 'body')}")


def text_of(driver: Any, selector: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.CSS_SELECTOR, selector).text)


def shows(selector: str, *texts: str) -> Callable[[Any], bool]:
    def check(driver: Any) -> bool:
        from selenium.common.exceptions import NoSuchElementException

        try:
            text = text_of(driver, selector)
        except NoSuchElementException:
            return False
        return all(part in text for part in texts)

    return check


def start_run(url: str, title: str) -> str:
    response = httpx.post(
        f"{url}/workflows/publish/run-nowait", json={"kwargs": {"title": title}}, headers=AUTH
    )
    response.raise_for_status()
    return str(response.json()["handler_id"])


def answer(url: str, run_id: str, response: str) -> None:
    event = {"type": "HumanResponseEvent", "value": {"response": response}}
    sent = httpx.post(f"{url}/events/{run_id}", json={"event": event}, headers=AUTH)
    assert sent.status_code == 200, sent.text


def test_watching_a_run_in_the_browser(live_url: str, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    done_id = start_run(live_url, "Old news")
    answer_when_waiting(live_url, done_id, "bob")
    waiting_id = start_run(live_url, "Hello world")

    # The runs list, with the key handed over in the fragment (never sent to the server).
    browser.get(f"{live_url}/ui/#key={KEY}")
    wait_for(browser, shows("#runs tbody", waiting_id, done_id), "both runs")
    assert browser.execute_script("return location.hash") == ""
    assert browser.execute_script("return sessionStorage.getItem('stalkflow.apiKey')") == KEY
    rows = {
        row.get_attribute("data-run-id"): row.text
        for row in browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr")
    }
    assert "publish" in rows[waiting_id] and "running" in rows[waiting_id]
    assert "completed" in rows[done_id]
    browser.save_screenshot(str(tmp_path / "runs.png"))

    # One run: its live events, status, state and graph.
    browser.find_element(By.LINK_TEXT, waiting_id).click()
    wait_for(
        browser, shows("#events", "draft ready for review", "Publish 'Hello world'?"), "events"
    )
    assert text_of(browser, "#run-id") == waiting_id
    assert text_of(browser, "#status") == "running"
    assert text_of(browser, "#workflow") == "publish"
    events = text_of(browser, "#events tbody")
    assert "Progress" in events and "drafting Hello world" in events
    assert "InputRequiredEvent" in events
    assert "Waiting for input" in text_of(browser, "#waiting")
    assert "Publish 'Hello world'?" in text_of(browser, "#waiting")
    wait_for(browser, shows("#state", '"drafts": 1', '"title": "Hello world"'), "the state")
    assert "ReviewState" in text_of(browser, "#state-meta")
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#graph svg"), "the graph")
    graph = browser.find_element(By.CSS_SELECTOR, "#graph svg")
    steps = {
        g.get_attribute("data-node-id") for g in graph.find_elements(By.CSS_SELECTOR, "g.node-step")
    }
    assert steps == {"draft", "review", "publish"}
    assert {"draft", "review", "publish"} <= set(graph.text.split())
    assert graph.size["width"] > 100 and graph.size["height"] > 200
    seen = {g.get_attribute("data-node-id") for g in graph.find_elements(By.CSS_SELECTOR, "g.seen")}
    assert seen == {"InputRequiredEvent"}  # the streamed events the graph draws
    browser.save_screenshot(str(tmp_path / "run-waiting.png"))
    graph.screenshot(str(tmp_path / "graph.png"))

    # The human answers elsewhere; the open page follows, without a reload.
    answer(live_url, waiting_id, "alice")
    wait_for(browser, shows("#events", "StopEvent", "published by alice"), "the StopEvent")
    wait_for(browser, shows("#status", "completed"), "the completed status")
    wait_for(browser, shows("#state", '"reviewer": "alice"'), "the final state")
    wait_for(browser, shows("#live", "ended"), "the stream's end")
    assert "published by alice" in text_of(browser, "#result")
    assert not browser.find_element(By.ID, "waiting").is_displayed()
    browser.save_screenshot(str(tmp_path / "run-completed.png"))

    # Without a key, the page asks for one, and works once it is given.
    browser.execute_script("sessionStorage.clear()")
    browser.get(f"{live_url}/ui/")
    wait_for(browser, lambda d: d.find_element(By.ID, "key-form").is_displayed(), "the key form")
    assert not browser.find_element(By.ID, "content").is_displayed()
    browser.find_element(By.ID, "key-input").send_keys(KEY)
    browser.find_element(By.CSS_SELECTOR, "#key-form button").click()
    wait_for(browser, shows("#runs tbody", waiting_id), "the runs after entering the key")
    print(f"screenshots in {tmp_path}")


def answer_when_waiting(url: str, run_id: str, response: str) -> None:
    """Answer the run once its draft is written, then wait for it to complete."""
    deadline = time.monotonic() + 10
    while httpx.get(f"{url}/handlers/{run_id}/state", headers=AUTH).json()["state"]["drafts"] < 1:
        assert time.monotonic() < deadline, "the first run never drafted"
        time.sleep(0.05)
    answer(url, run_id, response)
    while httpx.get(f"{url}/handlers/{run_id}", headers=AUTH).json()["status"] != "completed":
        assert time.monotonic() < deadline, "the first run did not complete"
        time.sleep(0.05)
