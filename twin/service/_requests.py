"""Request bodies parsed by the one JSON module (:func:`twin.encoding.loads_request`, orjson) instead of the standard
library's ``json``, and the lean fast path for hot endpoints.

* :class:`JSONRoute`: a route class for routers whose endpoints take JSON bodies (GeoJSON lassos). A malformed body
  still gets FastAPI's 422 (``orjson.JSONDecodeError`` is a ``json.JSONDecodeError``).
* :class:`FastRoutes`: ASGI middleware (inside the audit trail and the body limit) that answers the common case of
  a hot endpoint (``POST /area/summary``) without FastAPI's routing, dependency solving and request objects. A fast
  handler gets the scope and the whole body and returns the response body (JSON bytes), or ``None`` — or raises —
  for anything it does not handle; then the request is replayed, body included, to the FastAPI route, which gives
  the documented answer (validation 422, 401, problem+json errors, 499 for a client that left). The fast path
  never sends anything before it has the whole answer, so a fallback starts from a clean slate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from twin.encoding import loads_request

__all__ = ["FastHandler", "FastRoutes", "JSONRoute"]

Message = MutableMapping[str, Any]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: ``handler(scope, body)`` → the JSON answer, or ``None`` to let the FastAPI route answer
FastHandler = Callable[[Scope, bytes], Awaitable[bytes | None]]
_JSON_HEADERS = (b"content-type", b"application/json")


class _JSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads_request(await self.body())
        return self._json


class JSONRoute(APIRoute):
    """An :class:`APIRoute` whose request JSON is parsed with :func:`twin.encoding.loads_request`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            return await handler(_JSONRequest(request.scope, request.receive))

        return route_handler


class FastRoutes:
    """Answer ``(method, path)`` pairs with fast handlers; fall back to the wrapped app for everything else.

    Parameters
    ----------
    app : the wrapped ASGI application (FastAPI's exception middleware and router).
    routes : ``{("POST", "/area/summary"): handler}``; see the module docstring.
    """

    def __init__(self, app: ASGIApp, routes: dict[tuple[str, str], FastHandler]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.routes.get((scope.get("method", ""), scope.get("path", ""))) if scope["type"] == "http" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        body = await _whole_body(receive)
        if body is None:  # the client left while sending: the route answers (499, audited)
            await self.app(scope, receive, send)
            return
        out: bytes | None = None
        if not await _client_gone(receive):
            try:
                out = await handler(scope, body)
            except Exception:  # noqa: BLE001 - the FastAPI route recomputes and answers with the documented error
                out = None
        if out is None:
            await self.app(scope, _replay(body, receive), send)
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [_JSON_HEADERS, (b"content-length", str(len(out)).encode())]})
        await send({"type": "http.response.body", "body": out})


async def _whole_body(receive: Receive) -> bytes | None:
    """The request body (the body limit outside has already buffered it: one message), ``None`` on disconnect."""
    chunks: list[bytes] = []
    while True:
        msg = await receive()
        if msg["type"] != "http.request":
            return None
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _client_gone(receive: Receive) -> bool:
    """Whether the client has already disconnected (one event-loop turn; a pending receive is cancelled)."""
    task = asyncio.ensure_future(receive())
    await asyncio.sleep(0)
    if not task.done():
        task.cancel()
        return False
    return task.exception() is not None or task.result().get("type") == "http.disconnect"


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
