"""Edit mode of the map app (网格调整): pick a grid, preview an edit with its balance, commit it as a version,
browse versions (time travel), undo, and propose a balanced re-partition.

Thin wiring only: every rule and number comes from :mod:`twin.partition.edits`, :mod:`twin.partition.versions`,
:mod:`twin.partition.balance` and :mod:`twin.partition.rebalance`; layers from :mod:`layers.edit`. Button actions run as Streamlit
``on_click`` callbacks (before the script), so the map drawn in the same run already shows their result.

Session state (all keys start with ``ed_``): ``ed_base`` the version the editor started from (the commit's
``base_version``), ``ed_version`` the version viewed, ``ed_grid`` the selected grid, ``ed_drawn`` the last
drawn polygon (GeoJSON geometry, WGS84), ``ed_preview`` the proposed edit, ``ed_error`` / ``ed_conflict`` /
``ed_notice`` messages. The store is :func:`twin.store.sql.open_store` for the twin (``$TWIN_DATABASE_URL`` wins).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import shapely.geometry
import streamlit as st

import twin
from apps import state
from layers import boundaries
from layers import edit as edit_layers
from layers.serialize import layer_to_json
from twin.cells import PARTITION_RES, latlng_to_cells
from twin.partition import edits, versions
from twin.partition.balance import DEFAULT_THRESHOLD, balance_report, edit_effect, grid_polygons
from twin.partition.model import Partition, neighbour_grids
from twin.store.sql import Store, open_store

__all__ = ["EditContext", "ViewData", "store_url", "edit_store", "view_data", "context", "handle_map_event",
           "map_layers", "render", "TARGET_GRIDS"]

TARGET_GRIDS = 478
_MSG_KEYS = ("ed_error", "ed_conflict", "ed_notice")


@dataclass
class ViewData:
    """One stored version, ready to show: its partition, balance table (one row per grid, with area and
    Polsby–Popper) and summary, grid polygons, and the deviation layer's JSON."""

    version: int
    partition: Partition
    table: pd.DataFrame
    summary: dict[str, Any]
    grids: gpd.GeoDataFrame
    layer_json: str


@dataclass
class EditContext:
    """What one script run of edit mode needs."""

    t: twin.Twin
    key: str
    store: Store
    head: int
    base: int
    view: int
    history: list[versions.VersionInfo]
    data: ViewData

    @property
    def read_only(self) -> bool:
        """Edits start from the editor's base version only; older versions are for viewing."""
        return self.view != self.base


# --- cached data --------------------------------------------------------------------------------------------

def store_url(t: twin.Twin) -> str:
    """The state store's URL for ``t`` (``$TWIN_DATABASE_URL`` or ``<twin>/state.sqlite``)."""
    return open_store(twin_root=t.root).url


@st.cache_resource(show_spinner=False)
def edit_store(url: str) -> Store:
    """One :class:`Store` per URL and server process (connections are per thread inside it)."""
    return open_store(url)


@st.cache_resource(show_spinner="Loading the version …", max_entries=16)
def view_data(_t: twin.Twin, key: str, url: str, version: int) -> ViewData:
    """Partition, balance and map layer of a stored version (versions never change, so this is cached by id)."""
    store = edit_store(url)
    p = versions.load_partition(store, _t, version)
    rep = balance_report(_t, p, polygons=False)
    polys = grid_polygons(_t, p)
    table = rep.table.merge(polys[["grid_code", "area_km2", "polsby_popper"]], on="grid_code", how="left")
    summary = dict(rep.summary, mean_polsby_popper=float(table["polsby_popper"].mean()))
    grids = polys[["grid_code", "grid_name", "community_code", "geometry"]].merge(
        table[["grid_code", "workload", "ideal", "deviation"]], on="grid_code", how="left")
    layer = layer_to_json(edit_layers.deviation_layer(grids))
    return ViewData(version, p, table, summary, grids, layer)


def _twin() -> twin.Twin:
    return state.get_twin()


def _store() -> Store:
    return edit_store(store_url(_twin()))


