"""Layers of the grid-editing mode: grids coloured by deviation from their community ideal, outlines of a
proposed edit and of the selected grid.

Deviation is a signed fraction (``workload / ideal − 1``, :func:`twin.partition.balance.balance_report`); the scale is
diverging and fixed (not quantiles) so a colour means the same deviation in every version: blue under the
ideal, red over it, near-white within ±2 %.
"""

from __future__ import annotations

from collections.abc import Sequence

import geopandas as gpd
import numpy as np
import pydeck as pdk

from layers.boundaries import to_feature_collection
from layers.colors import RGBA, rgba_to_css

__all__ = ["DEVIATION_BREAKS", "DEVIATION_COLORS", "PREVIEW_COLOR", "deviation_colors", "deviation_legend",
           "deviation_layer", "outline_layer"]

#: inner class breaks of the deviation (fractions); classes are (-inf, -0.15), [-0.15, -0.10), … [0.15, inf)
DEVIATION_BREAKS: tuple[float, ...] = (-0.15, -0.10, -0.05, -0.02, 0.02, 0.05, 0.10, 0.15)
#: ColorBrewer RdBu (9 classes) reversed: under the ideal blue, over it red
DEVIATION_COLORS: tuple[RGBA, ...] = (
    [33, 102, 172, 230], [67, 147, 195, 220], [146, 197, 222, 210], [209, 229, 240, 170], [247, 247, 247, 45],
    [253, 219, 199, 170], [244, 165, 130, 210], [214, 96, 77, 220], [178, 24, 43, 230],
)
#: outline colour of the grids a proposed edit creates or changes (magenta: not used by any other layer)
PREVIEW_COLOR: RGBA = [255, 0, 220, 255]


def deviation_colors(deviation: np.ndarray | Sequence[float]) -> list[RGBA]:
    """One RGBA per deviation (fraction); NaN → transparent grey."""
    d = np.asarray(deviation, dtype=float)
    idx = np.searchsorted(np.asarray(DEVIATION_BREAKS), d, side="right")
    return [list(DEVIATION_COLORS[i]) if np.isfinite(v) else [120, 120, 120, 60] for i, v in zip(idx.tolist(), d)]


def deviation_legend() -> list[dict[str, str]]:
    """Legend rows (colour, label) from most under the ideal to most over it."""
    b = [f"{100 * x:+.0f} %" for x in DEVIATION_BREAKS]
    labels = [f"< {b[0]}"] + [f"{lo} … {hi}" for lo, hi in zip(b[:-1], b[1:])] + [f"> {b[-1]}"]
    labels[len(labels) // 2] = "within ±2 % of the ideal"
    return [{"color": rgba_to_css(c), "label": lab} for c, lab in zip(DEVIATION_COLORS, labels)]


def deviation_layer(frame: gpd.GeoDataFrame, *, layer_id: str = "edit-deviation") -> pdk.Layer:
    """Grids (WGS84 frame with ``grid_code``, ``grid_name``, ``workload``, ``ideal``, ``deviation``) filled by
    the diverging deviation scale, thin outlines, pickable (a click selects the grid)."""
    for col in ("grid_code", "workload", "ideal", "deviation"):
        if col not in frame.columns:
            raise ValueError(f"deviation_layer needs a {col!r} column; got {list(frame.columns)}")
    cols = [c for c in ("grid_code", "grid_name", "community_code") if c in frame.columns]
    data = to_feature_collection(frame, columns=cols, simplify_deg=2e-5)
    dev = frame["deviation"].to_numpy(dtype=float)
    for f, c, d, w, i in zip(data["features"], deviation_colors(dev), dev.tolist(),
                             frame["workload"].to_numpy(float).tolist(), frame["ideal"].to_numpy(float).tolist()):
        f["properties"].update(fill=c, dev=f"{100 * d:+.1f} %", workload=f"{w:,.0f}", ideal=f"{i:,.0f}")
    return pdk.Layer(
        "GeoJsonLayer", data=data, id=layer_id, stroked=True, filled=True, get_fill_color="properties.fill",
        get_line_color=[40, 40, 60, 200], line_width_units="pixels", get_line_width=0.8, pickable=True,
        auto_highlight=True, highlight_color=[255, 255, 255, 90],
        tooltip_html="<b>{grid_name}</b><br/>grid {grid_code}<br/>workload <b>{workload}</b> (ideal {ideal})"
                     "<br/>deviation <b>{dev}</b><br/><i>click to select</i>",
    )


def outline_layer(frame: gpd.GeoDataFrame, *, layer_id: str, color: Sequence[int] = PREVIEW_COLOR,
                  width_px: float = 4.0, fill_alpha: int = 0) -> pdk.Layer:
    """Bright outlines of a few grids (a proposed edit, the selected grid); not pickable."""
    cols = [c for c in ("grid_code", "grid_name") if c in frame.columns]
    data = to_feature_collection(frame, columns=cols)
    fill = [int(color[0]), int(color[1]), int(color[2]), int(fill_alpha)]
    return pdk.Layer("GeoJsonLayer", data=data, id=layer_id, stroked=True, filled=fill_alpha > 0,
                     get_fill_color=fill, get_line_color=list(color), line_width_units="pixels",
                     get_line_width=width_px, line_width_min_pixels=width_px, pickable=False)
