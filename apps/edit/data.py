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
           "version_diff", "context"]


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
