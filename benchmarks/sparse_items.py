"""Training speed of the Transformer by catalogue size: full softmax, and sampled softmax with a
dense or a sparse item table.

    python benchmarks/sparse_items.py [--sizes 1000000:10000,1000000:100000,1000000:1000000]
                                      [--modes full,sampled-dense,sampled-sparse] [--seconds 60]
                                      [--json FILE]

Each size is EVENTS:ITEMS, a synthetic shop from `scripts/make_shop.py`. The behaviour
Transformer (d 64, 50 events, batch 128; 512 negatives for the sampled softmax) trains for at
most `--seconds` (its `max_seconds`: an epoch that outlasts it stops after the batch that spends
it) in each mode, in the same process: "full" (softmax over every item, the default loss),
"sampled-dense" (Adam over the whole item table) and "sampled-sparse" (`sparse_item_grads=True`:
sparse gradients and SparseAdam). Reported: training targets per second of each, the ratio to
sampled-sparse of the same size, and the loss reached (full and sampled losses are not
comparable with each other).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

MODES = {
    "full": {"loss": "full"},
    "sampled-dense": {"loss": "sampled", "n_negatives": 512},
    "sampled-sparse": {"loss": "sampled", "n_negatives": 512, "sparse_item_grads": True},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000000:10000,1000000:100000,1000000:1000000")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)

    import torch
    from make_shop import make_shop

    from shoprec.data.readers import load
    from shoprec.models.registry import make_model

    rows = []
    for size in args.sizes.split(","):
        n_events, n_items = (int(x) for x in size.split(":"))
        with tempfile.TemporaryDirectory() as tmp:
            log, items = make_shop(n_events, n_items, seed=0)
            log.to_csv(Path(tmp) / "events.csv", index=False)
            items.to_csv(Path(tmp) / "catalogue.csv", index=False)
            data = load(Path(tmp) / "events.csv", "csv", catalogue=Path(tmp) / "catalogue.csv").dataset()
        print(f"{data.n_users:,} shoppers, {data.n_items:,} items, {len(data):,} events; "
              f"{torch.get_num_threads()} torch threads", flush=True)
        for mode in args.modes.split(","):
            model = make_model("transformer", max_len=50, epochs=1, max_seconds=args.seconds, device="cpu", seed=0,
                               **MODES[mode])
            t0 = time.perf_counter()
            model.fit(data)
            entry = model.training_log[-1]
            row = {"events": n_events, "items": n_items, "mode": mode, "targets": entry["targets"],
                   "train_seconds": round(entry["seconds"], 1), "share_of_epoch": entry.get("share_of_epoch", 1.0),
                   "targets_per_s": round(entry["targets"] / entry["seconds"]), "loss": round(entry["loss"], 4),
                   "fit_seconds": round(time.perf_counter() - t0, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
        del data
    for row in rows:
        ref = [r for r in rows if (r["events"], r["items"], r["mode"]) == (row["events"], row["items"], "sampled-sparse")]
        if ref:
            row["vs_sampled_sparse"] = round(row["targets_per_s"] / ref[0]["targets_per_s"], 4)
    print("\n".join(f"{r['items']:>9,} items  {r['mode']:<15} {r['targets_per_s']:>8,} targets/s  "
                    f"{r.get('vs_sampled_sparse', float('nan')):.3f}x sampled-sparse" for r in rows))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "seconds": args.seconds, "rows": rows, "torch_threads": torch.get_num_threads(),
            "command": "python benchmarks/sparse_items.py " + " ".join(argv or sys.argv[1:])}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
