"""Shared pieces of shoprec's PyTorch models: device, seeding, sequence batches, losses, the
training loop with early stopping and resumable checkpoints, and the common base class.

Every neural sequence model (the Transformer in `sasrec.py`, NCF and Caser in `neural.py`) is a
`NeuralSequenceRecommender`: it stores each user's last `max_len` events, trains a network that
predicts the next item at every position of a sequence, and scores any history, including a raw
one from an anonymous session, with the same network. The training loop is written once here,
and it runs unchanged under `torchrun` (see `shoprec.models.ddp`): when a process group is
initialised, each rank takes a disjoint shard of every global batch and gradients are averaged so
that the result equals a single-process run with the same global batch.

Item indices inside the networks are shifted by one: 0 is padding, item i is row i + 1.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from shoprec.data.dataset import Dataset
from shoprec.data.schema import EVENT_TYPES
from shoprec.errors import (
    ConfigError,
    EmptyDataError,
    ModelFormatError,
    NotFittedError,
    check_choice,
    check_float,
    check_int,
)
from shoprec.models.base import Recommender

log = logging.getLogger("shoprec.models")

UNKNOWN_GAP = 1  # gap bucket of the first event and of histories without timestamps
LOSSES = ("full", "sampled")
SAMPLERS = ("uniform", "popularity")
CHECKPOINT_NAME = "last.pt"


# ---- device and randomness ------------------------------------------------------------------
def resolve_device(device: str, where: str = "") -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cpu', 'cuda' and 'cuda:N' are taken as given."""
    if not isinstance(device, str) or not (
        device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())
    ):
        raise ConfigError(
            f"The 'device' parameter{f' of {where}' if where else ''} must be one of "
            f"['auto', 'cpu', 'cuda', 'cuda:N']. Got {device!r} instead."
        )
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} was asked for, but CUDA is not available here.")
    return torch.device(device)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run a block with torch's global RNG seeded and deterministic CPU ops; restore both after.

    The caller's RNG state is left as it was (torch.random.fork_rng), so fitting a model does not
    change the random numbers other code sees.
    """
    devices = [device.index or 0] if device.type == "cuda" else []
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_filling = torch.utils.deterministic.fill_uninitialized_memory
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        if device.type == "cpu":
            torch.use_deterministic_algorithms(True)
            # CPU kernels read no uninitialised memory; filling every new tensor costs bandwidth.
            torch.utils.deterministic.fill_uninitialized_memory = False
        # Denormal floats from tiny gradients slow CPU arithmetic many times over.
        flushing = torch.set_flush_denormal(True)
        try:
            yield
        finally:
            if flushing:
                torch.set_flush_denormal(False)
            torch.use_deterministic_algorithms(was_deterministic)
            torch.utils.deterministic.fill_uninitialized_memory = was_filling


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """The global torch RNG state (CPU, and the CUDA device in use) for a checkpoint."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


