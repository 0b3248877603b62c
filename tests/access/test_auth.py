"""Users and API keys: keys are shown once, stored as salted scrypt hashes, checked in constant time."""

from __future__ import annotations

import hashlib
import re
import time

import pytest

from twin.access import auth
from twin.errors import AuthenticationError, ConflictError, NotFoundError, ValidationError
from twin.store.sql import Store


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "state.sqlite")
    yield s
    s.close()


def test_key_roundtrip_gives_the_users_role_and_scope(store):
    key = auth.add_user(store, "lan", "community", ["440604010001"])
    assert re.fullmatch(r"tw_[0-9a-f]{12}_[A-Za-z0-9_-]{20,}", key)
    role = auth.authenticate(store, key)
    assert (role.name, role.scope_level, role.scope_codes, role.user) == (
        "community", "community", ("440604010001",), "lan")
    assert role.can_edit and role.can_see_records


def test_only_a_salted_hash_is_stored(store, tmp_path):
    k1 = auth.add_user(store, "a", "district")
    k2 = auth.add_user(store, "b", "district")
    secret1 = k1.split("_", 2)[2]
    rows = store.query("SELECT key_id, salt, hash FROM api_keys ORDER BY user_name")
    assert len(rows) == 2
    (kid, salt, h), (_, salt2, _) = rows
    assert k1.startswith(f"tw_{kid}_")
    assert len(bytes(salt)) == 16 and bytes(salt) != bytes(salt2)
    assert bytes(h) == hashlib.scrypt(secret1.encode(), salt=bytes(salt), n=2**14, r=8, p=1, dklen=32)
    store.close()
    raw = (tmp_path / "state.sqlite").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("state.sqlite-*"))
    for k in (k1, k2):
        assert k.split("_", 2)[2].encode() not in raw


@pytest.mark.parametrize("bad", [None, "", "Bearer", "tw_zz_short", "tw_000000000000_" + "a" * 30])
def test_missing_malformed_or_unknown_keys_are_rejected(store, bad):
    auth.add_user(store, "a", "district")
    with pytest.raises(AuthenticationError):
        auth.authenticate(store, bad)


def test_right_key_id_wrong_secret_is_rejected(store):
    key = auth.add_user(store, "a", "district")
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    with pytest.raises(AuthenticationError, match="unknown API key"):
        auth.authenticate(store, forged)


def test_revoked_keys_stop_working_at_once_in_this_process(store):
    key = auth.add_user(store, "a", "town", ["440604010"])
    auth.authenticate(store, key)  # now cached
    assert auth.revoke_keys(store, "a") == 1
    with pytest.raises(AuthenticationError, match="revoked"):
        auth.authenticate(store, key)
    new = auth.issue_key(store, "a")
    assert auth.authenticate(store, new).scope_codes == ("440604010",)


def test_user_validation(store):
    auth.add_user(store, "a", "analyst")
    with pytest.raises(ConflictError):
        auth.add_user(store, "a", "district")
    with pytest.raises(ValidationError, match="user name"):
        auth.add_user(store, "bad name!", "district")
    with pytest.raises(ValidationError, match="unknown role"):
        auth.add_user(store, "b", "mayor")
    with pytest.raises(ValidationError, match="needs scope"):
        auth.add_user(store, "c", "community")
    with pytest.raises(ValidationError, match="numeric"):
        auth.add_user(store, "d", "grid_worker", ["abc"])
    with pytest.raises(NotFoundError):
        auth.issue_key(store, "nobody")


def test_rights_by_role(store):
    roles = {n: auth.authenticate(store, auth.add_user(store, n, r, s)) for n, r, s in [
        ("w", "grid_worker", ["440604010001001"]), ("c", "community", ["440604010001"]),
        ("x", "analyst", []), ("ro", "community", ["440604010001"])]}
    assert not roles["w"].can_edit and roles["w"].can_see_records
    assert roles["c"].can_edit
    assert not roles["x"].can_see_records and not roles["x"].can_edit
    ro = auth.add_user(store, "ro2", "community", ["440604010001"], can_edit=False)
    assert not auth.authenticate(store, ro).can_edit
    assert [u.name for u in auth.list_users(store)] == ["c", "ro", "ro2", "w", "x"]
    assert auth.get_user(store, "w").scope_codes == ("440604010001001",)


