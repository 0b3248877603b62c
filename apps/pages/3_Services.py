"""无感服务 · Services: who qualifies this month for each no-application service, per community work lists with the
status of each person (identified → notified → delivered / declined) and CSV/XLSX downloads.

Thin wiring only: widgets → :mod:`twin.services` over the live twin. Names on the lists are SYNTHETIC.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import pandas as pd
import streamlit as st

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import twin  # noqa: E402
from apps import records, state  # noqa: E402
from twin.access.scope import record_scope, sees_everything  # noqa: E402
from twin.live.state import LiveTwin  # noqa: E402
from twin.services import ServiceRun, ServiceStatusStore, export_work_list, run_services, work_list  # noqa: E402
from twin.services.status import NEXT  # noqa: E402

st.set_page_config(page_title="Services 无感服务 · Chancheng", page_icon="🎁", layout="wide")
MIME = {"csv": "text/csv", "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
STATUS_LABELS = {"identified": "identified 已识别", "notified": "notified 已告知", "delivered": "delivered 已发放",
                 "declined": "declined 已放弃", "": "not yet identified 未建档"}


@st.cache_resource(show_spinner="Finding who qualifies (the live state of the month) …", max_entries=8)
def _run(_lt: LiveTwin, url: str, month: str, seq: int) -> ServiceRun:
    """The services run of ``month`` over the live twin, once per change head ``seq``."""
    return run_services(_lt, month)


def _months(today: dt.date) -> list[str]:
    first = today.replace(day=1)
    out = []
    for k in range(-3, 10):
        y, m = divmod(first.month - 1 + k, 12)
        out.append(f"{first.year + y}-{m + 1:02d}")
    return out


try:
    t = state.get_twin()
    url = state.store_url(t)
    lt = records.live_twin(url)
    store = state.app_store(url)
    seq = lt.refresh()
except twin.TwinError as e:
    st.error(str(e))
    st.stop()
ss = st.session_state
today = dt.date.today()

st.title("无感服务 Services — people found on the day they qualify")
st.caption("e.g. the elderly allowance on a resident's 70th birthday, found from the records instead of an "
           f"application. Persons and names are SYNTHETIC · live state at change {seq}")
who = records.acting(t)
if who is None:
    st.stop()
months = _months(today)
month = st.sidebar.selectbox("Month 月份", months, index=3, key="svc_month")
try:
    run = _run(lt, url, month, seq)
except twin.TwinError as e:
    st.error(str(e))
    st.stop()

rows = run.rows
if not sees_everything(who.role):
    rows = rows.loc[rows["grid_code"].isin(record_scope(who.role, t))]
titles = {s.name: s.title for s in run.services}
n = rows.groupby("service").size()
st.subheader(f"{month} · {'district' if sees_everything(who.role) else who.label}")
cols = st.columns(len(run.services))
for c, s in zip(cols, run.services, strict=True):
    c.metric(s.name, f"{int(n.get(s.name, 0)):,}", help=s.title)
if sees_everything(who.role) and len(rows):
    with st.expander("Per community 各村居"):
        com = records.communities(t, state.twin_key(t)).set_index("community_code")
        table = rows.groupby(["community_code", "service"]).size().unstack("service", fill_value=0)
        table.insert(0, "community", [f"{com.loc[c, 'town_name']} {com.loc[c, 'short_name']}" if c in com.index
                                      else c for c in table.index])
        st.dataframe(table, height=260)

st.subheader("Work list 工作清单")
c1, c2 = st.columns([2, 3])
service = c1.selectbox("Service 服务", [s.name for s in run.services], format_func=lambda s: f"{s} · {titles[s]}",
                       key="svc_service")
rev = ss.setdefault("svc_rev", 0)
key = (month, seq, who.community, service, who.user, who.role.name, rev)
if ss.get("svc_work_key") != key:  # work_list appends an audit entry: once per list shown, not once per rerun
    try:
        ss["svc_work"] = work_list(run, t, store=store, role=who.role, community=who.community, service=service)
        ss["svc_work_key"] = key
    except twin.TwinError as e:
        st.error(str(e))
        st.stop()
work: pd.DataFrame = ss["svc_work"]
c2.markdown(f"**{len(work):,}** person(s) in {who.label.split(' · ', 1)[-1]} · "
            + " · ".join(f"{STATUS_LABELS[k]}: {v}" for k, v in work["status"].value_counts().items()))
d1, d2, d3 = st.columns(3)
for col, fmt in ((d1, "csv"), (d2, "xlsx")):
    col.download_button(f"Download {fmt.upper()}", export_work_list(work, fmt), key=f"svc_dl_{fmt}",
                        file_name=f"worklist_{service}_{month}_{who.community}.{fmt}", mime=MIME[fmt])
missing = int((work["status"] == "").sum())
if d3.button(f"Identify {missing} new 建档", disabled=missing == 0, key="svc_identify"):
    try:
        new = ServiceStatusStore(store).identify(work, role=who.role, t=t)
        ss["svc_msg"] = ("ok", f"{new} person(s) recorded as identified by {who.user}.")
        ss["svc_rev"] = rev + 1
        st.rerun()
    except twin.TwinError as e:
        st.error(str(e))

show = work[["qualifying_date", "synthetic_name", "person_id", "grid_code", "worker_name", "status", "updated_by",
             "updated_at", "detail"]].copy()
show["qualifying_date"] = show["qualifying_date"].dt.date.astype(str)
show["status"] = show["status"].map(STATUS_LABELS)
st.caption("Pick a row to move its status (identified → notified → delivered / declined).")
picked = st.dataframe(show, hide_index=True, height=320, on_select="rerun", selection_mode="single-row",
                      key="svc_table")
msg = ss.pop("svc_msg", None)
if msg:
    (st.success if msg[0] == "ok" else st.error)(msg[1])
sel = picked.selection.rows if picked is not None else []
if sel and sel[0] < len(work):
    r = work.iloc[sel[0]]
    q = r["qualifying_date"].date()
    st.markdown(f"**{r['synthetic_name']}** (person {int(r['person_id'])}, SYNTHETIC) · {service} on {q} · "
                f"grid {r['grid_code']} · {STATUS_LABELS[r['status']]}")
    if r["status"] == "":
        st.info("Not on the stored list yet: identify the list first (button above).")
    else:
        note = st.text_input("Note 备注", key="svc_note", placeholder="e.g. phoned the family")
        nxt = NEXT[r["status"]]
        if not nxt:
            st.caption("Final status.")
        for col, to in zip(st.columns(max(len(nxt), 1)), nxt, strict=False):
            if col.button(f"→ {STATUS_LABELS[to]}", key=f"svc_to_{to}"):
                try:
                    ssx = ServiceStatusStore(store)
                    cur = ssx.get(service, int(r["person_id"]), q)
                    rec = ssx.advance(service, int(r["person_id"]), q, to, t=t, role=who.role, note=note,
                                      expected_version=cur.version)
                    ss["svc_msg"] = ("ok", f"{rec.key}: {cur.status} → {rec.status} by {rec.updated_by}.")
                    ss["svc_rev"] = rev + 1
                    st.rerun()
                except twin.TwinError as e:
                    st.error(str(e))
