"""Incident, worker-board and inspection-plan layers: frames from :mod:`twin` in, ``pydeck.Layer`` out.

Positions are WGS84 ``[lng, lat]``. Incidents are coloured by state; overdue ones get a thick red outline and a
larger dot. Workers are green when online, grey when offline, sized by their open cases.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pydeck as pdk

from layers.colors import CREDIT_COLORS, RGBA, STATUS_COLORS

__all__ = ["STATE_COLORS", "OVERDUE_COLOR", "LEVEL_COLORS", "LEVEL_LABELS", "NEW_COLOR", "incidents_layer",
           "open_incidents_layer", "new_incidents_layer", "incident_workers_layer", "inspections_layer",
           "category_label", "category_labels"]

STATE_COLORS: dict[str, RGBA] = {
    "reported": [255, 152, 0, 230],
    "dispatched": [33, 150, 243, 230],
    "in_progress": [156, 39, 176, 230],
    "resolved": [76, 175, 80, 200],
    "followed_up": [129, 199, 132, 160],
    "reopened": [244, 67, 54, 230],
}
OVERDUE_COLOR: RGBA = [213, 0, 0, 255]
#: handling level (1 grid … 4 district) → dot colour on the one map
LEVEL_COLORS: dict[str, RGBA] = {
    "grid": [255, 235, 59, 235],
    "community": [255, 152, 0, 235],
    "town": [255, 87, 34, 245],
    "district": [233, 30, 99, 255],
}
LEVEL_LABELS: dict[str, str] = {"grid": "L1 grid 网格", "community": "L2 community 村居", "town": "L3 town 镇街",
                                "district": "L4 district 区级"}
#: halo of incidents reported in the last minutes
NEW_COLOR: RGBA = [0, 229, 255, 255]


def category_label(code: str, catalogue: pd.DataFrame | None) -> str:
    """``env_sewage`` → ``污水直排 Sewage discharge`` (Chinese and English names from the catalogue; the code itself
    when it is not in the catalogue)."""
    return category_labels(catalogue).get(str(code), str(code))


def category_labels(catalogue: pd.DataFrame | None) -> dict[str, str]:
    """Every catalogue code → its Chinese and English name (see :func:`category_label`)."""
    if catalogue is None:
        return {}
    return {str(c): f"{zh} {en}" for c, zh, en in zip(catalogue.index, catalogue["name_zh"], catalogue["name"])}


def _labels(codes: pd.Series, catalogue: pd.DataFrame | None) -> list[str]:
    names = category_labels(catalogue)
    return [names.get(c, c) for c in codes.astype(str)]


def _pos(frame: pd.DataFrame) -> list[list[float]]:
    out: list[list[float]] = np.round(frame[["lng", "lat"]].to_numpy(dtype=float), 6).tolist()
    return out


def incidents_layer(frame: pd.DataFrame, *, overdue: np.ndarray | None = None, layer_id: str = "incidents",
                    catalogue: pd.DataFrame | None = None) -> pdk.Layer:
    """Incidents (``id``, ``lng``, ``lat``, ``state``, ``category``, ``grid_code``, ``assignee``) as dots by state.

    ``overdue`` (a boolean mask aligned with ``frame``, e.g. :func:`twin.incidents.lifecycle.overdue_mask`) draws a red ring.
    """
    late = np.zeros(len(frame), dtype=bool) if overdue is None else np.asarray(overdue, dtype=bool)
    if len(late) != len(frame):
        raise ValueError(f"overdue mask has {len(late)} values for {len(frame)} incidents.")
    state = frame["state"].astype(str)
    data = pd.DataFrame({
        "position": _pos(frame),
        "fill": [STATE_COLORS.get(s, [255, 255, 255, 200]) for s in state],
        "line": [OVERDUE_COLOR if o else [0, 0, 0, 120] for o in late],
        "width": np.where(late, 3.0, 0.5),
        "radius": np.where(late, 30.0, 18.0),
        "id": frame["id"].astype(int).to_numpy() if "id" in frame else np.arange(len(frame)),
        "state": state.to_numpy(),
        "category": _labels(frame["category"], catalogue),
        "grid_code": frame["grid_code"].astype(str).to_numpy(),
        "assignee": frame.get("assignee", pd.Series("", index=frame.index)).astype(str).to_numpy(),
        "overdue": np.where(late, "OVERDUE", ""),
    })
    return pdk.Layer("ScatterplotLayer", data=data, id=layer_id, get_position="position", get_fill_color="fill",
                     get_line_color="line", get_line_width="width", line_width_units="pixels", stroked=True,
                     get_radius="radius", radius_min_pixels=3, radius_max_pixels=12, pickable=True,
                     tooltip_html="<b>#{id}</b> {category}<br/>{state} <b>{overdue}</b><br/>grid {grid_code} · "
                                  "{assignee}")


def open_incidents_layer(frame: pd.DataFrame, *, overdue: np.ndarray, catalogue: pd.DataFrame | None = None,
                         layer_id: str = "incidents") -> pdk.Layer:
    """Open incidents on the one map: dots coloured by handling level (:data:`LEVEL_COLORS`), larger for higher
    levels, a thick red ring when overdue. ``frame`` has ``id``, ``lng``, ``lat``, ``category``, ``level``,
    ``state``, ``grid_code``, ``assignee``, ``reported_at``; ``overdue`` is a boolean mask aligned with it."""
    late = np.asarray(overdue, dtype=bool)
    if len(late) != len(frame):
        raise ValueError(f"overdue mask has {len(late)} values for {len(frame)} incidents.")
    level = frame["level"].fillna("").astype(str)
    rank = level.map({"grid": 0, "community": 1, "town": 2, "district": 3}).fillna(0).to_numpy(dtype=float)
    reported = pd.to_datetime(frame["reported_at"])
    data = pd.DataFrame({
        "position": _pos(frame),
        "fill": [LEVEL_COLORS.get(v, [255, 255, 255, 220]) for v in level],
        "line": [OVERDUE_COLOR if o else [10, 16, 30, 220] for o in late],
        "width": np.where(late, 2.5, 1.0),
        "radius": 22.0 + 10.0 * rank,
        "id": frame["id"].astype(int).to_numpy(),
        "category": _labels(frame["category"], catalogue),
        "level": [LEVEL_LABELS.get(v, v or "-") for v in level],
        "state": frame["state"].astype(str).to_numpy(),
        "grid_code": frame["grid_code"].fillna("").astype(str).to_numpy(),
        "assignee": frame["assignee"].fillna("").astype(str).replace("", "-").to_numpy(),
        "reported": reported.dt.strftime("%Y-%m-%d %H:%M").to_numpy(),
        "overdue": np.where(late, "OVERDUE 超时", ""),
    })
    return pdk.Layer("ScatterplotLayer", data=data, id=layer_id, get_position="position", get_fill_color="fill",
                     get_line_color="line", get_line_width="width", line_width_units="pixels", stroked=True,
                     get_radius="radius", radius_min_pixels=4, radius_max_pixels=14, pickable=True,
                     tooltip_html="<b>#{id} {category}</b><br/>{level} · {state} <b class=od>{overdue}"
                                  "</b><br/>reported {reported}<br/>grid {grid_code} · worker {assignee}"
                                  "<br/><i>click to open</i>")


def new_incidents_layer(frame: pd.DataFrame, *, layer_id: str = "incidents-new") -> pdk.Layer:
    """A bright halo around incidents reported in the last minutes (``frame``: ``id``, ``lng``, ``lat``)."""
    data = pd.DataFrame({"position": _pos(frame), "id": frame["id"].astype(int).to_numpy()})
    return pdk.Layer("ScatterplotLayer", data=data, id=layer_id, get_position="position", filled=False,
                     stroked=True, get_line_color=NEW_COLOR, line_width_units="pixels", get_line_width=3,
                     get_radius=90, radius_min_pixels=12, radius_max_pixels=26, pickable=False)


def incident_workers_layer(board: pd.DataFrame, *, layer_id: str = "incident-workers") -> pdk.Layer:
    """The live worker board (:func:`twin.incidents.store.board_for`): online green / offline grey, sized by load."""
    load = board.get("open_cases", pd.Series(0, index=board.index)).astype(int).to_numpy()
    data = pd.DataFrame({
        "position": _pos(board),
        "fill": [STATUS_COLORS.get(s, [255, 255, 255, 255]) for s in board["status"].astype(str)],
        "radius": 30.0 + 10.0 * np.minimum(load, 10),
        "worker_id": board["worker_id"].astype(str).to_numpy(),
        "name": board.get("name", board["worker_id"]).astype(str).to_numpy(),
        "grid_code": board["grid_code"].astype(str).to_numpy(),
        "status": board["status"].astype(str).to_numpy(),
        "open_cases": load,
    })
    return pdk.Layer("ScatterplotLayer", data=data, id=layer_id, get_position="position", get_fill_color="fill",
                     get_line_color=[0, 0, 0, 255], stroked=True, line_width_min_pixels=1, get_radius="radius",
                     radius_min_pixels=3, radius_max_pixels=10, pickable=True,
                     tooltip_html="<b>{name}</b> ({worker_id})<br/>grid {grid_code}<br/>{status} (live) · "
                                  "{open_cases} open case(s)")


def inspections_layer(plan: pd.DataFrame, *, layer_id: str = "inspections") -> pdk.Layer:
    """Planned inspection visits (:func:`twin.incidents.inspections.inspection_plan` rows) coloured by credit."""
    data = pd.DataFrame({
        "position": _pos(plan),
        "fill": [CREDIT_COLORS.get(c, [255, 255, 255, 255]) for c in plan["credit"].astype(str)],
        "business_id": plan["business_id"].astype(int).to_numpy(),
        "worker_id": plan["worker_id"].astype(str).to_numpy(),
        "date": plan["date"].astype(str).to_numpy(),
        "visit": plan["visit"].astype(int).to_numpy(),
        "visits_in_month": plan["visits_in_month"].astype(int).to_numpy(),
    })
    return pdk.Layer("ScatterplotLayer", data=data, id=layer_id, get_position="position", get_fill_color="fill",
                     get_radius=15, radius_min_pixels=3, radius_max_pixels=9, pickable=True,
                     tooltip_html="business {business_id} · visit {visit}/{visits_in_month}<br/>{date} · {worker_id}")
