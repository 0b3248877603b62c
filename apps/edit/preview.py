"""The preview of a proposed edit in the side panel: balance before → after, the touched grids and communities,
and the Commit / Discard buttons. Numbers come from :func:`twin.partition.balance.edit_effect` (kept in
``ed_preview`` by :mod:`apps.edit.actions`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from apps.edit import actions
from twin.partition.rebalance import latest_baselines

__all__ = ["preview_section", "touched_table"]


def _num(v: float, fmt: str) -> str:
    return "–" if pd.isna(v) else fmt.format(v)


def _arrow(a: float, b: float, fmt: str) -> str:
    return f"{_num(a, fmt)} → {_num(b, fmt)}"


def touched_table(grids: pd.DataFrame) -> pd.DataFrame:
    """The touched grids of an edit as shown, by name: status, workload, residents and deviation before → after,
    km², Polsby–Popper (``grids``: :attr:`EditEffect.grids`, with ``grid_name`` / ``residents_*`` when known —
    :func:`apps.edit.actions.named_grids`)."""
    g = grids
    name = g["grid_name"] if "grid_name" in g else g["grid_code"]
    out = {"name": list(name), "grid": g["grid_code"], "status": g["status"],
           "workload": [_arrow(a, b, "{:,.0f}") for a, b in zip(g["workload_before"], g["workload_after"])]}
    if "residents_before" in g:
        out["residents"] = [_arrow(a, b, "{:,.0f}") for a, b in zip(g["residents_before"], g["residents_after"])]
    out["deviation"] = [_arrow(a, b, "{:+.1%}") for a, b in zip(g["deviation_before"], g["deviation_after"])]
    out["km²"] = [_num(v, "{:.3f}") for v in g["area_km2"]]
    out["Polsby–Popper"] = [_num(v, "{:.2f}") for v in g["polsby_popper"]]
    order = {"added": 0, "changed": 1, "removed": 2, "ideal changed": 3}
    df = pd.DataFrame(out)
    return df.iloc[sorted(range(len(df)), key=lambda i: (order.get(str(df["status"].iloc[i]), 9), str(df["name"].iloc[i])))]


def _community_caption(comm: pd.DataFrame) -> str:
    if len(comm) <= 6:
        return "Community CV: " + " · ".join(
            f"{r.community_code} {r.cv_before:.3f} → {r.cv_after:.3f} ({r.grids_before} → {r.grids_after} grids)"
            for r in comm.itertuples())
    return (f"{len(comm)} communities touched; mean community CV {comm['cv_before'].mean():.3f} → "
            f"{comm['cv_after'].mean():.3f}")


def _names(grids: pd.DataFrame, status: str) -> str:
    sub = grids[grids["status"] == status]
    names = (sub["grid_name"] if "grid_name" in sub else sub["grid_code"]).astype(str).tolist()
    if len(names) > 6:
        return "、".join(names[:6]) + f" … (+{len(names) - 6})"
    return "、".join(names)


_FIGURES = ("cv", "max_dev", "polsby_popper", "clear_boundaries", "moved_share", "seconds")


def baselines_frame(figures: dict[str, Any], latest: dict[str, Any] | None) -> pd.DataFrame:
    """This proposal's figures (:meth:`twin.partition.rebalance.RebalanceResult.figures`) next to every baseline of
    the latest ``benchmarks/rebalance.py`` run (:func:`twin.partition.rebalance.latest_baselines`; none if absent)."""
    rows = [{"method": "this proposal (twin.rebalance)", "communities": "all", **{k: figures.get(k) for k in _FIGURES}}]
    for name, b in ((latest or {}).get("baselines") or {}).items():
        rows.append({"method": name, "communities": b.get("communities"), **{k: b.get(k) for k in _FIGURES}})
        same = b.get("ours_same") or {}
        if same:  # twin.rebalance on the communities that baseline reached: the like-for-like comparison
            rows.append({"method": "  twin.rebalance, same communities", "communities": b.get("communities"),
                         **{k: same.get(k) for k in _FIGURES}})
    return pd.DataFrame(rows, columns=["method", "communities", *_FIGURES])


def _baselines_table(figures: dict[str, Any]) -> None:
    latest = latest_baselines()
    st.dataframe(baselines_frame(figures, latest), hide_index=True, key="ed_baselines",
                 column_config={"max_dev": st.column_config.NumberColumn(format="percent"),
                                "moved_share": st.column_config.NumberColumn(format="percent"),
                                "clear_boundaries": st.column_config.NumberColumn(
                                    format="percent", help="share of grid boundary on street or water edges")})
    st.caption("Baselines: " + (f"benchmarks/rebalance.py run at {latest.get('run_at')} (load "
                                f"{latest.get('load_average')}); each on the communities it reached"
                                if latest else "no benchmark run yet (python benchmarks/rebalance.py)"))


def preview_section(error_here: Callable[[str], None]) -> None:
    """The previewed edit, if any, with its commit form (``error_here("commit")`` shows a failed commit right
    under the Commit button)."""
    pv = st.session_state.get("ed_preview")
    if pv is None:
        return
    eff = pv["effect"]
    grids = pv.get("named", eff.grids)
    s = eff.summary
    st.subheader(f"Preview: {pv['title']}")
    new, gone = _names(grids, "added"), _names(grids, "removed")
    st.caption(f"on the map: proposed grids filled by their **new** deviation (same legend), outlined in yellow · "
               f"{s['cells_moved']:,} cells change grid · grids {s['grids_before']} → {s['grids_after']}"
               + (f" · new: {new}" if new else "") + (f" · removed: {gone}" if gone else ""))
    cols = st.columns(3)
    cols[0].metric("District CV", f"{s['cv_after']:.4f}", f"{s['cv_after'] - s['cv_before']:+.4f}",
                   delta_color="inverse")
    cols[1].metric("Max |deviation|", f"{100 * s['max_abs_dev_after']:.1f} %",
                   f"{100 * (s['max_abs_dev_after'] - s['max_abs_dev_before']):+.1f} pts", delta_color="inverse")
    if "moved_share" in pv:
        cols[2].metric("Residents moved", f"{100 * pv['moved_share']:.2f} %", help=f"{pv['seconds']:.1f} s")
    else:
        cols[2].metric("Grids touched", f"{len(eff.grids)}")
    if "figures" in pv:
        _baselines_table(pv["figures"])
    table = touched_table(grids)
    st.dataframe(table, hide_index=True, height=min(36 * (len(table) + 1), 260), key="ed_preview_table")
    st.caption(_community_caption(eff.communities))
    c0, c1 = st.columns([0.35, 0.65])
    c0.text_input("Author 调整人", key="ed_author", placeholder="your name")
    c1.text_input("Reason 原因", key="ed_reason", placeholder="why this edit (stored with the version)")
    c1, c2 = st.columns(2)
    c1.button(f"✔ Commit (on version {pv['base']})", key="ed_commit", on_click=actions.commit, type="primary")
    c2.button("✕ Discard", key="ed_discard", on_click=actions.discard)
    error_here("commit")
