"""Two neural baselines for the Transformer: an NCF-style MLP scorer and a Caser-style CNN.

Both are next-item models over the same sequence store and training loop as the Transformer
(`torch_utils.NeuralSequenceRecommender`), so they score raw histories, fine-tune with
`partial_fit`, grow with the catalogue, checkpoint, resume and train under DDP the same way.

- `NCF` (He et al., WWW 2017, NeuMF): the user is the mean of the embeddings of their history
  items (with event-type vectors), so a raw history is a user. Scores add a GMF part (user and
  item vectors multiplied elementwise) and an MLP over [user, item]. The MLP's first layer is
  split into a user half and an item half, so scoring all items costs one small matrix per user
  block, not a concatenation per pair. Trained at every position of a sequence on the prefix
  before it; `loss="sampled"` by default, because an MLP over every (position, item) pair is
  expensive.
- `Caser` (Tang & Wang, WSDM 2018): horizontal convolutions (heights 1..L) and vertical
  convolutions over the embeddings of the last L items give a short-term vector; the mean of
  the whole history stands for Caser's user embedding (long-term). Both are scored against
  output item embeddings with a bias.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from shoprec.data.schema import EVENT_TYPES
from shoprec.errors import ConfigError, check_int
from shoprec.models.torch_utils import NeuralSequenceRecommender


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


_COMMON_DOC = """
        max_len: recent events per history the model reads.
        loss: "full" (softmax over the catalogue) or "sampled" (sampled softmax over
            `n_negatives` shared negatives, drawn by `negative_sampling`, with logQ correction).
        epochs, batch_size, bucket_by_length, lr, weight_decay, patience, eval_every, valid_users, checkpoint_dir,
        resume, max_seconds, device, seed, verbose: as for the Transformer
        (`TransformerRecommender`).
"""


class NCF(NeuralSequenceRecommender):
    """Neural collaborative filtering (GMF + MLP) with the user as the mean of their history.

    Args:
        d: embedding size; hidden: sizes of the MLP tower's layers (the first takes [user, item]).
        dropout: dropout on history embeddings and between MLP layers.
    """

    __doc__ = (__doc__ or "") + _COMMON_DOC
    name = "ncf"

    def __init__(
        self,
        d: int = 64,
        hidden: tuple[int, ...] | list[int] = (64, 32),
        dropout: float = 0.2,
        max_len: int = 50,
        loss: str = "sampled",
        n_negatives: int = 256,
        negative_sampling: str = "uniform",
        epochs: int = 100,
        batch_size: int = 128,
        bucket_by_length: bool = False,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        patience: int = 5,
        eval_every: int = 1,
        valid_users: int | None = None,
        checkpoint_dir: str | None = None,
        resume: bool = False,
        max_seconds: float | None = None,
        device: str = "auto",
        seed: int = 0,
        verbose: bool = False,
    ) -> None:
        self.d = d
        self.hidden = list(hidden) if isinstance(hidden, tuple) else hidden  # as JSON stores it
        self.dropout = dropout
        self.max_len = max_len
        self.loss = loss
        self.n_negatives = n_negatives
        self.negative_sampling = negative_sampling
        self.epochs = epochs
        self.batch_size = batch_size
        self.bucket_by_length = bucket_by_length
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.eval_every = eval_every
        self.valid_users = valid_users
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.max_seconds = max_seconds
        self.device = device
        self.seed = seed
        self.verbose = verbose

    def _validate(self) -> None:
        self._validate_common()
        where = type(self).__name__
        check_int("d", self.d, 1, 4096, where)
        if not isinstance(self.hidden, (list, tuple)) or not self.hidden:
            raise ConfigError(
                f"The 'hidden' parameter of {where} must be a non-empty list of layer sizes. "
                f"Got {self.hidden!r} instead."
            )
        for size in self.hidden:
            check_int("hidden", size, 1, 4096, where)

    def _build_net(self, n_items: int, text_dim: int) -> nn.Module:
        return _NCFNet(n_items, self.d, tuple(int(h) for h in self.hidden), self.dropout)


class Caser(NeuralSequenceRecommender):
    """Convolutional sequence embedding (Caser): horizontal + vertical convolutions.

    Args:
        d: embedding size; window: how many recent items the convolutions see (Caser's L);
        n_v, n_h: vertical filters, and horizontal filters per height 1..window.
        dropout: dropout before the fully connected layer (Caser uses 0.5).
    """

    __doc__ = (__doc__ or "") + _COMMON_DOC
    name = "caser"

    def __init__(
        self,
        d: int = 64,
        window: int = 5,
        n_v: int = 4,
        n_h: int = 16,
        dropout: float = 0.5,
        max_len: int = 50,
        loss: str = "full",
        n_negatives: int = 256,
        negative_sampling: str = "uniform",
        epochs: int = 100,
        batch_size: int = 128,
        bucket_by_length: bool = False,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        patience: int = 5,
        eval_every: int = 1,
        valid_users: int | None = None,
        checkpoint_dir: str | None = None,
        resume: bool = False,
        max_seconds: float | None = None,
        device: str = "auto",
        seed: int = 0,
        verbose: bool = False,
    ) -> None:
        self.d = d
        self.window = window
        self.n_v = n_v
        self.n_h = n_h
        self.dropout = dropout
        self.max_len = max_len
        self.loss = loss
        self.n_negatives = n_negatives
        self.negative_sampling = negative_sampling
        self.epochs = epochs
        self.batch_size = batch_size
        self.bucket_by_length = bucket_by_length
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.eval_every = eval_every
        self.valid_users = valid_users
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.max_seconds = max_seconds
        self.device = device
        self.seed = seed
        self.verbose = verbose

    def _validate(self) -> None:
        self._validate_common()
        where = type(self).__name__
        check_int("d", self.d, 1, 4096, where)
        check_int("window", self.window, 1, 64, where)
        check_int("n_v", self.n_v, 1, 1024, where)
        check_int("n_h", self.n_h, 1, 1024, where)

    def _build_net(self, n_items: int, text_dim: int) -> nn.Module:
        return _CaserNet(n_items, self.d, self.window, self.n_v, self.n_h, self.dropout)
