"""One privacy engine: the Python API and the HTTP service give every role the same answer, value for value."""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import Polygon, mapping

import twin
from twin.access import auth
from twin.access.policy import worker_summary
from twin.access.roles import Role, make_role
from twin.errors import TwinError
from twin.model import COUNT_KEYS
from twin.partition.export import grids_frame
from twin.partition.model import partition_from_twin
from twin.query.dossier import grid_dossier
from twin.query.overlays import overlay
from twin.query.summary import summarize_area
from twin.service.app import create_app
from twin.store.sql import Store

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette warns that its TestClient will move to httpx2
    from fastapi.testclient import TestClient

ROLE_NAMES = ("district", "town", "community", "grid_worker", "analyst")


class _Env:
    """The HTTP client, one API key and one Role per role name (a short repr for hypothesis)."""

    def __init__(self, client: TestClient, keys: dict[str, str], roles: dict[str, Role]) -> None:
        self.client, self.keys, self.roles = client, keys, roles

    def __repr__(self) -> str:
        return "<service env>"

    def post(self, name: str, path: str, body: Any) -> Any:
        return self.client.post(path, json=body, headers={"Authorization": f"Bearer {self.keys[name]}"})

    def get(self, name: str, path: str) -> Any:
        return self.client.get(path, headers={"Authorization": f"Bearer {self.keys[name]}"})


@pytest.fixture(scope="module")
def t(default_twin: twin.Twin) -> twin.Twin:
    return default_twin


@pytest.fixture(scope="module")
def env(t: twin.Twin, tmp_path_factory: pytest.TempPathFactory) -> Any:
    url = str(tmp_path_factory.mktemp("parity") / "state.sqlite")
    store = Store(url)
    g = t.grids.iloc[0]
    scope = {"district": [], "town": [str(g["town_code"])], "community": [str(g["community_code"])],
             "grid_worker": [str(g["grid_code"])], "analyst": []}
    keys = {n: auth.add_user(store, f"u_{n}", n, scope[n]) for n in ROLE_NAMES}
    roles = {n: make_role(n, scope[n], user=f"u_{n}") for n in ROLE_NAMES}
    with TestClient(create_app(database_url=url, twin=t), raise_server_exceptions=False) as c:
        yield _Env(c, keys, roles)


def _python_answer(s: Any) -> dict[str, Any]:
    """The fields of an AreaSummary that HTTP /area/summary also returns, in its shape."""
    rows = s.by_grid
    by_grid = {} if rows.empty else {
        str(r["grid_code"]): {k: int(r[k]) for k in COUNT_KEYS} for r in rows.to_dict("records")}
    return {"totals": s.totals, "buildings_by_use": s.buildings_by_use, "businesses_by_credit": s.businesses_by_credit,
            "outside_scope": s.outside, "k": s.k, "suppressed": s.suppressed,
            "inside_scope": {"grids": sorted(by_grid), "by_grid": by_grid},
            "cells": [format(int(c), "x") for c in s.cells],
            "area_km2": s.area_km2, "clipped": s.clipped, "warnings": s.warnings}


def _http_answer(body: dict[str, Any]) -> dict[str, Any]:
    keys = ("totals", "buildings_by_use", "businesses_by_credit", "outside_scope", "k", "suppressed", "cells",
            "area_km2", "clipped", "warnings")
    out = {k: body[k] for k in keys}
    out["inside_scope"] = {"grids": body["inside_scope"]["grids"], "by_grid": body["inside_scope"]["by_grid"]}
    return out


