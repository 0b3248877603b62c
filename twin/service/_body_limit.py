"""Pure ASGI middleware: request bodies over a size limit get 413 before the app reads them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from twin.service._problems import problem

__all__ = ["MAX_BODY_BYTES", "BodyLimit"]

MAX_BODY_BYTES = 2 * 1024 * 1024

Message = MutableMapping[str, Any]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    """Reject bodies over ``limit`` bytes (declared or streamed) with a 413 problem; bad Content-Length → 400.

    Parameters
    ----------
    app : the wrapped ASGI application.
    limit : largest accepted body, in bytes.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass bodiless requests through; buffer others up to the limit and replay them to the app."""
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.limit
            except ValueError:
                await self._reject(scope, send, 400, "Bad Request", f"bad Content-Length {declared[:20]!r}.")
                return
            if too_big:
                await self._reject(scope, send, 413, "Payload Too Large",
                                   f"request body of {int(declared)} bytes exceeds the limit of {self.limit} bytes.")
                return
        body = await self._read(scope, receive, send)
        if body is None:
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        """The whole body, or ``None`` when the client left or the body was rejected (413 already sent)."""
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return None
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._reject(scope, send, 413, "Payload Too Large",
                                   f"request body exceeds the limit of {self.limit} bytes.")
                return None
            chunks.append(chunk)
            more = bool(msg.get("more_body", False))
        return b"".join(chunks)

    async def _reject(self, scope: Scope, send: Send, status: int, title: str, detail: str) -> None:
        resp = problem(status, title, detail, scope.get("path", ""))
        await resp(scope, _noop_receive, send)


async def _noop_receive() -> Message:
    return {"type": "http.disconnect"}
