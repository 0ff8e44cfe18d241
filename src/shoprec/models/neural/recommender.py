"""The base class of the neural next-item models: history store, training, scoring, growth.

Every neural sequence model (the Transformer, NCF, Caser and the private Transformer) is a
`NeuralSequenceRecommender`: it stores each user's last `max_len` events, trains a network that
predicts the next item at every position of a sequence (`shoprec.models.neural.loop`), and scores
any history, including a raw one from an anonymous session, with the same network.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from shoprec.data.dataset import Dataset
from shoprec.data.schema import EVENT_TYPES
from shoprec.errors import ConfigError, ModelFormatError, NotFittedError, check_int
from shoprec.models.base import PerUserState, Recommender
from shoprec.models.neural.config import TrainingConfig
from shoprec.models.neural.device import resolve_device, seeded
from shoprec.models.neural.distributed import world
from shoprec.models.neural.loop import TrainingRun, Validation, net_items, train_next_item
from shoprec.models.neural.sequences import UNKNOWN_GAP, SequenceStore, gap_matrix, pad_left

__all__ = ["NeuralSequenceRecommender"]

_SCORE_BLOCK = 256  # histories scored per forward pass


class NeuralSequenceRecommender(Recommender):
    """Base of the neural next-item models.

    Subclasses set `name` and `config_class` (a `TrainingConfig` subclass with the network's
    fields) and define `_build_net(n_items, text_dim)`, which returns an nn.Module with:

    - `forward(items, events, gaps) -> hidden (B, L, h)`: a representation at every position
      (it must only look at positions <= its own), items/events/gaps left-padded, 0 = padding;
    - `score(hidden (N, h), candidates (K,) | None) -> (N, K or n_items)`;
    - `score_pairs(hidden (N, h), items (N,)) -> (N,)`;
    - `item_tables() -> list[(nn.Parameter, offset)]`: the per-item parameter rows (offset 1
      where row 0 is padding), grown when the catalogue grows;
    - optionally a `text_features` buffer (n_items, 384) when text fusion is on.
    """

    sequential: ClassVar[bool] = True
    config_class: ClassVar[type] = TrainingConfig
    # Each shopper's stored recent history (the SequenceStore arrays) is per-shopper data.
    per_user_state: ClassVar[PerUserState] = PerUserState(rows=("hist_items", "hist_events", "hist_times"))
    #: Optional callable receiving a dict per epoch (epoch, loss, valid_ndcg, seconds, ...).
    progress: Callable[[dict[str, Any]], None] | None = None
    config_: TrainingConfig

    # -- what subclasses may add ---------------------------------------------------------------
    def _build_net(self, n_items: int, text_dim: int) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def _text_matrix(self, data: Dataset) -> np.ndarray | None:
        """Subclasses with text support return (n_items, dim) text vectors or None."""
        return None

    def _init_text(self, text: np.ndarray) -> None:
        """Put item text into a freshly built network (subclasses with text support)."""

    def _text_dim(self, weights: dict[str, torch.Tensor]) -> int:
        """Text vector size a saved network was built with (0 = no text)."""
        return 0

    def _after_fit(self, data: Dataset, text: np.ndarray | None) -> None:
        """Hook run after training (the Transformer fills untrained items from text here)."""

    def _new_item_rows(self, n_new: int, text_new: np.ndarray | None, table: int) -> torch.Tensor | None:
        """Initial rows for grown item tables; None means small random."""
        return None

    def _n_time_buckets(self) -> int:
        return int(getattr(self.config_, "n_time_buckets", 32))

    def _uses_time_gaps(self) -> bool:
        return bool(getattr(self.config_, "time_gaps", False))

    # -- fitting ---------------------------------------------------------------------------
    def _fit(self, train: Dataset, valid: sp.csr_matrix | None = None) -> None:
        cfg = self.config_
        self.device_ = resolve_device(cfg.device)
        store = SequenceStore.from_dataset(train, cfg.max_len + 1)
        self.store_ = store
        counts = np.bincount(train.event, minlength=len(EVENT_TYPES))
        self.default_event_ = int(np.argmax(counts))
        self.item_counts_ = np.bincount(train.item_idx, minlength=train.n_items).astype(np.float64)
        with seeded(cfg.seed, self.device_):
            text = self._text_matrix(train)
            self.net_ = self._build_net(train.n_items, 0 if text is None else text.shape[1])
            if text is not None:
                self._init_text(text)
            self.net_.to(self.device_)
            rank = world()[0]
            if rank:  # identical initial weights on every rank, different dropout masks
                torch.manual_seed(cfg.seed + rank)
            validation = None
            if valid is not None:
                validation = Validation.sample(
                    valid, train, lambda u: self._score_histories(*store.rows(u)), cfg.valid_users, cfg.seed
                )
            self._remember_run(self._train(store, validation, cfg.epochs, resume=cfg.resume))
            self._after_fit(train, text)
        self.store_ = store.without_first_column()

    def _train(self, store: SequenceStore, validation: Validation | None, epochs: int, resume: bool,
               users: np.ndarray | None = None, negative_stream: int = 0) -> TrainingRun:
        """Train the network on `store` (width max_len + 1); subclasses may train otherwise.
        negative_stream: which seeded stream the sampled negatives come from (one per run)."""
        return train_next_item(
            self.net_, store, self.config_, self.device_, name=self.name, item_counts=self.item_counts_,
            n_time_buckets=self._n_time_buckets(), epochs=epochs, resume=resume, users=users,
            validation=validation, report=self.progress, negative_stream=negative_stream,
        )

    def _remember_run(self, run: TrainingRun, append: bool = False) -> None:
        self.history_ = (list(getattr(self, "history_", [])) if append else []) + run.history
        if run.ran:
            self.best_epoch_ = run.best_epoch
            self.stopped_by_ = run.stopped_by

    # -- scoring ---------------------------------------------------------------------------
    def _score_histories(
        self,
        histories: list[np.ndarray],
        events: list[np.ndarray] | None = None,
        timestamps: list[np.ndarray] | None = None,
        items: np.ndarray | None = None,
    ) -> np.ndarray:
        out = np.empty((len(histories), net_items(self.net_) if items is None else len(items)), dtype=np.float32)
        for start in range(0, len(histories), _SCORE_BLOCK):
            block = slice(start, start + _SCORE_BLOCK)
            hidden = self._encode(histories[block], None if events is None else events[block],
                                  None if timestamps is None else timestamps[block])
            out[block] = self._score_encoded(hidden, items)
        return out

    def _encode(self, histories: list[np.ndarray], events: list[np.ndarray] | None,
                timestamps: list[np.ndarray] | None) -> torch.Tensor:
        """The network's state after each history's last event, (len(histories), d)."""
        net = self.net_
        if net.training:  # eval() walks every submodule: ~1 ms a call, on every request
            net.eval()
        width = self.config_.max_len
        if getattr(net, "drops_left_padding", False):
            # Only as wide as the longest history: a request's few events padded to max_len
            # cost the network max_len positions for nothing (and training reads batches so).
            width = max(1, min(width, max((len(h) for h in histories), default=1)))
        items = pad_left(histories, width, 1)
        if events is None:
            evs = pad_left([np.full(len(h), self.default_event_) for h in histories], width, 1)
        else:
            evs = pad_left(events, width, 1)
        if timestamps is None:
            gaps = np.where(items > 0, UNKNOWN_GAP, 0)
        else:
            gaps = gap_matrix(items, pad_left(timestamps, width), self._n_time_buckets())
        with torch.no_grad():
            return net(self._long(items), self._long(evs), self._long(gaps))[:, -1]

    def _score_encoded(self, hidden: torch.Tensor, items: np.ndarray | None) -> np.ndarray:
        candidates = None if items is None else torch.as_tensor(np.asarray(items, np.int64), device=self.device_)
        with torch.no_grad():
            return self.net_.score(hidden, candidates).float().cpu().numpy()

    def encode_histories(self, histories: list[np.ndarray], events: list[np.ndarray] | None = None):
        """The network's state after each history (at most 256), to score later with
        `score_encoded`: the service encodes a history and its variants in one pass, scores the
        history over the catalogue and the variants over the few items it chose."""
        self._check_fitted()
        if len(histories) > _SCORE_BLOCK:
            raise ConfigError(f"encode_histories takes at most {_SCORE_BLOCK} histories; got {len(histories)}.")
        return self._encode(histories, events, None)

    def score_encoded(self, hidden, items: np.ndarray | None = None) -> np.ndarray:
        """Scores (rows of hidden, items) of encoded histories; items None: the whole catalogue."""
        self._check_fitted()
        return self._score_encoded(hidden, items)

    def score_histories_on(self, histories: list[np.ndarray], events: list[np.ndarray] | None,
                           items: np.ndarray) -> np.ndarray:
        """Scores (len(histories), len(items)) of the given items only: what rescoring a few
        candidates needs, without the product with the whole catalogue."""
        self._check_fitted()
        return self._score_histories(histories, events, None, items=items)

    def item_embeddings(self) -> np.ndarray:
        """The network's item vectors (its output embeddings), one row per item."""
        self._check_fitted()
        with torch.no_grad():
            if hasattr(self.net_, "vectors"):
                weight = self.net_.vectors(None)
            else:
                param, offset = self.net_.item_tables()[0]
                weight = param[offset:]
            return weight.detach().float().cpu().numpy()

    def _long(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(array, dtype=torch.long, device=self.device_)

    def _score_known_users(self, users: np.ndarray) -> np.ndarray:
        its, evs, tss = self.store_.rows(np.asarray(users))
        return self._score_histories(its, evs, tss)

    def score_users(self, users: np.ndarray, history: Dataset | None = None) -> np.ndarray:
        """As Recommender.score_users; a given history's timestamps feed the time-gap features."""
        if history is None or not self._uses_time_gaps():
            return super().score_users(users, history)
        self._check_fitted()
        if history.items != self.items_:
            raise ConfigError("The history dataset must use the model's item vocabulary.")
        ptr = history.indptr
        users = np.asarray(users, dtype=np.int64)
        sl = [slice(ptr[u], ptr[u + 1]) for u in users]
        return self._score_histories(
            [history.item_idx[s] for s in sl], [history.event[s] for s in sl], [history.timestamp[s] for s in sl]
        )

    # -- online updates --------------------------------------------------------------------
    def partial_fit(self, new_data: Dataset, epochs: int = 1) -> NeuralSequenceRecommender:
        """Fine-tune on new events without a full retrain; grows the catalogue when needed.

        new_data: a Dataset of new events. Its item vocabulary must equal the model's or extend
        it (the model's ids first, in order, new ids appended, as `Vocabulary.extend` makes).
        New items get new embedding rows, initialised from text where the model uses text and
        new_data has a catalogue, else small random values. Users may be known or new; each
        user's stored recent history is extended by their new events, and the network trains
        `epochs` passes over the affected users' sequences (no early stopping).
        """
        self._check_fitted()
        epochs = check_int("epochs", epochs, 0, 100_000, "partial_fit")
        if not isinstance(new_data, Dataset):
            raise ConfigError(f"partial_fit expects a shoprec Dataset. Got {type(new_data).__name__} instead.")
        old_ids, new_ids = self.items_.ids, new_data.items.ids
        if len(new_ids) < len(old_ids) or not np.array_equal(new_ids[: len(old_ids)], old_ids):
            raise ConfigError(
                "partial_fit needs new_data's item vocabulary to extend the model's: the model's "
                f"{len(old_ids)} ids first, in order, new ids appended (Vocabulary.extend)."
            )
        n_old, n_new = len(old_ids), len(new_ids)
        users = self.users_.extend(new_data.users.ids)
        user_map = users.index(new_data.users.ids)
        width = self.config_.max_len + 1
        touched = np.unique(user_map[new_data.user_idx])
        with seeded(self.config_.seed + 1 + len(getattr(self, "history_", [])), self.device_):
            if n_new > n_old:
                self._grow(new_data, n_old, n_new)
            self.items_ = new_data.items
            self.item_counts_ = np.concatenate([self.item_counts_, np.zeros(n_new - n_old)])
            self.item_counts_ += np.bincount(new_data.item_idx, minlength=n_new)
            store = self.store_.widened().appended(new_data, user_map, len(users), width)
            self.users_ = users
            trainable = touched[(store.items[touched] > 0).sum(axis=1) >= 2]
            run = self._train(store, None, epochs, resume=False, users=trainable,
                              negative_stream=1 + len(getattr(self, "history_", [])))
            self._remember_run(run, append=True)
        self.store_ = store.without_first_column()
        seen_new = sp.csr_matrix(
            (np.ones(len(new_data), np.float32), (user_map[new_data.user_idx], new_data.item_idx)),
            shape=(len(users), n_new),
        )
        seen_old = sp.csr_matrix(
            (self.seen_.data, self.seen_.indices, self.seen_.indptr), shape=self.seen_.shape
        )
        seen_old.resize((len(users), n_new))
        seen = (seen_old + seen_new).tocsr()
        seen.data[:] = 1.0
        self.seen_ = seen
        self._train_histories, self._train_events, _ = self.store_.rows(np.arange(len(users)))
        return self

    def _grow(self, new_data: Dataset, n_old: int, n_new: int) -> None:
        text_new = None
        if hasattr(self.net_, "text_features") or getattr(self.config_, "text_init", False):
            full = self._text_matrix(new_data)
            if full is not None:
                text_new = full[n_old:n_new]
        if hasattr(self.net_, "text_features"):
            feats = self.net_.text_features
            extra = (
                torch.as_tensor(text_new, dtype=feats.dtype, device=feats.device)
                if text_new is not None
                else torch.zeros(n_new - n_old, feats.shape[1], device=feats.device)
            )
            self.net_.text_features = torch.cat([feats, extra])
        for t, (param, offset) in enumerate(self.net_.item_tables()):
            rows = self._new_item_rows(n_new - n_old, text_new, t)
            if rows is None:
                rows = torch.randn(n_new - n_old, *param.shape[1:], device=param.device) * 0.02
            with torch.no_grad():
                param.data = torch.cat([param.data, rows.to(param.device, param.dtype)])
            assert param.shape[0] == n_new + offset

    # -- persistence -----------------------------------------------------------------------
    def _get_state(self) -> dict[str, np.ndarray]:
        state = {f"net/{k}": v.detach().cpu().numpy() for k, v in self.net_.state_dict().items()}
        state.update(
            hist_items=self.store_.items,
            hist_events=self.store_.events,
            hist_times=self.store_.times,
            default_event=np.array(self.default_event_),
            item_counts=self.item_counts_,
            best_epoch=np.array(getattr(self, "best_epoch_", 0)),
        )
        return state

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.device_ = resolve_device(self.config_.device)
        self.store_ = SequenceStore(state["hist_items"], state["hist_events"], state["hist_times"])
        self.default_event_ = int(state["default_event"])
        self.item_counts_ = state["item_counts"]
        self.best_epoch_ = int(state["best_epoch"])
        weights = {k[4:]: torch.as_tensor(v) for k, v in state.items() if k.startswith("net/")}
        self.net_ = self._build_net(len(self.items_), self._text_dim(weights))
        try:
            self.net_.load_state_dict(weights)
        except RuntimeError as exc:
            raise ModelFormatError(f"The saved {self.name} weights do not fit its parameters: {exc}") from exc
        self.net_.to(self.device_).eval()
        self._train_histories, self._train_events, _ = self.store_.rows(np.arange(len(self.users_)))

    @property
    def training_log(self) -> list[dict[str, Any]]:
        """Per-epoch records of the last fit: epoch, loss, seconds, valid_ndcg when evaluated."""
        if not hasattr(self, "history_"):
            raise NotFittedError(f"This {type(self).__name__} has no training log; call fit first.")
        return list(self.history_)
