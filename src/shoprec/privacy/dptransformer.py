"""The behaviour Transformer trained with user-level DP-SGD ("dp-transformer").

It is `shoprec.models.transformer.TransformerRecommender` (same embeddings, positions, event types,
rotation of left-padded inputs, tied input/output item embeddings, scoring of any history) with
two changes that make per-shopper gradients computable by Opacus:

- Attention blocks built from `nn.Linear` and `scaled_dot_product_attention` instead of
  `nn.TransformerEncoder`. Opacus 1.6's replacement, `DPMultiheadAttention` (what
  `ModuleValidator.fix` swaps in), refuses causal attention (`is_causal=True`) and checks 2-D
  masks against the batch size when `batch_first=True`, so it cannot run a causal model. The
  blocks here compute the same pre-LayerNorm layer (GELU feed-forward of width d).
- The output layer is an `nn.Linear` that shares its weight with the item embedding, so Opacus'
  hooks see both uses of the tied weight and sum their per-shopper gradients.

Training: one example = one shopper's last `max_len + 1` events (next-item targets at every
position, averaged per shopper), Poisson-sampled, clipped and noised (`shoprec.privacy.dp`).
Validation-based early stopping is off: choosing the epoch on shoppers' held-out items would
spend budget the accountant does not see. `partial_fit` is refused for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from shoprec.data.dataset import Dataset
from shoprec.errors import ConfigError
from shoprec.models.neural.loop import TrainingRun, log_epoch
from shoprec.models.neural.sequences import pad_left
from shoprec.models.transformer import TransformerConfig, TransformerRecommender, _CausalTransformer
from shoprec.privacy.accountant import PrivacyReport, plan_dp_sgd
from shoprec.privacy.dp import DPConfig, train_per_user


class _Block(nn.Module):
    """Pre-LayerNorm causal self-attention + GELU feed-forward, as nn.TransformerEncoderLayer
    with norm_first=True and dim_feedforward=d, from layers Opacus can differentiate per sample."""

    def __init__(self, d: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.norm1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out_proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.linear1 = nn.Linear(d, d)
        self.linear2 = nn.Linear(d, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, d = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, length, 3, self.n_heads, d // self.n_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        # No dropout on attention weights (as the parent's default): it would disable the
        # fused kernel.
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.drop(self.out_proj(att.transpose(1, 2).reshape(b, length, d)))
        return x + self.drop(self.linear2(self.drop(F.gelu(self.linear1(self.norm2(x))))))


class _Encoder(nn.Module):
    def __init__(self, d: int, n_heads: int, n_layers: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList([_Block(d, n_heads, dropout) for _ in range(n_layers)])
        self.norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, mask: Any = None, is_causal: bool = True) -> torch.Tensor:
        # The parent passes a causal mask; the blocks are causal by construction.
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


class _DPCausalTransformer(_CausalTransformer):
    """`_CausalTransformer` with Opacus-compatible blocks and a tied nn.Linear output layer."""

    def __init__(self, n_items: int, d: int, n_layers: int, n_heads: int, max_len: int,
                 dropout: float, event_embeddings: bool) -> None:
        super().__init__(n_items, d, n_layers, n_heads, max_len, dropout, event_embeddings, 0, 0, False)
        self.encoder = _Encoder(d, n_heads, n_layers, dropout)
        self.out = nn.Linear(d, n_items + 1, bias=False)
        self.out.weight = self.item_emb.weight  # tied: one parameter, two uses

    def score(self, hidden: torch.Tensor, candidates: torch.Tensor | None) -> torch.Tensor:
        logits = self.out(hidden)[..., 1:]
        return logits if candidates is None else logits[..., candidates]

    def score_pairs(self, hidden: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.score(hidden, None).gather(-1, items[..., None])[..., 0]


class _PerUserLoss(nn.Module):
    """forward(items, events) -> each shopper's mean next-item cross-entropy, shape (B,)."""

    def __init__(self, net: _DPCausalTransformer) -> None:
        super().__init__()
        self.net = net

    def forward(self, items: torch.Tensor, events: torch.Tensor) -> torch.Tensor:
        gaps = torch.where(items > 0, 1, 0)  # no time-gap features in the private model
        hidden = self.net(items[:, :-1], events[:, :-1], gaps[:, :-1])
        targets = items[:, 1:] * (items[:, :-1] > 0)  # only targets that have a real input
        logits = self.net.score(hidden, None)
        ce = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), (targets - 1).clamp(min=0).reshape(-1), reduction="none"
        ).reshape(targets.shape)
        mask = (targets > 0).to(ce.dtype)
        return (ce * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


@dataclass(frozen=True)
class DPTransformerConfig(TransformerConfig, DPConfig):
    """The private Transformer's hyperparameters: the Transformer's network (d, n_layers,
    n_heads, max_len, dropout, event_embeddings), training (epochs, batch_size, lr,
    weight_decay, device, seed) and privacy (`DPConfig`).

    Args:
        max_len: events per shopper read, which also bounds each shopper's contribution.
        epochs: passes (in expectation) over the shoppers.
        batch_size: expected shoppers per step (Poisson sampling when private).
        device: "cpu", "auto", "cuda" or "cuda:N".
    """

    epochs: int = 10
    batch_size: int = 256
    device: str = "cpu"
    # What the private model does not offer (not parameters): time gaps, text, the sampled
    # loss, validation-based early stopping and checkpoints. Its own blocks replace `block`.
    block: str = field(default="pre_ln", init=False)
    attn_dropout: float = field(default=0.0, init=False)
    time_gaps: bool = field(default=False, init=False)
    n_time_buckets: int = field(default=32, init=False)
    text_init: bool = field(default=False, init=False)
    text_fusion: bool = field(default=False, init=False)
    text_cache_dir: str | None = field(default=None, init=False)
    loss: str = field(default="full", init=False)
    n_negatives: int = field(default=256, init=False)
    negative_sampling: str = field(default="uniform", init=False)
    bucket_by_length: bool = field(default=False, init=False)
    patience: int = field(default=10, init=False)
    eval_every: int = field(default=1, init=False)
    valid_users: int | None = field(default=None, init=False)
    checkpoint_dir: str | None = field(default=None, init=False)
    resume: bool = field(default=False, init=False)
    max_seconds: float | None = field(default=None, init=False)
    verbose: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        TransformerConfig.__post_init__(self)
        DPConfig.__post_init__(self)


class DPTransformer(TransformerRecommender):
    """The behaviour Transformer with user-level differential privacy (DP-SGD via Opacus).

    Hyperparameters: the fields of `DPTransformerConfig` (`shoprec models --params
    dp-transformer`). `privacy_` holds the accountant's report after fit and is saved with the
    model. Shoppers' stored recent histories (`hist_*` state, used to score known shoppers) are
    per-shopper data, not covered by DP; `shoprec.privacy.erasure.forget` removes them.
    """

    name = "dp-transformer"
    config_class = DPTransformerConfig
    config_: DPTransformerConfig

    def _build_net(self, n_items: int, text_dim: int) -> nn.Module:
        cfg = self.config_
        return _DPCausalTransformer(
            n_items, cfg.d, cfg.n_layers, cfg.n_heads, cfg.max_len, cfg.dropout, cfg.event_embeddings
        )

    def _text_matrix(self, data: Dataset) -> np.ndarray | None:
        return None

    def _fit(self, train: Dataset, valid=None) -> None:
        cfg = self.config_
        if cfg.private:  # refuse an impossible budget before building anything
            n = int((np.diff(train.indptr) >= 2).sum())
            plan_dp_sgd(
                max(n, 1), int(cfg.batch_size), max(int(cfg.epochs), 1), cfg.target_epsilon,
                cfg.target_delta, accountant=cfg.accountant,
                max_noise_multiplier=float(cfg.max_noise_multiplier), where=type(self).__name__,
            )
        # valid is ignored on purpose: early stopping on shoppers' items would spend budget.
        super()._fit(train, None)
        # Exact item counts are a non-private statistic of the training data: not kept.
        self.item_counts_ = np.zeros_like(self.item_counts_)

    def _train(self, store, validation, epochs: int, resume: bool, users: np.ndarray | None = None,
               negative_stream: int = 0) -> TrainingRun:  # DP-SGD here draws no negatives
        cfg, net, device = self.config_, self.net_, self.device_
        users = np.flatnonzero(store.lengths() >= 2) if users is None else users
        items = torch.as_tensor(store.items[users], dtype=torch.long, device=device)
        events = torch.as_tensor(store.events[users], dtype=torch.long, device=device)
        report, log = train_per_user(
            _PerUserLoss(net),
            (items, events),
            **cfg.privacy_kwargs(),
            batch_size=int(cfg.batch_size),
            epochs=int(epochs),
            lr=float(cfg.lr),
            weight_decay=float(cfg.weight_decay),
            max_items_per_user=int(cfg.max_len) + 1,
            seed=int(cfg.seed),
            where=type(self).__name__,
            on_epoch=lambda entry: log_epoch(self.name, {**entry, "seconds": 0.0}, None, self.progress),
        )
        self.privacy_ = report
        net.eval()
        return TrainingRun(history=log, best_epoch=len(log))

    def per_user_loss(self, histories: list[np.ndarray], events: list[np.ndarray] | None = None) -> np.ndarray:
        """Each history's training loss (mean next-item cross-entropy over its last max_len + 1
        events): what a membership-inference attacker thresholds. NaN below two events."""
        self._check_fitted()
        width = int(self.config_.max_len) + 1
        if events is None:
            events = [np.full(len(h), self.default_event_) for h in histories]
        loss_fn = _PerUserLoss(self.net_).eval()
        out = np.full(len(histories), np.nan)
        with torch.no_grad():
            for start in range(0, len(histories), 256):
                its = pad_left(histories[start : start + 256], width, 1)
                evs = pad_left(events[start : start + 256], width, 1)
                loss = loss_fn(self._long(its), self._long(evs)).cpu().numpy()
                out[start : start + len(its)] = np.where((its > 0).sum(axis=1) >= 2, loss, np.nan)
        return out

    def partial_fit(self, new_data: Dataset, epochs: int = 1):
        """Refused: fine-tuning on new events would spend privacy budget outside the accountant."""
        raise ConfigError(
            f"{type(self).__name__} does not support partial_fit: more training spends more "
            "privacy budget; refit with the whole budget instead."
        )

    def _get_state(self) -> dict[str, np.ndarray]:
        state = super()._get_state()
        state["privacy"] = self.privacy_.state()
        return state

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.privacy_ = PrivacyReport.from_state(state.pop("privacy"))
        super()._set_state(state)

    @property
    def privacy(self) -> PrivacyReport:
        """The (epsilon, delta) this model's shared weights were trained under."""
        self._check_fitted()
        return self.privacy_


__all__ = ["DPTransformer", "DPTransformerConfig"]
