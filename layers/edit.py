"""Layers of the grid-editing mode: grids coloured by deviation from their community ideal, a proposed edit's
grids filled by their *new* deviation (same scale), the selected grid, the changed grids of a version diff and
the cells painted with the brush.

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

__all__ = ["DEVIATION_BREAKS", "DEVIATION_COLORS", "PREVIEW_COLOR", "DIFF_COLORS", "BRUSH_COLOR", "MAP_BACKGROUND",
           "deviation_colors", "opaque_deviation_colors", "deviation_legend", "deviation_layer", "outline_layer",
           "preview_layer", "diff_layer", "painted_cells_layer"]

#: inner class breaks of the deviation (fractions); classes are (-inf, -0.15), [-0.15, -0.10), … [0.15, inf)
DEVIATION_BREAKS: tuple[float, ...] = (-0.15, -0.10, -0.05, -0.02, 0.02, 0.05, 0.10, 0.15)
#: ColorBrewer RdBu (9 classes) reversed: under the ideal blue, over it red
DEVIATION_COLORS: tuple[RGBA, ...] = (
    [33, 102, 172, 230], [67, 147, 195, 220], [146, 197, 222, 210], [209, 229, 240, 170], [247, 247, 247, 45],
    [253, 219, 199, 170], [244, 165, 130, 210], [214, 96, 77, 220], [178, 24, 43, 230],
)
#: outline colour of the grids a proposed edit creates or changes (yellow: not used by the deviation scale)
PREVIEW_COLOR: RGBA = [255, 214, 0, 255]
#: a version diff: grids changed (kept their code) / added in the later version, removed from the earlier one
DIFF_COLORS: dict[str, RGBA] = {"changed": [0, 229, 255, 255], "added": [118, 255, 3, 255],
                                "removed": [255, 64, 129, 255]}
#: cells painted with the brush (before the answer of Python arrives they are drawn by the map in this colour too)
BRUSH_COLOR: RGBA = [255, 214, 0, 200]
#: the district fill under the grids (layers.boundaries.district_layer): preview colours are composited over it
MAP_BACKGROUND: tuple[int, int, int] = (22, 36, 64)


def deviation_colors(deviation: np.ndarray | Sequence[float]) -> list[RGBA]:
    """One RGBA per deviation (fraction); NaN → transparent grey."""
    d = np.asarray(deviation, dtype=float)
    idx = np.searchsorted(np.asarray(DEVIATION_BREAKS), d, side="right")
    return [list(DEVIATION_COLORS[i]) if np.isfinite(v) else [120, 120, 120, 60] for i, v in zip(idx.tolist(), d)]


def opaque_deviation_colors(deviation: np.ndarray | Sequence[float], *,
                            background: Sequence[int] = MAP_BACKGROUND) -> list[RGBA]:
    """The colours of :func:`deviation_colors` composited over ``background``, fully opaque: a grid filled with them
    looks exactly like the deviation map would show it, and hides whatever is drawn below (the old partition)."""
    bg = np.asarray(background[:3], dtype=float)
    out = []
    for c in deviation_colors(deviation):
        a = c[3] / 255
        rgb = np.rint(a * np.asarray(c[:3], dtype=float) + (1 - a) * bg).astype(int).tolist()
        out.append([*rgb, 255])
    return out


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


def _fmt_pct(v: float) -> str:
    return "–" if not np.isfinite(v) else f"{100 * v:+.1f} %"


def _fmt_num(v: float) -> str:
    return "–" if not np.isfinite(v) else f"{v:,.0f}"


def preview_layer(frame: gpd.GeoDataFrame, *, layer_id: str = "edit-preview") -> pdk.Layer:
    """The grids of a proposed edit (WGS84 frame with ``grid_code``, ``grid_name``, ``deviation_after``,
    ``workload_after`` and optional ``deviation_before`` / ``workload_before``) filled **opaquely** by their new
    deviation on the same scale as :func:`deviation_layer` (so the proposal reads like the deviation map of the
    new partition), outlined in :data:`PREVIEW_COLOR` — thick for a few grids, thin when many change (a
    re-partition), so the district view does not become a tangle. Pickable (tooltip before → after)."""
    for col in ("grid_code", "deviation_after", "workload_after"):
        if col not in frame.columns:
            raise ValueError(f"preview_layer needs a {col!r} column; got {list(frame.columns)}")
    cols = [c for c in ("grid_code", "grid_name") if c in frame.columns]
    data = to_feature_collection(frame, columns=cols, simplify_deg=2e-5)
    after = frame["deviation_after"].to_numpy(dtype=float)
    before = frame["deviation_before"].to_numpy(dtype=float) if "deviation_before" in frame else np.full(len(frame),
                                                                                                          np.nan)
    w_a = frame["workload_after"].to_numpy(dtype=float)
    w_b = frame["workload_before"].to_numpy(dtype=float) if "workload_before" in frame else np.full(len(frame), np.nan)
    for f, c, db, da, wb, wa in zip(data["features"], opaque_deviation_colors(after), before.tolist(), after.tolist(),
                                    w_b.tolist(), w_a.tolist()):
        f["properties"].update(fill=c, dev=f"{_fmt_pct(db)} → {_fmt_pct(da)}", workload=f"{_fmt_num(wb)} → {_fmt_num(wa)}")
    many = len(frame) > 40
    line = [*PREVIEW_COLOR[:3], 150 if many else 255]
    return pdk.Layer(
        "GeoJsonLayer", data=data, id=layer_id, stroked=True, filled=True, get_fill_color="properties.fill",
        get_line_color=line, line_width_units="pixels", get_line_width=1.0 if many else 3.0,
        line_width_min_pixels=1.0 if many else 2.5, pickable=True,
        tooltip_html="<b>{grid_name}</b> (proposed)<br/>grid {grid_code}<br/>workload <b>{workload}</b>"
                     "<br/>deviation <b>{dev}</b>",
    )


def diff_layer(frame: gpd.GeoDataFrame, *, layer_id: str = "edit-diff") -> pdk.Layer:
    """Grids that differ between two versions (WGS84 frame with ``grid_code``, ``grid_name``, ``status`` in
    ``changed`` / ``added`` / ``removed``, ``label``): outlined in :data:`DIFF_COLORS` with a light fill of the same
    colour; pickable (tooltip ``label``)."""
    for col in ("grid_code", "status"):
        if col not in frame.columns:
            raise ValueError(f"diff_layer needs a {col!r} column; got {list(frame.columns)}")
    cols = [c for c in ("grid_code", "grid_name", "status", "label") if c in frame.columns]
    data = to_feature_collection(frame, columns=cols, simplify_deg=2e-5)
    for f, st in zip(data["features"], frame["status"].astype(str).tolist()):
        c = DIFF_COLORS.get(st, DIFF_COLORS["changed"])
        f["properties"].update(line=list(c), fill=[c[0], c[1], c[2], 60])
    return pdk.Layer(
        "GeoJsonLayer", data=data, id=layer_id, stroked=True, filled=True, get_fill_color="properties.fill",
        get_line_color="properties.line", line_width_units="pixels", get_line_width=2.5, line_width_min_pixels=2.0,
        pickable=True, tooltip_html="<b>{grid_name}</b> · {status}<br/>grid {grid_code}<br/>{label}",
    )


def painted_cells_layer(cells_hex: Sequence[str], *, layer_id: str = "edit-brush",
                        color: Sequence[int] = BRUSH_COLOR) -> pdk.Layer:
    """H3 res-11 cells (hex strings) painted with the brush, outlined in ``color`` over the preview."""
    data = [{"hex": h} for h in cells_hex]
    return pdk.Layer("H3HexagonLayer", data=data, id=layer_id, get_hexagon="hex", filled=True, stroked=True,
                     extruded=False, get_fill_color=[int(color[0]), int(color[1]), int(color[2]), 70],
                     get_line_color=list(color), line_width_units="pixels", get_line_width=1.5, pickable=False)
