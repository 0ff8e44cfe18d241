"""Federated training with Flower: shoppers' histories stay on their clients.

- `task`: the model (shared item factors and biases, shoppers' factors local), local training
  and evaluation, partition files; no Flower needed (the centralised reference uses it too).
- `client_app` / `server_app`: the Flower ClientApp and ServerApp (FedAvg over item-side
  parameters; DP-FedAvg with Flower's fixed-clipping wrappers; SecAgg+).
- `simulation.run_federated`: both apps on one machine with Flower's simulation engine.

Importing this package does not import Flower; the app modules do.
"""

from __future__ import annotations

from shoprec.privacy.federated.task import FedConfig, train_centralised, write_partitions

__all__ = ["FedConfig", "run_federated", "train_centralised", "write_partitions"]


def __getattr__(name: str):
    if name in ("run_federated", "FederatedResult"):
        from shoprec.privacy.federated import simulation

        return getattr(simulation, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
