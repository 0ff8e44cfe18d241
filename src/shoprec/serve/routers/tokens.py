"""POST /v1/tokens: the shop's backend exchanges its key for a token a browser may hold.

A shopper token reads recommendations and sends events for its one shopper (and reads the
catalogue); a dashboard token reads the aggregate figures. Neither can read another shopper's
data, create keys, export or erase. See `shoprec.serve.tokens` for what a token holds."""

from __future__ import annotations

import secrets

from fastapi import APIRouter

from shoprec.serve.auth import Principal
from shoprec.serve.http_errors import ERROR_RESPONSES, ApiError
from shoprec.serve.schemas import DashboardTokenRequest, SessionTokenRequest, TokenOut, TokenRequest
from shoprec.serve.service import KeyHolder, Service, ServiceDep

router = APIRouter(prefix="/v1", tags=["keys"], responses=ERROR_RESPONSES)

SESSION_PREFIX = "session-"


def issue_token(service: Service, principal: Principal, req: TokenRequest) -> TokenOut:
    """A token for the request, with no more rights than `principal` has."""
    dashboard = isinstance(req, DashboardTokenRequest)
    roles = frozenset(["read"] if dashboard else req.roles)
    missing = sorted(r for r in roles if not principal.allows(r))
    if missing:
        raise ApiError(403, "forbidden", f"A token cannot have roles its issuing key lacks: {missing}.")
    ttl = min(req.ttl_s, service.settings.token_ttl_s)
    session_id = None
    if dashboard:
        kind, shopper = "dashboard", None
    else:
        kind = "shopper"
        if isinstance(req, SessionTokenRequest):
            raw = session_id = SESSION_PREFIX + secrets.token_hex(12)
        else:
            raw = req.shopper_id
        shopper = service.pseudonymizer.pseudonymize(raw)
    token, expires_at = service.keys.tokens.issue(kind, shopper, roles, principal.event_source, ttl)
    return TokenOut(token=token, kind=kind, roles=sorted(roles), expires_at=expires_at, session_id=session_id)


@router.post("/tokens", response_model=TokenOut, status_code=201, summary="Issue a shopper or dashboard token")
def create_token(req: TokenRequest, service: ServiceDep, principal: KeyHolder) -> TokenOut:
    """Any API key may issue tokens with the roles it holds itself; tokens cannot issue tokens.
    The token is bound to the shopper (its pseudonym: the token holds no raw id) and expires
    after `ttl_s` seconds (at most the service's `token_ttl_s`); a rotation of the pseudonym key
    ends every token issued before it."""
    return issue_token(service, principal, req)