# ---- distributed helpers (no-ops in a single process) ---------------------------------------
def world() -> tuple[int, int]:
    """(rank, world size) of the current process group, or (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist

    if world()[1] > 1:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def epoch_order(n: int, epoch: int, seed: int, rank: int = 0, world_size: int = 1) -> np.ndarray:
    """This rank's shuffled indices for an epoch, exactly as DistributedSampler gives them.

    The global order is a permutation seeded by seed + epoch, padded to a multiple of the world
    size; rank r takes every world_size-th index starting at r. So the union of the ranks' j-th
    batches of size B / world_size is the j-th batch of size B of a single process.
    """
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(
        range(n), num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=False
    )
    sampler.set_epoch(epoch)
    return np.fromiter(iter(sampler), dtype=np.int64)


BUCKET_SPAN = 32  # batches whose users are sorted by length together when bucketing


def epoch_batches(
    lengths: np.ndarray,
    epoch: int,
    seed: int,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    bucket: bool = False,
) -> list[np.ndarray]:
    """This rank's batches of positions into `lengths` (one per user) for an epoch.

    Without bucketing: the DistributedSampler order (`epoch_order`) cut into batches of
    batch_size / world_size. With bucketing: the same global permutation, cut into spans of
    BUCKET_SPAN global batches whose users are sorted by length, so each batch holds similar
    lengths and carries little padding; the batches are then shuffled (seeded) and each is
    dealt round-robin to the ranks. Either way the ranks' j-th batches together form the same
    global batch j that a single process with `batch_size` trains on.
    """
    local = batch_size // world_size
    if not bucket:
        order = epoch_order(len(lengths), epoch, seed, rank, world_size)
        return [order[s : s + local] for s in range(0, len(order), local)]
    order = epoch_order(len(lengths), epoch, seed)
    if len(order) % world_size:  # pad as DistributedSampler does
        order = np.concatenate([order, order[: world_size - len(order) % world_size]])
    span = batch_size * BUCKET_SPAN
    chunks = []
    for s in range(0, len(order), span):
        part = order[s : s + span]
        chunks.append(part[np.argsort(lengths[part], kind="stable")])
    order = np.concatenate(chunks)
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    shuffle = np.random.default_rng([seed, epoch]).permutation(len(batches))
    return [batches[b][rank::world_size] for b in shuffle]


# ---- sequences ------------------------------------------------------------------------------
def gap_buckets(timestamps: np.ndarray, n_buckets: int) -> np.ndarray:
    """Log2-bucketed gap in seconds to the previous event: 1 for the first, 2.. for the rest."""
    ts = np.asarray(timestamps, dtype=np.int64)
    out = np.full(len(ts), UNKNOWN_GAP, dtype=np.int64)
    if len(ts) > 1:
        gaps = np.maximum(np.diff(ts), 0).astype(np.float64)
        out[1:] = 2 + np.minimum(np.floor(np.log2(1.0 + gaps)), n_buckets - 3).astype(np.int64)
    return out


def pad_left(rows: list[np.ndarray], width: int, shift: int = 0, dtype=np.int64) -> np.ndarray:
    """Right-aligned matrix of the last `width` values of each row (+shift), 0 on the left."""
    out = np.zeros((len(rows), width), dtype=dtype)
    for r, row in enumerate(rows):
        row = np.asarray(row)[-width:] if width else np.asarray(row)[:0]
        if len(row):
            out[r, width - len(row) :] = row + shift
    return out


class SequenceStore:
    """Each user's last `width` events as left-padded matrices: items + 1, event codes + 1, time.

    Kept in the model's state, so a loaded model scores known users from their real, ordered
    recent history, and `partial_fit` appends new events to it.
    """

    def __init__(self, items: np.ndarray, events: np.ndarray, times: np.ndarray) -> None:
        self.items, self.events, self.times = items, events, times

    @classmethod
    def from_dataset(cls, data: Dataset, width: int) -> SequenceStore:
        ptr = data.indptr
        split = lambda a: [a[ptr[u] : ptr[u + 1]] for u in range(data.n_users)]
        return cls(
            pad_left(split(data.item_idx), width, 1, np.int32),
            pad_left(split(data.event.astype(np.int64)), width, 1, np.int8),
            pad_left(split(data.timestamp), width, 0, np.int64),
        )

    @property
    def width(self) -> int:
        return self.items.shape[1]

    def rows(self, users: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """Unpadded (item index, event code, timestamp) arrays of the given users."""
        its, evs, tss = [], [], []
        for u in users:
            keep = self.items[u] > 0
            its.append(self.items[u][keep].astype(np.int64) - 1)
            evs.append(self.events[u][keep].astype(np.int64) - 1)
            tss.append(self.times[u][keep])
        return its, evs, tss

    def appended(self, data: Dataset, user_map: np.ndarray, n_users: int, width: int) -> SequenceStore:
        """A store over n_users users with `data`'s events (users mapped by user_map) appended."""
        old_users = len(self.items)
        users = np.arange(n_users)
        its, evs, tss = self.rows(np.arange(old_users))
        its += [np.empty(0, np.int64)] * (n_users - old_users)
        evs += [np.empty(0, np.int64)] * (n_users - old_users)
        tss += [np.empty(0, np.int64)] * (n_users - old_users)
        ptr = data.indptr
        for u in np.flatnonzero(np.diff(ptr) > 0):
            m = user_map[u]
            sl = slice(ptr[u], ptr[u + 1])
            its[m] = np.concatenate([its[m], data.item_idx[sl]])
            evs[m] = np.concatenate([evs[m], data.event[sl].astype(np.int64)])
            tss[m] = np.concatenate([tss[m], data.timestamp[sl]])
        del users
        return SequenceStore(
            pad_left(its, width, 1, np.int32), pad_left(evs, width, 1, np.int8), pad_left(tss, width, 0, np.int64)
        )


