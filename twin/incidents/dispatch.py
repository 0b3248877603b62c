"""Four-level dispatch: locate an incident in the current partition, choose the level and the grid worker.

"Trivial matters stay in the grid, small ones in the community, big ones in the town, hard ones go to
district–town consultation." The handling level is the higher of the category's default level (catalogue) and the
level the severity asks for (1 grid, 2 community, 3 town, 4 district). At grid level the case goes to the grid's
on-duty worker (online, fewest open cases, then nearest); if nobody in the grid is online, to the nearest online
worker of the same community (covering), else it escalates to the community. Managers can re-assign and escalate
by hand, always with a reason.

Locations are WGS84 (lng, lat); the grid is the H3 res-11 cell's grid in ``t.cells`` (the partition in force).
Distances are metres in EPSG:4547 (:func:`twin.crs.lnglat_to_xy`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from twin.access.roles import Role
from twin.cells import PARTITION_RES, latlng_to_cells
from twin.crs import lnglat_to_xy
from twin.errors import InvalidTransition, NotFoundError, OutsideDistrictError, ValidationError
from twin.incidents.catalogue import LEVELS, category_row, level_index
from twin.incidents.lifecycle import OPEN_STATES, SEVERITIES, Incident, Transition, as_time, transition
from twin.model import Twin

__all__ = [
    "DISTRICT_CODE",
    "DUPLICATE_RADIUS_M",
    "DUPLICATE_WINDOW_H",
    "Location",
    "locate",
    "locate_points",
    "dispatch_level",
    "worker_board",
    "nearest_workers",
    "choose_worker",
    "place_incident",
    "dispatch",
    "reassign",
    "escalate",
    "find_duplicate",
    "visible_to",
]

DISTRICT_CODE = "440604"
#: Near-duplicate rule: same category, within this distance (metres, EPSG:4547) …
DUPLICATE_RADIUS_M = 100.0
#: … and reported within this many hours after an open incident → linked to it instead of a new case.
DUPLICATE_WINDOW_H = 24.0


@dataclass(frozen=True)
class Location:
    """Where a point falls in the partition in force."""

    cell: int
    grid_code: str
    community_code: str
    town_code: str

    def code_at(self, level: str) -> str:
        """Code of the unit at ``level`` (the district code at district level)."""
        return {"grid": self.grid_code, "community": self.community_code, "town": self.town_code,
                "district": DISTRICT_CODE}[LEVELS[level_index(level)]]


def locate_points(t: Twin, lng: np.ndarray, lat: np.ndarray) -> pd.DataFrame:
    """Cell, grid, community and town of each WGS84 point (codes ``""`` outside the partition).

    Uses ``t.cells`` (``cell → grid_code``) and ``t.grids``.
    """
    lng = np.asarray(lng, dtype=float)
    lat = np.asarray(lat, dtype=float)
    cells = latlng_to_cells(lat, lng, PARTITION_RES)
    grid = t.grid_of_cells(cells).astype(str)
    g = t.grids.set_index("grid_code")
    comm = pd.Series(grid).map(g["community_code"].astype(str)).fillna("").to_numpy()
    town = pd.Series(grid).map(g["town_code"].astype(str)).fillna("").to_numpy()
    return pd.DataFrame({"cell": cells, "grid_code": grid, "community_code": comm, "town_code": town})


def locate(t: Twin, lng: float, lat: float) -> Location:
    """Grid/community/town of one WGS84 point; :class:`OutsideDistrictError` when it is outside every grid."""
    row = locate_points(t, np.array([lng]), np.array([lat])).iloc[0]
    if not row["grid_code"]:
        raise OutsideDistrictError(
            f"point (lng={lng}, lat={lat}) is outside every grid of the district; incidents must be inside "
            "Chancheng (WGS84 degrees; convert GCJ-02/Amap coordinates first)."
        )
    return Location(int(row["cell"]), str(row["grid_code"]), str(row["community_code"]), str(row["town_code"]))


def dispatch_level(catalogue: pd.DataFrame, category: str, severity: int) -> str:
    """The handling level: the higher of the category's default level and the severity's level."""
    if severity not in SEVERITIES:
        raise ValidationError(f"severity {severity!r} must be 1–4 ({dict(SEVERITIES)}).")
    base = level_index(str(category_row(catalogue, category)["level"]))
    return LEVELS[max(base, int(severity) - 1)]


def worker_board(
    workers: pd.DataFrame, *, status: pd.DataFrame | None = None, open_cases: pd.Series | None = None
) -> pd.DataFrame:
    """Workers with their live status, last position (WGS84 + EPSG:4547 ``x``/``y`` metres) and open cases.

    ``workers`` is ``t.workers``; ``status`` (``worker_id``, ``status``, ``lng``, ``lat``) overrides the twin's
    snapshot with the live values from the store; ``open_cases`` counts open incidents per ``worker_id``.
    """
    board = workers[["worker_id", "name", "grid_code", "status", "lng", "lat"]].copy()
    board["worker_id"] = board["worker_id"].astype(str)
    board["grid_code"] = board["grid_code"].astype(str)
    if status is not None and not status.empty:
        live = status.set_index("worker_id")
        idx = board["worker_id"]
        for col in ("status", "lng", "lat"):
            if col in live:
                upd = idx.map(live[col])
                board[col] = upd.where(upd.notna(), board[col])
    board["status"] = board["status"].astype(str)
    board["lng"] = board["lng"].astype(float)
    board["lat"] = board["lat"].astype(float)
    board["open_cases"] = 0
    if open_cases is not None and len(open_cases):
        board["open_cases"] = board["worker_id"].map(open_cases).fillna(0).astype(int)
    x, y = lnglat_to_xy(board["lng"].to_numpy(), board["lat"].to_numpy())
    board["x"], board["y"] = x, y
    return board.reset_index(drop=True)


def nearest_workers(
    board: pd.DataFrame, lng: float, lat: float, *, k: int = 5, online_only: bool = True,
    community_code: str | None = None, grids: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The ``k`` nearest workers to a WGS84 point with ``dist_m`` (straight-line metres in EPSG:4547).

    ``community_code`` (with ``grids`` = ``t.grids``) restricts the search to that community's grids.
    """
    cand = board
    if online_only:
        cand = cand[cand["status"] == "online"]
    if community_code is not None:
        if grids is None:
            raise ValidationError("nearest_workers(community_code=…) also needs grids (t.grids).")
        in_comm = grids.loc[grids["community_code"].astype(str) == community_code, "grid_code"].astype(str)
        cand = cand[cand["grid_code"].isin(set(in_comm))]
    px, py = lnglat_to_xy(np.array([lng]), np.array([lat]))
    d = np.hypot(cand["x"].to_numpy() - px[0], cand["y"].to_numpy() - py[0])
    out = cand.assign(dist_m=d)
    return out.sort_values(["dist_m", "worker_id"], kind="stable").head(k).reset_index(drop=True)


