"""`shoprec train`: fit a model and save it with a JSON sidecar (what it was trained on, when, how).

    shoprec train --data PATH --format FORMAT --model NAME --out DIR [--param KEY=VALUE ...]
        [--protocol loo|temporal|random|none] [--full]

Under torchrun the same command trains data-parallel (the neural models): every process loads
the same data and builds the same model from the same seed, each global batch is split over
the processes (`shoprec.models.neural.distributed`), and rank 0 writes the files:

    torchrun --nproc_per_node=2 -m shoprec.cli train --data ... --model transformer --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shoprec.cli.common import add_data_args, check_model_params, fit_named, prepare, say
from shoprec.cli.params import parse_params

__all__ = ["add_parser"]


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="fit a model and save it (data-parallel under torchrun)")
    add_data_args(p, extra_protocols=("none",))
    p.add_argument("--model", required=True)
    p.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="model hyperparameter (see `shoprec models --params NAME`)")
    p.add_argument("--out", required=True, help="directory to write the model file and its sidecar into")
    p.add_argument("--full", action="store_true",
                   help="after fitting on the split (validation for early stopping), refit on every event")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    params = parse_params(args.param)
    check_model_params(args.model, params)
    distributed = "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1
    if not distributed:
        return _train(args, params, rank=0, world_size=1)
    from shoprec.models.neural.device import resolve_device
    from shoprec.models.neural.distributed import init_from_env, shutdown, world

    device = init_from_env(resolve_device(str(params.get("device", "auto"))))
    try:
        rank, world_size = world()
        return _train(args, {**params, "device": str(device)}, rank, world_size)
    finally:
        shutdown()


def _train(args: argparse.Namespace, params: dict[str, Any], rank: int, world_size: int) -> int:
    from shoprec.models.registry import make_model

    if rank:
        args.quiet = True  # one progress bar, one set of messages: rank 0's
    _, data, parts = prepare(args)
    train, valid = (data, None) if parts is None else (parts.train, parts.valid)
    model, fit_seconds = fit_named(args, args.model, train, valid, params)
    if args.full and parts is not None:
        # Refit on every event (train + valid + test) for serving, with the same parameters.
        t0 = time.perf_counter()
        model = make_model(args.model, **model.get_params()).fit(data)
        fit_seconds = time.perf_counter() - t0
    say(args, f"fitted {args.model} in {fit_seconds:.1f}s")
    if rank:
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = model.save(out / f"{args.model}.npz")
    sidecar = {
        "model": args.model,
        "params": model.get_params(),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "fit_seconds": round(fit_seconds, 3),
        "data": str(args.data),
        "format": args.format,
        "protocol": args.protocol,
        "refit_on_all_events": bool(args.full and parts is not None),
        "n_users": int(data.n_users),
        "n_items": int(data.n_items),
        "n_events": len(data),
        "world_size": world_size,
    }
    if hasattr(model, "history_"):
        sidecar.update(best_epoch=getattr(model, "best_epoch_", None), training_log=model.training_log)
    path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2, default=float) + "\n")
    print(path)
    return 0
