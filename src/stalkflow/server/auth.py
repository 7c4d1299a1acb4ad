"""The API key: every request must present it, when the server has one.

A client sends ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. The
key is compared in constant time; a request without the right key gets 401
and never reaches a route (nor reads its body).
"""

from __future__ import annotations

import hmac

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["API_KEY_ENV", "ApiKeyMiddleware", "presented_key"]

#: The environment variable a server reads its key from when given none.
API_KEY_ENV = "STALKFLOW_API_KEY"


def presented_key(headers: Headers) -> str | None:
    """The key a request presents: a Bearer token, else the ``X-API-Key`` header."""
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key")


class ApiKeyMiddleware:
    """ASGI middleware answering 401 to any HTTP request without the server's key."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        if not api_key:
            raise ValueError("An empty API key would let every request in")
        self.app = app
        self._key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        key = presented_key(Headers(scope=scope))
        if key is not None and hmac.compare_digest(key.encode(), self._key):
            await self.app(scope, receive, send)
            return
        detail = "Missing API key" if key is None else "Invalid API key"
        response = JSONResponse(
            {"detail": f"{detail}: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)
