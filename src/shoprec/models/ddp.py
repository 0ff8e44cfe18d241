"""Data-parallel training of the neural sequence models under torchrun.

    torchrun --nproc_per_node=N -m shoprec.models.ddp --data PATH --format sequence --out DIR \\
        [--model transformer] [--param KEY=VALUE ...] [--protocol loo|none]

Every process loads the same data and builds the same model from the same seed. Training runs the
library's ordinary `fit`: when a process group is up, each global batch of `batch_size` users
(a seeded permutation per epoch, as `DistributedSampler` makes it) is split into disjoint,
interleaved shards of batch_size / N users, one per rank; the loss is normalised by the number
of predicted positions in the *global* batch and DistributedDataParallel averages gradients, so
N processes compute the same update as one process with the same global batch (up to float
summation order). Validation users are sharded the same way and their NDCG sums all-reduced, so
every rank takes the same early-stopping decision.

Backend: gloo on CPU, nccl on CUDA (each rank on the GPU of its LOCAL_RANK). Rank 0 writes
`DIR/<model>.npz` (a normal shoprec model file) and `DIR/train_log.json`. Without torchrun the
script runs as a single process, which is the reference a multi-process run must match.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from shoprec.errors import ShoprecError


def _parse(argv: list[str] | None) -> argparse.Namespace:
    from shoprec.data.readers import FORMATS

    p = argparse.ArgumentParser(prog="python -m shoprec.models.ddp", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="the behaviour log")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out", required=True, help="folder for the model file and the training log")
    p.add_argument("--model", default="transformer", choices=("transformer", "ncf", "caser"))
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="model hyperparameter")
    p.add_argument(
        "--protocol",
        default="loo",
        choices=("loo", "none"),
        help="loo: train on the leave-one-out train part with early stopping on its validation "
        "items; none: train on every event for the given epochs",
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (each rank takes its LOCAL_RANK GPU)")
    return p.parse_args(argv)


def _params(pairs: list[str] | None) -> dict:
    """KEY=VALUE strings -> parameters; values parse as JSON where they can (3, 0.1, true, [8])."""
    params = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--param expects KEY=VALUE. Got {pair!r} instead.")
        try:
            params[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            params[key.replace("-", "_")] = value
    return params


def run(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 on success)."""
    import torch
    import torch.distributed as dist

    from shoprec.data.readers import load
    from shoprec.data.split import leave_one_out
    from shoprec.models.registry import make_model
    from shoprec.models.torch_utils import resolve_device

    args = _parse(argv)
    params = _params(args.param)
    distributed = "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1
    device = resolve_device(args.device)
    if distributed:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            torch.cuda.set_device(local_rank)
            device = torch.device("cuda", local_rank)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank() if distributed else 0
    world_size = dist.get_world_size() if distributed else 1
    try:
        data = load(args.data, args.format).dataset()
        model = make_model(args.model, **{**params, "device": str(device)})
        started = time.perf_counter()
        if args.protocol == "loo":
            parts = leave_one_out(data)
            model.fit(parts.train, parts.valid)
        else:
            model.fit(data)
        seconds = time.perf_counter() - started
        if rank == 0:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            model.save(out / f"{args.model}.npz")
            log = {
                "model": args.model,
                "params": model.get_params(),
                "world_size": world_size,
                "device": str(device),
                "fit_seconds": seconds,
                "best_epoch": getattr(model, "best_epoch_", None),
                "epochs": model.training_log,
            }
            (out / "train_log.json").write_text(json.dumps(log, indent=2, default=float))
    except ShoprecError as exc:
        print(f"error (rank {rank}): {exc}", file=sys.stderr)
        return 2
    finally:
        if distributed:
            # Leave together: a rank that tears gloo down while its peer still talks to it can
            # abort the peer ("terminate called without an active exception").
            dist.barrier()
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(run())
