"""Live data for the one map: open incidents and the worker board read from the shared store on every refresh,
turned into map layers, KPI tiles and alarms (the command-centre screen and Explore's live layers).

Everything here is read, never written: the incident store is the one the service (``twin serve``) and the
Incidents page write to, so a report made anywhere shows on every open map within a second or two: the live feed
(:mod:`apps.live_feed`, one thread per server process) calls :func:`live_state` and :func:`live_layers` every
second and every open map polls what it wrote (see docs/app.md). The functions here use no Streamlit cache (they
run in the feed's thread); :func:`incident_store` and :func:`catalogue` are the pages' cached handles.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

import twin
from layers import colors, hexagons
from layers import incidents as incident_layers
from layers.serialize import layer_to_json
from twin.incidents.catalogue import load_catalogue
from twin.incidents.lifecycle import CST, OPEN_STATES, overdue_mask
from twin.incidents.store import IncidentStore, board_for
from twin.store.sql import open_store

__all__ = ["NEW_MINUTES", "ALARM_HOURS", "POINTS_MIN_ZOOM", "LIVE_LAYER_IDS", "LIVE_ZOOM_RANGES", "LiveState",
           "incident_store", "catalogue", "live_state", "live_layers", "closure_today", "latest_report", "now_cst"]

#: incidents reported this recently are highlighted ("new")
NEW_MINUTES = 30
#: the alarm strip lists level-3/4 cases and deadlines passed within this many hours
ALARM_HOURS = 6
#: below this zoom workers and cameras are drawn as counts per H3 res-8 hexagon, above it one dot each
POINTS_MIN_ZOOM = 14.0
AGG_RES = 8
#: the live layers by what they show (ids as on the map)
LIVE_LAYER_IDS = {"workers": ("workers-agg", "workers"), "incidents": ("incidents", "incidents-new")}
#: zoom ranges of the live layers (workers as counts per hexagon below :data:`POINTS_MIN_ZOOM`, dots above)
LIVE_ZOOM_RANGES = {"workers-agg": (0.0, POINTS_MIN_ZOOM), "workers": (POINTS_MIN_ZOOM, 24.0)}


def now_cst() -> dt.datetime:
    """The current time in CST (UTC+08:00), whole seconds."""
    return dt.datetime.now(CST).replace(microsecond=0)


@st.cache_resource(show_spinner=False)
def incident_store(url: str) -> IncidentStore:
    """One :class:`IncidentStore` per store URL and server process."""
    return IncidentStore(open_store(url))


@st.cache_resource(show_spinner=False)
def catalogue() -> pd.DataFrame:
    """The incident catalogue (category code → Chinese / English name, level, time limit)."""
    return load_catalogue()


def latest_report(istore: IncidentStore) -> dt.datetime | None:
    """Time of the most recent report in the store (``None`` when it is empty): the default queue window ends there,
    so a demo history that ended a month ago still shows its latest incidents."""
    rows = istore.store.query("SELECT MAX(reported_at) FROM incidents")
    return None if not rows or rows[0][0] is None else pd.Timestamp(rows[0][0]).to_pydatetime()


@dataclass
class LiveState:
    """One read of the live store: open incidents (with ``overdue`` and ``new`` flags), the worker board, the KPI
    tiles and the alarms, as of ``now``."""

    now: dt.datetime
    open: pd.DataFrame
    board: pd.DataFrame
    kpis: list[dict[str, Any]] = field(default_factory=list)
    alarms: list[dict[str, Any]] = field(default_factory=list)

    @property
    def workers_online(self) -> int:
        return int((self.board["status"] == "online").sum())


def closure_today(istore: IncidentStore, day: dt.date) -> tuple[int, int]:
    """(closed, reported) of the reports of ``day`` (CST)."""
    start = dt.datetime.combine(day, dt.time(), tzinfo=CST)
    today = istore.frame(since=start)
    return int((~today["state"].isin(OPEN_STATES)).sum()), len(today)


def live_state(istore: IncidentStore, t: twin.Twin, *, now: dt.datetime, residents: int, key_persons: int,
               cat: pd.DataFrame, closure: tuple[int, int] | None = None) -> LiveState:
    """Read the store once: open incidents, worker board, KPI tiles and alarms as of ``now`` (``cat``: the incident
    catalogue; ``closure``: today's (closed, reported), read here when not given)."""
    inc = istore.frame(states=OPEN_STATES)
    inc["overdue"] = overdue_mask(inc, now) if len(inc) else np.zeros(0, bool)
    reported = pd.to_datetime(inc["reported_at"])
    inc["new"] = (reported >= now - dt.timedelta(minutes=NEW_MINUTES)).to_numpy() if len(inc) else np.zeros(0, bool)
    board = board_for(istore, t)
    closed, today_n = closure if closure is not None else closure_today(istore, now.date())
    online = int((board["status"] == "online").sum())
    n_open, n_late = len(inc), int(inc["overdue"].sum())
    kpis = [
        {"key": "residents", "label": "Residents 常住人口", "value": f"{residents:,}"},
        {"key": "key_persons", "label": "Key populations 重点人群", "value": f"{key_persons:,}"},
        {"key": "open", "label": "Open incidents 在办事件", "value": f"{n_open:,}",
         "sub": f"{int(inc['new'].sum())} new in {NEW_MINUTES} min"},
        {"key": "overdue", "label": "Overdue 超时", "value": f"{n_late:,}", "tone": "bad" if n_late else "ok"},
        {"key": "closure", "label": "Closed today 今日结案率",
         "value": f"{100 * closed / today_n:.0f} %" if today_n else "–", "sub": f"{closed} of {today_n} reported today"},
        {"key": "workers", "label": "Workers online 在线网格员", "value": f"{online:,}", "sub": f"of {len(board):,}"},
    ]
    return LiveState(now, inc, board, kpis, _alarms(inc, cat, now))


def _alarms(inc: pd.DataFrame, cat: pd.DataFrame, now: dt.datetime) -> list[dict[str, Any]]:
    """New level-3/4 cases (town / district, changed within ``ALARM_HOURS``) and newly overdue ones, newest first."""
    if inc.empty:
        return []
    since = now - dt.timedelta(hours=ALARM_HOURS)
    updated = pd.to_datetime(inc["updated_at"].fillna(inc["reported_at"]))
    deadline = pd.to_datetime(inc["deadline"])
    high = inc["level"].isin(["town", "district"]).to_numpy() & (updated >= since).to_numpy()
    late = inc["overdue"].to_numpy(dtype=bool) & (deadline >= since).to_numpy()
    out = []
    for i in np.flatnonzero(high | late):
        r = inc.iloc[i]
        kind = "escalation" if high[i] else "overdue"
        at = updated.iloc[i] if high[i] else deadline.iloc[i]
        out.append({"id": int(r["id"]), "kind": kind, "at": at.strftime("%H:%M"), "ts": at.timestamp(),
                    "text": f"#{int(r['id'])} {incident_layers.category_label(str(r['category']), cat)} · "
                            f"{incident_layers.LEVEL_LABELS.get(str(r['level']), str(r['level']))}"
                            + (" · OVERDUE 超时" if kind == "overdue" else "")})
    return sorted(out, key=lambda a: -a["ts"])[:8]


def _signature(frame: pd.DataFrame, cols: list[str]) -> str:
    return str(int(pd.util.hash_pandas_object(frame[cols], index=False).sum())) + f":{len(frame)}"


def _incident_json(inc: pd.DataFrame, cat: pd.DataFrame) -> tuple[str, str]:
    """(open incidents layer, new-incidents halo) JSON."""
    layer = incident_layers.open_incidents_layer(inc, overdue=inc["overdue"].to_numpy(dtype=bool), catalogue=cat)
    new = inc[inc["new"].to_numpy(dtype=bool)]
    return layer_to_json(layer), layer_to_json(incident_layers.new_incidents_layer(new))


def _worker_json(board: pd.DataFrame) -> tuple[str, str]:
    """(workers per hexagon, one dot per worker) JSON of the live board."""
    online = (board["status"] == "online").to_numpy()
    agg = hexagons.point_count_layer(board["lng"].to_numpy(), board["lat"].to_numpy(), res=AGG_RES,
                                     layer_id="workers-agg", color=(0, 200, 110), label="grid workers",
                                     split=online, split_label="online now")
    return layer_to_json(agg), layer_to_json(incident_layers.incident_workers_layer(board, layer_id="workers"))


def _memo(memo: dict[str, Any], key: str, build: Any) -> Any:
    """``memo[key]``, built once (the memo keeps only the last 4 keys per kind: the live layers change rarely)."""
    if key not in memo:
        kind = key.split(":", 1)[0]
        for old in [k for k in memo if k.startswith(kind + ":")][:-3]:
            del memo[old]
        memo[key] = build()
    return memo[key]


def live_layers(live: LiveState, *, cat: pd.DataFrame, memo: dict[str, Any] | None = None, incidents: bool = True,
                workers: bool = True) -> tuple[list[tuple[str, str]], dict[str, tuple[float, float]], list[dict[str, Any]]]:
    """Map layers of the live state: open incidents by level (overdue ringed, new ones haloed) and grid workers
    from the store's board (counts per hexagon below :data:`POINTS_MIN_ZOOM`, dots above).
    Returns (layers, zoom ranges, legends); legends name their layer ids (the map shows only visible ones).
    ``memo`` (a dict kept by the caller) rebuilds a layer's JSON only when its data changed."""
    memo = {} if memo is None else memo
    out: list[tuple[str, str]] = []
    ranges: dict[str, tuple[float, float]] = {}
    legends: list[dict[str, Any]] = []
    if workers and len(live.board):
        b = live.board
        sig = _signature(b, ["worker_id", "status", "lng", "lat", "open_cases", "grid_code"])
        agg, dots = _memo(memo, "workers:" + sig, lambda: _worker_json(b))
        out += [("workers-agg", agg), ("workers", dots)]
        ranges.update(LIVE_ZOOM_RANGES)
        legends.append({"title": f"Grid workers 网格员 (live · {live.workers_online} online)",
                        "layers": ["workers-agg", "workers"], "rows": [
                            {"color": "rgba(0,200,110,0.6)", "label": f"count per hexagon (zoom < {POINTS_MIN_ZOOM:g})"},
                            *({"color": colors.rgba_to_css(c), "label": k} for k, c in colors.STATUS_COLORS.items())]})
    if incidents:
        inc = live.open
        sig = _signature(inc, ["id", "version", "overdue", "new", "level", "state"])
        dots, halo = _memo(memo, "incidents:" + sig, lambda: _incident_json(inc, cat))
        out += [("incidents", dots), ("incidents-new", halo)]
        legends.append({"title": f"Open incidents 在办事件 ({len(inc):,})", "layers": ["incidents", "incidents-new"],
                        "rows": [*({"color": colors.rgba_to_css(c), "label": incident_layers.LEVEL_LABELS[k]}
                                   for k, c in incident_layers.LEVEL_COLORS.items()),
                                 {"kind": "ring", "color": colors.rgba_to_css(incident_layers.OVERDUE_COLOR),
                                  "label": "overdue 超时"},
                                 {"kind": "ring", "color": colors.rgba_to_css(incident_layers.NEW_COLOR),
                                  "label": f"new (< {NEW_MINUTES} min)"}]})
    return out, ranges, legends
