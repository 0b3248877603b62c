"""Cached data of edit mode: the state store, one stored version ready to show (:class:`ViewData`), version diffs,
and the per-run :class:`EditContext` (which version is the base, which is viewed).

Versions never change, so their data is cached by store URL + version id (``st.cache_resource``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import pandas as pd
import streamlit as st

import twin
from apps import state
from layers import edit as edit_layers
from layers.serialize import layer_to_json
from twin.partition import versions
from twin.partition.balance import balance_report, grid_polygons
from twin.partition.model import Partition
from twin.store.sql import Store, open_store

__all__ = ["ViewData", "EditContext", "store_url", "edit_store", "view_data", "current_store", "current_view",
           "version_diff", "diff_view", "context"]


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
    p = versions.load_partition(edit_store(url), _t, version)
    rep = balance_report(_t, p, polygons=False)
    polys = grid_polygons(_t, p)
    table = rep.table.merge(polys[["grid_code", "area_km2", "polsby_popper"]], on="grid_code", how="left")
    summary = dict(rep.summary, mean_polsby_popper=float(table["polsby_popper"].mean()))
    grids = polys[["grid_code", "grid_name", "community_code", "geometry"]].merge(
        table[["grid_code", "workload", "ideal", "deviation"]], on="grid_code", how="left")
    layer = layer_to_json(edit_layers.deviation_layer(grids))
    return ViewData(version, p, table, summary, grids, layer)


@st.cache_resource(show_spinner=False, max_entries=32)
def _diff_cached(_t: twin.Twin, key: str, url: str, a: int, b: int) -> versions.VersionDiff:
    return versions.diff_versions(edit_store(url), _t, a, b)


def version_diff(ctx: EditContext, a: int, b: int) -> versions.VersionDiff:
    """:func:`twin.partition.versions.diff_versions` of versions ``a`` → ``b`` (cached)."""
    return _diff_cached(ctx.t, ctx.key, ctx.store.url, a, b)


@st.cache_resource(show_spinner="Comparing the versions …", max_entries=16)
def _diff_view_cached(_t: twin.Twin, key: str, url: str, a: int, b: int) -> tuple[pd.DataFrame, str]:
    d = versions.diff_versions(edit_store(url), _t, a, b)
    va, vb = view_data(_t, key, url, a), view_data(_t, key, url, b)
    cols = ["grid_code", "grid_name", "workload", "residents", "deviation"]
    ta = va.table[va.table["grid_code"] != "UNASSIGNED"][cols].set_index("grid_code")
    tb = vb.table[vb.table["grid_code"] != "UNASSIGNED"][cols].set_index("grid_code")
    status = {**{g: "changed" for g in d.grids_changed}, **{g: "added" for g in d.grids_added},
              **{g: "removed" for g in d.grids_removed}}
    codes = sorted(status)
    table = pd.DataFrame({"grid_code": codes, "status": [status[c] for c in codes]})
    table["grid_name"] = [tb["grid_name"].get(c, ta["grid_name"].get(c, c)) for c in codes]
    for col in ("workload", "residents", "deviation"):
        table[f"{col}_a"] = [ta[col].get(c, float("nan")) for c in codes]
        table[f"{col}_b"] = [tb[col].get(c, float("nan")) for c in codes]
    shapes = pd.concat([vb.grids[vb.grids["grid_code"].isin([c for c in codes if status[c] != "removed"])],
                        va.grids[va.grids["grid_code"].isin(d.grids_removed)]], ignore_index=True)
    frame = gpd.GeoDataFrame(shapes[["grid_code", "grid_name", "geometry"]], geometry="geometry", crs="EPSG:4326")
    frame = frame.merge(table, on=["grid_code", "grid_name"], how="left")

    def fmt_dev(v: float) -> str:
        return "–" if pd.isna(v) else f"{100 * v:+.1f} %"

    frame["label"] = [f"v{a} → v{b}: workload {'–' if pd.isna(x) else f'{x:,.0f}'} → "
                      f"{'–' if pd.isna(y) else f'{y:,.0f}'}, deviation {fmt_dev(u)} → {fmt_dev(w)}"
                      for x, y, u, w in zip(frame["workload_a"], frame["workload_b"], frame["deviation_a"],
                                            frame["deviation_b"])]
    layer = layer_to_json(edit_layers.diff_layer(frame[["grid_code", "grid_name", "status", "label", "geometry"]]))
    return table, layer


def diff_view(ctx: EditContext, a: int, b: int) -> tuple[pd.DataFrame, str]:
    """Versions ``a`` → ``b`` for the eye: one row per grid added / removed / changed (``status``, ``grid_name``,
    ``workload``, ``residents`` and ``deviation`` as ``_a`` and ``_b``) and the map layer highlighting them
    (:func:`layers.edit.diff_layer`; removed grids drawn with their shape in ``a``). Cached per pair."""
    return _diff_view_cached(ctx.t, ctx.key, ctx.store.url, int(a), int(b))


def current_store() -> Store:
    """The store of the app's twin (for callbacks, which run before the script and get no context)."""
    return edit_store(store_url(state.get_twin()))


def current_view(version: int) -> ViewData:
    """:func:`view_data` of ``version`` for the app's twin (for callbacks)."""
    t = state.get_twin()
    return view_data(t, state.twin_key(t), store_url(t), int(version))


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
