"""The HTTP service: FastAPI app factory :func:`create_app` (run it with ``twin serve``).

Every endpoint except ``GET /health`` needs an API key (``Authorization: Bearer <key>`` or ``X-API-Key``;
keys come from ``twin users add``). Every authenticated call — and every rejected key — appends one entry to the
audit log (:mod:`twin.access.audit`): who, endpoint, area hash and km², counts returned, version, outcome, status.
What a caller sees follows :mod:`twin.access.policy` (record scope, suppressed aggregates outside it, editor rights).

Geometry in and out is GeoJSON in WGS84 (EPSG:4326, x = longitude); areas are measured in EPSG:4547 (km²).
Every error is an RFC 7807 ``application/problem+json`` body: ``type``, ``title``, ``status``, ``detail``,
``instance``. Twin errors map to 4xx (validation 422, malformed JSON 400, unauthenticated 401, permission 403,
not found 404, conflict 409); bodies over ``max_body_bytes`` get 413; anything unexpected is a 500 without
internals. OpenAPI docs are served at ``/docs`` (schema at ``/openapi.json``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import shapely
from fastapi import Body, Depends, FastAPI, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from twin.access import audit
from twin.access.auth import authenticate
from twin.access.policy import AccessPolicy, check_edit, record_scope, scoped_dossier, scoped_summary, split_by_scope
from twin.access.roles import DISTRICT, Role
from twin.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDenied,
    TwinError,
    TwinNotBuiltError,
    ValidationError,
)
from twin.model import Twin
from twin.store.sql import Store, open_store

__all__ = ["create_app", "app_from_env", "EditRequest", "problem", "status_for", "MAX_BODY_BYTES", "MAX_PAGE_SIZE"]

MAX_BODY_BYTES = 2 * 1024 * 1024
MAX_PAGE_SIZE = 1000
_PROBLEM = "application/problem+json"
_GEOJSON = "application/geo+json"
_LEVELS = {"towns": ("town_code", "towns"), "communities": ("community_code", "communities"),
           "grids": ("grid_code", "grids")}
_EXAMPLE_AREA = {"type": "Polygon", "coordinates": [[[113.105, 23.005], [113.115, 23.005], [113.115, 23.012],
                                                     [113.105, 23.012], [113.105, 23.005]]]}


# --- errors --------------------------------------------------------------------------------------------------

def status_for(exc: BaseException) -> int:
    """HTTP status for an exception (twin errors → 4xx; anything else 500)."""
    if isinstance(exc, AuthenticationError):
        return 401
    if isinstance(exc, PermissionDenied):
        return 403
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, TwinNotBuiltError):
        return 503
    if isinstance(exc, ValidationError):
        return 422
    if isinstance(exc, RequestValidationError):
        return 400 if _json_invalid(exc) else 422
    if isinstance(exc, StarletteHTTPException):
        return int(exc.status_code)
    if isinstance(exc, TwinError):
        return 400
    return 500


def _json_invalid(exc: RequestValidationError) -> bool:
    return any(e.get("type") in ("json_invalid", "json_type") for e in exc.errors())


def problem(status: int, title: str, detail: str, instance: str = "", **extra: Any) -> JSONResponse:
    """An RFC 7807 problem response."""
    body = {"type": f"https://chancheng-twin.invalid/problems/{title.lower().replace(' ', '-')}",
            "title": title, "status": status, "detail": detail, "instance": instance, **extra}
    headers = {"WWW-Authenticate": 'Bearer realm="twin"'} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=_PROBLEM, headers=headers)


def _title(exc: BaseException, status: int) -> str:
    if isinstance(exc, TwinError):
        return type(exc).__name__
    return {400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large",
            422: "Unprocessable Content"}.get(status, "Internal Server Error" if status >= 500 else "HTTP Error")


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(TwinError)
    async def _twin_error(request: Request, exc: TwinError) -> JSONResponse:
        s = status_for(exc)
        return problem(s, _title(exc, s), str(exc), request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        s = status_for(exc)
        ctx = getattr(request.state, "audit", None)
        if ctx is not None and not ctx.written:  # body errors surface after the audit dependency has exited
            from starlette.concurrency import run_in_threadpool

            await run_in_threadpool(_write_error, _svc(request), ctx, exc)
        errs = [{"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": e.get("type")}
                for e in exc.errors()][:20]
        detail = "malformed JSON body" if s == 400 else "request does not match the API: " + "; ".join(
            f"{'.'.join(e['loc'])}: {e['msg']}" for e in errs[:5])
        return problem(s, "Bad Request" if s == 400 else "Unprocessable Content", detail, request.url.path,
                       errors=errs)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        s = int(exc.status_code)
        return problem(s, _title(exc, s), str(exc.detail), request.url.path)

    @app.exception_handler(Exception)
    async def _unknown(request: Request, exc: Exception) -> JSONResponse:
        return problem(500, "Internal Server Error", "an unexpected error occurred; it has been logged.",
                       request.url.path)


class _BodyLimit:
    """Pure ASGI middleware: reject bodies over ``limit`` bytes with 413 before the app reads them."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
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
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._reject(scope, send, 413, "Payload Too Large",
                                   f"request body exceeds the limit of {self.limit} bytes.")
                return
            chunks.append(chunk)
            more = bool(msg.get("more_body", False))
        body = b"".join(chunks)
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope: dict, send: Any, status: int, title: str, detail: str) -> None:
        resp = problem(status, title, detail, scope.get("path", ""))
        await resp(scope, _noop_receive, send)


