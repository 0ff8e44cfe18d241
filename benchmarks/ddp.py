"""Data-parallel training on this machine: torchrun with 2 processes against 1 process, same data.

    python benchmarks/ddp.py [--dataset ml-1m] [--epochs 2] [--max-len 200] [--sparse] [--json FILE]

Three runs of the ordinary `shoprec train` command (the Transformer, SASRec+ settings at d 64,
dropout 0 so that every run does exactly the same arithmetic up to float summation order, no
validation), one after the other, each in its own process(es):

- one process, one torch thread;
- one process, two threads (torch's intra-op parallelism over both cores);
- `torchrun --nproc_per_node=2`, one thread each (gloo; each rank computes half of every global
  batch and DDP averages the gradients, so the update is the one-process update).

--sparse trains with a sampled softmax (512 negatives) and sparse item-table updates
(`sparse_item_grads`): DDP then all-reduces sparse gradients.

Prints seconds per epoch (the last epoch: the first carries start-up), the per-epoch losses, the
ratios against one process with two threads, and the largest loss difference against the
one-process run, which is the "identical accuracy" check.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import dataset_path, write_json


def run(data: Path, fmt: str, out: Path, params: dict, threads: int, nproc: int) -> dict:
    cmd = [sys.executable, "-m", "shoprec.cli"]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "shoprec.cli"]
    cmd += ["train", "--data", str(data), "--format", fmt, "--out", str(out), "--model", "transformer",
            "--protocol", "none", "--quiet", "--param", "device=cpu"]
    cmd += [f"--param={k}={json.dumps(v)}" for k, v in params.items()]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "GLOO_SOCKET_IFNAME": "lo", "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    log = json.loads((out / "transformer.json").read_text())
    epochs = log["training_log"]
    return {"processes": nproc, "threads_per_process": threads, "world_size": log.get("world_size", 1),
            "seconds_per_epoch": [round(e["seconds"], 2) for e in epochs],
            "losses": [e["loss"] for e in epochs], "wall_seconds": round(wall, 1)}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="ml-1m")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--max-len", type=int, default=200)
    p.add_argument("--sparse", action="store_true", help="sampled softmax with sparse item-table updates")
    p.add_argument("--json")
    args = p.parse_args(argv)
    data, fmt = dataset_path(args.dataset)
    params = {"d": 64, "n_layers": 2, "n_heads": 1, "max_len": args.max_len, "dropout": 0.0,
              "batch_size": 128, "lr": 1e-3, "epochs": args.epochs, "seed": 0}
    if args.sparse:
        params.update(loss="sampled", n_negatives=512, sparse_item_grads=True)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (threads, nproc) in enumerate(((1, 1), (2, 1), (1, 2))):
            runs.append(run(data, fmt, Path(tmp) / str(i), params, threads, nproc))
            r = runs[-1]
            print(f"{nproc} process(es) x {threads} thread(s): {r['seconds_per_epoch']} s per epoch, "
                  f"losses {[round(x, 4) for x in r['losses']]}", flush=True)
    base = runs[1]["seconds_per_epoch"][-1]
    for r in runs:
        r["time_ratio_vs_1x2"] = round(r["seconds_per_epoch"][-1] / base, 3)
        r["max_loss_difference_vs_1x1"] = max(abs(a - b) for a, b in zip(r["losses"], runs[0]["losses"]))
    print(f"\n{'processes x threads':<20} {'s/epoch':>8} {'ratio':>6} {'max |loss - 1x1|':>17}")
    for r in runs:
        print(f"{r['processes']} x {r['threads_per_process']:<16} {r['seconds_per_epoch'][-1]:>8.1f} "
              f"{r['time_ratio_vs_1x2']:>6.2f} {r['max_loss_difference_vs_1x1']:>17.2e}")
    if args.json:
        write_json(args.json, {"dataset": args.dataset, "params": params, "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
