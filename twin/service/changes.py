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

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from twin.access.roles import Role
from twin.errors import PermissionDenied, ValidationError
from twin.live import changes as ch
from twin.live.scoped import check_scope
from twin.service._live_twin import live_twin
from twin.service._responses import json_response
from twin.service.deps import Audited

__all__ = ["router", "ChangeSetRequest", "MAX_CHANGES"]

router = APIRouter(tags=["changes"])

MAX_CHANGES = 10_000
"""Changes per request (bigger sets: several requests, or the CLI)."""

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


@router.post("/changes", status_code=201, summary="Commit one change set to the live twin (all or nothing)")
def post_changes(request: Request, a: Audited, body: ChangeSetRequest) -> Response:
    """Validate and commit the change set atomically; the caller is the author of every change."""
    if not a.role.can_edit:
        raise PermissionDenied(f"user {a.role.user!r} ({a.role.name}) may not change records.")
    changes = parse_changes(body, a.role)
    lt = live_twin(request)
    a.counts = {"changes": len(changes)}
    a.detail = "change set of " + ", ".join(sorted({c.kind for c in changes}))[:400]
    check_scope(lt, changes, a.role)
    res = lt.apply(changes, role=a.role.name)
    a.detail = f"change set {res.set_id}: " + a.detail[len("change set of "):]
    return json_response({"set_id": res.set_id, "seqs": list(res.seqs), "created": [list(c) for c in res.created],
                          "n_changes": len(changes), "committed_on": dt.date.today().isoformat()}, status=201)