async def _noop_receive() -> dict:
    return {"type": "http.disconnect"}


# --- the service state ---------------------------------------------------------------------------------------

@dataclass
class _Service:
    twin_root: Path | None
    store: Store
    policy: AccessPolicy
    base: Twin | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    keep_versions: int = 4
    ready: bool = False
    built: dict[int, Twin] = field(default_factory=dict)
    build_lock: threading.Lock = field(default_factory=threading.Lock)
    geojson_cache: dict[tuple, tuple[bytes, int]] = field(default_factory=dict)

    def twin(self) -> Twin:
        if self.base is None or not self.ready:
            with self.lock:
                if self.base is None:
                    from twin.model import load

                    self.base = load(self.twin_root)
                if not self.ready:
                    from twin.partition.versions import ensure_base

                    ensure_base(self.store, self.base)
                    self.ready = True
        return self.base

    def at(self, version: str | None) -> tuple[Twin, int]:
        """The twin as of ``version`` (default: head) and the resolved version id.

        A version's twin is built once (checkout + query indexes, ≈ 2 s) and kept for the newest
        :attr:`keep_versions` versions. While a new head is being built by one request, other requests for
        "head" are answered from the newest version already built (the response names its version); the
        editor whose commit made the new head gets it built before the edit returns.
        """
        from twin.partition.versions import BASE_VERSION, resolve_version

        base = self.twin()
        default = version in (None, "", "head")
        v = "head" if default else str(version).strip()
        if v not in ("head", "base") and not v.isdigit():
            raise ValidationError(f"version must be a number, 'head' or 'base'; got {version!r}.")
        vid = resolve_version(self.store, v)
        if vid == BASE_VERSION:
            return base, vid
        hit = self.built.get(vid)
        if hit is not None:
            return hit, vid
        if default and not self.build_lock.acquire(blocking=False):
            older = [x for x in self.built if x < vid]
            return (self.built[max(older)], max(older)) if older else (base, BASE_VERSION)
        if not default:
            self.build_lock.acquire()
        try:
            return self._build(vid), vid
        finally:
            self.build_lock.release()

    def _build(self, vid: int) -> Twin:
        from twin.partition.versions import checkout
        from twin.query.dossier import grid_counts
        from twin.query.summary import summarize_area

        hit = self.built.get(vid)
        if hit is not None:
            return hit
        base = self.twin()
        t = checkout(base, vid, store=self.store)
        summarize_area(t, _EXAMPLE_AREA, role=DISTRICT, by="grid")  # builds the query indexes
        grid_counts(t)
        self.built[vid] = t
        for old in sorted(self.built)[: max(0, len(self.built) - self.keep_versions)]:
            del self.built[old]
        for k in [k for k in base.cache if isinstance(k, tuple) and k[:1] == ("checkout",)]:
            if k[-1] not in self.built:
                base.cache.pop(k, None)
        return t

    def warm(self) -> None:
        """Load the twin and build the query indexes of the head version before the first request."""
        from twin.partition.model import partition_from_twin
        from twin.query.dossier import grid_counts
        from twin.query.summary import summarize_area

        t, _ = self.at(None)
        summarize_area(t, _EXAMPLE_AREA, role=DISTRICT, by="grid")
        grid_counts(t)
        partition_from_twin(self.twin())  # cached: edits and diffs start from it


