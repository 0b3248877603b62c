"""HTTP endpoints of the spreadsheet bulk path (:mod:`twin.live.sheets`): a community downloads its residents or
businesses, edits them offline, uploads them, reviews the diff and applies it as ONE change set through the live
twin (:meth:`twin.live.state.LiveTwin.apply`: all changes or none, audited, on the push feed).

* ``GET /sheets/{kind}?community=&format=csv|xlsx`` — the community's live records (CSV in UTF-8 with BOM; the
  XLSX says the records are SYNTHETIC). Outside the caller's record scope → 403.
* ``POST /sheets/{kind}/diff`` (multipart: ``file``, ``community``) — the diff (added / removed / changed, field by
  field), the row-level issues (Excel row numbers, header = row 1), the change kinds it stands for and
  ``base_seq`` (the change head it was made against). Nothing is written.
* ``POST /sheets/{kind}/apply`` (the same upload + ``reason``, ``confirm=true``, optional ``base_seq``,
  ``effective_date``, ``removed_as``) — one atomic change set by the named caller. Refused (422, nothing written)
  while the upload has issues or edits no change kind covers; 409 naming the record when a record of the diff was
  changed after ``base_seq`` (or meanwhile: compare-and-set on each record's version). New residents/businesses
  and moves must land in dwellings/buildings of the caller's scope (403 otherwise).

Dates are calendar days (CST); a change must take effect after the snapshot's reference date.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import pandas as pd
from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import Response

from twin.access.roles import Role
from twin.errors import PermissionDenied, ValidationError
from twin.live import changes as ch
from twin.live.scoped import check_scope, check_unchanged_since, live_records, with_versions
from twin.live.sheets import (
    SCHEMAS,
    ParsedSheet,
    SheetDiff,
    SheetIssue,
    community_records,
    diff_sheets,
    diff_to_changes,
    export_sheet,
    parse_sheet,
)
from twin.live.state import LiveTwin
from twin.service._live_twin import live_twin
from twin.service._responses import json_response
from twin.service.deps import Audited

__all__ = ["router"]

router = APIRouter(tags=["sheets"])

Kind = Annotated[Literal["residents", "businesses"], PathParam(description="residents or businesses")]
_TABLE = {"residents": "persons", "businesses": "businesses"}
_MEDIA = {"csv": "text/csv; charset=utf-8",
          "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
_CODE = "^[0-9]{1,20}$"
_MAX_ISSUES = 500


def _day(text: str | None) -> dt.date:
    if not text:
        return dt.date.today()
    try:
        return dt.date.fromisoformat(text)
    except ValueError as e:
        raise ValidationError(f"effective_date must be an ISO date like 2026-12-01, got {text!r}.") from e


def _current(lt: LiveTwin, kind: str, community: str, role: Role, day: dt.date) -> pd.DataFrame:
    """The community's live records on ``day`` (403 outside ``role``'s record scope)."""
    return community_records(live_records(lt, _TABLE[kind], day, community=community), community, t=lt.t, role=role)


@router.get("/sheets/{kind}", summary="Download a community's residents or businesses (CSV/XLSX, scoped)",
            response_class=Response, responses={200: {"content": {m: {} for m in _MEDIA.values()}}})
def sheets_export(request: Request, a: Audited, kind: Kind,
                  community: Annotated[str, Query(max_length=20, pattern=_CODE)],
                  format: Annotated[str, Query(pattern="^(csv|xlsx)$")] = "csv") -> Response:
    """The community's records as they are today (the live state), in the sheet the upload expects."""
    lt = live_twin(request)
    cur = _current(lt, kind, community, a.role, dt.date.today())
    data = export_sheet(cur, SCHEMAS[kind], format)
    a.counts = {"records": len(cur)}
    a.detail = f"{kind} of community {community} ({format})"
    return Response(data, media_type=_MEDIA[format],
                    headers={"Content-Disposition": f'attachment; filename="{kind}_{community}.{format}"',
                             "X-Twin-Change-Seq": str(lt.refresh())})


def _issue(i: SheetIssue) -> dict[str, Any]:
    return {"row": i.row, "column": i.column, "rule": i.rule, "message": i.message, "text": str(i)}


def _review(request: Request, a: Audited, kind: str, upload: bytes, filename: str, community: str,
            day: dt.date) -> tuple[LiveTwin, ParsedSheet, SheetDiff, int]:
    if not upload:
        raise ValidationError("the uploaded file is empty; upload the CSV or XLSX you downloaded from "
                              f"GET /sheets/{kind}.")
    lt = live_twin(request)
    seq = lt.refresh()
    cur = _current(lt, kind, community, a.role, day)
    parsed = parse_sheet(upload, SCHEMAS[kind], filename=filename)
    return lt, parsed, diff_sheets(cur, parsed), seq


