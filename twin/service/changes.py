"""HTTP endpoint of the data closed loop: ``POST /changes`` commits one change set to the live twin.

Body: ``{"changes": [{"kind": "person.dies", "person_id": 7, "effective_date": "2026-12-01", "reason": "…"}, …],
"reason": "default reason"}`` — each change as :func:`twin.live.changes.change_to_dict` writes it (kinds in
:data:`twin.live.changes.CHANGE_KINDS`). The author of every change is the caller (the named user of the API key);
an ``author`` in the body is refused unless it is that user. The set is validated and committed atomically by
:meth:`twin.live.state.LiveTwin.apply` (all or nothing, one audit entry, one feed row): 201 with ``set_id``,
``seqs`` and the ids of created records; 422 for a refused change (naming it, the record and the rule), 404 for an
unknown id, 409 for a stale ``expected_version``.

Scope (分权分域): a community / town / grid-worker user may change only records in its record scope — the person,
business, building or dwelling changed, a mother, the dwelling or building a new record goes to. It **may move a
person or business out of its scope** (``person.moves``, ``business.moves``, ``household.splits`` to a dwelling
elsewhere) but learns nothing of the destination: the answer carries only ids the caller already had or created in
its scope. Analysts may not change records (403).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from twin.access.roles import Role
from twin.access.scope import record_scope, sees_everything
from twin.cells import PARTITION_RES, latlng_to_cells
from twin.errors import PermissionDenied, ValidationError
from twin.live import changes as ch
from twin.live.state import LiveTwin
from twin.service._live_twin import live_twin
from twin.service._responses import json_response
from twin.service.deps import Audited

__all__ = ["router", "ChangeSetRequest", "MAX_CHANGES"]

router = APIRouter(tags=["changes"])

MAX_CHANGES = 10_000
"""Changes per request (bigger sets: several requests, or the CLI)."""

# fields whose record may lie outside the caller's scope: where a person / business moves to
_DESTINATIONS = {ch.PersonMoves: ("dwelling_id",), ch.BusinessMoves: ("building_id",),
                 ch.HouseholdSplits: ("dwelling_id",), ch.HouseholdForms: ()}
_OWN_FIELDS = (("person_id", "persons"), ("mother_id", "persons"), ("business_id", "businesses"),
               ("dwelling_id", "dwellings"), ("building_id", "buildings"))


class ChangeSetRequest(BaseModel):
    """One change set: the changes (JSON objects with ``kind``) and a default ``reason``."""

    changes: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_CHANGES)
    reason: str = Field("", max_length=500, description="used for changes that give no reason of their own")


def parse_changes(body: ChangeSetRequest, role: Role) -> list[ch.Change]:
    """The body's changes with the caller as author; :class:`ValidationError` naming ``changes[i]``."""
    out = []
    for i, d in enumerate(body.changes):
        given = d.get("author")
        if given not in (None, role.user):
            raise ValidationError(f"changes[{i}]: author {given!r} is not you ({role.user!r}); the author of a change "
                                  "is the user who sends it.")
        d = {**d, "author": role.user}
        if not d.get("reason"):
            d["reason"] = body.reason
        out.append(ch.change_from_dict(d, where=f"changes[{i}]"))
    return out


def _grid(lt: LiveTwin, table: str, rid: int) -> str | None:
    """The grid of a record now (``None`` when unknown or gone: the core names that when the set is applied)."""
    row = lt.world.row(table, int(rid))
    if row is None:
        return None
    b = row if table == "buildings" else lt.world.row("buildings", int(row["building_id"]))
    if b is None:
        return None
    return str(lt.t.grid_of_cells(np.array([b["cell"]], dtype=np.uint64))[0]) or None


def check_change_scope(lt: LiveTwin, changes: list[ch.Change], role: Role) -> None:
    """:class:`PermissionDenied` for the first change touching a record outside ``role``'s record scope (module
    docstring: destinations of moves excepted)."""
    if sees_everything(role):
        return
    if not role.can_edit:
        raise PermissionDenied(f"user {role.user!r} ({role.name}) may not change records.")
    scope = record_scope(role, lt.t)
    lt.refresh()
    for i, c in enumerate(changes):
        free = _DESTINATIONS.get(type(c), ())
        checks = [(table, getattr(c, f)) for f, table in _OWN_FIELDS
                  if f not in free and getattr(c, f, None) is not None]
        checks += [("persons", p) for p in getattr(c, "person_ids", ())]
        grids = [(table, rid, _grid(lt, table, rid)) for table, rid in checks]
        if isinstance(c, ch.BuildingAdded):
            pt = c.geometry.centroid
            cell = latlng_to_cells(np.array([pt.y]), np.array([pt.x]), PARTITION_RES)
            grids.append(("buildings", "new", str(lt.t.grid_of_cells(cell)[0]) or None))
        for table, rid, g in grids:
            if g is not None and g not in scope:
                raise PermissionDenied(f"changes[{i}] ({c.kind}): {table[:-1]} {rid} is outside your scope "
                                       f"({role.scope_level} {', '.join(role.scope_codes)}); change only records of "
                                       "your own scope.")


@router.post("/changes", status_code=201, summary="Commit one change set to the live twin (all or nothing)")
def post_changes(request: Request, a: Audited, body: ChangeSetRequest) -> Response:
    """Validate and commit the change set atomically; the caller is the author of every change."""
    if not a.role.can_edit:
        raise PermissionDenied(f"user {a.role.user!r} ({a.role.name}) may not change records.")
    changes = parse_changes(body, a.role)
    lt = live_twin(request)
    a.counts = {"changes": len(changes)}
    a.detail = "change set of " + ", ".join(sorted({c.kind for c in changes}))[:400]
    check_change_scope(lt, changes, a.role)
    res = lt.apply(changes, role=a.role.name)
    a.detail = f"change set {res.set_id}: " + a.detail[len("change set of "):]
    return json_response({"set_id": res.set_id, "seqs": list(res.seqs), "created": [list(c) for c in res.created],
                          "n_changes": len(changes), "committed_on": dt.date.today().isoformat()}, status=201)