def _svc(request: Request) -> _Service:
    return request.app.state.svc


# --- auth + audit dependencies -------------------------------------------------------------------------------

def _key_from(authorization: str | None, x_api_key: str | None) -> str | None:
    if x_api_key:
        return x_api_key.strip()
    if authorization:
        scheme, _, cred = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and cred.strip():
            return cred.strip()
    return None


@dataclass
class _Audit:
    """Filled by an endpoint; written once per request by :func:`_audited`."""

    role: Role
    endpoint: str
    method: str
    area: Any = None
    area_km2: float | None = None
    counts: dict[str, int] = field(default_factory=dict)
    version: int | str | None = None
    detail: str = ""
    written: bool = False


def _caller(request: Request, authorization: Annotated[str | None, Header()] = None,
            x_api_key: Annotated[str | None, Header()] = None) -> Role:
    svc = _svc(request)
    try:
        return authenticate(svc.store, _key_from(authorization, x_api_key))
    except AuthenticationError as e:
        audit.append(svc.store, user="-", role="-", endpoint=_route(request), method=request.method,
                     outcome="unauthenticated", status=401, detail=str(e))
        raise


def _route(request: Request) -> str:
    route = request.scope.get("route")
    return getattr(route, "path", None) or request.url.path


def _audited(request: Request, role: Annotated[Role, Depends(_caller)]) -> Iterator[_Audit]:
    ctx = _Audit(role, _route(request), request.method)
    request.state.audit = ctx
    svc = _svc(request)
    try:
        yield ctx
    except BaseException as e:
        _write_error(svc, ctx, e)
        raise
    _write(svc, ctx, "ok", 200, ctx.detail)


def _write_error(svc: _Service, ctx: _Audit, e: BaseException) -> None:
    s = status_for(e)
    outcome = {401: "unauthenticated", 403: "denied", 404: "not_found", 409: "conflict"}.get(
        s, "rejected" if s < 500 else "error")
    _write(svc, ctx, outcome, s, str(e) if s < 500 else type(e).__name__)


def _write(svc: _Service, ctx: _Audit, outcome: str, status: int, detail: str) -> None:
    if ctx.written:
        return
    ctx.written = True
    audit.append(svc.store, user=ctx.role.user, role=ctx.role.name, endpoint=ctx.endpoint, method=ctx.method,
                 area=ctx.area, area_km2=ctx.area_km2, counts=ctx.counts, version=ctx.version, outcome=outcome,
                 status=status, detail=detail)


Audited = Annotated[_Audit, Depends(_audited)]
VersionQ = Annotated[str | None, Query(description="partition version id, 'base' or 'head' (default)",
                                       max_length=20)]
AreaBody = Annotated[dict[str, Any], Body(description="GeoJSON Polygon/MultiPolygon, Feature or FeatureCollection "
                                                      "in WGS84 (lng, lat)", examples=[_EXAMPLE_AREA])]


def _json(obj: Any, status: int = 200) -> Response:
    return Response(json.dumps(obj, ensure_ascii=False, default=_plain, allow_nan=False).encode("utf-8"),
                    status_code=status, media_type="application/json")


def _plain(v: Any) -> Any:
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return None if np.isnan(v) else float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    if v is pd.NA or v is pd.NaT:
        return None
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


# --- the app -------------------------------------------------------------------------------------------------


def _area_at(svc: Any, a: Any, area: Any, version: Any) -> tuple[Any, Any, Any]:
    """The twin at ``version`` and the parsed area, both noted on the audit record ``a``."""
    from twin.query.areas import parse_area

    t, vid = svc.at(version)
    a.version = vid
    parsed = parse_area(area, district=t.district)
    a.area, a.area_km2 = parsed.geometry, parsed.area_km2
    return t, vid, parsed

