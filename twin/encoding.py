"""The one JSON encoder (orjson): numpy scalars and arrays, pandas NA / Timestamps, dates, shapely geometries.

Every JSON document that leaves the core — HTTP responses, CLI output, audit payloads, app downloads — is written by
:func:`dumps`; :func:`to_jsonable` gives the same values as plain Python objects. ``NaN`` and ``pd.NA`` become
``null`` (a suppressed count is ``null``, never ``0``). Geometry is GeoJSON (WGS84, EPSG:4326).

>>> dumps({"residents": np.int64(3), "share": np.float32(0.5), "hidden": pd.NA})
b'{"residents":3,"share":0.5,"hidden":null}'
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import numpy as np
import orjson
import pandas as pd
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

__all__ = ["dumps", "loads", "loads_request", "to_jsonable"]

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _default(obj: Any) -> Any:
    """Values orjson does not know natively (it handles numpy arrays of plain dtypes itself)."""
    if obj is pd.NA or obj is pd.NaT or obj is None:
        return None
    if isinstance(obj, np.generic):
        v = obj.item()
        return None if isinstance(v, float) and not math.isfinite(v) else v
    if isinstance(obj, pd.Timestamp):
        return obj.isoformat()
    if isinstance(obj, BaseGeometry):
        return mapping(obj)
    if isinstance(obj, np.ndarray):  # object / datetime arrays orjson declines
        return [to_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (pd.Series, pd.Index)):
        return [to_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, (dt.timedelta,)):
        return obj.total_seconds()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


def dumps(obj: Any, *, sort_keys: bool = False) -> bytes:
    """``obj`` as compact UTF-8 JSON bytes (non-finite floats → ``null``)."""
    opts = _OPTIONS | (orjson.OPT_SORT_KEYS if sort_keys else 0)
    return orjson.dumps(obj, default=_default, option=opts)  # orjson writes NaN/inf (also in arrays) as null


def loads(data: bytes | str) -> Any:
    """Parse JSON (bytes or str)."""
    return orjson.loads(data)


def loads_request(data: bytes | str) -> Any:
    """Parse a request body: :func:`loads`, except that a document orjson refuses only for an integer wider than
    64 bits is read by the standard library (exact Python ints), so validation can name the offending value
    (e.g. a coordinate) instead of a bare decode error. Malformed JSON raises ``json.JSONDecodeError``."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def to_jsonable(obj: Any) -> Any:
    """``obj`` as plain Python values (what :func:`dumps` writes, parsed back)."""
    return orjson.loads(dumps(obj))
