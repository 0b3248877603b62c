"""Request bodies parsed by the one JSON module (:func:`twin.encoding.loads_request`, orjson) instead of the standard
library's ``json``: a route class for routers whose endpoints take JSON bodies (GeoJSON lassos on the hot path).

A malformed body still gets FastAPI's 422 (``orjson.JSONDecodeError`` is a ``json.JSONDecodeError``).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from twin.encoding import loads_request

__all__ = ["JSONRoute"]


class _JSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads_request(await self.body())
        return self._json


class JSONRoute(APIRoute):
    """An :class:`APIRoute` whose request JSON is parsed with :func:`twin.encoding.loads_request`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            return await handler(_JSONRequest(request.scope, request.receive))

        return route_handler
