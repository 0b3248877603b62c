"""Automatic splits keep the city fabric's blocks whole, so the new boundary runs along streets and water."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

import twin
from twin.errors import PartitionError
from twin.partition.edits import keep_blocks_whole, split_grid
from twin.partition.model import partition_from_twin, validate_partition


def _blocks_cut(p, new, grid_code: str) -> int:
    """Blocks of ``grid_code`` (before the split) whose cells end up in more than one grid."""
    idx = p.cells_of(grid_code)
    b, codes = p.blocks[idx], new.grid_code[idx]
    return sum(len(set(codes[b == u])) > 1 for u in np.unique(b))


def test_automatic_split_keeps_blocks_whole(small_twin: twin.Twin) -> None:
    p = partition_from_twin(small_twin)
    assert p.blocks is not None and len(p.blocks) == len(p.cells)
    plain = replace(p, blocks=None)  # the same partition without the fabric: the old bisection
    fewer = 0
    tried = 0
    for code in p.grids["grid_code"]:
        try:
            snapped, old = split_grid(p, code, k=2), split_grid(plain, code, k=2)
        except PartitionError:
            continue
        tried += 1
        assert validate_partition(snapped) is snapped
        assert len(snapped.grids) == len(p.grids) + 1
        cut_new, cut_old = _blocks_cut(p, snapped, code), _blocks_cut(p, old, code)
        assert cut_new <= cut_old, (code, cut_new, cut_old)
        fewer += cut_new < cut_old
    assert tried >= 5 and fewer >= 1, (tried, fewer)


def test_labels_unchanged_without_blocks_or_when_a_part_would_vanish(small_twin: twin.Twin) -> None:
    p = partition_from_twin(small_twin)
    code = str(p.grids["grid_code"].iloc[0])
    idx = p.cells_of(code)
    lab = (np.arange(len(idx)) % 2).astype(np.int64)
    assert keep_blocks_whole(lab, replace(p, blocks=None), idx) is lab
    one_block = replace(p, blocks=np.zeros(len(p.cells), dtype=np.int64))  # the whole grid is one block
    assert keep_blocks_whole(lab, one_block, idx) is lab  # snapping would leave a single part