def gap_matrix(items: np.ndarray, times: np.ndarray, n_buckets: int) -> np.ndarray:
    """Gap buckets for left-padded item/time matrices (0 on padding)."""
    gaps = np.zeros(items.shape, dtype=np.int64)
    if items.shape[1] == 0:
        return gaps
    diff = np.diff(times, axis=1).astype(np.float64)
    b = 2 + np.minimum(np.floor(np.log2(1.0 + np.maximum(diff, 0))), n_buckets - 3).astype(np.int64)
    gaps[:, 1:] = b
    real = items > 0
    first = real & ~np.concatenate([np.zeros((len(items), 1), bool), real[:, :-1]], axis=1)
    gaps[first] = UNKNOWN_GAP
    gaps[~real] = 0
    return gaps


# ---- losses ---------------------------------------------------------------------------------
def sequence_loss(
    net: nn.Module,
    hidden: torch.Tensor,
    targets: torch.Tensor,
    negatives: torch.Tensor | None,
    log_q: torch.Tensor | None,
) -> torch.Tensor:
    """Summed cross-entropy of the next item at every non-padded position.

    hidden: (B, L, h) network outputs; targets: (B, L) item index + 1, 0 where nothing is
    predicted. Full softmax over the catalogue when negatives is None; otherwise a sampled
    softmax over [the target, the shared negatives], with the logQ correction (each logit minus
    the log of its item's sampling probability) and accidental hits masked out.
    """
    mask = targets > 0
    h = hidden[mask]
    y = targets[mask] - 1
    if negatives is None:
        logits = net.score(h, None)
        return nn.functional.cross_entropy(logits, y, reduction="sum")
    pos = net.score_pairs(h, y)
    neg = net.score(h, negatives)
    if log_q is not None:
        pos = pos - log_q[y]
        neg = neg - log_q[negatives]
    neg = neg.masked_fill(negatives[None, :] == y[:, None], float("-inf"))
    logits = torch.cat([pos[:, None], neg], dim=1)
    return nn.functional.cross_entropy(logits, torch.zeros_like(y), reduction="sum")


