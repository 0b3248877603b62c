"""Record changes (台账变更) on the one map, and the services-due grid choropleth (issues 12, 14).

``change_points`` places committed change events (:mod:`twin.live.events`) at their building's point (WGS84
lng/lat): a write's row carries ``building_id`` (persons, businesses, dwellings) or its own ``lng``/``lat`` (an added
building); a removed record is found in the base frames. ``change_layers`` draws them: counts per H3 res-8 hexagon
below :data:`POINTS_MIN_ZOOM`, one dot per change above (coloured by kind family), and a halo on changes committed in
the last :data:`NEW_SECONDS` seconds at every zoom. Tooltips show kind, effective date, author role and the
change's ``seq`` only (no personal data).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pydeck as pdk

from layers import boundaries, hexagons
from layers.colors import classed_scale, rgba_to_css
from layers.serialize import layer_to_json

__all__ = ["FAMILY_COLORS", "NEW_SECONDS", "WINDOW_DAYS", "POINTS_MIN_ZOOM", "LAYER_IDS", "ZOOM_RANGES",
           "change_points", "change_layers", "change_legend", "services_due_values", "services_due_layer"]

#: changes committed this recently (seconds) get a halo
NEW_SECONDS = 60
#: the layer shows changes committed in the last this many days
WINDOW_DAYS = 7
POINTS_MIN_ZOOM = 14.0
AGG_RES = 8
LAYER_IDS = ("changes-agg", "changes", "changes-new")
ZOOM_RANGES = {"changes-agg": (0.0, POINTS_MIN_ZOOM), "changes": (POINTS_MIN_ZOOM, 24.0)}
#: kind family (first part of the change kind) → RGBA
FAMILY_COLORS: dict[str, list[int]] = {"people": [255, 140, 0, 230], "businesses": [30, 144, 255, 230],
                                       "buildings": [220, 60, 200, 230]}
_FAMILY = {"person": "people", "household": "people", "business": "businesses", "building": "buildings",
           "dwelling": "buildings"}
_ID_COL = {"persons": "person_id", "businesses": "business_id", "dwellings": "dwelling_id", "buildings": "building_id"}
_COLUMNS = ["seq", "kind", "family", "date", "role", "committed_at", "lng", "lat"]


def _building_id(table: str, rid: int, row: dict[str, Any] | None, base: dict[str, pd.DataFrame]) -> int | None:
    if row is not None and row.get("building_id") is not None:
        return int(row["building_id"])
    if table == "buildings":
        return int(rid)
    frame = base.get(table)
    if frame is None or table not in _ID_COL:
        return None
    hit = frame.loc[frame[_ID_COL[table]].to_numpy() == rid, "building_id"]
    return int(hit.iloc[0]) if len(hit) else None


def change_points(events: Sequence[Any], sets: dict[int, tuple[str, str]], base: dict[str, pd.DataFrame]
                  ) -> pd.DataFrame:
    """One row per locatable event: ``seq, kind, family, date, role, committed_at, lng, lat`` (WGS84).

    ``events`` are :class:`twin.live.events.EventRow`; ``sets`` maps ``set_id`` → (committed_at UTC ISO, role);
    ``base`` holds the base frames ``persons``, ``businesses``, ``dwellings``, ``buildings`` (with lng/lat).
    Buildings added by earlier events in ``events`` are located from their own rows; an event whose building
    cannot be found is left out."""
    b = base["buildings"]
    pos = dict(zip(b["building_id"].to_numpy().tolist(), zip(b["lng"].to_numpy().tolist(),
                                                            b["lat"].to_numpy().tolist(), strict=True), strict=True))
    out: list[tuple] = []
    for e in events:
        for table, _rid, row, _flag in e.writes:  # buildings added in the window: their own point
            if table == "buildings" and row is not None and "lng" in row:
                pos[int(_rid)] = (float(row["lng"]), float(row["lat"]))
        where = None
        for table, rid, row, _flag in e.writes:
            bid = _building_id(str(table), int(rid), row, base)
            if bid is not None and bid in pos:
                where = pos[bid]
                break
        if where is None or e.set_id not in sets:
            continue
        at, role = sets[e.set_id]
        out.append((e.seq, e.kind, _FAMILY.get(e.kind.split(".", 1)[0], "buildings"), e.effective_date.isoformat(),
                    role, at, where[0], where[1]))
    return pd.DataFrame(out, columns=_COLUMNS)


def change_layers(points: pd.DataFrame, now: dt.datetime) -> list[tuple[str, str]]:
    """(id, layer JSON) of :data:`LAYER_IDS`: counts per hexagon, one dot per change, halo on the newest."""
    if not len(points):
        return []
    at = pd.to_datetime(points["committed_at"], utc=True, format="ISO8601")
    new = ((pd.Timestamp(now).tz_convert("UTC") - at).dt.total_seconds() <= NEW_SECONDS).to_numpy()
    agg = hexagons.point_count_layer(points["lng"].to_numpy(), points["lat"].to_numpy(), res=AGG_RES,
                                     layer_id="changes-agg", color=(255, 140, 0), label="record changes (7 days)",
                                     split=new, split_label=f"in the last {NEW_SECONDS} s")
    data = points.assign(fill=[FAMILY_COLORS[f] for f in points["family"]],
                         committed=[a[:19].replace("T", " ") + " UTC" for a in points["committed_at"]])
    tip = ("<b>{kind}</b> (change {seq})<br/>effective {date}<br/>committed {committed}<br/>by role {role}")
    dots = pdk.Layer("ScatterplotLayer", data=data.drop(columns=["committed_at"]), id="changes",
                     get_position=["lng", "lat"], get_fill_color="fill", get_radius=14, radius_min_pixels=4,
                     radius_max_pixels=12, stroked=True, get_line_color=[255, 255, 255, 220],
                     line_width_min_pixels=1, pickable=True, tooltip_html=tip)
    fresh = data.loc[new, ["lng", "lat", "kind", "seq"]]
    halo = pdk.Layer("ScatterplotLayer", data=fresh, id="changes-new", get_position=["lng", "lat"], get_radius=60,
                     radius_min_pixels=10, radius_max_pixels=30, filled=False, stroked=True,
                     get_line_color=[255, 255, 0, 255], line_width_min_pixels=3, pickable=False)
    return [("changes-agg", layer_to_json(agg)), ("changes", layer_to_json(dots)), ("changes-new", layer_to_json(halo))]


def change_legend(points: pd.DataFrame) -> dict[str, Any]:
    """The legend entry of the record-changes layers."""
    return {"title": f"Record changes 台账变更 (live · {len(points):,} in {WINDOW_DAYS} days)",
            "layers": list(LAYER_IDS), "rows": [
                {"color": "rgba(255,140,0,0.6)", "label": f"count per hexagon (zoom < {POINTS_MIN_ZOOM:g})"},
                *({"color": rgba_to_css(c), "label": k} for k, c in FAMILY_COLORS.items()),
                {"kind": "ring", "color": "rgba(255,255,0,1)", "label": f"new (< {NEW_SECONDS} s)"}]}


def services_due_values(counts: pd.DataFrame, grid_codes: Sequence[str]) -> np.ndarray:
    """Persons due a no-application service per grid (sum over services of :func:`twin.services.counts_by_grid`),
    aligned with ``grid_codes``; NaN where any service's count is suppressed."""
    svc = counts.drop(columns=["in_scope"], errors="ignore")
    total = svc.sum(axis=1, skipna=False).astype("Float64")
    return total.reindex(list(grid_codes)).to_numpy(dtype=float, na_value=np.nan)


def services_due_layer(grids: pd.DataFrame, counts: pd.DataFrame, month: str) -> tuple[tuple[str, str], dict]:
    """Grids filled by the services due in ``month``; returns ((id, layer JSON), legend)."""
    title = f"Services due {month} 无感服务"
    vals = services_due_values(counts, grids["grid_code"].astype(str).tolist())
    scale = classed_scale(vals, palette="BuGn", n_classes=5, alpha=170, title=title)
    layer = boundaries.choropleth_layer(grids, vals, scale, value_name="services_due", layer_id="grid-metric",
                                        label=title)
    return ("grid-metric", layer_to_json(layer)), {"title": f"Grids: {title}", "rows": scale.legend()}
