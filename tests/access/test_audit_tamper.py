"""Tampering by someone with write access to the database (but not to the audit key or the checkpoint file) is
detected by ``verify`` on SQLite and on PostgreSQL: every case of issue 11, and the plain ones.

Each test drops (SQLite) or disables (PostgreSQL) the append-only triggers first, as such an attacker can.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat

import pytest
from shapely.geometry import box

from twin.access import _audit_key, _audit_schema, audit
from twin.cli.main import main
from twin.store.sql import Store


def _fill(store, n=6):
    return [audit.append(store, user=f"u{i}", role="community", endpoint="/area/summary", method="POST",
                         area=box(113.1, 23.0, 113.101 + i * 1e-3, 23.001), counts={"residents": 10 * i},
                         version=1) for i in range(n)]


def _sql(store, sql, params=()):
    with store.transaction() as tx:
        tx.execute(sql, params)


def _untrigger(store):
    if store.dialect == "sqlite":
        for t in ("audit_log", "audit_areas"):
            for op in ("update", "delete"):
                store.connection.execute(f"DROP TRIGGER {t}_no_{op}")
    else:
        store.connection.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change")
        store.connection.execute("ALTER TABLE audit_areas DISABLE TRIGGER audit_areas_no_change")


def _sha_hash(fields):
    """What an attacker without the key can compute: the unkeyed SHA-256 the log used before."""
    payload = {k: fields[k] for k in _audit_schema.FIELDS}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False,
                                     separators=(",", ":")).encode()).hexdigest()


def _rechain(store, since_seq, forge=_sha_hash):
    """Recompute hashes and links from ``since_seq`` on (as the attacker can) and move the head to the end."""
    prev = audit.GENESIS if since_seq == 1 else next(audit.entries(store, since_seq=since_seq - 2, limit=1)).hash
    last = since_seq - 1
    for e in list(audit.entries(store, since_seq=since_seq - 1)):
        f = {**e.to_dict(), "prev_hash": prev}
        h = forge(f)
        _sql(store, "UPDATE audit_log SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, h, e.seq))
        prev, last = h, e.seq
    _sql(store, "UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (last, prev))


def _broken(store, seq, *words):
    rep = audit.verify(store)
    assert not rep.ok, rep
    assert rep.first_broken_seq == seq, rep.to_text()
    text = rep.to_text()
    for w in words:
        assert w in text, text
    return rep


def test_intact_log_verifies_with_checkpoints(any_store):
    _fill(any_store)
    cp = audit.checkpoint(any_store)
    assert cp is not None and cp.seq == 6
    rep = audit.verify(any_store)
    assert rep.ok and rep.n_entries == 6 and rep.n_checkpoints >= 2, rep  # first append + on demand


# --- the five cases of issue 11 -------------------------------------------------------------------------------

def test_tail_deleted_and_head_moved_back(any_store):
    es = _fill(any_store)
    audit.checkpoint(any_store)  # as the service does every N entries / within a second / at shutdown
    _untrigger(any_store)
    _sql(any_store, "DELETE FROM audit_log WHERE seq > 3")
    _sql(any_store, "UPDATE audit_head SET seq = 3, hash = ? WHERE id = 1", (es[2].hash,))
    _broken(any_store, 4, "vouches for entry seq 6", "removed from the end")


def test_tail_deleted_while_the_server_runs_is_caught_by_its_next_append(any_store):
    es = _fill(any_store)  # no explicit checkpoint after seq 1: the appending process remembers seq 6
    _untrigger(any_store)
    _sql(any_store, "DELETE FROM audit_log WHERE seq > 3")
    _sql(any_store, "UPDATE audit_head SET seq = 3, hash = ? WHERE id = 1", (es[2].hash,))
    audit.append(any_store, user="next", role="district", endpoint="/me")  # a valid-looking seq 4
    rep = _broken(any_store, 5, "vouches for entry seq 6", "log ends at seq 4")
    assert "head moved back" in rep.to_text()


def test_tail_deleted_after_cadence_checkpoints(any_store, monkeypatch):
    monkeypatch.setattr(audit, "CHECKPOINT_EVERY", 3)
    monkeypatch.setattr(audit, "CHECKPOINT_SECONDS", 3600.0)
    es = _fill(any_store, 8)  # checkpoints at 1 (first append), 4 and 7
    audit._anchors.pop(any_store.url)  # a fresh process (e.g. after a SIGKILL) remembers nothing
    _untrigger(any_store)
    _sql(any_store, "DELETE FROM audit_log WHERE seq > 5")
    _sql(any_store, "UPDATE audit_head SET seq = 5, hash = ? WHERE id = 1", (es[4].hash,))
    _broken(any_store, 6, "vouches for entry seq 7")


def test_middle_row_edited_and_later_hashes_recomputed(any_store):
    _fill(any_store)
    _untrigger(any_store)
    _sql(any_store, "UPDATE audit_log SET user_name = 'someone-else', counts = ? WHERE seq = 3", ('{"residents": 0}',))
    _rechain(any_store, 3)
    _broken(any_store, 3, "keyed hash")


def test_middle_row_deleted_renumbered_and_rehashed(any_store):
    _fill(any_store)
    _untrigger(any_store)
    _sql(any_store, "DELETE FROM audit_log WHERE seq = 3")
    for s in (4, 5, 6):
        _sql(any_store, "UPDATE audit_log SET seq = ? WHERE seq = ?", (s - 1, s))
    _rechain(any_store, 3)
    _broken(any_store, 3, "keyed hash")


def test_middle_row_rehashed_with_a_guessed_key(any_store):
    import hmac

    _fill(any_store)
    _untrigger(any_store)
    _sql(any_store, "UPDATE audit_log SET detail = 'nothing to see' WHERE seq = 2")
    _rechain(any_store, 2, forge=lambda f: hmac.new(b"\0" * 32, json.dumps(
        {**{k: f[k] for k in _audit_schema.FIELDS}, "kind": "audit-entry"}, sort_keys=True, ensure_ascii=False,
        separators=(",", ":")).encode(), hashlib.sha256).hexdigest())
    _broken(any_store, 2, "keyed hash")


def test_everything_deleted_and_head_reset(any_store):
    _fill(any_store)  # only the automatic checkpoint of the first append
    _untrigger(any_store)
    _sql(any_store, "DELETE FROM audit_log")
    _sql(any_store, "DELETE FROM audit_areas")
    _sql(any_store, "UPDATE audit_head SET seq = 0, hash = ? WHERE id = 1", (audit.GENESIS,))
    audit._anchors.pop(any_store.url)
    _broken(any_store, 1, "vouches for entry seq", "removed from the end")


def test_everything_replaced_by_a_forged_chain(any_store):
    _fill(any_store)
    _untrigger(any_store)
    _sql(any_store, "DELETE FROM audit_log WHERE seq > 1")
    _sql(any_store, "UPDATE audit_log SET user_name = 'nobody' WHERE seq = 1")
    _rechain(any_store, 1)
    _broken(any_store, 1, "keyed hash")


def test_forged_entry_appended(any_store):
    es = _fill(any_store)
    _untrigger(any_store)
    forged = {**es[-1].to_dict(), "seq": 7, "user_name": "admin", "detail": "routine", "prev_hash": es[-1].hash}
    h = _sha_hash(forged)
    _sql(any_store, "INSERT INTO audit_log (seq, ts, user_name, role, endpoint, method, area_hash, area_km2, counts, "
                    "version, outcome, status, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                    "?, ?)", (7, forged["ts"], "admin", forged["role"], forged["endpoint"], forged["method"],
                              forged["area_hash"], forged["area_km2"], json.dumps(forged["counts"]),
                              forged["version"], forged["outcome"], forged["status"], "routine", es[-1].hash, h))
    _sql(any_store, "UPDATE audit_head SET seq = 7, hash = ? WHERE id = 1", (h,))
    _broken(any_store, 7, "keyed hash")


def test_footprint_replaced(any_store):
    es = _fill(any_store)
    _untrigger(any_store)
    elsewhere = '{"type":"Polygon","coordinates":[[[113.2,23.1],[113.3,23.1],[113.3,23.2],[113.2,23.1]]]}'
    _sql(any_store, "UPDATE audit_areas SET geojson = ? WHERE area_hash = ?", (elsewhere, es[2].area_hash))
    _broken(any_store, 3, "footprint", "replaced")


def test_footprint_geometry_column_replaced_on_postgis(pg_store):
    """The geometry column exists only on PostgreSQL + PostGIS."""
    es = _fill(pg_store)
    _untrigger(pg_store)
    _sql(pg_store, "UPDATE audit_areas SET geom = ST_MakeEnvelope(113.2, 23.1, 113.3, 23.2, 4326) "
                   "WHERE area_hash = ?", (es[1].area_hash,))
    _broken(pg_store, 2, "replaced")


def test_footprint_deleted(any_store):
    es = _fill(any_store)
    _untrigger(any_store)
    _sql(any_store, "DELETE FROM audit_areas WHERE area_hash = ?", (es[4].area_hash,))
    _broken(any_store, 5, "missing")


# --- the plain cases stay detected ------------------------------------------------------------------------------

def test_plain_edit_deletion_truncation_and_reordering(any_store):
    es = _fill(any_store)
    _untrigger(any_store)
    _sql(any_store, "UPDATE audit_log SET counts = ? WHERE seq = 2", ('{"residents": 0}',))
    _broken(any_store, 2, "edited")
    _sql(any_store, "UPDATE audit_log SET counts = ? WHERE seq = 2", (json.dumps(es[1].counts, sort_keys=True),))
    assert audit.verify(any_store).ok
    _sql(any_store, "UPDATE audit_log SET seq = -1 WHERE seq = 2")  # swap entries 2 and 3
    _sql(any_store, "UPDATE audit_log SET seq = 2 WHERE seq = 3")
    _sql(any_store, "UPDATE audit_log SET seq = 3 WHERE seq = -1")
    _broken(any_store, 2, "prev_hash")
    _sql(any_store, "UPDATE audit_log SET seq = -1 WHERE seq = 2")
    _sql(any_store, "UPDATE audit_log SET seq = 2 WHERE seq = 3")
    _sql(any_store, "UPDATE audit_log SET seq = 3 WHERE seq = -1")
    assert audit.verify(any_store).ok
    _sql(any_store, "DELETE FROM audit_log WHERE seq = 4")
    _broken(any_store, 4, "missing")


def test_plain_truncation_without_moving_the_head(any_store):
    _fill(any_store)
    _untrigger(any_store)
    _sql(any_store, "DELETE FROM audit_log WHERE seq >= 5")
    _broken(any_store, 5, "removed from the end")


# --- the anchors outside the database -----------------------------------------------------------------------

def test_checkpoint_file_edits_and_removal_are_reported(any_store, tmp_path):
    _fill(any_store)
    audit.checkpoint(any_store)
    path = tmp_path / "audit" / _audit_key.CHECKPOINT_FILE
    lines = path.read_text().splitlines()
    obj = json.loads(lines[-1])
    obj["seq"] = 2  # moved back to agree with a truncated log: the signature no longer matches
    path.write_text("\n".join([*lines[:-1], json.dumps(obj)]) + "\n")
    rep = audit.verify(any_store)
    assert not rep.ok and "bad signature" in rep.to_text()
    path.unlink()  # outside the attacker's reach, but say so
    rep = audit.verify(any_store)
    assert rep.ok and "no checkpoint of this log" in rep.to_text()


def test_key_is_outside_the_store_with_mode_0600(any_store, tmp_path):
    _fill(any_store, 2)
    key_file = tmp_path / "audit" / _audit_key.KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key_hex = key_file.read_text().strip()
    assert len(bytes.fromhex(key_hex)) == 32
    if any_store.dialect == "sqlite":
        any_store.close()
        raw = b"".join(p.read_bytes() for p in tmp_path.glob("state.sqlite*"))
        assert key_hex.encode() not in raw and bytes.fromhex(key_hex) not in raw


def test_a_missing_or_wrong_key_fails_verification(any_store, tmp_path, monkeypatch):
    _fill(any_store, 3)
    key_file = tmp_path / "audit" / _audit_key.KEY_FILE
    key_file.rename(key_file.with_suffix(".away"))
    _audit_key._keys.clear()
    rep = audit.verify(any_store)
    assert not rep.ok and "no audit key" in rep.to_text()
    monkeypatch.setenv("TWIN_AUDIT_KEY", os.urandom(32).hex())
    rep = audit.verify(any_store)
    assert not rep.ok and rep.first_broken_seq == 1


def test_key_from_the_environment(tmp_path, monkeypatch):
    # $TWIN_AUDIT_DIR redirects every store's checkpoints: let the checkpoint timers of earlier tests' stores fire
    # first (one fired into this directory during a fresh-clone run, signed with its own key)
    for timer in [a.timer for a in list(audit._anchors.values())]:
        if timer is not None:
            timer.join(10)
    monkeypatch.setenv("TWIN_AUDIT_KEY", "ab" * 32)
    monkeypatch.setenv("TWIN_AUDIT_DIR", str(tmp_path / "anchors"))
    s = Store(tmp_path / "db" / "state.sqlite")
    _fill(s, 3)
    assert audit.verify(s).ok
    assert not (tmp_path / "anchors" / _audit_key.KEY_FILE).exists()
    assert (tmp_path / "anchors" / _audit_key.CHECKPOINT_FILE).exists()
    monkeypatch.setenv("TWIN_AUDIT_KEY", "cd" * 32)
    assert not audit.verify(s).ok
    monkeypatch.setenv("TWIN_AUDIT_KEY", "abc")
    with pytest.raises(ValueError, match="hex"):
        audit.verify(s)
    s.close()


def test_cli_verify_and_checkpoint(tmp_path, capsys):
    url = str(tmp_path / "state.sqlite")
    s = Store(url)
    es = _fill(s, 4)
    assert main(["audit", "checkpoint", "--database-url", url]) == 0
    assert "seq 4" in capsys.readouterr().out
    assert main(["audit", "verify", "--database-url", url]) == 0
    assert "OK" in capsys.readouterr().out
    _untrigger(s)
    _sql(s, "DELETE FROM audit_log WHERE seq > 2")
    _sql(s, "UPDATE audit_head SET seq = 2, hash = ? WHERE id = 1", (es[1].hash,))
    assert main(["audit", "verify", "--database-url", url]) == 1
    assert "BROKEN at seq 3" in capsys.readouterr().out
    s.close()
