"""A drawn area (lasso) → a valid WGS84 (Multi)Polygon inside the district, or a typed error saying why not.

Accepted input: a shapely ``Polygon``/``MultiPolygon``; anything with ``__geo_interface__`` (geopandas
``GeoSeries``/``GeoDataFrame``); a GeoJSON geometry, ``Feature`` or ``FeatureCollection`` as a mapping (lists or
the tuples ``shapely.geometry.mapping`` gives), a JSON string or bytes. Coordinates are WGS84 (lng, lat) degrees, GeoJSON order; pass
``from_gcj02=True`` for coordinates taken from Amap/Tencent maps (GCJ-02, ≈ 600 m off WGS84 here).

Rules (checked in this order, each failure is a :class:`twin.errors.ValidationError` subclass):

* malformed JSON / GeoJSON (missing ``type``/``coordinates``, non-numeric positions, rings with < 4 positions)
  and **unclosed rings** (GeoJSON requires first == last position) are rejected;
* a ``Point``/``LineString``/``Multi…``/empty collection is rejected: it is not an area;
* NaN or infinite coordinates are rejected;
* more than :data:`MAX_VERTICES` positions or :data:`MAX_PARTS` polygons are rejected (simplify the lasso first);
  GeoJSON is counted while it is walked, before any geometry is built;
* coordinates that look projected (|x| > 180 or |y| > 90, e.g. EPSG:4547 metres) or (lat, lng)-swapped
  are rejected with :class:`twin.errors.CRSError`;
* empty or zero-area polygons are rejected;
* self-intersecting ("bow-tie") polygons are **repaired** with :func:`shapely.make_valid` and a warning says so
  (a hand-drawn lasso often crosses itself; the repaired area is the union of its loops); overlapping or touching
  parts (a MultiPolygon, several Features) are unioned. Repair costs grow with the number of edge crossings, not
  vertices (500 vertices winding 30 times, ≈ 14,000 crossings: 19 s; 4,000 identical squares: 66 s), so invalid
  input with more than :data:`MAX_REPAIR_CROSSINGS` crossings is rejected before any repair, after a bounded count
  (:func:`_crossings`); each part is repaired on its own and the parts are then unioned (cheap for identical or
  touching parts);
* an area entirely outside the district raises :class:`twin.errors.OutsideDistrictError` with the distance and a
  GCJ-02 hint when it is close; an area partly outside is clipped to the district and a warning says how much;
* an area whose vertices fall clearly more inside the district after a GCJ-02 → WGS84 conversion than as given
  gets a warning that it looks GCJ-02 (Amap/Tencent, ≈ 600 m off here). An area wholly inside the district in
  both datums cannot be told apart and gets no warning.

Limits bound the work per call (a request over them fails at once, before any GEOS work for the counts):
:data:`MAX_VERTICES` positions, :data:`MAX_PARTS` polygons, :data:`MAX_REPAIR_CROSSINGS` edge crossings in an
invalid area. Each of those errors names the limit and the value found.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

import msgspec
import numpy as np
import pyproj
import shapely
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry

from twin.crs import STORAGE_CRS, area_km2, gcj02_to_wgs84
from twin.errors import CRSError, OutsideDistrictError, ValidationError
from twin.geography import district_boundary

__all__ = ["ParsedArea", "AreaLike", "SupportsGeoInterface", "parse_area", "area_geometry", "polygon_from_json", "MAX_VERTICES",
           "MAX_PARTS", "MAX_REPAIR_CROSSINGS", "MIN_AREA_M2"]

MAX_VERTICES = 10_000
"""Most positions accepted in one area (a detailed community outline has a few thousand; the whole district
boundary fewer than that)."""
MAX_PARTS = 100
"""Most polygons accepted in one area (MultiPolygon parts and Features together)."""
MAX_REPAIR_CROSSINGS = 1_000
"""Most edge crossings an invalid area may have to be repaired (≈ 0.5 s of make_valid at the limit)."""
_MAX_CANDIDATE_PAIRS = 2_000_000  # segment pairs with overlapping boxes examined while counting crossings
_BATCH = 256  # segments per STRtree query while counting crossings
_GCJ_SAMPLE = 1_000  # vertices tested for the GCJ-02 warning
MIN_AREA_M2 = 1.0
"""Smaller areas (after repair and clipping) count as zero-area."""

_POLYGONAL = ("Polygon", "MultiPolygon")
_SEQ = (list, tuple)  # GeoJSON arrays: lists from JSON, tuples from shapely.geometry.mapping / __geo_interface__
_NOT_AREA = ("Point", "MultiPoint", "LineString", "MultiLineString", "LinearRing")


@runtime_checkable
class SupportsGeoInterface(Protocol):
    """Anything with a GeoJSON-like ``__geo_interface__`` (shapely geometries, geopandas GeoSeries/GeoDataFrame)."""

    @property
    def __geo_interface__(self) -> Mapping[str, Any]: ...


AreaLike: TypeAlias = BaseGeometry | SupportsGeoInterface | Mapping[str, Any] | str | bytes
"""What :func:`parse_area` accepts as an area."""


@dataclass
class ParsedArea:
    """A validated area: ``geometry`` is a valid WGS84 (Multi)Polygon inside the district.

    ``area_km2`` is measured in EPSG:4547; ``clipped`` says whether part of the input lay outside the district;
    ``warnings`` are human-readable notes (repairs, clipping, GCJ-02 conversion).
    """

    geometry: BaseGeometry
    area_km2: float
    clipped: bool = False
    warnings: list[str] = field(default_factory=list)
    bounds: tuple[float, float, float, float] = None  # type: ignore[assignment]  # filled in __post_init__
    """``geometry.bounds`` (lng/lat degrees), kept because every query needs them (computed if not given)."""

    def __post_init__(self) -> None:
        if self.bounds is None:
            minx, miny, maxx, maxy = self.geometry.bounds
            self.bounds = (minx, miny, maxx, maxy)


def parse_area(
    area: AreaLike,
    *,
    district: BaseGeometry | None = None,
    from_gcj02: bool = False,
    max_vertices: int = MAX_VERTICES,
    max_parts: int = MAX_PARTS,
) -> ParsedArea:
    """Validate a drawn area and clip it to the district.

    Parameters
    ----------
    area
        shapely Polygon/MultiPolygon; an object with ``__geo_interface__`` (a geopandas GeoSeries/GeoDataFrame,
        reprojected to EPSG:4326 first when it has another ``crs``); or GeoJSON (geometry, Feature,
        FeatureCollection) as a mapping — lists or tuples, as ``shapely.geometry.mapping`` gives — str or bytes.
        WGS84 (lng, lat) degrees unless ``from_gcj02``.
    district
        WGS84 (Multi)Polygon to clip to (default: :func:`twin.geography.district_boundary`).
    from_gcj02
        The coordinates are GCJ-02 (Amap/Tencent); convert them to WGS84 first.
    max_vertices, max_parts
        Reject areas with more positions or polygons than this.

    Returns
    -------
    ParsedArea
        Valid WGS84 (Multi)Polygon, area in km² (EPSG:4547), clipping flag and warnings.

    Raises
    ------
    ValidationError, CRSError, OutsideDistrictError
        See the module docstring for the rules.

    Examples
    --------
    >>> a = parse_area({"type": "Polygon", "coordinates": [[[113.10, 23.02], [113.12, 23.02],
    ...                  [113.12, 23.04], [113.10, 23.02]]]})
    >>> round(a.area_km2, 2), a.clipped
    (2.28, False)
    """
    if max_vertices < 4:
        raise ValidationError(f"max_vertices must be at least 4, got {max_vertices}.")
    warnings: list[str] = []
    geom = _to_geometry(area, max_vertices=max_vertices, max_parts=max_parts)
    coords = _checked_coordinates(geom, max_vertices, max_parts)
    x_min, y_min, x_max, y_max = geom.bounds
    lo, hi = [x_min, y_min], [x_max, y_max]
    if max(-lo[0], hi[0]) > 180 or max(-lo[1], hi[1]) > 90:
        _check_degrees(coords)
    if from_gcj02:
        geom = shapely.transform(geom, lambda c: np.column_stack(gcj02_to_wgs84(c[:, 0], c[:, 1])))
        warnings.append("converted from GCJ-02 (Amap) to WGS84.")
    dist = district if district is not None else district_boundary()
    _check_not_swapped(coords, lo, hi, dist.bounds)
    if not from_gcj02:
        _warn_if_gcj02(coords, dist, warnings)
    geom, repaired = _repaired(geom, warnings)
    full_km2 = area_km2(geom) if geom.area > 0 else 0.0
    if full_km2 * 1e6 < MIN_AREA_M2:
        raise ValidationError(f"the area has zero area (less than {MIN_AREA_M2:g} m²); draw a polygon that "
                              f"encloses some ground.")
    if not shapely.is_prepared(dist):
        shapely.prepare(dist)
    if dist.contains(geom):
        if repaired or from_gcj02:
            return ParsedArea(geom, full_km2, False, warnings)
        return ParsedArea(geom, full_km2, False, warnings, (x_min, y_min, x_max, y_max))
    return _clipped(geom, dist, full_km2, warnings, from_gcj02=from_gcj02)


def _checked_coordinates(geom: BaseGeometry, max_vertices: int, max_parts: int) -> np.ndarray:
    """The (n, 2) coordinates of a non-empty area with at most ``max_vertices`` finite positions and
    ``max_parts`` polygons."""
    n_parts = int(shapely.get_num_geometries(geom)) if isinstance(geom, MultiPolygon) else 1
    if n_parts > max_parts:
        raise ValidationError(f"the area has {n_parts:,} polygons, more than the limit of {max_parts:,}; merge "
                              f"or drop parts first.")
    coords = shapely.get_coordinates(geom)
    if len(coords) == 0 or geom.is_empty:
        raise ValidationError("the area is empty: draw a polygon with at least three distinct corners.")
    if len(coords) > max_vertices:
        raise ValidationError(
            f"the area has {len(coords):,} vertices, more than the limit of {max_vertices:,}; simplify it first "
            f"(e.g. shapely.simplify(geom, 1e-5), about 1 m)."
        )
    if not math.isfinite(float(coords.sum())) and not np.isfinite(coords).all():  # the sum: one cheap pass
        bad = coords[~np.isfinite(coords).all(axis=1)][0]
        raise ValidationError(f"the area has a NaN or infinite coordinate {tuple(bad.tolist())}; every "
                              f"position must be a finite (lng, lat) pair.")
    return coords


def _repaired(geom: BaseGeometry, warnings: list[str]) -> tuple[BaseGeometry, bool]:
    """A valid area: invalid (e.g. self-intersecting) input repaired with make_valid part by part and the parts
    unioned, noted in ``warnings``; :class:`ValidationError` when it has too many crossings to repair cheaply."""
    if geom.is_valid:
        return geom, False
    reason = shapely.is_valid_reason(geom)
    crossings = _crossings(geom, MAX_REPAIR_CROSSINGS)
    if crossings > MAX_REPAIR_CROSSINGS:
        raise ValidationError(f"the area is invalid ({reason}) and its edges cross each other more than "
                              f"{MAX_REPAIR_CROSSINGS:,} times, the limit (at least {crossings:,} crossings counted); "
                              f"repairing it would take too long. Draw a simple polygon that does not cross "
                              f"itself, or fewer, non-overlapping parts.")
    parts = [p if p.is_valid else _polygonal_part(shapely.make_valid(p)) for p in shapely.get_parts(geom)]
    fixed = _polygonal_part(shapely.union_all(parts) if len(parts) > 1 else parts[0])
    if fixed.is_empty or fixed.area == 0:
        raise ValidationError(f"the area is invalid ({reason}) and has zero area after repair; draw a "
                              f"simple polygon that encloses some ground.")
    n = len(shapely.get_parts(fixed))
    warnings.append(f"the area was self-intersecting or otherwise invalid ({reason}); repaired with "
                    f"make_valid into {n} part{'s' if n != 1 else ''}.")
    return fixed, True


def _clipped(geom: BaseGeometry, dist: BaseGeometry, full_km2: float, warnings: list[str], *,
             from_gcj02: bool) -> ParsedArea:
    """The part of an area not wholly inside the district that lies inside it, or OutsideDistrictError."""
    if not dist.intersects(geom):
        raise OutsideDistrictError(_outside_reason(geom, dist, from_gcj02))
    clipped = _polygonal_part(shapely.intersection(geom, dist))
    if clipped.is_empty or area_km2(clipped) * 1e6 < MIN_AREA_M2:
        raise OutsideDistrictError(_outside_reason(geom, dist, from_gcj02, touches=True))
    inside_km2 = area_km2(clipped)
    warnings.append(f"{full_km2 - inside_km2:.3f} km² of the {full_km2:.3f} km² area "
                    f"({100 * (1 - inside_km2 / full_km2):.1f}%) lies outside Chancheng District and was clipped.")
    return ParsedArea(clipped, inside_km2, True, warnings)


def _crossings(geom: BaseGeometry, cap: int) -> int:
    """Proper crossings between the edges of ``geom``'s rings (edges meeting at a vertex or overlapping along a
    line do not count), counted until ``cap`` is exceeded. Bounded work: STRtree queries in batches of
    :data:`_BATCH` edges, at most :data:`_MAX_CANDIDATE_PAIRS` box-overlapping pairs tested (more: returns a
    number above ``cap``)."""
    rings = shapely.get_rings(shapely.get_parts(geom))
    xy, ring_of = shapely.get_coordinates(rings, return_index=True)
    same = ring_of[1:] == ring_of[:-1]
    a, b = xy[:-1][same], xy[1:][same]
    boxes = shapely.box(np.minimum(a[:, 0], b[:, 0]), np.minimum(a[:, 1], b[:, 1]),
                        np.maximum(a[:, 0], b[:, 0]), np.maximum(a[:, 1], b[:, 1]))
    tree = shapely.STRtree(boxes)
    found = pairs = 0
    for start in range(0, len(a), _BATCH):
        i, j = tree.query(boxes[start:start + _BATCH])
        i = i + start
        keep = i < j
        i, j = i[keep], j[keep]
        pairs += len(i)
        if pairs > _MAX_CANDIDATE_PAIRS:
            return max(found, cap + 1)
        d1, d2 = _orient(a[j], b[j], a[i]), _orient(a[j], b[j], b[i])
        d3, d4 = _orient(a[i], b[i], a[j]), _orient(a[i], b[i], b[j])
        found += int(((d1 * d2 < 0) & (d3 * d4 < 0)).sum())
        if found > cap:
            return found
    return found


def _orient(p: np.ndarray, q: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Sign of the turn p → q → r (cross product), per row."""
    return np.sign((q[:, 0] - p[:, 0]) * (r[:, 1] - p[:, 1]) - (q[:, 1] - p[:, 1]) * (r[:, 0] - p[:, 0]))