def _view(version: int) -> ViewData:
    t = _twin()
    return view_data(t, state._key(t), store_url(t), int(version))


# --- context and map events ---------------------------------------------------------------------------------

def context(t: twin.Twin, key: str) -> EditContext:
    """Resolve the store, the editor's base version, the viewed version and its data for this run."""
    ss = st.session_state
    url = store_url(t)
    store = edit_store(url)
    head = versions.ensure_base(store, t)
    history = versions.list_versions(store)
    ids = {v.version for v in history}
    if ss.get("ed_base") not in ids:
        ss["ed_base"] = head
    if ss.get("ed_version") not in ids:
        ss["ed_version"] = ss["ed_base"]
    preview = ss.get("ed_preview")
    if preview is not None and preview.get("base") != ss["ed_base"]:
        ss["ed_preview"] = None
    data = view_data(t, key, url, int(ss["ed_version"]))
    if ss.get("ed_grid") is not None and ss["ed_grid"] not in set(data.partition.grids["grid_code"]):
        ss["ed_grid"] = None
    return EditContext(t, key, store, head, int(ss["ed_base"]), int(ss["ed_version"]), history, data)


def grid_at(p: Partition, coordinate: Any) -> str:
    """Grid code of partition ``p`` at WGS84 ``[lng, lat]`` (``""`` outside the district)."""
    if not coordinate or len(coordinate) != 2:
        return ""
    cell = latlng_to_cells(np.array([float(coordinate[1])]), np.array([float(coordinate[0])]), PARTITION_RES)
    pos = int(np.searchsorted(p.cells, cell[0]))
    return str(p.grid_code[pos]) if pos < len(p.cells) and p.cells[pos] == cell[0] else ""


def handle_map_event(ctx: EditContext, ev: dict[str, Any]) -> None:
    """A click selects the grid under it (in the viewed version); a drawing becomes the edit's shape."""
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


def map_layers(ctx: EditContext) -> tuple[list[tuple[str, str]], dict[str, tuple[float, float]], list[dict]]:
    """Layers of edit mode (bottom → top), zoom ranges and legends."""
    ss = st.session_state
    t, key = ctx.t, ctx.key
    out = [state.static_layer(t, key, "district-fill"), ("edit-deviation", ctx.data.layer_json),
           state.static_layer(t, key, "boundary-community"), state.static_layer(t, key, "boundary-town")]
    legends: list[dict] = [{"title": f"Deviation from the community ideal (version {ctx.view})",
                            "rows": edit_layers.deviation_legend()}]
    code = ss.get("ed_grid")
    if code:
        sel = ctx.data.grids[ctx.data.grids["grid_code"] == code]
        out.append(("edit-selected", layer_to_json(edit_layers.outline_layer(
            sel, layer_id="edit-selected", color=[255, 255, 255, 255], width_px=3.0))))
    preview = ss.get("ed_preview")
    if preview is not None:
        out.append(("edit-preview", preview["layer"]))
    rows = [{"kind": "line", "color": "rgba(255,255,255,1)", "label": "selected grid"},
            {"kind": "line", "color": edit_layers.rgba_to_css(edit_layers.PREVIEW_COLOR),
             "label": "proposed grids (preview)"}]
    if ss.get("ed_drawn"):
        out.append(("edit-drawn", layer_to_json(boundaries.area_layer(ss["ed_drawn"], layer_id="edit-drawn"))))
        rows.append({"kind": "line", "color": "rgba(0,200,255,1)", "label": "drawn shape"})
    legends.append({"title": "Editing", "rows": rows})
    out += [state.static_layer(t, key, "labels-town"), state.static_layer(t, key, "labels-community")]
    ranges = {"labels-town": (0.0, 13.0), "labels-community": (12.8, 24.0)}
    return out, ranges, legends


# --- actions (on_click callbacks: they run before the script) -----------------------------------------------

