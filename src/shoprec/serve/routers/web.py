"""The web page: storefront at /, dashboard at /dashboard, their assets under /static.

The page talks to the /v1 API like any client, and never holds an API key it was handed. In demo
mode (loopback only, Host checked) it asks `/ui/session` for a short-lived shopper token for one
of the sample shoppers or a new guest, and a dashboard token for the aggregate figures; the
sample shoppers are named by number, never by their ids. Otherwise the user pastes a key, which
the page keeps in the browser's local storage.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse

from shoprec.serve.auth import Principal
from shoprec.serve.http_errors import ApiError
from shoprec.serve.routers.tokens import issue_token
from shoprec.serve.schemas import DashboardTokenRequest, ShopperTokenRequest, UiSessionRequest
from shoprec.serve.service import ServiceDep

STATIC = Path(__file__).resolve().parents[1] / "static"
DEMO_TOKEN_TTL_S = 3600
_DEMO_ISSUER = Principal("demo-page", "demo-page", frozenset({"read", "ingest"}), source="demo-page")

router = APIRouter(include_in_schema=False)


@router.get("/")
def storefront() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/dashboard")
def dashboard() -> FileResponse:
    return FileResponse(STATIC / "dashboard.html", headers={"Cache-Control": "no-cache"})


@router.get("/ui/config")
def ui_config(service: ServiceDep) -> JSONResponse:
    """What the page needs to start: no key, and no shopper id."""
    samples = [f"Sample shopper {n + 1}" for n in range(len(service.sample_shoppers))] if service.settings.demo else []
    return JSONResponse({"demo": service.settings.demo, "sample_shoppers": samples,
                         "max_k": service.settings.max_k})


@router.post("/ui/session")
def ui_session(req: UiSessionRequest, service: ServiceDep) -> JSONResponse:
    """Demo mode only: a token for sample shopper `sample` (0-based), a new guest, or the dashboard."""
    if not service.settings.demo:
        raise ApiError(404, "not_found", "Not Found")
    if req.dashboard:
        token = issue_token(service, _DEMO_ISSUER, DashboardTokenRequest(dashboard=True, ttl_s=DEMO_TOKEN_TTL_S))
        return JSONResponse({"token": token.token, "label": "dashboard", "expires_at": token.expires_at})
    if req.sample is not None:
        if req.sample >= len(service.sample_shoppers):
            raise ApiError(404, "not_found", f"There are {len(service.sample_shoppers)} sample shoppers.")
        raw, label = service.sample_shoppers[req.sample], f"Sample shopper {req.sample + 1}"
    else:
        raw, label = "guest-" + secrets.token_hex(6), "a new guest"
    token = issue_token(service, _DEMO_ISSUER, ShopperTokenRequest(shopper_id=raw, ttl_s=DEMO_TOKEN_TTL_S))
    return JSONResponse({"token": token.token, "label": label, "expires_at": token.expires_at})
