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
* more than :data:`MAX_VERTICES` positions are rejected (simplify the lasso first);
* coordinates that look projected (|x| > 180 or |y| > 90, e.g. EPSG:4547 metres) or (lat, lng)-swapped
  are rejected with :class:`twin.errors.CRSError`;
* empty or zero-area polygons are rejected;
* self-intersecting ("bow-tie") polygons are **repaired** with :func:`shapely.make_valid` and a warning says so
  (a hand-drawn lasso often crosses itself; the repaired area is the union of its loops);
* an area entirely outside the district raises :class:`twin.errors.OutsideDistrictError` with the distance and a
  GCJ-02 hint when it is close; an area partly outside is clipped to the district and a warning says how much.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias, runtime_checkable

import numpy as np
import pyproj
import shapely
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry

from twin.crs import STORAGE_CRS, area_km2, gcj02_to_wgs84
from twin.errors import CRSError, OutsideDistrictError, ValidationError
from twin.geography import district_boundary

__all__ = ["ParsedArea", "AreaLike", "SupportsGeoInterface", "parse_area", "area_geometry", "MAX_VERTICES",
           "MIN_AREA_M2"]

MAX_VERTICES = 20_000
"""Most positions accepted in one area (a detailed community outline has a few thousand)."""
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
    max_vertices
        Reject areas with more positions than this.

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
    geom = _to_geometry(area, max_vertices=max_vertices)
    coords = _checked_coordinates(geom, max_vertices)
    x_min, y_min, x_max, y_max = geom.bounds
    lo, hi = [x_min, y_min], [x_max, y_max]
    if max(-lo[0], hi[0]) > 180 or max(-lo[1], hi[1]) > 90:
        _check_degrees(coords)
    if from_gcj02:
        geom = shapely.transform(geom, lambda c: np.column_stack(gcj02_to_wgs84(c[:, 0], c[:, 1])))
        warnings.append("converted from GCJ-02 (Amap) to WGS84.")
    dist = district if district is not None else district_boundary()
    _check_not_swapped(coords, lo, hi, dist.bounds)
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


def _checked_coordinates(geom: BaseGeometry, max_vertices: int) -> np.ndarray:
    """The (n, 2) coordinates of a non-empty area with at most ``max_vertices`` finite positions."""
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
    """A valid area: invalid (e.g. self-intersecting) input repaired with make_valid, noted in ``warnings``."""
    if geom.is_valid:
        return geom, False
    reason = shapely.is_valid_reason(geom)
    fixed = _polygonal_part(shapely.make_valid(geom))
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


# --- input → shapely -------------------------------------------------------------------------------------------

def area_geometry(area: AreaLike, *, max_vertices: int = MAX_VERTICES) -> BaseGeometry:
    """The drawn area as a shapely geometry, its GeoJSON structure checked (the first step of :func:`parse_area`).

    Only malformed or non-areal input is rejected here; :func:`parse_area` of the result applies the remaining
    rules and gives the same answer as :func:`parse_area` of ``area``.

    Raises
    ------
    ValidationError
        Malformed GeoJSON, unclosed rings, a Point/LineString, too many positions.
    """
    return _to_geometry(area, max_vertices=max_vertices)


def _to_geometry(area: AreaLike, *, max_vertices: int) -> BaseGeometry:
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
    n_pos = 0
    parts: list[BaseGeometry] = []
    for g, where in geoms:
        n_pos += _check_geojson_geometry(g, where)
        if n_pos > max_vertices:
            raise ValidationError(f"the area has more than {max_vertices:,} vertices; simplify it first "
                                  f"(e.g. shapely.simplify(geom, 1e-5), about 1 m).")
        try:
            parts.append(shape(g))
        except Exception as e:  # shapely raises assorted errors for odd nesting
            raise ValidationError(f"malformed GeoJSON {where}: {e}.") from e
    if len(parts) == 1:
        return parts[0]
    polys = [p for g in parts for p in shapely.get_parts(g)]
    return MultiPolygon(polys) if all(isinstance(p, Polygon) for p in polys) else shapely.union_all(polys)


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


def _check_geojson_geometry(g: Mapping[str, Any], where: str) -> int:
    """Validate nesting, numbers and ring closure of a (Multi)Polygon mapping (lists or tuples, as
    ``shapely.geometry.mapping`` gives); return its number of positions."""
    coords = g.get("coordinates")
    if not isinstance(coords, _SEQ):
        raise ValidationError(f"malformed GeoJSON: {where} {g['type']} has no 'coordinates' list.")
    polys = coords if g["type"] == "MultiPolygon" else [coords]
    n = 0
    for pi, rings in enumerate(polys):
        if not isinstance(rings, _SEQ) or not rings:
            raise ValidationError(f"malformed GeoJSON: {where} polygon {pi} has no rings.")
        for ri, ring in enumerate(rings):
            label = f"{where} polygon {pi} ring {ri}"
            if not isinstance(ring, _SEQ):
                raise ValidationError(f"malformed GeoJSON: {label} is not a list of positions.")
            for pos in ring:
                if (not isinstance(pos, _SEQ) or len(pos) not in (2, 3)
                        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pos)):
                    raise ValidationError(f"malformed GeoJSON: {label} has position {pos!r}; positions are "
                                          f"[lng, lat] number pairs.")
                if not all(math.isfinite(v) for v in pos):
                    raise ValidationError(f"the area has a NaN or infinite coordinate {pos!r} in {label}.")
            if len(ring) < 4:
                raise ValidationError(f"{label} has {len(ring)} positions; a closed ring needs at least 4 "
                                      f"(three corners and the first repeated at the end).")
            if tuple(ring[0][:2]) != tuple(ring[-1][:2]):
                raise ValidationError(f"{label} is not closed: it starts at {ring[0]} but ends at {ring[-1]}; "
                                      f"repeat the first position at the end.")
            n += len(ring)
    return n


def _polygonal_or_raise(geom: BaseGeometry, what: str) -> BaseGeometry:
    if isinstance(geom, (Polygon, MultiPolygon)):
        return geom
    if geom.geom_type == "GeometryCollection":
        parts = shapely.get_parts(geom)
        if len(parts) and all(isinstance(p, (Polygon, MultiPolygon)) for p in parts):
            return shapely.union_all(parts)
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
        if ((np.abs(y) > 90) & (np.abs(y) <= 180) & (np.abs(x) <= 90)).all():
            raise CRSError(f"coordinates look like (lat, lng) instead of (lng, lat): e.g. {tuple(coords[0])}. "
                           f"GeoJSON and shapely put longitude first; swap the two values.")
        raise CRSError(f"coordinates look projected (metres), not WGS84 degrees: e.g. {tuple(coords[0])}. "
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
