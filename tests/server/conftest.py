"""Fixtures of the server tests: an embedded engine, a server on it, an ASGI client.

httpx's ``ASGITransport`` hands over a response only once the app has sent
all of it, so a test reading ``/events`` over it reads streams that end (the
run finishes while the request is open). Streams read piece by piece, and
upstream's real client, are tested against a uvicorn process in
``test_server_live_client.py``.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# The uvicorn process imports ``tests.server.server_workflows`` from the repository
# root; this process names the workflows and events the same way.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.server import server_workflows as flows  # noqa: E402
from tests.server._helpers import ServerFactory, asgi_client  # noqa: E402

from stalkflow.engine import Engine  # noqa: E402
from stalkflow.server import WorkflowServer  # noqa: E402


@pytest.fixture
def engine() -> Engine:
    return Engine.embedded()


@pytest.fixture
def make_server(engine: Engine) -> ServerFactory:
    """A server on the test's engine serving the sample workflows; keywords go to it."""

    def make(**options: Any) -> WorkflowServer:
        options.setdefault("api_key", "")  # open, whatever the environment says
        server = WorkflowServer(engine=engine, **options)
        server.add_workflow("greet", flows.Greeter(engine=engine))
        server.add_workflow("fail", flows.Failing(engine=engine))
        server.add_workflow("ask", flows.Asker(engine=engine))
        server.add_workflow("chatty", flows.Chatty(engine=engine))
        server.add_workflow("shop", flows.Shop(engine=engine))
        server.add_workflow("gate", flows.Gate(engine=engine), additional_events=[flows.Approval])
        return server

    return make


@pytest.fixture
def server(make_server: ServerFactory) -> WorkflowServer:
    return make_server()


@pytest.fixture
async def client(server: WorkflowServer) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(server) as http:
        yield http
