"""Caser (Tang & Wang, WSDM 2018) as a next-item model, a baseline for the Transformer.

Horizontal convolutions (heights 1..L) and vertical convolutions over the embeddings of the last
L items give a short-term vector; the mean of the whole history stands for Caser's user
embedding (long-term). Both are scored against output item embeddings with a bias. It uses the
same sequence store and training loop as the Transformer (`shoprec.models.neural`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from shoprec.data.schema import EVENT_TYPES
from shoprec.errors import check_int
from shoprec.models.ncf import prefix_mean
from shoprec.models.neural import NeuralSequenceRecommender, TrainingConfig

__all__ = ["Caser", "CaserConfig"]


class _CaserNet(nn.Module):
    def __init__(self, n_items: int, d: int, window: int, n_v: int, n_h: int, dropout: float) -> None:
        super().__init__()
        self.d, self.window = d, window
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.event_emb = nn.Embedding(len(EVENT_TYPES) + 1, d, padding_idx=0)
        self.conv_v = nn.Conv2d(1, n_v, (window, 1))
        self.conv_h = nn.ModuleList([nn.Conv2d(1, n_h, (h, d)) for h in range(1, window + 1)])
        self.fc = nn.Linear(n_v * d + n_h * window, d)
        self.out_emb = nn.Embedding(n_items, 2 * d)
        self.out_bias = nn.Parameter(torch.zeros(n_items))
        self.drop = nn.Dropout(dropout)
        nn.init.normal_(self.item_emb.weight, 0.0, 1.0 / d)
        nn.init.normal_(self.out_emb.weight, 0.0, 1.0 / (2 * d))
        nn.init.normal_(self.event_emb.weight, 0.0, 0.02)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
            self.event_emb.weight[0].zero_()

    def item_tables(self) -> list[tuple[nn.Parameter, int]]:
        return [(self.item_emb.weight, 1), (self.out_emb.weight, 0), (self.out_bias, 0)]

    def forward(self, items: torch.Tensor, events: torch.Tensor, gaps: torch.Tensor) -> torch.Tensor:
        batch, length = items.shape
        real = items > 0
        emb = (self.item_emb(items) + self.event_emb(events)) * real[..., None]
        # The window of the last `window` embeddings ending at each position: (B*L, 1, W, d).
        padded = nn.functional.pad(emb, (0, 0, self.window - 1, 0))
        win = padded.unfold(1, self.window, 1).permute(0, 1, 3, 2).reshape(-1, 1, self.window, self.d)
        vertical = self.conv_v(win).reshape(win.shape[0], -1)
        horizontal = []
        for conv in self.conv_h:
            h = torch.relu(conv(win).squeeze(3))  # (N, n_h, W - height + 1)
            horizontal.append(h.max(dim=2).values)
        z = torch.relu(self.fc(self.drop(torch.cat([vertical, *horizontal], dim=1))))
        z = z.reshape(batch, length, self.d)
        user = prefix_mean(emb, real)
        return torch.cat([z, user], dim=-1)

    def score(self, hidden: torch.Tensor, candidates: torch.Tensor | None) -> torch.Tensor:
        if candidates is None:
            return hidden @ self.out_emb.weight.T + self.out_bias
        return hidden @ self.out_emb(candidates).T + self.out_bias[candidates]

    def score_pairs(self, hidden: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (hidden * self.out_emb(items)).sum(-1) + self.out_bias[items]

    def output_layer(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) of the full-catalogue scores: `score(h, None) == h @ weight.T + bias`."""
        return self.out_emb.weight, self.out_bias


@dataclass(frozen=True)
class CaserConfig(TrainingConfig):
    """Caser's hyperparameters: the network's below, training's from `TrainingConfig`.

    Args:
        d: embedding size.
        window: how many recent items the convolutions see (Caser's L).
        n_v: vertical filters.
        n_h: horizontal filters per height 1..window.
        dropout: dropout before the fully connected layer (Caser uses 0.5).
    """

    d: int = 64
    window: int = 5
    n_v: int = 4
    n_h: int = 16
    dropout: float = 0.5
    epochs: int = 100
    patience: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        where = type(self).__name__
        check_int("d", self.d, 1, 4096, where)
        check_int("window", self.window, 1, 64, where)
        check_int("n_v", self.n_v, 1, 1024, where)
        check_int("n_h", self.n_h, 1, 1024, where)


class Caser(NeuralSequenceRecommender):
    """Convolutional sequence embedding (Caser): horizontal + vertical convolutions.

    Hyperparameters: the fields of `CaserConfig`.
    """

    name = "caser"
    config_class = CaserConfig
    config_: CaserConfig

    def _build_net(self, n_items: int, text_dim: int) -> nn.Module:
        cfg = self.config_
        return _CaserNet(n_items, cfg.d, cfg.window, cfg.n_v, cfg.n_h, cfg.dropout)
