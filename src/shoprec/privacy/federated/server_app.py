"""The Flower ServerApp: FedAvg over item-side parameters, optional DP-FedAvg and SecAgg+.

Run config keys (`[tool.flwr.app.config]`, or the defaults a simulation passes):

    n-items                 catalogue size (public: the item vocabulary is product data)
    num-server-rounds       rounds (default 3)
    num-clients             SuperNodes expected (all must connect; default 2)
    fraction-fit            share of nodes sampled per round (default 1.0)
    fraction-evaluate       share of nodes that evaluate each round (default 1.0; 0: none, as
                            when the final item parameters are evaluated elsewhere)
    local-epochs            sent to the clients each round (default 1)
    factors, lr, batch-size, max-items-per-user, seed, optimizer, reconstruct-steps,
    reconstruct-lr          as FedConfig (seed also seeds the initial item parameters)
    dp                      "none", "server" (server-side fixed clipping) or "client"
                            (client-side fixed clipping via fixedclipping_mod; needed with SecAgg+)
    noise-multiplier, clipping-norm   DP-FedAvg settings
    secagg                  true: run the fit stage through Flower's SecAgg+ workflow
    secagg-max-weight       largest client weight SecAgg+ must carry (default 1000)
    result-path             where to write the round log as JSON (and the final item
                            parameters as <result-path>.npz)

With DP on, clients send equal weights (FedAvg's uniform mean), as the DP-FedAvg analysis
assumes; the reported epsilon is the RDP accountant's for the subsampled Gaussian mechanism with
sample rate fraction-fit over the rounds, at delta = 1 / num-clients ** 1.1, protecting one
client's whole data (one shopper, when each SuperNode is one shopper's device).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from shoprec.errors import ConfigError
from shoprec.privacy.federated.client_app import fed_config
from shoprec.privacy.federated.task import init_item_params

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

# Importing Flower imports typer, which uses a click helper that click 8.2 deprecates; the
# warning is about Flower's dependencies, not this code.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r".*click.*deprecated", category=DeprecationWarning)
    from flwr.app import Context
    from flwr.common import ndarrays_to_parameters
    from flwr.server import LegacyContext, ServerConfig
    from flwr.server.strategy import (
        DifferentialPrivacyClientSideFixedClipping,
        DifferentialPrivacyServerSideFixedClipping,
        FedAvg,
    )
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
    from flwr.server.workflow.constant import MAIN_PARAMS_RECORD
    from flwr.serverapp import Grid, ServerApp

DP_MODES = ("none", "server", "client")


def dp_fedavg_epsilon(noise_multiplier: float, sample_rate: float, rounds: int, delta: float) -> float:
    """RDP epsilon of `rounds` subsampled Gaussian releases (inf without noise)."""
    if noise_multiplier <= 0 or rounds <= 0:
        return math.inf if rounds > 0 else 0.0
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = [(float(noise_multiplier), float(sample_rate), int(rounds))]
    return float(acc.get_epsilon(delta))


def _weighted(metrics: list[tuple[int, dict]]) -> dict:
    total = sum(n for n, _ in metrics) or 1
    keys = {k for _, m in metrics for k in m if k != "n"}
    return {k: sum(n * float(m.get(k, 0.0)) for n, m in metrics) / total for k in sorted(keys)}


def make_server_app(defaults: dict[str, Any] | None = None, sink: dict | None = None) -> ServerApp:
    """A ServerApp with `defaults` under the run config; `sink` (a dict), when given, receives
    the results in-process (what a simulation reads back)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        cfg = {**(defaults or {}), **dict(context.run_config)}
        result = run_server(grid, context, cfg)
        if sink is not None:
            sink.update(result)
        if cfg.get("result-path"):
            path = Path(str(cfg["result-path"]))
            path.parent.mkdir(parents=True, exist_ok=True)
            params = result.pop("item_params")
            path.write_text(json.dumps(result, indent=2))
            with open(str(path) + ".npz", "wb") as fh:
                np.savez(fh, item_factors=params[0], item_bias=params[1])

    return app