def _areas(t: twin.Twin) -> st.SearchStrategy[dict[str, Any]]:
    """Random polygons (≈ 40 m – 1 km across) as GeoJSON, half of them centred near the edge of the first grid's
    community so that many straddle the community user's scope; a few reach outside the district or are
    degenerate."""
    bx, by = t.buildings["lng"].to_numpy(), t.buildings["lat"].to_numpy()
    edge = t.community(str(t.grids.iloc[0]["community_code"])).geometry.boundary  # the community user's scope edge
    near = np.flatnonzero(shapely.dwithin(shapely.points(bx, by), edge, 0.0015))  # buildings ≲ 150 m from it

    @st.composite
    def area(draw: st.DrawFn) -> dict[str, Any]:
        pool = near if draw(st.booleans()) else np.arange(len(bx))
        b = pool[draw(st.integers(0, len(pool) - 1))]
        cx, cy = bx[b] + draw(st.floats(-0.002, 0.002)), by[b] + draw(st.floats(-0.002, 0.002))
        r = draw(st.floats(0.0002, 0.01))
        n = draw(st.integers(3, 9))
        jit = draw(st.lists(st.floats(0.0, 0.9), min_size=2 * n, max_size=2 * n))
        step = 2 * np.pi / n
        pts = [(cx + r * (0.3 + 0.7 * jit[2 * m]) * np.cos((m + jit[2 * m + 1]) * step),
                cy + r * (0.3 + 0.7 * jit[2 * m]) * np.sin((m + jit[2 * m + 1]) * step)) for m in range(n)]
        return json.loads(json.dumps(mapping(Polygon(pts))))

    return area()


def test_area_summary_is_the_same_in_python_and_http(t: twin.Twin, env: _Env) -> None:
    """Random areas × every role: summarize_area(t, area, role=…) equals POST /area/summary for that role —
    totals, breakdowns, outside aggregate, which values are suppressed, cells, area and warnings."""
    seen = {"areas": 0, "suppressed": 0, "straddling": 0}

    @given(area=_areas(t))
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    def check(area: dict[str, Any]) -> None:
        for name in ROLE_NAMES:
            r = env.post(name, "/area/summary?include_cells=true", area)
            try:
                s = summarize_area(t, area, role=env.roles[name])
            except TwinError as e:  # the same bad input is the same error class on both sides
                assert r.status_code in (400, 422) and r.json()["title"] == type(e).__name__, r.text
                return
            assert r.status_code == 200, r.text
            assert _python_answer(s) == _http_answer(r.json()), name
            seen["suppressed"] += bool(s.suppressed)
            seen["straddling"] += name == "community" and s.outside is not None and not s.by_grid.empty
        seen["areas"] += 1

    check()
    assert seen["areas"] >= 20 and seen["suppressed"] and seen["straddling"], seen


@pytest.mark.parametrize("name", ROLE_NAMES)
def test_dossier_is_the_same_in_python_and_http(t: twin.Twin, env: _Env, name: str) -> None:
    codes = [str(t.grids["grid_code"].iloc[i]) for i in (0, 1, len(t.grids) // 2, len(t.grids) - 1)]
    for code in codes:
        body = env.get(name, f"/grids/{code}").json()
        body.pop("version")
        assert grid_dossier(t, code, role=env.roles[name]) == body


@pytest.mark.parametrize("name", ROLE_NAMES)
def test_overlay_is_the_same_in_python_and_http(t: twin.Twin, env: _Env, name: str) -> None:
    body = env.get(name, "/overlays/pregnant?res=10&include_zero=true").json()
    o = overlay(t, "pregnant", res=10, role=env.roles[name])
    assert [c["cell"] for c in body["cells"]] == [format(int(c), "x") for c in o["cell"]]
    assert [c["count"] for c in body["cells"]] == o["count"].astype(object).where(o["count"].notna(), None).tolist()
    assert [c["suppressed"] for c in body["cells"]] == o["suppressed"].tolist()


@pytest.mark.parametrize("name", ["community", "analyst"])
def test_export_and_workers_are_the_same_in_python_and_http(t: twin.Twin, env: _Env, name: str) -> None:
    """GET /exports/grids equals grids_frame(role=…) (published outside counts included); GET /workers's
    summary equals worker_summary."""
    body = env.get(name, "/exports/grids?format=geojson&version=base").json()
    got = {f["properties"]["grid_code"]: f["properties"]["residents"] for f in body["features"]}
    want = grids_frame(t, partition_from_twin(t), role=env.roles[name]).set_index("grid_code")["residents"]
    assert got == {str(c): (None if v is pd.NA else int(v)) for c, v in want.astype(object).items()}
    code = str(t.grids["grid_code"].iloc[-1])
    for q, grid in (("", None), (f"?grid_code={code}", code)):
        w = env.get(name, "/workers" + q).json()["summary"]
        board = t.workers.assign(grid_code=t.workers["grid_code"].astype(str))
        if grid is not None:
            board = board[board["grid_code"] == grid]
        assert w == worker_summary(board, env.roles[name], t, grid_code=grid)
