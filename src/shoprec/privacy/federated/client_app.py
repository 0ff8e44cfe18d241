"""The Flower ClientApp: trains on the shoppers held by one SuperNode; only item-side
parameters leave it.

Settings come from the run config (`[tool.flwr.app.config]` of a Flower app, or the defaults a
simulation passes) and the node config (`flower-supernode --node-config ...`):

    data-path       this node's partition file (ClientData .npz); or, in simulation,
    data-dir        a folder of client-<partition-id>.npz files
    factors, lr, batch-size, max-items-per-user, seed, optimizer, reconstruct-steps,
    reconstruct-lr  as FedConfig (local-epochs comes from the server with each round)

The shoppers' factors are kept in the node's `context.state` between rounds and are never put in
a reply. The mods run only when the server asks for them: `fixedclipping_mod` when the server's
DP wrapper sends a clipping norm (client-side DP-FedAvg), `secaggplus_mod` when the server runs
the SecAgg+ workflow, so one ClientApp serves every server configuration.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from shoprec.privacy.federated.task import (
    ClientData,
    FedConfig,
    evaluate_local,
    init_user_factors,
    local_train,
)

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")  # no phoning home from clients

# Importing Flower imports typer, which uses a click helper that click 8.2 deprecates; the
# warning is about Flower's dependencies, not this code.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r".*click.*deprecated", category=DeprecationWarning)
    from flwr.app import Array, ArrayRecord, Context
    from flwr.client import NumPyClient
    from flwr.client.mod import fixedclipping_mod, secaggplus_mod
    from flwr.clientapp import ClientApp
    from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS
    from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM

USER_STATE = "shoprec-user-factors"


def settings(context: Context, defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """Defaults, overridden by the run config, overridden by the node config."""
    return {**(defaults or {}), **dict(context.run_config), **dict(context.node_config)}


def fed_config(cfg: dict[str, Any]) -> FedConfig:
    return FedConfig(
        factors=int(cfg.get("factors", 32)),
        local_epochs=int(cfg.get("local-epochs", 1)),
        lr=float(cfg.get("lr", 0.01)),
        batch_size=int(cfg.get("batch-size", 64)),
        max_items_per_user=int(cfg.get("max-items-per-user", 50)),
        seed=int(cfg.get("seed", 0)),
        optimizer=str(cfg.get("optimizer", "adam")),
        reconstruct_steps=int(cfg.get("reconstruct-steps", 0)),
        reconstruct_lr=float(cfg.get("reconstruct-lr", 0.1)),
    )


def data_path(cfg: dict[str, Any]) -> Path:
    if "data-path" in cfg:
        return Path(str(cfg["data-path"]))
    if "data-dir" in cfg and "partition-id" in cfg:
        return Path(str(cfg["data-dir"])) / f"client-{int(cfg['partition-id'])}.npz"
    raise KeyError(
        "The ClientApp needs 'data-path' in its node config (flower-supernode --node-config "
        "\"data-path='client-0.npz'\") or 'data-dir' with a partition-id."
    )


class ShopperClient(NumPyClient):
    """FedAvg client: local epochs on (item params, local user factors); returns item params."""

    def __init__(self, context: Context, cfg: dict[str, Any]) -> None:
        self.context = context
        self.cfg = cfg
        self.data = ClientData.load(data_path(cfg))
        self.salt = int(cfg.get("partition-id", context.node_id)) + 1

    def _user_factors(self, config: FedConfig) -> np.ndarray:
        record = self.context.state.array_records.get(USER_STATE)
        if record is not None and "u" in record:
            return record["u"].numpy()
        return init_user_factors(self.data.n_users, config, salt=self.salt)

    def _keep(self, factors: np.ndarray) -> None:
        self.context.state.array_records[USER_STATE] = ArrayRecord({"u": Array(factors)})

    def fit(self, parameters, config):
        cfg = fed_config({**self.cfg, **dict(config)})
        factors = self._user_factors(cfg)
        params, factors, loss = local_train(
            [np.asarray(p, np.float32) for p in parameters], factors, self.data, cfg,
            round_seed=int(config.get("server-round", 0)) * 7919 + self.salt,
        )
        self._keep(factors)  # stays on this node
        # Under DP-FedAvg every client weighs the same (the analysis assumes a uniform mean).
        weight = 1 if int(config.get("uniform-weights", 0)) else self.data.n_users
        return params, weight, {"loss": float(loss) if np.isfinite(loss) else 0.0}

    def evaluate(self, parameters, config):
        cfg = fed_config(self.cfg)
        factors = self._user_factors(cfg)
        m = evaluate_local([np.asarray(p, np.float32) for p in parameters], factors, self.data, config=cfg)
        n = int(m["n"])
        return 0.0, max(n, 1), {"ndcg": m["ndcg_sum"] / max(n, 1), "hr": m["hr_sum"] / max(n, 1), "n": n}


def _when(mod, applies):
    """A mod that runs only for messages `applies(msg)` accepts; others pass straight through."""

    def wrapped(msg, ctxt, call_next):
        return mod(msg, ctxt, call_next) if applies(msg) else call_next(msg, ctxt)

    wrapped.__name__ = f"optional_{getattr(mod, '__name__', 'mod')}"
    return wrapped


def _is_secagg(msg) -> bool:
    return RECORD_KEY_CONFIGS in msg.content.config_records


def _asks_clipping(msg) -> bool:
    return any(KEY_CLIPPING_NORM in record for record in msg.content.config_records.values())


def make_client_app(defaults: dict[str, Any] | None = None) -> ClientApp:
    """A ClientApp whose settings default to `defaults` (what a simulation passes)."""

    def client_fn(context: Context):
        return ShopperClient(context, settings(context, defaults)).to_client()

    # SecAgg+ outermost: the update is clipped (inner mod) before it is masked.
    return ClientApp(
        client_fn=client_fn,
        mods=[_when(secaggplus_mod, _is_secagg), _when(fixedclipping_mod, _asks_clipping)],
    )


app = make_client_app()
"""The ClientApp for deployment: `clientapp = "shoprec.privacy.federated.client_app:app"`."""
