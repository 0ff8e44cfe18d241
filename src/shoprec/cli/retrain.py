"""`shoprec retrain`: one run of the service's online learning job, for cron.

    shoprec retrain --db URL --model PATH [--out DIR] [--min-events 100] [--epochs 1] [--no-follow]

Fine-tunes the model the service serves now on the events stored since its data window (its
sidecar): the file the newest swapped run of this database wrote, or PATH before there is one
(`--no-follow`: always PATH), so one cron line keeps following the served model. It checks
the result on each shopper's newest event against the model as it is, and writes the new model
file (with its sidecar) only when it is not worse; prints what happened. The run is recorded in
the database's `retrains` table, which the dashboard shows; a service started with
`--workers N` (or `SHOPREC_FOLLOW_RETRAINS_S`) loads the new file in every worker within that
many seconds; otherwise `POST /v1/model/reload` (`{"path": "<file name>"}`) picks it up.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from shoprec.cli.common import say

__all__ = ["add_parser"]


def add_parser(sub) -> None:
    p = sub.add_parser("retrain", help="fine-tune a served model on the new events in the service's database")
    p.add_argument("--db", required=True, help="the service's database URL")
    p.add_argument("--model", required=True, help="the model file (.npz) the service serves")
    p.add_argument("--out", default=None, help="directory for the new model file (default: the model's)")
    p.add_argument("--min-events", type=int, default=100, help="new events needed before fine-tuning")
    p.add_argument("--epochs", type=int, default=1, help="passes over the new events")
    p.add_argument("--no-follow", action="store_true",
                   help="fine-tune exactly --model, even when an earlier run swapped in a newer file")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from shoprec.errors import ConfigError, check_int
    from shoprec.models.base import Recommender
    from shoprec.serve.online import record_outcome, retrain_once
    from shoprec.serve.storage import Store

    check_int("min_events", args.min_events, 1, 1 << 40, "shoprec retrain")
    check_int("epochs", args.epochs, 1, 1000, "shoprec retrain")
    path = Path(args.model)
    if not args.no_follow:
        path = _newest_served(args, path)
    model = Recommender.load(path)
    sidecar = path.with_suffix(".json")
    info = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    if (info.get("data_window") or {}).get("last_event_id") is None:
        raise ConfigError(f"{sidecar} does not say which stored events {path.name} was trained on; train it "
                          "with `shoprec train --db URL` (or let the service train it) so that its sidecar "
                          "records its data window.")
    store = Store(args.db)
    try:
        store.migrate()
        run_id = store.start_retrain("cli")
        outcome, _ = retrain_once(store, model, info, Path(args.out or path.parent), args.min_events, args.epochs,
                                  log=lambda m: say(args, m))
        record_outcome(store, run_id, outcome)
    finally:
        store.dispose()
    print(f"{outcome.status}: {outcome.message}")
    if outcome.model_path:
        print(outcome.model_path)
    return 0


def _newest_served(args: argparse.Namespace, path: Path) -> Path:
    """The model file the newest swapped run of this database wrote, when it exists; else `path`
    (so that the same cron line keeps fine-tuning the model the service serves now)."""
    from shoprec.serve.storage import Store

    store = Store(args.db)
    try:
        store.migrate()
        latest = store.latest_swapped_model()
    finally:
        store.dispose()
    if latest is None or Path(latest["model_path"]) == path:
        return path
    newer = Path(latest["model_path"])
    if not newer.is_file():
        say(args, f"retrain run {latest['id']} wrote {newer}, which is gone; fine-tuning {path}")
        return path
    say(args, f"fine-tuning {newer.name}, which retrain run {latest['id']} swapped in after {path.name}")
    return newer
