"""Work-list statuses in the store (SQLite and PostgreSQL): identified → notified → delivered / declined."""

from __future__ import annotations

import pytest

from twin.access import audit
from twin.access.roles import DISTRICT, make_role
from twin.errors import ConflictError, InvalidTransition, NotFoundError, PermissionDenied, ValidationError
from twin.services import ServiceStatusStore, run_services, snapshot_view


@pytest.fixture()
def listed(small_twin):
    run = run_services(snapshot_view(small_twin), "2026-12")
    assert len(run.rows) >= 2
    return run.rows


def test_identify_is_idempotent_and_audited(any_store, listed):
    book = ServiceStatusStore(any_store)
    assert book.identify(listed, role=DISTRICT, at="2026-12-01T09:00:00") == len(listed)
    assert book.identify(listed, role=DISTRICT) == 0  # the same month twice adds nothing
    frame = book.frame()
    assert len(frame) == len(listed) and set(frame["status"]) == {"identified"}
    assert frame["updated_at"].str.startswith("2026-12-01T09:00:00").all()
    assert [e.endpoint for e in audit.entries(any_store)] == ["services.identify"]
    assert audit.verify(any_store).ok


def test_transitions_with_who_and_when(any_store, listed, small_twin):
    book = ServiceStatusStore(any_store)
    book.identify(listed)
    r = listed.iloc[0]
    key = (r["service"], int(r["person_id"]), r["qualifying_date"].date())
    worker = make_role("community", [r["community_code"]], user="li.worker")
    s1 = book.advance(*key, "notified", t=small_twin, role=worker, at="2026-12-02T10:00:00", note="phoned")
    assert (s1.status, s1.version, s1.updated_by, s1.note) == ("notified", 2, "li.worker", "phoned")
    assert s1.updated_at.startswith("2026-12-02T10:00:00") and s1.updated_at.endswith("+08:00")
    s2 = book.advance(*key, "delivered", t=small_twin, role=worker, expected_version=2)
    assert book.get(*key) == s2 and s2.status == "delivered" and s2.version == 3
    hist = book.history(*key)
    assert hist[["from_status", "to_status"]].values.tolist() == [["", "identified"], ["identified", "notified"],
                                                                 ["notified", "delivered"]]
    assert hist["actor"].tolist()[1:] == ["li.worker", "li.worker"]
    with pytest.raises(InvalidTransition, match="cannot go from 'delivered' to 'declined'; next may be nothing"):
        book.advance(*key, "declined", t=small_twin, role=worker)
    assert [e.endpoint for e in audit.entries(any_store)].count("services.status") == 2
    assert audit.verify(any_store).ok


def test_invalid_transitions_conflicts_scope_and_unknowns(any_store, listed, small_twin):
    book = ServiceStatusStore(any_store)
    book.identify(listed)
    r = listed.iloc[0]
    key = (r["service"], int(r["person_id"]), r["qualifying_date"].date())
    with pytest.raises(InvalidTransition, match="cannot go from 'identified' to 'delivered'; next may be notified"):
        book.advance(*key, "delivered", t=small_twin)
    with pytest.raises(ValidationError, match="unknown status 'paid'"):
        book.advance(*key, "paid", t=small_twin)
    with pytest.raises(ConflictError, match="at version 1"):
        book.advance(*key, "notified", t=small_twin, expected_version=5)
    other = sorted(set(small_twin.grids["community_code"].astype(str)) - {r["community_code"]})[0]
    with pytest.raises(PermissionDenied, match="outside community"):
        book.advance(*key, "notified", t=small_twin, role=make_role("community", [other], user="x"))
    with pytest.raises(NotFoundError, match="not on the 'elderly_70' list"):
        book.advance("elderly_70", 10**9, "2026-12-01", "notified", t=small_twin)
    assert book.get(*key).status == "identified" and book.get(*key).version == 1  # nothing half-written
    s = book.advance(*key, "notified", t=small_twin)
    assert book.advance(*key, "declined", t=small_twin, expected_version=s.version).status == "declined"
    with pytest.raises(PermissionDenied, match="may not identify persons of grid"):
        book.identify(listed.iloc[[0]], role=make_role("community", [other], user="x"), t=small_twin)
    seen = book.frame(t=small_twin, role=make_role("community", [other], user="x"))
    assert r["person_id"] not in seen["person_id"].tolist()
    assert set(seen["community_code"]) <= {other}