def _warn_if_gcj02(coords: np.ndarray, dist: BaseGeometry, warnings: list[str]) -> None:
    """Warn when the vertices fall clearly more inside the district once converted from GCJ-02 to WGS84 (the test
    of :func:`twin.ingest.vectors.looks_gcj02`, on at most :data:`_GCJ_SAMPLE` vertices)."""
    pts = coords[:: max(1, len(coords) // _GCJ_SAMPLE)]
    x, y = pts[:, 0], pts[:, 1]
    asis = float(shapely.contains_xy(dist, x, y).mean())
    if asis >= 0.97:  # the warning needs conv − asis > 0.03: impossible here, so skip the (iterative) conversion
        return
    cx, cy = gcj02_to_wgs84(x, y)
    conv = float(shapely.contains_xy(dist, cx, cy).mean())
    if conv - asis > 0.03 and conv > 0.5:
        warnings.append(f"the coordinates look GCJ-02 (Amap/Tencent), about 600 m off WGS84 here: "
                        f"{100 * asis:.0f}% of the vertices lie inside Chancheng District as given, "
                        f"{100 * conv:.0f}% after converting GCJ-02 to WGS84. If they come from Amap/Tencent, "
                        f"send them converted (Python: from_gcj02=True; CLI: --from-gcj02).")


# --- input → shapely -------------------------------------------------------------------------------------------

class _PolygonJSON(msgspec.Struct):
    """A bare GeoJSON Polygon with 2-D positions (other members are ignored, as the general path ignores them)."""

    type: Literal["Polygon"]
    coordinates: list[list[tuple[float, float]]]


_POLYGON_JSON = msgspec.json.Decoder(_PolygonJSON)


def polygon_from_json(body: bytes, *, max_vertices: int = MAX_VERTICES) -> Polygon | None:
    """The shapely Polygon of a JSON body that is a plain GeoJSON Polygon — 2-D finite numbers (not booleans), every
    ring closed with at least 4 positions, at most ``max_vertices`` in all — decoded by msgspec straight into
    typed positions (the common lasso: ≈ 25 µs instead of ≈ 85 µs through a dict); ``None`` for anything else, which
    the general path (:func:`parse_area` of the decoded JSON) accepts or rejects with an error naming the problem.
    :func:`parse_area` of the result equals :func:`parse_area` of the decoded body."""
    try:
        rings = _POLYGON_JSON.decode(body).coordinates
    except (msgspec.DecodeError, OverflowError):
        return None
    if not rings or sum(len(r) for r in rings) > max_vertices:
        return None
    arrays = []
    for ring in rings:
        if len(ring) < 4 or ring[0] != ring[-1]:
            return None
        a = np.fromiter(chain.from_iterable(ring), np.float64, 2 * len(ring)).reshape(-1, 2)
        if not np.isfinite(a).all():
            return None
        arrays.append(a)
    return shapely.polygons(shapely.linearrings(arrays[0]),
                            holes=[shapely.linearrings(a) for a in arrays[1:]] or None)


def area_geometry(area: AreaLike, *, max_vertices: int = MAX_VERTICES, max_parts: int = MAX_PARTS) -> BaseGeometry:
    """The drawn area as a shapely geometry, its GeoJSON structure checked (the first step of :func:`parse_area`).

    Only malformed or non-areal input is rejected here; :func:`parse_area` of the result applies the remaining
    rules and gives the same answer as :func:`parse_area` of ``area``.

    Raises
    ------
    ValidationError
        Malformed GeoJSON, unclosed rings, a Point/LineString, too many positions or polygons.
    """
    return _to_geometry(area, max_vertices=max_vertices, max_parts=max_parts)


def _to_geometry(area: AreaLike, *, max_vertices: int, max_parts: int) -> BaseGeometry:
    if isinstance(area, BaseGeometry):
        return _polygonal_or_raise(area, "the area")
    if hasattr(area, "__geo_interface__"):  # geopandas GeoSeries/GeoDataFrame, other geometry libraries
        area = _geo_interface(area)
    if isinstance(area, (bytes, bytearray)):
        try:
            area = area.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValidationError(f"malformed GeoJSON: the bytes are not UTF-8 ({e}).") from e
    if isinstance(area, str):
        try:
            area = json.loads(area)
        except json.JSONDecodeError as e:
            snippet = area[:60] + ("…" if len(area) > 60 else "")
            raise ValidationError(f"malformed GeoJSON: not valid JSON ({e.msg} at line {e.lineno} column "
                                  f"{e.colno}) in {snippet!r}.") from e
    if not isinstance(area, Mapping):
        raise ValidationError(f"an area must be a shapely Polygon/MultiPolygon, an object with "
                              f"__geo_interface__ or GeoJSON, got {type(area).__name__}.")
    geoms = list(_geometries(area, "the GeoJSON"))
    if not geoms:
        raise ValidationError("the GeoJSON holds no geometry (empty FeatureCollection?); draw a polygon.")
    n_pos = n_polys = 0
    parts: list[BaseGeometry] = []
    for g, where in geoms:
        n_polys += _count_polygons(g, where)
        if n_polys > max_parts:
            raise ValidationError(f"the area has more than {max_parts:,} polygons (limit {max_parts:,}; "
                                  f"{n_polys:,} counted by {where}); merge or drop parts first.")
        n, arrays = _check_geojson_geometry(g, where, n_pos, max_vertices)
        n_pos += n
        try:
            parts.append(_from_arrays(g, arrays) if arrays is not None else shape(g))
        except Exception as e:  # shapely raises assorted errors for odd nesting
            raise ValidationError(f"malformed GeoJSON {where}: {e}.") from e
    if len(parts) == 1:
        return parts[0]
    polys = [p for g in parts for p in shapely.get_parts(g)]
    return MultiPolygon(polys)  # overlapping or touching parts are unioned by _repaired


def _geo_interface(obj: SupportsGeoInterface) -> Mapping[str, Any]:
    """The GeoJSON mapping of an object with ``__geo_interface__``; geopandas objects with a CRS other than
    WGS84 are reprojected (``to_crs``) first."""
    crs = getattr(obj, "crs", None)
    to_crs = getattr(obj, "to_crs", None)
    if crs is not None and callable(to_crs):
        try:
            same = pyproj.CRS.from_user_input(crs).equals(pyproj.CRS.from_user_input(STORAGE_CRS))
            if not same:
                obj = to_crs(STORAGE_CRS)
        except pyproj.exceptions.CRSError as e:
            raise CRSError(f"the area's crs {crs!r} is not understood: {e}. Give it a valid crs or "
                           f"reproject it to EPSG:4326 first.") from e
    gi = obj.__geo_interface__
    if not isinstance(gi, Mapping):
        raise ValidationError(f"the area's __geo_interface__ is a {type(gi).__name__}, not a GeoJSON mapping.")
    return gi


def _geometries(obj: Mapping[str, Any], where: str) -> Iterator[tuple[Mapping[str, Any], str]]:
    kind = obj.get("type")
    if kind == "FeatureCollection":
        feats = obj.get("features")
        if not isinstance(feats, _SEQ):
            raise ValidationError(f"malformed GeoJSON: {where} is a FeatureCollection without a 'features' list.")
        for i, f in enumerate(feats):
            if not isinstance(f, Mapping) or f.get("type") != "Feature":
                raise ValidationError(f"malformed GeoJSON: feature {i} is not a Feature object.")
            yield from _geometries(f, f"feature {i}")
    elif kind == "Feature":
        g = obj.get("geometry")
        if not isinstance(g, Mapping):
            raise ValidationError(f"malformed GeoJSON: {where} has no geometry (null); it needs a Polygon.")
        yield from _geometries(g, where)
    elif kind == "GeometryCollection":
        gs = obj.get("geometries")
        if not isinstance(gs, _SEQ):
            raise ValidationError(f"malformed GeoJSON: {where} GeometryCollection has no 'geometries' list.")
        for i, g in enumerate(gs):
            if not isinstance(g, Mapping):
                raise ValidationError(f"malformed GeoJSON: geometry {i} of {where} is not an object.")
            yield from _geometries(g, f"{where} geometry {i}")
    elif kind in _POLYGONAL:
        yield obj, where
    elif kind in _NOT_AREA:
        raise ValidationError(f"{where} is a {kind}, not an area: draw a Polygon or MultiPolygon.")
    else:
        raise ValidationError(f"malformed GeoJSON: {where} has unknown type {kind!r}; expected a Polygon, "
                              f"MultiPolygon, Feature or FeatureCollection.")


def _count_polygons(g: Mapping[str, Any], where: str) -> int:
    coords = g.get("coordinates")
    if not isinstance(coords, _SEQ):
        raise ValidationError(f"malformed GeoJSON: {where} {g['type']} has no 'coordinates' list.")
    return len(coords) if g["type"] == "MultiPolygon" else 1


def _check_geojson_geometry(g: Mapping[str, Any], where: str, before: int, max_vertices: int
                            ) -> tuple[int, list[list[np.ndarray]] | None]:
    """Validate nesting, numbers and ring closure of a (Multi)Polygon mapping (lists or tuples, as
    ``shapely.geometry.mapping`` gives); return its number of positions and its rings as float arrays (per polygon;
    ``None`` when some ring is unusual, e.g. mixes 2-D and 3-D positions: build it with ``shape``), and raise
    :class:`ValidationError` as soon as they and the ``before`` positions of earlier geometries exceed
    ``max_vertices``.

    Each ring is checked in one numpy pass (:func:`_ring_array`); only a ring that fails it is walked position by
    position, to name the first bad position."""
    coords = g["coordinates"]
    polys = coords if g["type"] == "MultiPolygon" else [coords]
    n = 0
    out: list[list[np.ndarray]] | None = []
    for pi, rings in enumerate(polys):
        if not isinstance(rings, _SEQ) or not rings:
            raise ValidationError(f"malformed GeoJSON: {where} polygon {pi} has no rings.")
        arrays: list[np.ndarray] = []
        for ri, ring in enumerate(rings):
            if not isinstance(ring, _SEQ):
                raise ValidationError(f"malformed GeoJSON: {where} polygon {pi} ring {ri} is not a list of positions.")
            if before + n + len(ring) > max_vertices:
                raise ValidationError(f"the area has more than {max_vertices:,} vertices, the limit (at least "
                                      f"{before + n + len(ring):,}, counted up to {where} polygon {pi} ring {ri}); "
                                      f"simplify it first (e.g. shapely.simplify(geom, 1e-5), about 1 m).")
            arr = _ring_array(ring)
            if arr is None:
                _check_positions(ring, f"{where} polygon {pi} ring {ri}")
                out = None
            if len(ring) < 4:
                raise ValidationError(f"{where} polygon {pi} ring {ri} has {len(ring)} positions; a closed ring "
                                      f"needs at least 4 (three corners and the first repeated at the end).")
            if tuple(ring[0][:2]) != tuple(ring[-1][:2]):
                raise ValidationError(f"{where} polygon {pi} ring {ri} is not closed: it starts at {ring[0]} but "
                                      f"ends at {ring[-1]}; repeat the first position at the end.")
            n += len(ring)
            if arr is not None:
                arrays.append(arr)
        if out is not None:
            out.append(arrays)
    if out is not None and len({a.shape[1] for p in out for a in p}) > 1:
        out = None  # 2-D and 3-D rings in one geometry: shape() decides
    return n, out


_NUMBER_TYPES = frozenset({float, int})
_POSITION_TYPES = frozenset({list, tuple})
_POSITION_LENGTHS = frozenset({2, 3})


def _ring_array(ring: Sequence[Any]) -> np.ndarray | None:
    """The ring's positions as an (n, 2|3) float array when every position is a list/tuple of 2 (or every one of
    3) plain finite ``int``/``float`` values (never ``bool``); ``None`` otherwise (the caller walks the ring)."""
    if not ring:
        return None
    try:
        if (not set(map(type, ring)) <= _POSITION_TYPES or len(lengths := set(map(len, ring))) != 1
                or not lengths <= _POSITION_LENGTHS or not set(map(type, chain.from_iterable(ring))) <= _NUMBER_TYPES):
            return None
        arr = np.array(ring, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):  # e.g. an integer too large for a float
        return None
    if arr.ndim != 2 or not np.isfinite(arr).all():
        return None
    return arr


def _check_positions(ring: Sequence[Any], label: str) -> None:
    """Walk a ring's positions one by one: :class:`ValidationError` naming the first that is not a finite
    [lng, lat] (or [lng, lat, z]) number pair."""
    for pos in ring:
        if (not isinstance(pos, _SEQ) or len(pos) not in (2, 3)
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pos)):
            raise ValidationError(f"malformed GeoJSON: {label} has position {_short(pos)}; positions "
                                  f"are [lng, lat] number pairs.")
        if not all(_finite(v) for v in pos):
            raise ValidationError(f"the area has a NaN or infinite (or out-of-range) coordinate {_short(pos)} "
                                  f"in {label}; positions are finite WGS84 degrees.")


def _from_arrays(g: Mapping[str, Any], polys: list[list[np.ndarray]]) -> BaseGeometry:
    """The (Multi)Polygon of ``g`` from its checked, closed ring arrays (what ``shapely.geometry.shape`` builds)."""
    built = [shapely.polygons(shapely.linearrings(rings[0]), holes=[shapely.linearrings(r) for r in rings[1:]] or None)
             for rings in polys]
    return shapely.multipolygons(built) if g["type"] == "MultiPolygon" else built[0]


def _finite(v: float) -> bool:
    try:
        return math.isfinite(v)
    except OverflowError:  # a JSON integer too large for a float (1 followed by 400 zeros)
        return False


def _short(value: object, n: int = 80) -> str:
    r = repr(value)
    return r if len(r) <= n else r[:n] + "…"


def _polygonal_or_raise(geom: BaseGeometry, what: str) -> BaseGeometry:
    if isinstance(geom, (Polygon, MultiPolygon)):
        return geom
    if geom.geom_type == "GeometryCollection":
        parts = shapely.get_parts(geom)
        if len(parts) and all(isinstance(p, (Polygon, MultiPolygon)) for p in parts):
            return MultiPolygon([q for p in parts for q in shapely.get_parts(p)])  # unioned by _repaired
    raise ValidationError(f"{what} is a {geom.geom_type}, not an area: draw a Polygon or MultiPolygon.")


def _polygonal_part(geom: BaseGeometry) -> BaseGeometry:
    """Keep only the polygons of a geometry (make_valid/intersection may add lines or points)."""
    if isinstance(geom, (Polygon, MultiPolygon)):
        return geom
    polys = [p for p in shapely.get_parts(geom) if isinstance(p, (Polygon, MultiPolygon))]
    if not polys:
        return Polygon()
    out = shapely.union_all(polys)
    return out if isinstance(out, (Polygon, MultiPolygon)) else _polygonal_part(out)


# --- coordinate sanity ----------------------------------------------------------------------------------------

def _check_degrees(coords: np.ndarray) -> None:
    x, y = coords[:, 0], coords[:, 1]
    if (np.abs(x) > 180).any() or (np.abs(y) > 90).any():
        eg = tuple(float(v) for v in coords[0])  # plain numbers in the message, not np.float64(...)
        if ((np.abs(y) > 90) & (np.abs(y) <= 180) & (np.abs(x) <= 90)).all():
            raise CRSError(f"coordinates look like (lat, lng) instead of (lng, lat): e.g. {eg}. "
                           f"GeoJSON and shapely put longitude first; swap the two values.")
        raise CRSError(f"coordinates look projected (metres), not WGS84 degrees: e.g. {eg}. "
                       f"Reproject to EPSG:4326 (e.g. GeoSeries.to_crs('EPSG:4326')) before querying.")


def _check_not_swapped(coords: np.ndarray, lo: list[float], hi: list[float],
                       district_bounds: tuple[float, float, float, float]) -> None:
    """Both values are valid degrees, but the area (lower-left ``lo``, upper-right ``hi`` corner) only makes
    sense with x and y swapped."""
    minx, miny, maxx, maxy = district_bounds
    (x_min, y_min), (x_max, y_max) = lo, hi
    near = x_max >= minx - 1 and x_min <= maxx + 1 and y_max >= miny - 1 and y_min <= maxy + 1
    near_swapped = y_max >= minx - 1 and y_min <= maxx + 1 and x_max >= miny - 1 and x_min <= maxy + 1
    if not near and near_swapped:
        raise CRSError(f"coordinates look like (lat, lng) instead of (lng, lat): e.g. {tuple(coords[0])}. "
                       f"GeoJSON and shapely put longitude first; swap the two values.")


def _outside_reason(geom: BaseGeometry, district: BaseGeometry, from_gcj02: bool, *, touches: bool = False) -> str:
    from twin.crs import geometry_to_metric

    b = tuple(round(v, 5) for v in geom.bounds)
    if touches:
        return (f"the area {b} only touches Chancheng District's boundary (no shared area); nothing to "
                f"summarize.")
    gap_km = geometry_to_metric(geom).distance(geometry_to_metric(district)) / 1000
    msg = (f"the area (bounds {b}) lies entirely outside Chancheng District, {gap_km:.2f} km from its boundary; "
           f"the result would be empty.")
    if gap_km < 2 and not from_gcj02:
        msg += " If the coordinates come from Amap/Tencent (GCJ-02), pass from_gcj02=True (CLI: --from-gcj02)."
    return msg
