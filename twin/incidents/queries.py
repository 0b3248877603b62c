"""The incident queue and statistics answered in SQL inside a caller's scope — no whole-table frame per request.

Scope (分权分域), as in the service: an incident belongs to the grid/community/town stored on it at dispatch; a case
not dispatched yet (``grid_code`` blank) is located in the current partition (``t``). Grid workers see their grids'
cases, community/town users their units', the district (and analysts) all.

* :func:`list_page` — newest report first (``reported_at`` desc, ``id`` desc) by an index, page by page or by a
  keyset cursor (``after``); the total comes from the maintained aggregates when only scope/unit/month filters apply.
* :func:`stats_rows` — :func:`twin.incidents.stats.incident_stats` figures from the aggregates maintained with every
  write (``incident_agg``, ``incident_agg_town``) and medians from the indexed handling times (``incident_handling``); ``None`` for a
  ``period`` alias other than ``M``/``Q``/``Y`` (the caller then uses the frame path).

Undispatched cases are read separately (they are few) and located with :func:`twin.incidents.dispatch.locate_points`.
Times are stored ISO-8601 text in CST, so text order is time order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from twin.access.roles import Role
from twin.errors import ValidationError
from twin.incidents import _derived
from twin.incidents._rows import FIELDS, iso
from twin.incidents.dispatch import DISTRICT_CODE, locate_points
from twin.incidents.lifecycle import OPEN_STATES
from twin.incidents.store import IncidentStore
from twin.model import Twin

__all__ = ["ListFilter", "LEVEL_COL", "list_page", "stats_rows", "encode_cursor", "decode_cursor"]

LEVEL_COL = {"grid": "grid_code", "community": "community_code", "town": "town_code"}
_UNITS = ("grid_code", "community_code", "town_code")
_COLS = ("id", *FIELDS)
_OPEN = ", ".join(f"'{s}'" for s in OPEN_STATES)
_BY = {"grid": "grid_code", "community": "community_code", "town": "town_code", "district": None}
_PERIOD_SQL = {None: "''", "M": "substr({c}, 1, 7)", "Y": "substr({c}, 1, 4)",
               "Q": "substr({c}, 1, 4) || 'Q' || CAST((CAST(substr({c}, 6, 2) AS INTEGER) + 2) / 3 AS TEXT)"}


@dataclass(frozen=True)
class ListFilter:
    """Filters of the queue. Unit codes match the stored units (located now for undispatched cases)."""

    states: Sequence[str] | None = None
    categories: Sequence[str] | None = None
    grid_code: str | None = None
    community_code: str | None = None
    town_code: str | None = None
    overdue: bool | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None


def encode_cursor(row: dict[str, Any]) -> str:
    """The keyset cursor after ``row`` (its stored ``reported_at`` and ``id``)."""
    return f"{row['reported_at']}_{int(row['id'])}"


def decode_cursor(cursor: str) -> tuple[str, int]:
    """``(reported_at text, id)`` of a cursor from :func:`encode_cursor`; :class:`ValidationError` when malformed."""
    at, _, rid = str(cursor).rpartition("_")
    try:
        dt.datetime.fromisoformat(at)
        return at, int(rid)
    except ValueError:
        raise ValidationError(f"after={cursor!r} is not a cursor from a previous page's 'next'.") from None


def _in(col: str, values: Sequence[str], params: list[Any]) -> str:
    params.extend(str(v) for v in values)
    return f"{col} IN ({', '.join('?' for _ in values)})" if values else "1 = 0"


def _late_sql(params: list[Any], now: dt.datetime) -> str:
    """1 when overdue at ``now`` (open past the deadline, or resolved after it), else 0 — as ``overdue_mask``."""
    params.append(iso(now))
    return (f"(CASE WHEN (state IN ({_OPEN}) AND deadline < ?) OR (resolved_at IS NOT NULL AND resolved_at > deadline) "
            "THEN 1 ELSE 0 END)")


def _common(f: ListFilter, now: dt.datetime, params: list[Any]) -> list[str]:
    where = []
    if f.states is not None:
        where.append(_in("state", f.states, params))
    if f.categories is not None:
        where.append(_in("category", f.categories, params))
    if f.since is not None:
        where.append("reported_at >= ?")
        params.append(iso(f.since))
    if f.until is not None:
        where.append("reported_at < ?")
        params.append(iso(f.until))
    if f.overdue is not None:
        where.append(_late_sql(params, now) + (" = 1" if f.overdue else " = 0"))
    return where


def _scope_sql(role: Role, f: ListFilter, params: list[Any]) -> list[str]:
    where = []
    col = LEVEL_COL.get(role.scope_level)
    if col is not None:
        where.append(_in(col, role.scope_codes, params))
    for c in _UNITS:
        if getattr(f, c) is not None:
            where.append(f"{c} = ?")
            params.append(getattr(f, c))
    return where


def _undispatched(istore: IncidentStore, t: Twin, role: Role, f: ListFilter, now: dt.datetime,
                  extra: str = "", extra_params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """Cases without stored units matching ``f``, located now and kept when inside the caller's scope."""
    params: list[Any] = []
    where = ["grid_code = ''", *_common(f, now, params)]  # writes store '' (never NULL) for "no units yet"
    if extra:
        where.append(extra)
        params.extend(extra_params)
    rows = istore.store.query(f"SELECT {', '.join(_COLS)} FROM incidents WHERE {' AND '.join(where)}", params)
    if not rows:
        return []
    out = [dict(zip(_COLS, r, strict=True)) for r in rows]
    loc = locate_points(t, np.array([r["lng"] for r in out], float), np.array([r["lat"] for r in out], float))
    col = LEVEL_COL.get(role.scope_level)
    keep = []
    for r, codes in zip(out, loc[list(_UNITS)].to_dict("records"), strict=True):
        r.update({c + "_now": str(codes[c]) for c in _UNITS})
        if col is not None and r[col + "_now"] not in role.scope_codes:
            continue
        if any(getattr(f, c) is not None and r[c + "_now"] != getattr(f, c) for c in _UNITS):
            continue
        keep.append(r)
    return keep


