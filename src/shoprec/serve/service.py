"""Everything one running service holds: settings, store, engine, keys, limits and metrics.

Routers reach it through `get_service(request)`; nothing in the package is global, so several
services (one per test, say) live side by side in one process.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shoprec.errors import ConfigError, UnknownIdError
from shoprec.privacy.pseudonym import Pseudonymizer
from shoprec.serve.auth import KeyRing, Principal, RateLimiter
from shoprec.serve.engine import ServingEngine
from shoprec.serve.http_errors import ApiError
from shoprec.serve.settings import ServeSettings
from shoprec.serve.storage import Store

__all__ = ["Admin", "AnyReader", "DashboardReader", "Ingester", "KeyHolder", "MeIngester", "MeReader", "Metrics", "Reader", "Service", "ServiceDep", "ShopperIngester",
           "ShopperReader", "bound_shopper", "credential", "get_service", "reject_unknown_query", "require",
           "unauthorized"]

T = TypeVar("T")

EXPERIMENT_REFRESH_S = 5.0  # how stale a worker's view of the running experiment may be

API_KEY_HEADER = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="An API key (`sr_<id>_<secret>`); `Authorization: Bearer <key>` works too.",
)


class Metrics:
    """Prometheus metrics of one service, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("shoprec_http_requests", "HTTP requests", ["route", "method", "status"], registry=r)
        self.latency = Histogram(
            "shoprec_http_request_seconds", "Request latency", ["route"], registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.events = Counter("shoprec_events", "Events received", ["outcome"], registry=r)
        self.recommendations = Counter("shoprec_recommendations", "Slates served", ["kind"], registry=r)
        self.impressions = Counter("shoprec_impressions", "Items shown", ["explored"], registry=r)
        self.served_path = Counter("shoprec_served_path", "Slates by scoring path (model, embedding when the "
                                   "latency budget was short, popularity)", ["path"], registry=r)
        self.reloads = Counter("shoprec_model_reloads", "Model reloads", ["outcome"], registry=r)
        self.catalogue_items = Gauge("shoprec_catalogue_items", "Items in the catalogue", registry=r)
        self.model_loaded = Gauge("shoprec_model_loaded", "1 when a model is loaded", registry=r)


@dataclass
class Service:
    """The state behind one app."""

    settings: ServeSettings
    store: Store
    engine: ServingEngine
    keys: KeyRing
    limiter: RateLimiter
    pseudonymizer: Pseudonymizer
    metrics: Metrics = field(default_factory=Metrics)
    sample_shoppers: list[str] = field(default_factory=list)
    learner: Any = None  # the online learning worker (`shoprec.serve.online.OnlineLearner`)
    _catalogue_lock: threading.Lock = field(default_factory=threading.Lock)
    _experiment_cache: tuple[float, dict[str, Any] | None] | None = None
    _slate_limiter: anyio.CapacityLimiter | None = None

    async def run_slate(self, work: Callable[[float], T]) -> T:
        """Run a slate's blocking work on one of `settings.slate_threads` threads (others wait
        their turn); `work` gets the moment the request arrived on the load gauge's clock, so
        that the latency budget counts the time it waited."""
        if self._slate_limiter is None:  # made in the running event loop, on first use
            self._slate_limiter = anyio.CapacityLimiter(self.settings.slate_threads)
        return await anyio.to_thread.run_sync(work, self.engine.load.now(), limiter=self._slate_limiter)

    def refresh_catalogue(self) -> None:
        """Re-read the catalogue into the engine (after a write); items the served model does not
        know get vectors from their text on the online learner's thread, seconds later."""
        with self._catalogue_lock:
            self.engine.set_catalogue(self.store.all_items())
            self.metrics.catalogue_items.set(len(self.engine.catalogue))
        view = self.engine.model_view
        if self.learner is not None and view is not None and any(
                i not in view.position for i in self.engine.catalogue.ids.tolist()):
            self.learner.submit("grow")

    def match_categories(self, wanted: list[str]) -> list[str]:
        """The catalogue's own spelling of each wanted category, matched case-insensitively
        (`bag` finds `Bag`); UnknownIdError (404) listing some known ones when none matches."""
        known: dict[str, list[str]] = {}
        for name in self.engine.catalogue.cat_code:
            known.setdefault(name.casefold(), []).append(name)
        matched = [name for w in wanted for name in known.get(w.casefold(), [])]
        if not matched:
            sample = sorted(n for names in known.values() for n in names if n)[:20]
            raise UnknownIdError(
                f"No catalogue category matches {', '.join(repr(w[:40]) for w in wanted[:5])} (compared "
                f"case-insensitively). Known categories include: {', '.join(repr(n) for n in sample) or 'none'}.")
        return list(dict.fromkeys(matched))

    def resolve_model_path(self, relative: str | None) -> Path:
        """The model file a reload may load: inside the model directory, and existing."""
        if relative is None:
            if not self.settings.model_path:
                raise UnknownIdError("No model path given and none configured (--model): nothing to reload.")
            return Path(self.settings.model_path).expanduser().resolve()
        root = self.settings.models_root
        if root is None:
            raise UnknownIdError("Reloading by path needs a model directory (--model-dir or --model).")
        path = (root / relative).resolve()
        if root not in path.parents:
            raise ConfigError(f"The model path must lie inside the model directory. Got {relative!r}.")
        if not path.is_file():
            raise UnknownIdError(f"No model file {relative!r} in the model directory.")
        return path

    def status(self) -> dict[str, Any]:
        out = self.engine.status()
        learner = self.learner
        out["online_learning"] = {
            "every_s": learner.every_s if learner else 0, "running": learner.running if learner else None,
            "last": learner.last if learner else None,
        }
        return out

    def log(self, message: str) -> None:
        logging.getLogger("shoprec.serve").warning(message)

    # ---- A/B experiments --------------------------------------------------------------------------
    def running_experiment(self) -> dict[str, Any] | None:
        """The experiment running now, read from the database at most every few seconds (so
        every worker process sees a start or a stop within that time)."""
        now = time.monotonic()
        cached = self._experiment_cache
        if cached is None or now - cached[0] > EXPERIMENT_REFRESH_S:
            cached = self._experiment_cache = (now, self.store.running_experiment())
        return cached[1]

    def forget_experiment_cache(self) -> None:
        self._experiment_cache = None

    @staticmethod
    def assign_variant(experiment: dict[str, Any], shopper: str) -> dict[str, Any]:
        """The shopper's variant: a hash of experiment id and pseudonym, uniform in [0, 1), cut
        at the variants' cumulative shares. Fixed for the experiment, independent across them."""
        digest = hashlib.sha256(f"{experiment['experiment_id']}\x00{shopper}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        edge = 0.0
        for variant in experiment["variants"]:
            edge += variant["share"]
            if u < edge:
                return variant
        return experiment["variants"][-1]  # shares sum to 1 up to rounding

    # ---- privacy choices and erasure ------------------------------------------------------------
    @staticmethod
    def tombstone_digests(names: list[str]) -> list[str]:
        """What a tombstone stores for each pseudonym: a hash of it (pseudonyms are keyed HMACs,
        so the hash reveals nothing more), stable across pseudonym-key rotations."""
        return [hashlib.sha256(b"shoprec tombstone\x00" + n.encode("utf-8")).hexdigest() for n in names]

    def privacy_of(self, names: list[str]) -> tuple[str, bool]:
        """(choice, erased) of the shopper with these pseudonyms (current key first)."""
        return self.store.shopper_privacy(names, self.tombstone_digests(names))

    def erase(self, names: list[str]) -> tuple[int, int, int]:
        """Everything about the shopper, everywhere the service keeps it: stored rows (and SQLite's
        WAL), the per-shopper state of every model file in the model directory and of the served
        model in memory; a tombstone stops later logging. Returns (events, impressions, model
        files changed)."""
        n_events, n_impressions = self.store.erase_shopper(names, self.tombstone_digests(names))
        return n_events, n_impressions, self.forget_in_models(names)

    def forget_in_models(self, names: list[str]) -> int:
        """Remove the shopper's per-shopper state from the model files the service serves or
        wrote, and serve the edited model. Other worker processes load it within
        `follow_retrains_s` (the edit is recorded as a swapped run, trigger "erase")."""
        import numpy as np

        from shoprec.privacy.erasure import forget_in_model, forget_in_model_file

        view = self.engine.model_view
        root = self.settings.models_root
        files = set(root.rglob("*.npz")) if root is not None and root.is_dir() else set()
        if view is not None and view.path:
            files.add(Path(view.path).resolve())
        changed = sum(forget_in_model_file(f, names).users_removed > 0 for f in sorted(files))
        if view is None or not np.isin(view.model.users_.ids, np.asarray(names, dtype=str)).any():
            return changed
        if view.path:
            self.serve_model(view.path)  # the file was edited above
            run = self.store.start_retrain("erase")
            self.store.finish_retrain(run, status="swapped", model_version=self.engine.model_view.version,
                                      model_path=str(view.path), message="a shopper was erased from the model")
        else:  # a model served from memory (tests, an embedding application)
            self.engine.set_model(forget_in_model(view.model, names), info=view.info)
        return changed

    # ---- the served model and its exploration learner ----------------------------------------
    def serve_model(self, model_or_path) -> None:
        """Serve a fitted model (or the model file at a path), then rebuild the explorer's shared
        statistics from the stored feedback, as they stood before a restart or reload."""
        check = self._check_private if self.settings.private_models_only else None
        if isinstance(model_or_path, (str, Path)):
            self.engine.load_model(model_or_path, check=check)
        else:
            if check is not None:
                check(model_or_path)
            self.engine.set_model(model_or_path)
        self.engine.replay_feedback(self.store.feedback_log())

    @staticmethod
    def _check_private(model) -> None:
        from shoprec.serve.training import trains_privately

        if not trains_privately(model):
            raise ConfigError(f"This service serves only differentially private models (private_models_only), "
                              f"and the {model.name!r} model was trained without differential privacy. Train "
                              "one with `shoprec train --model dp-... --epsilon E`.")

    def shopper_state(self, names: list[str], stored: dict[str, Any] | None = None):
        """(state, space) stored for a shopper under any of their pseudonyms, or (None, None).
        stored: the state row just written for names[0] (by `resolve_skips`): no read then."""
        from shoprec.explore.online import unpack_state

        row = stored if stored is not None else self.store.shopper_state(names)
        if row is None:
            return None, None
        return unpack_state(row["state"], int(row["dim"])), row["space"]

    def feedback_hook(self, history_limit: int | None = None):
        """What the store calls, inside the transaction that stores a click or resolves skips,
        to turn a shopper's stored state and the shown items into their next state."""
        from shoprec.explore.online import pack_state, unpack_state

        limit = history_limit or self.settings.history_limit

        def hook(shopper, row, shown, reward):
            state = None if row is None else unpack_state(row["state"], int(row["dim"]))
            history = [] if row is not None else self.store.history([shopper], limit)[0]
            new, space = self.engine.learn(state, None if row is None else row["space"], history, shown, reward)
            return {"space": space, "dim": int(new.theta.shape[0]), "state": pack_state(new),
                    "n_feedback": int(new.n_feedback)}

        return hook


async def get_service(request: Request) -> Service:
    return request.app.state.service


async def reject_unknown_query(request: Request) -> None:
    """Strict query strings: a parameter the operation does not declare is a 422, as an
    unknown body field is (a typo such as `?limt=5` must not be silently ignored)."""
    if not request.query_params:
        return
    route = request.scope.get("route")
    allowed = getattr(route, "_query_names", None)
    if allowed is None:
        from fastapi.dependencies.utils import get_flat_dependant

        allowed = frozenset(p.alias for p in get_flat_dependant(route.dependant).query_params)
        route._query_names = allowed  # computed once per route
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        names = ", ".join(repr(n[:40]) for n in unknown[:5])
        raise ApiError(422, "validation_error", f"query: unknown parameters {names}; "
                                                f"allowed are {sorted(allowed)}")


def credential(headers) -> str | None:
    """The presented key or token: `X-API-Key`, else `Authorization: Bearer ...`."""
    key = headers.get("x-api-key")
    if key:
        return key
    auth = headers.get("authorization", "")
    if auth[:7].lower() != "bearer ":
        return None
    return auth[7:].strip() or None


def unauthorized() -> ApiError:
    return ApiError(401, "unauthorized", "A valid API key or token is required (header X-API-Key, or "
                                         "Authorization: Bearer).", headers={"WWW-Authenticate": "Bearer"})


def require(role: str | None, *, shopper_tokens: bool = False, dashboard_tokens: bool = False,
            only_shopper_tokens: bool = False):
    """A dependency that admits a request whose key has `role` (None: any API key), within the
    key's rate limit.

    shopper_tokens / dashboard_tokens: whether a shopper token (bound to one shopper: the
    endpoint checks the binding) or a dashboard token may call the endpoint at all.
    only_shopper_tokens: the /v1/me endpoints, which act on the token's shopper.
    """

    # async: cheap checks run on the event loop instead of hopping to the thread pool.
    async def dependency(request: Request, key: str | None = Security(API_KEY_HEADER)) -> Principal:
        service = request.app.state.service
        # The edge middleware authenticated before the body was read; this is the fallback.
        principal = getattr(request.state, "principal", None) or service.keys.authenticate(credential(request.headers))
        if principal is None:
            raise unauthorized()
        wait = service.limiter.take(principal.key_id)
        if wait > 0:
            raise ApiError(429, "rate_limited", f"Rate limit exceeded for {principal.name!r}; retry later.",
                           headers={"Retry-After": str(max(1, math.ceil(wait)))})
        if only_shopper_tokens and principal.kind != "shopper":
            raise ApiError(403, "forbidden", "The /v1/me endpoints act on the shopper a token is bound to; "
                                             "with an API key, name the shopper (shopper_id) on /v1/events or "
                                             "/v1/recommendations.")
        if principal.kind == "shopper" and not (shopper_tokens or only_shopper_tokens):
            raise ApiError(403, "forbidden", "A shopper token reads recommendations, sends events and reads the "
                                             "catalogue for its own shopper only.")
        if principal.kind == "dashboard" and not dashboard_tokens:
            raise ApiError(403, "forbidden", "A dashboard token reads the aggregate figures only "
                                             "(stats, model status, online learning runs).")
        if role is not None and not principal.allows(role):
            raise ApiError(403, "forbidden", f"This credential lacks the {role!r} role.")
        return principal

    dependency.__name__ = f"require_{role or 'key'}"
    return dependency


def bound_shopper(service: Service, principal: Principal, shopper_id: str) -> list[str]:
    """The pseudonyms a request may act on for `shopper_id` (current key first). A shopper token
    naming another shopper is refused (403), never silently redirected."""
    names = service.pseudonymizer.candidates(shopper_id)
    if principal.kind == "shopper" and principal.shopper not in names:
        raise ApiError(403, "forbidden", "This shopper token is bound to another shopper.")
    return names


# Dependencies as annotated types (FastAPI's recommended form): `service: ServiceDep, _: Reader`.
ServiceDep = Annotated[Service, Depends(get_service)]
Reader = Annotated[Principal, Depends(require("read"))]
Ingester = Annotated[Principal, Depends(require("ingest"))]
Admin = Annotated[Principal, Depends(require("admin"))]
ShopperReader = Annotated[Principal, Depends(require("read", shopper_tokens=True))]
ShopperIngester = Annotated[Principal, Depends(require("ingest", shopper_tokens=True))]
DashboardReader = Annotated[Principal, Depends(require("read", dashboard_tokens=True))]
KeyHolder = Annotated[Principal, Depends(require(None))]
MeReader = Annotated[Principal, Depends(require("read", only_shopper_tokens=True))]
MeIngester = Annotated[Principal, Depends(require("ingest", only_shopper_tokens=True))]
AnyReader = Annotated[Principal, Depends(require("read", shopper_tokens=True, dashboard_tokens=True))]
