"""``twin services run`` and ``twin services status`` on a copy of the small twin."""

from __future__ import annotations

import io
import json
import shutil

import openpyxl
import pytest

from twin.cli.main import main
from twin.services import run_services, snapshot_view


@pytest.fixture()
def twin_dir(small_twin, tmp_path):
    root = tmp_path / "twin"
    shutil.copytree(small_twin.root, root, ignore=shutil.ignore_patterns("state.sqlite*", "audit*"))
    return root


def test_run_prints_counts_writes_the_list_and_identifies(twin_dir, small_twin, capsys):
    want = run_services(snapshot_view(small_twin), "2026-01..2026-12-31").counts()
    out = twin_dir / "list.xlsx"
    assert main(["services", "run", "--range", "2026-01-01..2026-12-31", "--twin", str(twin_dir), "--out", str(out),
                 "--identify"]) == 0
    text = capsys.readouterr().out
    assert "names on the list are SYNTHETIC" in text
    for name, n in want.items():
        assert any(line.split()[:2] == [name, str(n)] for line in text.splitlines()), name
    assert f"identified {sum(want.values())} new" in text
    ws = openpyxl.load_workbook(io.BytesIO(out.read_bytes()))["work list"]
    assert ws.max_row == sum(want.values()) + 1 and ws["C1"].value == "synthetic_name"
    assert main(["services", "run", "--range", "2026-01-01..2026-12-31", "--twin", str(twin_dir), "--identify",
                 "--json", "--service", "elderly_70"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["counts"] == {"elderly_70": want["elderly_70"]} and got["identified"] == 0


def test_status_moves_and_refuses(twin_dir, small_twin, capsys):
    run = run_services(snapshot_view(small_twin), "2026-01..2026-12-31")
    r = run.rows.iloc[0]
    args = ["--twin", str(twin_dir)]
    assert main(["services", "run", "--range", "2026-01-01..2026-12-31", "--identify", *args]) == 0
    key = [r["service"], str(int(r["person_id"])), str(r["qualifying_date"].date())]
    assert main(["services", "status", *key, "delivered", *args]) == 2
    assert "cannot go from 'identified' to 'delivered'" in capsys.readouterr().err
    assert main(["services", "status", *key, "notified", "--note", "phoned", "--user", "li", *args]) == 0
    assert "notified (version 2, by li" in capsys.readouterr().out
    other = sorted(set(small_twin.grids["community_code"]) - {r["community_code"]})[0]
    assert main(["services", "status", *key, "delivered", "--community", other, *args]) == 2
    assert "outside community" in capsys.readouterr().err
    assert main(["services", "run", "--month", "2026-12", "--out", str(twin_dir / "x.txt"), *args]) == 2
    assert "write a .csv or .xlsx file" in capsys.readouterr().err
