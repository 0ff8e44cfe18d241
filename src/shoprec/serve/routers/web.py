"""The web page: storefront at /, dashboard at /dashboard, their assets under /static.

The page talks to the /v1 API like any client. In demo mode (loopback only) it receives a key
with the read and ingest roles from /ui/config; otherwise the user pastes a key, which the page
keeps in the browser's local storage.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse

from shoprec.serve.service import ServiceDep

STATIC = Path(__file__).resolve().parents[1] / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
def storefront() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/dashboard")
def dashboard() -> FileResponse:
    return FileResponse(STATIC / "dashboard.html", headers={"Cache-Control": "no-cache"})


@router.get("/ui/config")
def ui_config(service: ServiceDep) -> JSONResponse:
    return JSONResponse({
        "demo": service.settings.demo,
        "api_key": service.demo_key,
        "sample_shoppers": service.sample_shoppers,
        "max_k": service.settings.max_k,
    })