def _order_key(r: dict[str, Any]) -> tuple[str, int]:
    return (str(r["reported_at"]), int(r["id"]))


def list_page(istore: IncidentStore, t: Twin, role: Role, f: ListFilter, *, now: dt.datetime, page: int = 0,
              page_size: int = 100, after: str | None = None) -> tuple[list[dict[str, Any]], list[bool], int,
                                                                         str | None]:
    """One page of the queue inside ``role``'s scope: ``(rows, overdue flags, total, next cursor)``.

    Rows are stored values by column (plus ``grid_code_now``/… units), newest report first. ``after`` (a cursor
    from the previous page) replaces ``page``: it costs the same on every page.
    """
    params: list[Any] = []
    where = ["grid_code <> ''", *_scope_sql(role, f, params), *_common(f, now, params)]
    cur_params: list[Any] = []
    cur_sql = ""
    if after is not None:
        at, rid = decode_cursor(after)
        cur_sql, cur_params = "(reported_at < ? OR (reported_at = ? AND id < ?))", [at, at, rid]
    undisp = sorted(_undispatched(istore, t, role, f, now, cur_sql, cur_params), key=_order_key, reverse=True)
    offset = 0 if after is not None else page * page_size
    head = 0 if undisp else offset  # with located cases to merge in, read the dispatched ones from the top
    limit = offset - head + page_size + 1  # one more tells whether there is a next page
    sql = (f"SELECT {', '.join(_COLS)} FROM incidents WHERE {' AND '.join(where + ([cur_sql] if cur_sql else []))} "
           "ORDER BY reported_at DESC, id DESC LIMIT ? OFFSET ?")
    rows = [dict(zip(_COLS, r, strict=True)) for r in istore.store.query(sql, [*params, *cur_params, limit, head])]
    for r in rows:
        r.update({c + "_now": r[c] for c in _UNITS})
    merged = sorted(rows + undisp, key=_order_key, reverse=True) if undisp else rows
    chunk = merged[offset - head: offset - head + page_size]
    total = _count(istore, role, f, now, where, params) + (
        len(_undispatched(istore, t, role, f, now)) if after is not None else len(undisp))
    now_text = iso(now)
    flags = [_is_late(r, now_text) for r in chunk]
    more = len(merged) > offset - head + page_size
    return chunk, flags, total, encode_cursor(chunk[-1]) if chunk and more else None