def _fly_to_grid(version: int) -> None:
    """Move the map to the grid picked in the select box (the app's ``fly`` state, read by the map)."""
    ss = st.session_state
    code = ss.get("ed_grid")
    g = _view(version).grids
    hit = g[g["grid_code"] == code]
    if code and not hit.empty:
        c = hit.geometry.iloc[0].centroid
        ss["fly"] = {"seq": time.time(), "longitude": c.x, "latitude": c.y, "zoom": 15.0, "pitch": 0}


def _clear_messages() -> None:
    for k in _MSG_KEYS:
        st.session_state[k] = None


def _drawn_geometry() -> Any:
    gj = st.session_state.get("ed_drawn")
    if not gj:
        raise twin.ValidationError("draw a shape on the map first (◯ Lasso or ⬠ Polygon).")
    return shapely.geometry.shape(gj)


def _preview(op: str, title: str, **extra: Any) -> None:
    """Run one edit on the editor's base version and keep it as the preview (or the rejection as an error)."""
    ss = st.session_state
    _clear_messages()
    ss["ed_preview"] = None
    t = _twin()
    base = int(ss["ed_base"])
    p = _view(base).partition
    grid = ss.get("ed_grid")
    try:
        if op == "split_k":
            k = int(ss.get("ed_k", 2))
            title = title.replace(" k", f" {k}")
            p2 = edits.split_grid(p, grid, k=k)
        elif op == "split_drawn":
            geom = _drawn_geometry()
            ring = geom.exterior if isinstance(geom, shapely.geometry.Polygon) else geom.boundary
            p2 = edits.split_grid(p, grid, line=shapely.geometry.LineString(ring.coords))
        elif op == "merge":
            p2 = edits.merge_grids(p, [grid, str(ss.get("ed_merge_with"))])
        elif op == "redraw":
            p2 = edits.redraw_grid(p, grid, _drawn_geometry(), clip=bool(ss.get("ed_clip", False)))
        elif op == "move":
            p2 = edits.move_area(p, _drawn_geometry(), grid)
        else:
            raise twin.ValidationError(f"unknown edit {op!r}")
    except twin.TwinError as e:
        ss["ed_error"] = str(e)
        return
    _set_preview(t, p, p2, base=base, op=op, title=title, **extra)


def _set_preview(t: twin.Twin, p: Partition, p2: Partition, *, base: int, op: str, title: str,
                 **extra: Any) -> None:
    eff = edit_effect(t, p, p2)
    layer = layer_to_json(edit_layers.outline_layer(eff.shapes, layer_id="edit-preview", fill_alpha=40))
    st.session_state["ed_preview"] = {"op": op, "title": title, "base": base, "partition": p2, "effect": eff,
                                      "layer": layer, **extra}


def _on_conflict(e: twin.ConflictError) -> None:
    st.session_state["ed_conflict"] = {"message": str(e), "head": versions.head_version(_store())}


def _move_to(vid: int, notice: str) -> None:
    """Edit from version ``vid`` (the head) from now on, with nothing previewed."""
    ss = st.session_state
    ss["ed_base"] = vid
    ss["ed_version"] = vid
    ss["ed_preview"] = None
    ss["ed_notice"] = notice


def _write_version(write: Callable[[], int], what: str) -> None:
    """Run one versioned write; a conflict offers a reload, any other TwinError is shown as it is."""
    try:
        vid = write()
    except twin.ConflictError as e:
        _on_conflict(e)
        return
    except twin.TwinError as e:
        st.session_state["ed_error"] = str(e)
        return
    _move_to(vid, f"{what}: version {vid} is now the head.")


def _commit() -> None:
    ss = st.session_state
    _clear_messages()
    preview = ss.get("ed_preview")
    if preview is None:
        ss["ed_error"] = "nothing to commit: preview an edit first."
        return
    _write_version(lambda: versions.commit(_store(), preview["partition"], base_version=int(ss["ed_base"]),
                                           author=str(ss.get("ed_author", "")), reason=str(ss.get("ed_reason", ""))),
                   f"committed {preview['title']}")


def _discard() -> None:
    _clear_messages()
    st.session_state["ed_preview"] = None


