"""Reading an uploaded sheet (CSV or XLSX bytes) against a schema, with row-level issues (see
:mod:`twin.live.sheets`)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from collections.abc import Sequence
from typing import Any

import openpyxl
import pandas as pd
from openpyxl.utils import get_column_letter
from openpyxl.utils.exceptions import InvalidFileException

from twin.live._sheet_types import (
    _DATE,
    _FALSE,
    _ID,
    _TRUE,
    FORMULA_TRIGGERS,
    Column,
    ParsedSheet,
    SheetIssue,
    SheetSchema,
    to_sheet_frame,
)

__all__ = ["parse_sheet", "parse_csv", "parse_xlsx"]

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
