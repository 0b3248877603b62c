"""Request dependencies: the caller's API key → :class:`~twin.access.roles.Role`, and one audit entry per request.

Every authenticated call — and every rejected key — appends one entry to the audit log (:mod:`twin.access.audit`):
who, endpoint, area hash and km², counts returned, version, outcome, status. An endpoint fills the :class:`Audit`
record it receives (``a: Audited``). The entry is written by the audit middleware (:mod:`._audit_trail`) when the
response starts, before any byte of it leaves — or earlier, inside the transaction of the change it records
(:func:`commit_audit` for partition commits), or by :func:`write_audit` when an endpoint answers a rejection itself.
The middleware authenticates the key once and hands the result to :func:`caller` through an :class:`AuditSlot`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Body, Depends, Header, Request
from shapely.geometry.base import BaseGeometry
from starlette.concurrency import run_in_threadpool

from twin.access import audit
from twin.access.auth import authenticate
from twin.access.roles import Role
from twin.errors import AuthenticationError
from twin.service._problems import status_for
from twin.service._state import ServiceState, service
from twin.service._twins import EXAMPLE_AREA
from twin.store.sql import Store, Transaction

__all__ = ["Audit", "AuditSlot", "Audited", "Caller", "AreaBody", "SLOT", "audited", "caller",
           "commit_audit", "submit_audit", "slot_entry", "key_from", "outcome_for", "write_audit", "write_error", "route_path"]

AreaBody = Annotated[dict[str, Any], Body(description="GeoJSON Polygon/MultiPolygon, Feature or FeatureCollection "
                                                      "in WGS84 (lng, lat)", examples=[EXAMPLE_AREA])]
_OUTCOMES = {401: "unauthenticated", 403: "denied", 404: "not_found", 409: "conflict"}
#: the ASGI scope key of a request's :class:`AuditSlot`
SLOT = "twin.audit"


@dataclass
class Audit:
    """The audit record of one request, filled by the endpoint; written once (see the module docstring)."""

    role: Role
    endpoint: str
    method: str
    area: BaseGeometry | None = None
    area_km2: float | None = None
    counts: dict[str, int] = field(default_factory=dict)
    version: int | str | None = None
    detail: str = ""
    written: bool = False
    written_status: int | None = None


@dataclass
class AuditSlot:
    """What the audit middleware knows of one request: the key's check (role or rejection), the endpoint's
    :class:`Audit` record once :func:`audited` made it, and whether the request's entry is written."""

    endpoint: str
    method: str
    key: str | None = None
    role: Role | None = None
    auth_error: AuthenticationError | None = None
    ctx: Audit | None = None
    done: bool = False


def outcome_for(status: int) -> str:
    """The audit outcome of an HTTP status."""
    if status < 400:
        return "ok"
    return _OUTCOMES.get(status, "rejected" if status < 500 else "error")


def key_from(authorization: str | None, x_api_key: str | None) -> str | None:
    """The API key of ``X-API-Key`` or of ``Authorization: Bearer <key>``."""
    if x_api_key:
        return x_api_key.strip()
    if authorization:
        scheme, _, cred = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and cred.strip():
            return cred.strip()
    return None


def route_path(request: Request) -> str:
    """The route template (``/grids/{grid_code}``), or the path when no route matched."""
    route = request.scope.get("route")
    return getattr(route, "path", None) or request.url.path


async def caller(request: Request, authorization: Annotated[str | None, Header()] = None,
                 x_api_key: Annotated[str | None, Header()] = None) -> Role:
    """The caller's role; a missing or bad key raises :class:`AuthenticationError` (401), audited by the
    middleware (or here, when the app runs without it).

    ``async`` so that FastAPI runs it on the event loop: with the audit middleware it only reads the key check the
    middleware already made (no thread hop per request); without it the blocking check runs in a thread.
    """
    slot: AuditSlot | None = request.scope.get(SLOT)
    if slot is not None:
        if slot.role is not None:
            return slot.role
        if slot.auth_error is not None:
            raise slot.auth_error
        return authenticate(service(request).store, None)  # no key: raises at once
    return await run_in_threadpool(_caller_without_middleware, request, key_from(authorization, x_api_key))


def _caller_without_middleware(request: Request, key: str | None) -> Role:
    svc = service(request)
    try:
        return authenticate(svc.store, key)
    except AuthenticationError as e:
        audit.append(svc.store, user="-", role="-", endpoint=route_path(request), method=request.method,
                     outcome="unauthenticated", status=401, detail=str(e))
        raise


Caller = Annotated[Role, Depends(caller)]