def _reload() -> None:
    """Start again from the current head (after a conflict)."""
    head = versions.head_version(_store())
    _clear_messages()
    _move_to(head, f"reloaded: editing from version {head} (the head).")


def _undo() -> None:
    ss = st.session_state
    _clear_messages()
    base = int(ss["ed_base"])
    _write_version(lambda: versions.undo(_store(), _twin(), author=str(ss.get("ed_author", "")), base_version=base),
                   f"undid version {base}")


def _rollback() -> None:
    ss = st.session_state
    _clear_messages()
    target = int(ss["ed_version"])
    _write_version(lambda: versions.rollback(_store(), _twin(), target, author=str(ss.get("ed_author", "")),
                                             base_version=int(ss["ed_base"])),
                   f"rolled back to version {target}")


# --- panel --------------------------------------------------------------------------------------------------

def _pct(x: float) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{100 * x:+.1f} %"


def _version_bar(ctx: EditContext) -> None:
    info = {v.version: v for v in ctx.history}

    def label(v: int) -> str:
        i = info[v]
        tags = " · head" if i.is_head else ""
        tags += " · your base" if v == ctx.base else ""
        return f"v{v} · {i.author} · {i.created_at[:16].replace('T', ' ')} · {i.reason[:40]}{tags}"

    c0, c1, c2 = st.columns([0.22, 0.56, 0.22], vertical_alignment="bottom")
    c0.text_input("Author 调整人", key="ed_author", placeholder="your name")
    c1.selectbox("Version 版本 (view any: time travel)", [v.version for v in reversed(ctx.history)], key="ed_version",
                 format_func=label)
    c2.button("↶ Undo last", key="ed_undo", on_click=_undo, disabled=info[ctx.base].parent is None,
              help="adds a new version equal to your base version's parent")
    if ctx.read_only:
        st.info(f"Viewing version {ctx.view} (read-only; your edits start from version {ctx.base}). "
                "The map and the balance show this version.")
        st.button(f"Roll back to version {ctx.view}", key="ed_rollback", on_click=_rollback)
    with st.expander("History and diff", expanded=False):
        hist = pd.DataFrame([{"version": v.version, "parent": v.parent, "author": v.author,
                              "time (UTC)": v.created_at.replace("T", " ")[:19], "reason": v.reason,
                              "grids": v.n_grids, "head": "●" if v.is_head else ""} for v in reversed(ctx.history)])
        st.dataframe(hist, hide_index=True, height=min(36 * (len(hist) + 1), 220))
        parent = info[ctx.view].parent
        if parent is None:
            st.caption(f"Version {ctx.view} is the base partition (no parent).")
        else:
            d = _diff(ctx, parent, ctx.view)
            st.markdown(f"**Version {parent} → {ctx.view}**: {d.cells_moved:,} cells, {d.buildings_moved:,} "
                        f"buildings, {d.residents_moved:,} residents moved ({100 * d.moved_share:.2f} %); "
                        f"CV {d.balance_before['cv']:.3f} → {d.balance_after['cv']:.3f}; grids "
                        f"{d.balance_before['grids']} → {d.balance_after['grids']}")
            st.caption(f"added {d.grids_added or '–'} · removed {d.grids_removed or '–'} · "
                       f"changed {d.grids_changed[:12] or '–'}{' …' if len(d.grids_changed) > 12 else ''}")


@st.cache_resource(show_spinner=False, max_entries=32)
def _diff_cached(_t: twin.Twin, key: str, url: str, a: int, b: int) -> versions.VersionDiff:
    return versions.diff_versions(edit_store(url), _t, a, b)


def _diff(ctx: EditContext, a: int, b: int) -> versions.VersionDiff:
    return _diff_cached(ctx.t, ctx.key, ctx.store.url, a, b)


