"""The HTTP API (extra ``[server]``), compatible with llama-agents-server's REST API.

``WorkflowServer`` serves workflows so that llama-agents-server's clients
(``llama_agents.client.WorkflowClient``, its debugger UI's requests, curl)
work against stalkflow unchanged; ``run_server`` serves the workflows of some
modules (what ``stalkflow serve`` runs).
"""

from __future__ import annotations

try:
    import fastapi  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "stalkflow.server needs the [server] extra: pip install 'stalkflow[server]'"
    ) from exc

from stalkflow.server.app import WorkflowServer, run_server, served_name

__all__ = ["WorkflowServer", "run_server", "served_name"]