# ---- early stopping and checkpoints ---------------------------------------------------------
class EarlyStopping:
    """Tracks the best validation score and its weights; stops after `patience` worse checks."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best = -math.inf
        self.best_epoch = -1
        self.bad = 0
        self.best_state: dict[str, torch.Tensor] | None = None

    def update(self, score: float, epoch: int, net: nn.Module) -> bool:
        """Record a check; returns True when training should stop."""
        if score > self.best:
            self.best, self.best_epoch, self.bad = score, epoch, 0
            self.best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            self.bad += 1
        return self.bad >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad": self.bad, "best_state": self.best_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.bad = state["best"], state["best_epoch"], state["bad"]
        self.best_state = state["best_state"]


def save_checkpoint(directory: str | Path, payload: dict[str, Any]) -> Path:
    """Write `payload` to directory/last.pt atomically (a crash never leaves half a file)."""
    path = Path(directory) / CHECKPOINT_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(directory: str | Path) -> dict[str, Any] | None:
    """The payload of directory/last.pt, or None when there is none. Tensors load on the CPU."""
    path = Path(directory) / CHECKPOINT_NAME
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file: say which
        raise ModelFormatError(f"{path}: not a shoprec training checkpoint ({exc}).") from exc


# ---- the common base class ------------------------------------------------------------------
class NeuralSequenceRecommender(Recommender):
    """Base of the neural next-item models: history store, training loop, scoring, growth.

    Subclasses set `name`, define `__init__` (storing parameters only), `_validate()` (returning
    nothing, raising ConfigError naming a bad parameter) and `_build_net(n_items, text_dim)`,
    which returns an nn.Module with:

    - `forward(items, events, gaps) -> hidden (B, L, h)`: a representation at every position
      (it must only look at positions <= its own), items/events/gaps left-padded, 0 = padding;
    - `score(hidden (N, h), candidates (K,) | None) -> (N, K or n_items)`;
    - `score_pairs(hidden (N, h), items (N,)) -> (N,)`;
    - `item_tables() -> list[(nn.Parameter, offset)]`: the per-item parameter rows (offset 1
      where row 0 is padding), grown when the catalogue grows;
    - optionally a `text_features` buffer (n_items, 384) when text fusion is on.
    """

    sequential: ClassVar[bool] = True
    #: Optional callable receiving a dict per epoch (epoch, loss, valid_ndcg, seconds, ...).
    progress: Callable[[dict[str, Any]], None] | None = None

    # -- parameters shared by subclasses (validated once here) --
    def _validate_common(self) -> None:
        where = type(self).__name__
        check_int("max_len", self.max_len, 1, 10_000, where)
        check_int("epochs", self.epochs, 0, 100_000, where)
        check_int("batch_size", self.batch_size, 1, 1_000_000, where)
        check_float("lr", self.lr, 1e-8, 10.0, where)
        check_float("weight_decay", self.weight_decay, 0.0, 10.0, where)
        check_float("dropout", self.dropout, 0.0, 0.95, where)
        check_int("patience", self.patience, 1, 100_000, where)
        check_int("eval_every", self.eval_every, 1, 100_000, where)
        if self.valid_users is not None:
            check_int("valid_users", self.valid_users, 1, 100_000_000, where)
        check_choice("loss", self.loss, LOSSES, where)
        check_int("n_negatives", self.n_negatives, 1, 1_000_000, where)
        check_choice("negative_sampling", self.negative_sampling, SAMPLERS, where)
        check_int("seed", self.seed, 0, 2**31 - 1, where)
        if self.max_seconds is not None:
            check_float("max_seconds", self.max_seconds, 1e-3, 1e9, where)
        if self.checkpoint_dir is not None and not isinstance(self.checkpoint_dir, str):
            raise ConfigError(
                f"The 'checkpoint_dir' parameter of {where} must be a str path or None. "
                f"Got {self.checkpoint_dir!r} instead."
            )
        for flag in ("resume", "verbose", "bucket_by_length"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(f"The {flag!r} parameter of {where} must be a bool. Got {getattr(self, flag)!r} instead.")
        if self.resume and self.checkpoint_dir is None:
            raise ConfigError(f"The 'resume' parameter of {where} needs 'checkpoint_dir' to be set.")
        resolve_device(self.device, where)

    def _validate(self) -> None:
        self._validate_common()

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

    # -- fitting ---------------------------------------------------------------------------
    def _fit(self, train: Dataset, valid: sp.csr_matrix | None = None) -> None:
        self._validate()
        self.device_ = resolve_device(self.device)
        self.store_ = SequenceStore.from_dataset(train, self.max_len + 1)
        counts = np.bincount(train.event, minlength=len(EVENT_TYPES))
        self.default_event_ = int(np.argmax(counts))
        self.item_counts_ = np.bincount(train.item_idx, minlength=train.n_items).astype(np.float64)
        with seeded(self.seed, self.device_):
            text = self._text_matrix(train)
            self.net_ = self._build_net(train.n_items, 0 if text is None else text.shape[1])
            if text is not None:
                self._init_text(text)
            self.net_.to(self.device_)
            rank = world()[0]
            if rank:  # identical initial weights on every rank, different dropout masks
                torch.manual_seed(self.seed + rank)
            self._valid_history = train
            try:
                self.history_ = self._train(self.store_, valid, self.epochs, resume=self.resume)
            finally:
                del self._valid_history
            self._after_fit(train, text)
        self.store_ = SequenceStore(self.store_.items[:, 1:], self.store_.events[:, 1:], self.store_.times[:, 1:])

    def _train(
        self, store: SequenceStore, valid: sp.csr_matrix | None, epochs: int, resume: bool, users: np.ndarray | None = None
    ) -> list[dict[str, Any]]:
        """The training loop. `store` has width max_len + 1: inputs and next-item targets."""
        net, device = self.net_, self.device_
        rank, world_size = world()
        if self.batch_size % world_size:
            raise ConfigError(
                f"The 'batch_size' parameter ({self.batch_size}) must be divisible by the number of "
                f"processes ({world_size})."
            )
        store_lengths = (store.items > 0).sum(axis=1)
        users = np.flatnonzero(store_lengths >= 2) if users is None else users
        if len(users) == 0:
            return []
        lengths = store_lengths[users]
        optimizer = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        model = net
        if world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            # Buffers (text vectors) are equal on every rank and constant: no need to broadcast.
            model = DistributedDataParallel(
                net, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False
            )
        log_q = None
        sampler_p = None
        if self.loss == "sampled":
            counts = self.item_counts_ if self.negative_sampling == "popularity" else np.ones(len(self.items_))
            p = np.asarray(counts, np.float64) + (1e-3 if self.negative_sampling == "popularity" else 0.0)
            p = p ** (0.75 if self.negative_sampling == "popularity" else 1.0)
            p /= p.sum()
            sampler_p = torch.as_tensor(p, dtype=torch.float32, device=device)
            log_q = torch.log(sampler_p)
        stopper = EarlyStopping(self.patience)
        start_epoch, history = 0, []
        ckpt_dir = self.checkpoint_dir
        if resume and ckpt_dir is not None:
            ckpt = load_checkpoint(ckpt_dir)
            if ckpt is not None:
                if ckpt.get("n_items") != net_items(net) or ckpt.get("model") != self.name:
                    raise ModelFormatError(
                        f"{ckpt_dir}: the checkpoint is from another model or catalogue; "
                        "use a fresh checkpoint_dir or resume=False."
                    )
                net.load_state_dict(ckpt["net"])
                optimizer.load_state_dict(ckpt["optimizer"])
                stopper.load_state_dict(ckpt["stopper"])
                states = ckpt["rng"]
                set_rng_state(states[rank % len(states)], device)
                start_epoch, history = ckpt["epoch"] + 1, list(ckpt["history"])
        has_valid = valid is not None and valid.nnz > 0
        valid_rows = self._valid_rows(valid) if has_valid else None
        bar = None
        if self.verbose and rank == 0:
            from tqdm.auto import tqdm

            bar = tqdm(total=epochs, initial=start_epoch, desc=f"{self.name} epochs", unit="epoch", leave=False)
        stopped = bool(history) and stopper.bad >= self.patience
        started = time.perf_counter()
        self.stopped_by_ = "epochs"
        for epoch in range(start_epoch, epochs):
            if stopped:
                self.stopped_by_ = "patience"
                break
            t0 = time.perf_counter()
            net.train()
            total, count = 0.0, 0
            for rows in epoch_batches(
                lengths, epoch, self.seed, self.batch_size, rank, world_size, self.bucket_by_length
            ):
                rows = users[rows]
                # Drop the columns that are padding for every row of the batch.
                width = max(int(store_lengths[rows].max()), 2)
                its, tms = store.items[rows, -width:], store.times[rows, -width:]
                items = torch.as_tensor(its, dtype=torch.long, device=device)
                events = torch.as_tensor(store.events[rows, -width:], dtype=torch.long, device=device)
                gaps = torch.as_tensor(gap_matrix(its, tms, self._n_buckets()), device=device)
                # A target is predicted only from a real input: the item after the left padding has
                # no history to predict it from (SASRec never scores it either), and its padded
                # input position would attend to the whole rotated row, the target included.
                targets = items[:, 1:] * (items[:, :-1] > 0)
                n_local = torch.tensor([(targets > 0).sum().item()], dtype=torch.float64, device=device)
                n_global = float(all_reduce_sum(n_local.clone()).item())
                negatives = None
                if sampler_p is not None:
                    negatives = torch.multinomial(sampler_p, self.n_negatives, replacement=True)
                hidden = model(items[:, :-1], events[:, :-1], gaps[:, :-1])
                loss_sum = sequence_loss(net, hidden, targets, negatives, log_q)
                # DDP averages gradients over ranks, so scale by world size to get the global mean.
                loss = loss_sum * (world_size / max(n_global, 1.0))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss_sum.detach())
                count += int(n_local.item())
            sums = all_reduce_sum(torch.tensor([total, float(count)], dtype=torch.float64, device=device))
            entry: dict[str, Any] = {
                "epoch": epoch + 1,
                "loss": float(sums[0] / max(float(sums[1]), 1.0)),
                "seconds": time.perf_counter() - t0,
            }
            if has_valid and ((epoch + 1) % self.eval_every == 0 or epoch + 1 == epochs):
                t1 = time.perf_counter()
                entry["valid_ndcg"] = self._validate_ndcg(valid, valid_rows, rank, world_size)
                entry["valid_seconds"] = time.perf_counter() - t1
                stopped = stopper.update(entry["valid_ndcg"], epoch + 1, net)
            history.append(entry)
            if ckpt_dir is not None:
                rngs = self._gather_rng(device, world_size)
                if rank == 0:
                    save_checkpoint(
                        ckpt_dir,
                        {
                            "model": self.name,
                            "n_items": net_items(net),
                            "epoch": epoch,
                            "net": net.state_dict(),
                            "optimizer": optimizer.state_dict(),
                            "stopper": stopper.state_dict(),
                            "rng": rngs,
                            "history": history,
                        },
                    )
                if world_size > 1:
                    import torch.distributed as dist

                    dist.barrier()
            self._report(entry, bar)
            if self.max_seconds is not None and epoch + 1 < epochs:
                # Stop before an epoch as long as the last one would overrun the time budget.
                elapsed = time.perf_counter() - started
                last = time.perf_counter() - t0
                over = torch.tensor([float(elapsed + last > self.max_seconds)], dtype=torch.float64)
                if float(all_reduce_sum(over.to(device)).item()) > 0:  # every rank stops together
                    self.stopped_by_ = "max_seconds"
                    break
        else:
            if stopped:
                self.stopped_by_ = "patience"
        if bar is not None:
            bar.close()
        if stopper.best_state is not None:
            net.load_state_dict(stopper.best_state)
            self.best_epoch_ = stopper.best_epoch
        else:
            self.best_epoch_ = len(history)
        net.eval()
        return history

    def _gather_rng(self, device: torch.device, world_size: int) -> list[dict[str, torch.Tensor]]:
        state = rng_state(device)
        if world_size == 1:
            return [state]
        import torch.distributed as dist

        out: list[Any] = [None] * world_size
        dist.all_gather_object(out, {k: v.cpu() for k, v in state.items()})
        return out

    def _report(self, entry: dict[str, Any], bar) -> None:
        text = f"{self.name} epoch {entry['epoch']}: loss {entry['loss']:.4f}" + (
            f", valid NDCG@10 {entry['valid_ndcg']:.4f}" if "valid_ndcg" in entry else ""
        ) + f" ({entry['seconds']:.1f}s)"
        log.info(text)
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(text.split(": ", 1)[1])
        if self.progress is not None:
            self.progress(dict(entry))

    def _n_buckets(self) -> int:
        return int(getattr(self, "n_time_buckets", 32))

    def _valid_rows(self, valid: sp.csr_matrix) -> np.ndarray:
        users = np.flatnonzero(np.diff(valid.indptr) > 0)
        if self.valid_users is not None and len(users) > self.valid_users:
            users = np.sort(np.random.default_rng(self.seed).choice(users, self.valid_users, replace=False))
        return users

    def _validate_ndcg(self, valid: sp.csr_matrix, users: np.ndarray, rank: int, world_size: int) -> float:
        """Mean NDCG@10 of the validation targets predicted from the training histories.

        Uses the shared protocol (`evaluate_scores`, full ranking, training items masked). Under
        DDP each rank scores every world_size-th validation user and the sums are all-reduced.
        """
        from shoprec.evaluate.protocol import evaluate_scores

        mine = users[rank::world_size]
        total, count = 0.0, 0
        if len(mine):
            keep = np.zeros(valid.shape[0], dtype=np.float32)
            keep[mine] = 1.0
            targets = sp.diags(keep) @ valid
            history = self._valid_history
            store = self.store_
            try:
                result = evaluate_scores(
                    lambda u: self._score_histories(*store.rows(u)), history, targets.tocsr(), (10,)
                )
                total, count = result.metrics["NDCG@10"] * result.n_users, result.n_users
            except EmptyDataError:  # every target of this shard is already in its history
                pass
        sums = all_reduce_sum(torch.tensor([total, float(count)], dtype=torch.float64, device=self.device_))
        return float(sums[0] / max(float(sums[1]), 1.0))

    # -- scoring ---------------------------------------------------------------------------
    def _score_histories(
        self,
        histories: list[np.ndarray],
        events: list[np.ndarray] | None = None,
        timestamps: list[np.ndarray] | None = None,
    ) -> np.ndarray:
        net = self.net_
        net.eval()
        out = np.empty((len(histories), net_items(net)), dtype=np.float32)
        width = self.max_len
        for start in range(0, len(histories), 256):
            hs = histories[start : start + 256]
            items = pad_left(hs, width, 1)
            if events is None:
                evs = pad_left([np.full(len(h), self.default_event_) for h in hs], width, 1)
            else:
                evs = pad_left(events[start : start + 256], width, 1)
            if timestamps is None:
                gaps = np.where(items > 0, UNKNOWN_GAP, 0)
            else:
                gaps = gap_matrix(items, pad_left(timestamps[start : start + 256], width), self._n_buckets())
            with torch.no_grad():
                t = lambda a: torch.as_tensor(a, dtype=torch.long, device=self.device_)
                hidden = net(t(items), t(evs), t(gaps))[:, -1]
                out[start : start + len(hs)] = net.score(hidden, None).float().cpu().numpy()
        return out

    def _score_known_users(self, users: np.ndarray) -> np.ndarray:
        its, evs, tss = self.store_.rows(np.asarray(users))
        return self._score_histories(its, evs, tss)

    def score_users(self, users: np.ndarray, history: Dataset | None = None) -> np.ndarray:
        """As Recommender.score_users; a given history's timestamps feed the time-gap features."""
        if history is None or not getattr(self, "time_gaps", False):
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
        width = self.max_len + 1
        touched = np.unique(user_map[new_data.user_idx])
        with seeded(self.seed + 1 + len(getattr(self, "history_", [])), self.device_):
            if n_new > n_old:
                self._grow(new_data, n_old, n_new)
            self.items_ = new_data.items
            self.item_counts_ = np.concatenate([self.item_counts_, np.zeros(n_new - n_old)])
            self.item_counts_ += np.bincount(new_data.item_idx, minlength=n_new)
            old = SequenceStore(
                np.pad(self.store_.items, ((0, 0), (1, 0))),
                np.pad(self.store_.events, ((0, 0), (1, 0))),
                np.pad(self.store_.times, ((0, 0), (1, 0))),
            )
            store = old.appended(new_data, user_map, len(users), width)
            self.users_ = users
            trainable = touched[(store.items[touched] > 0).sum(axis=1) >= 2]
            self.history_ = list(getattr(self, "history_", [])) + self._train(
                store, None, epochs, resume=False, users=trainable
            )
        self.store_ = SequenceStore(store.items[:, 1:], store.events[:, 1:], store.times[:, 1:])
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
        if hasattr(self.net_, "text_features") or getattr(self, "text_init", False):
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
        self._validate()
        self.device_ = resolve_device(self.device)
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


def net_items(net: nn.Module) -> int:
    """Number of items a network scores (its first item table's rows minus the offset)."""
    param, offset = net.item_tables()[0]
    return int(param.shape[0]) - offset
