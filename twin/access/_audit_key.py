"""The audit log's secret key and its checkpoint file: both kept OUTSIDE the database.

Someone who can write the database can rewrite the log, but without the key they cannot compute a valid entry
(HMAC-SHA256), and without write access to the checkpoint file they cannot hide a truncation.

* **Audit directory**: ``$TWIN_AUDIT_DIR``; else one set with :func:`use_audit_dir` (the service and the CLI set
  the twin directory for a PostgreSQL store); else the SQLite database's directory (the twin directory); else
  (PostgreSQL) the default twin directory (``$TWIN_HOME``).
* **Key**: ``$TWIN_AUDIT_KEY`` (at least 64 hex digits, shared by every server process of one deployment); else the
  file ``audit.key`` in the audit directory (32 random bytes as hex), created on first use with mode 0600.
* **Checkpoints**: ``audit_checkpoints.jsonl`` in the audit directory, one signed JSON object per line, appended with
  ``O_APPEND`` and fsynced (see :func:`twin.access.audit.checkpoint`).

File I/O lives here rather than in :mod:`twin.io` because these files have their own rules (exclusive creation
with mode 0600, append-only, one fsync per line).
"""

from __future__ import annotations

import os
import secrets
import threading
from pathlib import Path

from twin.errors import ValidationError
from twin.io import default_twin_dir
from twin.store.sql import Store

__all__ = ["KEY_FILE", "CHECKPOINT_FILE", "audit_dir", "use_audit_dir", "load_key", "log_id", "append_line",
           "read_lines"]

KEY_FILE = "audit.key"
CHECKPOINT_FILE = "audit_checkpoints.jsonl"

_dirs: dict[str, Path] = {}
_keys: dict[str, bytes] = {}
_ids: dict[str, str] = {}
_lock = threading.Lock()


def use_audit_dir(store: Store, path: str | Path) -> None:
    """Keep ``store``'s audit key and checkpoints in ``path`` (unless ``$TWIN_AUDIT_DIR`` says otherwise)."""
    with _lock:
        _dirs[store.url] = Path(path)
        _ids.pop(store.url, None)


def audit_dir(store: Store) -> Path:
    """The directory holding ``store``'s audit key and checkpoint file (see the module docstring)."""
    env = os.environ.get("TWIN_AUDIT_DIR")
    if env:
        return Path(env)
    if store.url in _dirs:
        return _dirs[store.url]
    if store.dialect == "sqlite":
        return Path(store.path).resolve().parent
    return default_twin_dir()


def load_key(store: Store, *, create: bool) -> bytes | None:
    """The HMAC key: ``$TWIN_AUDIT_KEY`` or the key file (created when ``create``; ``None`` if absent)."""
    env = os.environ.get("TWIN_AUDIT_KEY")
    if env:
        try:
            key = bytes.fromhex(env.strip())
        except ValueError as e:
            raise ValidationError("TWIN_AUDIT_KEY must be hex digits (e.g. `python -c \"import secrets; "
                                  "print(secrets.token_hex(32))\"`).") from e
        if len(key) < 32:
            raise ValidationError(f"TWIN_AUDIT_KEY is {len(key)} bytes; use at least 32 (64 hex digits).")
        return key
    path = audit_dir(store) / KEY_FILE
    with _lock:
        cached = _keys.get(str(path))
        if cached is not None:
            return cached
        if not path.exists():
            if not create:
                return None
            _create_key_file(path)
        key = bytes.fromhex(path.read_text().strip())
        if len(key) < 32:
            raise ValidationError(f"{path}: the audit key is {len(key)} bytes; it must be at least 32.")
        _keys[str(path)] = key
        return key


def _create_key_file(path: Path) -> None:
    """Write a new random key with mode 0600; if another process won the race, keep its key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (secrets.token_hex(32) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # atomic and exclusive: fails if the key exists
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


def log_id(store: Store) -> str:
    """Which log a checkpoint belongs to: the SQLite file (by name inside the audit directory), or the PostgreSQL
    cluster's system identifier and database name (so that a rebuilt database does not match old checkpoints
    by accident of a reused port)."""
    with _lock:
        if store.url in _ids:
            return _ids[store.url]
    if store.dialect == "sqlite":
        p = Path(store.path).resolve()
        ident = f"sqlite:{p.name}" if p.parent == audit_dir(store).resolve() else f"sqlite:{p}"
    else:
        try:
            sysid = store.query("SELECT system_identifier FROM pg_control_system()")[0][0]
        except Exception:  # no privilege on pg_control_system(): fall back to the server address
            sysid = store.url.rsplit("@", 1)[-1].rsplit("/", 1)[0]
        ident = f"postgresql:{sysid}/{store.query('SELECT current_database()')[0][0]}"
    with _lock:
        _ids[store.url] = ident
    return ident


def append_line(path: Path, line: str) -> None:
    """Append one line (``O_APPEND``: concurrent writers never interleave a line) and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def read_lines(path: Path) -> list[str]:
    """The file's non-empty lines ([] if it does not exist)."""
    if not path.exists():
        return []
    return [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
