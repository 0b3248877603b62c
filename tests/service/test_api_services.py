"""/services over HTTP on the small twin: catalogue, counts per service and per grid (scoped, analysts published),
work lists (JSON/CSV/XLSX, scope), identify and status moves (named author, invalid move → 409, stale → 409)."""

from __future__ import annotations

import datetime as dt
import io
import warnings

import openpyxl
import pytest
from api_helpers import H, _problem

from twin.access import auth
from twin.live import changes as ch
from twin.live.state import LiveTwin
from twin.service.app import create_app
from twin.services import run_services
from twin.store.sql import Store

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette warns that its TestClient will move to httpx2
    from fastapi.testclient import TestClient


def _busiest_month(t) -> str:
    """The month of 2026 in which most residents turn 70 (so the lists are not empty)."""
    bd = t.persons["birth_date"]
    months = bd[bd.dt.year == 1956].dt.month.value_counts()
    return f"2026-{int(months.idxmax()):02d}"


@pytest.fixture(scope="module")
def env(small_twin, tmp_path_factory):
    d = tmp_path_factory.mktemp("svc_services")
    url = str(d / "state.sqlite")
    st = Store(url)
    g = small_twin.grids.astype(str)
    month = _busiest_month(small_twin)
    run = run_services(LiveTwin(small_twin, Store(url)), month)
    by_com = run.rows.loc[run.rows["service"] == "elderly_70"].groupby("community_code").size()
    ca = str(by_com.idxmax())
    cb = str(g.loc[g["community_code"] != ca, "community_code"].iloc[0])
    keys = {
        "district": auth.add_user(st, "admin", "district"),
        "comm_a": auth.add_user(st, "wang.fang", "community", [ca]),
        "comm_b": auth.add_user(st, "bo", "community", [cb]),
        "analyst": auth.add_user(st, "ana", "analyst"),
    }
    app = create_app(database_url=url, twin=small_twin, warm=False)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield {"c": c, "keys": keys, "store": st, "url": url, "ca": ca, "cb": cb, "month": month, "run": run}


def _get(env, path, key, **params):
    return env["c"].get(path, params=params, headers=H(env["keys"][key]))


def test_catalogue_lists_the_shipped_services_and_the_status_order(env):
    r = _get(env, "/services", "comm_a")
    assert r.status_code == 200, r.text
    body = r.json()
    names = [s["name"] for s in body["services"]]
    assert names[0] == "elderly_70" and "newborn_followup" in names and "low_income_60" in names
    assert body["services"][0]["kind"] == "age" and body["services"][0]["age"] == 70
    assert body["next"]["identified"] == ["notified"] and set(body["next"]["notified"]) == {"delivered", "declined"}


def test_run_counts_are_scoped_and_add_up(env):
    run, month = env["run"], env["month"]
    district = _get(env, "/services/run", "district", month=month).json()
    assert district["counts"] == run.counts() and district["counts"]["elderly_70"] > 0
    a = _get(env, "/services/run", "comm_a", month=month).json()
    b = _get(env, "/services/run", "comm_b", month=month).json()
    rows = run.rows
    for body, code in ((a, env["ca"]), (b, env["cb"])):
        mine = rows.loc[rows["community_code"] == code].groupby("service").size()
        assert body["counts"] == {s: int(mine.get(s, 0)) for s in run.counts()}, code
        assert body["scope"] == f"community {code}"
    assert a["counts"]["elderly_70"] < district["counts"]["elderly_70"] or len(set(rows["community_code"])) == 1
    one = _get(env, "/services/run", "comm_a", month=month, service="elderly_70").json()
    assert one["counts"] == {"elderly_70": a["counts"]["elderly_70"]}
    ana = _get(env, "/services/run", "analyst", month=month).json()
    assert ana["published"] is True
    for s, v in ana["counts"].items():  # suppressed below k (null), else a multiple of k = 5
        assert v is None or (v % 5 == 0 and abs(v - run.counts()[s]) < 5), (s, v)


def test_run_rejects_bad_months_and_unknown_services(env):
    _problem(_get(env, "/services/run", "district", month="2026-13"), 422)
    _problem(_get(env, "/services/run", "district", month="December"), 422)
    _problem(_get(env, "/services/run", "district", month=env["month"], service="free_beer"), 404)
    _problem(env["c"].get("/services/run", params={"month": env["month"]}), 401)


def test_counts_per_grid_exact_in_scope_published_outside(env):
    run, month = env["run"], env["month"]
    body = _get(env, "/services/counts", "comm_a", month=month).json()
    exact = run.rows.loc[run.rows["service"] == "elderly_70"].groupby("grid_code").size()
    for g in body["grids"]:
        want = int(exact.get(g["grid_code"], 0))
        if g["in_scope"]:
            assert g["elderly_70"] == want, g
        else:
            assert g["elderly_70"] is None or g["elderly_70"] % 5 == 0, g
    in_scope = [g for g in body["grids"] if g["in_scope"]]
    assert in_scope and sum(g["elderly_70"] for g in in_scope) == \
        _get(env, "/services/run", "comm_a", month=month).json()["counts"]["elderly_70"]


