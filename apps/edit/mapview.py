"""Edit mode on the map: what a click or a drawing does, and the layers shown (bottom → top) with their legends."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import streamlit as st

from apps import state
from apps.edit import brush
from apps.edit.data import EditContext, diff_view
from layers import boundaries
from layers import edit as edit_layers
from layers.serialize import layer_to_json
from twin.errors import PartitionError
from twin.partition.model import Partition

__all__ = ["grid_at", "handle_map_event", "map_layers"]


def grid_at(p: Partition, coordinate: Sequence[float] | None) -> str:
    """Grid code of partition ``p`` at WGS84 ``[lng, lat]`` (``""`` outside the district)."""
    cell = state.cell_at(coordinate)
    if cell is None:
        return ""
    try:
        pos = p.index_of_cells(np.array([cell], dtype=np.uint64))
    except PartitionError:
        return ""
    return str(p.grid_code[int(pos[0])])


def handle_map_event(ctx: EditContext, ev: dict[str, Any]) -> None:
    """A click selects the grid under it (in the viewed version); a drawing becomes the edit's shape; a brush
    stroke (``{"event": "brush", "target": grid, "cells": [hex…]}``) is painted into the target
    (:func:`apps.edit.brush.paint`)."""
    ss = st.session_state
    kind = ev.get("event")
    if kind == "click":
        code = str((ev.get("properties") or {}).get("grid_code", "") or grid_at(ctx.data.partition,
                                                                                 ev.get("coordinate")))
        if code in set(ctx.data.partition.grids["grid_code"]):
            ss["ed_grid"] = code
    elif kind == "draw" and ev.get("geojson"):
        gj = ev["geojson"]
        ss["ed_drawn"] = gj.get("geometry", gj)
    elif kind == "clear":
        ss["ed_drawn"] = None
    elif kind == "brush" and ev.get("target"):
        brush.paint(ctx, str(ev["target"]), list(ev.get("cells") or []))


def map_layers(ctx: EditContext) -> tuple[list[state.LayerJSON], dict[str, tuple[float, float]],
                                          list[dict[str, Any]]]:
    """Layers of edit mode (bottom → top), zoom ranges and legends."""
    ss = st.session_state
    t, key = ctx.t, ctx.key
    out = [state.static_layer(t, key, "district-fill"), ("edit-deviation", ctx.data.layer_json),
           state.static_layer(t, key, "boundary-community"), state.static_layer(t, key, "boundary-town")]
    legends: list[dict[str, Any]] = [{"title": f"Deviation from the community ideal (version {ctx.view})",
                                      "rows": edit_layers.deviation_legend()}]
    code = ss.get("ed_grid")
    if code:
        sel = ctx.data.grids[ctx.data.grids["grid_code"] == code]
        out.append(("edit-selected", layer_to_json(edit_layers.outline_layer(
            sel, layer_id="edit-selected", color=[255, 255, 255, 255], width_px=3.0))))
    preview = ss.get("ed_preview")
    rows = [{"kind": "line", "color": "rgba(255,255,255,1)", "label": "selected grid"}]
    if preview is not None:
        out.append(("edit-preview", preview["layer"]))
        legends[0]["title"] = f"Deviation from the ideal (v{ctx.view}; proposed grids: after the edit)"
        rows.append({"kind": "line", "color": edit_layers.rgba_to_css(edit_layers.PREVIEW_COLOR),
                     "label": "proposed grids, filled by their new deviation"})
    painted = brush.painted_cells()
    if painted:
        out.append(("edit-brush", layer_to_json(edit_layers.painted_cells_layer(painted))))
        rows.append({"kind": "line", "color": edit_layers.rgba_to_css(edit_layers.BRUSH_COLOR),
                     "label": f"painted cells ({len(painted)})"})
    if ss.get("ed_diff_show") and ss.get("ed_diff_a") is not None and ss.get("ed_diff_a") != ss.get("ed_diff_b"):
        _, diff_json = diff_view(ctx, int(ss["ed_diff_a"]), int(ss["ed_diff_b"]))
        out.append(("edit-diff", diff_json))
        legends.append({"title": f"Version {ss['ed_diff_a']} → {ss['ed_diff_b']}", "rows": [
            {"kind": "line", "color": edit_layers.rgba_to_css(c), "label": f"grid {k}"}
            for k, c in edit_layers.DIFF_COLORS.items()]})
    if ss.get("ed_drawn"):
        out.append(("edit-drawn", layer_to_json(boundaries.area_layer(ss["ed_drawn"], layer_id="edit-drawn"))))
        rows.append({"kind": "line", "color": "rgba(0,200,255,1)", "label": "drawn shape"})
    legends.append({"title": "Editing", "rows": rows})
    out += [state.static_layer(t, key, "labels-town"), state.static_layer(t, key, "labels-community")]
    ranges = {"labels-town": (0.0, 13.0), "labels-community": (12.8, 24.0)}
    return out, ranges, legends