def _messages(ctx: EditContext) -> None:
    ss = st.session_state
    if ss.get("ed_error"):
        st.error(ss["ed_error"])
    if ss.get("ed_conflict"):
        c = ss["ed_conflict"]
        st.error(f"Conflict: {c['message']}")
        st.button(f"Reload version {c['head']} (the head) and redo the edit", key="ed_reload", on_click=_reload)
    if ss.get("ed_notice"):
        st.success(ss["ed_notice"])


def _grid_section(ctx: EditContext) -> str | None:
    ss = st.session_state
    g = ctx.data.grids
    names = dict(zip(g["grid_code"], g["grid_name"]))
    st.selectbox("Grid 网格 (or click one on the map)", sorted(names), key="ed_grid", index=None,
                 format_func=lambda c: f"{names.get(c, c)} · {c}", placeholder="pick a grid",
                 on_change=_fly_to_grid, args=(ctx.view,))
    code = ss.get("ed_grid")
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
    same = [n for n in nb if comm[n] == row["community_code"]]
    st.markdown("**Neighbours 相邻网格**: " + ("、".join(
        f"{names.get(n, n)} `{n}`" + ("" if n in same else " (other community)") for n in nb) or "none"))
    ss["_ed_neighbours"] = nb
    return code


def _operations(ctx: EditContext, code: str) -> None:
    ss = st.session_state
    drawn = bool(ss.get("ed_drawn"))
    st.markdown("**Edit 调整** — each shows a preview first; drawn shapes come from ◯ Lasso / ⬠ Polygon on the map"
                + ("" if drawn else " (none drawn yet)"))
    c1, c2, c3 = st.columns([0.3, 0.35, 0.35], vertical_alignment="bottom")
    c1.number_input("parts k", min_value=2, max_value=8, value=2, step=1, key="ed_k")
    c2.button("Split into k (balanced)", key="ed_split", on_click=_preview,
              args=("split_k", f"split {code} into k parts"))
    c3.button("Split by drawn shape", key="ed_split_drawn", on_click=_preview, disabled=not drawn,
              args=("split_drawn", f"split {code} along the drawn shape"))
    nb = ss.get("_ed_neighbours") or []
    comm = dict(zip(ctx.data.partition.grids["grid_code"], ctx.data.partition.grids["community_code"]))
    c1, c2 = st.columns([0.6, 0.4], vertical_alignment="bottom")
    c1.selectbox("Merge with", nb, key="ed_merge_with", index=None, placeholder="an adjacent grid",
                 format_func=lambda n: n + ("" if comm.get(n) == comm.get(code) else " (other community)"))
    c2.button("Merge", key="ed_merge", on_click=_preview, disabled=not ss.get("ed_merge_with"),
              args=("merge", f"merge {ss.get('ed_merge_with')} into {code}"))
    c1, c2, c3 = st.columns([0.3, 0.35, 0.35], vertical_alignment="bottom")
    c1.checkbox("clip to community", key="ed_clip")
    c2.button("Redraw from shape", key="ed_redraw", on_click=_preview, disabled=not drawn,
              args=("redraw", f"redraw {code} from the drawn polygon"))
    c3.button("Move shape's cells here", key="ed_move", on_click=_preview, disabled=not drawn,
              args=("move", f"move the drawn area to {code}"))


def _rebalance_section(ctx: EditContext) -> None:
    ss = st.session_state
    c1, c2 = st.columns([0.4, 0.6], vertical_alignment="bottom")
    n = c1.number_input("grids wanted", min_value=147, max_value=900, value=TARGET_GRIDS, step=1, key="ed_n")
    if c2.button(f"Propose {int(n)} grids (twin.rebalance)", key="ed_propose"):
        _clear_messages()
        t0 = time.perf_counter()
        with st.spinner(f"Re-partitioning version {ctx.base} into {int(n)} grids (a few seconds) …"):
            try:
                p = view_data(ctx.t, ctx.key, ctx.store.url, ctx.base).partition
                res = twin.rebalance(ctx.t, int(n), partition=p, time_budget_s=30.0)
                _set_preview(ctx.t, p, res.partition, base=ctx.base, op="rebalance",
                             title=f"re-partition into {int(n)} grids", moved_share=res.moved_share,
                             seconds=time.perf_counter() - t0, text=res.to_text())
            except twin.TwinError as e:
                ss["ed_error"] = str(e)
        st.rerun()


