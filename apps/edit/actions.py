"""The session-state machine of edit mode: what each button does to ``st.session_state``.

Button actions run as Streamlit ``on_click`` callbacks (before the script), so the map drawn in the same run
already shows their result. Every edit goes through the one edit dispatch
:func:`twin.partition.edit_ops.apply_edit`; every write through :mod:`twin.partition.versions`. A rejected edit
or write leaves its :class:`twin.TwinError` message in ``ed_error`` and the failing control in ``ed_error_at`` (a
conflict in ``ed_conflict``), so the panel shows it next to that control.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import shapely.geometry
import streamlit as st
from shapely.geometry.base import BaseGeometry

import twin
from apps import state
from apps.edit.data import current_store, current_view
from layers import edit as edit_layers
from layers.serialize import layer_to_json
from twin.partition import versions
from twin.partition.balance import edit_effect
from twin.partition.edit_ops import EditOp, apply_edit
from twin.partition.model import Partition
from twin.partition.workload import cell_counts

__all__ = ["EDIT_BUTTONS", "MSG_KEYS", "clear_messages", "fail", "edit_op", "preview", "set_preview", "named_grids",
           "commit", "discard", "reload", "undo", "redo", "can_undo", "can_redo", "rollback", "fly_to_grid"]

#: ``ed_error_at`` names the control whose action failed (``ops``, ``brush``, ``commit``, ``versions``,
#: ``rebalance``): the panel shows the error next to that control, not at the top
MSG_KEYS = ("ed_error", "ed_error_at", "ed_conflict", "ed_notice")
#: the app's edit buttons → the :class:`EditOp` kind each one sends to ``apply_edit``
EDIT_BUTTONS: dict[str, str] = {"split_k": "split_grid", "split_drawn": "split_grid", "merge": "merge_grids",
                                "redraw": "redraw_grid", "move": "move_area"}


def clear_messages() -> None:
    """Forget the last error, conflict and notice."""
    for k in MSG_KEYS:
        st.session_state[k] = None


def fail(where: str, message: str) -> None:
    """Keep ``message`` as the error of the control ``where`` (shown next to it)."""
    st.session_state["ed_error"] = message
    st.session_state["ed_error_at"] = where


def _drawn_geometry(ss: Mapping[str, Any]) -> BaseGeometry:
    gj = ss.get("ed_drawn")
    if not gj:
        raise twin.ValidationError("draw a shape on the map first (◯ Lasso or ⬠ Polygon).")
    return shapely.geometry.shape(gj)


def edit_op(button: str, ss: Mapping[str, Any]) -> EditOp:
    """The :class:`EditOp` an edit button asks for, from the session state ``ss`` (selected grid ``ed_grid``, parts
    ``ed_k``, merge partner ``ed_merge_with``, drawn shape ``ed_drawn`` (WGS84), ``ed_clip``)."""
    grid = ss.get("ed_grid")
    if button == "split_k":
        return EditOp("split_grid", grid_code=grid, k=int(ss.get("ed_k", 2)))
    if button == "split_drawn":  # the drawn polygon's outline is the cut line
        return EditOp("split_grid", grid_code=grid, geometry=_drawn_geometry(ss))
    if button == "merge":
        return EditOp("merge_grids", grid_codes=[grid, str(ss.get("ed_merge_with"))])
    if button == "redraw":
        return EditOp("redraw_grid", grid_code=grid, geometry=_drawn_geometry(ss), clip=bool(ss.get("ed_clip", False)))
    if button == "move":
        return EditOp("move_area", to_grid=grid, geometry=_drawn_geometry(ss))
    raise twin.ValidationError(f"unknown edit button {button!r}; use one of {list(EDIT_BUTTONS)}.")


def preview(button: str, title: str, **extra: Any) -> None:
    """Run one edit on the editor's base version and keep it as the preview (or the rejection as an error)."""
    ss = st.session_state
    clear_messages()
    ss["ed_preview"] = None
    base = int(ss["ed_base"])
    p = current_view(base).partition
    if button == "split_k":
        title = title.replace(" k", f" {int(ss.get('ed_k', 2))}")
    try:
        res = apply_edit(p, edit_op(button, ss))
    except twin.TwinError as e:
        fail("ops", str(e))
        return
    set_preview(state.get_twin(), p, res.partition, base=base, op=button, title=title, **extra)


def named_grids(t: twin.Twin, p: Partition, p2: Partition, grids: pd.DataFrame) -> pd.DataFrame:
    """The touched grids of an edit effect (``grids``: :attr:`EditEffect.grids`) with their names (after the edit,
    else before) and residents before → after (``residents_before`` / ``_after``, NaN where the grid does not
    exist)."""
    names = {**dict(zip(p.grids["grid_code"], p.grids["grid_name"])),
             **dict(zip(p2.grids["grid_code"], p2.grids["grid_name"]))}
    res = cell_counts(t)["residents"].to_numpy(float)
    out = grids.copy()
    out.insert(1, "grid_name", [names.get(c, c) for c in out["grid_code"]])
    for part, suffix in ((p, "before"), (p2, "after")):
        lab, codes = part.labels()
        ok = lab >= 0
        per = pd.Series(np.bincount(lab[ok], weights=res[ok], minlength=len(codes)), index=codes)
        out[f"residents_{suffix}"] = out["grid_code"].map(per)
    return out