async def audited(request: Request, role: Caller) -> AsyncIterator[Audit]:
    """Yield the request's :class:`Audit` record (the middleware writes it before the response leaves).

    ``async`` for the same reason as :func:`caller`; without the middleware the entry is written here, after the
    endpoint, in a thread."""
    ctx = Audit(role, route_path(request), request.method)
    request.state.audit = ctx
    slot: AuditSlot | None = request.scope.get(SLOT)
    if slot is not None:
        slot.ctx = ctx
        yield ctx
        return
    svc = service(request)
    try:  # without the middleware (an app assembled by hand): write here, after the endpoint
        yield ctx
    except BaseException as e:
        await run_in_threadpool(write_error, svc, ctx, e)
        raise
    await run_in_threadpool(write_audit, svc, ctx, "ok", 200, ctx.detail)


Audited = Annotated[Audit, Depends(audited)]


def write_error(svc: ServiceState, ctx: Audit, e: BaseException) -> None:
    """Write ``ctx`` now with the outcome and status of the error ``e`` (500s name only the error class)."""
    s = status_for(e)
    write_audit(svc, ctx, outcome_for(s), s, str(e) if s < 500 else type(e).__name__)


def write_audit(svc: ServiceState, ctx: Audit, outcome: str, status: int, detail: str) -> None:
    """Append ``ctx`` to the audit log now, once (for an answer the endpoint builds itself)."""
    if ctx.written:
        return
    _append(svc.store, ctx, outcome, status, detail)


def _append(store: Store, ctx: Audit, outcome: str, status: int, detail: str, tx: Transaction | None = None) -> None:
    audit.append(store, user=ctx.role.user, role=ctx.role.name, endpoint=ctx.endpoint, method=ctx.method,
                 area=ctx.area, area_km2=ctx.area_km2, counts=ctx.counts, version=ctx.version, outcome=outcome,
                 status=status, detail=detail, tx=tx)
    ctx.written, ctx.written_status = True, status


def commit_audit(svc: ServiceState, ctx: Audit) -> Callable[[Transaction, int], None]:
    """The ``audit`` hook of :func:`twin.partition.versions.commit`: writes ``ctx`` as ``ok`` (with the new
    version) inside the commit transaction, so the version and its audit entry are durable together.

    >>> new = commit(svc.store, p, base_version=vid, author=..., reason=..., audit=commit_audit(svc, a))  # doctest: +SKIP
    """

    def write(tx: Transaction, version: int) -> None:
        ctx.version = version
        _append(svc.store, ctx, "ok", 200, ctx.detail or f"committed version {version}", tx)

    return write


def submit_audit(store: Store, slot: AuditSlot, status: int, detail: str) -> asyncio.Future[audit.Entry] | None:
    """Queue the request's entry (:func:`slot_entry`) from the event loop thread
    (:func:`twin.access.audit.submit_on_loop`: the entries of one loop turn commit together); the middleware awaits
    the future before the response leaves. ``None`` when nothing is to be written."""
    entry = slot_entry(slot, status, detail)
    return None if entry is None else audit.submit_on_loop(store, **entry)


def slot_entry(slot: AuditSlot, status: int, detail: str) -> dict[str, Any] | None:
    """The request's audit entry (keyword arguments of :func:`twin.access.audit.submit`), once: the endpoint's
    record, else the caller's, else the rejected key's; ``None`` when nothing is to be written (a public request
    without a key, an entry already written in the change's transaction, or asked before)."""
    if slot.done:
        return None
    slot.done = True
    ctx = slot.ctx
    if ctx is not None:
        if ctx.written and (status < 400 or (ctx.written_status or 0) >= 400):
            return None  # written in the change's transaction, or by the endpoint with its final status
        ctx.written, ctx.written_status = True, status
        return dict(user=ctx.role.user, role=ctx.role.name, endpoint=ctx.endpoint, method=ctx.method,
                    area=ctx.area, area_km2=ctx.area_km2, counts=ctx.counts, version=ctx.version,
                    outcome=outcome_for(status), status=status,
                    detail=ctx.detail if status < 400 else detail or ctx.detail)
    if slot.role is not None:
        return dict(user=slot.role.user, role=slot.role.name, endpoint=slot.endpoint, method=slot.method,
                    outcome=outcome_for(status), status=status, detail=detail)
    if slot.auth_error is not None or status == 401:
        return dict(user="-", role="-", endpoint=slot.endpoint, method=slot.method, outcome="unauthenticated",
                    status=status, detail=str(slot.auth_error) if slot.auth_error is not None else detail)
    return None
