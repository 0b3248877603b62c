"""The preview of a proposed edit in the side panel: balance before → after, the touched grids and communities,
and the Commit / Discard buttons. Numbers come from :func:`twin.partition.balance.edit_effect` (kept in
``ed_preview`` by :mod:`apps.edit.actions`)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from apps.edit import actions

__all__ = ["preview_section", "touched_table"]


def _num(v: float, fmt: str) -> str:
    return "–" if pd.isna(v) else fmt.format(v)


def _arrow(a: float, b: float, fmt: str) -> str:
    return f"{_num(a, fmt)} → {_num(b, fmt)}"


def touched_table(grids: pd.DataFrame) -> pd.DataFrame:
    """The touched grids of an edit effect as shown: status, workload and deviation before → after, km², PP."""
    g = grids
    return pd.DataFrame({
        "grid": g["grid_code"], "status": g["status"],
        "workload": [_arrow(a, b, "{:,.0f}") for a, b in zip(g["workload_before"], g["workload_after"])],
        "deviation": [_arrow(a, b, "{:+.1%}") for a, b in zip(g["deviation_before"], g["deviation_after"])],
        "km²": [_num(v, "{:.3f}") for v in g["area_km2"]],
        "Polsby–Popper": [_num(v, "{:.2f}") for v in g["polsby_popper"]],
    })


def _community_caption(comm: pd.DataFrame) -> str:
    if len(comm) <= 6:
        return "Community CV: " + " · ".join(
            f"{r.community_code} {r.cv_before:.3f} → {r.cv_after:.3f} ({r.grids_before} → {r.grids_after} grids)"
            for r in comm.itertuples())
    return (f"{len(comm)} communities touched; mean community CV {comm['cv_before'].mean():.3f} → "
            f"{comm['cv_after'].mean():.3f}")


def preview_section() -> None:
    """The previewed edit, if any, with its commit form."""
    pv = st.session_state.get("ed_preview")
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
    table = touched_table(eff.grids)
    st.dataframe(table, hide_index=True, height=min(36 * (len(table) + 1), 260))
    st.caption(_community_caption(eff.communities))
    st.text_input("Reason 原因", key="ed_reason", placeholder="why this edit (stored with the version; author at the top)")
    c1, c2 = st.columns(2)
    c1.button(f"✔ Commit (on version {pv['base']})", key="ed_commit", on_click=actions.commit, type="primary")
    c2.button("✕ Discard", key="ed_discard", on_click=actions.discard)
