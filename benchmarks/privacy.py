"""Privacy benchmark on ML-1M: privacy-utility curves, leakage, federated vs centralised.

    python benchmarks/privacy.py [--epsilons 0.5,1,2,4,8,inf] [--models dp-mf,dp-transformer,dp-ease,dp-item-knn]
                                 [--fed-clients 10] [--fed-rounds 20] [--json FILE] [--plot FILE]

Runs `shoprec privacy-report` on ../shared/datasets/sasrec/ml-1m.txt.gz (leave-one-out, full
ranking over the 3,416 items) and writes benchmarks/results/privacy.json and privacy.png by
default; the tables it prints are the ones quoted in docs/privacy.md and the README.

What it runs (2-core CPU, about an hour while other jobs share the machine):
- 20% of the shoppers are held out of training for the membership-inference attack (members:
  the other 80%); every shopper is evaluated.
- For each model and finite epsilon: DP-SGD at the report's private settings
  (`shoprec.privacy.report.DEFAULT_PARAMS`); epsilon = inf is the non-private reference at its
  own settings (`REFERENCE_PARAMS`).
- Federated: 10 Flower clients (the training shoppers dealt at random), FedAvg over item factors
  and biases, shoppers' factors local, 20 rounds of 1 local epoch; centralised: the same model
  and code, 20 epochs on all shoppers in one place.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, dataset_path

from shoprec.cli import main


def run(argv: list[str]) -> int:
    path, fmt = dataset_path("ml-1m")
    defaults = ["--json", str(RESULTS / "privacy.json"), "--plot", str(RESULTS / "privacy.png")]
    given = {a.split("=")[0] for a in argv if a.startswith("--")}
    extra = [x for i in range(0, len(defaults), 2) for x in defaults[i : i + 2] if defaults[i] not in given]
    return main(["privacy-report", "--data", str(path), "--format", fmt, *extra, *argv])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
