"""What one partition edit costs in a service process: the edit itself (load the head's partition, apply, commit)
and the build of the new version's twin (checkout + query indexes), each next to the obvious alternative.

* edit: the head's partition reused from the last commit and the edit's local check trusted by the commit, vs the
  partition decoded from the store and validated again in full on commit (what every edit did before);
* build: checkout, then the version twin's indexes reusing the base's point index and deriving its partition index from the base's, vs the
  indexes of the same twin with an empty cache (built from scratch);
* with the host's builder process (``twin serve``): what it prepares of each version (grid polygons, workers, query
  indexes: :func:`twin.service.build_process.prepare`), and what a worker then does to adopt it (read the pickled
  file's bytes, load the partition from the store as another process would, assemble the twin, install the
  indexes) — the part that holds a worker's GIL, against checkout + indexes above.

Runs on the default twin with a throwaway SQLite store; one boundary cell moved back and forth (``--edits`` times).
The last line is one JSON object (medians in ms and the load average).

    .venv/bin/python benchmarks/version_build.py --edits 6
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--edits", type=int, default=6)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)

    from load import _fixtures

    import twin
    from twin.partition import versions
    from twin.partition.edit_ops import EditOp, apply_edit
    from twin.partition.model import validate_partition
    from twin.service import build_process
    from twin.service._versioned import build_indexes, seed_indexes
    from twin.store.sql import Store

    t = twin.load()
    cell, a, b = _fixtures(args.seed)["move"]
    rows: dict[str, list[float]] = {k: [] for k in ("edit", "edit_decode_validate", "checkout", "indexes",
                                                    "indexes_fresh", "prepare", "adopt")}
    with tempfile.TemporaryDirectory(prefix="twin-vbuild-") as d:
        st = Store(Path(d) / "state.sqlite")
        versions.ensure_base(st, t)
        build_indexes(t)  # the service warms the base twin first
        head, at = versions.resolve_version(st, "head"), a
        for i in range(2 * args.edits):
            alternative = i % 2 == 1
            to = b if at == a else a
            t0 = time.perf_counter()
            if alternative:
                versions._LOADED.clear()  # as if nothing were remembered: decode from the store
            p = versions.load_partition(st, t, head)
            res = apply_edit(p, EditOp("move_cells", to_grid=to, cells=[cell]))
            if alternative:
                validate_partition(res.partition, action="commit")  # the full check every commit made before
            head = versions.commit(st, res.partition, base_version=head, author="benchmark", reason="move")
            rows["edit_decode_validate" if alternative else "edit"].append((time.perf_counter() - t0) * 1000)
            at = to
            t0 = time.perf_counter()
            tv = versions.checkout(t, head, store=st)
            t1 = time.perf_counter()
            build_indexes(tv)
            rows["checkout"].append((t1 - t0) * 1000)
            rows["indexes"].append((time.perf_counter() - t1) * 1000)
            t0 = time.perf_counter()
            blob = pickle.dumps(build_process.prepare(t, st, head), protocol=pickle.HIGHEST_PROTOCOL)
            rows["prepare"].append((time.perf_counter() - t0) * 1000)
            versions._LOADED.pop((st.url, head), None)  # the worker loads the partition from the store
            t0 = time.perf_counter()
            prep = pickle.loads(blob)
            tw = versions.twin_with_partition(t, versions.load_partition(st, t, head), version=head,
                                              parts=prep.parts)
            seed_indexes(tw, prep.seeds)
            build_indexes(tw)
            rows["adopt"].append((time.perf_counter() - t0) * 1000)
            if i < 2:  # a fresh build takes seconds: two samples
                fresh = dataclasses.replace(tv, cache={})
                t0 = time.perf_counter()
                build_indexes(fresh)
                rows["indexes_fresh"].append((time.perf_counter() - t0) * 1000)
        st.close()
    print(f"default twin, {args.edits} edits of each kind, load {_load()}")
    print(f"{'':40s} {'median ms':>10s} {'max ms':>8s}   n")
    labels = {"edit": "edit (reused head, one check)", "edit_decode_validate": "edit (decode + full check)",
              "checkout": "version checkout (twin_with_partition)", "indexes": "indexes (shared/derived)",
              "indexes_fresh": "indexes of the same twin, fresh",
              "prepare": "builder process: prepare a version", "adopt": "worker: adopt a prepared version"}
    for k, xs in rows.items():
        print(f"{labels[k]:40s} {np.median(xs):10.1f} {max(xs):8.1f} {len(xs):3d}")
    print(json.dumps({k: round(float(np.median(xs)), 1) for k, xs in rows.items()} | {"load": _load()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
