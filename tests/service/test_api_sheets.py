"""/sheets over HTTP on the small twin: export (CSV with BOM, XLSX), diff of an edited upload (nothing written),
apply as one change set, scope (another community's records can be neither exported, diffed nor applied), bad
uploads (GBK, not-an-XLSX, empty, bad rows) and conflicts (a record changed after the diff → 409 naming it)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import warnings

import openpyxl
import pytest
from api_helpers import H, _problem

from twin.access import auth
from twin.live import changes as ch
from twin.live.events import head_seq
from twin.live.sheets import RESIDENTS, parse_sheet
from twin.live.state import LiveTwin
from twin.service.app import create_app
from twin.store.sql import Store

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette warns that its TestClient will move to httpx2
    from fastapi.testclient import TestClient


@pytest.fixture()
def env(small_twin, tmp_path):
    url = str(tmp_path / "state.sqlite")
    st = Store(url)
    g = small_twin.grids.astype(str)
    ca = str(g["community_code"].iloc[0])
    cb = str(g.loc[g["community_code"] != ca, "community_code"].iloc[0])
    keys = {
        "district": auth.add_user(st, "admin", "district"),
        "comm_a": auth.add_user(st, "wang.fang", "community", [ca]),
        "comm_b": auth.add_user(st, "bo", "community", [cb]),
        "analyst": auth.add_user(st, "ana", "analyst"),
    }
    app = create_app(database_url=url, twin=small_twin, warm=False)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield {"c": c, "keys": keys, "store": st, "url": url, "ca": ca, "cb": cb, "t": small_twin}
    st.close()


def _export(env, key, community, kind="residents", fmt="csv"):
    return env["c"].get(f"/sheets/{kind}", params={"community": community, "format": fmt},
                        headers=H(env["keys"][key]))


def _rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def _csv(rows: list[list[str]]) -> bytes:
    buf = io.StringIO(newline="")
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    return b"\xef\xbb\xbf" + buf.getvalue().encode("utf-8")


def _post(env, key, action, data: bytes, community, kind="residents", name="residents.csv", **form):
    return env["c"].post(f"/sheets/{kind}/{action}", headers=H(env["keys"][key]),
                         files={"file": (name, data, "text/csv")}, data={"community": community, **form})


def _persons_in(env, community):
    lt = LiveTwin(env["t"], Store(env["url"]))
    p = lt.persons_on(dt.date.today())
    return p.loc[p["community_code"] == community]


def test_export_csv_and_xlsx_of_the_callers_community(env):
    ca = env["ca"]
    r = _export(env, "comm_a", ca)
    assert r.status_code == 200, r.text
    assert r.content.startswith(b"\xef\xbb\xbf") and r.headers["content-type"].startswith("text/csv")
    rows = _rows(r.content)
    assert rows[0] == RESIDENTS.names
    mine = _persons_in(env, ca)
    assert sorted(int(x[0]) for x in rows[1:]) == sorted(int(x) for x in mine["person_id"])
    xl = _export(env, "comm_a", ca, fmt="xlsx")
    assert xl.status_code == 200 and xl.content[:2] == b"PK"
    parsed = parse_sheet(xl.content, RESIDENTS)
    assert parsed.ok and len(parsed.frame) == len(mine)
    assert "about" in openpyxl.load_workbook(io.BytesIO(xl.content), read_only=True).sheetnames
    biz = _export(env, "district", ca, kind="businesses")
    assert biz.status_code == 200 and _rows(biz.content)[0][0] == "business_id"


def test_scope_no_export_diff_or_apply_of_another_community(env):
    ca, cb = env["ca"], env["cb"]
    _problem(_export(env, "comm_b", ca), 403)
    _problem(_export(env, "comm_a", cb, kind="businesses"), 403)
    _problem(_export(env, "analyst", ca), 403)
    data = _export(env, "comm_a", ca).content
    _problem(_post(env, "comm_b", "diff", data, ca), 403)
    _problem(_post(env, "comm_b", "apply", data, ca, reason="x", confirm="true"), 403)
    _problem(_export(env, "comm_a", "440604999999"), 422)  # unknown community
    _problem(_export(env, "district", "440604999999"), 422)
    _problem(env["c"].get("/sheets/dogs", params={"community": ca}, headers=H(env["keys"]["district"])), 422)


def _edited(env):
    """The exported sheet of community A with one flag flipped, one row removed and one new resident."""
    rows = _rows(_export(env, "comm_a", env["ca"]).content)
    head = rows[0]
    i_dis = head.index("disabled")
    flipped = rows[1]
    flipped[i_dis] = "FALSE" if flipped[i_dis] == "TRUE" else "TRUE"
    removed = rows.pop(2)
    new = list(rows[3])
    new[0] = ""  # blank id = a new record
    new[head.index("birth_date")] = "1956-12-20"
    rows.append(new)
    return rows, int(flipped[0]), int(removed[0]), flipped[i_dis] == "TRUE"


def test_diff_shows_added_removed_changed_and_writes_nothing(env):
    rows, flipped, removed, _ = _edited(env)
    seq = head_seq(env["store"])
    r = _post(env, "comm_a", "diff", _csv(rows), env["ca"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["added"], body["removed"], body["changed_fields"]) == (1, 1, 1)
    assert body["applicable"] is True and body["issues"] == [] and body["base_seq"] == seq
    assert body["change_kinds"] == {"person.moves_in": 1, "person.moves_out": 1, "person.flag": 1}
    by = {x["change"]: x for x in body["rows"]}
    assert by["changed"]["id"] == flipped and by["changed"]["field"] == "disabled" and by["changed"]["row"] == 2
    assert by["removed"]["id"] == removed and by["added"]["new"]["birth_date"] == "1956-12-20"
    assert head_seq(env["store"]) == seq  # nothing written


def test_bad_uploads_name_the_problem_and_apply_refuses_them(env):
    ca = env["ca"]
    rows = _rows(_export(env, "comm_a", ca).content)
    sample = [list(r) for r in rows[:3]]
    sample[1][sample[0].index("sex")] = "男"  # GBK bytes C4 D0: not UTF-8
    gbk = "\r\n".join(",".join(r) for r in sample).encode("gbk")
    body = _post(env, "comm_a", "diff", gbk, ca).json()
    assert [i["rule"] for i in body["issues"]] == ["encoding"] and "UTF-8" in body["issues"][0]["message"]
    assert body["applicable"] is False
    junk = _post(env, "comm_a", "diff", b"PK\x03\x04 not really a zip", ca, name="r.xlsx").json()
    assert junk["issues"] and junk["issues"][0]["row"] is None and junk["applicable"] is False
    _problem(_post(env, "comm_a", "diff", b"", ca), 422)
    bad = [list(r) for r in rows]
    bad[3][bad[0].index("birth_date")] = "31/12/1956"
    bad[4][bad[0].index("sex")] = "X"
    body = _post(env, "comm_a", "diff", _csv(bad), ca).json()
    assert {(i["row"], i["column"]) for i in body["issues"]} == {(4, "birth_date"), (5, "sex")}
    assert body["rejected_rows"] == [4, 5] and body["applicable"] is False
    seq = head_seq(env["store"])
    p = _problem(_post(env, "comm_a", "apply", _csv(bad), ca, reason="monthly update", confirm="true"), 422)
    assert "row 4, birth_date" in p["detail"]
    assert head_seq(env["store"]) == seq


def test_apply_commits_one_change_set_by_the_named_caller(env):
    ca = env["ca"]
    rows, flipped, removed, now_disabled = _edited(env)
    data = _csv(rows)
    base = _post(env, "comm_a", "diff", data, ca).json()["base_seq"]
    _problem(_post(env, "comm_a", "apply", data, ca, reason="monthly update"), 422)  # no confirm
    _problem(_post(env, "analyst", "apply", data, ca, reason="monthly update", confirm="true"), 403)
    r = _post(env, "comm_a", "apply", data, ca, reason="monthly update", confirm="true", base_seq=str(base))
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["changes"] == 3 and len(out["seqs"]) == 3 and out["audit_seq"] is not None
    assert any(c and c[0].startswith("person:") for c in out["created"])
    lt = LiveTwin(env["t"], Store(env["url"]))
    ev = lt.events_between(dt.date.today(), dt.date.today())
    assert set(ev["set_id"]) == {out["set_id"]} and set(ev["author"]) == {"wang.fang"}
    assert set(ev["reason"]) == {"monthly update"}
    now = lt.persons_on(dt.date.today())
    assert removed not in set(now["person_id"])
    assert bool(now.loc[now["person_id"] == flipped, "disabled"].iloc[0]) == now_disabled
    # the new export equals the upload: a second apply of the same sheet changes nothing
    again = _rows(_export(env, "comm_a", ca).content)
    assert len(again) == len(rows)
    _problem(_post(env, "comm_a", "apply", _csv(again), ca, reason="again", confirm="true"), 422)


def test_a_record_changed_after_the_diff_is_a_conflict_naming_it(env):
    ca = env["ca"]
    rows, flipped, _, _ = _edited(env)
    data = _csv(rows)
    base = _post(env, "comm_a", "diff", data, ca).json()["base_seq"]
    low = bool(env["t"].persons.set_index("person_id").loc[flipped, "low_income"])
    LiveTwin(env["t"], Store(env["url"])).apply(ch.PersonFlagChanged(
        person_id=flipped, flag="low_income", value=not low, effective_date=dt.date.today(), author="李敏",
        reason="低保 granted"))
    seq = head_seq(env["store"])
    p = _problem(_post(env, "comm_a", "apply", data, ca, reason="monthly update", confirm="true",
                       base_seq=str(base)), 409)
    assert f"person {flipped}" in p["detail"] and "李敏" in p["detail"]
    assert head_seq(env["store"]) == seq  # nothing of the set was written


def test_new_residents_only_in_dwellings_of_the_callers_scope(env):
    ca, cb, t = env["ca"], env["cb"], env["t"]
    rows = _rows(_export(env, "comm_a", ca).content)
    b_grids = set(t.grids.loc[t.grids["community_code"].astype(str) == cb, "grid_code"].astype(str))
    b_building = t.buildings.loc[t.buildings["grid_code"].astype(str).isin(b_grids), "building_id"]
    dw = t.dwellings.loc[t.dwellings["building_id"].isin(b_building) & t.dwellings["household_id"].notna()].iloc[0]
    new = list(rows[1])
    new[0] = ""
    new[rows[0].index("dwelling_id")] = str(int(dw["dwelling_id"]))
    new[rows[0].index("building_id")] = str(int(dw["building_id"]))
    new[rows[0].index("household_id")] = str(int(dw["household_id"]))
    rows.append(new)
    seq = head_seq(env["store"])
    r = _post(env, "comm_a", "apply", _csv(rows), ca, reason="moved in", confirm="true")
    p = _problem(r, 403)
    assert f"dwelling {int(dw['dwelling_id'])}" in p["detail"]
    assert head_seq(env["store"]) == seq
