"""``twin grids split|merge|move`` go through the one edit dispatch and commit versions; JSON by twin.encoding."""

from __future__ import annotations

import json

import pytest

import twin
from twin.cli import main
from twin.partition.edit_ops import EditOp, apply_edit
from twin.partition.model import partition_from_twin


@pytest.fixture(scope="module")
def t():
    return twin.load()


def test_cli_split_then_merge(t, tmp_path, capsys):
    store = str(tmp_path / "state.sqlite")
    code = str(t.grids["grid_code"].iloc[0])
    common = ["--twin", str(t.root), "--store", store, "--author", "cli-test", "--json"]
    assert main(["grids", "split", code, "--k", "2", "--reason", "test split", *common]) == 0
    out = json.loads(capsys.readouterr().out)
    want = apply_edit(partition_from_twin(t), EditOp("split_grid", grid_code=code, k=2))
    assert out == {"version": 2, "parent": 1, "cells_moved": want.cells_moved, "grids": len(t.grids) + 1}
    new = want.grids_added
    assert main(["grids", "merge", code, *new, "--into", code, "--reason", "test merge", *common]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["version"] == 3 and out["parent"] == 2 and out["grids"] == len(t.grids)
    assert main(["grids", "versions", "--twin", str(t.root), "--store", store, "--json"]) == 0
    versions = json.loads(capsys.readouterr().out)
    assert [v["version"] for v in versions] == [1, 2, 3] and versions[1]["reason"] == "test split"


def test_cli_move_rejects_bad_cells(t, tmp_path, capsys):
    store = str(tmp_path / "state.sqlite")
    code = str(t.grids["grid_code"].iloc[0])
    rc = main(["grids", "move", "--to", code, "--cells", "zz,8b", "--twin", str(t.root), "--store", store,
               "--author", "x", "--reason", "y"])
    assert rc == 2 and "hex" in capsys.readouterr().err
