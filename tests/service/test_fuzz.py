"""No 5xx from input: random strings, numbers and unicode in every path and query parameter of every operation
(enumerated from the served OpenAPI schema), and the inputs that used to give 500s, each a 4xx problem."""

from __future__ import annotations

import json
import tempfile
import time
import warnings
from pathlib import Path
from urllib.parse import quote

import anyio
import numpy as np
import pytest
import shapely
from api_helpers import STREAMS, H, _problem, stream_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import mapping

import twin
from twin.access import auth
from twin.crs import wgs84_to_gcj02
from twin.geography import district_boundary
from twin.service.app import create_app
from twin.store.sql import Store

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette warns that its TestClient will move to httpx2
    from fastapi.testclient import TestClient

BIG = "1" + "0" * 400
TRICKY = ["", " ", "²", "①", "٣", "８", "NaN", "nan", "inf", "-inf", "-1", "0", "1", "9999", "0001", str(2**63),
          str(2**63 - 1), str(2**64), BIG, "head", "base", "HEAD", "2026-11", "2026", "2026-11-03", "0001-01-01",
          "9999-12-31T23:59:59+14:00", "0001-01-01T00:00-14:00", "%", "../..", "\x00", "8b411d780ab6fff", "f" * 40,
          "440604010001001", "M", "W", "Q", "Y", "D", "csv", "json", "geojson", "gpkg", "true", "1e400", "\u202e"]
values = st.one_of(st.sampled_from(TRICKY), st.text(max_size=12), st.integers().map(str),
                   st.floats().map(str), st.text(alphabet="0123456789-:T+.", max_size=25))
BODIES = {("post", "/area/summary"): {"type": "Polygon", "coordinates": [[[113.105, 23.005], [113.115, 23.005],
                                                                          [113.115, 23.012], [113.105, 23.005]]]},
          ("post", "/incidents/{incident_id}/actions"): {"action": "accept"},
          ("post", "/workers/{worker_id}/status"): {"status": "online"}}
BODIES[("post", "/area/records")] = BODIES[("post", "/area/summary")]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    url = str(tmp_path_factory.mktemp("fuzz") / "state.sqlite")
    t = twin.load()
    g0 = t.grids.iloc[0]
    key = auth.add_user(Store(url), "lan", "community", [str(g0["community_code"])])
    with TestClient(create_app(database_url=url, twin=t, warm=False), raise_server_exceptions=False) as c:
        pt = g0.geometry.representative_point()
        c.inside_lnglat = (round(pt.x, 6), round(pt.y, 6))  # a point in the user's community (reports need one)
        yield c, key


def _operations() -> list[tuple[str, str]]:
    """(method, path) of every operation in the app's OpenAPI schema (a throwaway store; no twin loaded)."""
    with tempfile.TemporaryDirectory(prefix="twin-fuzz-") as d:
        app = create_app(database_url=str(Path(d) / "schema.sqlite"), warm=False)
        return [(m, p) for p, ops in app.openapi()["paths"].items() for m in ops]


OPERATIONS = _operations()


def test_every_operation_is_fuzzed(env):
    c, _ = env
    assert sorted(OPERATIONS) == sorted((m, p) for p, ops in c.get("/openapi.json").json()["paths"].items()
                                        for m in ops)
    assert len(OPERATIONS) >= 20


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_random_parameters_never_5xx(env, method, path):
    c, key = env
    op = c.get("/openapi.json").json()["paths"][path][method]
    names = [(p["name"], p["in"]) for p in op.get("parameters", ()) if p["in"] in ("path", "query")]

    @given(data=st.fixed_dictionaries({n: values for n, _ in names}),
           present=st.lists(st.booleans(), min_size=len(names), max_size=len(names)))
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    def run(data, present):
        url = path
        query = []
        for (n, where), keep in zip(names, present, strict=True):
            if where == "path":
                url = url.replace("{" + n + "}", quote(data[n], safe="") or "x")
            elif keep:
                query.append(f"{quote(n)}={quote(data[n], safe='')}")
        url += ("?" + "&".join(query)) if query else ""
        if path in STREAMS:  # an event stream never ends: disconnect once the answer starts, check its status
            assert c.portal.call(stream_status, c.app, method.upper(), url, H(key)) < 500, url
            return
        r = c.request(method.upper(), url, headers=H(key), json=BODIES.get((method, path), {}) if method == "post"
                      else None)
        assert r.status_code < 500, (url, r.text)
        if r.status_code >= 400:
            _problem(r, r.status_code)

    run()