def _is_late(r: dict[str, Any], now_text: str | None) -> bool:
    """Overdue at ``now_text`` (stored ISO text): open past the deadline, or resolved after it."""
    deadline, resolved = r["deadline"], r["resolved_at"]
    if deadline is None:
        return False
    return bool((r["state"] in OPEN_STATES and deadline < now_text) or (resolved is not None and resolved > deadline))


def _month_aligned(v: dt.datetime | None) -> bool:
    return v is None or (v.day == 1 and v.time() == dt.time(0) and v.utcoffset() == dt.timedelta(hours=8))


def _count(istore: IncidentStore, role: Role, f: ListFilter, now: dt.datetime, where: list[str],
           params: list[Any]) -> int:
    """Dispatched cases matching: summed from ``incident_agg`` when only scope/unit/month filters apply."""
    if f.states is None and f.categories is None and f.overdue is None and _month_aligned(f.since) \
            and _month_aligned(f.until):
        p: list[Any] = []
        table, units = _agg_table(role, f, None)
        w = [units, *_scope_sql(role, f, p), *_month_range(f.since, f.until, p)]
        return int(istore.store.query(f"SELECT COALESCE(SUM(n), 0) FROM {table} WHERE {' AND '.join(w)}", p)[0][0])
    return int(istore.store.query(f"SELECT COUNT(*) FROM incidents WHERE {' AND '.join(where)}", params)[0][0])


def _agg_table(role: Role, f: ListFilter, by: str | None) -> tuple[str, str]:
    """The aggregate table that answers (``incident_agg_town`` when neither scope, filters nor ``by`` go below
    towns) and its "has units" condition."""
    town_only = role.scope_level in ("district", "town") and f.grid_code is None and f.community_code is None \
        and by in (None, "district", "town")
    return ("incident_agg_town", "town_code <> ''") if town_only else ("incident_agg", "grid_code <> ''")


def _month_range(since: dt.datetime | None, until: dt.datetime | None, params: list[Any]) -> list[str]:
    w = []
    if since is not None:
        w.append("month >= ?")
        params.append(str(iso(since))[:7])
    if until is not None:
        w.append("month < ?")
        params.append(str(iso(until))[:7])
    return w


# --- statistics ----------------------------------------------------------------------------------------------

def _period_of(month_or_time: str, period: str | None) -> str:
    if period is None:
        return ""
    if period == "M":
        return month_or_time[:7]
    if period == "Y":
        return month_or_time[:4]
    return f"{month_or_time[:4]}Q{(int(month_or_time[5:7]) + 2) // 3}"


