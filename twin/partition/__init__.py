"""The grid partition: cells → grids, edits (move/split/merge/redraw), workload and balance, the 451 → 478
re-partition, versions (time travel), grid layers in/out, validation."""

__all__: list[str] = []  # import from the modules (twin/__init__.py re-exports the public API)
