"""JSON and GeoJSON responses written by the one encoder, :func:`twin.encoding.dumps`."""

from __future__ import annotations

from typing import Any

from fastapi.responses import Response

from twin.encoding import dumps

__all__ = ["GEOJSON_MEDIA_TYPE", "json_response", "geojson_response"]

GEOJSON_MEDIA_TYPE = "application/geo+json"


def json_response(obj: Any, status: int = 200) -> Response:
    """``obj`` as an ``application/json`` response (numpy values plain, NaN and ``pd.NA`` → ``null``)."""
    return Response(dumps(obj), status_code=status, media_type="application/json")


def geojson_response(body: bytes | dict[str, Any]) -> Response:
    """A GeoJSON (WGS84) response from an already encoded body or a FeatureCollection dict."""
    return Response(body if isinstance(body, bytes) else dumps(body), media_type=GEOJSON_MEDIA_TYPE)
