"""Private sufficient statistics on ML-1M and Amazon Games: dp-ease and dp-item-knn against
their own non-private counterparts, popularity and the issue's targets.

    python benchmarks/privacy_gram.py [--datasets ml-1m,games] [--models dp-ease,dp-item-knn] [--epsilons 2,8,inf]
                                      [--ml1m-baselines pop,dp-transformer] [--json FILE] [--replot]
                                      [--param MODEL:KEY=VALUE ...] [--tag NAME]

For each dataset, `shoprec.privacy.report.privacy_report` (the code behind `shoprec
privacy-report`): leave-one-out, full ranking, every shopper evaluated, a seeded 20% of shoppers
held out of training for the membership-inference attack. Private rows release the capped
item-item Gram once (user-level Gaussian mechanism, delta = 1/n^1.1); the epsilon = inf row of
each model is the plain model (EASE, ItemKNN) on every item of every shopper. On ML-1M the
non-private Transformer (the report's dp-transformer reference settings) is run on the same split
as the best model of any family. Writes benchmarks/results/privacy-gram.json with, per private
row, which targets it meets (issue 15: at epsilon 8 >= 70% of its own counterpart's NDCG@10 and
>= 2x popularity's; at epsilon 2 >= 50%; coverage@10 >= 30%; MIA AUC <= 0.55), and the
privacy-utility plots benchmarks/results/privacy-gram-<dataset>.png (--replot: only redraw them
from the JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, dataset_path, write_json

from shoprec.cli.params import parse_scoped_params
from shoprec.data.readers import load
from shoprec.privacy.report import (
    ReportSettings,
    format_table,
    json_summary,
    parse_epsilons,
    plot_report,
    privacy_report,
)

MODELS = ("dp-ease", "dp-item-knn")


def targets(row: dict, pop_ndcg: float) -> dict:
    """Which of the issue's targets a private row meets (None: not applicable at its epsilon)."""
    eps = row["epsilon"]
    share = row.get("share_of_own")
    return {
        "share_of_own>=0.70 (eps 8)": share >= 0.70 if eps == 8.0 else None,
        "NDCG>=2x_pop (eps 8)": row["NDCG@10"] >= 2 * pop_ndcg if eps == 8.0 else None,
        "share_of_own>=0.50 (eps 2)": share >= 0.50 if eps == 2.0 else None,
        "coverage@10>=0.30": row["coverage"] >= 0.30,
        "mia_auc<=0.55": row["mia_auc"] <= 0.55,
    }


def run_one(name: str, epsilons, baselines, params=None, models=MODELS) -> dict:
    path, fmt = dataset_path(name)
    data = load(path, fmt).dataset()
    settings = ReportSettings(models=tuple(models), epsilons=epsilons, baselines=baselines, federated=False,
                              model_params=params or {})
    t0 = time.perf_counter()
    report = privacy_report(data, settings, name=str(path), progress=lambda m: print(f"[{name}] {m}", file=sys.stderr))
    print(f"\n### {name}\n\n{format_table(report)}\n")
    summary = json_summary(report)
    pop = next(r["NDCG@10"] for r in report["rows"] if r["model"] == "pop")
    summary["rows"] = [
        {**r, "targets": targets(r, pop) if r["unit"] == "user" else None} for r in report["rows"]
    ]
    summary["popularity_NDCG@10"] = pop
    summary["seconds"] = time.perf_counter() - t0
    return summary


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="ml-1m,games")
    p.add_argument("--models", default=",".join(MODELS), help="private models to run (e.g. dp-als)")
    p.add_argument("--epsilons", default="2,8,inf")
    p.add_argument("--ml1m-baselines", default="pop,dp-transformer")
    p.add_argument("--json", default=str(RESULTS / "privacy-gram.json"))
    p.add_argument("--replot", action="store_true", help="only redraw the plots from --json")
    p.add_argument("--param", action="append", metavar="MODEL:KEY=VALUE",
                   help="a private run's setting over the report's defaults (repeatable)")
    p.add_argument("--tag", default="", help="store the runs as '<dataset> <tag>' (settings other than the defaults)")
    args = p.parse_args(argv)
    if args.replot:
        for name, summary in json.loads(Path(args.json).read_text())["datasets"].items():
            print(plot_report(summary, RESULTS / f"privacy-gram-{name.replace(' ', '-')}.png"), file=sys.stderr)
        return 0
    epsilons = parse_epsilons(args.epsilons)
    # Runs for one dataset update its entry and keep the others'.
    previous = json.loads(Path(args.json).read_text()) if Path(args.json).exists() else {}
    out = {"datasets": previous.get("datasets", {}), "commands": previous.get("commands", {})}
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        baselines = [b for b in args.ml1m_baselines.split(",") if b] if name == "ml-1m" else ["pop"]
        key = f"{name} {args.tag}".strip()
        out["datasets"][key] = run_one(name, epsilons, baselines, parse_scoped_params(args.param),
                                       [m for m in args.models.split(",") if m])
        out["commands"][key] = "python benchmarks/privacy_gram.py " + " ".join(argv)
        plot_report(out["datasets"][key], RESULTS / f"privacy-gram-{key.replace(' ', '-')}.png")
        write_json(args.json, out)  # after every dataset: a long run keeps what it finished
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
