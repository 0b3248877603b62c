"""Streamlit panels of the map app: the area summary, the grid dossier (edit mode's panel is :mod:`apps.edit`).

Panels take plain data (an ``AreaSummary``, a dossier dict) and draw widgets; no twin computations here. Downloads:
CSV as UTF-8 with a BOM (``utf-8-sig``, so spreadsheet programs read the Chinese names), JSON by the one encoder
:func:`twin.encoding.dumps`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from twin.encoding import dumps
from twin.query.results import AreaSummary

__all__ = ["fmt_count", "summary_panel", "dossier_panel", "summary_csv", "csv_bytes", "TOTAL_LABELS", "KEY_LABELS"]

TOTAL_LABELS = {
    "residents": "Residents 常住人口",
    "dwellings": "Dwellings 房屋",
    "buildings": "Buildings 建筑",
    "businesses": "Businesses 法人",
    "cameras": "Cameras 视频",
    "workers": "Grid workers 网格员",
}
KEY_LABELS = {
    "disabled": "Disabled 残疾人",
    "low_income": "Low income 低保",
    "pregnant": "Pregnant 孕产妇",
    "elderly_70": "Elderly 70+",
    "elderly_80": "Elderly 80+",
    "age_0_14": "Age 0–14",
}
_CREDIT = {"green": ":green[●] Green 绿码", "yellow": ":orange[●] Yellow 黄码", "red": ":red[●] Red 红码"}


def fmt_count(v: int | float | None) -> str:
    """Thousands-separated count, or "suppressed" for ``None`` (never shown as 0)."""
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return "suppressed"
    return f"{int(v):,}"


def _metrics(items: dict[str, Any], labels: dict[str, str], ncols: int = 3) -> None:
    keys = [k for k in labels if k in items]
    for i in range(0, len(keys), ncols):
        cols = st.columns(ncols)
        for col, k in zip(cols, keys[i:i + ncols]):
            col.metric(labels[k], fmt_count(items[k]))


def csv_bytes(text: str) -> bytes:
    """CSV text as a download: UTF-8 with a BOM (``utf-8-sig``)."""
    return text.encode("utf-8-sig")


def summary_csv(summary: AreaSummary) -> str:
    """The result as CSV: one row per grid touched, then the area totals as a last row (grid_code="TOTAL")."""
    table = summary.by_grid.copy()
    total = {"grid_code": "TOTAL", "grid_name": "area total", **summary.totals}
    table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)
    return table.to_csv(index=False)


def summary_panel(summary: AreaSummary, *, title: str, geojson: dict[str, Any], ms: float, file_stem: str) -> None:
    """Totals, key populations, credit colours, per-grid/community tables and downloads of an area query."""
    st.subheader(title)
    st.caption(f"Area {summary.area_km2:,.3f} km² · {len(summary.by_grid)} grids touched · "
               f"{len(summary.cells):,} cells · query {ms:.0f} ms")
    for w in summary.warnings:
        st.warning(w)
    if summary.suppressed:
        st.info(f"{len(summary.suppressed)} small counts suppressed for your role (shown as 'suppressed').")
    _metrics(summary.totals, TOTAL_LABELS)
    st.markdown("**Key populations 重点人群**")
    _metrics(summary.totals, KEY_LABELS)
    st.markdown("**Businesses by credit colour 信用三色**")
    cols = st.columns(3)
    for col, k in zip(cols, ("green", "yellow", "red")):
        col.metric(_CREDIT[k], fmt_count(summary.businesses_by_credit.get(k)))
    if summary.buildings_by_use:
        st.caption("Buildings by use: " + " · ".join(f"{k} {fmt_count(v)}" for k, v in summary.buildings_by_use.items()))
    tab_g, tab_c, tab_t = st.tabs(["By grid", "By community", "By town"])
    show = ["residents", "dwellings", "businesses", "disabled", "low_income", "pregnant", "elderly_80", "workers"]
    with tab_g:
        cols_g = [c for c in ["grid_code", "grid_name", *show, "share_of_grid_residents"] if c in summary.by_grid]
        st.dataframe(summary.by_grid[cols_g], hide_index=True, height=260)
    with tab_c:
        cols_c = [c for c in summary.by_community.columns if c in
                  ["community_code", "community_name", "short_name", *show]]
        st.dataframe(summary.by_community[cols_c], hide_index=True)
    with tab_t:
        cols_t = [c for c in summary.by_town.columns if c in ["town_code", "town_name", *show]]
        st.dataframe(summary.by_town[cols_t], hide_index=True)
    c1, c2 = st.columns(2)
    c1.download_button("⬇ Result CSV", csv_bytes(summary_csv(summary)), file_name=f"{file_stem}.csv", mime="text/csv")
    c2.download_button("⬇ Area GeoJSON", dumps(geojson), file_name=f"{file_stem}.geojson",
                       mime="application/geo+json")


def dossier_panel(dossier: dict[str, Any], neighbours: list[tuple[str, str]], *, version: str = "",
                  live_status: dict[str, str] | None = None) -> None:
    """A grid's dossier: where it is, what it holds, who works it and their status, its neighbours.

    ``version`` names the partition version the dossier is of; ``live_status`` (worker id → online/offline from the
    store's worker board) overrides the build-time status."""
    g, c = dossier["grid"], dossier["counts"]
    st.subheader(f"Grid dossier 网格档案 · {g['grid_name']}")
    st.markdown(f"**{g['town_name']}** › **{g['community_name']}** › `{g['grid_code']}` · "
                f"{g['area_km2']:.3f} km² · {g['n_cells']} cells" + (f" · {version}" if version else ""))
    _metrics(c, {"residents": "Residents 常住人口", "dwellings": "Dwellings 房屋", "buildings": "Buildings 建筑"})
    _metrics(c, KEY_LABELS)
    cols = st.columns(4)
    cols[0].metric("Businesses 法人", fmt_count(c.get("businesses")))
    for col, k in zip(cols[1:], ("green", "yellow", "red")):
        col.metric(_CREDIT[k], fmt_count(c.get(f"credit_{k}")))
    st.markdown("**Grid workers 网格员**")
    workers = pd.DataFrame(dossier["workers"] or [])
    if workers.empty:
        st.write("no worker assigned")
    else:
        if live_status:
            workers["status"] = [live_status.get(str(w), s) for w, s in zip(workers["worker_id"], workers["status"])]
        st.dataframe(workers[["worker_id", "name", "status"]], hide_index=True)
    st.markdown("**Neighbouring grids 相邻网格**: " + ("、".join(f"{n} ({code})" for code, n in neighbours) or "none"))
