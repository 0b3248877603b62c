"""Pure ASGI middleware: audit before answer.

Every request that carries an API key, and every 401, gets its audit entry written — durably, in the store — before
the first byte of its response leaves: the status line is held back until the entry's future from
:func:`~.deps.submit_audit` resolves (the process's one group-commit writer, :mod:`twin.access._audit_writer`, has
committed the batch holding it: the entries of one turn of the event loop, in one transaction). Every audited answer
names the partition version it was computed from (``X-Twin-Version``) and the change head it reflects
(``X-Twin-Changes``, :class:`~._twins.AnsweredVersion`). That covers requests the app rejects before any endpoint
runs (unknown route 404, 405, 413 from the body limit, 422/400 from request validation) and server errors (500: the
exception passes through here). The key is checked once, here (on the event loop when this process verified the key
in the last 0.5 s: :func:`twin.access.auth.cached_role`; else in a query thread, one check per key at a time:
requests with the same key that arrive while it runs wait for its result instead of each taking a thread — under
load every in-flight request of a worker arrived in the same 0.5 s re-check window), and handed to
:func:`~.deps.caller` through the request's :class:`~.deps.AuditSlot`.

At shutdown (ASGI lifespan) it writes an audit checkpoint (:func:`twin.access.audit.checkpoint`); for a
PostgreSQL store served from an explicit twin directory it keeps the audit key and checkpoints there.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from functools import partial
from typing import Any

import anyio

from twin.access import audit
from twin.access.audit import use_audit_dir
from twin.access.auth import authenticate, cached_role
from twin.access.roles import Role
from twin.errors import AuthenticationError
from twin.service._state import ServiceState
from twin.service._threads import run_query
from twin.service.deps import SLOT, AuditSlot, key_from, submit_audit

__all__ = ["AuditTrail"]

Message = MutableMapping[str, Any]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
_MAX_DETAIL_BODY = 65_536


class AuditTrail:
    """Audit every keyed request (and every 401) before its response starts; checkpoint the log at shutdown.

    Parameters
    ----------
    app : the wrapped ASGI application (register this middleware last, so that it wraps the body limit).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._checks: dict[str, asyncio.Future[Role]] = {}  # key → its check running in a query thread

    async def _check_key(self, slot: AuditSlot, svc: ServiceState) -> None:
        """Set ``slot.role`` (or ``slot.auth_error``): from this process's cache on the loop, else from the one
        check of this key in flight (started here if none is)."""
        key = slot.key
        assert key is not None
        slot.role = cached_role(key)
        if slot.role is not None:
            return
        check = self._checks.get(key)
        if check is None or check.get_loop() is not asyncio.get_running_loop():
            check = self._checks[key] = asyncio.ensure_future(run_query(authenticate, svc.store, key))

            def forget(done: asyncio.Future[Role]) -> None:  # unless a newer check (another loop) took the key
                if self._checks.get(key) is done:
                    del self._checks[key]

            check.add_done_callback(forget)
        try:
            slot.role = await asyncio.shield(check)
        except AuthenticationError as e:
            slot.auth_error = e

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, _lifespan_receive(scope, receive), send)
            return
        svc: ServiceState | None = getattr(getattr(scope.get("app"), "state", None), "svc", None)
        if scope["type"] != "http" or svc is None:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        slot = AuditSlot(str(scope.get("path", ""))[:200], str(scope.get("method", "")),
                         key_from(headers.get("authorization"), headers.get("x-api-key")))
        scope[SLOT] = slot
        announced = [slot.key is not None]  # a keyed request is audited: the writer may wait for its entry

        def settle() -> None:  # once: the entry is submitted (or written in the change's transaction), or never
            if announced[0]:
                announced[0] = False
                audit.settle(svc.store)

        if announced[0]:
            audit.expect(svc.store)
        try:
            await self._audited(scope, receive, send, svc, slot, settle)
        finally:
            settle()

    async def _audited(self, scope: Scope, receive: Receive, send: Send, svc: Any, slot: AuditSlot,
                       settle: Callable[[], None]) -> None:
        if slot.key is not None:  # a key verified in the last 0.5 s: no thread hop; else scrypt/store in a thread
            await self._check_key(slot, svc)
        held: Message | None = None

        async def finish(status: int, detail: str) -> None:
            route = scope.get("route")
            slot.endpoint = str(getattr(route, "path", None) or slot.endpoint)
            settle()  # before the submit: a lone request's entry then wakes the writer once, and is not waited on
            fut = submit_audit(svc.store, slot, status, detail)
            if fut is not None:  # resolved once the entry's batch is durable (committed once per loop turn)
                await fut

        async def send_audited(msg: Message) -> None:
            nonlocal held
            if msg["type"] == "http.response.start":
                _name_version(msg, slot)
            if slot.done:
                await send(msg)
            elif msg["type"] == "http.response.start" and int(msg["status"]) < 400:
                await finish(int(msg["status"]), "")
                await send(msg)
            elif msg["type"] == "http.response.start":
                held = msg  # an error: wait for its body to audit the problem's detail
            elif msg["type"] == "http.response.body" and held is not None:
                start, held = held, None
                await finish(int(start["status"]), _detail(msg))
                await send(start)
                await send(msg)
            else:
                await send(msg)

        try:
            await self.app(scope, receive, send_audited)
        except BaseException as e:
            if not slot.done:
                with anyio.CancelScope(shield=True):
                    await finish(500, type(e).__name__)
            raise
        if held is not None:  # an error start without a body
            await finish(int(held["status"]), "")
            await send(held)
        elif not slot.done:
            with anyio.CancelScope(shield=True):
                await finish(499, "the client left before an answer was sent")


def _name_version(msg: Message, slot: AuditSlot) -> None:
    """Add ``X-Twin-Version`` (the partition version the answer was computed from) to a response start."""
    v = slot.ctx.version if slot.ctx is not None else None
    if v is not None:
        msg["headers"] = [*msg.get("headers", []), (b"x-twin-version", str(v).encode("latin-1")[:40])]
        changes = getattr(v, "changes", None)  # live records: the change head the answer reflects (_twins.py)
        if changes is not None:
            msg["headers"].append((b"x-twin-changes", str(int(changes)).encode("latin-1")))


def _detail(msg: Message) -> str:
    """The ``detail`` of a problem+json body (``""`` if it is not one)."""
    body = msg.get("body", b"")
    if msg.get("more_body") or len(body) > _MAX_DETAIL_BODY:
        return ""
    try:
        obj = json.loads(body)
    except ValueError:
        return ""
    return str(obj.get("detail", "")) if isinstance(obj, dict) else ""


def _lifespan_receive(scope: Scope, receive: Receive) -> Receive:
    """``receive`` for the lifespan scope: at startup place the audit files of a PostgreSQL store in the served
    twin directory; at shutdown checkpoint the audit log first."""

    async def wrapped() -> Message:
        msg = await receive()
        svc: ServiceState | None = getattr(getattr(scope.get("app"), "state", None), "svc", None)
        if svc is None:
            return msg
        if msg["type"] == "lifespan.startup" and svc.store.dialect == "postgresql" and svc.twins.twin_root:
            use_audit_dir(svc.store, svc.twins.twin_root)
        elif msg["type"] == "lifespan.shutdown":
            try:
                await anyio.to_thread.run_sync(partial(audit.checkpoint, svc.store, reason="shutdown"))
            except Exception:  # noqa: BLE001 - shutting down: the next start's first append checkpoints again
                pass
        return msg

    return wrapped
