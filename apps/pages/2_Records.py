"""台账 · Records: a community keeps its residents and businesses up to date — one change at a time, or its whole
sheet (download → edit offline → upload → review the diff → apply as one change set).

Thin wiring only: widgets → :mod:`twin.live` (changes, sheets, scoped, state). Every change is committed through
the live twin as a named, audited change set; the scope is :mod:`twin.access`'s (分权分域). SYNTHETIC records.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import twin  # noqa: E402
from apps import records, state  # noqa: E402
from twin.live import changes as ch  # noqa: E402
from twin.live.scoped import check_scope, check_unchanged_since, live_records, with_versions  # noqa: E402
from twin.live.sheets import (  # noqa: E402
    SCHEMAS,
    community_records,
    diff_sheets,
    diff_to_changes,
    export_sheet,
    parse_sheet,
)
from twin.live.state import LiveTwin  # noqa: E402

st.set_page_config(page_title="Records 台账 · Chancheng", page_icon="📒", layout="wide")

KINDS = {"move in 迁入": "moves_in", "move out 迁出": "moves_out", "born 出生": "born", "dies 死亡": "dies",
         "flag 标记 (残疾 / 低保 / 孕产)": "flag"}
FLAG_LABELS = {"disabled": "disabled 残疾", "low_income": "low income 低保", "pregnant": "pregnant 孕产妇"}
TABLES = {"residents": "persons", "businesses": "businesses"}
MIME = {"csv": "text/csv", "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


@st.cache_data(show_spinner="Reading the community's records …", max_entries=16)
def _records(_lt: LiveTwin, url: str, seq: int, kind: str, community: str, scope: tuple[str, ...],
             day: dt.date) -> pd.DataFrame:
    """The community's live records on ``day`` (cached per change head; ``scope`` keys the caller's rights)."""
    return live_records(_lt, TABLES[kind], day, community=community).reset_index(drop=True)


def _commit(lt: LiveTwin, changes: list[ch.Change], who: records.Acting, day: dt.date, base_seq: int) -> str:
    """Scope check, conflict check, one atomic change set; returns what was committed."""
    check_scope(lt, changes, who.role)
    check_unchanged_since(lt, changes, base_seq)
    res = lt.apply(with_versions(lt, changes), role=who.role.name)
    made = ", ".join(c for cs in res.created for c in cs)
    return (f"Committed change set {res.set_id} ({len(changes)} change{'s' * (len(changes) != 1)}, seq "
            f"{res.seqs[0]}–{res.seqs[-1]}) by {who.user}" + (f"; new record(s): {made}" if made else "") + ".")


def _text(v: Any) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k}={'' if x is None else x}" for k, x in v.items() if k != "grid_code")
    return "" if v is None else str(v)


try:
    t = state.get_twin()
    url = state.store_url(t)
    lt = records.live_twin(url)
    seq = lt.refresh()
except twin.TwinError as e:
    st.error(str(e))
    st.stop()
ss = st.session_state
today = dt.date.today()

st.title("台账 Records — residents and businesses of a community")
st.caption("SYNTHETIC records (made up from a seed, not real residents). Every change is a change set in the live "
           f"twin, logged to a named person (操作日志留痕) · change head {seq}")
who = records.acting(t)
if who is None:
    st.stop()
st.markdown(f"**{who.label}**")
tab_one, tab_bulk = st.tabs(["One change 单项变更", "Bulk 批量 (spreadsheet 表格)"])

with tab_one:
    people = _records(lt, url, seq, "residents", who.community, who.role.scope_codes, today)
    left, right = st.columns([3, 2])
    with left:
        kind = KINDS[st.selectbox("Change 变更", list(KINDS), key="rec_kind")]
        first_person = int(people["person_id"].iloc[0]) if len(people) else 0
        first_dwelling = int(people["dwelling_id"].iloc[0]) if len(people) else 0
        with st.form("one_change"):
            fields: dict[str, Any] = {}
            if kind in ("moves_out", "dies", "flag"):
                fields["person_id"] = st.number_input("Person id 人员编号", min_value=0, step=1, value=first_person)
            if kind in ("moves_in", "born"):
                fields["dwelling_id"] = st.number_input("Dwelling id 房屋编号", min_value=0, step=1,
                                                        value=first_dwelling)
                fields["sex"] = st.radio("Sex 性别", ["F", "M"], horizontal=True)
            if kind == "moves_in":
                fields["birth_date"] = st.date_input("Birth date 出生日期", value=dt.date(1956, 12, 20),
                                                     min_value=dt.date(1900, 1, 1), max_value=today)
                hh = st.number_input("Join household 户 (0 = a new household)", min_value=0, step=1, value=0)
                fields["household_id"] = int(hh) or None
                for f, label in FLAG_LABELS.items():
                    fields[f] = st.checkbox(label, value=False)
            if kind == "born":
                mother = st.number_input("Mother's person id (0 = not recorded)", min_value=0, step=1, value=0)
                fields["mother_id"] = int(mother) or None
            if kind == "flag":
                fields["flag"] = st.selectbox("Flag 标记", list(FLAG_LABELS), format_func=FLAG_LABELS.get)
                fields["value"] = st.radio("Value", ["on 有", "off 无"], horizontal=True) == "on 有"
            eff = st.date_input("Effective date 生效日期", value=today)
            reason = st.text_input("Reason 原因", placeholder="e.g. 户籍迁入登记 / death certificate")
            submitted = st.form_submit_button("Commit change 提交", type="primary")
    with right:
        st.subheader("Result 结果")
        if submitted:
            cls = {"moves_in": ch.PersonMovesIn, "moves_out": ch.PersonMovesOut, "born": ch.PersonBorn,
                   "dies": ch.PersonDies, "flag": ch.PersonFlagChanged}[kind]
            try:
                ints = {k: int(v) if k.endswith("_id") and v is not None else v for k, v in fields.items()}
                change = cls(effective_date=eff, author=who.user, reason=reason, **ints)
                st.success(_commit(lt, [change], who, eff, lt.refresh()))
            except twin.TwinError as e:
                st.error(str(e))
        else:
            st.caption("Fill in the form and commit: the result or the reason it was refused shows here.")
        mine = lt.events_between(today - dt.timedelta(days=366), today + dt.timedelta(days=366))
        mine = mine.loc[mine["author"] == who.user].tail(8)
        if len(mine):
            st.caption("Your latest changes")
            st.dataframe(mine[["set_id", "kind", "effective_date", "person_id", "business_id", "reason"]]
                         .astype({"effective_date": str}), hide_index=True, height=250)
    with st.expander(f"The community's residents ({len(people):,}, SYNTHETIC)"):
        st.dataframe(people.drop(columns=["town_code"], errors="ignore").head(500), hide_index=True, height=260)

with tab_bulk:
    c1, c2 = st.columns(2)
    kind = c1.radio("Sheet", list(SCHEMAS), horizontal=True, key="bulk_kind",
                    format_func=lambda k: {"residents": "residents 居民", "businesses": "businesses 法人"}[k])
    fmt = c2.radio("Format", ["xlsx", "csv"], horizontal=True, key="bulk_fmt")
    schema = SCHEMAS[kind]
    try:
        current = community_records(_records(lt, url, seq, kind, who.community, who.role.scope_codes, today),
                                    who.community, t=t, role=who.role)
    except twin.TwinError as e:
        st.error(str(e))
        st.stop()
    st.download_button(f"1 · Download {len(current):,} {kind} ({fmt.upper()})", export_sheet(current, schema, fmt),
                       file_name=f"{kind}_{who.community}.{fmt}", mime=MIME[fmt], key="bulk_download")
    st.caption("CSV is UTF-8 with BOM (Excel shows Chinese correctly); keep the header row. A blank id is a new "
               "record; a deleted row leaves the community (or dies); flags, dwelling/household, credit and "
               "building may change.")
    upload = st.file_uploader("2 · Upload the edited sheet", type=["csv", "xlsx"], key=f"bulk_upload_{kind}")
    if upload is None:
        st.stop()
    data = upload.getvalue()
    base = ss.setdefault("bulk_base", {}).setdefault(f"{upload.file_id}:{kind}:{who.community}", seq)
    parsed = parse_sheet(data, schema, filename=upload.name)
    diff = diff_sheets(current, parsed)
    removed_as = "moves_out"
    if kind == "residents":
        removed_as = "dies" if st.radio("A deleted row means", ["moves out 迁出", "dies 死亡"], horizontal=True,
                                        key="bulk_removed").startswith("dies") else "moves_out"
    changes, unsupported = diff_to_changes(diff, author=who.user, reason="review", effective_date=today,
                                           removed_as=removed_as)
    m = st.columns(5)
    m[0].metric("Rows read", f"{parsed.rows_read:,}")
    m[1].metric("Added 新增", f"{len(diff.added):,}")
    m[2].metric("Removed 删除", f"{len(diff.removed):,}")
    m[3].metric("Changed fields 修改", f"{len(diff.changed):,}")
    m[4].metric("Issues 问题", f"{len(parsed.issues) + len(unsupported):,}")
    problems = [*parsed.issues, *unsupported]
    if problems:
        st.warning("Rows with issues are left out of the diff (an existing record on such a row shows as removed): "
                   "fix them in the sheet and upload again. Nothing can be applied until then.")
        st.dataframe(pd.DataFrame([{"row": i.row, "column": i.column, "rule": i.rule, "problem": i.message}
                                   for i in problems]), hide_index=True, height=min(240, 35 * (len(problems) + 1) + 3))
    rows = pd.DataFrame(diff.to_rows(), columns=["change", "id", "row", "field", "old", "new"])
    if len(rows):
        rows["old"], rows["new"] = rows["old"].map(_text), rows["new"].map(_text)
        st.subheader("3 · Review the diff 核对")
        st.dataframe(rows, hide_index=True, height=min(320, 35 * (len(rows) + 1) + 3))
    elif not problems:
        st.info("The sheet equals the current records: nothing to apply.")
    with st.form("bulk_apply"):
        eff = st.date_input("Effective date 生效日期", value=today, key="bulk_eff")
        reason = st.text_input("Reason 原因", placeholder="e.g. monthly update 月度更新", key="bulk_reason")
        sure = st.checkbox(f"I reviewed the {len(changes)} change(s) above", key="bulk_sure")
        go = st.form_submit_button("4 · Apply as one change set 提交", type="primary",
                                   disabled=bool(problems) or not changes)
    if go:
        if not sure:
            st.error("Tick that you reviewed the changes first.")
        else:
            try:
                final, _ = diff_to_changes(diff, author=who.user, reason=reason, effective_date=eff,
                                           removed_as=removed_as)
                st.success(_commit(lt, final, who, eff, base))
                ss["bulk_base"].pop(f"{upload.file_id}:{kind}:{who.community}", None)
            except twin.TwinError as e:
                st.error(str(e))
