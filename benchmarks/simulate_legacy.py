"""The earlier, uncalibrated exploration benchmark: the bundled Online Retail shop, over 5 seeds.

    python benchmarks/simulate_legacy.py [--rounds 100] [--seeds 5] [--shoppers 300] [--ope-rounds 40]

Runs the same thing as

    shoprec simulate --policies greedy,egreedy:0.05,egreedy:0.1,egreedy:0.2,linucb,thompson,dynamic \
        --rounds 100 --seeds 5 --shoppers 300 --ope-rounds 40 --data demo \
        --json benchmarks/results/simulate.json --plot benchmarks/results/simulate.png

and prints the Markdown tables quoted in docs/exploration.md and the README. The epsilon sweep is
there to find the best fixed epsilon. Seeds 0-4 were not used for tuning (tuning used 100-101).
`--scenario shifting --ope-rounds 0` runs a store where every taste drifts and 30% of the items
arrive during the run (results in benchmarks/results/simulate_shifting.*).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS

POLICIES = "greedy,egreedy:0.05,egreedy:0.1,egreedy:0.2,linucb,thompson,dynamic"
# "shifting": every shopper drifts most of the way to another taste and 30% of the items are new.
SCENARIOS = {
    "default": [],
    "shifting": ["--drift-fraction", "1.0", "--drift-strength", "0.9", "--new-item-fraction", "0.3",
                 "--new-item-every", "5"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--shoppers", type=int, default=300)
    parser.add_argument("--ope-rounds", type=int, default=40)
    parser.add_argument("--policies", default=POLICIES)
    parser.add_argument("--scenario", default="default", choices=sorted(SCENARIOS))
    parser.add_argument("--out", default=None, help="results path without suffix")
    args = parser.parse_args()
    out = args.out or str(RESULTS / ("simulate" if args.scenario == "default" else f"simulate_{args.scenario}"))

    from shoprec.cli import main as shoprec_main

    argv = ["--policies", args.policies, "--rounds", str(args.rounds), "--seeds", str(args.seeds),
            "--shoppers", str(args.shoppers), "--ope-rounds", str(args.ope_rounds), "--data", "demo",
            "--json", f"{out}.json", "--plot", f"{out}.png", *SCENARIOS[args.scenario]]
    print("command: shoprec simulate " + " ".join(argv), flush=True)
    t0 = time.perf_counter()
    code = shoprec_main(["simulate", *argv])
    print(f"\ntotal time {time.perf_counter() - t0:.0f}s", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