def set_preview(t: twin.Twin, p: Partition, p2: Partition, *, base: int, op: str, title: str,
                keep_brush: bool = False, **extra: Any) -> None:
    """Keep ``p2`` (proposed from ``p``, the version ``base``) as the preview with its balance effect, its grids by
    name and its layer: the proposed grids filled by their new deviation (same scale as the deviation map)."""
    eff = edit_effect(t, p, p2)
    named = named_grids(t, p, p2, eff.grids)
    shapes = eff.shapes[["grid_code", "geometry"]].merge(named, on="grid_code", how="left")
    layer = layer_to_json(edit_layers.preview_layer(shapes, layer_id="edit-preview"))
    if not keep_brush:
        st.session_state["ed_brush"] = None
    st.session_state["ed_preview"] = {"op": op, "title": title, "base": base, "partition": p2, "effect": eff,
                                      "named": named, "layer": layer, **extra}


def _move_to(vid: int, notice: str) -> None:
    """Edit from version ``vid`` (the head) from now on, with nothing previewed or painted."""
    ss = st.session_state
    ss["ed_base"] = vid
    ss["ed_version"] = vid
    ss["ed_preview"] = None
    ss["ed_brush"] = None
    ss["ed_notice"] = notice


def _write_version(write: Callable[[], int], what: str, where: str) -> int | None:
    """Run one versioned write; a conflict offers a reload, any other TwinError is shown as it is, next to the
    control ``where``. Returns the new version, or None."""
    try:
        vid = write()
    except twin.ConflictError as e:
        st.session_state["ed_conflict"] = {"message": str(e), "head": versions.head_version(current_store()),
                                           "at": where}
        st.session_state["ed_error_at"] = where
        return None
    except twin.TwinError as e:
        fail(where, str(e))
        return None
    _move_to(vid, f"{what}: version {vid} is now the head.")
    return vid


def commit() -> None:
    """Write the previewed partition as a new version on the editor's base (author and reason from the form)."""
    ss = st.session_state
    clear_messages()
    pv = ss.get("ed_preview")
    if pv is None:
        fail("commit", "nothing to commit: preview an edit first.")
        return
    _write_version(lambda: versions.commit(current_store(), pv["partition"], base_version=int(ss["ed_base"]),
                                           author=str(ss.get("ed_author", "")), reason=str(ss.get("ed_reason", ""))),
                   f"committed {pv['title']}", "commit")


def discard() -> None:
    """Drop the preview."""
    clear_messages()
    st.session_state["ed_preview"] = None
    st.session_state["ed_brush"] = None


def reload() -> None:
    """Start again from the current head (after a conflict)."""
    head = versions.head_version(current_store())
    clear_messages()
    _move_to(head, f"reloaded: editing from version {head} (the head).")


def undo() -> None:
    """Undo the last edit of the editor's base version (multi-level: :func:`twin.partition.versions.undo` walks
    back one edit per click; the store keeps the redo chain)."""
    ss = st.session_state
    clear_messages()
    base = int(ss["ed_base"])
    target = versions.undo_target(current_store(), base)
    _write_version(lambda: versions.undo(current_store(), state.get_twin(), author=str(ss.get("ed_author", "")),
                                         base_version=base),
                   f"undo: back to the state of version {target}", "versions")


def can_undo(ss: Mapping[str, Any]) -> int | None:
    """The version whose state an undo from the editor's base would restore (``None``: nothing to undo)."""
    return versions.undo_target(current_store(), int(ss["ed_base"])) if ss.get("ed_base") is not None else None


def can_redo(ss: Mapping[str, Any]) -> int | None:
    """The version a redo from the editor's base would restore (the last one undone), from the store's redo chain."""
    return versions.redo_target(current_store(), int(ss["ed_base"])) if ss.get("ed_base") is not None else None


def redo() -> None:
    """Redo the last undone edit (:func:`twin.partition.versions.redo`, guarded by the editor's base version)."""
    ss = st.session_state
    clear_messages()
    base = int(ss["ed_base"])
    target = versions.redo_target(current_store(), base)
    _write_version(lambda: versions.redo(current_store(), state.get_twin(), author=str(ss.get("ed_author", "")),
                                         base_version=base),
                   f"redo: version {target} restored", "versions")


def rollback() -> None:
    """Add a version equal to the viewed one (:func:`twin.partition.versions.rollback`)."""
    ss = st.session_state
    clear_messages()
    target = int(ss["ed_version"])
    _write_version(lambda: versions.rollback(current_store(), state.get_twin(), target,
                                             author=str(ss.get("ed_author", "")), base_version=int(ss["ed_base"])),
                   f"rolled back to version {target}", "versions")


def fly_to_grid(version: int) -> None:
    """Move the map to the grid picked in the select box (the app's ``fly`` state, read by the map)."""
    ss = st.session_state
    code = ss.get("ed_grid")
    g = current_view(version).grids
    hit = g[g["grid_code"] == code]
    if code and not hit.empty:
        c = hit.geometry.iloc[0].centroid
        ss["fly"] = {"seq": time.time(), "longitude": c.x, "latitude": c.y, "zoom": 15.0, "pitch": 0}
