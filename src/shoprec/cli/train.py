"""`shoprec train`: fit a model and save it with a JSON sidecar (what it was trained on, when, how
well it did on held-out events, its privacy record), which the service shows when it serves it.

`--epsilon E` trains a private model (dp-ease, dp-item-knn, dp-als, dp-mf, dp-transformer, dp-pop) at
user-level epsilon E (`--delta`, default 1/n^1.1); the model file and its sidecar carry the
accountant's record (epsilon, delta, unit "user", mechanism).

    shoprec train --data PATH --format FORMAT --model NAME --out DIR [--param KEY=VALUE ...]
        [--protocol loo|temporal|random|none] [--full] [--epsilon E [--delta D]]
    shoprec train --db URL [--model auto|NAME] --out DIR [--budget SECONDS]   # from the service's data

Shopper ids of a file are pseudonymised with the service's key (SHOPREC_PSEUDONYM_KEY or
SHOPREC_PSEUDONYM_KEY_FILE) when one is configured, so the model file holds the ids the service
stores; without a key the ids stay as given and the sidecar says so. The service's database
holds pseudonyms already.

Under torchrun the same command trains data-parallel (the neural models): every process loads
the same data and builds the same model from the same seed, each global batch is split over
the processes (`shoprec.models.neural.distributed`), and rank 0 writes the files:

    torchrun --nproc_per_node=2 -m shoprec.cli train --data ... --model transformer --out DIR
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from shoprec.cli.common import add_data_args, check_model_params, fit_named, prepare, say
from shoprec.cli.params import parse_params
from shoprec.errors import ConfigError

__all__ = ["add_parser"]


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="fit a model and save it (data-parallel under torchrun)")
    add_data_args(p, extra_protocols=("none",), required=False)
    p.add_argument("--db", default=None, help="train on the service's database (a SQLAlchemy URL) instead of --data")
    p.add_argument("--budget", type=float, default=90.0, help="with --db: seconds of training for the Transformer")
    p.add_argument("--model", default="auto",
                   help="model name, or 'auto' (with --db: chosen from the data, as `shoprec serve` does)")
    p.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="model hyperparameter (see `shoprec models --params NAME`)")
    p.add_argument("--out", required=True, help="directory to write the model file and its sidecar into")
    p.add_argument("--epsilon", type=float, default=None,
                   help="user-level privacy budget of a private model (dp-*), > 0; inf for its non-private counterpart")
    p.add_argument("--delta", type=float, default=None, help="with --epsilon: delta in (0, 1/n); default 1/n^1.1")
    p.add_argument("--full", action="store_true",
                   help="after fitting on the split (validation for early stopping), refit on every event")
    p.set_defaults(func=run)


def privacy_params(name: str, params: dict[str, Any], epsilon: float | None, delta: float | None) -> dict[str, Any]:
    """`params` with --epsilon / --delta set as the private model's own budget parameters
    (target_epsilon / target_delta, or dp-pop's epsilon / delta); ConfigError for a model
    without a privacy budget, a budget out of range or one given twice."""
    from shoprec.models.registry import model_class, model_names

    if epsilon is None and delta is None:
        return params
    if epsilon is None:
        raise ConfigError("--delta needs --epsilon (the privacy budget it goes with).")
    defaults = model_class(name).param_defaults()
    keys = next(((e, d) for e, d in (("target_epsilon", "target_delta"), ("epsilon", "delta")) if e in defaults), None)
    if keys is None:
        private = [m for m in model_names() if {"target_epsilon", "epsilon"} & set(model_class(m).param_defaults())]
        raise ConfigError(
            f"--epsilon needs a private model; {name!r} has no privacy budget. Private models: {private}."
        )
    if not epsilon > 0:  # NaN fails this too
        raise ConfigError(f"--epsilon must be a number > 0, or inf for no privacy. Got {epsilon} instead.")
    if delta is not None and not 0.0 < delta < 1.0:
        raise ConfigError(f"--delta must be a number in (0, 1) (and below 1/n for n shoppers). Got {delta} instead.")
    out = dict(params)
    for key, value in zip(keys, (epsilon, delta)):
        if key in out:
            raise ConfigError(f"Give the budget once: --param {key}=... and --{key.split('_')[-1]} were both given.")
        if value is not None:
            out[key] = None if key.endswith("epsilon") and value == float("inf") else float(value)
    return out


def run(args: argparse.Namespace) -> int:
    params = parse_params(args.param)
    if args.db is not None:
        if args.epsilon is not None or args.delta is not None:
            if args.model == "auto":
                raise ConfigError("--epsilon needs a named private model (--model dp-ease, say), not auto.")
            params = privacy_params(args.model, params, args.epsilon, args.delta)
        return _train_from_db(args, params)
    if args.data is None:
        raise ConfigError("shoprec train needs --data PATH (a log file) or --db URL (the service's database).")
    if args.model == "auto":
        raise ConfigError("--model auto chooses from a service database; with --data, name the model.")
    check_model_params(args.model, params)
    params = privacy_params(args.model, params, args.epsilon, args.delta)
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
    data, parts, pseudonymised = _pseudonymise(data, parts)
    train, valid = (data, None) if parts is None else (parts.train, parts.valid)
    model, fit_seconds = fit_named(args, args.model, train, valid, params)
    metrics = {}
    if parts is not None:
        from shoprec.evaluate.protocol import evaluate

        result = evaluate(model, parts, k=(10,), catalogue=data.catalogue)
        metrics = {k: float(v) for k, v in result.metrics.items() if isinstance(v, (int, float))}
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
    from shoprec.serve.training import ModelChoice, write_sidecar

    write_sidecar(path, model, data, ModelChoice(args.model, params, "named on the command line"), fit_seconds,
                  metrics, extra={
                      "data": str(args.data), "format": args.format, "split": args.protocol,
                      "refit_on_all_events": bool(args.full and parts is not None), "world_size": world_size,
                      "pseudonymised": pseudonymised, "best_epoch": getattr(model, "best_epoch_", None),
                  })
    print(path)
    return 0


def _pseudonymise(data, parts):
    """The dataset and split with shopper ids pseudonymised by the configured key (the service's),
    or unchanged when no key is configured; returns (data, parts, key id or None)."""
    from shoprec.privacy.pseudonym import ENV_KEY, ENV_KEY_FILE, Pseudonymizer

    if not (os.environ.get(ENV_KEY) or os.environ.get(ENV_KEY_FILE)):
        return data, parts, None
    pseudonymizer = Pseudonymizer.from_env()
    data = data.with_user_ids(pseudonymizer.pseudonymize)
    if parts is not None:
        parts = parts.with_user_ids(pseudonymizer.pseudonymize)
    return data, parts, pseudonymizer.key_id


def _train_from_db(args: argparse.Namespace, params: dict[str, Any]) -> int:
    from shoprec.serve.storage import Store
    from shoprec.serve.training import choose_model, dataset_from_store, train_from_store

    store = Store(args.db)
    try:
        store.migrate()
        data = dataset_from_store(store)
        choice = choose_model(data, args.budget, name=None if args.model == "auto" else args.model)
        check_model_params(choice.name, params)
        choice = replace(choice, params={**choice.params, **params})
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        path = train_from_store(store, out / f"{choice.name}.npz", choice, verbose=not args.quiet,
                                log=lambda m: say(args, m))
    finally:
        store.dispose()
    print(path)
    return 0