def choose_worker(board: pd.DataFrame, grid_code: str, lng: float, lat: float) -> str:
    """The grid's on-duty worker: online, fewest open cases, then nearest, then lowest id; ``""`` if none online."""
    cand = board[(board["grid_code"] == grid_code) & (board["status"] == "online")]
    if cand.empty:
        return ""
    px, py = lnglat_to_xy(np.array([lng]), np.array([lat]))
    d = np.hypot(cand["x"].to_numpy() - px[0], cand["y"].to_numpy() - py[0])
    ranked = cand.assign(dist_m=d).sort_values(["open_cases", "dist_m", "worker_id"], kind="stable")
    return str(ranked["worker_id"].iloc[0])


def place_incident(
    t: Twin, incident: Incident, board: pd.DataFrame, catalogue: pd.DataFrame, *, level: str | None = None
) -> tuple[dict[str, Any], str]:
    """Placement fields for dispatching ``incident`` and a note explaining the choice.

    Returns ``(changes, note)`` where ``changes`` has ``cell``, ``grid_code``, ``community_code``, ``town_code``,
    ``level``, ``handler_code`` and ``assignee`` (a worker id at grid level, ``""`` above).
    """
    loc = locate(t, incident.lng, incident.lat)
    lvl = LEVELS[level_index(level)] if level else dispatch_level(catalogue, incident.category, incident.severity)
    note = f"{incident.category} severity {incident.severity} → {lvl}"
    assignee = ""
    if lvl == "grid":
        assignee = choose_worker(board, loc.grid_code, incident.lng, incident.lat)
        if not assignee:
            near = nearest_workers(board, incident.lng, incident.lat, k=1, community_code=loc.community_code,
                                   grids=t.grids)
            if not near.empty:
                assignee = str(near["worker_id"].iloc[0])
                note += f"; no worker online in grid {loc.grid_code}, covered by nearest online {assignee} " \
                        f"({near['dist_m'].iloc[0]:.0f} m)"
            else:
                lvl = "community"
                note += f"; no worker online in community {loc.community_code}, escalated to community"
    changes = {"cell": loc.cell, "grid_code": loc.grid_code, "community_code": loc.community_code,
               "town_code": loc.town_code, "level": lvl, "handler_code": loc.code_at(lvl), "assignee": assignee}
    return changes, note


def dispatch(
    t: Twin, incident: Incident, *, board: pd.DataFrame, catalogue: pd.DataFrame, actor: str,
    now: dt.datetime | str, level: str | None = None,
) -> tuple[Incident, Transition]:
    """Dispatch a ``reported`` (or ``reopened``) incident: locate, choose the level and the worker, set the deadline."""
    changes, note = place_incident(t, incident, board, catalogue, level=level)
    return transition(incident, "dispatch", actor=actor, now=now, reason=note, changes=changes, catalogue=catalogue)


