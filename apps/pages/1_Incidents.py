"""事件 · Incidents: the queue, acting on an incident, the closed-loop statistics and the inspection plan.

Thin wiring only: widgets → :mod:`twin` (incident_store, dispatch, incident_stats, inspections) → :mod:`layers`.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import pandas as pd
import pydeck as pdk
import streamlit as st

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import twin  # noqa: E402
from apps import live, state  # noqa: E402
from apps.components.deckmap import VendorMissingError, deck_map, ensure_vendor  # noqa: E402
from apps.panels import csv_bytes  # noqa: E402
from layers.incidents import (  # noqa: E402
    LEVEL_LABELS,
    category_label,
    incident_workers_layer,
    incidents_layer,
    inspections_layer,
)
from layers.serialize import layer_to_json  # noqa: E402
from twin.incidents.catalogue import LEVELS  # noqa: E402
from twin.incidents.dispatch import nearest_workers  # noqa: E402
from twin.incidents.inspections import inspection_plan, plan_summary  # noqa: E402
from twin.incidents.lifecycle import CST, OPEN_STATES, STATES, allowed_actions, overdue_mask  # noqa: E402
from twin.incidents.stats import incident_stats  # noqa: E402
from twin.incidents.store import (  # noqa: E402
    act_on_incident,
    board_for,
    dispatch_incident,
    escalate_incident,
    reassign_incident,
)
from twin.incidents.synth import seed_incidents  # noqa: E402

MAX_MAP_POINTS = 5_000

st.set_page_config(page_title="Incidents 事件 · Chancheng", page_icon="🚨", layout="wide")


@st.cache_data(show_spinner="Planning inspections …")
def _plan(_t: twin.Twin, key: str, month: str, green: int, yellow: int, red: int) -> pd.DataFrame:
    return inspection_plan(_t, month, frequency={"green": green, "yellow": yellow, "red": red})


def _map(t: twin.Twin, layers: list[pdk.Layer], *, key: str, height: int) -> dict | None:
    """The same deck.gl component as the one map (tooltips are templates, the district outline underneath);
    returns its last event (a click on an incident selects it)."""
    b = t.district.bounds
    return deck_map([state.static_layer(t, state.twin_key(t), "district-fill"),
                     *((lyr.id, layer_to_json(lyr)) for lyr in layers)], key=key, height=height,
                    view={"longitude": (b[0] + b[2]) / 2, "latitude": (b[1] + b[3]) / 2, "zoom": 11.3, "pitch": 0,
                          "bearing": 0}, fit_bounds=list(b),  # the whole district in the map's own size
                    click_layers=["incidents"])  # a click opens an incident; picking only them keeps it fast


def _select_from_map() -> None:
    """A click on an incident dot opens that incident below (the map's event is in session state)."""
    ev = st.session_state.get("incident-map")
    if isinstance(ev, dict) and ev.get("seq") != st.session_state.get("inc_map_seq"):
        st.session_state["inc_map_seq"] = ev.get("seq")
        iid = (ev.get("properties") or {}).get("id") if ev.get("event") == "click" else None
        if iid and ev.get("layer") == "incidents":
            st.session_state["inc_id"] = int(iid)


try:
    ensure_vendor()
except VendorMissingError as e:
    st.error(str(e))
    st.stop()
try:
    head = state.head_twin()  # dispatching and the board follow the head partition version
    t = head.twin
    istore = live.incident_store(state.store_url(t))
    cat = live.catalogue()
except twin.TwinError as e:
    st.error(str(e))
    st.stop()
ss = st.session_state
now = dt.datetime.now(CST).replace(microsecond=0)
actor = st.sidebar.text_input("Acting as 操作人", value=ss.get("actor", "district-admin"), key="actor")

st.title("事件 Incidents — report → dispatch → handle → follow up")
st.caption(f"Synthetic incident history (labelled synthetic) · {head.label}")
if istore.count() == 0:
    st.info("No incidents stored yet. Seed a SYNTHETIC 12-month history (≈ 30,000 cases, labelled synthetic) "
            "or import real ones with `twin incidents import FILE`.")
    if st.button("Seed synthetic history"):
        with st.spinner("Writing the synthetic history …"):
            seed_incidents(istore, t, cat, end=now)
        st.rerun()
    st.stop()

# --- filters ---------------------------------------------------------------------------------------------------
sb = st.sidebar
sb.header("Filters")
states = sb.multiselect("State", STATES, default=list(OPEN_STATES))
cats = sb.multiselect("Category", list(cat.index), format_func=lambda c: category_label(c, cat))
grid = sb.text_input("Grid code (blank = all)").strip()
only_overdue = sb.checkbox("Overdue only 超时")
latest = live.latest_report(istore) or now
end = min(now, latest)
days = sb.slider("Reported in the … days up to the latest report", 1, 400, 30,
                 help=f"The window ends at the latest report ({end:%Y-%m-%d %H:%M}), so a history that ended a "
                      "while ago still shows its newest incidents.")
try:
    q = istore.frame(states=states or None, categories=cats or None, grid_codes=[grid] if grid else None,
                     since=end - dt.timedelta(days=days))
except twin.TwinError as e:
    st.error(str(e))
    st.stop()
q["overdue"] = overdue_mask(q, now)
if only_overdue:
    q = q[q["overdue"]]
q = q.sort_values("reported_at", ascending=False)

tab_queue, tab_stats, tab_insp = st.tabs(["Queue 事件队列", "Statistics 统计", "Inspections 巡查计划"])

with tab_queue:
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Incidents shown", f"{len(q):,}")
    c2.metric("Open", f"{int(q['state'].isin(OPEN_STATES).sum()):,}")
    c3.metric("Overdue", f"{int(q['overdue'].sum()):,}")
    c4.metric("Linked repeat reports", f"{int(q['linked_reports'].sum()):,}")
    board = board_for(istore, t)
    shown = q.head(MAX_MAP_POINTS)
    _select_from_map()
    _map(t, [incidents_layer(shown, overdue=shown["overdue"].to_numpy(), catalogue=cat),
             incident_workers_layer(board)], key="incident-map", height=480)
    cols = ["id", "state", "overdue", "category", "severity", "channel", "reported_at", "grid_code", "level",
            "handler_code", "assignee", "deadline", "linked_reports", "version"]
    table = q[cols].head(1000).copy()
    table["category"] = [category_label(c, cat) for c in table["category"].astype(str)]
    table["level"] = [LEVEL_LABELS.get(v, v) for v in table["level"].fillna("").astype(str)]
    st.caption("Click a row (or an incident on the map) to open it below.")
    picked = st.dataframe(table, hide_index=True, height=300, on_select="rerun", selection_mode="single-row",
                          key="inc_table")
    rows = picked.selection.rows if picked is not None else []
    if rows and st.session_state.get("inc_table_pick") != int(table["id"].iloc[rows[0]]):
        st.session_state["inc_table_pick"] = int(table["id"].iloc[rows[0]])
        st.session_state["inc_id"] = st.session_state["inc_table_pick"]

    st.subheader("Act on an incident")
    if "inc_id" not in st.session_state:
        st.session_state["inc_id"] = int(q["id"].iloc[0]) if len(q) else 1
    iid = st.number_input("Incident id", min_value=1, step=1, key="inc_id")
    try:
        inc = istore.get(int(iid))
    except twin.TwinError as e:
        st.error(str(e))
        st.stop()
    st.caption(f"#{inc.id} · {category_label(inc.category, cat)} · state **{inc.state}** · level "
               f"{inc.level or '-'} · handler {inc.handler_code or '-'} · assignee {inc.assignee or '-'} · "
               f"deadline {inc.deadline.isoformat() if inc.deadline else '-'} · v{inc.version}")
    actions = allowed_actions(inc.state)
    if not actions:
        st.success("Closed: followed up (final state).")
    else:
        act = st.selectbox("Action", actions)
        reason = st.text_input("Reason (required for reassign / escalate / reopen)")
        sat = st.slider("Satisfaction 满意度", 1, 5, 5) if act == "follow_up" else None
        worker = None
        if act == "reassign":  # nearest available (online) workers first, with distance and open cases
            near = nearest_workers(board, inc.lng, inc.lat, k=12)
            near = near[near["worker_id"] != (inc.assignee or "")]
            labels = {str(r.worker_id): f"{r.worker_id} {r.name} · {r.dist_m:,.0f} m · grid {r.grid_code} · "
                                        f"{int(r.open_cases)} open" for r in near.itertuples()}
            worker = st.selectbox("To worker (nearest available first)", list(labels), format_func=labels.get)
        lvl = None
        if act == "escalate":
            higher = [x for x in LEVELS if not inc.level or LEVELS.index(x) > LEVELS.index(inc.level)]
            lvl = st.selectbox("To level", higher)
        if act == "dispatch":
            lvl = st.selectbox("Level", ["automatic", *LEVELS])
            lvl = None if lvl == "automatic" else lvl
        if st.button(f"Apply {act}", type="primary"):
            try:
                if act == "dispatch":
                    dispatch_incident(istore, t, cat, inc.id, actor=actor, now=now, level=lvl)
                elif act == "reassign":
                    reassign_incident(istore, t, inc.id, str(worker), actor=actor, now=now, reason=reason)
                elif act == "escalate":
                    escalate_incident(istore, cat, inc.id, actor=actor, now=now, reason=reason, to_level=lvl)
                else:
                    act_on_incident(istore, inc.id, act, actor=actor, now=now, reason=reason, satisfaction=sat,
                                    catalogue=cat, expected_version=inc.version)
                st.rerun()
            except twin.TwinError as e:
                st.error(str(e))
    with st.expander("Audit trail 操作日志"):
        st.dataframe(istore.transitions(inc.id), hide_index=True)

with tab_stats:
    by = st.radio("By", ["district", "town", "community", "grid"], horizontal=True)
    per = st.radio("Period", ["whole", "M", "W"], horizontal=True)
    since = st.date_input("Reported since", value=(now - dt.timedelta(days=365)).date())
    frame = istore.frame(since=since)
    try:
        stats = incident_stats(frame, by=by, period=None if per == "whole" else per, now=now)
    except twin.TwinError as e:
        st.error(str(e))
    else:
        st.dataframe(stats.reset_index().astype({"period": str} if per != "whole" else {}), hide_index=True,
                     column_config={c: st.column_config.NumberColumn(format="percent")
                                    for c in ("closure_rate", "on_time_rate", "satisfaction_rate",
                                              "immediate_answer_rate")})
        st.caption("closure = resolved or followed up; on time = resolved by the deadline; satisfaction = share of "
                   "follow-ups scoring 4–5; immediate answer = settled on first contact.")

with tab_insp:
    c1, c2, c3, c4 = st.columns(4)
    month = c1.text_input("Month", value=now.strftime("%Y-%m"))
    g, y, r = (c2.number_input("Green / month", 0, 20, 1), c3.number_input("Yellow / month", 0, 20, 2),
               c4.number_input("Red / month", 0, 20, 4))
    try:
        plan = _plan(t, state.twin_key(t), month, int(g), int(y), int(r))
    except twin.TwinError as e:
        st.error(str(e))
        st.stop()
    st.write(f"{len(plan):,} visits to {plan['business_id'].nunique():,} businesses by "
             f"{plan['worker_id'].nunique()} workers over {plan['date'].nunique()} working days.")
    st.dataframe(plan_summary(plan).reset_index(), hide_index=True, height=240)
    day = st.selectbox("Show visits on", sorted(plan["date"].unique()))
    today = plan[plan["date"] == day]
    _map(t, [inspections_layer(today)], key="inspection-map", height=420)
    st.download_button("Download plan CSV", csv_bytes(plan.to_csv(index=False)),
                       file_name=f"inspection_plan_{month}.csv", mime="text/csv")
