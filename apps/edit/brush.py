"""The brush (Districtr-style painting): paint H3 res-11 cells from neighbouring grids into the selected grid.

How it works:

1. A grid is selected (the *target*). :func:`brush_args` gives the map component what it needs to paint and to
   show the balance live, without asking Python: the target, the brush radius (rings of cells), the cells of the
   target and its neighbouring grids with their grid and workload, and each of those grids' workload and ideal
   in the editor's base version.
2. In the map's "✎ Brush" mode the browser turns the pointer path into cells (h3-js ``latLngToCell`` +
   ``gridDisk``), draws them and updates a live balance box (target and source grids, deviation before → now) on
   every pointer move. On release it sends one ``{"event": "brush", "target": …, "cells": [hex…]}`` per stroke.
3. :func:`paint` adds the stroke to the cells painted so far and runs **one**
   ``EditOp("move_cells", cells=<all painted>, to_grid=target)`` through
   :func:`twin.partition.edit_ops.apply_edit` on the base version: the preview (map, balance before → after) is
   the whole painting so far, and Commit writes it as one version. A stroke that breaks a rule (contiguity,
   community nesting, an emptied grid) is dropped and its ``PartitionError`` message is shown next to the brush.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

import twin
from apps import state
from apps.edit import actions
from apps.edit.data import EditContext, current_view
from layers import edit as edit_layers
from layers.hexagons import cells_to_hex
from twin.partition.edit_ops import EditOp, apply_edit
from twin.partition.model import Partition, neighbour_grids
from twin.partition.workload import cell_workload

__all__ = ["brush_args", "paint", "clear_paint", "painted_cells", "BRUSH_RADII"]

#: brush sizes: rings of H3 res-11 cells around the pointer (0 = one cell ≈ 2,150 m², 1 = 7 cells, 2 = 19 cells)
BRUSH_RADII = (0, 1, 2, 3)


def painted_cells(target: str | None = None) -> list[str]:
    """The cells (hex) painted into ``target`` so far (all painted cells when ``target`` is None)."""
    b = st.session_state.get("ed_brush")
    if not b or (target is not None and b.get("target") != target):
        return []
    return list(b["cells"])


def _candidates(t: twin.Twin, p: Partition, target: str, extra_grids: list[str]) -> tuple[list[str], dict]:
    """Grids the brush can take cells from (neighbours of ``target``) and their cells: hex → [grid index, workload]."""
    grids = [target, *dict.fromkeys([*neighbour_grids(p, target), *extra_grids])]
    grids = [g for g in dict.fromkeys(grids) if g]
    work = cell_workload(t)
    out: dict[str, list] = {}
    for i, g in enumerate(grids):
        idx = np.flatnonzero(p.grid_code == g)
        for h, w in zip(cells_to_hex(p.cells[idx]), work[idx].tolist()):
            out[h] = [i, round(float(w), 2)]
    return grids, out


@st.cache_resource(show_spinner=False, max_entries=32)
def _brush_base(_t: twin.Twin, key: str, url: str, version: int, target: str, extra: tuple[str, ...]) -> dict:
    data = current_view(version)
    grids, cells = _candidates(_t, data.partition, target, list(extra))
    tab = data.table.set_index("grid_code")
    comm = dict(zip(data.partition.grids["grid_code"], data.partition.grids["community_code"]))
    rows = [[g, str(tab.at[g, "grid_name"]), round(float(tab.at[g, "workload"]), 2), round(float(tab.at[g, "ideal"]), 2),
             comm.get(g, "")] for g in grids]
    return {"grids": rows, "cells": cells}


def brush_args(ctx: EditContext) -> dict[str, Any] | None:
    """What the map component needs for the brush (see the module doc), or ``None`` when there is nothing to paint
    into (no grid selected, or an old version is viewed read-only)."""
    ss = st.session_state
    target = ss.get("ed_grid")
    if not target or ctx.read_only:
        return None
    painted = painted_cells(target)
    pv = ss.get("ed_preview")
    extra: tuple[str, ...] = ()
    if pv is not None and pv.get("op") == "brush":  # the painted grid may touch new neighbours
        extra = tuple(neighbour_grids(pv["partition"], target))
    base = _brush_base(ctx.t, ctx.key, ctx.store.url, ctx.base, target, extra)
    error = ss.get("ed_error") if ss.get("ed_error_at") == "brush" else None  # also shown in the map's live box
    return {"target": target, "radius": int(ss.get("ed_brush_radius", 1)), "painted": painted,
            "color": list(edit_layers.BRUSH_COLOR), "error": error, **base}


def clear_paint() -> None:
    """Forget the painted cells (and their preview)."""
    ss = st.session_state
    actions.clear_messages()
    if ss.get("ed_preview") is not None and ss["ed_preview"].get("op") == "brush":
        ss["ed_preview"] = None
    ss["ed_brush"] = None


def paint(ctx: EditContext, target: str, cells: list[str]) -> None:
    """One brush stroke (hex cells) into ``target``: add it to the painted cells and preview the whole painting as
    one ``move_cells`` edit on the base version; a stroke that breaks a rule is dropped with the rule shown."""
    ss = st.session_state
    actions.clear_messages()
    if ctx.read_only or target != ss.get("ed_grid"):
        actions.fail("brush", f"the brush paints into the selected grid ({ss.get('ed_grid') or 'none'}); "
                              f"select grid {target} first.")
        return
    p = current_view(ctx.base).partition
    stroke = []
    for c in dict.fromkeys(str(c).lower() for c in cells):
        try:
            stroke.append(int(c, 16))
        except ValueError:
            continue
    pos = pd.Index(p.cells).get_indexer(np.array(stroke, dtype=np.uint64))
    keep = (pos >= 0) & (p.grid_code[np.maximum(pos, 0)] != target)
    stroke = cells_to_hex(np.array(stroke, dtype=np.uint64)[keep])
    if not stroke:
        ss["ed_notice"] = None
        actions.fail("brush", f"nothing painted: those cells are already in {target} or outside the district.")
        return
    before = painted_cells(target)
    allcells = list(dict.fromkeys([*before, *stroke]))
    try:
        res = apply_edit(p, EditOp("move_cells", cells=allcells, to_grid=target))
    except twin.TwinError as e:
        actions.fail("brush", f"stroke of {len(stroke)} cell(s) not applied: {e}")
        return
    ss["ed_brush"] = {"target": target, "cells": allcells}
    name = str(ctx.data.table.set_index("grid_code").at[target, "grid_name"]) if target in set(
        ctx.data.table["grid_code"]) else target
    actions.set_preview(state.get_twin(), p, res.partition, base=ctx.base, op="brush",
                        title=f"paint {len(allcells)} cell(s) into {name}", keep_brush=True)
