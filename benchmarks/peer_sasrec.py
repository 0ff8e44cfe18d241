"""shoprec's Transformer against the SASRec+ reference code, epoch for epoch, in one run.

    python benchmarks/peer_sasrec.py --reference PATH [--max-len 200,50] [--epochs 2] [--threads 2]
                                     [--json FILE]

PATH is a checkout of the public SASRec+ reference repository (Klenitskiy & Vasilev, "Turning
Dross Into Gold Loss: is BERT4Rec really better than SASRec?", RecSys 2023:
github.com/antklen/sasrec-bert4rec-recsys23). It has no licence file, so nothing of it is copied
here: this script imports its model (`src/models.py: SASRec`), dataset (`src/datasets.py:
CausalLMDataset, PaddingCollateFn`) and training step (`src/modules.py: SeqRec.training_step`,
full cross-entropy over the catalogue at every position) from PATH at run time. It needs
`pytorch_lightning` installed (the reference's module base class; the Lightning Trainer is not
used: both sides run the same plain loop of forward, loss, backward and Adam step).

Both sides train on the same sequences: ML-1M from ../shared/datasets (the SASRec preprocessing
the reference ships too), every shopper's events but the last two (the reference's
`time_idx_reversed >= 2`, shoprec's leave-one-out training part), the latest `max_len` + 1 events
of each, with the reference's settings: d 64, 2 blocks, 1 head, dropout 0.1, Adam 1e-3, batch
128, full softmax. Each side runs in its own subprocess (so peak memory is its own) with the
same thread count, for `--epochs` epochs; the table gives seconds per epoch (the mean over
epochs after the first, which pays warm-up), the loss of each epoch, targets per epoch, peak
resident memory, and shoprec's ratios to the reference. No accuracy is claimed from these few
epochs; the loss curves are printed to show both learn alike.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import dataset_path, peak_rss_mb, table, write_json

SETTINGS = {"d": 64, "n_layers": 2, "n_heads": 1, "dropout": 0.1, "lr": 1e-3, "batch_size": 128}


def training_sequences():
    """(shoprec's training Dataset, the same events as a (user, item, time_idx) frame)."""
    import pandas as pd

    from shoprec.data.readers import load
    from shoprec.data.split import leave_one_out

    path, fmt = dataset_path("ml-1m")
    train = leave_one_out(load(path, fmt).dataset()).train
    # Rows are grouped by shopper in time order, the order shoprec trains on; 0 is padding.
    frame = pd.DataFrame({"user_id": train.user_idx, "item_id": train.item_idx + 1})
    frame["time_idx"] = frame.groupby("user_id").cumcount()
    return train, frame


def run_shoprec(max_len: int, epochs: int) -> dict:
    from shoprec.models.registry import make_model

    train, _ = training_sequences()
    model = make_model("transformer", device="cpu", max_len=max_len, block="sasrec", attn_dropout=0.1,
                       epochs=epochs, patience=epochs, valid_users=None, **SETTINGS)
    model.fit(train)
    log = model.training_log
    return {"epoch_seconds": [e["seconds"] for e in log], "losses": [e["loss"] for e in log],
            "targets": int(sum(min(n - 1, max_len) for n in _lengths(train)))}


def run_reference(reference: Path, max_len: int, epochs: int) -> dict:
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    sys.path.insert(0, str(reference / "src"))
    from datasets import CausalLMDataset, PaddingCollateFn  # the reference's own code, from PATH
    from models import SASRec
    from modules import SeqRec

    _, frame = training_sequences()
    torch.manual_seed(0)
    np.random.seed(0)
    dataset = CausalLMDataset(frame, max_length=max_len)
    loader = DataLoader(dataset, batch_size=SETTINGS["batch_size"], shuffle=True, num_workers=0,
                        collate_fn=PaddingCollateFn())
    model = SASRec(item_num=int(frame.item_id.max()), add_head=True, maxlen=max_len,
                   hidden_units=SETTINGS["d"], num_blocks=SETTINGS["n_layers"], num_heads=SETTINGS["n_heads"],
                   dropout_rate=SETTINGS["dropout"])
    module = SeqRec(model, lr=SETTINGS["lr"])
    optimizer = module.configure_optimizers()
    module.train()
    seconds, losses, targets = [], [], 0
    for _ in range(epochs):
        t0, total, count = time.perf_counter(), 0.0, 0
        for i, batch in enumerate(loader):
            loss = module.training_step(batch, i)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            n = int((batch["labels"] != -100).sum())
            total += float(loss.detach()) * n
            count += n
        seconds.append(time.perf_counter() - t0)
        losses.append(total / max(count, 1))
        targets = count
    return {"epoch_seconds": seconds, "losses": losses, "targets": targets}


def _lengths(train):
    import numpy as np

    return np.bincount(train.user_idx, minlength=train.n_users)


def child(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    if args.side == "shoprec":
        row = run_shoprec(args.one_len, args.epochs)
    else:
        row = run_reference(Path(args.reference), args.one_len, args.epochs)
    row.update(side=args.side, max_len=args.one_len, wall_s=round(time.perf_counter() - t0, 1),
               peak_mb=round(peak_rss_mb(), 1))
    print(json.dumps(row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", required=True, help="a checkout of antklen/sasrec-bert4rec-recsys23")
    parser.add_argument("--max-len", default="200,50", help="sequence lengths, one run of both sides each")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="write the rows as JSON")
    parser.add_argument("--side", choices=("shoprec", "reference"), help=argparse.SUPPRESS)
    parser.add_argument("--one-len", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        child(args)
        return
    reference = Path(args.reference).resolve()
    if not (reference / "src" / "models.py").is_file():
        sys.exit(f"--reference {reference}: no src/models.py there; pass a checkout of "
                 "antklen/sasrec-bert4rec-recsys23")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    rows = []
    for max_len in (int(x) for x in args.max_len.split(",")):
        pair = {}
        for side in ("reference", "shoprec"):
            cmd = [sys.executable, __file__, "--reference", str(reference), "--side", side, "--one-len", str(max_len),
                   "--epochs", str(args.epochs), "--threads", str(args.threads)]
            out = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"{side} at max_len {max_len} failed:\n{out.stderr[-3000:]}")
            row = json.loads(out.stdout.strip().splitlines()[-1])
            later = row["epoch_seconds"][1:] or row["epoch_seconds"]
            row["sec_per_epoch"] = round(sum(later) / len(later), 1)
            row["losses"] = [round(v, 4) for v in row["losses"]]
            pair[side] = row
            print(f"  {side:>9} max_len {max_len}: {row['sec_per_epoch']} s/epoch, losses {row['losses']}, "
                  f"{row['targets']:,} targets, peak {row['peak_mb']:.0f} MB", file=sys.stderr, flush=True)
        for side in ("reference", "shoprec"):
            row = pair[side]
            rows.append({"max_len": max_len, "side": side, "s/epoch": row["sec_per_epoch"],
                         "losses": " ".join(f"{v:.3f}" for v in row["losses"]), "targets": row["targets"],
                         "peak MB": round(row["peak_mb"]),
                         "time ratio": round(row["sec_per_epoch"] / pair["reference"]["sec_per_epoch"], 2),
                         "memory ratio": round(row["peak_mb"] / pair["reference"]["peak_mb"], 2),
                         "raw": row})
    print(table(rows, ["max_len", "side", "s/epoch", "losses", "targets", "peak MB", "time ratio", "memory ratio"]))
    if args.json:
        write_json(args.json, {"settings": {**SETTINGS, "epochs": args.epochs, "threads": args.threads},
                               "rows": rows})


if __name__ == "__main__":
    main()