@pytest.mark.parametrize(("method", "url", "body", "fragment"), [
    ("get", "/grids/440604010001001?version=²", None, "version"),
    ("get", "/hierarchy/towns?version=①", None, "version"),
    ("get", f"/grids/440604010001001?version={2**63}", None, "1 to 9223372036854775807"),
    ("get", f"/versions/1/diff/{2**63}", None, "b_version"),
    ("get", "/versions/²/diff/1", None, "a_version"),
    ("post", "/edits", {"op": "merge_grids", "base_version": 2**63, "reason": "x", "grid_codes": ["1", "2"]},
     "base_version"),
    ("get", "/incidents?period=", None, "period ''"),
    ("get", "/incidents?period=NaN", None, "period 'NaN'"),
    ("get", "/incidents?period=9999", None, "period '9999'"),
    ("post", "/incidents", {"category": "dispute_neighbour", "lng": "inside", "lat": "inside",
                            "reported_at": "0001-01-01T00:00"}, "reported_at"),
    ("get", "/incidents/stats?now=0001-01-01T00:00-14:00", None, "now"),
    ("post", "/edits", {"op": "move_cells", "base_version": 1, "reason": "x", "cells": ["-1"],
                        "to_grid": "440604010001001"}, "'-1' is not an H3"),
    ("post", "/edits", {"op": "move_cells", "base_version": 1, "reason": "x", "cells": ["f" * 40],
                        "to_grid": "440604010001001"}, "is not an H3"),
])
def test_former_500s_are_4xx_problems(env, method, url, body, fragment):
    c, key = env
    if body and body.get("lng") == "inside":
        body = dict(body, lng=c.inside_lnglat[0], lat=c.inside_lnglat[1])
    r = c.request(method.upper(), url, headers=H(key), json=body)
    assert 400 <= r.status_code < 500, r.text
    assert fragment in _problem(r, r.status_code)["detail"] or fragment in r.text


@pytest.mark.parametrize("where", ["area", "point"])
def test_a_json_integer_too_large_for_a_float_is_a_422(env, where):
    c, key = env
    body = ('{"type":"Polygon","coordinates":[[[%s,23.005],[113.115,23.005],[113.115,23.012],[113.105,23.005]]]}'
            if where == "area" else '{"category":"dispute_neighbour","point":{"type":"Point","coordinates":[%s,23]}}')
    r = c.post("/area/summary" if where == "area" else "/incidents", content=(body % BIG).encode(),
               headers={**H(key), "content-type": "application/json"})
    assert "coordinate" in _problem(r, 422)["detail"]


def test_unsupported_methods_are_405_with_allow(env):
    c, key = env
    for method in ("TRACE", "PUT", "DELETE", "PATCH", "OPTIONS"):
        r = c.request(method, "/me", headers=H(key))
        _problem(r, 405)
        assert r.headers["allow"] == "GET"
    r = c.request("TRACE", "/area/summary", headers=H(key))
    assert _problem(r, 405) and r.headers["allow"] == "POST"


def test_area_over_the_limits_is_rejected_at_once(env):
    c, key = env
    sq = [[113.105, 23.005], [113.106, 23.005], [113.106, 23.006], [113.105, 23.006], [113.105, 23.005]]
    t0 = time.perf_counter()
    r = c.post("/area/summary", json={"type": "MultiPolygon", "coordinates": [[sq]] * 4_000}, headers=H(key))
    assert "more than 100 polygons" in _problem(r, 422)["detail"]
    fc = {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": {
        "type": "Polygon", "coordinates": [sq]}}] * 4_000}
    assert "limit 100" in _problem(c.post("/area/summary", json=fc, headers=H(key)), 422)["detail"]
    assert time.perf_counter() - t0 < 5  # was 66 s of make_valid each


def test_gcj02_warning_in_the_answer(env):
    c, key = env
    d = district_boundary().buffer(-0.002)
    gcj = shapely.simplify(shapely.transform(d, lambda xy: np.column_stack(wgs84_to_gcj02(xy[:, 0], xy[:, 1]))),
                           1e-4)
    r = c.post("/area/summary", json=mapping(gcj), headers=H(key))
    assert r.status_code == 200, r.text
    assert any("look GCJ-02" in w for w in r.json()["warnings"])


def test_a_gone_client_gets_no_work(env):
    c, key = env
    body = json.dumps(BODIES[("post", "/area/summary")]).encode()
    messages = iter([{"type": "http.request", "body": body, "more_body": False}])
    sent = []

    async def receive():
        return next(messages, {"type": "http.disconnect"})

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/area/summary", "raw_path": b"/area/summary", "query_string": b"", "root_path": "",
             "headers": [(b"authorization", f"Bearer {key}".encode()), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1), "server": ("testserver", 80)}
    anyio.run(c.app, scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 499
