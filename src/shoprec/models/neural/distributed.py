"""Data-parallel training under torchrun: the process group, and each rank's share of a batch.

Everything here is a no-op in a single process, so the training loop is written once. When a
process group is up, each global batch of `batch_size` users (a seeded permutation per epoch, as
`DistributedSampler` makes it) is split into disjoint, interleaved shards of batch_size / N
users, one per rank; the loss is normalised by the number of predicted positions in the *global*
batch and DistributedDataParallel averages gradients, so N processes compute the same update as
one process with the same global batch (up to float summation order).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

__all__ = [
    "BUCKET_SPAN",
    "all_reduce_sum",
    "barrier",
    "epoch_batches",
    "epoch_order",
    "gather_objects",
    "init_from_env",
    "shutdown",
    "world",
]

BUCKET_SPAN = 32  # global batches whose users are sorted by length together when bucketing


def world() -> tuple[int, int]:
    """(rank, world size) of the current process group, or (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env(device: torch.device) -> torch.device:
    """Join the process group torchrun describes in the environment (RANK, WORLD_SIZE, ...).

    gloo on CPU, nccl on CUDA with each rank on the GPU of its LOCAL_RANK. Returns the device
    this rank trains on. Without torchrun's variables (or with one process) nothing happens.
    """
    import torch.distributed as dist

    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    if device.type == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def shutdown() -> None:
    """Leave the process group together (a rank that tears gloo down while its peer still talks
    to it can abort the peer: "terminate called without an active exception")."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum `values` over the ranks in place (and return them); unchanged in one process."""
    import torch.distributed as dist

    if world()[1] > 1:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    import torch.distributed as dist

    if world()[1] > 1:
        dist.barrier()


def gather_objects(value: Any) -> list[Any]:
    """`value` from every rank, in rank order ([value] in one process)."""
    world_size = world()[1]
    if world_size == 1:
        return [value]
    import torch.distributed as dist

    out: list[Any] = [None] * world_size
    dist.all_gather_object(out, value)
    return out


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
