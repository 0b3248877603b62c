"""Sheet schemas, issues and the canonical sheet frame (shared by :mod:`twin.live.sheets` and its reader)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from twin.errors import ValidationError

__all__ = ["Kind", "Column", "SheetSchema", "RESIDENTS", "BUSINESSES", "SCHEMAS", "SheetIssue", "ParsedSheet",
           "FORMULA_TRIGGERS", "neutralise", "to_sheet_frame"]

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
