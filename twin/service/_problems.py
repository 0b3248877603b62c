"""RFC 7807 ``application/problem+json`` bodies and the HTTP status of every exception.

Twin errors map to 4xx (validation 422, malformed JSON 400, unauthenticated 401, permission 403, not found 404,
conflict 409, twin not built 503); anything unexpected is a 500 without internals.
"""

from __future__ import annotations

from collections.abc import Mapping
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

__all__ = ["PROBLEM_MEDIA_TYPE", "PROBLEM_SCHEMA", "problem", "status_for", "title_for", "json_invalid",
           "document_problems"]

PROBLEM_MEDIA_TYPE = "application/problem+json"
_TITLES = {400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large",
           422: "Unprocessable Content"}
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "ProblemDetails",
    "description": "RFC 7807 problem details; twin errors name their class in ``title`` (e.g. ValidationError).",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "URI naming the problem kind"},
        "title": {"type": "string", "description": "error class or HTTP reason phrase"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string", "description": "what is wrong, with the value, and how to fix it"},
        "instance": {"type": "string", "description": "the request path"},
        "errors": {"type": "array", "items": {"type": "object"},
                   "description": "request validation errors (422): loc, msg, type"},
    },
    "additionalProperties": True,
}
_WHEN = {400: "Malformed JSON body", 401: "No, unknown or revoked API key", 403: "Not allowed for your role or scope",
         404: "Unknown or out-of-scope resource (or version)", 409: "Conflict: stale version or invalid transition",
         413: "Request body too large", 422: "Invalid input (the detail names the parameter, limit and value)",
         500: "Unexpected error (no internals)", 503: "The twin is not built"}


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


def problem(status: int, title: str, detail: str, instance: str = "", *, headers: Mapping[str, str] | None = None,
            **extra: Any) -> JSONResponse:
    """An RFC 7807 problem response (401s carry ``WWW-Authenticate: Bearer``).

    Parameters
    ----------
    status, title, detail, instance
        The RFC 7807 members; ``instance`` is the request path.
    headers
        Response headers (e.g. ``Allow`` of a 405).
    **extra
        Further members (e.g. ``state`` and ``allowed_actions`` of an invalid incident transition).
    """
    body = {"type": f"https://chancheng-twin.invalid/problems/{title.lower().replace(' ', '-')}",
            "title": title, "status": status, "detail": detail, "instance": instance, **extra}
    h = dict(headers or {})
    if status == 401:
        h.setdefault("WWW-Authenticate", 'Bearer realm="twin"')
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=h or None)


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the error responses to an OpenAPI ``schema`` (in place; returned).

    Every operation documents 500, and 422 when it takes input; keyed operations (an ``Authorization`` /
    ``X-API-Key`` header parameter) also 401, 403 and 404, operations with a body 400 and 413, keyed POSTs 409 —
    all ``application/problem+json`` (:data:`PROBLEM_SCHEMA`, component ``ProblemDetails``). FastAPI's own 422
    (``HTTPValidationError``, ``application/json``) is replaced: the service answers it as a problem. The two key
    styles are declared as security schemes.
    """
    comps = schema.setdefault("components", {})
    comps.setdefault("schemas", {})["ProblemDetails"] = PROBLEM_SCHEMA
    comps.setdefault("securitySchemes", {}).update({
        "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <API key>"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}})
    for ops in schema.get("paths", {}).values():
        for method, op in ops.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            names = {str(p.get("name", "")).lower() for p in op.get("parameters", ()) if p.get("in") == "header"}
            keyed = bool(names & {"authorization", "x-api-key"})
            codes = [500]
            if op.get("parameters") or "requestBody" in op:
                codes.append(422)
            if keyed:
                codes += [401, 403, 404]
                op["security"] = [{"bearer": []}, {"apiKey": []}]
            if "requestBody" in op:
                codes += [400, 413]
            if method == "post" and keyed:
                codes.append(409)
            for c in sorted(codes):
                entry: dict[str, Any] = {"description": _WHEN[c], "content": {PROBLEM_MEDIA_TYPE: {
                    "schema": {"$ref": "#/components/schemas/ProblemDetails"}}}}
                if c == 401:
                    entry["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"},
                                                             "description": 'Bearer realm="twin"'}}
                op["responses"][str(c)] = entry
    for unused in ("HTTPValidationError", "ValidationError"):
        comps["schemas"].pop(unused, None)
    return schema
