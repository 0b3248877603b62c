"""The lean path of ``POST /area/summary`` (:func:`twin.service.areas.fast_summary` run by
:class:`twin.service._requests.FastRoutes`) answers exactly like the FastAPI route, audits each request once, checks
the key every time (revocation) with one check per key at a time, and hands everything unusual to the route; ``parse_area``'s numpy ring check builds
the same geometry as ``shapely.geometry.shape`` and keeps the per-position messages."""

from __future__ import annotations

import asyncio
import time
import warnings

import httpx
import pytest
import shapely
from api_helpers import H
from shapely.geometry import box, mapping, shape

import twin.service._audit_trail as trail_mod
import twin.service.areas as areas_mod
from twin.access import audit, auth
from twin.errors import ValidationError
from twin.query.areas import parse_area
from twin.service.app import create_app
from twin.store.sql import Store

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@pytest.fixture
def env(small_twin, tmp_path):
    url = str(tmp_path / "state.sqlite")
    keys = {"district": auth.add_user(Store(url), "d", "district"),
            "community": auth.add_user(Store(url), "c", "community",
                                       [str(small_twin.grids["community_code"].iloc[0])])}
    g = small_twin.grids.iloc[0].geometry
    area = mapping(shapely.buffer(g.centroid, 0.004, quad_segs=15))  # a 61-position lasso over a grid's edge
    with TestClient(create_app(database_url=url, twin=small_twin)) as c:
        yield c, keys, area, url


def _both(c, key, area, query="", monkeypatch=None):
    """The same request through the lean path and (fast routes switched off) through the FastAPI route."""
    fast = c.post("/area/summary" + query, json=area, headers=H(key))
    saved = dict(areas_mod.FAST_ROUTES)
    areas_mod.FAST_ROUTES.clear()
    try:
        slow = c.post("/area/summary" + query, json=area, headers=H(key))
    finally:
        areas_mod.FAST_ROUTES.update(saved)
    return fast, slow


def _last_entries(url, n):
    return list(audit.entries(Store(url)))[-n:]


@pytest.mark.parametrize("role", ["district", "community"])
@pytest.mark.parametrize("query", ["", "?include_cells=true", "?version=head", "?version=1&include_cells=0"])
def test_fast_and_fastapi_paths_answer_and_audit_alike(env, role, query):
    c, keys, area, url = env
    fast, slow = _both(c, keys[role], area, query)
    assert fast.status_code == slow.status_code == 200, (fast.text, slow.text)
    assert fast.content == slow.content
    assert fast.headers["content-type"] == slow.headers["content-type"] == "application/json"
    assert fast.headers["x-twin-version"] == slow.headers["x-twin-version"] == "1"
    a, b = _last_entries(url, 2)
    same = ("user_name", "role", "endpoint", "method", "area_hash", "area_km2", "counts", "version", "outcome",
            "status")
    assert {k: getattr(a, k) for k in same} == {k: getattr(b, k) for k in same}
    assert a.endpoint == "/area/summary" and a.area_hash and a.user_name == {"district": "d", "community": "c"}[role]
    assert audit.verify(Store(url)).ok


def test_every_fast_request_is_audited_once(env):
    c, keys, area, url = env
    before = len(list(audit.entries(Store(url))))
    for _ in range(5):
        assert c.post("/area/summary", json=area, headers=H(keys["district"])).status_code == 200
    assert len(list(audit.entries(Store(url)))) == before + 5


@pytest.mark.parametrize("query, status", [("?include_cells=maybe", 422), ("?version=abc", 422),
                                           ("?version=99", 404), ("?unknown=1", 200)])
def test_unusual_queries_get_the_routes_answer(env, query, status):
    c, keys, area, _ = env
    fast, slow = _both(c, keys["district"], area, query)
    assert fast.status_code == slow.status_code == status, (fast.text, slow.text)
    assert fast.json() == {**slow.json(), **({"instance": fast.json()["instance"]} if status >= 400 else {})}


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"type": "Point", "coordinates": [113.1, 23.0]}',
                                  b'{"type": "Polygon", "coordinates": [[[113.1, 23.0], [113.2, 23.0], [113.2, 23.1]]]}'])
def test_bad_bodies_get_the_routes_problem(env, body):
    c, keys, _, url = env
    r = c.post("/area/summary", content=body, headers={**H(keys["district"]), "content-type": "application/json"})
    assert r.status_code in (400, 422) and r.headers["content-type"] == "application/problem+json"
    assert _last_entries(url, 1)[0].status == r.status_code


