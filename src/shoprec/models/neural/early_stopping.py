"""Early stopping on a validation score, keeping the best weights seen."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

__all__ = ["EarlyStopping"]


class EarlyStopping:
    """Tracks the best validation score and its weights; stops after `patience` worse checks."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best = -math.inf
        self.best_epoch = -1
        self.bad = 0
        self.best_state: dict[str, torch.Tensor] | None = None

    @property
    def exhausted(self) -> bool:
        """Whether `patience` checks in a row were no better than the best."""
        return self.bad >= self.patience

    def update(self, score: float, epoch: int, net: nn.Module) -> bool:
        """Record a check; returns True when training should stop."""
        if score > self.best:
            self.best, self.best_epoch, self.bad = score, epoch, 0
            self.best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            self.bad += 1
        return self.exhausted

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad": self.bad, "best_state": self.best_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.bad = state["best"], state["best_epoch"], state["bad"]
        self.best_state = state["best_state"]