def _median(xs):
    return sorted(xs)[len(list(xs)) // 2] if isinstance(xs, list) else _median(list(xs))


def _elapsed(f):
    t0 = time.perf_counter()
    try:
        f()
    except AuthenticationError as e:
        return time.perf_counter() - t0, str(e)
    return time.perf_counter() - t0, ""


def test_revocation_by_another_process_takes_effect_within_a_second(store):
    key = auth.add_user(store, "a", "community", ["440604010001"])
    assert auth.authenticate(store, key).user == "a"  # verified and cached
    # another process revokes (its cache clear does not reach us): a plain UPDATE of the shared store
    with store.transaction() as tx:
        tx.execute("UPDATE api_keys SET revoked = 1")
    t0 = time.monotonic()
    while True:
        try:
            auth.authenticate(store, key)
        except AuthenticationError as e:
            assert "revoked" in str(e)
            break
        assert time.monotonic() - t0 < 1.0, "a revoked key still works after 1 s"
        time.sleep(0.02)
    assert auth.REVALIDATE_S <= 0.5


def test_role_changes_by_another_process_take_effect_within_a_second(store):
    key = auth.add_user(store, "a", "community", ["440604010001"])
    assert auth.authenticate(store, key).can_edit
    with store.transaction() as tx:
        tx.execute("UPDATE users SET can_edit = 0 WHERE name = 'a'")
    time.sleep(auth.REVALIDATE_S + 0.05)
    assert not auth.authenticate(store, key).can_edit


def test_a_cached_key_costs_no_hash(store):
    key = auth.add_user(store, "a", "district")
    auth.authenticate(store, key)
    n = 200
    t0 = time.perf_counter()
    for _ in range(n):
        auth.authenticate(store, key)
    assert (time.perf_counter() - t0) / n < 1e-3  # an scrypt hash is ~30 ms


def test_repeated_bad_keys_cost_microseconds(store):
    key = auth.add_user(store, "a", "district")
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    unknown = "tw_" + "ab" * 6 + "_" + "z" * 40
    first_wrong, msg_wrong = _elapsed(lambda: auth.authenticate(store, wrong))
    first_unknown, msg_unknown = _elapsed(lambda: auth.authenticate(store, unknown))
    # the first check of either costs a full hash (timing does not reveal which key ids exist) …
    assert first_wrong > 5e-3 and first_unknown > 5e-3
    assert "unknown API key" in msg_wrong and "unknown API key" in msg_unknown
    # … repeats are answered from the negative cache, with the same message
    for bad, msg in ((wrong, msg_wrong), (unknown, msg_unknown)):
        times = [_elapsed(lambda b=bad: auth.authenticate(store, b)) for _ in range(50)]
        assert _median(t for t, _ in times) < 5e-4 and {m for _, m in times} == {msg}
    assert auth.authenticate(store, key).user == "a"  # the right key still works


@pytest.mark.parametrize("known", [True, False])
def test_many_secrets_for_one_key_id_are_limited(store, known):
    key = auth.add_user(store, "a", "district")
    kid = key.split("_")[1] if known else "cd" * 6
    auth.authenticate(store, key)  # the owner's key is cached before the attack
    slow = [_elapsed(lambda i=i: auth.authenticate(store, f"tw_{kid}_{'x' * 30}{i:04d}"))
            for i in range(auth.MAX_FAILURES)]
    assert all(t > 5e-3 for t, _ in slow)
    fast = [_elapsed(lambda i=i: auth.authenticate(store, f"tw_{kid}_{'y' * 30}{i:04d}")) for i in range(50)]
    assert _median(t for t, _ in fast) < 5e-4
    assert all("too many failed checks" in m for _, m in fast)
    assert auth.authenticate(store, key).user == "a"  # a cached, valid key of that id is not locked out
