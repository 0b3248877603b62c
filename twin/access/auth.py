"""Users and API keys for the service: who is asking, with which role and scope (分权分域).

A user has a name, a role (``district``, ``town``, ``community``, ``grid_worker``, ``analyst``; see
:mod:`twin.access.roles`) and scope codes (towns, communities or grids). Callers authenticate with an API key of the form
``tw_<key id>_<secret>``. Only a salted scrypt hash of the secret is stored (in the shared store,
:mod:`twin.store.sql`); the key id is a public lookup handle. Verification recomputes the hash and compares in
constant time (:func:`hmac.compare_digest`). The plain key is shown once, when it is issued.

Verified keys are remembered in-process for :data:`CACHE_TTL_S` seconds (keyed by a SHA-256 of the key, never the
key itself) so that a busy client does not pay the scrypt cost on every request; but the key's row (revoked? user
active? role and scope) is re-read at most :data:`REVALIDATE_S` seconds apart (one indexed query, no hashing), so a
revocation or a role change takes effect within that time in every process (at once in the revoking process).

Bad keys are cheap to reject again: a rejected key (by its SHA-256) is rejected without hashing for
:data:`NEGATIVE_TTL_S` seconds, and after :data:`MAX_FAILURES` failed checks of one key id within
:data:`FAILURE_WINDOW_S` seconds, further secrets for that key id are rejected without hashing until the window
ends. Both apply alike to unknown key ids and to known ones with a wrong secret, and the first check of any key
always costs one scrypt hash, so timing still does not reveal which key ids exist.

>>> from twin.store.sql import open_store
>>> store = open_store("sqlite:////tmp/doc-auth.sqlite")
>>> key = add_user(store, "lan", "community", ["440604010001"])       # doctest: +SKIP
>>> authenticate(store, key).scope_codes                                # doctest: +SKIP
('440604010001',)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

from twin.access.roles import Role, make_role
from twin.errors import AuthenticationError, ConflictError, NotFoundError, ValidationError
from twin.store.pg import schema_lock_statement
from twin.store.sql import Store

__all__ = [
    "cached_role",
    "User",
    "add_user",
    "issue_key",
    "revoke_keys",
    "authenticate",
    "get_user",
    "list_users",
    "user_role",
    "hash_secret",
    "CACHE_TTL_S",
    "REVALIDATE_S",
    "NEGATIVE_TTL_S",
    "MAX_FAILURES",
    "FAILURE_WINDOW_S",
]

CACHE_TTL_S = 3600.0
REVALIDATE_S = 0.5
NEGATIVE_TTL_S = 30.0
MAX_FAILURES = 5
FAILURE_WINDOW_S = 10.0
_CACHE_MAX = 10_000
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}  # ≈ 16 MiB, tens of ms per hash
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_KEY_RE = re.compile(r"^tw_([0-9a-f]{12})_([A-Za-z0-9_-]{20,128})$")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS users (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        scope TEXT NOT NULL,
        can_edit INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        active INTEGER NOT NULL DEFAULT 1
    )""",
    """CREATE TABLE IF NOT EXISTS api_keys (
        key_id TEXT PRIMARY KEY,
        user_name TEXT NOT NULL REFERENCES users(name),
        salt BLOB NOT NULL,
        hash BLOB NOT NULL,
        created_at TEXT NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX IF NOT EXISTS api_keys_user ON api_keys(user_name)",
)


@dataclass(frozen=True)
class User:
    """A stored user (no secrets)."""

    name: str
    role: str
    scope_codes: tuple[str, ...]
    can_edit: bool
    created_at: str
    active: bool = True

    def to_dict(self) -> dict:
        return {"name": self.name, "role": self.role, "scope_codes": list(self.scope_codes),
                "can_edit": self.can_edit, "created_at": self.created_at, "active": self.active}


@dataclass
class _Verified:
    role: Role
    key_id: str
    expires: float
    checked: float


_cache: dict[str, _Verified] = {}
_rejected: dict[str, tuple[float, str]] = {}
_failures: dict[str, tuple[float, int]] = {}
_cache_lock = threading.Lock()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def _ensure(store: Store) -> None:
    if "auth" in store._schemas:
        return
    with _cache_lock:
        store.ensure_schema("auth", schema_lock_statement(store) + _SCHEMA)


def hash_secret(secret: str, salt: bytes) -> bytes:
    """Salted scrypt hash of a key's secret part (what is stored; never the secret itself)."""
    return hashlib.scrypt(secret.encode("utf-8"), salt=salt, **_SCRYPT)