def run_server(grid: Grid, context: Context, cfg: dict[str, Any]) -> dict[str, Any]:
    """The server's work: build the strategy (and DP / SecAgg+), run the rounds, collect results."""
    if "n-items" not in cfg:
        raise ConfigError("The ServerApp needs 'n-items' (the catalogue size) in its run config.")
    config = fed_config(cfg)
    rounds = int(cfg.get("num-server-rounds", 3))
    n_clients = int(cfg.get("num-clients", 2))
    fraction = float(cfg.get("fraction-fit", 1.0))
    fraction_evaluate = float(cfg.get("fraction-evaluate", 1.0))
    dp = str(cfg.get("dp", "none"))
    secagg = str(cfg.get("secagg", False)).lower() in ("1", "true")
    noise = float(cfg.get("noise-multiplier", 0.0))
    clip = float(cfg.get("clipping-norm", 1.0))
    if dp not in DP_MODES:
        raise ConfigError(f"The 'dp' setting must be one of {list(DP_MODES)}. Got {dp!r} instead.")
    if secagg and dp == "server":
        raise ConfigError(
            "dp='server' clips each client's update on the server, which SecAgg+ hides from it; "
            "use dp='client' with secagg."
        )
    sampled = max(1, round(fraction * n_clients))
    local_epochs = int(cfg.get("local-epochs", 1))

    def fit_config(server_round: int) -> dict:
        return {"server-round": server_round, "local-epochs": local_epochs, "uniform-weights": int(dp != "none")}

    strategy = FedAvg(
        fraction_fit=fraction,
        fraction_evaluate=fraction_evaluate,
        min_fit_clients=sampled,
        min_evaluate_clients=max(1, round(fraction_evaluate * n_clients)) if fraction_evaluate > 0 else 0,
        min_available_clients=n_clients,
        initial_parameters=ndarrays_to_parameters(init_item_params(int(cfg["n-items"]), config)),
        on_fit_config_fn=fit_config,
        fit_metrics_aggregation_fn=_weighted,
        evaluate_metrics_aggregation_fn=_weighted,
    )
    if dp == "server":
        strategy = DifferentialPrivacyServerSideFixedClipping(strategy, noise, clip, sampled)
    elif dp == "client":
        strategy = DifferentialPrivacyClientSideFixedClipping(strategy, noise, clip, sampled)
    legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=rounds), strategy=strategy)
    fit_workflow = None
    if secagg:
        fit_workflow = SecAggPlusWorkflow(
            num_shares=1.0,  # every sampled client holds a share
            reconstruction_threshold=1.0 if sampled < 3 else 0.67,
            max_weight=float(cfg.get("secagg-max-weight", 1000.0)),
        )
    DefaultWorkflow(fit_workflow=fit_workflow)(grid, legacy)

    history = legacy.history
    by_round: dict[int, dict[str, float]] = {}
    for name, values in history.metrics_distributed.items():
        for rnd, value in values:
            by_round.setdefault(int(rnd), {})[name] = float(value)
    for name, values in history.metrics_distributed_fit.items():
        for rnd, value in values:
            by_round.setdefault(int(rnd), {})[f"train_{name}"] = float(value)
    params = legacy.state.array_records[MAIN_PARAMS_RECORD].to_numpy_ndarrays()
    delta = 1.0 / max(n_clients, 2) ** 1.1
    epsilon = dp_fedavg_epsilon(noise, sampled / n_clients, rounds, delta) if dp != "none" else math.inf
    return {
        "rounds": [
            {"round": r, "NDCG@10": m.get("ndcg"), "HR@10": m.get("hr"), "loss": m.get("train_loss")}
            for r, m in sorted(by_round.items())
        ],
        "dp": dp,
        "secagg": secagg,
        "noise_multiplier": noise,
        "clipping_norm": clip if dp != "none" else None,
        "epsilon": "inf" if math.isinf(epsilon) else epsilon,
        "delta": delta if dp != "none" else 0.0,
        "num_clients": n_clients,
        "sampled_per_round": sampled,
        "config": config.as_dict(),
        "item_params": params,
    }


app = make_server_app()
"""The ServerApp for deployment: `serverapp = "shoprec.privacy.federated.server_app:app"`."""
