"""The catalogue of grid item types (入格事项): category → default handling level and time limit.

The default catalogue ships as ``data/incident_catalogue.csv`` (35 item types in nine groups: disputes, public
order, public safety, fire hazards, environment/sanitation, illegal construction, public services, market
supervision, other). A deployment replaces it with its own list (Chancheng has 247 item types) by passing another
CSV with the same columns:

``code`` (unique, ``[a-z0-9_]``), ``name``, ``name_zh``, ``group``, ``level`` (``grid`` | ``community`` | ``town`` |
``district``: who handles a routine case), ``time_limit_h`` (hours from report to resolution at that level, > 0),
``share`` (optional: relative frequency, used only by the synthetic history).

Levels follow the four-level dispatch: "trivial matters stay in the grid, small ones in the community, big ones in
the town, hard ones go to district–town consultation".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from twin.errors import IngestError, NotFoundError, ValidationError
from twin.io import package_data

__all__ = [
    "LEVELS",
    "LEVEL_TIME_LIMIT_H",
    "DEFAULT_CATALOGUE",
    "load_catalogue",
    "category_row",
    "level_index",
    "time_limit_h",
]

LEVELS: tuple[str, ...] = ("grid", "community", "town", "district")
#: Minimum time limit (hours) once a case is handled at a level: escalation never shortens the time allowed.
LEVEL_TIME_LIMIT_H: Mapping[str, float] = {"grid": 24.0, "community": 72.0, "town": 120.0, "district": 240.0}
DEFAULT_CATALOGUE = "incident_catalogue.csv"
_COLUMNS = ("code", "name", "name_zh", "group", "level", "time_limit_h")
_CODE_RE = re.compile(r"^[a-z0-9_]+$")


def load_catalogue(path: str | Path | None = None) -> pd.DataFrame:
    """The catalogue as a frame indexed by ``code`` (default: the shipped ``twin/data/incident_catalogue.csv``).

    Raises :class:`IngestError` naming the file and the bad row (1-based data row) when a column is missing, a
    code is duplicated or malformed, a level is unknown or a time limit is not a positive number of hours.
    """
    p = Path(path) if path is not None else Path(str(package_data(DEFAULT_CATALOGUE)))
    if not p.exists():
        raise IngestError(f"{p}: catalogue file not found.")
    try:
        raw = pd.read_csv(p, dtype=str, keep_default_na=False)
    except Exception as e:  # pandas raises several parser errors
        raise IngestError(f"{p}: cannot read as CSV ({type(e).__name__}: {e}).") from e
    missing = [c for c in _COLUMNS if c not in raw.columns]
    if missing:
        raise IngestError(f"{p}: catalogue lacks column(s) {missing}; needs {list(_COLUMNS)} (+ optional share).")
    if raw.empty:
        raise IngestError(f"{p}: catalogue has no rows.")
    limits: list[float] = []
    shares: list[float] = []
    for i, row in enumerate(raw.itertuples(index=False), start=1):
        code, level, lim = row.code.strip(), row.level.strip(), row.time_limit_h.strip()
        if not _CODE_RE.match(code):
            raise IngestError(f"{p}: row {i}: category code {code!r} must be lower-case letters, digits and '_'.")
        if level not in LEVELS:
            raise IngestError(f"{p}: row {i} ({code}): level {level!r} is not one of {list(LEVELS)}.")
        try:
            hours = float(lim)
        except ValueError:
            hours = float("nan")
        if not hours > 0:
            raise IngestError(f"{p}: row {i} ({code}): time_limit_h {lim!r} must be a positive number of hours.")
        limits.append(hours)
        share = getattr(row, "share", "") or "1"
        try:
            shares.append(max(float(share), 0.0))
        except ValueError as e:
            raise IngestError(f"{p}: row {i} ({code}): share {share!r} is not a number.") from e
    dup = raw["code"].str.strip().duplicated(keep="first")
    if dup.any():
        i = int(dup.to_numpy().argmax()) + 1
        raise IngestError(f"{p}: row {i}: duplicate category code {raw['code'].iloc[i - 1]!r}.")
    out = raw.assign(
        code=raw["code"].str.strip(),
        level=raw["level"].str.strip(),
        time_limit_h=limits,
        share=shares,
    )
    total = out["share"].sum()
    out["share"] = out["share"] / total if total > 0 else 1.0 / len(out)
    return out.set_index("code", drop=False)


def category_row(catalogue: pd.DataFrame, code: str) -> pd.Series:
    """One category; :class:`NotFoundError` names the unknown code and shows valid ones."""
    if code not in catalogue.index:
        examples = ", ".join(catalogue.index[:5])
        raise NotFoundError(f"unknown incident category {code!r}; categories look like {examples} "
                            f"({len(catalogue)} in the catalogue; `twin incidents categories` lists them).")
    return catalogue.loc[code]


def level_index(level: str) -> int:
    """Position of ``level`` in :data:`LEVELS` (grid 0 … district 3)."""
    try:
        return LEVELS.index(level)
    except ValueError:
        raise ValidationError(f"unknown level {level!r}; use one of {list(LEVELS)}.") from None


def time_limit_h(catalogue: pd.DataFrame, category: str, level: str) -> float:
    """Hours allowed from report to resolution for ``category`` handled at ``level``.

    The category's own limit, but never less than the level's minimum (:data:`LEVEL_TIME_LIMIT_H`) when the case
    is handled above the category's default level (an escalated case gets at least the higher level's time).
    """
    row = category_row(catalogue, category)
    base = float(row["time_limit_h"])
    if level_index(level) > level_index(str(row["level"])):
        return max(base, float(LEVEL_TIME_LIMIT_H[level]))
    return base
