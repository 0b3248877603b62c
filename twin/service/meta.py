"""``GET /health`` (no key) and ``GET /me`` (the caller's role and scope)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from twin.service._responses import json_response
from twin.service._state import service
from twin.service.deps import Audited

__all__ = ["router"]

router = APIRouter(tags=["service"])


@router.get("/health", summary="Liveness (no key needed)")
def health(request: Request) -> Response:
    """Whether the process is up, whether the twin is loaded, and the store's SQL dialect."""
    svc = service(request)
    return json_response({"status": "ok", "twin_loaded": svc.twins.loaded, "store": svc.store.dialect})


@router.get("/me", summary="The caller's role and scope")
def me(a: Audited) -> Response:
    """The authenticated user, role, scope and rights."""
    r = a.role
    return json_response({"user": r.user, "role": r.name, "scope_level": r.scope_level, "scope_codes": r.scope_codes,
                          "can_see_records": r.can_see_records, "can_edit": r.can_edit, "k": r.k})
