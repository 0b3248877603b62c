"""Request dependencies: the caller's API key → :class:`~twin.access.roles.Role`, and one audit entry per request.

Every authenticated call — and every rejected key — appends one entry to the audit log (:mod:`twin.access.audit`):
who, endpoint, area hash and km², counts returned, version, outcome, status. An endpoint fills the :class:`Audit`
record it receives (``a: Audited``); it is written once, when the request ends or fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Body, Depends, Header, Query, Request
from shapely.geometry.base import BaseGeometry

from twin.access import audit
from twin.access.auth import authenticate
from twin.access.roles import Role
from twin.errors import AuthenticationError
from twin.service._problems import status_for
from twin.service._state import ServiceState, service
from twin.service._twins import EXAMPLE_AREA

__all__ = ["Audit", "Audited", "Caller", "VersionQ", "AreaBody", "audited", "caller", "key_from", "write_audit",
           "write_error", "route_path"]

VersionQ = Annotated[str | None, Query(description="partition version id, 'base' or 'head' (default)",
                                       max_length=20)]
AreaBody = Annotated[dict[str, Any], Body(description="GeoJSON Polygon/MultiPolygon, Feature or FeatureCollection "
                                                      "in WGS84 (lng, lat)", examples=[EXAMPLE_AREA])]
_OUTCOMES = {401: "unauthenticated", 403: "denied", 404: "not_found", 409: "conflict"}


@dataclass
class Audit:
    """The audit record of one request, filled by the endpoint; written once by :func:`audited`."""

    role: Role
    endpoint: str
    method: str
    area: BaseGeometry | None = None
    area_km2: float | None = None
    counts: dict[str, int] = field(default_factory=dict)
    version: int | str | None = None
    detail: str = ""
    written: bool = False


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


def caller(request: Request, authorization: Annotated[str | None, Header()] = None,
           x_api_key: Annotated[str | None, Header()] = None) -> Role:
    """The caller's role; a missing or bad key is audited and raises :class:`AuthenticationError` (401)."""
    svc = service(request)
    try:
        return authenticate(svc.store, key_from(authorization, x_api_key))
    except AuthenticationError as e:
        audit.append(svc.store, user="-", role="-", endpoint=route_path(request), method=request.method,
                     outcome="unauthenticated", status=401, detail=str(e))
        raise


Caller = Annotated[Role, Depends(caller)]


def audited(request: Request, role: Caller) -> Iterator[Audit]:
    """Yield the request's :class:`Audit` record; write it as ``ok`` or with the outcome of the error raised."""
    ctx = Audit(role, route_path(request), request.method)
    request.state.audit = ctx
    svc = service(request)
    try:
        yield ctx
    except BaseException as e:
        write_error(svc, ctx, e)
        raise
    write_audit(svc, ctx, "ok", 200, ctx.detail)


Audited = Annotated[Audit, Depends(audited)]


def write_error(svc: ServiceState, ctx: Audit, e: BaseException) -> None:
    """Write ``ctx`` with the outcome and status of the error ``e`` (500s name only the error class)."""
    s = status_for(e)
    outcome = _OUTCOMES.get(s, "rejected" if s < 500 else "error")
    write_audit(svc, ctx, outcome, s, str(e) if s < 500 else type(e).__name__)


def write_audit(svc: ServiceState, ctx: Audit, outcome: str, status: int, detail: str) -> None:
    """Append ``ctx`` to the audit log, once."""
    if ctx.written:
        return
    ctx.written = True
    audit.append(svc.store, user=ctx.role.user, role=ctx.role.name, endpoint=ctx.endpoint, method=ctx.method,
                 area=ctx.area, area_km2=ctx.area_km2, counts=ctx.counts, version=ctx.version, outcome=outcome,
                 status=status, detail=detail)
