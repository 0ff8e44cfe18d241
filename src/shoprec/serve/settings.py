"""The service's configuration: one frozen dataclass, validated on construction.

Every field can come from an environment variable `SHOPREC_<FIELD IN CAPITALS>` through
`ServeSettings.from_env()`; the command line (`shoprec serve`) overrides those.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from shoprec.errors import ConfigError, check_choice, check_float, check_int

__all__ = ["ServeSettings", "default_data_dir", "default_key_file"]


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def default_data_dir() -> Path:
    """Where the embedded database and models live by default ($XDG_DATA_HOME/shoprec)."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "shoprec"


def default_key_file() -> Path:
    """Where `shoprec serve --demo` keeps its pseudonym key: apart from the data, in the config dir."""
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "shoprec" / "pseudonym.key"


@dataclass(frozen=True)
class ServeSettings:
    """Configuration of one service instance.

    database_url: SQLAlchemy URL; `sqlite:///path.db` (the embedded default, WAL mode) or
        `postgresql+psycopg://user@host:port/db`.
    model_path: the model file (.npz) served at start; None serves popularity from the log.
    model_dir: the only directory `POST /v1/model/reload` may load models from (defaults to the
        model file's directory).
    admin_key: a bootstrap key with every role (compare `shoprec serve` docs); more keys with
        narrower roles are created through `POST /v1/keys`. Held in memory only.
    max_body_bytes: requests with a larger body get 413.
    max_batch: most events or items per batch request.
    max_k: largest k a client may ask for.
    rate_limit_per_s, rate_limit_burst: token bucket per API key (0 disables the limit).
    history_limit: how many of a shopper's latest events the model reads per request.
    ann_threshold: catalogues with at least this many items use the FAISS HNSW index for
        similar items; smaller ones use exact search (see benchmarks/load.py for the switch point).
    exploration: a fixed exploration weight in [0, 1] for every request (0 = pure exploitation);
        None (the default) lets the weight rule set it per shopper and request.
    weight_rule: "fitted" (the default: per shopper, from history, uncertainty, drift and payoff
        of past exploration, `shoprec.explore.weighting`, with coefficients fitted in a store
        simulated from the bundled shop's log, `shoprec.simulation.fit`; epsilon-greedy
        exploration slots at that weight, exact propensities), "dynamic" (the same signals with
        hand-set coefficients, Thompson exploration) or "fixed" (epsilon-greedy at `epsilon`).
    weight_coefficients: the fitted rule's five logit coefficients "base,history,variance,drift,
        payoff"; empty (the default) takes those fitted on the Online Retail store
        (`shoprec.explore.weighting.FITTED_WEIGHTS`).
    epsilon: the fixed rule's exploration probability per budget slot.
    explore_budget: most exploratory slots in a slate.
    latency_budget_ms: a request whose model path would take longer than this under the current
        load (its wait for a slate thread included) is served from the cheaper embedding path,
        and says so, when that path would meet it (0: never).
    retrain_every_s: seconds between the online learning job's runs (0: only on request, through
        `POST /v1/model/retrain` or `shoprec retrain`).
    retrain_min_events: new events a run needs before it fine-tunes.
    retrain_epochs: passes over the new events per run.
    follow_retrains_s: every this many seconds, serve the model file of the newest swapped
        retrain run when it is not the served one (0: never). `shoprec serve --workers N` sets
        30, so that every worker follows the retrains of `shoprec retrain` from cron.
    diversity: default diversity in [0, 1] (0 = rank by score only).
    new_item_days: items added to the catalogue this recently count as "new".
    sqlite_synchronous: SQLite's synchronous pragma in WAL mode; NORMAL survives a crash of the
        process, FULL also a power cut, at the cost of an fsync per commit.
    metrics_public: serve /v1/metrics without a key (for a Prometheus on a private network).
    unknown_items: what an event for an item the catalogue does not hold gets: "count" (stored,
        and counted in the response's `unknown_items`) or "reject" (422 naming the items).
    allowed_hosts: comma-separated Host header values the service answers (others get 400),
        "*" for any; empty (the default) means the loopback names in demo mode and any otherwise.
        A check against DNS rebinding: a web page cannot reach a loopback service through a
        name it controls.
    max_in_flight: requests handled at once; more get 503 with Retry-After (backpressure).
    slate_threads: threads that compute slates in one worker process; more slate requests wait
        for one (and the latency budget counts them as load). A slate is mostly Python and
        holds the interpreter lock, so more threads only add contention: measured at 16
        clients on 2 cores, one thread served 80 slates/s, two 85 and forty 70 (benchmarks/load.py).
        Other requests keep their own threads. Scale out with `shoprec serve --workers N`.
    request_timeout_s: a request's head and body must arrive within this many seconds of the
        connection opening (or of the previous response), else the connection is closed.
    idle_timeout_s: a keep-alive connection with no request for this long is closed.
    token_ttl_s: the longest lifetime a shopper or dashboard token may have.
    private_models_only: serve only models trained with user-level differential privacy (a
        model without a finite-epsilon accountant record is refused at start, reload and follow).
    demo: the page gets shopper tokens for the sample shoppers and new guests from /ui/session
        (only on a loopback address, with the Host header checked).
    """

    database_url: str = ""
    model_path: str | None = None
    model_dir: str | None = None
    admin_key: str | None = field(default=None, repr=False)
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 1_048_576
    max_batch: int = 1000
    max_k: int = 100
    rate_limit_per_s: float = 200.0
    rate_limit_burst: int = 400
    history_limit: int = 200
    ann_threshold: int = 100_000
    exploration: float | None = None
    weight_rule: str = "fitted"
    weight_coefficients: str = ""
    epsilon: float = 0.1
    explore_budget: int = 3
    latency_budget_ms: float = 50.0
    retrain_every_s: float = 600.0
    retrain_min_events: int = 100
    retrain_epochs: int = 1
    follow_retrains_s: float = 0.0
    diversity: float = 0.0
    new_item_days: int = 30
    sqlite_synchronous: str = "NORMAL"
    metrics_public: bool = False
    unknown_items: str = "count"
    allowed_hosts: str = ""
    max_in_flight: int = 256
    slate_threads: int = 2
    request_timeout_s: float = 10.0
    idle_timeout_s: float = 5.0
    token_ttl_s: int = 3600
    private_models_only: bool = False
    demo: bool = False

    def __post_init__(self) -> None:
        where = "ServeSettings"
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{default_data_dir() / 'shoprec.db'}")
        if not self.database_url.startswith(("sqlite", "postgresql")):
            raise ConfigError(
                "The 'database_url' parameter of ServeSettings must be a sqlite:/// or "
                f"postgresql+psycopg:// URL. Got {self.database_url.split(':', 1)[0]!r} instead."
            )
        check_int("port", self.port, 0, 65535, where)
        check_int("max_body_bytes", self.max_body_bytes, 1024, 1 << 30, where)
        check_int("max_batch", self.max_batch, 1, 100_000, where)
        check_int("max_k", self.max_k, 1, 1000, where)
        check_float("rate_limit_per_s", self.rate_limit_per_s, 0.0, 1e6, where)
        check_int("rate_limit_burst", self.rate_limit_burst, 1, 10_000_000, where)
        check_int("history_limit", self.history_limit, 1, 10_000, where)
        check_int("ann_threshold", self.ann_threshold, 1, 1 << 40, where)
        if self.exploration is not None:
            check_float("exploration", self.exploration, 0.0, 1.0, where)
        check_choice("weight_rule", self.weight_rule, ("dynamic", "fitted", "fixed"), where)
        self.weighting()  # a malformed weight_coefficients fails here, by name
        check_float("epsilon", self.epsilon, 0.0, 1.0, where)
        check_int("explore_budget", self.explore_budget, 0, 100, where)
        check_float("latency_budget_ms", self.latency_budget_ms, 0.0, 1e6, where)
        check_float("retrain_every_s", self.retrain_every_s, 0.0, 1e9, where)
        check_float("follow_retrains_s", self.follow_retrains_s, 0.0, 1e9, where)
        check_int("retrain_min_events", self.retrain_min_events, 1, 1 << 40, where)
        check_int("retrain_epochs", self.retrain_epochs, 1, 1000, where)
        check_float("diversity", self.diversity, 0.0, 1.0, where)
        check_int("new_item_days", self.new_item_days, 0, 36_500, where)
        check_choice("sqlite_synchronous", self.sqlite_synchronous, ("NORMAL", "FULL"), where)
        check_choice("unknown_items", self.unknown_items, ("count", "reject"), where)
        check_int("max_in_flight", self.max_in_flight, 1, 1_000_000, where)
        check_int("slate_threads", self.slate_threads, 1, 256, where)
        check_float("request_timeout_s", self.request_timeout_s, 0.1, 3600.0, where)
        check_float("idle_timeout_s", self.idle_timeout_s, 0.1, 3600.0, where)
        check_int("token_ttl_s", self.token_ttl_s, 60, 7 * 24 * 3600, where)
        if self.demo and self.host not in LOOPBACK_HOSTS:
            raise ConfigError(f"Demo mode serves tokens to the page without a key, so it binds to a loopback "
                              f"address only ({', '.join(LOOPBACK_HOSTS)}). Got host {self.host!r} instead; "
                              "drop --demo to serve on another interface, with API keys.")
        if self.admin_key is not None and len(self.admin_key) < 16:
            raise ConfigError(
                f"The 'admin_key' parameter of ServeSettings must have at least 16 characters. "
                f"Got {len(self.admin_key)} instead."
            )

    def online_config(self):
        """The exploration these settings ask for (`shoprec.explore.online.OnlineConfig`)."""
        from shoprec.explore.online import OnlineConfig

        return OnlineConfig(weight_rule=self.weight_rule, epsilon=self.epsilon, explore_budget=self.explore_budget,
                            weighting=self.weighting())

    def weighting(self):
        """The fitted rule's `WeightConfig`: `weight_coefficients`, or the shipped fit."""
        from dataclasses import replace

        from shoprec.explore.weighting import COEFFICIENTS as names
        from shoprec.explore.weighting import FITTED_WEIGHTS

        text = self.weight_coefficients.strip()
        if not text:
            return FITTED_WEIGHTS
        parts = [p.strip() for p in text.split(",")]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = []
        if len(values) != len(names) or not all(-50.0 <= v <= 50.0 for v in values):
            raise ConfigError(
                "The 'weight_coefficients' parameter of ServeSettings must be five numbers in [-50, 50], "
                f"'base,history,variance,drift,payoff'. Got {self.weight_coefficients!r} instead."
            )
        return replace(FITTED_WEIGHTS, **dict(zip(names, values, strict=True)))

    @property
    def host_allow_list(self) -> tuple[str, ...] | None:
        """Host header values answered (names without port), or None for any."""
        raw = self.allowed_hosts.strip()
        if raw == "*" or (not raw and not self.demo):
            return None
        if not raw:
            return ("127.0.0.1", "localhost", "::1", "[::1]")
        return tuple(h.strip() for h in raw.split(",") if h.strip())

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def data_dir(self) -> Path | None:
        """Directory of the SQLite file (None for PostgreSQL or an in-memory database)."""
        if not self.is_sqlite:
            return None
        path = self.database_url.split(":///", 1)[-1]
        return Path(path).expanduser().resolve().parent if path and path != ":memory:" else None

    @property
    def models_root(self) -> Path | None:
        """The directory reloads may read from."""
        if self.model_dir:
            return Path(self.model_dir).expanduser().resolve()
        if self.model_path:
            return Path(self.model_path).expanduser().resolve().parent
        return None

    def with_(self, **changes) -> ServeSettings:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> ServeSettings:
        """Settings from SHOPREC_* environment variables, then `overrides` (None values ignored)."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(f"SHOPREC_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(f.name, raw, f.type)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


def _convert(name: str, raw: str, annotation: object) -> object:
    kind = str(annotation).replace(" | None", "")
    try:
        if kind == "bool":
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError
            return raw.lower() in ("1", "true", "yes")
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise ConfigError(
            f"The environment variable SHOPREC_{name.upper()} must be a {kind}. Got {raw!r} instead."
        ) from None
    return raw
