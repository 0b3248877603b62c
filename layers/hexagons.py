"""H3 hexagon layers (density and key-population overlays).

Cells arrive as ``uint64`` H3 indexes (the twin's representation); deck.gl's ``H3HexagonLayer`` takes hex strings,
converted here with ``f"{c:x}"`` (no h3 call: only :mod:`twin.cells` calls h3).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pydeck as pdk

from layers.colors import ClassedScale
from twin.cells import latlng_to_cells

__all__ = ["cells_to_hex", "hexagon_layer", "touched_cells_layer", "point_count_layer", "ZOOM_FOR_RES",
           "res_for_zoom"]

#: Which overlay resolution to show at which map zoom: res → [min_zoom, max_zoom).
ZOOM_FOR_RES: dict[int, tuple[float, float]] = {8: (0.0, 12.5), 9: (12.5, 14.5), 10: (14.5, 24.0)}


def res_for_zoom(zoom: float) -> int:
    """The overlay resolution shown at map ``zoom`` (coarse when zoomed out)."""
    for res, (lo, hi) in ZOOM_FOR_RES.items():
        if lo <= zoom < hi:
            return res
    return 10 if zoom >= 14.5 else 8


def cells_to_hex(cells: np.ndarray | Sequence[int]) -> list[str]:
    """``uint64`` H3 cells → lower-case hex strings (what deck.gl expects)."""
    return [f"{int(c):x}" for c in np.asarray(cells, dtype=np.uint64).tolist()]


def hexagon_layer(frame: pd.DataFrame, scale: ClassedScale, *, value: str = "count", layer_id: str,
                  label: str = "", unit: str = "", extra: Sequence[str] = ("density_km2",),
                  opacity: float = 0.75) -> pdk.Layer:
    """Filled hexagons coloured by ``frame[value]`` through ``scale``.

    Parameters
    ----------
    frame : DataFrame
        Columns ``cell`` (uint64 H3) and ``value`` (e.g. the overlay frame of ``twin.overlay``: cell, count,
        density_km2, suppressed). Rows with ``suppressed`` True are drawn grey and their value shown as "suppressed".
    scale : ClassedScale
        Colour classes (see :func:`layers.colors.classed_scale`).
    layer_id : str
        Stable deck.gl id (e.g. ``"hex-residents-9"``).
    """
    if "cell" not in frame.columns or value not in frame.columns:
        raise ValueError(f"hexagon_layer needs columns 'cell' and {value!r}; got {list(frame.columns)}")
    vals = frame[value].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    suppressed = frame["suppressed"].to_numpy(dtype=bool) if "suppressed" in frame.columns else np.zeros(len(frame), bool)
    vals[suppressed] = np.nan
    colors = scale.colors_for(vals, nan_color=[120, 120, 120, 120])
    data = pd.DataFrame({"hex": cells_to_hex(frame["cell"].to_numpy()), "fill": colors})
    data["value"] = [("suppressed" if np.isnan(v) else f"{v:,.0f}") for v in vals.tolist()]
    tip = f"{label or value}: <b>{{value}}</b>{(' ' + unit) if unit else ''}"
    for col in extra:
        if col in frame.columns:
            v = frame[col].astype("Float64").round(1).to_numpy(dtype=float, na_value=np.nan)
            data[col] = ["suppressed" if np.isnan(x) else (f"{x:,.0f}" if abs(x) >= 10 else f"{x:.1f}") for x in v]
            tip += f"<br/>{col.replace('_km2', ' /km²')}: {{{col}}}"
    return pdk.Layer("H3HexagonLayer", data=data, id=layer_id, get_hexagon="hex", get_fill_color="fill",
                     filled=True, stroked=False, extruded=False, opacity=opacity, pickable=True,
                     high_precision="auto", tooltip_html=tip)


def touched_cells_layer(cells: np.ndarray, *, layer_id: str = "touched-cells",
                        color: Sequence[int] = (0, 200, 255, 70)) -> pdk.Layer:
    """The cells an area query touched, as a light highlight."""
    data = pd.DataFrame({"hex": cells_to_hex(cells)})
    return pdk.Layer("H3HexagonLayer", data=data, id=layer_id, get_hexagon="hex", get_fill_color=list(color),
                     filled=True, stroked=False, extruded=False, pickable=False)


def point_count_layer(lng: np.ndarray, lat: np.ndarray, *, res: int, layer_id: str, color: Sequence[int],
                      label: str, split: np.ndarray | None = None, split_label: str = "") -> pdk.Layer:
    """Points (WGS84 degrees) counted per H3 cell of ``res``: one hexagon per non-empty cell, more opaque for
    more points (the district view of workers or cameras instead of hundreds of overlapping dots).

    ``split`` (a boolean per point, e.g. "online") adds a second count to the tooltip, named ``split_label``.
    """
    lng_a, lat_a = np.asarray(lng, dtype=float), np.asarray(lat, dtype=float)
    if len(lng_a) != len(lat_a):
        raise ValueError(f"{len(lng_a)} longitudes for {len(lat_a)} latitudes")
    cells = latlng_to_cells(lat_a, lng_a, res)
    frame = pd.DataFrame({"cell": cells, "n": 1, "k": np.ones(len(cells), int) if split is None
                          else np.asarray(split, dtype=bool).astype(int)})
    per = frame.groupby("cell", sort=True).sum()
    n = per["n"].to_numpy()
    top = float(np.quantile(n, 0.95)) if len(n) else 1.0
    alpha = np.clip(70 + 170 * n / max(top, 1.0), 70, 240).astype(int)
    r, g, b = (int(c) for c in color[:3])
    data = pd.DataFrame({"hex": cells_to_hex(per.index.to_numpy()), "fill": [[r, g, b, int(a)] for a in alpha],
                         "n": n, "k": per["k"].to_numpy()})
    tip = f"<b>{{n}}</b> {label}" + (f"<br/>{{k}} {split_label}" if split is not None else "") + \
        "<br/><i>zoom in for each one</i>"
    return pdk.Layer("H3HexagonLayer", data=data, id=layer_id, get_hexagon="hex", get_fill_color="fill",
                     filled=True, stroked=True, get_line_color=[r, g, b, 255], line_width_min_pixels=1,
                     extruded=False, pickable=True, high_precision="auto", tooltip_html=tip)