def _summary(parsed: ParsedSheet, diff: SheetDiff, changes: list[ch.Change], unsupported: list[SheetIssue]
             ) -> dict[str, Any]:
    kinds: dict[str, int] = {}
    for c in changes:
        kinds[c.kind] = kinds.get(c.kind, 0) + 1
    return {"rows_read": parsed.rows_read, "rejected_rows": parsed.rejected_rows,
            "issues": [_issue(i) for i in parsed.issues[:_MAX_ISSUES]], "n_issues": len(parsed.issues),
            "unsupported": [_issue(i) for i in unsupported[:_MAX_ISSUES]],
            "added": len(diff.added), "removed": len(diff.removed), "changed_fields": len(diff.changed),
            "change_kinds": kinds, "applicable": parsed.ok and not unsupported and bool(changes)}


@router.post("/sheets/{kind}/diff", summary="Upload an edited sheet: the diff and its row-level issues "
                                            "(nothing is written)")
def sheets_diff(request: Request, a: Audited, kind: Kind,
                file: Annotated[UploadFile, File(description="the edited CSV (UTF-8) or XLSX")],
                community: Annotated[str, Form(max_length=20, pattern=_CODE)],
                effective_date: Annotated[str | None, Form(max_length=10)] = None,
                removed_as: Annotated[Literal["moves_out", "dies"], Form()] = "moves_out") -> Response:
    """Added / removed / changed rows (field by field, with the upload's Excel row), each issue with its row and
    rule, the change kinds the diff stands for and ``base_seq`` to pass to ``apply``. Rows with issues are left
    out of the diff (so a rejected row of an existing record shows as removed: fix the issues first)."""
    day = _day(effective_date)
    lt, parsed, diff, seq = _review(request, a, kind, file.file.read(), file.filename or "", community, day)
    changes, unsupported = diff_to_changes(diff, author=a.role.user, reason="review", effective_date=day,
                                           removed_as=removed_as)
    a.counts = {"rows": parsed.rows_read, "issues": len(parsed.issues), "changes": len(changes)}
    a.detail = f"{kind} diff of community {community}"
    return json_response({"kind": kind, "community": community, "base_seq": seq, "effective_date": day.isoformat(),
                          **_summary(parsed, diff, changes, unsupported), "rows": diff.to_rows()})


@router.post("/sheets/{kind}/apply", status_code=201, summary="Apply a reviewed sheet as one atomic change set")
def sheets_apply(request: Request, a: Audited, kind: Kind,
                 file: Annotated[UploadFile, File(description="the same edited CSV (UTF-8) or XLSX")],
                 community: Annotated[str, Form(max_length=20, pattern=_CODE)],
                 reason: Annotated[str, Form(min_length=1, max_length=500)],
                 confirm: Annotated[bool, Form(description="true: I reviewed the diff")] = False,
                 base_seq: Annotated[int | None, Form(ge=0, le=2**62, description="base_seq of the diff")] = None,
                 effective_date: Annotated[str | None, Form(max_length=10)] = None,
                 removed_as: Annotated[Literal["moves_out", "dies"], Form()] = "moves_out") -> Response:
    """Commit the diff's changes (author = the caller) as ONE change set, or nothing. 422 without
    ``confirm=true``, while the upload has issues, for edits no change kind covers or for an empty diff."""
    if not a.role.can_edit:
        raise PermissionDenied(f"user {a.role.user!r} ({a.role.name}) may not change records.")
    if not confirm:
        raise ValidationError("apply needs confirm=true: review the diff (POST /sheets/{kind}/diff) first.")
    if not reason.strip():
        raise ValidationError("reason must be non-empty text (why the records change).")
    day = _day(effective_date)
    lt, parsed, diff, seq = _review(request, a, kind, file.file.read(), file.filename or "", community, day)
    a.detail = f"{kind} apply for community {community}"
    if not parsed.ok:
        parsed.raise_for_issues()
    changes, unsupported = diff_to_changes(diff, author=a.role.user, reason=reason.strip(), effective_date=day,
                                           removed_as=removed_as)
    if unsupported:
        shown = "\n".join(str(i) for i in unsupported[:20])
        raise ValidationError(f"the sheet corrects fields no change covers ({len(unsupported)}):\n{shown}\n"
                              "undo those edits (ask the district data office for corrections) and upload again.")
    if not changes:
        raise ValidationError("the sheet changes nothing: it equals the current records.")
    check_scope(lt, changes, a.role)
    check_unchanged_since(lt, changes, seq if base_seq is None else base_seq)
    res = lt.apply(with_versions(lt, changes), role=a.role.name)
    a.counts = {"changes": len(changes)}
    a.detail = f"{kind} apply for community {community}: change set {res.set_id}"
    return json_response({"kind": kind, "community": community, "set_id": res.set_id, "seqs": list(res.seqs),
                          "created": [list(c) for c in res.created], "audit_seq": res.audit_seq,
                          "changes": len(changes), "effective_date": day.isoformat()}, status=201)
