"""The API edge: shoprec's exceptions and bad requests become JSON errors with status codes.

Every error body has one shape, `{"error": {"code", "message", "details"?}}`. Validation details
name the field and the rule, never the value sent, so a shopper id typed into the wrong field is
not echoed back into logs or proxies.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shoprec.errors import (
    ConfigError,
    ConflictError,
    DataError,
    MissingExtraError,
    ModelFormatError,
    NotFittedError,
    ShoprecError,
    UnknownIdError,
)

__all__ = ["ERROR_RESPONSES", "ApiError", "error_responses", "install_handlers"]

log = logging.getLogger("shoprec.serve")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}

# (exception class, status, code), most specific first.
_LIBRARY = (
    (UnknownIdError, 404, "not_found"),
    (ConflictError, 409, "conflict"),
    (NotFittedError, 503, "model_not_ready"),
    (ModelFormatError, 422, "bad_model_file"),
    (MissingExtraError, 503, "missing_extra"),
    (ConfigError, 422, "invalid_parameter"),
    (DataError, 422, "invalid_data"),
    (ShoprecError, 400, "bad_request"),
)


class ApiError(StarletteHTTPException):
    """An HTTP error raised at the edge (auth, limits), with a machine-readable code."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=status, detail=message, headers=headers)
        self.code = code


def error_json(status: int, code: str, message: str, details=None, headers=None) -> JSONResponse:
    body: dict = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def install_handlers(app: FastAPI) -> None:
    """Register the exception handlers that give every error the same JSON shape."""

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", "")), "type": str(err.get("type", ""))}
            for err in exc.errors()
        ]
        if any(d["type"] == "json_invalid" for d in details):
            return error_json(400, "malformed_json", "The request body is not valid JSON.",
                              [d for d in details if d["type"] == "json_invalid"][:1])
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        where = ".".join(first["loc"])
        return error_json(422, "validation_error", f"{where}: {first['msg']}" if where else first["msg"], details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = getattr(exc, "code", None) or _CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else _CODES.get(exc.status_code, "error")
        return error_json(exc.status_code, code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(ShoprecError)
    async def _library(request: Request, exc: ShoprecError) -> JSONResponse:
        for klass, status, code in _LIBRARY:
            if isinstance(exc, klass):
                return error_json(status, code, str(exc), getattr(exc, "details", None) or None)
        return error_json(400, "bad_request", str(exc))  # pragma: no cover - ShoprecError is last

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The type and route only: a message may quote request data.
        log.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path, exc_info=exc)
        return error_json(500, "internal_error", "Internal error; the server log has the details.")


def error_responses(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI `responses` entries for the given error statuses."""
    from shoprec.serve.schemas import ErrorResponse

    text = {
        400: "Malformed request body (not UTF-8 JSON)", 401: "Missing or invalid API key", 403: "The key lacks the role",
        404: "Not found", 409: "An event id re-used with another payload (details name the differences)",
        413: "Body or batch too large", 422: "Validation error",
        429: "Rate limit exceeded (see Retry-After)", 503: "No model loaded or database down",
    }
    return {s: {"model": ErrorResponse, "description": text.get(s, "Error")} for s in statuses}


ERROR_RESPONSES = error_responses(400, 401, 403, 413, 422, 429)
