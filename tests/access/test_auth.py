"""Users and API keys: keys are shown once, stored as salted scrypt hashes, checked in constant time."""

from __future__ import annotations

import hashlib
import re

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
