"""`shoprec data report|formats`: a log's data-quality report and statistics; the reader formats."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from shoprec.cli.common import add_data_args, load_data

__all__ = ["add_parser"]


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="inspect data")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    r = data_sub.add_parser("report", help="data-quality report and dataset stats")
    add_data_args(r, split=False)
    r.add_argument("--json", help="write the report as JSON")
    r.set_defaults(func=report)
    f = data_sub.add_parser("formats", help="list the reader formats")
    f.set_defaults(func=formats)


def formats(args: argparse.Namespace) -> int:
    from shoprec.data.readers import FORMATS

    print("\n".join(FORMATS))
    return 0


def report(args: argparse.Namespace) -> int:
    loaded = load_data(args)
    data = loaded.dataset()
    lengths = data.indptr[1:] - data.indptr[:-1]
    stats = {
        "events": len(data),
        "users": int(data.n_users),
        "items": int(data.n_items),
        "items_with_events": int((data.item_popularity() > 0).sum()),
        "density": float(len(data) / max(1, data.n_users * data.n_items)),
        "events_per_user_mean": float(lengths.mean()),
        "events_per_user_median": float(np.median(lengths)),
        "event_types": {
            name: int(count)
            for name, count in loaded.interactions.frame["event"].value_counts().items()
            if count
        },
        "catalogue_items": len(loaded.catalogue) if loaded.catalogue is not None else 0,
    }
    out = {"quality": loaded.report.as_dict(), "stats": stats}
    print(f"Data-quality report for {args.data} ({args.format})")
    q = out["quality"]
    print(f"  rows read {q['rows_read']:,}, kept {q['rows_kept']:,}")
    for finding, info in q["findings"].items():
        print(f"  {finding:<32} {info['rows']:>10,}  {info['action']}")
    print("Stats")
    for key, value in stats.items():
        print(f"  {key:<24} {value if not isinstance(value, float) else f'{value:.6g}'}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0
