"""The behaviour Transformer: a causal SASRec-style encoder over item sequences.

Each position sees its item, the event type (a purchase weighs differently from a view), an
optional log-bucketed time gap to the previous event, and a learned position; blocks with causal
attention turn them into a state from which the next item is scored against the same item
embedding matrix as the input (tied weights). The default block is the SASRec paper's own
(`block="sasrec"`); `block="pre_ln"` is PyTorch's pre-LayerNorm `nn.TransformerEncoderLayer`.

Training is SASRec+ (Klenitskiy & Vasilev, RecSys 2023): cross-entropy over the full catalogue at
every position. For very large catalogues `loss="sampled"` uses a sampled softmax over
`n_negatives` items shared by the batch, drawn uniformly or by popularity, with the logQ
correction (gSASRec-style training at a fraction of the cost). Early stopping on validation
NDCG@10, checkpoints, resuming, seeds and devices come from the training core
(`shoprec.models.neural`).

Catalogue growth: `partial_fit(new_data)` accepts a Dataset whose item vocabulary extends the
model's; the embedding matrix gains rows for the new items (from text when the model uses text,
else small random values) and the network is fine-tuned on the new events, without a full
retrain. Text (384-d MiniLM vectors from `shoprec.text.encoder`) either initialises the item
embeddings (`text_init`) or is fused into them through a learned projection (`text_fusion`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from shoprec.data.dataset import Dataset
from shoprec.data.schema import EVENT_TYPES
from shoprec.errors import (
    ConfigError,
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_optional_str,
)
from shoprec.models.neural import NeuralSequenceRecommender, TrainingConfig

__all__ = ["TransformerConfig", "TransformerRecommender", "item_text"]

log = logging.getLogger("shoprec.models")

_GEMV_ROWS = 8  # up to this many histories scored at once take numpy's product (see `score`)


def item_text(data: Dataset, cache_dir: str | None) -> np.ndarray | None:
    """Text vectors (n_items, dim) for data's items, or None (no catalogue / no text extra)."""
    if data.catalogue is None:
        log.info("no catalogue: item text is not used")
        return None
    try:
        from shoprec.text.encoder import item_text_matrix
    except ImportError as exc:
        log.warning("item text is not used: %s", exc)
        return None
    try:
        matrix = item_text_matrix(data.items, data.catalogue, cache_dir=cache_dir)
    except ImportError as exc:  # MissingExtraError is an ImportError too
        log.warning("item text is not used: %s", exc)
        return None
    return np.asarray(matrix, dtype=np.float32)


class _SASRecBlock(nn.Module):
    """One block as in the SASRec paper and its reference code (Kang & McAuley, 2018).

    It differs from a textbook pre-LN block in three ways that SASRec+ kept: the query is the
    normed input while keys and values are the raw input, the attention residual starts from the
    normed query, and the feed-forward residual starts from its own normed input (ReLU, width d).
    """

    def __init__(self, d: int, n_heads: int, dropout: float, attn_dropout: float) -> None:
        super().__init__()
        self.n_heads, self.attn_dropout = n_heads, attn_dropout
        self.attn_norm = nn.LayerNorm(d, eps=1e-8)
        self.q_proj = nn.Linear(d, d)
        # No key bias: it adds the same q.b to every score of a query, which softmax cancels, so
        # its gradient is zero up to rounding and Adam would only turn that rounding into steps.
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)
        self.ff_norm = nn.LayerNorm(d, eps=1e-8)
        self.ff = nn.Sequential(
            nn.Linear(d, d), nn.Dropout(dropout), nn.ReLU(), nn.Linear(d, d), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, d = x.shape
        heads = self.n_heads
        query = self.attn_norm(x)
        q = self.q_proj(query).view(batch, length, heads, -1).transpose(1, 2)
        k, v = (proj(x).view(batch, length, heads, -1).transpose(1, 2) for proj in (self.k_proj, self.v_proj))
        attn = nn.functional.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_dropout if self.training else 0.0, is_causal=True
        )
        x = query + self.out_proj(attn.transpose(1, 2).reshape(batch, length, d))
        x = self.ff_norm(x)
        return x + self.ff(x)


