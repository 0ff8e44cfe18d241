"""Training speed of the sampled-softmax Transformer with a dense and a sparse item table.

    python benchmarks/sparse_items.py [--events 1000000] [--items 1000000] [--seconds 60] [--json FILE]

On a synthetic shop from `scripts/make_shop.py`, the behaviour Transformer (d 64, 50 events, 512
negatives, batch 128) trains for at most `--seconds` (its `max_seconds`: an epoch that outlasts
it stops after the batch that spends it), once with a dense item table under Adam and once with
`sparse_item_grads=True` (sparse gradients, SparseAdam), in the same process and run. Reported:
training targets per second of each, their ratio, and the loss reached.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)

    import torch
    from make_shop import make_shop

    from shoprec.data.readers import load
    from shoprec.models.registry import make_model

    with tempfile.TemporaryDirectory() as tmp:
        log, items = make_shop(args.events, args.items, seed=0)
        log.to_csv(Path(tmp) / "events.csv", index=False)
        items.to_csv(Path(tmp) / "catalogue.csv", index=False)
        data = load(Path(tmp) / "events.csv", "csv", catalogue=Path(tmp) / "catalogue.csv").dataset()
    print(f"{data.n_users:,} shoppers, {data.n_items:,} items, {len(data):,} events; "
          f"{torch.get_num_threads()} torch threads", flush=True)
    rows = []
    for sparse in (False, True):
        model = make_model("transformer", loss="sampled", n_negatives=512, max_len=50, epochs=1,
                           max_seconds=args.seconds, sparse_item_grads=sparse, device="cpu", seed=0)
        t0 = time.perf_counter()
        model.fit(data)
        entry = model.training_log[-1]
        row = {"item_table": "sparse" if sparse else "dense", "targets": entry["targets"],
               "train_seconds": round(entry["seconds"], 1), "share_of_epoch": entry.get("share_of_epoch", 1.0),
               "targets_per_s": round(entry["targets"] / entry["seconds"]), "loss": round(entry["loss"], 4),
               "fit_seconds": round(time.perf_counter() - t0, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    ratio = rows[1]["targets_per_s"] / rows[0]["targets_per_s"]
    print(f"sparse / dense targets per second: {ratio:.1f}x", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "events": args.events, "items": args.items, "seconds": args.seconds, "rows": rows,
            "sparse_over_dense": round(ratio, 2), "torch_threads": torch.get_num_threads(),
            "command": "python benchmarks/sparse_items.py"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