def test_a_revoked_key_is_refused_at_once(env):
    c, keys, area, _ = env
    assert c.post("/area/summary", json=area, headers=H(keys["district"])).status_code == 200
    assert auth.cached_role(keys["district"]) is not None
    auth.revoke_keys(Store(env[3]), "d")
    assert auth.cached_role(keys["district"]) is None
    r = c.post("/area/summary", json=area, headers=H(keys["district"]))
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    assert c.post("/area/summary", json=area, headers=H("tw_0123456789ab_nope")).status_code == 401


def test_requests_arriving_while_their_key_is_checked_share_the_one_check(env, monkeypatch):
    c, _, area, url = env
    fresh = auth.add_user(Store(url), "e", "district")  # never checked by this process: scrypt on first use
    unknown = "tw_0123456789ab_" + "x" * 32
    calls: list[str] = []
    real = trail_mod.authenticate

    def slow_check(store, key):  # the check takes a while (a busy store, scrypt): requests pile up behind it
        calls.append(key)
        time.sleep(0.3)
        return real(store, key)

    monkeypatch.setattr(trail_mod, "authenticate", slow_check)

    async def burst(key):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=c.app), base_url="http://t") as ac:
            return await asyncio.gather(*(ac.post("/area/summary", json=area, headers=H(key)) for _ in range(8)))

    assert [r.status_code for r in c.portal.call(burst, fresh)] == [200] * 8
    assert calls == [fresh]  # one check for the eight
    assert [e.user_name for e in _last_entries(url, 8)] == ["e"] * 8  # each request audited under its user
    rs = c.portal.call(burst, unknown)
    assert [r.status_code for r in rs] == [401] * 8 and "unknown API key" in rs[0].json()["detail"]
    assert calls == [fresh, unknown]
    assert [e.outcome for e in _last_entries(url, 8)] == ["unauthenticated"] * 8


# --- parse_area: numpy ring check and geometry from arrays --------------------------------------------------------

_SQUARE = mapping(box(113.10, 23.01, 113.11, 23.02))
_HOLED = mapping(box(113.10, 23.01, 113.12, 23.03).difference(box(113.105, 23.015, 113.11, 23.02)))
_MULTI = mapping(shapely.MultiPolygon([box(113.10, 23.01, 113.105, 23.015), box(113.11, 23.02, 113.115, 23.025)]))
_3D = {"type": "Polygon", "coordinates": [[[113.10, 23.01, 5], [113.11, 23.01, 5], [113.11, 23.02, 5],
                                            [113.10, 23.01, 5]]]}
_MIXED = {"type": "Polygon", "coordinates": [[[113.10, 23.01, 5], [113.11, 23.01], [113.11, 23.02, 5],
                                               [113.10, 23.01, 5]]]}
_INTS = {"type": "Polygon", "coordinates": [[[113, 23], [114, 23], [114, 24], [113, 23]]]}


@pytest.mark.parametrize("g", [_SQUARE, _HOLED, _MULTI, _3D, _INTS])
def test_geometry_from_arrays_equals_shape(g):
    got = parse_area(g, district=box(112, 22, 115, 25))
    want = shape(g)
    assert got.geometry.geom_type == want.geom_type
    assert shapely.equals_exact(got.geometry, want, tolerance=0) or got.geometry.equals(want)


def test_mixed_2d_3d_rings_still_go_through_shape():
    with pytest.raises(ValueError):  # what shapely.geometry.shape says, as before the numpy check
        shape(_MIXED)
    with pytest.raises(ValidationError, match="malformed GeoJSON the GeoJSON"):
        parse_area(_MIXED, district=box(112, 22, 115, 25))


@pytest.mark.parametrize("bad, message", [
    ([113.1, True], "has position [113.1, True]"),
    ([113.1, "23.0"], "has position [113.1, '23.0']"),
    ([113.1], "has position [113.1]"),
    (None, "has position None"),
    ([113.1, float("nan")], "NaN or infinite"),
    ([113.1, 10 ** 400], "NaN or infinite"),
])
def test_a_bad_position_is_named(bad, message):
    ring = [[113.10, 23.01], [113.11, 23.01], bad, [113.11, 23.02], [113.10, 23.01]]
    with pytest.raises(ValidationError, match="polygon 0 ring 0") as e:
        parse_area({"type": "Polygon", "coordinates": [ring]}, district=box(112, 22, 115, 25))
    assert message in str(e.value)
