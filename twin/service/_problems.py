"""RFC 7807 ``application/problem+json`` bodies and the HTTP status of every exception.

Twin errors map to 4xx (validation 422, malformed JSON 400, unauthenticated 401, permission 403, not found 404,
conflict 409, twin not built 503); anything unexpected is a 500 without internals.
"""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from twin.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDenied,
    TwinError,
    TwinNotBuiltError,
    ValidationError,
)

__all__ = ["PROBLEM_MEDIA_TYPE", "problem", "status_for", "title_for", "json_invalid"]

PROBLEM_MEDIA_TYPE = "application/problem+json"
_TITLES = {400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large",
           422: "Unprocessable Content"}


def status_for(exc: BaseException) -> int:
    """HTTP status for an exception (twin errors → 4xx; anything else 500)."""
    if isinstance(exc, AuthenticationError):
        return 401
    if isinstance(exc, PermissionDenied):
        return 403
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, TwinNotBuiltError):
        return 503
    if isinstance(exc, ValidationError):
        return 422
    if isinstance(exc, RequestValidationError):
        return 400 if json_invalid(exc) else 422
    if isinstance(exc, StarletteHTTPException):
        return int(exc.status_code)
    if isinstance(exc, TwinError):
        return 400
    return 500


def json_invalid(exc: RequestValidationError) -> bool:
    """Whether a request validation error is a malformed JSON body (400) rather than a mismatch (422)."""
    return any(e.get("type") in ("json_invalid", "json_type") for e in exc.errors())


def title_for(exc: BaseException, status: int) -> str:
    """The problem ``title``: the twin error class name, else the HTTP reason phrase."""
    if isinstance(exc, TwinError):
        return type(exc).__name__
    return _TITLES.get(status, "Internal Server Error" if status >= 500 else "HTTP Error")


def problem(status: int, title: str, detail: str, instance: str = "", **extra: Any) -> JSONResponse:
    """An RFC 7807 problem response (401s carry ``WWW-Authenticate: Bearer``).

    Parameters
    ----------
    status, title, detail, instance
        The RFC 7807 members; ``instance`` is the request path.
    **extra
        Further members (e.g. ``state`` and ``allowed_actions`` of an invalid incident transition).
    """
    body = {"type": f"https://chancheng-twin.invalid/problems/{title.lower().replace(' ', '-')}",
            "title": title, "status": status, "detail": detail, "instance": instance, **extra}
    headers = {"WWW-Authenticate": 'Bearer realm="twin"'} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)
