"""NCF (He et al., WWW 2017, NeuMF) as a next-item model, a baseline for the Transformer.

The user is the mean of the embeddings of their history items (with event-type vectors), so a
raw history is a user. Scores add a GMF part (user and item vectors multiplied elementwise) and
an MLP over [user, item]. The MLP's first layer is split into a user half and an item half, so
scoring all items costs one small matrix per user block, not a concatenation per pair. Trained at
every position of a sequence on the prefix before it, over the same sequence store and training
loop as the Transformer (`shoprec.models.neural`), so it scores raw histories, fine-tunes with
`partial_fit`, grows with the catalogue, checkpoints, resumes and trains under DDP the same way.
`loss="sampled"` by default, because an MLP over every (position, item) pair is expensive.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import nn

from shoprec.data.schema import EVENT_TYPES
from shoprec.errors import ConfigError, check_int
from shoprec.models.neural import NeuralSequenceRecommender, TrainingConfig

__all__ = ["NCF", "NCFConfig", "prefix_mean"]


def prefix_mean(x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean of x over the real positions up to and including each position (0 before any)."""
    total = torch.cumsum(x * real[..., None], dim=1)
    count = torch.cumsum(real.to(x.dtype), dim=1).clamp(min=1.0)
    return total / count[..., None]


class _NCFNet(nn.Module):
    def __init__(self, n_items: int, d: int, hidden: tuple[int, ...], dropout: float) -> None:
        super().__init__()
        self.d = d
        self.ctx = nn.Embedding(n_items + 1, d, padding_idx=0)  # history items -> user
        self.event_emb = nn.Embedding(len(EVENT_TYPES) + 1, d, padding_idx=0)
        self.gmf_item = nn.Embedding(n_items, d)
        self.mlp_item = nn.Embedding(n_items, d)
        self.item_bias = nn.Parameter(torch.zeros(n_items))
        self.gmf_user = nn.Linear(d, d)
        self.first_user = nn.Linear(d, hidden[0])
        self.first_item = nn.Linear(d, hidden[0], bias=False)
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(hidden):
            layers += [nn.ReLU(), nn.Dropout(dropout), nn.Linear(a, b)]
        layers += [nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden[-1], 1)]
        self.tower = nn.Sequential(*layers)
        self.drop = nn.Dropout(dropout)
        for emb in (self.ctx, self.gmf_item, self.mlp_item, self.event_emb):
            nn.init.normal_(emb.weight, 0.0, 0.05)
        with torch.no_grad():
            self.ctx.weight[0].zero_()
            self.event_emb.weight[0].zero_()

    def item_tables(self) -> list[tuple[nn.Parameter, int]]:
        return [(self.ctx.weight, 1), (self.gmf_item.weight, 0), (self.mlp_item.weight, 0), (self.item_bias, 0)]

    def forward(self, items: torch.Tensor, events: torch.Tensor, gaps: torch.Tensor) -> torch.Tensor:
        real = items > 0
        user = prefix_mean(self.drop(self.ctx(items) + self.event_emb(events)), real)
        # hidden = [GMF user vector, the user's half of the MLP's first layer]
        return torch.cat([self.gmf_user(user), self.first_user(user)], dim=-1)

    def score(self, hidden: torch.Tensor, candidates: torch.Tensor | None) -> torch.Tensor:
        gmf_u, mlp_u = hidden[:, : self.d], hidden[:, self.d :]
        idx = candidates
        gmf_i = self.gmf_item.weight if idx is None else self.gmf_item(idx)
        mlp_i = self.first_item(self.mlp_item.weight if idx is None else self.mlp_item(idx))
        bias = self.item_bias if idx is None else self.item_bias[idx]
        n_cand = gmf_i.shape[0]
        # Pairs per block bounded to keep memory flat on big catalogues.
        block = max(1, (1 << 24) // max(1, n_cand * mlp_i.shape[1]))
        parts = []
        for start in range(0, hidden.shape[0], block):
            pre = mlp_u[start : start + block, None, :] + mlp_i[None]
            parts.append(self.tower(pre).squeeze(-1))
        mlp = torch.cat(parts) if parts else hidden.new_zeros(0, n_cand)
        return gmf_u @ gmf_i.T + mlp + bias

    def score_pairs(self, hidden: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        gmf_u, mlp_u = hidden[:, : self.d], hidden[:, self.d :]
        mlp = self.tower(mlp_u + self.first_item(self.mlp_item(items))).squeeze(-1)
        return (gmf_u * self.gmf_item(items)).sum(-1) + mlp + self.item_bias[items]


@dataclass(frozen=True)
class NCFConfig(TrainingConfig):
    """NCF's hyperparameters: the network's below, training's from `TrainingConfig`.

    Args:
        d: embedding size.
        hidden: sizes of the MLP tower's layers (the first takes [user, item]).
        dropout: dropout on history embeddings and between MLP layers.
    """

    d: int = 64
    hidden: tuple[int, ...] | list[int] = (64, 32)
    loss: str = "sampled"
    epochs: int = 100
    patience: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        where = type(self).__name__
        check_int("d", self.d, 1, 4096, where)
        if not isinstance(self.hidden, (list, tuple)) or not self.hidden:
            raise ConfigError(
                f"The 'hidden' parameter of {where} must be a non-empty list of layer sizes. "
                f"Got {self.hidden!r} instead."
            )
        for size in self.hidden:
            check_int("hidden", size, 1, 4096, where)


class NCF(NeuralSequenceRecommender):
    """Neural collaborative filtering (GMF + MLP) with the user as the mean of their history.

    Hyperparameters: the fields of `NCFConfig`.
    """

    name = "ncf"
    config_class = NCFConfig
    config_: NCFConfig

    def _build_net(self, n_items: int, text_dim: int) -> nn.Module:
        cfg = self.config_
        return _NCFNet(n_items, cfg.d, tuple(int(h) for h in cfg.hidden), cfg.dropout)
