"""Differentially private matrix factorisation ("dp-mf"): item factors shared, user vectors
computed from the history, trained with user-level DP-SGD.

The model is an asymmetric factorisation (NSVD / FISM, trained with the multinomial likelihood
of Mult-DAE): a shopper's vector is `u = tanh(W · mean(input factors of their items) + b)` and
item i scores `u · q_i + b_i`. It has no per-shopper parameters: everything trained is shared,
so user-level DP-SGD (one example = one shopper's bounded history) covers every learned weight,
and any history, including an anonymous session's, is scored the same way.

Training example = the shopper's `max_items_per_user` most recent events; the loss is the
softmax cross-entropy of those items given the shopper's vector, computed from the same items
with `input_dropout` of them hidden (so the model learns to predict items it was not shown).
With `target_epsilon=None` (or inf) the same network is trained without clipping and noise:
the non-private reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from shoprec.data.dataset import Dataset
from shoprec.errors import check_choice, check_float, check_int, require_extra
from shoprec.models.base import PerUserState, Recommender
from shoprec.models.neural.device import check_device, resolve_device, seeded
from shoprec.privacy.accountant import PrivacyReport, plan_dp_sgd
from shoprec.privacy.dp import OPTIMIZERS, DPConfig, train_per_user


def _torch():
    return require_extra("torch", "privacy")


def pad_recent(histories: list[np.ndarray], width: int) -> np.ndarray:
    """(n, width) int64: the last `width` items of each history + 1, right-aligned, 0 = padding."""
    out = np.zeros((len(histories), width), np.int64)
    for r, h in enumerate(histories):
        h = np.asarray(h, np.int64)[-width:]
        if len(h):
            out[r, width - len(h) :] = h + 1
    return out


def _build_net(n_items: int, factors: int, input_dropout: float):
    torch = _torch()
    from torch import nn

    class HistoryFactorisation(nn.Module):
        """Input item factors -> mean -> tanh(linear) = user vector -> scores over the catalogue."""

        def __init__(self) -> None:
            super().__init__()
            self.item_in = nn.Embedding(n_items + 1, factors)
            self.encoder = nn.Linear(factors, factors)
            self.item_out = nn.Linear(factors, n_items)
            nn.init.normal_(self.item_in.weight, 0.0, 0.1)
            nn.init.normal_(self.item_out.weight, 0.0, 0.1)
            nn.init.zeros_(self.item_out.bias)
            self.input_dropout = input_dropout

        def user_vectors(self, items: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
            mask = (items > 0).to(self.item_in.weight.dtype)
            if keep is not None:
                mask = mask * keep
            # Multiplying by the mask (not padding_idx) keeps row 0 out of every vector, even
            # after DP noise has been added to it.
            summed = (self.item_in(items) * mask[..., None]).sum(dim=1)
            mean = summed / mask.sum(dim=1, keepdim=True).clamp(min=1.0)
            return torch.tanh(self.encoder(mean))

        def scores(self, items: torch.Tensor) -> torch.Tensor:
            return self.item_out(self.user_vectors(items))

        def forward(self, items: torch.Tensor) -> torch.Tensor:
            """Per-shopper loss: mean -log p(item | shopper vector) over their items."""
            keep = None
            if self.training and self.input_dropout > 0:
                keep = (torch.rand(items.shape, device=items.device) >= self.input_dropout).to(
                    self.item_in.weight.dtype
                )
            logits = self.item_out(self.user_vectors(items, keep))
            targets = torch.zeros(items.shape[0], n_items + 1, device=items.device)
            targets.scatter_(1, items, 1.0)
            targets = targets[:, 1:]
            log_p = torch.log_softmax(logits, dim=1)
            return -(log_p * targets).sum(dim=1) / targets.sum(dim=1).clamp(min=1.0)

    return HistoryFactorisation()


@dataclass(frozen=True)
class DPMFConfig(DPConfig):
    """DP-MF's hyperparameters: the factorisation's below, privacy's from `DPConfig`.

    Args:
        factors: latent dimensions, in [1, 4096].
        max_items_per_user: events of a shopper used, most recent first (bounds each shopper's
            contribution and the cost), in [1, 10000].
        input_dropout: share of a shopper's items hidden from the encoder in training, [0, 0.95].
        epochs: passes (in expectation) over the shoppers.
        batch_size: expected shoppers per step (Poisson sampling at rate 1 / ceil(n / batch_size)
            when private).
        lr: the optimizer's learning rate.
        weight_decay: the optimizer's weight decay.
        optimizer: "adam" or "sgd" (momentum 0.9).
        device: "cpu", "auto", "cuda" or "cuda:N".
        seed: same seed, same model.
    """

    factors: int = 64
    max_items_per_user: int = 20
    input_dropout: float = 0.5
    epochs: int = 20
    batch_size: int = 512
    lr: float = 1e-2
    weight_decay: float = 0.0
    optimizer: str = "adam"
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        where = type(self).__name__
        check_int("factors", self.factors, 1, 4096, where)
        check_int("max_items_per_user", self.max_items_per_user, 1, 10_000, where)
        check_float("input_dropout", self.input_dropout, 0.0, 0.95, where)
        check_int("epochs", self.epochs, 0, 100_000, where)
        check_int("batch_size", self.batch_size, 1, 10_000_000, where)
        check_float("lr", self.lr, 1e-8, 10.0, where)
        check_float("weight_decay", self.weight_decay, 0.0, 10.0, where)
        check_choice("optimizer", self.optimizer, OPTIMIZERS, where)
        check_device(self.device, where)
        check_int("seed", self.seed, 0, 2**31 - 1, where)


class DPMF(Recommender):
    """Matrix factorisation with user-level differential privacy (DP-SGD through Opacus).

    Hyperparameters: the fields of `DPMFConfig` (`shoprec models --params dp-mf`).

    After fit, `privacy_` holds the accountant's (epsilon, delta) and the run's settings; it is
    saved with the model. `training_log_` has one entry per epoch.
    """

    name = "dp-mf"
    config_class = DPMFConfig
    config_: DPMFConfig
    # Each shopper's recent items, to score known shoppers (data, not parameters: the model has
    # no per-shopper parameters).
    per_user_state = PerUserState(rows=("hist_items",))

    # ---- fitting ---------------------------------------------------------------------------
    def _fit(self, train: Dataset, valid=None) -> None:
        torch = _torch()
        cfg = self.config_
        device = resolve_device(cfg.device)
        active = train.active_users()
        histories = train.sequences()
        if cfg.private:  # refuse an impossible budget before building anything
            plan_dp_sgd(
                max(len(active), 1), int(cfg.batch_size), max(int(cfg.epochs), 1), cfg.target_epsilon,
                cfg.target_delta, accountant=cfg.accountant,
                max_noise_multiplier=float(cfg.max_noise_multiplier), where=type(self).__name__,
            )
        self.hist_ = pad_recent(histories, int(cfg.max_items_per_user)).astype(np.int32)
        rows = self.hist_[active].astype(np.int64)
        with seeded(int(cfg.seed), device):
            self.net_ = _build_net(train.n_items, int(cfg.factors), float(cfg.input_dropout)).to(device)
            report, log = train_per_user(
                self.net_,
                (torch.as_tensor(rows, device=device),),
                **cfg.privacy_kwargs(),
                batch_size=int(cfg.batch_size),
                epochs=int(cfg.epochs),
                lr=float(cfg.lr),
                weight_decay=float(cfg.weight_decay),
                optimizer=cfg.optimizer,
                max_items_per_user=int(cfg.max_items_per_user),
                seed=int(cfg.seed),
                where=type(self).__name__,
            )
        self.net_.eval()
        self.device_ = device
        self.privacy_ = report
        self.training_log_ = log

    # ---- scoring ---------------------------------------------------------------------------
    def _score_histories(self, histories, events=None) -> np.ndarray:
        return self._score_rows(pad_recent(histories, int(self.config_.max_items_per_user)))

    def _score_known_users(self, users: np.ndarray) -> np.ndarray:
        return self._score_rows(self.hist_[np.asarray(users, np.int64)].astype(np.int64))

    def _score_rows(self, rows: np.ndarray) -> np.ndarray:
        torch = _torch()
        out = np.empty((len(rows), len(self.items_)), np.float32)
        with torch.no_grad():
            for start in range(0, len(rows), 1024):
                block = torch.as_tensor(rows[start : start + 1024], device=self.device_)
                out[start : start + len(block)] = self.net_.scores(block).float().cpu().numpy()
        return out

    # ---- persistence -----------------------------------------------------------------------
    def _get_state(self) -> dict[str, np.ndarray]:
        state = {f"net/{k}": v.detach().cpu().numpy() for k, v in self.net_.state_dict().items()}
        state["privacy"] = self.privacy_.state()
        state["hist_items"] = self.hist_
        return state

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        torch = _torch()
        cfg = self.config_
        self.device_ = resolve_device(cfg.device)
        weights = {k[4:]: torch.as_tensor(v) for k, v in state.items() if k.startswith("net/")}
        self.net_ = _build_net(len(self.items_), int(cfg.factors), float(cfg.input_dropout))
        self.net_.load_state_dict(weights)
        self.net_.to(self.device_).eval()
        self.privacy_ = PrivacyReport.from_state(state["privacy"])
        self.hist_ = np.asarray(state["hist_items"], np.int32)
        self.training_log_ = []

    @property
    def privacy(self) -> PrivacyReport:
        """The (epsilon, delta) this model's shared weights were trained under."""
        self._check_fitted()
        return self.privacy_

    def privacy_dict(self) -> dict[str, Any]:
        return self.privacy.as_dict()


def epsilon_label(epsilon: float | None) -> str:
    """'inf' for no privacy, else the number as given ('0.5', '8')."""
    if epsilon is None or (isinstance(epsilon, float) and math.isinf(epsilon)):
        return "inf"
    return f"{float(epsilon):g}"