def create_app(twin_root: str | Path | None = None, database_url: str | None = None, *,
               policy: AccessPolicy | None = None, max_body_bytes: int = MAX_BODY_BYTES,
               twin: Twin | None = None, warm: bool = True) -> FastAPI:
    """The FastAPI application.

    Parameters
    ----------
    twin_root : twin directory (default :func:`twin.io.default_twin_dir`).
    database_url : shared store URL (``postgresql://…`` or a SQLite path; default ``$TWIN_DATABASE_URL`` or
        ``<twin_root>/state.sqlite``).
    policy : what callers get outside their scope (default: suppressed aggregates, k = 5).
    max_body_bytes : larger request bodies get 413.
    twin : an already loaded twin to serve (tests); else it is loaded at startup.
    warm : build the query indexes at startup so the first requests are fast.
    """
    store = open_store(database_url, twin_root=twin_root if twin is None else twin.root)
    svc = _Service(Path(twin_root) if twin_root is not None else None, store, policy or AccessPolicy(), twin)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        if warm:
            import anyio

            await anyio.to_thread.run_sync(svc.warm)
        yield
        store.close()

    app = FastAPI(title="Chancheng Twin service", version="1", lifespan=lifespan,
                  description="One map for Chancheng District: hierarchy, grid dossiers, area summaries, records, "
                              "partition versions and edits, scoped by area and by right (分权分域) and audited.")
    app.state.svc = svc
    _install_handlers(app)
    app.add_middleware(_BodyLimit, limit=int(max_body_bytes))
    _routes(app)
    return app


