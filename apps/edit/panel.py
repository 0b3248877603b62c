"""The side panel of edit mode: version bar (time travel, undo, history and diff), messages, the selected grid
and its neighbours, the edit buttons, the automatic re-partition and the balance of the viewed version.

Widgets only: numbers come from :class:`apps.edit.data.ViewData` (the balance report of a version) and
:mod:`twin.partition`; button actions are the callbacks of :mod:`apps.edit.actions`.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import streamlit as st

import twin
from apps.edit import actions, brush
from apps.edit.data import EditContext, diff_view, version_diff, view_data
from apps.edit.preview import preview_section
from twin.partition.balance import DEFAULT_THRESHOLD
from twin.partition.model import neighbour_grids

__all__ = ["TARGET_GRIDS", "render", "error_here"]

TARGET_GRIDS = 478


def _pct(x: float | None) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{100 * x:+.1f} %"


def error_here(where: str) -> None:
    """The error (or conflict) of the control ``where``, shown right next to it."""
    ss = st.session_state
    if ss.get("ed_error_at") != where:
        return
    if ss.get("ed_error"):
        st.error(ss["ed_error"])
    c = ss.get("ed_conflict")
    if c:
        st.error(f"Conflict: {c['message']}")
        st.button(f"Reload version {c['head']} (the head) and redo the edit", key="ed_reload",
                  on_click=actions.reload)


def _diff_rows(table: pd.DataFrame, a: int, b: int) -> pd.DataFrame:
    def arrow(x: float, y: float, fmt: str) -> str:
        return " → ".join("–" if pd.isna(v) else fmt.format(v) for v in (x, y))

    return pd.DataFrame({
        "name": table["grid_name"], "grid": table["grid_code"], "status": table["status"],
        f"workload v{a} → v{b}": [arrow(x, y, "{:,.0f}") for x, y in zip(table["workload_a"], table["workload_b"])],
        "residents": [arrow(x, y, "{:,.0f}") for x, y in zip(table["residents_a"], table["residents_b"])],
        "deviation": [arrow(x, y, "{:+.1%}") for x, y in zip(table["deviation_a"], table["deviation_b"])],
    })


def _compare(ctx: EditContext) -> None:
    """A visual diff of any two versions: the changed grids highlighted on the map and listed by name."""
    ids = [v.version for v in reversed(ctx.history)]
    if len(ids) < 2:
        return
    info = {v.version: v for v in ctx.history}
    ss = st.session_state
    if ss.get("ed_diff_a") not in ids:
        ss["ed_diff_a"] = info[ctx.view].parent or ids[-1]
    if ss.get("ed_diff_b") not in ids:
        ss["ed_diff_b"] = ctx.view
    c1, c2, c3 = st.columns([0.33, 0.33, 0.34], vertical_alignment="bottom")
    c1.selectbox("Compare version", ids, key="ed_diff_a", format_func=lambda v: f"v{v}")
    c2.selectbox("with version", ids, key="ed_diff_b", format_func=lambda v: f"v{v}")
    c3.toggle("Show on the map", key="ed_diff_show")
    a, b = int(ss["ed_diff_a"]), int(ss["ed_diff_b"])
    if a == b:
        st.caption("pick two different versions")
        return
    d = version_diff(ctx, a, b)
    table, _ = diff_view(ctx, a, b)
    st.markdown(f"**Version {a} → {b}**: {len(d.grids_changed)} grids changed, {len(d.grids_added)} added, "
                f"{len(d.grids_removed)} removed · {d.cells_moved:,} cells, {d.residents_moved:,} residents moved "
                f"({100 * d.moved_share:.2f} %) · CV {d.balance_before['cv']:.3f} → {d.balance_after['cv']:.3f}")
    if len(table):
        rows = _diff_rows(table, a, b)
        st.dataframe(rows, hide_index=True, height=min(36 * (len(rows) + 1), 260), key="ed_diff_table")
    if ss.get("ed_diff_show"):
        st.caption("on the map: changed grids cyan, added green, removed pink (hover for before → after)")


def _history(ctx: EditContext) -> None:
    """Every version, and the diff of the viewed one against its parent."""
    info = {v.version: v for v in ctx.history}
    hist = pd.DataFrame([{"version": v.version, "parent": v.parent, "author": v.author,
                          "time (UTC)": v.created_at.replace("T", " ")[:19], "reason": v.reason,
                          "grids": v.n_grids, "head": "●" if v.is_head else ""} for v in reversed(ctx.history)])
    st.dataframe(hist, hide_index=True, height=min(36 * (len(hist) + 1), 220))
    parent = info[ctx.view].parent
    if parent is None:
        st.caption(f"Version {ctx.view} is the base partition (no parent).")
        return
    d = version_diff(ctx, parent, ctx.view)
    st.markdown(f"**Version {parent} → {ctx.view}**: {d.cells_moved:,} cells, {d.buildings_moved:,} "
                f"buildings, {d.residents_moved:,} residents moved ({100 * d.moved_share:.2f} %); "
                f"CV {d.balance_before['cv']:.3f} → {d.balance_after['cv']:.3f}; grids "
                f"{d.balance_before['grids']} → {d.balance_after['grids']}")
    st.caption(f"added {d.grids_added or '–'} · removed {d.grids_removed or '–'} · "
               f"changed {d.grids_changed[:12] or '–'}{' …' if len(d.grids_changed) > 12 else ''}")


def _version_bar(ctx: EditContext) -> None:
    info = {v.version: v for v in ctx.history}

    def label(v: int) -> str:
        i = info[v]
        tags = " · head" if i.is_head else ""
        tags += " · your base" if v == ctx.base else ""
        return f"v{v} · {i.author} · {i.created_at[:16].replace('T', ' ')} · {i.reason[:40]}{tags}"

    c0, c1 = st.columns([0.25, 0.75], vertical_alignment="bottom")
    if st.session_state.get("ed_preview") is None:  # with a preview the author field sits by Commit
        c0.text_input("Author 调整人", key="ed_author", placeholder="your name")
    c1.selectbox("Version 版本 (view any: time travel)", [v.version for v in reversed(ctx.history)], key="ed_version",
                 format_func=label)
    c2, c3, _ = st.columns([0.3, 0.3, 0.4], vertical_alignment="bottom")
    undo_to, redo_to = actions.can_undo(st.session_state), actions.can_redo(st.session_state)
    c2.button("↶ Undo" + (f" → v{undo_to}" if undo_to else ""), key="ed_undo", on_click=actions.undo,
              disabled=undo_to is None,
              help=f"adds a new version equal to version {undo_to}, the state before your last edit; click again to "
                   "go one more edit back" if undo_to else "nothing to undo: this is the base partition")
    c3.button("↷ Redo" + (f" → v{redo_to}" if redo_to else ""), key="ed_redo_btn", on_click=actions.redo,
              disabled=redo_to is None,
              help=f"adds a new version equal to version {redo_to} (the last one undone)" if redo_to else
              "nothing to redo: redo follows an undo")
    if ctx.read_only:
        st.info(f"Viewing version {ctx.view} (read-only; your edits start from version {ctx.base}). "
                "The map and the balance show this version.")
        st.button(f"Roll back to version {ctx.view}", key="ed_rollback", on_click=actions.rollback)
    error_here("versions")
    with st.expander("History and diff 版本对比", expanded=bool(st.session_state.get("ed_diff_show"))):
        _history(ctx)
        _compare(ctx)


_PLACES = ("ops", "brush", "commit", "versions", "rebalance")


def _messages() -> None:
    """The last notice, and errors of no particular control (those of a control are shown next to it)."""
    ss = st.session_state
    if ss.get("ed_error_at") not in _PLACES:
        error_here(ss.get("ed_error_at"))  # type: ignore[arg-type]
    if ss.get("ed_notice"):
        st.success(ss["ed_notice"])


def _grid_section(ctx: EditContext) -> tuple[str, list[str]] | None:
    """The grid picker and the picked grid's balance row and neighbours (shared cell edges); returns the code and
    its neighbours."""
    g = ctx.data.grids
    names = dict(zip(g["grid_code"], g["grid_name"]))
    st.selectbox("Grid 网格 (or click one on the map)", sorted(names), key="ed_grid", index=None,
                 format_func=lambda c: f"{names.get(c, c)} · {c}", placeholder="pick a grid",
                 on_change=actions.fly_to_grid, args=(ctx.view,))
    code = st.session_state.get("ed_grid")
    if not code:
        return None
    row = ctx.data.table.set_index("grid_code").loc[code]
    cols = st.columns(4)
    cols[0].metric("Workload", f"{row['workload']:,.0f}", help=f"community ideal {row['ideal']:,.0f}")
    cols[1].metric("Deviation", _pct(row["deviation"]))
    cols[2].metric("Area km²", f"{row['area_km2']:.3f}")
    cols[3].metric("Polsby–Popper", f"{row['polsby_popper']:.2f}")
    st.caption(f"community {row['community_code']} · ideal {row['ideal']:,.0f} · {int(row['n_cells'])} cells · "
               f"{int(row['residents']):,} residents · {int(row['key_persons']):,} key persons")
    comm = dict(zip(ctx.data.partition.grids["grid_code"], ctx.data.partition.grids["community_code"]))
    nb = neighbour_grids(ctx.data.partition, code)
    st.markdown("**Neighbours 相邻网格**: " + ("、".join(
        f"{names.get(n, n)} `{n}`" + ("" if comm[n] == row["community_code"] else " (other community)")
        for n in nb) or "none"))
    return code, nb


def _operations(ctx: EditContext, code: str, neighbours: list[str]) -> None:
    ss = st.session_state
    drawn = bool(ss.get("ed_drawn"))
    st.markdown("**Edit 调整** — each shows a preview first; drawn shapes come from ◯ Lasso / ⬠ Polygon on the map"
                + ("" if drawn else " (none drawn yet)"))
    c1, c2, c3 = st.columns([0.3, 0.35, 0.35], vertical_alignment="bottom")
    c1.number_input("parts k", min_value=2, max_value=8, value=2, step=1, key="ed_k")
    c2.button("Split into k (balanced)", key="ed_split", on_click=actions.preview,
              args=("split_k", f"split {code} into k parts"))
    c3.button("Split by drawn shape", key="ed_split_drawn", on_click=actions.preview, disabled=not drawn,
              args=("split_drawn", f"split {code} along the drawn shape"))
    comm = dict(zip(ctx.data.partition.grids["grid_code"], ctx.data.partition.grids["community_code"]))
    c1, c2 = st.columns([0.6, 0.4], vertical_alignment="bottom")
    c1.selectbox("Merge with", neighbours, key="ed_merge_with", index=None, placeholder="an adjacent grid",
                 format_func=lambda n: n + ("" if comm.get(n) == comm.get(code) else " (other community)"))
    c2.button("Merge", key="ed_merge", on_click=actions.preview, disabled=not ss.get("ed_merge_with"),
              args=("merge", f"merge {ss.get('ed_merge_with')} into {code}"))
    c1, c2, c3 = st.columns([0.3, 0.35, 0.35], vertical_alignment="bottom")
    c1.checkbox("clip to community", key="ed_clip")
    c2.button("Redraw from shape", key="ed_redraw", on_click=actions.preview, disabled=not drawn,
              args=("redraw", f"redraw {code} from the drawn polygon"))
    c3.button("Move shape's cells here", key="ed_move", on_click=actions.preview, disabled=not drawn,
              args=("move", f"move the drawn area to {code}"))
    error_here("ops")
    _brush_section(ctx, code)


def _brush_section(ctx: EditContext, code: str) -> None:
    """The brush: paints cells of neighbouring grids into the selected grid (the map's ✎ Brush mode)."""
    ss = st.session_state
    name = str(ctx.data.table.set_index("grid_code").at[code, "grid_name"])
    painted = brush.painted_cells(code)
    st.markdown(f"**Brush 画刷** — choose **✎ Brush** on the map and drag over neighbouring grids: their cells "
                f"move into **{name}**; the box on the map shows the balance as you paint, this panel after each "
                "stroke; Commit writes the whole painting as one version.")
    c1, c2, c3 = st.columns([0.4, 0.3, 0.3], vertical_alignment="bottom")
    ss.setdefault("ed_brush_radius", 1)
    c1.select_slider("brush size (rings of cells)", brush.BRUSH_RADII, key="ed_brush_radius", format_func=lambda r: f"{r} ({1 + 3 * r * (r + 1)} cells)")
    c2.markdown(f"painted: **{len(painted)}** cell(s)")
    c3.button("Clear paint", key="ed_brush_clear", on_click=brush.clear_paint, disabled=not painted)
    error_here("brush")


def _rebalance_section(ctx: EditContext) -> None:
    c1, c2 = st.columns([0.4, 0.6], vertical_alignment="bottom")
    n = int(c1.number_input("grids wanted", min_value=147, max_value=900, value=TARGET_GRIDS, step=1, key="ed_n"))
    error_here("rebalance")
    if not c2.button(f"Propose {n} grids (twin.rebalance)", key="ed_propose"):
        return
    actions.clear_messages()
    t0 = time.perf_counter()
    with st.spinner(f"Re-partitioning version {ctx.base} into {n} grids (a few seconds) …"):
        try:
            p = view_data(ctx.t, ctx.key, ctx.store.url, ctx.base).partition
            res = twin.rebalance(ctx.t, n, partition=p, time_budget_s=30.0)
            actions.set_preview(ctx.t, p, res.partition, base=ctx.base, op="rebalance",
                                title=f"re-partition into {n} grids", moved_share=res.moved_share,
                                seconds=time.perf_counter() - t0, text=res.to_text(), figures=res.figures())
        except twin.TwinError as e:
            actions.fail("rebalance", str(e))
    st.rerun()


def _balance_section(ctx: EditContext) -> None:
    s = ctx.data.summary
    st.markdown(f"**Balance 均衡 · version {ctx.view}** (deviation from the community ideal)")
    table = ctx.data.table[ctx.data.table["grid_code"] != "UNASSIGNED"]
    dev = table["deviation"].to_numpy(float)
    thr = st.slider("flag beyond ± %", 2, 30, int(round(100 * DEFAULT_THRESHOLD)), key="ed_threshold") / 100
    flagged = table[np.abs(dev) > thr]
    cols = st.columns(5)
    cols[0].metric("Mean workload", f"{s['mean']:,.0f}")
    cols[1].metric("CV", f"{s['cv']:.3f}")
    cols[2].metric("Max deviation", _pct(float(np.nanmax(dev))))
    cols[3].metric("Min deviation", _pct(float(np.nanmin(dev))))
    cols[4].metric("Flagged", f"{len(flagged)}")
    clear = s.get("clear_boundaries")
    clear_txt = f" · clear boundaries (on streets/water) {100 * clear:.1f} %" if clear is not None else ""
    st.caption(f"{s['grids']} grids · max/min workload {s['max_over_min']:.2f} · mean Polsby–Popper "
               f"{s['mean_polsby_popper']:.3f}{clear_txt} · contiguous {s['contiguous']} · nested {s['nested']} · "
               f"unassigned cells {s['unassigned_cells']}")
    show = flagged.reindex(flagged["deviation"].abs().sort_values(ascending=False).index)
    st.dataframe(pd.DataFrame({"grid": show["grid_code"], "name": show["grid_name"],
                               "workload": show["workload"].round(0), "ideal": show["ideal"].round(0),
                               "deviation %": (100 * show["deviation"]).round(1),
                               "km²": show["area_km2"].round(3), "PP": show["polsby_popper"].round(2)}),
                 hide_index=True, height=min(36 * (len(show) + 1), 240), key="ed_flagged")


def render(ctx: EditContext) -> None:
    """The edit panel: version bar, messages, grid and operations, preview, re-partition, balance."""
    st.subheader("Edit grids 网格调整")
    st.caption(f"Store {ctx.store.url.split('/')[-1]} · head v{ctx.head} · editing from v{ctx.base}")
    _version_bar(ctx)
    _messages()
    picked = _grid_section(ctx)
    preview_section(error_here)
    if picked and not ctx.read_only:
        _operations(ctx, *picked)
    if not ctx.read_only:
        with st.expander(f"Propose {TARGET_GRIDS} grids (automatic re-partition)",
                         expanded=st.session_state.get("ed_error_at") == "rebalance"):
            _rebalance_section(ctx)
    _balance_section(ctx)
