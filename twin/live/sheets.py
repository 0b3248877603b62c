"""Spreadsheets in and out for the bulk path: a community exports its residents or businesses, edits them offline
and uploads them; the twin shows the diff. Pure functions over bytes and frames (no file is opened here).

* **Out** (:func:`export_sheet`, :func:`frame_to_csv`, :func:`frame_to_xlsx`): CSV in UTF-8 **with BOM** (Excel then
  reads Chinese text correctly) and XLSX (openpyxl). Text cells starting with ``=``, ``+``, ``-``, ``@``, tab or
  carriage return get a leading apostrophe (:func:`neutralise`) so no spreadsheet runs them as formulas; numbers,
  dates and booleans stay typed. Parsing removes that apostrophe again (XML turns a carriage return into a line
  feed, so an XLSX cell starting with CR comes back starting with LF).
* **In** (:func:`parse_sheet`, :func:`parse_csv`, :func:`parse_xlsx`): each problem is a :class:`SheetIssue` with
  the row number the user sees in Excel (header = row 1; ``None`` = the whole file) and the rule broken: ``encoding``
  (not UTF-8; GBK/GB18030 files are **rejected, not decoded**: GBK bytes also decode as other legacy encodings and a
  wrong guess would silently corrupt names, so the user is told to save as UTF-8), ``not_xlsx``, ``merged_header``,
  ``merged_cells``, ``title_row``, ``empty_header``, ``unknown_column``, ``missing_column``, ``duplicate_column``, ``formula``
  (XLSX formula cells; CSV cells starting with ``=`` that were not neutralised), ``bad_id``, ``bad_date``,
  ``bad_value``, ``duplicate_id``, ``extra_cells``. File-level problems reject every row; a row-level problem
  rejects that row only (:attr:`ParsedSheet.frame` holds the valid rows, indexed by their Excel row number).
* **Diff** (:func:`diff_sheets`): added / removed / changed rows, field by field (:class:`SheetDiff`); a row with a
  blank id is a new record. Turning the diff into change events is the live core's job.

Sheets label nothing as real: the XLSX export carries an ``about`` sheet saying the records are synthetic.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import openpyxl
import pandas as pd

from twin.access.roles import DISTRICT, Role
from twin.access.scope import record_scope, sees_everything
from twin.errors import PermissionDenied, ValidationError
from twin.live import changes as ch
from twin.live._sheet_read import parse_csv, parse_sheet, parse_xlsx
from twin.live._sheet_types import (
    BUSINESSES,
    FORMULA_TRIGGERS,
    RESIDENTS,
    SCHEMAS,
    Column,
    ParsedSheet,
    SheetIssue,
    SheetSchema,
    neutralise,
    to_sheet_frame,
)
from twin.model import Twin

__all__ = [
    "Column", "SheetSchema", "RESIDENTS", "BUSINESSES", "SCHEMAS", "SheetIssue", "ParsedSheet", "SheetDiff",
    "FORMULA_TRIGGERS", "neutralise", "to_sheet_frame", "frame_to_csv", "frame_to_xlsx", "export_sheet",
    "parse_sheet", "parse_csv", "parse_xlsx", "diff_sheets", "diff_to_changes", "located_records",
    "community_records",
]


def _cell_text(v: Any) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) or v is pd.NaT:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "TRUE" if v else "FALSE"
    if isinstance(v, (pd.Timestamp, dt.datetime)):
        return v.strftime("%Y-%m-%d") if (v.hour, v.minute, v.second) == (0, 0, 0) else v.isoformat()
    return str(neutralise(v))


def frame_to_csv(frame: pd.DataFrame) -> bytes:
    """CSV bytes in UTF-8 with BOM; text neutralised, dates ``YYYY-MM-DD``, booleans ``TRUE``/``FALSE``."""
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow([neutralise(str(c)) for c in frame.columns])
    for row in frame.itertuples(index=False, name=None):
        w.writerow([_cell_text(v) for v in row])
    return b"\xef\xbb\xbf" + buf.getvalue().encode("utf-8")


def _xlsx_value(v: Any) -> Any:
    if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and np.isnan(v)):
        return None
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v)
    if isinstance(v, pd.Timestamp):
        return v.to_pydatetime()
    if isinstance(v, dt.date):
        return v
    return neutralise(v) if isinstance(v, str) else neutralise(str(v))


def frame_to_xlsx(frame: pd.DataFrame, *, sheet_name: str = "records", note: str | None = None) -> bytes:
    """XLSX bytes: one sheet of ``frame`` (header row 1, typed cells, text neutralised, dates ``yyyy-mm-dd``) and,
    when ``note`` is given, an ``about`` sheet holding it."""
    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet(sheet_name)
    ws.append([neutralise(str(c)) for c in frame.columns])
    dates = [i for i, c in enumerate(frame.columns) if pd.api.types.is_datetime64_any_dtype(frame[c])]
    for row in frame.itertuples(index=False, name=None):
        values = [_xlsx_value(v) for v in row]
        for i in dates:
            if values[i] is not None:
                cell = openpyxl.cell.WriteOnlyCell(ws, value=values[i])
                cell.number_format = "yyyy-mm-dd"
                values[i] = cell
        ws.append(values)
    if note:
        about = wb.create_sheet("about")
        about.append([note])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def export_sheet(frame: pd.DataFrame, schema: SheetSchema, fmt: str) -> bytes:
    """A community's records (``frame``, e.g. ``twin.persons`` rows plus ``grid_code``) as a ``"csv"`` or
    ``"xlsx"`` sheet of ``schema``; the XLSX says the records are synthetic."""
    sheet = to_sheet_frame(frame, schema)
    if fmt == "csv":
        return frame_to_csv(sheet)
    if fmt == "xlsx":
        return frame_to_xlsx(sheet, sheet_name=schema.name, note="SYNTHETIC records of the Chancheng Twin "
                                                                  "(not real residents or businesses).")
    raise ValidationError(f"unknown sheet format {fmt!r}; use 'csv' or 'xlsx'.")


def located_records(t: Twin, kind: str = "persons") -> pd.DataFrame:
    """``t.persons`` or ``t.businesses`` with each record's ``grid_code``, ``community_code`` and ``town_code``
    (its building's cell in the partition in force)."""
    if kind not in ("persons", "businesses"):
        raise ValidationError(f"unknown record kind {kind!r}; use 'persons' or 'businesses'.")
    grid_of_building = pd.Series(t.buildings["grid_code"].astype(str).to_numpy(),
                                 index=t.buildings["building_id"].to_numpy())
    out = getattr(t, kind).copy()
    out["grid_code"] = grid_of_building.reindex(out["building_id"].to_numpy()).fillna("").to_numpy(dtype=str)
    g = t.grids.set_index(t.grids["grid_code"].astype(str))
    out["community_code"] = out["grid_code"].map(g["community_code"].astype(str)).fillna("").astype(str)
    out["town_code"] = out["grid_code"].map(g["town_code"].astype(str)).fillna("").astype(str)
    return out


def community_records(located: pd.DataFrame, community_code: str, *, t: Twin, role: Role = DISTRICT) -> pd.DataFrame:
    """The rows of ``located`` (:func:`located_records`, or the live state's) in one community, when ``role`` may
    see that community's records (:func:`twin.access.scope.record_scope`); else :class:`PermissionDenied`."""
    code = str(community_code)
    grids = t.grids.loc[t.grids["community_code"].astype(str) == code, "grid_code"].astype(str)
    if grids.empty:
        raise ValidationError(f"unknown community code {code!r}.")
    if not role.can_see_records or not (sees_everything(role) or grids.isin(record_scope(role, t)).all()):
        raise PermissionDenied(f"user {role.user!r} ({role.name}) may not export the records of community {code}.")
    return located.loc[located["community_code"].astype(str) == code].reset_index(drop=True)


# --- diff ------------------------------------------------------------------------------------------------------

@dataclass
class SheetDiff:
    """Uploaded vs current: ``added`` rows (new ids or blank ids), ``removed`` rows, and ``changed`` fields
    (``id``, ``row`` in the upload, ``field``, ``old``, ``new``)."""

    schema: SheetSchema
    added: pd.DataFrame
    removed: pd.DataFrame
    changed: pd.DataFrame
    uploaded: pd.DataFrame | None = None
    """The valid uploaded rows the diff was made from (index = Excel row)."""

    @property
    def empty(self) -> bool:
        return not (len(self.added) or len(self.removed) or len(self.changed))

    def to_rows(self) -> list[dict[str, Any]]:
        """One dict per change for display: ``change`` (added/removed/changed), ``id``, ``row``, ``field``,
        ``old``, ``new`` (whole-row changes have ``field`` ``""`` and the record as ``new``/``old``)."""
        key = self.schema.key
        out: list[dict[str, Any]] = []
        for n, r in self.added.iterrows():
            rec = {k: _plain(v) for k, v in r.items()}
            out.append({"change": "added", "id": _plain(r[key]), "row": int(n), "field": "", "old": None, "new": rec})
        for _, r in self.removed.iterrows():
            rec = {k: _plain(v) for k, v in r.items()}
            out.append({"change": "removed", "id": _plain(r[key]), "row": None, "field": "", "old": rec, "new": None})
        for r in self.changed.itertuples(index=False):
            out.append({"change": "changed", "id": int(r.id), "row": int(r.row), "field": r.field,
                        "old": _plain(r.old), "new": _plain(r.new)})
        return out


def _same(x: Any, y: Any) -> bool:
    if pd.isna(x) or pd.isna(y):
        return bool(pd.isna(x) and pd.isna(y))
    return bool(x == y)


def _plain(v: Any) -> Any:
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, pd.Timestamp):
        return v.date().isoformat()
    return v.item() if isinstance(v, np.generic) else v