def app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory`` / several workers: twin from ``$TWIN_HOME``, store from
    ``$TWIN_DATABASE_URL``, policy from ``$TWIN_OUTSIDE_POLICY`` (aggregate|deny) and ``$TWIN_K``."""
    import os

    policy = AccessPolicy(outside=os.environ.get("TWIN_OUTSIDE_POLICY", "aggregate"),  # type: ignore[arg-type]
                          k=int(os.environ.get("TWIN_K", "5")))
    return create_app(None, None, policy=policy)


def _routes(app: FastAPI) -> None:  # noqa: C901  (one function so the routes read top to bottom)
    @app.get("/health", tags=["service"], summary="Liveness (no key needed)")
    def health(request: Request) -> Response:
        svc = _svc(request)
        return _json({"status": "ok", "twin_loaded": svc.base is not None, "store": svc.store.dialect})

    @app.get("/me", tags=["service"], summary="The caller's role and scope")
    def me(a: Audited) -> Response:
        r = a.role
        return _json({"user": r.user, "role": r.name, "scope_level": r.scope_level, "scope_codes": r.scope_codes,
                      "can_see_records": r.can_see_records, "can_edit": r.can_edit, "k": r.k})

    # -- hierarchy ----------------------------------------------------------------------------------------
    @app.get("/hierarchy/{level}", tags=["hierarchy"], summary="Towns, communities or grids as GeoJSON",
             response_class=Response, responses={200: {"content": {_GEOJSON: {}}}})
    def hierarchy(request: Request, a: Audited,
                  level: Annotated[str, PathParam(pattern="^(towns|communities|grids)$")],
                  version: VersionQ = None,
                  town: Annotated[str | None, Query(max_length=20, pattern="^[0-9]+$")] = None,
                  community: Annotated[str | None, Query(max_length=20, pattern="^[0-9]+$")] = None) -> Response:
        svc = _svc(request)
        t, vid = svc.at(version)
        a.version = vid
        key = (level, vid, town, community, a.role.scope_level, a.role.scope_codes, a.role.can_see_records)
        hit = svc.geojson_cache.get(key)
        if hit is None:
            hit = _hierarchy_geojson(t, level, a.role, town=town, community=community)
            if len(svc.geojson_cache) > 256:
                svc.geojson_cache.clear()
            svc.geojson_cache[key] = hit
        body, n = hit
        a.counts = {"features": n}
        return Response(body, media_type=_GEOJSON)

    # -- grid dossier -------------------------------------------------------------------------------------
    @app.get("/grids/{grid_code}", tags=["grids"], summary="A grid's dossier (scoped)")
    def dossier(request: Request, a: Audited, grid_code: Annotated[str, PathParam(max_length=20)],
                version: VersionQ = None) -> Response:
        from twin.query.dossier import grid_dossier

        svc = _svc(request)
        t, vid = svc.at(version)
        a.version = vid
        d = scoped_dossier(grid_dossier(t, grid_code), a.role, t, svc.policy)
        a.counts = {"residents": d["counts"]["residents"] or 0, "workers": len(d["workers"] or [])}
        return _json({**d, "version": vid})

    @app.get("/grids/{grid_code}/records", tags=["records"], summary="Records of one grid in your scope (paged)")
    def grid_records(request: Request, a: Audited, grid_code: Annotated[str, PathParam(max_length=20)],
                     kind: Annotated[str, Query(pattern="^(persons|buildings|businesses)$")] = "persons",
                     page: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
                     page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 100,
                     version: VersionQ = None) -> Response:
        svc = _svc(request)
        t, vid = svc.at(version)
        a.version = vid
        t.grid(grid_code)  # 404 for unknown codes
        if not a.role.can_see_records:
            raise PermissionDenied(f"role {a.role.name!r} may not see individual records.")
        if grid_code not in record_scope(a.role, t):
            raise PermissionDenied(f"grid {grid_code} is outside the scope of {a.role.user!r} "
                                   f"({a.role.scope_level} {', '.join(a.role.scope_codes)}); records are "
                                   "returned only inside your scope.")
        ids = _grid_record_ids(t, grid_code, kind)
        chunk = ids[page * page_size:(page + 1) * page_size]
        a.counts = {"records": len(chunk)}
        return _json({"kind": kind, "grid_code": grid_code, "version": vid, "page": page, "page_size": page_size,
                      "total": len(ids), "pages": (len(ids) + page_size - 1) // page_size,
                      "records": _record_rows(t, kind, chunk)})

    # -- area queries -------------------------------------------------------------------------------------
    @app.post("/area/summary", tags=["area"], summary="What is inside a drawn area (scoped, suppressed outside)")
    def area_summary(request: Request, a: Audited, area: AreaBody, version: VersionQ = None,
                     include_cells: bool = False) -> Response:
        from twin.query.summary import summarize_parsed

        svc = _svc(request)
        t, vid, parsed = _area_at(svc, a, area, version)
        raw = summarize_parsed(t, parsed, role=DISTRICT, by="grid")
        out = scoped_summary(t, raw, a.role, svc.policy, include_cells=include_cells)
        out.update(area_km2=parsed.area_km2, clipped=parsed.clipped, warnings=list(parsed.warnings), version=vid)
        a.counts = {k: int(v) for k, v in out["totals"].items()
                    if k in ("buildings", "residents", "businesses") and v is not None}
        return _json(out)

    @app.post("/area/records", tags=["records"], summary="Ids and rows of records inside an area, in your scope")
    def area_records(request: Request, a: Audited, area: AreaBody,
                     kind: Annotated[str, Query(pattern="^(persons|buildings|businesses)$")] = "persons",
                     page: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
                     page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 100,
                     version: VersionQ = None) -> Response:
        from twin.query.summary import records_in_area, summarize_parsed

        svc = _svc(request)
        t, vid, parsed = _area_at(svc, a, area, version)
        if not a.role.can_see_records:
            raise PermissionDenied(f"role {a.role.name!r} may not see individual records; use /area/summary.")
        if svc.policy.outside == "deny" and a.role.scope_level != "district":
            touched = summarize_parsed(t, parsed, role=DISTRICT, by="grid").by_grid
            codes = touched["grid_code"].astype(str) if len(touched) else pd.Series([], dtype=str)
            split_by_scope(pd.DataFrame(index=codes.to_numpy()), a.role, t, svc.policy, what="the area")
        pg = records_in_area(t, parsed.geometry, kind, role=a.role, page=page, page_size=page_size)
        a.counts = {"records": len(pg.ids)}
        return _json({"kind": kind, "version": vid, "page": pg.page, "page_size": pg.page_size, "total": pg.total,
                      "pages": pg.pages, "scope": {"level": a.role.scope_level, "codes": a.role.scope_codes},
                      "records": _record_rows(t, kind, np.asarray(pg.ids, dtype=np.int64))})

    _optional_routes(app)


def _optional_routes(app: FastAPI) -> None:
    """Routes backed by modules of other parts of the project (versions, edits, overlays, exports)."""
    _version_routes(app)
    from twin.service.incidents import (
        router as incident_router,  # here: twin.service.incidents imports twin.service.app
    )

    app.include_router(incident_router)


# --- versions and edits --------------------------------------------------------------------------------------

class EditRequest(BaseModel):
    """One grid edit, committed as a new partition version on top of ``base_version``."""

    op: Literal["move_cells", "move_area", "split_grid", "merge_grids", "redraw_grid"]
    base_version: int = Field(ge=1, description="the version you edited (the head when you loaded it)")
    reason: str = Field(min_length=1, max_length=500)
    cells: list[str] | None = Field(None, max_length=20_000, description="move_cells: H3 cells (hex)")
    to_grid: str | None = Field(None, max_length=20, description="move_cells / move_area: target grid")
    area: dict[str, Any] | None = Field(None, description="move_area: GeoJSON area (WGS84)")
    grid_code: str | None = Field(None, max_length=20, description="split_grid / redraw_grid")
    k: int = Field(2, ge=2, le=10, description="split_grid: number of parts")
    grid_codes: list[str] | None = Field(None, max_length=50, description="merge_grids")
    into: str | None = Field(None, max_length=20, description="merge_grids: surviving code")
    polygon: dict[str, Any] | None = Field(None, description="redraw_grid: new outline (GeoJSON, WGS84)")
    clip: bool = False


def _version_routes(app: FastAPI) -> None:
    @app.get("/versions", tags=["versions"], summary="Partition versions, oldest first")
    def versions_list(request: Request, a: Audited) -> Response:
        from twin.partition.versions import head_version, list_versions

        svc = _svc(request)
        svc.twin()
        vs = list_versions(svc.store)
        a.version = head_version(svc.store)
        a.counts = {"versions": len(vs)}
        return _json({"head": a.version, "versions": [v.__dict__ for v in vs]})

    @app.get("/versions/{a_version}/diff/{b_version}", tags=["versions"], summary="What changed from a to b")
    def versions_diff(request: Request, a: Audited, a_version: Annotated[str, PathParam(max_length=20)],
                      b_version: Annotated[str, PathParam(max_length=20)]) -> Response:
        from twin.partition.versions import diff_versions

        svc = _svc(request)
        for v in (a_version, b_version):
            if v not in ("head", "base") and not v.isdigit():
                raise ValidationError(f"version must be a number, 'head' or 'base'; got {v!r}.")
        d = diff_versions(svc.store, svc.twin(), a_version, b_version)
        a.version = f"{d.a}..{d.b}"
        a.counts = {"grids_changed": len(d.grids_changed), "cells_moved": d.cells_moved}
        return _json(d.to_dict())

    @app.post("/edits", tags=["versions"], summary="Edit grid boundaries (editor right in scope); new version")
    def edit(request: Request, a: Audited, req: EditRequest) -> Response:
        svc = _svc(request)
        a.version = req.base_version
        out = _apply_edit(svc, a, req)
        return _json(out)

    _overlay_routes(app)
    _export_routes(app)


def _apply_edit(svc: _Service, a: _Audit, req: Any) -> dict[str, Any]:
    from twin.partition import edits
    from twin.partition.versions import commit, load_partition
    from twin.query.areas import parse_area

    role = a.role
    if not role.can_edit:
        raise PermissionDenied(f"user {role.user!r} (role {role.name}) has no editor right; grid edits need a "
                               "district, town or community editor.")
    base = svc.twin()
    t, vid = svc.at(str(req.base_version))
    p = load_partition(svc.store, base, vid)

    def need(name: str) -> Any:
        v = getattr(req, name)
        if v is None:
            raise ValidationError(f"op {req.op!r} needs field {name!r}.")
        return v

    if req.op == "move_cells":
        try:
            cells = np.array([int(str(c), 16) for c in need("cells")], dtype=np.uint64)
        except ValueError as e:
            raise ValidationError(f"cells must be H3 cell ids in hex (e.g. '8b4117...'): {e}") from e
        p2 = edits.move_cells(p, cells, str(need("to_grid")))
    elif req.op == "move_area":
        parsed = parse_area(need("area"), district=t.district)
        a.area, a.area_km2 = parsed.geometry, parsed.area_km2
        p2 = edits.move_area(p, parsed.geometry, str(need("to_grid")))
    elif req.op == "split_grid":
        p2 = edits.split_grid(p, str(need("grid_code")), k=int(req.k))
    elif req.op == "merge_grids":
        p2 = edits.merge_grids(p, [str(c) for c in need("grid_codes")], into=req.into)
    else:
        parsed = parse_area(need("polygon"), district=t.district)
        a.area, a.area_km2 = parsed.geometry, parsed.area_km2
        p2 = edits.redraw_grid(p, str(need("grid_code")), parsed.geometry, clip=bool(req.clip))
    moved = p.grid_code != p2.grid_code
    old_codes = set(p.grids["grid_code"].astype(str))
    touched = (set(p.grid_code[moved].tolist()) | set(p2.grid_code[moved].tolist())) & old_codes
    if req.op in ("split_grid", "merge_grids"):
        touched |= {str(c) for c in ([req.grid_code] if req.op == "split_grid" else req.grid_codes)} & old_codes
    check_edit(role, t, sorted(touched))
    new = commit(svc.store, p2, base_version=vid, author=role.user, reason=req.reason)
    a.version = new
    svc.at(str(new))  # build the new head now, so that the editor's next reads see it at once
    a.counts = {"cells_moved": int(moved.sum()), "grids_touched": len(touched)}
    a.detail = f"{req.op} on version {vid} → {new}: {req.reason}"
    return {"version": new, "parent": vid, "op": req.op, "cells_moved": int(moved.sum()),
            "grids_touched": sorted(touched),
            "grids_added": sorted(set(p2.grids["grid_code"].astype(str)) - old_codes),
            "grids_removed": sorted(old_codes - set(p2.grids["grid_code"].astype(str)))}


def _overlay_routes(app: FastAPI) -> None:
    from twin.query.overlays import overlay

    @app.get("/overlays/{category}", tags=["area"], summary="Key-population counts per H3 cell (res 8–10)")
    def overlay_cells(request: Request, a: Audited, category: Annotated[str, PathParam(max_length=40)],
                      res: Annotated[int, Query(ge=8, le=10)] = 9, version: VersionQ = None,
                      include_zero: bool = False) -> Response:
        """Aggregates only (never records): cells not wholly inside the caller's record scope — every cell for
        analysts — have counts 1…k−1 suppressed (``count``/``density_km2`` null, ``suppressed`` true)."""
        svc = _svc(request)
        t, vid = svc.at(version)
        a.version = vid
        k = svc.policy.k_for(a.role)
        f = overlay(t, category, res=res, role=a.role, k=k)
        if not include_zero:
            f = f.loc[f["suppressed"].to_numpy() | (f["count"].fillna(1).to_numpy() > 0)]
        counts = f["count"].to_numpy(dtype=object, na_value=None)
        dens = f["density_km2"].to_numpy(dtype=object, na_value=None)
        cells = [{"cell": format(int(c), "x"), "count": None if n is None else int(n),
                  "density_km2": None if d is None else round(float(d), 3), "suppressed": bool(sp)}
                 for c, n, d, sp in zip(f["cell"].to_numpy(), counts, dens, f["suppressed"].to_numpy())]
        a.counts = {"cells": len(cells), "suppressed": int(f["suppressed"].sum())}
        return _json({"category": category, "res": res, "version": vid, "k": k, "cells": cells})


def _export_routes(app: FastAPI) -> None:
    from starlette.background import BackgroundTask
    from starlette.responses import FileResponse

    from twin.partition.export import export_grids

    media = {"geojson": "application/geo+json", "gpkg": "application/geopackage+sqlite3",
             "parquet": "application/vnd.apache.parquet"}

    @app.get("/exports/grids", tags=["versions"], summary="The grid layer of a version (GeoJSON/GPKG/GeoParquet)")
    def export(request: Request, a: Audited, version: VersionQ = None,
               format: Annotated[str, Query(pattern="^(geojson|gpkg|parquet)$")] = "geojson") -> Response:
        """Grid polygons with grid/community/town codes and workload (aggregates), WGS84."""
        import shutil
        import tempfile

        from twin.partition.versions import load_partition

        svc = _svc(request)
        t, vid = svc.at(version)
        a.version = vid
        p = load_partition(svc.store, svc.twin(), vid)
        tmp = Path(tempfile.mkdtemp(prefix="twin-export-"))
        path = export_grids(svc.twin(), p, tmp / f"grids_v{vid}.{format}", version=vid)
        a.counts = {"grids": int(p.n_grids)}
        return FileResponse(path, media_type=media[format], filename=path.name,
                            background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True))


# --- helpers -------------------------------------------------------------------------------------------------

def _hierarchy_geojson(t: Twin, level: str, role: Role, *, town: str | None = None,
                       community: str | None = None) -> tuple[bytes, int]:
    code_col, table = _LEVELS[level]
    f = getattr(t, table)
    if town is not None and "town_code" in f:
        f = f.loc[f["town_code"].astype(str) == town]
    if community is not None and "community_code" in f:
        f = f.loc[f["community_code"].astype(str) == community]
    scope = record_scope(role, t)
    g = t.grids
    codes_in = g["grid_code"].astype(str).isin(scope)
    if level == "grids":
        in_scope = f["grid_code"].astype(str).isin(scope).to_numpy()
    else:
        all_in = codes_in.groupby(g[code_col].astype(str)).all()
        in_scope = f[code_col].astype(str).map(all_in).fillna(False).astype(bool).to_numpy()
    props = [c for c in f.columns if c != "geometry"]
    feats = []
    for row, geom, ins in zip(f[props].to_dict("records"), f.geometry, in_scope):
        p = {k: _prop(v) for k, v in row.items()}
        p["in_scope"] = bool(ins)
        fid = json.dumps(str(row[code_col]))
        feats.append(f'{{"type": "Feature", "id": {fid}, "properties": {json.dumps(p, ensure_ascii=False)}, '
                     f'"geometry": {shapely.to_geojson(geom)}}}')
    body = '{"type": "FeatureCollection", "features": [' + ",\n".join(feats) + "]}"
    return body.encode("utf-8"), len(feats)


def _prop(v: Any) -> Any:
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if np.isnan(v) else float(v)
    return str(v)


_RECORD_COLUMNS = {
    "persons": ("person_id", ["person_id", "household_id", "dwelling_id", "building_id", "sex", "birth_date",
                              "disabled", "low_income", "pregnant"]),
    "buildings": ("building_id", ["building_id", "use", "floors", "height_m", "dwellings", "residents",
                                  "businesses", "lng", "lat", "grid_code"]),
    "businesses": ("business_id", ["business_id", "building_id", "kind", "industry", "credit"]),
}


def _id_positions(t: Twin, kind: str, ids: np.ndarray) -> np.ndarray:
    id_col, _ = _RECORD_COLUMNS[kind]
    frame = getattr(t, kind)
    key = f"api.id_index.{kind}"
    hit = t.cache.get(key)
    if hit is None or hit[0] is not frame:
        hit = (frame, pd.Index(frame[id_col].to_numpy()))
        t.cache[key] = hit
    pos = hit[1].get_indexer(np.asarray(ids))
    if (pos < 0).any():
        raise NotFoundError(f"unknown {kind} id(s) {np.asarray(ids)[pos < 0][:5].tolist()}.")
    return pos


def _grid_record_ids(t: Twin, grid_code: str, kind: str) -> np.ndarray:
    b = t.buildings
    bids = b["building_id"].to_numpy()[(b["grid_code"].astype(str) == grid_code).to_numpy()]
    if kind == "buildings":
        return np.sort(bids)
    frame = getattr(t, kind)
    id_col = _RECORD_COLUMNS[kind][0]
    mask = np.isin(frame["building_id"].to_numpy(), bids)
    return np.sort(frame[id_col].to_numpy()[mask])


def _record_rows(t: Twin, kind: str, ids: np.ndarray) -> list[dict[str, Any]]:
    if len(ids) == 0:
        return []
    _, cols = _RECORD_COLUMNS[kind]
    frame = getattr(t, kind)
    rows = frame.iloc[_id_positions(t, kind, ids)][[c for c in cols if c in frame.columns]]
    out = []
    for r in rows.to_dict("records"):
        out.append({k: (str(v)[:10] if k == "birth_date" else _prop(v)) for k, v in r.items()})
    return out