class _CausalTransformer(nn.Module):
    """Embeddings + causal Transformer blocks; scores are dot products with item embeddings."""

    drops_left_padding = True
    """Columns that are padding in every row may be dropped: positions count back from the newest
    event and causal attention never reaches a padded key, so the states do not change."""

    def __init__(
        self,
        n_items: int,
        d: int,
        n_layers: int,
        n_heads: int,
        max_len: int,
        dropout: float,
        event_embeddings: bool,
        n_time_buckets: int,
        text_dim: int,
        text_fusion: bool,
        attn_dropout: float = 0.0,
        block: str = "pre_ln",
        sparse_item_grads: bool = False,
    ) -> None:
        super().__init__()
        self.d, self.n_heads = d, n_heads
        # Every lookup of the item table (inputs, targets, negatives) goes through an embedding
        # op, so with sparse_item_grads its gradient holds only the rows a batch touched.
        self.sparse_item_grads = sparse_item_grads
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0, sparse=sparse_item_grads)
        self.pos_emb = nn.Embedding(max_len, d)
        self.event_emb = nn.Embedding(len(EVENT_TYPES) + 1, d, padding_idx=0) if event_embeddings else None
        self.gap_emb = nn.Embedding(n_time_buckets, d, padding_idx=0) if n_time_buckets else None
        self.text_proj = None
        if text_dim and text_fusion:
            self.register_buffer("text_features", torch.zeros(n_items, text_dim))
            self.text_proj = nn.Linear(text_dim, d, bias=False)
        elif text_dim:
            # Ridge map from text to learned embeddings (set after fit; used for new items).
            self.register_buffer("text_map", torch.zeros(text_dim, d))
        if block == "sasrec":
            self.encoder = None
            self.blocks = nn.ModuleList(_SASRecBlock(d, n_heads, dropout, attn_dropout) for _ in range(n_layers))
            self.final_norm = nn.LayerNorm(d, eps=1e-8)
            for module in self.blocks.modules():
                if isinstance(module, nn.Linear):  # SASRec+'s initialisation (normal, std 0.02)
                    nn.init.normal_(module.weight, 0.0, 0.02)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
        else:
            layer = nn.TransformerEncoderLayer(
                d, n_heads, dim_feedforward=d, dropout=dropout, activation="gelu", batch_first=True, norm_first=True
            )
            self.encoder = nn.TransformerEncoder(layer, n_layers, norm=nn.LayerNorm(d), enable_nested_tensor=False)
            for layer in self.encoder.layers:
                # Dropout on attention weights forces SDPA off its fused causal kernel (5-8x slower
                # on CPU), so it has its own rate, 0 by default.
                layer.self_attn.dropout = attn_dropout
        self.drop = nn.Dropout(dropout)
        std = math.sqrt(2.0 / (n_items + 1 + d))  # Xavier-normal, as in SASRec's PyTorch port
        nn.init.normal_(self.item_emb.weight, 0.0, std)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        for emb in (self.pos_emb, self.event_emb, self.gap_emb):
            if emb is not None:
                nn.init.normal_(emb.weight, 0.0, 0.02)
                if emb.padding_idx is not None:
                    with torch.no_grad():
                        emb.weight[emb.padding_idx].zero_()

    def item_tables(self) -> list[tuple[nn.Parameter, int]]:
        return [(self.item_emb.weight, 1)]

    def vectors(self, idx: torch.Tensor | None) -> torch.Tensor:
        """Item vectors (0-based indices; None = all items) used both as input and output."""
        if idx is None:
            weight = self.item_emb.weight[1:]
        else:
            weight = nn.functional.embedding(idx + 1, self.item_emb.weight, sparse=self.sparse_item_grads)
        if self.text_proj is not None:
            feats = self.text_features if idx is None else self.text_features[idx]
            weight = weight + self.text_proj(feats)
        return weight

    def forward(self, items: torch.Tensor, events: torch.Tensor, gaps: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, L, d) for left-padded inputs, aligned with them.

        Internally each row is rotated so that its events come first and padding last: then
        plain causal attention never reaches a padded key, and SDPA's fused causal kernel runs
        without a per-batch mask. Position ids count back from the latest event (as SASRec's
        left-padded positions do), so the newest event always has the same position.
        """
        batch, length = items.shape
        pads = (items == 0).sum(dim=1, keepdim=True)
        ar = torch.arange(length, device=items.device)[None]
        to_right = (ar + pads) % length
        items, events, gaps = (t.gather(1, to_right) for t in (items, events, gaps))
        real = items > 0
        if self.text_proj is None:
            x = self.item_emb(items)
        else:
            x = torch.zeros(batch, length, self.d, device=items.device, dtype=self.item_emb.weight.dtype)
            x[real] = self.vectors(items[real] - 1)
        x = x * math.sqrt(self.d)
        x = x + self.pos_emb(self.pos_emb.num_embeddings - length + to_right)
        if self.event_emb is not None:
            x = x + self.event_emb(events)
        if self.gap_emb is not None:
            x = x + self.gap_emb(gaps)
        x = self.drop(x) * real[..., None]
        if self.encoder is None:
            for block in self.blocks:
                x = block(x)
            hidden = self.final_norm(x)
        else:
            hidden = self.encoder(x, mask=self._causal_mask(length, items.device), is_causal=True)
        back = ((ar - pads) % length)[..., None].expand(-1, -1, hidden.shape[-1])
        return hidden.gather(1, back)

    def _causal_mask(self, length: int, device: torch.device) -> torch.Tensor:
        cached = getattr(self, "_mask_cache", None)
        if cached is None or cached.shape[0] != length or cached.device != device:
            cached = nn.Transformer.generate_square_subsequent_mask(length, device=device)
            self._mask_cache = cached
        return cached

    def score(self, hidden: torch.Tensor, candidates: torch.Tensor | None) -> torch.Tensor:
        weight = self.vectors(candidates)
        if (len(hidden) <= _GEMV_ROWS and not torch.is_grad_enabled() and hidden.device.type == "cpu"
                and hidden.dtype == weight.dtype == torch.float32):
            # A request's few rows: numpy's OpenBLAS reads the item table about twice as fast
            # as torch's matmul for this shape (0.47 against 0.96 ms at 100,000 x 64, one
            # thread), and serving scores the whole catalogue on every request.
            return torch.from_numpy(hidden.detach().numpy() @ weight.detach().numpy().T)
        return hidden @ weight.T

    def score_pairs(self, hidden: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (hidden * self.vectors(items)).sum(-1)

    def output_layer(self) -> tuple[torch.Tensor, None]:
        """(weight, bias) of the full-catalogue scores: `score(h, None) == h @ weight.T`."""
        return self.vectors(None), None


@dataclass(frozen=True)
class TransformerConfig(TrainingConfig):
    """The behaviour Transformer's hyperparameters: the network's below, training's from
    `TrainingConfig` (max_len, dropout, loss, epochs, lr, ...).

    Args:
        d: embedding and hidden size.
        n_layers: Transformer blocks.
        n_heads: attention heads (d must divide by n_heads).
        block: "sasrec" (the SASRec paper's block: query from the normed input, keys and values
            from the raw input, residuals from the normed states, ReLU feed-forward; what SASRec+
            trains) or "pre_ln" (a textbook pre-LayerNorm `nn.TransformerEncoderLayer`, GELU).
        attn_dropout: dropout on attention weights, 0 by default (SASRec+ uses its `dropout`).
        event_embeddings: add a learned vector per event type (view, cart, ...) to each item.
        time_gaps: add a learned vector per log2-bucket of seconds since the previous event (raw
            histories carry no timestamps, so they use the "unknown gap" bucket).
        n_time_buckets: number of gap buckets (2 are reserved: padding and unknown).
        text_init: initialise item embeddings from item text (PCA of the 384-d vectors); after
            training, items without training events and new items are placed by a ridge map from
            text to the learned embeddings, so they can be recommended from text alone.
        text_fusion: item vector = free embedding + learned projection of its text, throughout.
        text_cache_dir: where the text encoder caches vectors (None: its default).
    """

    d: int = 64
    n_layers: int = 2
    n_heads: int = 1
    block: str = "sasrec"
    attn_dropout: float = 0.0
    event_embeddings: bool = True
    time_gaps: bool = False
    n_time_buckets: int = 32
    text_init: bool = False
    text_fusion: bool = False
    text_cache_dir: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        where = type(self).__name__
        check_int("d", self.d, 1, 4096, where)
        check_int("n_layers", self.n_layers, 1, 64, where)
        check_int("n_heads", self.n_heads, 1, 64, where)
        if self.d % self.n_heads:
            raise ConfigError(
                f"The 'n_heads' parameter of {where} must divide d={self.d}. Got {self.n_heads} instead."
            )
        check_choice("block", self.block, ("sasrec", "pre_ln"), where)
        check_float("attn_dropout", self.attn_dropout, 0.0, 0.95, where)
        check_int("n_time_buckets", self.n_time_buckets, 3, 128, where)
        for flag in ("event_embeddings", "time_gaps", "text_init", "text_fusion"):
            check_bool(flag, getattr(self, flag), where)
        check_optional_str("text_cache_dir", self.text_cache_dir, where)


class TransformerRecommender(NeuralSequenceRecommender):
    """SASRec-style causal Transformer with event-type (and optional time-gap) embeddings.

    Hyperparameters: the fields of `TransformerConfig` (`shoprec models --params transformer`
    lists them with their defaults).
    """

    name = "transformer"
    config_class = TransformerConfig
    config_: TransformerConfig

    def _build_net(self, n_items: int, text_dim: int) -> nn.Module:
        cfg = self.config_
        return _CausalTransformer(
            n_items, cfg.d, cfg.n_layers, cfg.n_heads, cfg.max_len, cfg.dropout, cfg.event_embeddings,
            cfg.n_time_buckets if cfg.time_gaps else 0, text_dim, cfg.text_fusion, cfg.attn_dropout, cfg.block,
            cfg.sparse_item_grads,
        )

    def _text_dim(self, weights: dict[str, torch.Tensor]) -> int:
        if "text_features" in weights:
            return int(weights["text_features"].shape[1])
        if "text_map" in weights:
            return int(weights["text_map"].shape[0])
        return 0

    # -- text ------------------------------------------------------------------------------
    def _text_matrix(self, data: Dataset) -> np.ndarray | None:
        if not (self.config_.text_init or self.config_.text_fusion):
            return None
        return item_text(data, self.config_.text_cache_dir)

    def _init_text(self, text: np.ndarray) -> None:
        net, d = self.net_, self.config_.d
        if self.config_.text_fusion:
            net.text_features.copy_(torch.as_tensor(text, dtype=torch.float32))
            return
        # PCA of the text vectors, scaled to the embedding's initial spread.
        centred = text - text.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        init = centred @ vt[:d].T
        if init.shape[1] < d:
            init = np.pad(init, ((0, 0), (0, d - init.shape[1])))
        weight = net.item_emb.weight
        init *= float(weight[1:].detach().std()) / max(float(init.std()), 1e-12)
        with torch.no_grad():
            weight[1:] = torch.as_tensor(init, dtype=weight.dtype)

    def _after_fit(self, data: Dataset, text: np.ndarray | None) -> None:
        if text is None or self.config_.text_fusion:
            return
        net = self.net_
        trained = self.item_counts_ > 0
        weight = net.item_emb.weight
        x = text[trained].astype(np.float64)
        y = weight[1:][torch.as_tensor(trained)].detach().cpu().double().numpy()
        ridge = x.T @ x + np.eye(x.shape[1])
        proj = np.linalg.solve(ridge, x.T @ y)
        net.text_map.copy_(torch.as_tensor(proj, dtype=torch.float32))
        cold = np.flatnonzero(~trained)
        if len(cold):
            with torch.no_grad():
                weight[torch.as_tensor(cold + 1)] = torch.as_tensor(text[cold] @ proj, dtype=weight.dtype).to(weight.device)

    def _new_item_rows(self, n_new: int, text_new: np.ndarray | None, table: int) -> torch.Tensor | None:
        net = self.net_
        if text_new is not None and hasattr(net, "text_map"):
            return torch.as_tensor(text_new, dtype=torch.float32, device=net.text_map.device) @ net.text_map
        return None