def diff_sheets(current: pd.DataFrame, uploaded: ParsedSheet | pd.DataFrame, schema: SheetSchema | None = None
                ) -> SheetDiff:
    """What the upload changes relative to ``current`` (the records as exported/now), field by field.

    ``uploaded``: a :class:`ParsedSheet` (its valid rows) or a sheet frame indexed by Excel row. Read-only columns
    are not compared; a column missing from the upload is not compared either.
    """
    if isinstance(uploaded, ParsedSheet):
        schema, up = uploaded.schema, uploaded.frame
    else:
        if schema is None:
            raise ValidationError("diff_sheets needs the schema when given a plain frame.")
        up = uploaded
    cur = to_sheet_frame(current, schema)
    key = schema.key
    if cur[key].isna().any() or cur[key].duplicated().any():
        raise ValidationError(f"the current {schema.name} have blank or duplicate {key}s; cannot diff against them.")
    up_ids = up[key]
    is_new = up_ids.isna() | ~up_ids.isin(cur[key].dropna().to_numpy())
    added = up.loc[is_new.to_numpy()]
    removed = cur.loc[~cur[key].isin(up_ids.dropna().to_numpy())].reset_index(drop=True)
    fields = [c.name for c in schema.columns if not c.read_only and c.name != key and c.name in up.columns]
    both = up.loc[~is_new.to_numpy()]
    old = cur.set_index(key).loc[both[key].to_numpy(), fields]
    changes: list[dict[str, Any]] = []
    for f in fields:
        a, b = old[f].tolist(), both[f].tolist()
        for i in (i for i, (x, y) in enumerate(zip(a, b)) if not _same(x, y)):
            changes.append({"id": int(both[key].iloc[i]), "row": int(both.index[i]), "field": f,
                            "old": a[i], "new": b[i]})
    changed = pd.DataFrame(changes, columns=["id", "row", "field", "old", "new"])
    if len(changed):
        changed = changed.sort_values(["row", "field"], kind="stable").reset_index(drop=True)
    return SheetDiff(schema, added, removed, changed, up)