def reassign(
    incident: Incident, worker_id: str, *, board: pd.DataFrame, actor: str, now: dt.datetime | str, reason: str,
    catalogue: pd.DataFrame | None = None, allow_offline: bool = False,
) -> tuple[Incident, Transition]:
    """Hand a dispatched/in-progress incident to another worker (manual re-assignment, audited with ``reason``).

    The worker must exist and be online unless ``allow_offline``. At grid level the handling grid becomes the
    worker's grid; above grid level the unit stays and the worker assists.
    """
    hit = board[board["worker_id"] == str(worker_id)]
    if hit.empty:
        raise NotFoundError(f"unknown worker {worker_id!r}; ids look like {', '.join(board['worker_id'].head(3))}.")
    w = hit.iloc[0]
    if w["status"] != "online" and not allow_offline:
        raise ValidationError(f"worker {worker_id} is {w['status']}; choose an online worker "
                              "(nearest_workers lists them) or pass allow_offline=True.")
    if str(worker_id) == incident.assignee:
        raise ValidationError(f"incident {incident.id} is already assigned to {worker_id}.")
    changes: dict[str, Any] = {"assignee": str(worker_id)}
    if incident.level == "grid":
        changes["handler_code"] = str(w["grid_code"])
    return transition(incident, "reassign", actor=actor, now=now, reason=reason, changes=changes,
                      catalogue=catalogue)


def escalate(
    incident: Incident, *, actor: str, now: dt.datetime | str, reason: str, to_level: str | None = None,
    catalogue: pd.DataFrame | None = None,
) -> tuple[Incident, Transition]:
    """Move a dispatched/in-progress incident up a level (default: the next one), with an audited reason.

    The deadline is recomputed for the new level (never shorter than that level's minimum time limit).
    """
    cur = level_index(incident.level) if incident.level else 0
    if to_level is None:
        if cur >= len(LEVELS) - 1:
            raise InvalidTransition(f"incident {incident.id} is already at district level; it cannot go higher.")
        new = cur + 1
    else:
        new = level_index(to_level)
        if new <= cur:
            raise ValidationError(f"escalation must go up: incident {incident.id} is at {incident.level!r}, "
                                  f"asked for {to_level!r}.")
    lvl = LEVELS[new]
    loc = Location(incident.cell, incident.grid_code, incident.community_code, incident.town_code)
    changes = {"level": lvl, "handler_code": loc.code_at(lvl), "assignee": ""}
    return transition(incident, "escalate", actor=actor, now=now, reason=reason, changes=changes,
                      catalogue=catalogue)


_SCOPE_COL = {"grid": "grid_code", "community": "community_code", "town": "town_code"}


def visible_to(candidates: pd.DataFrame, t: Twin, role: Role) -> np.ndarray:
    """Boolean per incident row (``grid_code``, ``community_code``, ``town_code``, ``lng``, ``lat``): the incident
    lies in ``role``'s units — by the codes stored at dispatch, else located in the current partition — so a
    report is only ever linked to an incident its reporter may see (the same rule as the service's scope)."""
    if role.scope_level == "district":
        return np.ones(len(candidates), dtype=bool)
    col = _SCOPE_COL[role.scope_level]
    codes = candidates[col].fillna("").astype(str).to_numpy(dtype=object) if col in candidates else \
        np.full(len(candidates), "", dtype=object)
    blank = codes == ""
    if blank.any():
        loc = locate_points(t, candidates["lng"].to_numpy(dtype=float)[blank],
                            candidates["lat"].to_numpy(dtype=float)[blank])
        codes = codes.copy()
        codes[blank] = loc[col].to_numpy(dtype=object)
    return np.isin(codes.astype(str), np.asarray(role.scope_codes, dtype=str))


def find_duplicate(
    candidates: pd.DataFrame, incident: Incident, *, radius_m: float = DUPLICATE_RADIUS_M,
    window_h: float = DUPLICATE_WINDOW_H,
) -> int | None:
    """The first open incident this report near-duplicates, or ``None``.

    A near duplicate has the same category, is open, was reported at most ``window_h`` hours before (and not after)
    ``incident`` and lies within ``radius_m`` metres (EPSG:4547). ``candidates`` needs ``id``, ``category``,
    ``state``, ``lng``, ``lat``, ``reported_at``. The earliest such incident wins (ties: lowest id).
    """
    if radius_m < 0 or window_h < 0:
        raise ValidationError(f"radius_m and window_h must be ≥ 0, got {radius_m}, {window_h}.")
    if candidates.empty:
        return None
    at = pd.Timestamp(as_time(incident.reported_at))
    rep = pd.to_datetime(candidates["reported_at"])
    m = (
        (candidates["category"] == incident.category).to_numpy()
        & candidates["state"].isin(OPEN_STATES).to_numpy()
        & (rep <= at).to_numpy()
        & (rep >= at - pd.Timedelta(hours=window_h)).to_numpy()
    )
    cand = candidates[m]
    if cand.empty:
        return None
    x, y = lnglat_to_xy(cand["lng"].to_numpy(dtype=float), cand["lat"].to_numpy(dtype=float))
    px, py = lnglat_to_xy(np.array([incident.lng]), np.array([incident.lat]))
    near = cand[np.hypot(x - px[0], y - py[0]) <= radius_m]
    if near.empty:
        return None
    near = near.assign(_t=pd.to_datetime(near["reported_at"])).sort_values(["_t", "id"], kind="stable")
    return int(near["id"].iloc[0])