def test_worklist_json_csv_xlsx_and_scope(env):
    month, ca, cb = env["month"], env["ca"], env["cb"]
    r = _get(env, "/services/elderly_70/worklist", "comm_a", month=month)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["synthetic_names"] is True and body["rows"]
    assert {row["community_code"] for row in body["rows"]} == {ca}
    assert all(row["service"] == "elderly_70" and row["synthetic_name"] for row in body["rows"])
    want = env["run"].rows
    want = want.loc[(want["service"] == "elderly_70") & (want["community_code"] == ca), "person_id"]
    assert sorted(row["person_id"] for row in body["rows"]) == sorted(int(x) for x in want)
    csv = _get(env, "/services/elderly_70/worklist", "comm_a", month=month, format="csv")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert csv.content.startswith(b"\xef\xbb\xbf") and "attachment" in csv.headers["content-disposition"]
    text = csv.content.decode("utf-8-sig").splitlines()
    assert text[0].startswith("service,qualifying_date,synthetic_name") and len(text) == len(body["rows"]) + 1
    assert body["rows"][0]["synthetic_name"] in csv.content.decode("utf-8-sig")  # Chinese names survive
    xl = _get(env, "/services/elderly_70/worklist", "district", month=month, community=ca, format="xlsx")
    assert xl.status_code == 200
    wb = openpyxl.load_workbook(io.BytesIO(xl.content), read_only=True)
    assert len(list(wb.worksheets[0].iter_rows())) == len(body["rows"]) + 1 and "about" in wb.sheetnames
    # another community's list: 403, and the analyst never sees a record
    _problem(_get(env, "/services/elderly_70/worklist", "comm_b", month=month, community=ca), 403)
    other = _get(env, "/services/elderly_70/worklist", "comm_b", month=month).json()
    assert all(row["community_code"] == cb for row in other["rows"])
    _problem(_get(env, "/services/elderly_70/worklist", "analyst", month=month), 403)
    _problem(_get(env, "/services/nope/worklist", "district", month=month), 404)
    _problem(_get(env, "/services/elderly_70/worklist", "district", month=month, format="pdf"), 422)


def _status(env, key, pid, q, to, **kw):
    return env["c"].post("/services/elderly_70/status", headers=H(env["keys"][key]),
                         json={"person_id": pid, "qualifying_date": q, "to": to, **kw})


def test_identify_then_status_moves_with_named_author_and_conflicts(env):
    month = env["month"]
    r = env["c"].post("/services/identify", headers=H(env["keys"]["comm_a"]),
                      json={"month": month, "service": "elderly_70"})
    assert r.status_code == 200, r.text
    assert r.json()["identified"] == r.json()["persons"] > 0
    again = env["c"].post("/services/identify", headers=H(env["keys"]["comm_a"]),
                          json={"month": month, "service": "elderly_70"}).json()
    assert again["identified"] == 0  # idempotent
    row = _get(env, "/services/elderly_70/worklist", "comm_a", month=month).json()["rows"][0]
    pid, q = row["person_id"], row["qualifying_date"][:10]
    assert row["status"] == "identified"
    bad = _problem(_status(env, "comm_a", pid, q, "delivered"), 409)  # skips notified
    assert bad["current_status"] == "identified" and bad["allowed"] == ["notified"]
    _problem(_status(env, "comm_b", pid, q, "notified"), 403)  # another community's person
    _problem(_status(env, "analyst", pid, q, "notified"), 403)
    ok = _status(env, "comm_a", pid, q, "notified", note="phoned the family", expected_version=1)
    assert ok.status_code == 200, ok.text
    assert ok.json()["status"] == "notified" and ok.json()["updated_by"] == "wang.fang" and ok.json()["version"] == 2
    _problem(_status(env, "comm_a", pid, q, "delivered", expected_version=1), 409)  # stale
    done = _status(env, "comm_a", pid, q, "delivered", expected_version=2)
    assert done.status_code == 200 and done.json()["status"] == "delivered"
    final = _problem(_status(env, "comm_a", pid, q, "declined"), 409)
    assert final["current_status"] == "delivered" and final["allowed"] == []
    listed = _get(env, "/services/elderly_70/worklist", "comm_a", month=month).json()["rows"]
    assert next(x for x in listed if x["person_id"] == pid)["status"] == "delivered"
    _problem(_status(env, "comm_a", 10**9, q, "notified"), 404)  # not on the list
    _problem(_status(env, "comm_a", pid, "2026-02-30", "notified"), 422)


def test_a_committed_change_is_in_the_next_run(env, small_twin):
    month = env["month"]
    before = _get(env, "/services/run", "district", month=month).json()
    rows = env["run"].rows
    first = rows.loc[rows["service"] == "elderly_70"].sort_values("qualifying_date").iloc[-1]
    day = first["qualifying_date"].date() - dt.timedelta(days=1)
    LiveTwin(small_twin, Store(env["url"])).apply(ch.PersonDies(
        person_id=int(first["person_id"]), effective_date=day, author="李敏", reason="death certificate"))
    after = _get(env, "/services/run", "district", month=month).json()
    assert after["change_seq"] > before["change_seq"]
    assert after["counts"]["elderly_70"] == before["counts"]["elderly_70"] - 1
