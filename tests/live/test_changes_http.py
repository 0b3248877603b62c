"""POST /changes on the small twin: a change set committed by the caller (author), scope (a community may change
only its own records, may move a person out of its scope, may not move one in from elsewhere), refusals
(422 / 404 / 409) with nothing written, analysts refused, one audit entry per set."""

from __future__ import annotations

import datetime as dt
import warnings

import pytest

from twin.access import audit, auth
from twin.live.events import head_seq, read_events
from twin.model import Twin
from twin.service.app import create_app
from twin.store.sql import Store

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette warns that its TestClient will move to httpx2
    from fastapi.testclient import TestClient

DAY = "2026-12-01"


def H(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture()
def env(small_twin: Twin, tmp_path):  # noqa: ANN001, ANN201
    url = str(tmp_path / "state.sqlite")
    st = Store(url)
    g = small_twin.grids.astype(str)
    ca = str(g["community_code"].iloc[0])
    cb = str(g.loc[g["community_code"] != ca, "community_code"].iloc[0])
    keys = {"district": auth.add_user(st, "admin", "district"),
            "comm_a": auth.add_user(st, "wang.fang", "community", [ca]),
            "analyst": auth.add_user(st, "ana", "analyst")}
    b = small_twin.buildings.assign(community=small_twin.grid_of_cells(small_twin.buildings["cell"].to_numpy()))
    com = g.set_index("grid_code")["community_code"]
    b["community"] = com.reindex(b["community"]).to_numpy()
    p = small_twin.persons.merge(b[["building_id", "community"]], on="building_id")
    d = small_twin.dwellings.merge(b[["building_id", "community"]], on="building_id")
    app = create_app(database_url=url, twin=small_twin, warm=False)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield {"c": c, "keys": keys, "store": st, "t": small_twin,
               "pa": p.loc[p["community"] == ca, "person_id"].tolist(),
               "pb": p.loc[p["community"] == cb, "person_id"].tolist(),
               "da": d.loc[d["community"] == ca, "dwelling_id"].tolist(),
               "db": d.loc[d["community"] == cb, "dwelling_id"].tolist()}
    st.close()


def _post(env, key: str, changes: list[dict], reason: str = "visit"):  # noqa: ANN001, ANN202
    return env["c"].post("/changes", headers=H(env["keys"][key]), json={"changes": changes, "reason": reason})


def test_district_commits_a_change_set(env) -> None:  # noqa: ANN001
    r = _post(env, "district", [{"kind": "person.dies", "person_id": 7, "effective_date": DAY},
                                {"kind": "person.born", "dwelling_id": 0, "sex": "F", "effective_date": DAY}])
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["n_changes"] == 2 and len(body["seqs"]) == 2 and body["created"] == [[], [f"person:{len(env['t'].persons)}"]]
    ev = read_events(env["store"])
    assert [e.author for e in ev] == ["admin", "admin"] and ev[0].reason == "visit"
    assert any(e.endpoint == "live.changes" and e.user_name == "admin" for e in audit.entries(env["store"]))


def test_refusals_write_nothing(env) -> None:  # noqa: ANN001
    bad = [{"kind": "person.dies", "person_id": 7, "effective_date": DAY},
           {"kind": "person.moves", "person_id": 7, "dwelling_id": 1, "effective_date": DAY}]
    r = _post(env, "district", bad)
    assert r.status_code == 422 and "person:7 is gone" in r.json()["detail"]
    assert _post(env, "district", [{"kind": "person.dies", "person_id": 10**8, "effective_date": DAY}]).status_code == 404
    r = _post(env, "district", [{"kind": "person.dies", "person_id": 7, "effective_date": DAY, "expected_version": 3}])
    assert r.status_code == 409 and "person:7 is at version 0" in r.json()["detail"]
    r = _post(env, "district", [{"kind": "person.flies", "person_id": 7, "effective_date": DAY}])
    assert r.status_code == 422 and "changes[0]: unknown kind 'person.flies'" in r.json()["detail"]
    r = _post(env, "district", [{"kind": "person.dies", "person_id": 7, "effective_date": DAY, "author": "someone"}])
    assert r.status_code == 422 and "is not you" in r.json()["detail"]
    assert head_seq(env["store"]) == 0


def test_community_scope(env) -> None:  # noqa: ANN001
    pa, pb, da, db = env["pa"], env["pb"], env["da"], env["db"]
    # its own resident: yes
    assert _post(env, "comm_a", [{"kind": "person.dies", "person_id": pa[0], "effective_date": DAY}]).status_code == 201
    # a resident of another community: no
    r = _post(env, "comm_a", [{"kind": "person.dies", "person_id": pb[0], "effective_date": DAY}])
    assert r.status_code == 403 and "outside your scope" in r.json()["detail"]
    # move its resident out of its scope: yes, and the answer says nothing of the destination
    r = _post(env, "comm_a", [{"kind": "person.moves", "person_id": pa[1], "dwelling_id": db[0], "effective_date": DAY}])
    assert r.status_code == 201 and str(db[0]) not in str(r.json()["created"])
    # move someone else's resident into its scope: no
    r = _post(env, "comm_a", [{"kind": "person.moves", "person_id": pb[1], "dwelling_id": da[0], "effective_date": DAY}])
    assert r.status_code == 403
    # a birth into another community's dwelling: no
    r = _post(env, "comm_a", [{"kind": "person.born", "dwelling_id": db[1], "sex": "M", "effective_date": DAY}])
    assert r.status_code == 403
    # analysts never change records
    r = _post(env, "analyst", [{"kind": "person.dies", "person_id": pa[2], "effective_date": DAY}])
    assert r.status_code == 403
    assert [e.kind for e in read_events(env["store"])] == ["person.dies", "person.moves"]
    assert dt.date.fromisoformat(DAY) == read_events(env["store"])[0].effective_date
