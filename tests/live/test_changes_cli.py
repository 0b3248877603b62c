"""``twin changes apply FILE.json`` and ``twin changes list`` on the small twin."""

from __future__ import annotations

import json

from twin.cli.main import main
from twin.live.events import read_events
from twin.model import Twin
from twin.store.sql import Store


def test_apply_and_list(small_twin: Twin, tmp_path, capsys) -> None:  # noqa: ANN001
    db = str(tmp_path / "state.sqlite")
    f = tmp_path / "set.json"
    f.write_text(json.dumps({"reason": "door-to-door check", "changes": [
        {"kind": "person.dies", "person_id": 3, "effective_date": "2026-12-01"},
        {"kind": "dwelling.added", "building_id": 2, "effective_date": "2026-12-02", "author": "李敏"}]}))
    args = ["changes", "apply", str(f), "--twin", str(small_twin.root), "--db", db, "--author", "wang"]
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["seqs"] == [1, 2] and out["created"] == [[], [f"dwelling:{len(small_twin.dwellings)}"]]
    ev = read_events(Store(db))
    assert [(e.author, e.reason) for e in ev] == [("wang", "door-to-door check"), ("李敏", "door-to-door check")]
    # the same file again: person 3 is gone → error exit, nothing more written
    assert main(args) == 2
    assert "person:3 is gone" in capsys.readouterr().err and len(read_events(Store(db))) == 2
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["changes", "apply", str(bad), "--twin", str(small_twin.root), "--db", db]) == 2
    assert "not a readable JSON file" in capsys.readouterr().err
    assert main(["changes", "list", "--twin", str(small_twin.root), "--db", db, "--start", "2026-12-01",
                 "--end", "2026-12-31"]) == 0
    listing = capsys.readouterr().out
    assert "person.dies" in listing and "dwelling.added" in listing
