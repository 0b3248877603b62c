"""``POST /edits``: one grid-boundary edit (editor right in scope), committed as a new partition version.

The request names the op (``move_cells``, ``move_area``, ``split_grid``, ``merge_grids``, ``redraw_grid``); the
route parses its cells and drawn geometry (WGS84) and hands an :class:`~twin.partition.edit_ops.EditOp` to the one
edit dispatch, :func:`twin.partition.edit_ops.apply_edit`. A stale ``base_version`` gives 409.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Literal, cast

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from shapely.geometry.base import BaseGeometry

from twin.access.policy import check_edit
from twin.errors import PermissionDenied, ValidationError
from twin.model import Twin
from twin.partition.edit_ops import EditOp, EditResult, apply_edit
from twin.partition.versions import commit, load_partition, resolve_version
from twin.query.areas import parse_area
from twin.service._params import MAX_VERSION
from twin.service._responses import json_response
from twin.service._state import ServiceState, service
from twin.service._threads import run_query
from twin.service.deps import Audit, Audited, commit_audit

__all__ = ["router", "EditRequest", "edit_op", "run_edit", "stage_edit", "commit_edit"]

router = APIRouter(tags=["versions"])

#: a ``move_cells`` edit of at most this many cells is worked out on the event loop (see :func:`edit`)
INLINE_MOVE_CELLS = 200


class EditRequest(BaseModel):
    """One grid edit, committed as a new partition version on top of ``base_version``."""

    op: Literal["move_cells", "move_area", "split_grid", "merge_grids", "redraw_grid"]
    base_version: int = Field(ge=1, le=MAX_VERSION, description="the version you edited (the head when you loaded it)")
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


@router.post("/edits", summary="Edit grid boundaries (editor right in scope); new version")
async def edit(request: Request, a: Audited, req: EditRequest) -> Response:
    """The new version, its parent, cells moved and the grids touched, added and removed.

    A move of a few cells is worked out on the event loop (≈ 15 ms of CPU: in a worker thread it waited for the
    interpreter lock behind the loop's readers, ≈ 10× longer under load); drawn areas, splits and merges in a
    query thread. The commit runs in a query thread (it waits for the disk)."""
    a.version = req.base_version
    svc = service(request)
    if req.op == "move_cells" and len(req.cells or ()) <= INLINE_MOVE_CELLS:
        staged = stage_edit(svc, a, req)
    else:
        staged = await run_query(stage_edit, svc, a, req)
    return json_response(await run_query(commit_edit, svc, a, req, staged))


def _need(req: EditRequest, name: str) -> Any:
    v = getattr(req, name)
    if v is None:
        raise ValidationError(f"op {req.op!r} needs field {name!r}.")
    return v


def edit_op(req: EditRequest, t: Twin, a: Audit) -> EditOp:
    """The :class:`EditOp` of a request: hex cells as given (apply_edit checks them); ``area``/``polygon`` parsed as
    WGS84 areas inside the district of ``t`` (any version: the district does not change), noted on the audit record
    ``a``."""
    cells = _need(req, "cells") if req.op == "move_cells" else None  # checked by apply_edit
    geometry: BaseGeometry | None = None
    if req.op in ("move_area", "redraw_grid"):
        parsed = parse_area(_need(req, "area" if req.op == "move_area" else "polygon"), district=t.district)
        a.area, a.area_km2 = parsed.geometry, parsed.area_km2
        geometry = parsed.geometry
    return EditOp(req.op, grid_code=req.grid_code, to_grid=req.to_grid, cells=cells, geometry=geometry,
                  grid_codes=req.grid_codes, into=req.into, k=req.k, clip=req.clip)


def run_edit(svc: ServiceState, a: Audit, req: EditRequest) -> dict[str, Any]:
    """Check the editor right, apply the edit to ``base_version``, check the touched grids are in the caller's
    scope, commit, and return as soon as the new version (and its audit entry) is durable
    (:func:`stage_edit` then :func:`commit_edit`).

    Nothing here waits for a version's twin to be built: the edit starts from the stored partition of
    ``base_version`` (its grid table gives the scope check), and the new version's indexes are built in the
    background (:meth:`Twins.request_build`); ``ready`` says whether this process already has it built and
    ``GET /versions/{version}/ready?wait=5`` waits for it.
    """
    return commit_edit(svc, a, req, stage_edit(svc, a, req))


def stage_edit(svc: ServiceState, a: Audit, req: EditRequest) -> tuple[int, EditResult]:
    """The resolved base version and the checked edit (rights, rules, scope); nothing is written."""
    role = a.role
    if not role.can_edit:
        raise PermissionDenied(f"user {role.user!r} (role {role.name}) has no editor right; grid edits need a "
                               "district, town or community editor.")
    base = svc.twins.base_twin()
    vid = resolve_version(svc.store, req.base_version)
    p = load_partition(svc.store, base, vid)
    res = apply_edit(p, edit_op(req, base, a))
    check_edit(role, cast(Twin, SimpleNamespace(grids=p.grids)), res.grids_touched)  # only the grid table is read
    a.counts = {"cells_moved": res.cells_moved, "grids_touched": len(res.grids_touched)}
    a.detail = f"{req.op} on version {vid}: {req.reason}"
    return vid, res


def commit_edit(svc: ServiceState, a: Audit, req: EditRequest, staged: tuple[int, EditResult]) -> dict[str, Any]:
    """Commit a :func:`stage_edit` result as a new version (its audit entry in the same transaction: audit before
    answer); ask for its build in the background; the answer body."""
    vid, res = staged
    new = commit(svc.store, res.partition, base_version=vid, author=a.role.user, reason=req.reason,
                 audit=commit_audit(svc, a))
    a.version = new
    svc.twins.note_head(new)  # this process's next head reads answer from it (others see it within head_ttl_s)
    ready = svc.twins.request_build(new).done()
    return {"version": new, "parent": vid, "op": req.op, "cells_moved": res.cells_moved,
            "grids_touched": res.grids_touched, "grids_added": res.grids_added, "grids_removed": res.grids_removed,
            "ready": ready, "ready_url": f"/versions/{new}/ready?wait=5"}
