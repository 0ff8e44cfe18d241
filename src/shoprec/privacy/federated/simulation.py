"""Run the federated apps on one machine with Flower's simulation engine (Ray).

`run_federated` writes each client's partition to a temporary folder (the stand-in for the
shoppers' devices or the shop's regional stores), starts `num_clients` virtual SuperNodes running
the ClientApp and the ServerApp in this process, and returns the round log. Deployment across
machines runs the very same apps with `flower-superlink`, `flower-supernode` and `flwr run`
(docs/privacy.md).
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shoprec.data.split import Split
from shoprec.errors import ConfigError, check_float, check_int, require_extra
from shoprec.privacy.federated.task import FedConfig, write_partitions

# What each ClientApp is given by the simulation (local-epochs comes with each round).
CLIENT_SETTINGS = ("data-dir", "factors", "lr", "batch-size", "max-items-per-user", "seed", "optimizer",
                   "reconstruct-steps", "reconstruct-lr")


@dataclass
class FederatedResult:
    """Per-round federated metrics, the final item parameters and the DP settings spent."""

    rounds: list[dict[str, Any]]
    item_params: list[np.ndarray]
    epsilon: float
    delta: float
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def best(self, metric: str = "NDCG@10") -> float:
        values = [r[metric] for r in self.rounds if r.get(metric) is not None]
        return max(values) if values else math.nan

    def rounds_to_reach(self, target: float, metric: str = "NDCG@10") -> int | None:
        """First round whose metric is at least `target`, or None."""
        for r in self.rounds:
            if r.get(metric) is not None and r[metric] >= target:
                return int(r["round"])
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "rounds": self.rounds,
            "epsilon": "inf" if math.isinf(self.epsilon) else self.epsilon,
            "delta": self.delta,
            "settings": self.settings,
            "seconds": self.seconds,
        }


def run_federated(
    split: Split,
    *,
    num_clients: int = 10,
    rounds: int = 10,
    config: FedConfig | None = None,
    local_epochs: int = 1,
    fraction_fit: float = 1.0,
    fraction_evaluate: float = 1.0,
    dp: str = "none",
    noise_multiplier: float = 0.0,
    clipping_norm: float = 1.0,
    secagg: bool = False,
    seed: int = 0,
    num_cpus: int | None = None,
    workdir: str | None = None,
    quiet: bool = True,
) -> FederatedResult:
    """Federated training of the shared item parameters over `num_clients` simulated clients.

    split: a leave-one-out split; its training shoppers are dealt at random to the clients, and
        each client evaluates NDCG@10 / HR@10 on its shoppers' test items every round.
    fraction_evaluate: share of clients that evaluate each round (0: none; then the result's
        rounds carry losses only, and the caller evaluates `item_params` itself).
    dp: "none", "server" or "client" (fixed clipping, Flower's wrappers); secagg: SecAgg+.
    num_cpus: CPUs for Ray (default: all, at most os.cpu_count()); each client uses one.
    """
    with warnings.catch_warnings():  # Flower's import: see client_app.py
        warnings.filterwarnings("ignore", message=r".*click.*deprecated", category=DeprecationWarning)
        require_extra("flwr", "federated")
    check_int("num_clients", num_clients, 1, 100_000, "run_federated")
    check_int("rounds", rounds, 1, 100_000, "run_federated")
    check_int("local_epochs", local_epochs, 1, 10_000, "run_federated")
    check_float("fraction_fit", fraction_fit, 1e-6, 1.0, "run_federated")
    check_float("fraction_evaluate", fraction_evaluate, 0.0, 1.0, "run_federated")
    if secagg and num_clients < 2:
        raise ConfigError("SecAgg+ needs at least 2 clients.")
    config = config or FedConfig(seed=seed)
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    # Opt in to Ray's future behaviour for CPU-only actors; otherwise Ray warns at start-up.
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    from flwr.simulation import run_simulation

    from shoprec.privacy.federated.client_app import make_client_app  # imports Flower quietly
    from shoprec.privacy.federated.server_app import make_server_app

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="shoprec-fed-", dir=workdir) as tmp:
        paths = write_partitions(split, num_clients, tmp, seed=seed)
        largest = max(int(np.load(p)["indptr"].shape[0]) - 1 for p in paths)
        settings: dict[str, Any] = {
            "n-items": int(split.train.n_items),
            "num-server-rounds": int(rounds),
            "num-clients": int(num_clients),
            "fraction-fit": float(fraction_fit),
            "fraction-evaluate": float(fraction_evaluate),
            "local-epochs": int(local_epochs),
            "factors": int(config.factors),
            "lr": float(config.lr),
            "batch-size": int(config.batch_size),
            "max-items-per-user": int(config.max_items_per_user),
            "seed": int(config.seed),
            "optimizer": config.optimizer,
            "reconstruct-steps": int(config.reconstruct_steps),
            "reconstruct-lr": float(config.reconstruct_lr),
            "dp": dp,
            "noise-multiplier": float(noise_multiplier),
            "clipping-norm": float(clipping_norm),
            "secagg": bool(secagg),
            "secagg-max-weight": float(max(1000, largest)),
            "data-dir": tmp,
        }
        sink: dict[str, Any] = {}
        cpus = int(num_cpus or os.cpu_count() or 1)
        backend = {
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {"num_cpus": cpus, "num_gpus": 0, "include_dashboard": False,
                          "log_to_driver": not quiet},
        }
        flwr_logger = logging.getLogger("flwr")
        level = flwr_logger.level
        if quiet:
            flwr_logger.setLevel(logging.WARNING)
        try:
            run_simulation(
                server_app=make_server_app(settings, sink),
                client_app=make_client_app({k: settings[k] for k in CLIENT_SETTINGS}),
                num_supernodes=int(num_clients),
                backend_config=backend,
            )
        finally:
            flwr_logger.setLevel(level)
            _shutdown_ray()
    if "rounds" not in sink:
        raise ConfigError("The federated simulation ended without a result; see Flower's log above.")
    eps = sink["epsilon"]
    return FederatedResult(
        rounds=sink["rounds"],
        item_params=sink["item_params"],
        epsilon=math.inf if eps == "inf" else float(eps),
        delta=float(sink["delta"]),
        settings={k: v for k, v in settings.items() if k != "data-dir"},
        seconds=time.perf_counter() - started,
    )


def _shutdown_ray() -> None:
    """Stop the Ray processes the simulation started, so none outlives `run_federated`."""
    import gc

    try:
        import ray
    except ImportError:  # pragma: no cover - flwr[simulation] brings ray
        return
    if ray.is_initialized():
        ray.shutdown()
    gc.collect()


__all__ = ["FederatedResult", "run_federated"]
