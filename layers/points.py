"""Point layers: grid workers (online/offline), cameras, businesses by credit colour (per building)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pydeck as pdk

from layers.colors import CREDIT_COLORS, STATUS_COLORS

__all__ = ["workers_layer", "cameras_layer", "businesses_layer", "businesses_by_building"]

_CREDIT_ORDER = ("green", "yellow", "red")


def workers_layer(workers: pd.DataFrame, *, layer_id: str = "workers") -> pdk.Layer:
    """Grid workers at ``lng``/``lat`` (WGS84), green when online, grey when offline."""
    data = pd.DataFrame({
        "position": np.round(workers[["lng", "lat"]].to_numpy(dtype=float), 6).tolist(),
        "fill": [STATUS_COLORS.get(s, [255, 255, 255, 255]) for s in workers["status"].astype(str)],
        "name": workers["name"].astype(str).to_numpy(),
        "worker_id": workers["worker_id"].astype(str).to_numpy(),
        "grid_code": workers["grid_code"].astype(str).to_numpy(),
        "status": workers["status"].astype(str).to_numpy(),
    })
    return pdk.Layer("ScatterplotLayer", data=data, id=layer_id, get_position="position", get_fill_color="fill",
                     get_line_color=[0, 0, 0, 255], stroked=True, line_width_min_pixels=1.5, get_radius=40,
                     radius_min_pixels=5, radius_max_pixels=14, pickable=True,
                     tooltip_html="<b>{name}</b> ({worker_id})<br/>grid {grid_code}<br/>status: <b>{status}</b>")


def cameras_layer(cameras: pd.DataFrame, *, layer_id: str = "cameras") -> pdk.Layer:
    """Video cameras at ``lng``/``lat`` (WGS84), small violet dots."""
    data = pd.DataFrame({
        "position": np.round(cameras[["lng", "lat"]].to_numpy(dtype=float), 6).tolist(),
        "kind": cameras["kind"].astype(str).to_numpy(),
        "camera_id": cameras["camera_id"].astype(str).to_numpy(),
    })
    return pdk.Layer("ScatterplotLayer", data=data, id=layer_id, get_position="position",
                     get_fill_color=[186, 104, 255, 220], get_radius=6, radius_min_pixels=1.5, radius_max_pixels=5,
                     pickable=True, tooltip_html="camera {camera_id}<br/>{kind}")


def businesses_by_building(businesses: pd.DataFrame, buildings: pd.DataFrame) -> pd.DataFrame:
    """Businesses counted per building and credit colour: building_id, lng, lat, green, yellow, red, worst.

    ``worst`` is the worst colour present (red > yellow > green), the colour the map shows.
    """
    counts = pd.crosstab(businesses["building_id"], businesses["credit"].astype(str))
    for c in _CREDIT_ORDER:
        if c not in counts.columns:
            counts[c] = 0
    counts = counts[list(_CREDIT_ORDER)]
    pts = buildings.set_index("building_id")[["lng", "lat"]]
    out = counts.join(pts, how="inner").reset_index()
    out["worst"] = np.where(out["red"] > 0, "red", np.where(out["yellow"] > 0, "yellow", "green"))
    return out


def businesses_layer(per_building: pd.DataFrame, *, layer_id: str = "businesses") -> pdk.Layer:
    """One dot per building with businesses, coloured by the worst credit colour, sized by count."""
    total = per_building[list(_CREDIT_ORDER)].sum(axis=1).to_numpy()
    data = pd.DataFrame({
        "position": np.round(per_building[["lng", "lat"]].to_numpy(dtype=float), 6).tolist(),
        "fill": [CREDIT_COLORS[w] for w in per_building["worst"]],
        "r": np.round(4 + 3 * np.sqrt(total), 1),
        "green": per_building["green"].to_numpy(), "yellow": per_building["yellow"].to_numpy(),
        "red": per_building["red"].to_numpy(), "building_id": per_building["building_id"].to_numpy(),
    })
    return pdk.Layer("ScatterplotLayer", data=data, id=layer_id, get_position="position", get_fill_color="fill",
                     get_radius="r", radius_min_pixels=1.5, radius_max_pixels=12, pickable=True,
                     tooltip_html="building {building_id} businesses<br/>green {green} · yellow {yellow} · red {red}")
