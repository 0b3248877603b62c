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
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import openpyxl
import pandas as pd
from openpyxl.utils import get_column_letter
from openpyxl.utils.exceptions import InvalidFileException

from twin.access.roles import DISTRICT, Role
from twin.access.scope import record_scope, sees_everything
from twin.errors import PermissionDenied, ValidationError
from twin.model import Twin

__all__ = [
    "Column", "SheetSchema", "RESIDENTS", "BUSINESSES", "SCHEMAS", "SheetIssue", "ParsedSheet", "SheetDiff",
    "FORMULA_TRIGGERS", "neutralise", "to_sheet_frame", "frame_to_csv", "frame_to_xlsx", "export_sheet",
    "parse_sheet", "parse_csv", "parse_xlsx", "diff_sheets", "located_records", "community_records",
]

Kind = Literal["id", "date", "bool", "choice", "text"]
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_TRUE = {"true", "1", "yes", "y", "是", "t"}
_FALSE = {"false", "0", "no", "n", "否", "f"}
_DATE = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[ T]00:00(?::00)?)?$")
_ID = re.compile(r"^\d+$")


@dataclass(frozen=True)
class Column:
    """One sheet column: ``kind`` decides parsing; ``read_only`` columns (context, e.g. the grid) are exported,
    accepted on upload and ignored by the diff; ``choices`` for ``kind="choice"``."""

    name: str
    kind: Kind
    required: bool = True
    read_only: bool = False
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class SheetSchema:
    """The columns of one kind of sheet; ``key`` is the id column (blank on upload = a new record)."""

    name: str
    key: str
    columns: tuple[Column, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


RESIDENTS = SheetSchema("residents", "person_id", (
    Column("person_id", "id"), Column("household_id", "id"), Column("dwelling_id", "id"),
    Column("building_id", "id"), Column("sex", "choice", choices=("M", "F")), Column("birth_date", "date"),
    Column("disabled", "bool"), Column("low_income", "bool"), Column("pregnant", "bool"),
    Column("grid_code", "text", required=False, read_only=True)))
BUSINESSES = SheetSchema("businesses", "business_id", (
    Column("business_id", "id"), Column("building_id", "id"),
    Column("kind", "choice", choices=("enterprise", "individual", "organisation")), Column("industry", "text"),
    Column("credit", "choice", choices=("green", "yellow", "red")),
    Column("grid_code", "text", required=False, read_only=True)))
SCHEMAS = {"residents": RESIDENTS, "businesses": BUSINESSES}


@dataclass(frozen=True)
class SheetIssue:
    """One problem of an upload: Excel row (header = 1, ``None`` = whole file), column, rule, message."""

    row: int | None
    column: str
    rule: str
    message: str

    def __str__(self) -> str:
        where = "file" if self.row is None else f"row {self.row}"
        return f"{where}{', ' + self.column if self.column else ''}: {self.message} [{self.rule}]"


@dataclass
class ParsedSheet:
    """An upload read against a schema: the valid rows (index = Excel row number) and every issue found."""

    schema: SheetSchema
    frame: pd.DataFrame
    issues: list[SheetIssue] = field(default_factory=list)
    rows_read: int = 0

    @property
    def ok(self) -> bool:
        return not self.issues

    @property
    def rejected_rows(self) -> list[int]:
        return sorted({i.row for i in self.issues if i.row is not None and i.row > 1})

    def raise_for_issues(self) -> None:
        """:class:`ValidationError` listing the first 20 issues (one per line) when there is any."""
        if self.issues:
            shown = "\n".join(str(i) for i in self.issues[:20])
            more = f"\n… and {len(self.issues) - 20} more" if len(self.issues) > 20 else ""
            raise ValidationError(f"the {self.schema.name} sheet has {len(self.issues)} problem(s):\n{shown}{more}")


# --- out -------------------------------------------------------------------------------------------------------

def neutralise(value: Any) -> Any:
    """``"'" + value`` for text starting with a formula trigger (``= + - @`` tab CR); anything else unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def to_sheet_frame(frame: pd.DataFrame, schema: SheetSchema) -> pd.DataFrame:
    """``frame``'s schema columns (optional ones when present) with the sheet dtypes: ids ``Int64``, dates
    ``datetime64[s]``, booleans ``bool``, text ``str``. What an export holds and a clean upload parses back to."""
    missing = [c.name for c in schema.columns if c.required and c.name not in frame.columns]
    if missing:
        raise ValidationError(f"{schema.name} frame lacks columns {missing}.")
    out = pd.DataFrame(index=pd.RangeIndex(len(frame)))
    for c in schema.columns:
        if c.name not in frame.columns:
            continue
        v = frame[c.name].reset_index(drop=True)
        if c.kind == "id":
            out[c.name] = pd.array(v, dtype="Int64")
        elif c.kind == "date":
            out[c.name] = pd.to_datetime(v).astype("datetime64[s]")
        elif c.kind == "bool":
            out[c.name] = v.astype(bool)
        else:
            out[c.name] = v.astype(object).where(v.notna(), "").astype(str)
    return out


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


# --- in --------------------------------------------------------------------------------------------------------

def parse_sheet(data: bytes, schema: SheetSchema, *, filename: str = "") -> ParsedSheet:
    """Parse an upload, XLSX when it is a zip (or named ``*.xlsx``), else CSV."""
    if data[:4] == b"PK\x03\x04" or filename.lower().endswith((".xlsx", ".xlsm")):
        return parse_xlsx(data, schema)
    return parse_csv(data, schema)


def parse_csv(data: bytes, schema: SheetSchema) -> ParsedSheet:
    """Read CSV bytes (UTF-8, BOM optional) against ``schema``."""
    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        row = body[:e.start].count(b"\n") + 1
        try:
            body.decode("gb18030")
            msg = ("the file is GBK-encoded (GBK/GB18030 bytes, not UTF-8); save it as 'CSV UTF-8 (逗号分隔)' "
                   "and upload it again")
        except UnicodeDecodeError:
            msg = f"the file is not UTF-8 text (byte 0x{body[e.start]:02x}); save it as 'CSV UTF-8' and upload again"
        return _rejected(schema, SheetIssue(row, "", "encoding", msg))
    try:
        records = [r for r in csv.reader(io.StringIO(text, newline=""))]
    except csv.Error as e:
        return _rejected(schema, SheetIssue(None, "", "bad_value", f"not a readable CSV file: {e}"))
    if not records:
        return _rejected(schema, SheetIssue(1, "", "missing_column", "the file is empty; it needs a header row"))
    rows = [(i + 2, r) for i, r in enumerate(records[1:]) if any(c.strip() for c in r)]
    formulas = [SheetIssue(n, _colname(records[0], j), "formula", f"cell {get_column_letter(j + 1)}{n} is a "
                           f"formula {c[:40]!r}; type the value, or start it with an apostrophe to keep it as text")
                for n, r in rows for j, c in enumerate(r) if c.startswith("=")]
    return _read(schema, records[0], rows, formulas)


def parse_xlsx(data: bytes, schema: SheetSchema) -> ParsedSheet:
    """Read XLSX bytes against ``schema`` (the sheet named like the schema, else the first)."""
    try:
        wb = openpyxl.load_workbook(io.BytesIO(data), data_only=False)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError) as e:
        return _rejected(schema, SheetIssue(None, "", "not_xlsx", f"not a readable XLSX workbook ({e}); save it "
                                            "from Excel as 'Excel Workbook (*.xlsx)'"))
    ws = wb[schema.name] if schema.name in wb.sheetnames else wb.worksheets[0]
    issues: list[SheetIssue] = []
    for rng in ws.merged_cells.ranges:
        if rng.min_row == 1:
            issues.append(SheetIssue(1, "", "merged_header", f"merged cells {rng.coord} in the header; unmerge "
                                     "them and keep one header row of column names (no title row above it)"))
    if issues:
        return _rejected(schema, *issues)
    grid = [list(r) for r in ws.iter_rows(values_only=False)]
    if not grid:
        return _rejected(schema, SheetIssue(1, "", "missing_column", "the sheet is empty; it needs a header row"))
    header = ["" if c.value is None else str(c.value) for c in grid[0]]
    merged_rows = {r for rng in ws.merged_cells.ranges for r in range(rng.min_row, rng.max_row + 1)}
    rows: list[tuple[int, list[Any]]] = []
    for cells in grid[1:]:
        n = cells[0].row
        values = [c.value for c in cells]
        if all(v is None or (isinstance(v, str) and not v.strip()) for v in values):
            continue
        rows.append((n, values))
        for j, c in enumerate(cells):
            if c.data_type == "f" or not isinstance(c.value, (str, int, float, bool, dt.date, type(None))):
                issues.append(SheetIssue(n, _colname(header, j), "formula", f"cell {c.coordinate} holds a formula; "
                                         "paste values only (Paste Special → Values)"))
        if n in merged_rows:
            issues.append(SheetIssue(n, "", "merged_cells", "the row has merged cells; unmerge them"))
    return _read(schema, header, rows, issues)


def _colname(header: Sequence[Any], j: int) -> str:
    return str(header[j]).strip() if j < len(header) and header[j] is not None else get_column_letter(j + 1)


def _rejected(schema: SheetSchema, *issues: SheetIssue) -> ParsedSheet:
    empty = to_sheet_frame(pd.DataFrame({c.name: pd.Series(dtype=object) for c in schema.columns}), schema)
    return ParsedSheet(schema, empty.rename_axis("row"), list(issues), 0)


def _header_issues(schema: SheetSchema, header: list[str]) -> list[SheetIssue]:
    out: list[SheetIssue] = []
    names = [h.strip().lstrip("\ufeff") for h in header]
    while names and not names[-1]:
        names.pop()
    known = set(schema.names)
    for j, h in enumerate(names):
        letter = get_column_letter(j + 1)
        if not h:
            out.append(SheetIssue(1, letter, "empty_header", f"column {letter} has no name; the header must be "
                                  "one row of column names (is there a title row above it?)"))
        elif h not in known:
            out.append(SheetIssue(1, h, "unknown_column", f"unknown column {h!r} in {letter}1; the columns are "
                                  f"{', '.join(schema.names)}"))
        elif names.index(h) != j:
            out.append(SheetIssue(1, h, "duplicate_column", f"column {h!r} appears twice ({letter}1)"))
    for c in schema.columns:
        if c.required and c.name not in names:
            out.append(SheetIssue(1, c.name, "missing_column", f"missing column {c.name!r}"))
    return out


def _read(schema: SheetSchema, header: Sequence[Any], rows: list[tuple[int, list[Any]]],
          issues: list[SheetIssue]) -> ParsedSheet:
    head = ["" if h is None else str(h).strip().lstrip("\ufeff") for h in header]
    file_issues = _header_issues(schema, head)
    if file_issues:
        below = {str(v).strip() for v in rows[0][1] if v is not None} if rows and rows[0][0] == 2 else set()
        if len(below & set(schema.names)) >= 2:
            file_issues.insert(0, SheetIssue(1, "", "title_row", "row 1 looks like a title above the header (row 2 "
                                             "holds the column names); delete row 1 so the header is row 1"))
        return _rejected(schema, *file_issues, *issues)
    width = max((j + 1 for j, h in enumerate(head) if h), default=0)
    bad = {i.row for i in issues}
    records: list[dict[str, Any]] = []
    numbers: list[int] = []
    for n, values in rows:
        if len(values) > width and any(v not in (None, "") for v in values[width:]):
            issues.append(SheetIssue(n, "", "extra_cells", f"row {n} has values beyond the last column "
                                     f"{get_column_letter(width)}"))
            bad.add(n)
            continue
        rec, row_issues = _convert(schema, head[:width], values[:width], n)
        flagged = {i.column for i in issues if i.row == n}
        row_issues = [i for i in row_issues if i.column not in flagged]  # a formula cell: one issue, not two
        issues += row_issues
        if row_issues or n in bad:
            continue
        records.append(rec)
        numbers.append(n)
    issues += _duplicates(schema, records, numbers)
    dup_rows = {i.row for i in issues if i.rule == "duplicate_id"}
    keep = [i for i, n in enumerate(numbers) if n not in dup_rows]
    frame = pd.DataFrame([records[i] for i in keep], columns=[c for c in schema.names if c in head])
    frame = to_sheet_frame(frame, schema)
    frame.index = pd.Index([numbers[i] for i in keep], name="row", dtype="int64")
    issues.sort(key=lambda i: (i.row or 0, i.column))
    return ParsedSheet(schema, frame, issues, len(rows))


def _convert(schema: SheetSchema, head: list[str], values: list[Any], n: int) -> tuple[dict[str, Any], list[SheetIssue]]:
    rec: dict[str, Any] = {}
    issues: list[SheetIssue] = []
    cells = dict(zip(head, list(values) + [None] * (len(head) - len(values))))
    for name, raw in cells.items():
        c = schema.column(name)
        v = raw.strip() if isinstance(raw, str) else raw
        if isinstance(v, str) and len(v) > 1 and v[0] == "'" and v[1] in (*FORMULA_TRIGGERS, "\n"):
            v = v[1:]  # our own neutralisation
        empty = v is None or v == ""
        try:
            rec[name] = _value(c, v, empty, is_key=name == schema.key)
        except ValueError as e:
            rule = {"id": "bad_id", "date": "bad_date"}.get(c.kind, "bad_value")
            issues.append(SheetIssue(n, name, rule, f"{name} {raw!r}: {e}"))
    return rec, issues


def _value(c: Column, v: Any, empty: bool, *, is_key: bool) -> Any:
    if c.kind == "id":
        if empty:
            if is_key:
                return pd.NA  # a new record: the live core gives it an id
            raise ValueError("empty; every row needs an id")
        if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
            raise ValueError("not a whole number ≥ 0")
        if isinstance(v, (int, float)):
            if v < 0:
                raise ValueError("not a whole number ≥ 0")
            return int(v)
        if not _ID.match(str(v)):
            raise ValueError("not a whole number ≥ 0")
        return int(v)
    if empty:
        if c.required and not c.read_only:
            raise ValueError("empty")
        return None if c.kind != "text" else ""
    if c.kind == "date":
        if isinstance(v, dt.datetime):
            return pd.Timestamp(v.date())
        if isinstance(v, dt.date):
            return pd.Timestamp(v)
        m = _DATE.match(str(v))
        try:
            if not m:
                raise ValueError
            return pd.Timestamp(dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3))))
        except ValueError:
            raise ValueError("not a date like 1956-12-31") from None
    if c.kind == "bool":
        if isinstance(v, bool):
            return v
        s = str(v).strip().lower()
        if s in _TRUE or s in _FALSE:
            return s in _TRUE
        raise ValueError("not TRUE or FALSE")
    s = str(v)
    if c.kind == "choice" and s not in c.choices:
        raise ValueError(f"not one of {', '.join(c.choices)}")
    return s


def _duplicates(schema: SheetSchema, records: list[dict[str, Any]], numbers: list[int]) -> list[SheetIssue]:
    seen: dict[int, list[int]] = {}
    for rec, n in zip(records, numbers):
        k = rec.get(schema.key)
        if k is not None and k is not pd.NA:
            seen.setdefault(int(k), []).append(n)
    out = []
    for k, where in seen.items():
        for n in where[1:] if len(where) > 1 else ():
            out.append(SheetIssue(n, schema.key, "duplicate_id", f"{schema.key} {k} is also on row {where[0]}; "
                                  "each record may appear once"))
        if len(where) > 1:
            out.append(SheetIssue(where[0], schema.key, "duplicate_id", f"{schema.key} {k} is also on row(s) "
                                  f"{', '.join(map(str, where[1:]))}; each record may appear once"))
    return out


# --- diff ------------------------------------------------------------------------------------------------------

@dataclass
class SheetDiff:
    """Uploaded vs current: ``added`` rows (new ids or blank ids), ``removed`` rows, and ``changed`` fields
    (``id``, ``row`` in the upload, ``field``, ``old``, ``new``)."""

    schema: SheetSchema
    added: pd.DataFrame
    removed: pd.DataFrame
    changed: pd.DataFrame

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
    return SheetDiff(schema, added, removed, changed)
