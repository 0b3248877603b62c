"""Lasso benchmark: our engine vs geopandas (sjoin) vs DuckDB spatial on the same areas, same answers.

Usage::

    .venv/bin/python benchmarks/lasso.py [--scale 10] [--repeat 50] [--twin DIR]

Areas: ≈0.5 km² star, ≈4 km² irregular 40-vertex lasso, one community, the largest town, the whole district.
Every engine computes all categories (buildings, dwellings, residents by sex/age band, businesses by credit,
cameras, workers, key populations) and the per-grid breakdown. All three get the same precomputed per-building
aggregates (so the baselines never scan the 1.33 M persons either) and use the same rule: a point on the
boundary is inside (geopandas ``predicate="intersects"``, DuckDB ``ST_Intersects``). ``--scale 10`` builds a
scaled twin (≈13 M residents) into ``data/generated/scale10`` once. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry import Polygon

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import twin  # noqa: E402
from twin.crs import area_km2  # noqa: E402
from twin.query import COUNT_KEYS, summarize_area  # noqa: E402
from twin.query_index import partition_index, point_index  # noqa: E402


def _lasso(cx: float, cy: float, radius_m: float, n: int, seed: int) -> Polygon:
    rng = np.random.default_rng(seed)
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = rng.uniform(0.6, 1.3, n) * radius_m / 111_000
    return Polygon(np.column_stack([cx + r * np.cos(ang) / np.cos(np.radians(cy)), cy + r * np.sin(ang)]))


def _scaled_to(poly_fn: Callable[[float], Polygon], km2: float) -> Polygon:
    r = 1000.0
    for _ in range(30):
        p = poly_fn(r)
        r *= (km2 / area_km2(p)) ** 0.5
    return poly_fn(r)


def areas(t: twin.Twin) -> dict[str, Polygon]:
    c = t.district.centroid
    town = t.towns.loc[t.towns["area_km2"].idxmax(), "geometry"]
    com = t.communities.sort_values("area_km2").iloc[len(t.communities) // 2]["geometry"]
    return {
        "star_0.5km2": _scaled_to(lambda r: _lasso(c.x + 0.02, c.y + 0.01, r, 12, 1), 0.5),
        "lasso_4km2": _scaled_to(lambda r: _lasso(c.x, c.y, r, 40, 7), 4.0),
        "community": com,
        "town": town,
        "district": t.district,
    }


def _p50(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3, out


def _points_table(t: twin.Twin) -> pd.DataFrame:
    """The same per-point aggregates the engine uses, as one plain table for the baselines."""
    pidx = point_index(t)
    part = partition_index(t)
    rec = pidx.records
    df = pd.DataFrame(pidx.feats[:, :len(COUNT_KEYS)], columns=list(COUNT_KEYS))
    df.insert(0, "x", rec.x)
    df.insert(1, "y", rec.y)
    codes = np.where(part.point_grid >= 0, part.grid_codes[np.maximum(part.point_grid, 0)], "")
    df.insert(2, "grid_code", codes.astype(str))
    return df


def _engine(t: twin.Twin, area: Polygon) -> dict[str, int]:
    s = summarize_area(t, area)
    return {k: int(v) for k, v in s.totals.items()}


def _geopandas(pts: gpd.GeoDataFrame, area: Polygon) -> dict[str, int]:
    hit = gpd.sjoin(pts, gpd.GeoDataFrame(geometry=[area], crs="EPSG:4326"), predicate="intersects")
    by_grid = hit.groupby("grid_code")[list(COUNT_KEYS)].sum()
    tot = hit[list(COUNT_KEYS)].sum()
    del by_grid
    return {k: int(tot[k]) for k in COUNT_KEYS}


def _duckdb_con(df: pd.DataFrame) -> Any:
    import duckdb
    import duckdb_ext

    ext = next(p for d in duckdb_ext.__path__ for p in Path(d).rglob("spatial.duckdb_extension"))
    con = duckdb.connect()
    con.execute(f"LOAD '{ext}'")
    con.register("src", df)
    con.execute("CREATE TABLE pts AS SELECT *, ST_Point(x, y) AS geom FROM src")
    con.unregister("src")
    return con


def _duckdb(con: Any, area: Polygon) -> dict[str, int]:
    sums = ", ".join(f"sum({k})::BIGINT AS {k}" for k in COUNT_KEYS)
    q = (f"WITH a AS (SELECT ST_GeomFromText(?) AS g), "
         f"hit AS (SELECT pts.* FROM pts, a WHERE ST_Intersects(pts.geom, a.g)) "
         f"SELECT grid_code, {sums} FROM hit GROUP BY grid_code")
    by_grid = con.execute(q, [area.wkt]).df()
    return {k: int(by_grid[k].sum()) for k in COUNT_KEYS}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=50, help="timed runs per area for our engine")
    ap.add_argument("--repeat-baseline", type=int, default=5, help="timed runs per area for the baselines")
    ap.add_argument("--twin", type=Path, default=None)
    args = ap.parse_args(argv)

    root = args.twin
    if root is None and args.scale != 1.0:
        root = Path(__file__).resolve().parents[1] / "data" / "generated" / f"scale{args.scale:g}"
        if not (root / "manifest.json").exists():
            print(f"building a scale-{args.scale:g} twin into {root} (once)…", flush=True)
            twin.build_twin(root, scale=args.scale, progress=False)
    t0 = time.perf_counter()
    t = twin.load(root)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    point_index(t)
    partition_index(t)
    index_s = time.perf_counter() - t0
    print(f"twin: {t.manifest['counts']['residents']:,} residents, {len(t.buildings):,} buildings; "
          f"load {load_s:.1f} s, index build {index_s:.2f} s")

    test_areas = areas(t)
    ours: dict[str, float] = {}
    results: dict[str, dict[str, int]] = {}
    for name, a in test_areas.items():
        ours[name], results[name] = _p50(lambda a=a: _engine(t, a), args.repeat)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # engine only, before the baselines

    df = _points_table(t)
    pts = gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(df["x"], df["y"]), crs="EPSG:4326")
    pts.sindex  # noqa: B018 - build the spatial index outside the timings (fair to geopandas)
    con = _duckdb_con(df)
    gp: dict[str, float] = {}
    dk: dict[str, float] = {}
    agree = True
    print(f"{'area':<12}{'km2':>8}{'residents':>11}{'ours ms':>10}{'geopandas':>11}{'duckdb':>9}"
          f"{'x gpd':>8}{'x duck':>8}")
    for name, a in test_areas.items():
        gp[name], r_gp = _p50(lambda a=a: _geopandas(pts, a), args.repeat_baseline)
        dk[name], r_dk = _p50(lambda a=a: _duckdb(con, a), args.repeat_baseline)
        ok = results[name] == r_gp == r_dk
        agree &= ok
        print(f"{name:<12}{area_km2(shapely.intersection(a, t.district)):>8.2f}{results[name]['residents']:>11,}"
              f"{ours[name]:>10.2f}{gp[name]:>11.1f}{dk[name]:>9.1f}{gp[name] / ours[name]:>8.0f}"
              f"{dk[name] / ours[name]:>8.0f}{'' if ok else '  COUNTS DIFFER'}")
    print(f"max RSS of the engine (default process, before baselines): {rss_mb:.0f} MB")
    summary = {
        "p50_ms_lasso4": round(ours["lasso_4km2"], 3),
        "p50_ms_district": round(ours["district"], 3),
        "speedup_vs_geopandas": round(gp["lasso_4km2"] / ours["lasso_4km2"], 1),
        "speedup_vs_duckdb": round(dk["lasso_4km2"] / ours["lasso_4km2"], 1),
        "min_speedup_vs_geopandas_all_areas": round(min(gp[n] / ours[n] for n in ours), 1),
        "min_speedup_vs_duckdb_all_areas": round(min(dk[n] / ours[n] for n in ours), 1),
        "rss_mb": round(rss_mb),
        "scale": args.scale,
        "counts_agree": bool(agree),
    }
    print(json.dumps(summary))
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
