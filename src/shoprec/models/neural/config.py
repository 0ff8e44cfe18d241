"""The hyperparameters every torch model shares, as one frozen, validated dataclass.

Each neural model declares its own config as a subclass of `TrainingConfig` that adds the
network's fields (and may change a default); the model's constructor takes exactly those fields
(`Recommender.config_class`), `fit` validates them by building the frozen config, and the
training loop reads nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

from shoprec.errors import (
    ConfigError,
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_optional_str,
)
from shoprec.models.neural.device import check_device
from shoprec.models.neural.losses import LOSSES, SAMPLERS

__all__ = ["TrainingConfig"]


@dataclass(frozen=True)
class TrainingConfig:
    """How a neural sequence model trains.

    Args:
        max_len: recent events per history the model reads (the most recent ones).
        dropout: dropout rate of the network, in [0, 0.95].
        loss: "full" (softmax over the whole catalogue, as SASRec+) or "sampled" (sampled softmax
            over `n_negatives` negatives shared by the batch, with the logQ correction).
        n_negatives: negatives per batch for loss="sampled".
        negative_sampling: "uniform" or "popularity" (training counts ** 0.75) for loss="sampled".
        epochs: most passes over the training users.
        batch_size: users per global batch (split over the processes under torchrun).
        bucket_by_length: batch users of similar history length together (batches still shuffled);
            on ML-1M it saved ~10% of an epoch's CPU time and slowed convergence per epoch.
        length_groups: the rows of each batch, sorted by history length, go through the network
            in up to this many groups, each only as wide as its longest row (1: the whole batch
            at the width of its longest row). The groups' gradients add up to the batch's before
            the one optimizer step, so this changes the cost of a batch, not what it teaches;
            at 200 events on ML-1M, 4 groups compute a third fewer positions than 1.
        lr: Adam's learning rate.
        weight_decay: Adam's weight decay.
        sparse_item_grads: with loss="sampled", the item table gets sparse gradients and a lazy
            Adam (`torch.optim.SparseAdam`): a step reads and writes only the rows of the items the
            batch touched (its inputs, targets and negatives), not the whole table. At a million
            items it trained 40,015 targets a second against the dense table's 1,341
            (benchmarks/sparse_items.py). Lazy Adam differs from Adam in that an untouched
            row's moments do not decay. Needs weight_decay 0; under torchrun DDP all-reduces
            the sparse gradients (tested on CPU with gloo); models without sparse item tables
            refuse it.
        patience: validation checks without improvement before stopping (when fit gets valid).
        eval_every: epochs between validation checks.
        valid_users: check validation NDCG@10 on a seeded sample of this many users (None: all).
        checkpoint_dir: write a checkpoint there after every epoch (None: no checkpoints).
        resume: continue from checkpoint_dir's checkpoint when there is one.
        max_seconds: wall-time budget of training; no epoch starts that would end past it, judging
            by the last epoch, and an epoch still running when the budget is spent stops after
            that batch (its record says which share of the epoch ran; validation then checks it).
            None: no limit; the result then depends on the machine's speed.
        device: "auto" (CUDA when present), "cpu", "cuda" or "cuda:N".
        seed: same seed, same model.
        verbose: show a progress bar (loss, validation NDCG@10) on stderr.
    """

    max_len: int = 50
    dropout: float = 0.2
    loss: str = "full"
    n_negatives: int = 256
    negative_sampling: str = "uniform"
    epochs: int = 200
    batch_size: int = 128
    bucket_by_length: bool = False
    length_groups: int = 4
    lr: float = 1e-3
    weight_decay: float = 0.0
    sparse_item_grads: bool = False
    patience: int = 10
    eval_every: int = 1
    valid_users: int | None = None
    checkpoint_dir: str | None = None
    resume: bool = False
    max_seconds: float | None = None
    device: str = "auto"
    seed: int = 0
    verbose: bool = False

    def __post_init__(self) -> None:
        where = type(self).__name__
        check_int("max_len", self.max_len, 1, 10_000, where)
        check_float("dropout", self.dropout, 0.0, 0.95, where)
        check_choice("loss", self.loss, LOSSES, where)
        check_int("n_negatives", self.n_negatives, 1, 1_000_000, where)
        check_choice("negative_sampling", self.negative_sampling, SAMPLERS, where)
        check_int("epochs", self.epochs, 0, 100_000, where)
        check_int("batch_size", self.batch_size, 1, 1_000_000, where)
        check_int("length_groups", self.length_groups, 1, 1024, where)
        check_float("lr", self.lr, 1e-8, 10.0, where)
        check_float("weight_decay", self.weight_decay, 0.0, 10.0, where)
        check_int("patience", self.patience, 1, 100_000, where)
        check_int("eval_every", self.eval_every, 1, 100_000, where)
        if self.valid_users is not None:
            check_int("valid_users", self.valid_users, 1, 100_000_000, where)
        check_optional_str("checkpoint_dir", self.checkpoint_dir, where)
        for flag in ("bucket_by_length", "sparse_item_grads", "resume", "verbose"):
            check_bool(flag, getattr(self, flag), where)
        if self.sparse_item_grads and self.loss != "sampled":
            raise ConfigError(
                f"The 'sparse_item_grads' parameter of {where} needs loss='sampled': the full softmax "
                "gives every item a gradient at every step, so sparse updates would only be slower."
            )
        if self.sparse_item_grads and self.weight_decay:
            raise ConfigError(
                f"The 'sparse_item_grads' parameter of {where} needs weight_decay=0: the sparse item "
                "optimizer (SparseAdam) has no weight decay."
            )
        if self.resume and self.checkpoint_dir is None:
            raise ConfigError(f"The 'resume' parameter of {where} needs 'checkpoint_dir' to be set.")
        if self.max_seconds is not None:
            check_float("max_seconds", self.max_seconds, 1e-3, 1e9, where)
        check_device(self.device, where)
        check_int("seed", self.seed, 0, 2**31 - 1, where)