def _preview_section(ctx: EditContext) -> None:
    ss = st.session_state
    pv = ss.get("ed_preview")
    if pv is None:
        return
    eff = pv["effect"]
    s = eff.summary
    st.subheader(f"Preview: {pv['title']}")
    new = eff.grids.loc[eff.grids["status"] == "added", "grid_code"].tolist()
    gone = eff.grids.loc[eff.grids["status"] == "removed", "grid_code"].tolist()
    st.caption(f"outlined in magenta on the map · {s['cells_moved']:,} cells change grid · grids "
               f"{s['grids_before']} → {s['grids_after']}" + (f" · new {new}" if new else "")
               + (f" · removed {gone}" if gone else ""))
    cols = st.columns(3)
    cols[0].metric("District CV", f"{s['cv_after']:.4f}", f"{s['cv_after'] - s['cv_before']:+.4f}",
                   delta_color="inverse")
    cols[1].metric("Max |deviation|", f"{100 * s['max_abs_dev_after']:.1f} %",
                   f"{100 * (s['max_abs_dev_after'] - s['max_abs_dev_before']):+.1f} pts", delta_color="inverse")
    if "moved_share" in pv:
        cols[2].metric("Residents moved", f"{100 * pv['moved_share']:.2f} %", help=f"{pv['seconds']:.1f} s")
    else:
        cols[2].metric("Grids touched", f"{len(eff.grids)}")
    g = eff.grids
    table = pd.DataFrame({
        "grid": g["grid_code"], "status": g["status"],
        "workload": [_arrow(a, b, "{:,.0f}") for a, b in zip(g["workload_before"], g["workload_after"])],
        "deviation": [_arrow(a, b, "{:+.1%}") for a, b in zip(g["deviation_before"], g["deviation_after"])],
        "km²": [_num(v, "{:.3f}") for v in g["area_km2"]],
        "Polsby–Popper": [_num(v, "{:.2f}") for v in g["polsby_popper"]],
    })
    st.dataframe(table, hide_index=True, height=min(36 * (len(table) + 1), 260))
    comm = eff.communities
    if len(comm) <= 6:
        st.caption("Community CV: " + " · ".join(
            f"{r.community_code} {r.cv_before:.3f} → {r.cv_after:.3f} ({r.grids_before} → {r.grids_after} grids)"
            for r in comm.itertuples()))
    else:
        st.caption(f"{len(comm)} communities touched; mean community CV {comm['cv_before'].mean():.3f} → "
                   f"{comm['cv_after'].mean():.3f}")
    st.text_input("Reason 原因", key="ed_reason", placeholder="why this edit (stored with the version; author at the top)")
    c1, c2 = st.columns(2)
    c1.button(f"✔ Commit (on version {pv['base']})", key="ed_commit", on_click=_commit, type="primary")
    c2.button("✕ Discard", key="ed_discard", on_click=_discard)


def _num(v: float, fmt: str) -> str:
    return "–" if pd.isna(v) else fmt.format(v)


def _arrow(a: float, b: float, fmt: str) -> str:
    fa = "–" if pd.isna(a) else fmt.format(a)
    fb = "–" if pd.isna(b) else fmt.format(b)
    return f"{fa} → {fb}"


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
    st.caption(f"{s['grids']} grids · max/min workload {s['max_over_min']:.2f} · mean Polsby–Popper "
               f"{s['mean_polsby_popper']:.3f} · contiguous {s['contiguous']} · nested {s['nested']} · "
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
    _messages(ctx)
    code = _grid_section(ctx)
    _preview_section(ctx)
    if code and not ctx.read_only:
        _operations(ctx, code)
    if not ctx.read_only:
        with st.expander(f"Propose {TARGET_GRIDS} grids (automatic re-partition)", expanded=False):
            _rebalance_section(ctx)
    _balance_section(ctx)