def add_user(store: Store, name: str, role: str, scope_codes: Sequence[str] = (), *,
             can_edit: bool | None = None) -> str:
    """Create a user and return their first API key (shown once; only its hash is stored).

    Parameters
    ----------
    store : the shared store.
    name : login name, 1–64 characters ``[A-Za-z0-9._@-]``.
    role : ``district``, ``town``, ``community``, ``grid_worker`` or ``analyst``.
    scope_codes : town / community / grid codes the user owns (empty for district and analyst).
    can_edit : editor right for grids in scope (default: district, town and community roles edit).

    Raises
    ------
    ValidationError : bad name, role or scope; ConflictError : the name is taken.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValidationError(f"bad user name {name!r}: use 1–64 letters, digits or . _ @ - (e.g. 'lan.community').")
    codes = tuple(str(c).strip() for c in scope_codes if str(c).strip())
    bad = [c for c in codes if not c.isdigit()]
    if bad:
        raise ValidationError(f"scope codes must be numeric town/community/grid codes, got {bad}.")
    r = make_role(role, codes, user=name, can_edit=can_edit)  # validates the role name and scope presence
    _ensure(store)
    with store.transaction() as tx:
        if tx.query("SELECT name FROM users WHERE name = ?", (name,)):
            raise ConflictError(f"user {name!r} already exists; pick another name or issue a new key for it.")
        tx.execute("INSERT INTO users (name, role, scope, can_edit, created_at, active) VALUES (?, ?, ?, ?, ?, 1)",
                   (name, r.name, ",".join(r.scope_codes), int(r.can_edit), _now()))
        return _issue(tx, name)


def issue_key(store: Store, name: str) -> str:
    """A new API key for an existing user (the old keys stay valid until revoked)."""
    _ensure(store)
    with store.transaction() as tx:
        if not tx.query("SELECT name FROM users WHERE name = ? AND active = 1", (name,)):
            raise NotFoundError(f"no active user {name!r}; create it with `twin users add {name} --role …`.")
        return _issue(tx, name)


def _issue(tx, name: str) -> str:
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    tx.execute("INSERT INTO api_keys (key_id, user_name, salt, hash, created_at, revoked) VALUES (?, ?, ?, ?, ?, 0)",
               (key_id, name, salt, hash_secret(secret, salt), _now()))
    return f"tw_{key_id}_{secret}"


def revoke_keys(store: Store, name: str) -> int:
    """Revoke every key of ``name``; returns how many were revoked."""
    _ensure(store)
    with store.transaction() as tx:
        n = tx.execute("UPDATE api_keys SET revoked = 1 WHERE user_name = ? AND revoked = 0", (name,)).rowcount
    with _cache_lock:
        _cache.clear()
    return int(n)


def _row_to_user(row: tuple) -> User:
    name, role, scope, can_edit, created_at, active = row
    return User(str(name), str(role), tuple(c for c in str(scope).split(",") if c), bool(can_edit),
                str(created_at), bool(active))


def get_user(store: Store, name: str) -> User:
    """One user; :class:`NotFoundError` if unknown."""
    _ensure(store)
    rows = store.query("SELECT name, role, scope, can_edit, created_at, active FROM users WHERE name = ?", (name,))
    if not rows:
        raise NotFoundError(f"no user {name!r}; list users with `twin users list`.")
    return _row_to_user(rows[0])


def list_users(store: Store) -> list[User]:
    """All users, by name."""
    _ensure(store)
    rows = store.query("SELECT name, role, scope, can_edit, created_at, active FROM users ORDER BY name")
    return [_row_to_user(r) for r in rows]


def user_role(user: User) -> Role:
    """The :class:`twin.access.roles.Role` a user acts with (``Role.user`` = the user's name)."""
    return make_role(user.role, user.scope_codes, user=user.name, can_edit=user.can_edit)


def cached_role(key: str | None) -> Role | None:
    """The role of ``key`` when this process verified it less than ``REVALIDATE_S`` ago, else ``None``.

    No store access and no scrypt: cheap enough for an event loop (the service's hot path). ``None`` means
    "call :func:`authenticate`" (a miss, a rejection or a re-check due), which decides and may block.
    """
    if not key:
        return None
    digest = hashlib.sha256(key.strip().encode()).hexdigest()
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(digest)
    if hit is not None and hit.expires > now and now - hit.checked < REVALIDATE_S:
        return hit.role
    return None


def authenticate(store: Store, key: str | None) -> Role:
    """The role of the user holding ``key``.

    Raises :class:`AuthenticationError` (HTTP 401) for a missing, malformed, unknown or revoked key, an inactive
    user, or a key id with too many recent failures. The message never echoes the secret.
    """
    if not key:
        raise AuthenticationError("no API key: send 'Authorization: Bearer <key>' (create one with `twin users add`).")
    m = _KEY_RE.match(key.strip())
    if not m:
        raise AuthenticationError("malformed API key: keys look like tw_<12 hex>_<secret>.")
    key_id, secret = m.group(1), m.group(2)
    digest = hashlib.sha256(key.strip().encode()).hexdigest()
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(digest)
        if hit is not None and hit.expires > now:
            if now - hit.checked < REVALIDATE_S:
                return hit.role
        else:
            hit = None
            neg = _rejected.get(digest)
            if neg is not None and neg[0] > now:
                raise AuthenticationError(neg[1])
            start, n = _failures.get(key_id, (now, 0))
            if n >= MAX_FAILURES and now - start < FAILURE_WINDOW_S:
                raise AuthenticationError(f"too many failed checks of key id {key_id}; retry in "
                                          f"{FAILURE_WINDOW_S - (now - start):.0f} s.")
    _ensure(store)
    if hit is not None:  # verified before: re-read the key's row only (revoked? user active? role?)
        return _revalidate(store, digest, hit, now)
    rows = store.query(
        "SELECT k.salt, k.hash, k.revoked, u.name, u.role, u.scope, u.can_edit, u.created_at, u.active "
        "FROM api_keys k JOIN users u ON u.name = k.user_name WHERE k.key_id = ?", (key_id,))
    # Hash even when the key id is unknown so that timing does not reveal which key ids exist.
    salt, stored = (bytes(rows[0][0]), bytes(rows[0][1])) if rows else (b"\0" * 16, b"\0" * 32)
    ok = hmac.compare_digest(hash_secret(secret, salt), stored)
    if not rows or not ok:
        _reject(digest, key_id, now, f"unknown API key (key id {key_id}).")
    if rows[0][2]:
        _reject(digest, key_id, now, f"API key {key_id} was revoked; ask an administrator for a new one.")
    user = _row_to_user(rows[0][3:])
    if not user.active:
        _reject(digest, key_id, now, f"user {user.name!r} is deactivated.")
    role = user_role(user)
    with _cache_lock:
        if len(_cache) > _CACHE_MAX:
            _cache.clear()
        _cache[digest] = _Verified(role, key_id, now + CACHE_TTL_S, now)
        _failures.pop(key_id, None)
    return role


def _reject(digest: str, key_id: str, now: float, message: str) -> NoReturn:
    """Remember a failed check (this key, and one more failure for its key id), then raise."""
    with _cache_lock:
        if len(_rejected) > _CACHE_MAX:
            _rejected.clear()
        if len(_failures) > _CACHE_MAX:
            _failures.clear()
        _rejected[digest] = (now + NEGATIVE_TTL_S, message)
        start, n = _failures.get(key_id, (now, 0))
        _failures[key_id] = (start, n + 1) if now - start < FAILURE_WINDOW_S else (now, 1)
    raise AuthenticationError(message)


def _revalidate(store: Store, digest: str, hit: _Verified, now: float) -> Role:
    rows = store.query("SELECT k.revoked, u.name, u.role, u.scope, u.can_edit, u.created_at, u.active FROM api_keys k "
                       "JOIN users u ON u.name = k.user_name WHERE k.key_id = ?", (hit.key_id,))
    user = _row_to_user(rows[0][1:]) if rows else None
    if user is None or rows[0][0] or not user.active:
        with _cache_lock:
            _cache.pop(digest, None)
        why = (f"API key {hit.key_id} was revoked; ask an administrator for a new one." if user is not None and
               rows[0][0] else f"user {hit.role.user!r} is deactivated." if user is not None else
               f"unknown API key (key id {hit.key_id}).")
        _reject(digest, hit.key_id, now, why)
    role = user_role(user)
    with _cache_lock:
        _cache[digest] = _Verified(role, hit.key_id, hit.expires, now)
    return role
