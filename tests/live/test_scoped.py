"""twin.live.scoped on the small twin: a community user's changes stay in their scope, a record changed since the
user looked is a conflict naming it, and compare-and-set versions catch a change committed meanwhile."""

from __future__ import annotations

import datetime as dt

import pytest

from twin.access.roles import make_role
from twin.errors import ConflictError, PermissionDenied
from twin.live import changes as ch
from twin.live.scoped import check_scope, check_unchanged_since, live_records, with_versions
from twin.live.state import LiveTwin
from twin.store.sql import Store

DAY = dt.date(2026, 12, 1)
KW = {"author": "wang.fang", "reason": "test", "effective_date": DAY}


@pytest.fixture()
def live(small_twin, tmp_path):
    s = Store(tmp_path / "state.sqlite")
    yield LiveTwin(small_twin, s)
    s.close()


def _two_communities(live):
    p = live_records(live, "persons", DAY)
    a, b = sorted(set(p["community_code"]))[:2]
    return p, a, b


def test_live_records_locate_every_person_and_follow_changes(live):
    p, a, _ = _two_communities(live)
    assert len(p) == len(live.t.persons) and (p["community_code"] != "").all()
    for kind in ("persons", "businesses"):  # one community's records = the district's, filtered
        whole = live_records(live, kind, DAY)
        one = live_records(live, kind, DAY, community=a)
        want = whole.loc[whole["community_code"] == a].reset_index(drop=True)
        assert len(one) > 0 and one.reset_index(drop=True).equals(want), kind
    pid = int(p.loc[p["community_code"] == a, "person_id"].iloc[0])
    live.apply(ch.PersonMovesOut(person_id=pid, **KW))
    assert pid not in set(live_records(live, "persons", DAY)["person_id"])
    assert pid in set(live_records(live, "persons", DAY - dt.timedelta(days=1))["person_id"])


def test_a_community_user_changes_only_their_own_records(live):
    p, a, b = _two_communities(live)
    role = make_role("community", [a], user="wang.fang")
    mine = p.loc[p["community_code"] == a].iloc[0]
    theirs = p.loc[p["community_code"] == b].iloc[0]
    check_scope(live, [ch.PersonDies(person_id=int(mine["person_id"]), **KW),
                       ch.PersonMovesIn(dwelling_id=int(mine["dwelling_id"]), sex="F",
                                        birth_date=dt.date(1990, 1, 1), **KW)], role)
    with pytest.raises(PermissionDenied, match=f"person {int(theirs['person_id'])} is in grid"):
        check_scope(live, [ch.PersonDies(person_id=int(theirs["person_id"]), **KW)], role)
    with pytest.raises(PermissionDenied, match=f"dwelling {int(theirs['dwelling_id'])} is in grid"):
        check_scope(live, [ch.PersonMovesIn(dwelling_id=int(theirs["dwelling_id"]), sex="F",
                                            birth_date=dt.date(1990, 1, 1), **KW)], role)
    # moving one of mine out of scope is allowed (the destination is not checked, nor revealed) …
    check_scope(live, [ch.PersonMoves(person_id=int(mine["person_id"]), dwelling_id=int(theirs["dwelling_id"]),
                                      **KW)], role)
    # … moving one of theirs is not
    with pytest.raises(PermissionDenied, match=f"person {int(theirs['person_id'])} is in grid"):
        check_scope(live, [ch.PersonMoves(person_id=int(theirs["person_id"]), dwelling_id=int(mine["dwelling_id"]),
                                          **KW)], role)
    with pytest.raises(PermissionDenied, match="may not change records"):
        check_scope(live, [ch.PersonDies(person_id=int(mine["person_id"]), **KW)],
                    make_role("grid_worker", [str(mine["grid_code"])], user="wk"))
    check_scope(live, [ch.PersonDies(person_id=int(theirs["person_id"]), **KW)], make_role("district"))


def test_changed_since_you_looked_is_a_conflict_and_versions_guard_the_commit(live):
    p, a, _ = _two_communities(live)
    pid = int(p.loc[p["community_code"] == a, "person_id"].iloc[0])
    looked = live.refresh()
    mine = [ch.PersonFlagChanged(person_id=pid, flag="disabled", value=not bool(
        p.loc[p["person_id"] == pid, "disabled"].iloc[0]), **KW)]
    check_unchanged_since(live, mine, looked)  # nothing happened yet
    guarded = with_versions(live, mine)
    assert guarded[0].expected_version == 0
    other = LiveTwin(live.t, live.store)  # another process changes the same person meanwhile
    other.apply(ch.PersonFlagChanged(person_id=pid, flag="low_income", value=not bool(
        p.loc[p["person_id"] == pid, "low_income"].iloc[0]), author="李敏", reason="低保", effective_date=DAY))
    with pytest.raises(ConflictError, match=f"person {pid} was changed by change set 1 .*李敏"):
        check_unchanged_since(live, mine, looked)
    before = live.refresh()
    with pytest.raises(ConflictError, match=f"person:{pid} is at version 1"):
        live.apply(guarded)
    assert live.refresh() == before  # nothing of the refused set was written
    assert with_versions(live, mine)[0].expected_version == 1