def stats_rows(istore: IncidentStore, t: Twin, role: Role, *, by: str = "district", period: str | None = None,
               since: dt.datetime | None = None, until: dt.datetime | None = None, now: dt.datetime | None = None,
               satisfied_min: int = 4) -> tuple[list[dict[str, Any]], int] | None:
    """Rows of :func:`twin.incidents.stats.incident_stats` (``unit``, ``period``, its columns; missing rates
    ``None``) over the cases in ``role``'s scope reported in ``[since, until)``, and the number of cases.

    ``None`` when this path cannot answer exactly (a ``period`` other than ``M``/``Q``/``Y``, or closed cases
    without stored units): use the frame path then.
    """
    if by not in _BY:
        raise ValidationError(f"by={by!r}; use one of {list(_BY)}.")
    if period not in _PERIOD_SQL:
        return None
    f = ListFilter(since=since, until=until)
    sums: dict[tuple[str, str], list[int]] = {}
    unit_sql = f"{_BY[by]}" if _BY[by] else f"'{DISTRICT_CODE}'"
    p: list[Any] = []
    cols = ", ".join(f"SUM({c})" for c in _derived.AGG_COLUMNS)
    if _month_aligned(since) and _month_aligned(until):
        table, units = _agg_table(role, f, by)
        w = [units, *_scope_sql(role, f, p), *_month_range(since, until, p)]
        rows = istore.store.query(f"SELECT month, {unit_sql}, {cols} FROM {table} WHERE {' AND '.join(w)} GROUP BY 1, 2",
                                  p)
    else:
        w = ["grid_code <> ''", *_scope_sql(role, f, p), *_common(f, dt.datetime.now(), p)]
        rows = _raw_sums(istore, unit_sql, w, p)
    for agg in rows:
        acc = sums.setdefault((str(agg[1]), _period_of(str(agg[0]), period)), [0] * len(_derived.AGG_COLUMNS))
        for i, v in enumerate(agg[2:]):
            acc[i] += int(v or 0)
    undisp = _undispatched(istore, t, role, f, now or dt.datetime.now())
    by_col = _BY[by]
    for r in undisp:
        if r["state"] not in OPEN_STATES:
            return None  # a closed case without stored units: its handling time is not indexed by unit
        unit = DISTRICT_CODE if by_col is None else (r[by_col] or "")  # grouped under '' as incident_stats does
        acc = sums.setdefault((unit, _period_of(str(r["reported_at"]), period)), [0] * len(_derived.AGG_COLUMNS))
        for i, v in enumerate(_derived.counts_of(r)):
            acc[i] += v
    overdue = _overdue_open(istore, t, role, f, unit_sql, period, now, undisp, by) if now is not None else {}
    medians = _medians(istore, role, f, unit_sql, period, {k: v[3] for k, v in sums.items() if v[0] > 0})
    out: list[dict[str, Any]] = []
    for key in sorted(k for k, v in sums.items() if v[0] > 0):
        n, closed, on_time, _handled, answered, *s = sums[key]
        followed = sum(s)
        row: dict[str, Any] = {"unit": key[0]}
        if period is not None:
            row["period"] = key[1]
        row.update(n=n, closed=closed, closure_rate=closed / n, on_time_rate=on_time / closed if closed else None,
                   median_handling_h=medians.get(key), followed_up=followed,
                   satisfaction_rate=sum(s[satisfied_min - 1:]) / followed if followed else None,
                   mean_satisfaction=sum((k + 1) * c for k, c in enumerate(s)) / followed if followed else None,
                   immediate_answer_rate=answered / n)
        if now is not None:
            row["overdue_open"] = overdue.get(key, 0)
        out.append(row)
    return out, sum(v[0] for v in sums.values())


def _raw_sums(istore: IncidentStore, unit_sql: str, where: list[str], params: list[Any]) -> list[tuple]:
    """``incident_agg``-shaped sums straight from ``incidents`` (a time range not aligned to months)."""
    closed = "state IN ('resolved', 'followed_up')"
    handled = f"({closed} AND resolved_at IS NOT NULL)"
    sums = ["COUNT(*)", f"SUM(CASE WHEN {closed} THEN 1 ELSE 0 END)",
            f"SUM(CASE WHEN {handled} AND deadline IS NOT NULL AND resolved_at <= deadline THEN 1 ELSE 0 END)",
            f"SUM(CASE WHEN {handled} THEN 1 ELSE 0 END)", "SUM(CASE WHEN answered_at_once <> 0 THEN 1 ELSE 0 END)"
            ] + [f"SUM(CASE WHEN satisfaction = {k} THEN 1 ELSE 0 END)" for k in range(1, 6)]
    m = "substr(reported_at, 1, 7)"
    return istore.store.query(f"SELECT {m}, {unit_sql}, {', '.join(sums)} FROM incidents WHERE {' AND '.join(where)} "
                              "GROUP BY 1, 2", params)


def _overdue_open(istore: IncidentStore, t: Twin, role: Role, f: ListFilter, unit_sql: str, period: str | None,
                  now: dt.datetime, undisp: list[dict[str, Any]], by: str) -> dict[tuple[str, str], int]:
    p: list[Any] = []
    w = ["grid_code <> ''", *_scope_sql(role, f, p), *_common(f, now, p), f"state IN ({_OPEN})", "deadline < ?"]
    p.append(iso(now))
    m = "substr(reported_at, 1, 7)"
    out: dict[tuple[str, str], int] = {}
    for month, unit, c in istore.store.query(f"SELECT {m}, {unit_sql}, COUNT(*) FROM incidents WHERE "
                                             f"{' AND '.join(w)} GROUP BY 1, 2", p):
        key = (str(unit), _period_of(str(month), period))
        out[key] = out.get(key, 0) + int(c)
    by_col = _BY[by]
    for r in undisp:
        if r["deadline"] is not None and r["state"] in OPEN_STATES and r["deadline"] < iso(now):
            key = (DISTRICT_CODE if by_col is None else (r[by_col] or ""), _period_of(str(r["reported_at"]), period))
            out[key] = out.get(key, 0) + 1
    return out


