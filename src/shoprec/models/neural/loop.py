"""The training loop of the neural sequence models: next-item loss at every position, early
stopping on validation NDCG@10, per-epoch checkpoints, a time budget, and DDP when a process
group is up (see `shoprec.models.neural.distributed`)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from shoprec.data.dataset import Dataset
from shoprec.errors import ConfigError, EmptyDataError, ModelFormatError
from shoprec.evaluate.protocol import evaluate_scores
from shoprec.models.neural.checkpoints import load_checkpoint, save_checkpoint
from shoprec.models.neural.config import TrainingConfig
from shoprec.models.neural.device import rng_state, set_rng_state
from shoprec.models.neural.distributed import (
    all_reduce_sum,
    barrier,
    epoch_batches,
    gather_objects,
    world,
)
from shoprec.models.neural.early_stopping import EarlyStopping
from shoprec.models.neural.losses import negative_sampler, sequence_loss
from shoprec.models.neural.optimizers import make_optimizer
from shoprec.models.neural.sequences import SequenceStore, gap_matrix

__all__ = ["TrainingRun", "Validation", "log_epoch", "net_items", "train_next_item"]

log = logging.getLogger("shoprec.models")


def net_items(net: nn.Module) -> int:
    """Number of items a network scores (its first item table's rows minus the offset)."""
    param, offset = net.item_tables()[0]
    return int(param.shape[0]) - offset


@dataclass(frozen=True)
class Validation:
    """Held-out next items that early stopping scores: NDCG@10 under the full-ranking protocol.

    targets: user x item indicators of the held-out items; history: the log the scores condition
    on (its items are masked); users: the users checked; score: user indices -> scores.
    """

    targets: sp.csr_matrix
    history: Dataset
    users: np.ndarray
    score: Callable[[np.ndarray], np.ndarray]

    @classmethod
    def sample(cls, targets: sp.csr_matrix, history: Dataset, score, n_users: int | None, seed: int) -> Validation:
        """Every user with a target, or a seeded sample of `n_users` of them."""
        users = np.flatnonzero(np.diff(targets.indptr) > 0)
        if n_users is not None and len(users) > n_users:
            users = np.sort(np.random.default_rng(seed).choice(users, n_users, replace=False))
        return cls(targets, history, users, score)

    def ndcg_at_10(self, rank: int, world_size: int, device: torch.device) -> float:
        """Mean NDCG@10 over the users. Under DDP each rank scores every world_size-th user and
        the sums are all-reduced, so every rank takes the same early-stopping decision."""
        mine = self.users[rank::world_size]
        total, count = 0.0, 0
        if len(mine):
            keep = np.zeros(self.targets.shape[0], dtype=np.float32)
            keep[mine] = 1.0
            targets = sp.diags(keep) @ self.targets
            try:
                result = evaluate_scores(self.score, self.history, targets.tocsr(), (10,))
                total, count = result.metrics["NDCG@10"] * result.n_users, result.n_users
            except EmptyDataError:  # every target of this shard is already in its history
                pass
        sums = all_reduce_sum(torch.tensor([total, float(count)], dtype=torch.float64, device=device))
        return float(sums[0] / max(float(sums[1]), 1.0))


@dataclass
class TrainingRun:
    """What a run of the loop did: per-epoch records, the epoch whose weights were kept, and what
    stopped it ("epochs", "patience" or "max_seconds"). ran is False when there was nobody to
    train on (no user with two events)."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    stopped_by: str = "epochs"
    ran: bool = True


def train_next_item(
    net: nn.Module,
    store: SequenceStore,
    config: TrainingConfig,
    device: torch.device,
    *,
    name: str,
    item_counts: np.ndarray,
    n_time_buckets: int,
    epochs: int,
    resume: bool = False,
    users: np.ndarray | None = None,
    validation: Validation | None = None,
    report: Callable[[dict[str, Any]], None] | None = None,
    negative_stream: int = 0,
) -> TrainingRun:
    """Train `net` to predict each next item of the users' sequences in `store`.

    store: width max_len + 1 (inputs and next-item targets); users: rows to train on (default:
    every user with two events or more); item_counts: training counts per item (popularity
    sampling); name: the model's name, checked against a checkpoint when resuming; report: called
    with each epoch's record. The best validation weights are loaded back at the end.
    """
    rank, world_size = world()
    if config.batch_size % world_size:
        raise ConfigError(
            f"The 'batch_size' parameter ({config.batch_size}) must be divisible by the number of "
            f"processes ({world_size})."
        )
    run = TrainingRun()
    store_lengths = store.lengths()
    users = np.flatnonzero(store_lengths >= 2) if users is None else users
    if len(users) == 0:
        return TrainingRun(ran=False)
    lengths = store_lengths[users]
    optimizer = make_optimizer(net, config)
    model = net
    if world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        # Buffers (text vectors) are equal on every rank and constant: no need to broadcast.
        model = DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False
        )
    sampler_p = log_q = None
    if config.loss == "sampled":
        sampler_p, log_q = negative_sampler(item_counts, config.negative_sampling, device)
        negative_rng = torch.Generator(device=device)
    stopper = EarlyStopping(config.patience)
    start_epoch, history = 0, run.history
    ckpt_dir = config.checkpoint_dir
    if resume and ckpt_dir is not None:
        ckpt = load_checkpoint(ckpt_dir)
        if ckpt is not None:
            if ckpt.get("n_items") != net_items(net) or ckpt.get("model") != name:
                raise ModelFormatError(
                    f"{ckpt_dir}: the checkpoint is from another model or catalogue; "
                    "use a fresh checkpoint_dir or resume=False."
                )
            net.load_state_dict(ckpt["net"])
            optimizer.load_state_dict(ckpt["optimizer"])
            stopper.load_state_dict(ckpt["stopper"])
            states = ckpt["rng"]
            set_rng_state(states[rank % len(states)], device)
            start_epoch = ckpt["epoch"] + 1
            history.extend(ckpt["history"])
    has_valid = validation is not None and validation.targets.nnz > 0
    bar = None
    if config.verbose and rank == 0:
        from tqdm.auto import tqdm

        # Under a time budget the epoch count is not known in advance: count epochs and show the
        # time spent instead of a misleading remaining time.
        budget = f" (budget {config.max_seconds:.0f}s)" if config.max_seconds is not None else ""
        bar = tqdm(total=None if budget else epochs, initial=start_epoch, desc=f"{name} epochs{budget}",
                   unit="epoch", leave=False)
    stopped = bool(history) and stopper.exhausted
    started = time.perf_counter()
    for epoch in range(start_epoch, epochs):
        if stopped:
            run.stopped_by = "patience"
            break
        t0 = time.perf_counter()
        net.train()
        total, count = 0.0, 0
        batches = list(epoch_batches(lengths, epoch, config.seed, config.batch_size, rank, world_size,
                                     config.bucket_by_length))
        done = 0
        for rows in batches:
            rows = users[rows]
            # A row of n events has n - 1 targets (see `_group_loss`), which fixes the batch's
            # global mean before any forward.
            n_local = torch.tensor([float(np.maximum(store_lengths[rows] - 1, 0).sum())], dtype=torch.float64,
                                   device=device)
            n_global = float(all_reduce_sum(n_local.clone()).item())
            negatives = None
            if sampler_p is not None:
                # Drawn from a generator seeded by (seed, stream, epoch, step), not the global RNG
                # (which differs by rank, for dropout): every rank shares the step's negatives, so
                # data-parallel training computes the single process's update. Each partial_fit
                # run is its own stream.
                step_seed = np.random.SeedSequence([config.seed, negative_stream, epoch, done]).generate_state(1)[0]
                negative_rng.manual_seed(int(step_seed))
                negatives = torch.multinomial(sampler_p, config.n_negatives, replacement=True,
                                              generator=negative_rng)
            optimizer.zero_grad(set_to_none=True)
            groups = _length_groups(rows, store_lengths, config.length_groups)
            for g, group in enumerate(groups):
                # Under DDP only the last group's backward all-reduces the accumulated gradients.
                sync = world_size == 1 or g == len(groups) - 1
                with contextlib.nullcontext() if sync else model.no_sync():
                    loss_sum = _group_loss(model, net, store, group, store_lengths, n_time_buckets, device,
                                           negatives, log_q)
                    # DDP averages gradients over ranks, so scale by world size to get the global mean.
                    (loss_sum * (world_size / max(n_global, 1.0))).backward()
                total += float(loss_sum.detach())
            optimizer.step()
            count += int(n_local.item())
            done += 1
            if done < len(batches) and _out_of_time(config.max_seconds, started, device):
                # An epoch over a large log can outlast the whole budget: stop inside it.
                run.stopped_by = "max_seconds"
                break
        sums = all_reduce_sum(torch.tensor([total, float(count)], dtype=torch.float64, device=device))
        entry: dict[str, Any] = {
            "epoch": epoch + 1,
            "loss": float(sums[0] / max(float(sums[1]), 1.0)),
            "seconds": time.perf_counter() - t0,
            "targets": int(sums[1]),
        }
        cut_short = done < len(batches)
        if cut_short:
            entry["share_of_epoch"] = done / len(batches)
        if has_valid and ((epoch + 1) % config.eval_every == 0 or epoch + 1 == epochs or cut_short):
            t1 = time.perf_counter()
            entry["valid_ndcg"] = validation.ndcg_at_10(rank, world_size, device)
            entry["valid_seconds"] = time.perf_counter() - t1
            stopped = stopper.update(entry["valid_ndcg"], epoch + 1, net)
        history.append(entry)
        if ckpt_dir is not None:
            rngs = gather_objects({k: v.cpu() for k, v in rng_state(device).items()})
            if rank == 0:
                save_checkpoint(ckpt_dir, {
                    "model": name, "n_items": net_items(net), "epoch": epoch, "net": net.state_dict(),
                    "optimizer": optimizer.state_dict(), "stopper": stopper.state_dict(), "rng": rngs,
                    "history": history,
                })
            barrier()
        log_epoch(name, entry, bar, report)
        if cut_short:
            break
        # Stop before an epoch as long as the last one would overrun the time budget.
        if epoch + 1 < epochs and _out_of_time(config.max_seconds, started, device,
                                               ahead=time.perf_counter() - t0):
            run.stopped_by = "max_seconds"
            break
    else:
        if stopped:
            run.stopped_by = "patience"
    if bar is not None:
        bar.close()
    if stopper.best_state is not None:
        net.load_state_dict(stopper.best_state)
        run.best_epoch = stopper.best_epoch
    else:
        run.best_epoch = len(history)
    net.eval()
    return run


def _out_of_time(max_seconds: float | None, started: float, device: torch.device, ahead: float = 0.0) -> bool:
    """Whether training started at `started` would be past its budget `ahead` seconds from now;
    under DDP every rank takes the same decision (any rank over stops them all)."""
    if max_seconds is None:
        return False
    over = torch.tensor([float(time.perf_counter() - started + ahead > max_seconds)], dtype=torch.float64)
    return float(all_reduce_sum(over.to(device)).item()) > 0


def _length_groups(rows: np.ndarray, lengths: np.ndarray, n_groups: int) -> list[np.ndarray]:
    """The batch's rows sorted by history length, in up to n_groups groups of equal size."""
    ordered = rows[np.argsort(lengths[rows], kind="stable")]
    return [group for group in np.array_split(ordered, min(n_groups, len(ordered))) if len(group)]


def _group_loss(model: nn.Module, net: nn.Module, store: SequenceStore, rows: np.ndarray, lengths: np.ndarray,
                n_time_buckets: int, device: torch.device, negatives: torch.Tensor | None,
                log_q: torch.Tensor | None) -> torch.Tensor:
    """Summed next-item loss of some rows, read only as wide as their longest row."""
    width = max(int(lengths[rows].max()), 2)  # the columns that are padding for every row are dropped
    its, tms = store.items[rows, -width:], store.times[rows, -width:]
    items = torch.as_tensor(its, dtype=torch.long, device=device)
    events = torch.as_tensor(store.events[rows, -width:], dtype=torch.long, device=device)
    gaps = torch.as_tensor(gap_matrix(its, tms, n_time_buckets), device=device)
    # A target is predicted only from a real input: the item after the left padding has no
    # history to predict it from (SASRec never scores it either), and its padded input position
    # would attend to the whole rotated row, the target included.
    targets = items[:, 1:] * (items[:, :-1] > 0)
    hidden = model(items[:, :-1], events[:, :-1], gaps[:, :-1])
    return sequence_loss(net, hidden, targets, negatives, log_q)


def log_epoch(name: str, entry: dict[str, Any], bar, report) -> None:
    """Log an epoch's record, move the progress bar (if any) and pass the record to `report`."""
    text = f"{name} epoch {entry['epoch']}: loss {entry['loss']:.4f}" + (
        f", valid NDCG@10 {entry['valid_ndcg']:.4f}" if "valid_ndcg" in entry else ""
    ) + f" ({entry['seconds']:.1f}s)"
    log.info(text)
    if bar is not None:
        bar.update(1)
        bar.set_postfix_str(text.split(": ", 1)[1])
    if report is not None:
        report(dict(entry))
