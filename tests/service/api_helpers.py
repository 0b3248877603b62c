"""Helpers shared by the HTTP API tests."""

from __future__ import annotations

from urllib.parse import unquote

import anyio


def H(key: str) -> dict[str, str]:
    """Authorization header for an API key."""
    return {"Authorization": f"Bearer {key}"}


def _problem(r, status: int) -> dict:
    """Assert an RFC 7807 problem+json response with ``status``; return its body."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"] and "type" in body
    return body


STREAMS = {"/events"}
"""Operations that answer with an endless stream (Server-Sent Events): TestClient would wait for its end forever."""


async def stream_status(app, method: str, url: str, headers: dict[str, str]) -> int:
    """HTTP status of ``app``'s answer to ``method url``, the client disconnecting as soon as the answer starts (run
    on the TestClient's event loop through its portal)."""
    path, _, qs = url.partition("?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": unquote(path), "raw_path": path.encode(), "query_string": qs.encode(), "root_path": "",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
             "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}
    started = anyio.Event()
    status: list[int] = []
    asked = False

    async def receive() -> dict:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await started.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
            started.set()

    with anyio.fail_after(20):
        await app(scope, receive, send)
    return status[0]
