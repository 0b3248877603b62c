"""Exception handlers: every error leaves the service as an RFC 7807 problem (see :mod:`._problems`)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from twin.errors import TwinError
from twin.service._problems import problem, status_for, title_for
from twin.service._state import service
from twin.service.deps import write_error

__all__ = ["install_handlers"]


async def _twin_error(request: Request, exc: Exception) -> JSONResponse:
    s = status_for(exc)
    return problem(s, title_for(exc, s), str(exc), request.url.path)


async def _request_invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    s = status_for(exc)
    ctx = getattr(request.state, "audit", None)
    if ctx is not None and not ctx.written:  # body errors surface after the audit dependency has exited
        await run_in_threadpool(write_error, service(request), ctx, exc)
    errs = [{"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": e.get("type")}
            for e in exc.errors()][:20]
    detail = "malformed JSON body" if s == 400 else "request does not match the API: " + "; ".join(
        f"{'.'.join(e['loc'])}: {e['msg']}" for e in errs[:5])
    return problem(s, "Bad Request" if s == 400 else "Unprocessable Content", detail, request.url.path, errors=errs)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    s = int(exc.status_code)
    return problem(s, title_for(exc, s), str(exc.detail), request.url.path, headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    return problem(500, "Internal Server Error", "an unexpected error occurred; it has been logged.",
                   request.url.path)


def install_handlers(app: FastAPI) -> None:
    """Map twin errors, request validation errors, HTTP errors and anything else to problem responses."""
    app.add_exception_handler(TwinError, _twin_error)
    app.add_exception_handler(RequestValidationError, _request_invalid)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