def _uploaded(diff: SheetDiff, row: int, column: str) -> Any:
    if diff.uploaded is None:
        raise ValidationError("this diff has no uploaded rows; make it with diff_sheets.")
    return diff.uploaded.loc[row, column]


# --- diff → change events (the live core applies them: twin.live.state.LiveTwin.apply) ----------------------------

_PERSON_FLAGS = ("disabled", "low_income", "pregnant")


def diff_to_changes(diff: SheetDiff, *, author: str, reason: str, effective_date: dt.date,
                    removed_as: str = "moves_out") -> tuple[list[ch.Change], list[SheetIssue]]:
    """The change events (:mod:`twin.live.changes`) a reviewed diff stands for, and the edits no change kind covers.

    Residents: an added row → :class:`~twin.live.changes.PersonMovesIn` (the live core gives the new id; an id
    typed in the sheet is not kept); a removed row → ``PersonMovesOut`` (``removed_as="dies"``:
    ``PersonDies``); a changed flag → ``PersonFlagChanged``; a changed dwelling and/or household →
    ``PersonMoves``. Businesses: added → ``BusinessOpens``, removed → ``BusinessCloses``, credit →
    ``BusinessCreditChanged``, building → ``BusinessMoves``. Corrections of sex, birth date, building (it follows
    the dwelling), business kind or industry are returned as ``unsupported`` issues with their upload row.
    Every change carries ``author``, ``reason`` and ``effective_date``; apply them as one change set.
    """
    if removed_as not in ("moves_out", "dies"):
        raise ValidationError(f"removed_as must be 'moves_out' or 'dies', got {removed_as!r}.")
    kw: dict[str, Any] = {"author": author, "reason": reason, "effective_date": effective_date}
    out: list[ch.Change] = []
    issues: list[SheetIssue] = []
    residents = diff.schema.key == "person_id"
    for _, r in diff.added.iterrows():
        if residents:
            out.append(ch.PersonMovesIn(dwelling_id=int(r["dwelling_id"]), sex=str(r["sex"]),
                                        birth_date=r["birth_date"].date(), household_id=int(r["household_id"]),
                                        disabled=bool(r["disabled"]), low_income=bool(r["low_income"]),
                                        pregnant=bool(r["pregnant"]), **kw))
        else:
            out.append(ch.BusinessOpens(building_id=int(r["building_id"]), business_kind=str(r["kind"]),
                                        industry=str(r["industry"]), credit=str(r["credit"]), **kw))
    for rid in diff.removed[diff.schema.key].astype(int):
        if residents:
            out.append((ch.PersonDies if removed_as == "dies" else ch.PersonMovesOut)(person_id=int(rid), **kw))
        else:
            out.append(ch.BusinessCloses(business_id=int(rid), **kw))
    for rid, rows in diff.changed.groupby("id", sort=False):
        new = dict(zip(rows["field"], rows["new"]))
        row = int(rows["row"].iloc[0])
        if residents:
            for f in _PERSON_FLAGS:
                if f in new:
                    out.append(ch.PersonFlagChanged(person_id=int(rid), flag=f, value=bool(new[f]), **kw))
            if "dwelling_id" in new or "household_id" in new:
                dwelling = new["dwelling_id"] if "dwelling_id" in new else _uploaded(diff, row, "dwelling_id")
                out.append(ch.PersonMoves(person_id=int(rid), dwelling_id=int(dwelling),
                                          household_id=None if "household_id" not in new else int(new["household_id"]),
                                          **kw))
            rest = [f for f in new if f not in (*_PERSON_FLAGS, "dwelling_id", "household_id")
                    and not (f == "building_id" and "dwelling_id" in new)]
        else:
            if "credit" in new:
                out.append(ch.BusinessCreditChanged(business_id=int(rid), credit=str(new["credit"]), **kw))
            if "building_id" in new:
                out.append(ch.BusinessMoves(business_id=int(rid), building_id=int(new["building_id"]), **kw))
            rest = [f for f in new if f not in ("credit", "building_id")]
        for f in rest:
            issues.append(SheetIssue(row, f, "unsupported", f"{diff.schema.key} {rid}: changing {f} is not a kind "
                                     "of change (a correction of the record); ask the district data office"))
    return out, issues