def _medians(istore: IncidentStore, role: Role, f: ListFilter, unit_sql: str, period: str | None,
             handled: dict[tuple[str, str], int]) -> dict[tuple[str, str], float]:
    """Median handling hours per (unit, period): an indexed LIMIT/OFFSET per group for a few groups, else one
    window query (``ROW_NUMBER`` over each group) — the middle value, or the mean of the two middle values."""
    p: list[Any] = []
    # no "grid_code <> ''" here: closed cases without units make stats_rows answer None before this, and the
    # handling-hours indexes then cover the query (no table look-ups)
    w = ["1 = 1", *_scope_sql(role, f, p), *_common(f, dt.datetime.now(), p)]
    groups = {k: c for k, c in handled.items() if c > 0}
    if not groups:
        return {}
    if period is None and len(groups) <= 16:
        out = {}
        for (unit, per), c in groups.items():
            if len(w) == 1 and unit_sql == f"'{DISTRICT_CODE}'":  # the whole district: one histogram bucket
                out[(unit, per)] = _district_median(istore, c)
                continue
            q, pg = list(w), list(p)
            if unit_sql != f"'{DISTRICT_CODE}'":
                q.append(f"{unit_sql} = ?")
                pg.append(unit)
            vals = istore.store.query(f"SELECT handling_h FROM incident_handling WHERE {' AND '.join(q)} "
                                      "ORDER BY handling_h LIMIT ? OFFSET ?", [*pg, 2 - c % 2, (c - 1) // 2])
            out[(unit, per)] = float(sum(v[0] for v in vals) / len(vals)) if vals else float("nan")
        return out
    per_sql = _PERIOD_SQL[period].format(c="reported_at")
    parts = [e for e in (unit_sql, per_sql) if not e.startswith("'")]  # PostgreSQL refuses constants here
    over = f"PARTITION BY {', '.join(parts)}" if parts else ""
    sql = (f"SELECT g, p, AVG(handling_h) FROM (SELECT {unit_sql} AS g, {per_sql} AS p, handling_h, "
           f"ROW_NUMBER() OVER ({over} ORDER BY handling_h) AS rn, "
           f"COUNT(*) OVER ({over}) AS c FROM incident_handling "
           f"WHERE {' AND '.join(w)}) x WHERE rn = (c + 1) / 2 OR rn = (c + 2) / 2 GROUP BY g, p")
    return {(str(g), str(per)): float(v) for g, per, v in istore.store.query(sql, p)}


def _district_median(istore: IncidentStore, c: int) -> float:
    """Median of all ``c`` handling times: find the bucket holding the middle rank (``incident_handling_hist_wide``,
    then ``incident_handling_hist`` inside it), then step through that bucket's slice of the hours index only."""
    k, cum, lo = (c - 1) // 2, 0, 0
    q = istore.store.query
    for wide, n in q("SELECT wide, n FROM incident_handling_hist_wide WHERE n > 0 ORDER BY wide"):
        if cum + int(n) > k:  # the middle rank is in this 16 h stretch: find its quarter-hour bucket
            for bucket, m in q("SELECT bucket, n FROM incident_handling_hist WHERE bucket >= ? AND bucket < ? "
                               "AND n > 0 ORDER BY bucket", (int(wide) * _derived.WIDE, (int(wide) + 1) * _derived.WIDE)):
                if cum + int(m) > k:
                    lo = int(bucket)
                    break
                cum += int(m)
            break
        cum += int(n)
    where, p = ("handling_h >= ?", [lo / _derived.BUCKETS_PER_H]) if lo > 0 else ("1 = 1", [])  # bucket 0: all below
    vals = istore.store.query(f"SELECT handling_h FROM incident_handling WHERE {where} ORDER BY handling_h "
                              "LIMIT ? OFFSET ?", [*p, 2 - c % 2, k - cum])
    return float(sum(v[0] for v in vals) / len(vals)) if vals else float("nan")
