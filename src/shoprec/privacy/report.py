"""The privacy report: privacy-utility curves, leakage, and federated against centralised.

`privacy_report(data)` runs, on one leave-one-out split (full ranking):

1. For each private model ("dp-mf", "dp-transformer": DP-SGD; "dp-ease", "dp-item-knn": one
   Gaussian release of the item-item Gram) and each epsilon (inf = the same model without DP,
   its own non-private counterpart): fit on the members' training histories, evaluate NDCG@10,
   HR@10 and coverage@10 on every shopper's test item, and run the loss-threshold
   membership-inference attack (members vs the held-out shoppers). Every finite budget is
   checked before anything is trained, so an impossible one fails fast. Non-private baselines
   (`baselines`, popularity by default) are run once on the same split. Every row says the unit
   it protects ("user" for the private rows, "none" for epsilon = inf), its share of its own
   counterpart's NDCG@10 and its share of the best non-private row of any family.
2. Federated training (Flower simulation, `num_clients` clients holding all training shoppers)
   against the same model trained centrally for as many epochs as the federation has rounds:
   the accuracy gap and the rounds the federation needs to reach 95% of the centralised NDCG@10.

Shoppers held out for the attack (`mia_holdout`, 20% by default) are never trained on but are
evaluated like everyone else: the models score them from their histories.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shoprec.data.dataset import Dataset
from shoprec.data.split import leave_one_out
from shoprec.errors import ConfigError, check_float, check_int
from shoprec.evaluate.protocol import evaluate
from shoprec.privacy.accountant import check_budget, plan_dp_sgd
from shoprec.privacy.mia import mia_on_split, split_members

PRIVATE_MODELS = ("dp-mf", "dp-transformer", "dp-ease", "dp-item-knn", "dp-als")
GRAM_MODELS = ("dp-ease", "dp-item-knn")
"""Private models whose budget is spent by one release of the item-item Gram (`privacy.gram`)."""
RELEASE_MODELS = (*GRAM_MODELS, "dp-als")
"""Private models that release item-side statistics with the Gaussian mechanism (no DP-SGD)."""
DEFAULT_MODELS = ("dp-mf", "dp-transformer", "dp-ease", "dp-item-knn")
DEFAULT_EPSILONS = (0.5, 1.0, 2.0, 4.0, 8.0, math.inf)

DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "dp-mf": {"factors": 32, "epochs": 10, "batch_size": 1024, "lr": 1e-2},
    "dp-transformer": {"d": 32, "n_layers": 2, "max_len": 50, "epochs": 5, "batch_size": 512, "lr": 3e-3},
    "dp-ease": {"max_items_per_user": 25, "denoise": "psd", "noise_l2": 0.5, "l2": 500.0, "max_modelled": 5000},
    "dp-item-knn": {"max_items_per_user": 25, "denoise": "psd", "max_modelled": 5000},
    "dp-als": {"factors": 16, "iterations": 3, "alpha": 0.2, "l2": 10.0, "max_items_per_user": 10,
               "max_modelled": 2000},
}
"""What the private runs train with unless told otherwise (few, large Poisson batches: the
noise per step is spread over many shoppers; sized for a 2-core CPU, see docs/privacy.md).
The Gram models' settings were chosen on ML-1M's validation items (never the test items) at
epsilon 8 and 2 and are used unchanged on every dataset; max_modelled bounds the dense
eigendecomposition to 5,000 items (compute, not accuracy). dp-als's were chosen the same way
(benchmarks/results/privacy-als-validation.log): the best mean over noise seeds 1-3 of
epsilon 8 and 2 among the three best single-seed settings at epsilon 8."""

REFERENCE_PARAMS: dict[str, dict[str, Any]] = {
    "dp-mf": {"factors": 64, "epochs": 20, "batch_size": 512, "lr": 1e-2},
    "dp-transformer": {"d": 32, "n_layers": 2, "max_len": 50, "epochs": 20, "batch_size": 128, "lr": 1e-3},
    "dp-ease": {"max_items_per_user": None, "max_modelled": None, "l2": 500.0},
    "dp-item-knn": {"max_items_per_user": None, "max_modelled": None},
    "dp-als": {"factors": 64, "iterations": 10, "alpha": 1.0, "l2": 1.0, "max_items_per_user": None,
               "max_modelled": None, "unit_shoppers": False},
}
"""The non-private reference (epsilon = inf) is the model at its own best settings found here,
not the private settings without noise: small batches and more steps, which DP cannot afford.
For the Gram models it is the plain model on every item of every shopper (dp-ease: EASE,
dp-item-knn: ItemKNN, same scores), without the cap or the denoising the private runs use; for
dp-als, implicit ALS on every item at its best validation settings."""


def parse_epsilons(text: str) -> tuple[float, ...]:
    """'0.5,1,inf' -> (0.5, 1.0, inf); each must be > 0."""
    out = []
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        try:
            value = float(part)
        except ValueError:
            raise ConfigError(f"--epsilons takes numbers > 0 or 'inf', e.g. 0.5,1,inf. Got {part!r}.") from None
        if not value > 0:
            raise ConfigError(f"Every epsilon must be > 0 (or inf for no privacy). Got {part!r}.")
        out.append(value)
    if not out:
        raise ConfigError("--epsilons must name at least one value, e.g. 0.5,1,2,4,8,inf.")
    return tuple(out)


def _label(eps: float) -> str | float:
    return "inf" if math.isinf(eps) else float(eps)


@dataclass
class ReportSettings:
    """What `privacy_report` runs. model_params: model name -> hyperparameters over
    DEFAULT_PARAMS; baselines: registered models run once without privacy (at REFERENCE_PARAMS
    when they have some); federated: run the Flower comparison."""

    models: Sequence[str] = DEFAULT_MODELS
    baselines: Sequence[str] = ("pop",)
    epsilons: Sequence[float] = DEFAULT_EPSILONS
    delta: float | None = None
    model_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    mia_holdout: float = 0.2
    federated: bool = True
    fed_clients: int = 10
    fed_rounds: int = 20
    fed_local_epochs: int = 1
    fed_params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    reference_params: dict[str, dict[str, Any]] = field(default_factory=dict)

    def params_for(self, model: str, epsilon: float = 1.0) -> dict[str, Any]:
        """Hyperparameters of `model` at `epsilon` (inf: the non-private reference settings)."""
        if math.isinf(epsilon):
            return {**REFERENCE_PARAMS.get(model, DEFAULT_PARAMS.get(model, {})),
                    **self.reference_params.get(model, {})}
        return {**DEFAULT_PARAMS.get(model, {}), **self.model_params.get(model, {})}


def check_budgets(data_users: int, settings: ReportSettings) -> None:
    """Refuse, before any training, a requested epsilon a model cannot meet."""
    for model in settings.models:
        params = settings.params_for(model)
        for eps in settings.epsilons:
            if math.isfinite(eps) and model in RELEASE_MODELS:
                check_budget(eps, settings.delta, data_users, model)
            elif math.isfinite(eps):
                plan_dp_sgd(
                    data_users,
                    int(params.get("batch_size", 512)),
                    int(params.get("epochs", 10)),
                    eps,
                    settings.delta,
                    max_noise_multiplier=float(params.get("max_noise_multiplier", 50.0)),
                    accountant=str(params.get("accountant", "rdp")),
                    where=model,
                )


def privacy_report(
    data: Dataset,
    settings: ReportSettings | None = None,
    *,
    name: str = "data",
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the report (see the module docstring); returns a JSON-ready dict."""
    from shoprec.models.registry import make_model

    settings = settings or ReportSettings()
    check_float("mia_holdout", settings.mia_holdout, 0.05, 0.9, "privacy_report")
    for model in settings.models:
        if model not in PRIVATE_MODELS:
            raise ConfigError(f"The report's models must be among {list(PRIVATE_MODELS)}. Got {model!r}.")
    say = progress or (lambda _msg: None)
    split = leave_one_out(data)
    members = split_members(data, settings.mia_holdout, settings.seed)
    train = split.train.subset(members[split.train.user_idx], f"{data.name}[members]")
    n_train_users = int(train.active_users().size)
    check_budgets(n_train_users, settings)

    def run(model_name: str, eps: float, params: dict[str, Any]) -> dict[str, Any]:
        t0 = time.perf_counter()
        model = make_model(model_name, **params).fit(train)
        fit_s = time.perf_counter() - t0
        result = evaluate(model, split, k=(10,))
        mia = mia_on_split(model, split.train, members)
        spent = getattr(model, "privacy_", None)
        private = spent is not None and spent.private
        row = {
            "model": model_name,
            "epsilon": _label(eps),
            "epsilon_spent": _label(spent.epsilon) if spent is not None else "inf",
            "delta": spent.delta if spent is not None else 0.0,
            "unit": spent.unit if private else "none",
            "mechanism": spent.mechanism if spent is not None else "none",
            "noise_multiplier": spent.noise_multiplier if spent is not None else 0.0,
            "NDCG@10": result.metrics["NDCG@10"],
            "HR@10": result.metrics["HR@10"],
            "coverage": result.metrics["coverage@10"],
            "mia_auc": mia.auc,
            "mia_auc_se": mia.auc_se,
            "fit_seconds": fit_s,
        }
        say(f"{model_name} epsilon={row['epsilon']}: NDCG@10 {row['NDCG@10']:.4f}, "
            f"coverage {row['coverage']:.3f}, MIA AUC {row['mia_auc']:.3f} ({fit_s:.0f}s)")
        return row

    rows: list[dict[str, Any]] = []
    for model_name in settings.models:
        for eps in settings.epsilons:
            params = {**settings.params_for(model_name, eps), "seed": settings.seed,
                      "target_epsilon": None if math.isinf(eps) else float(eps),
                      "target_delta": settings.delta}
            rows.append(run(model_name, eps, params))
    for model_name in settings.baselines:
        params = {**REFERENCE_PARAMS.get(model_name, {}), **settings.reference_params.get(model_name, {})}
        rows.append({**run(model_name, math.inf, params), "baseline": True})
    add_shares(rows)

    report: dict[str, Any] = {
        "data": name,
        "n_users": int(data.n_users),
        "n_items": int(data.n_items),
        "n_events": len(data),
        "protocol": "leave-one-out, full ranking",
        "mia_holdout": settings.mia_holdout,
        "n_train_users": n_train_users,
        "settings": {m: {"private": settings.params_for(m), "reference": settings.params_for(m, math.inf)}
                     for m in settings.models},
        "baselines": list(settings.baselines),
        "rows": rows,
    }
    if settings.federated:
        report.update(federated_vs_centralised(split, settings, say))
    return report


def add_shares(rows: list[dict[str, Any]]) -> None:
    """Give every row its share of its own non-private counterpart's NDCG@10 (the same model's
    epsilon = inf row; None without one) and of the best non-private row of any family."""
    reference = {r["model"]: r["NDCG@10"] for r in rows if r["epsilon"] == "inf" and not r.get("baseline")}
    nonprivate = [r for r in rows if r["epsilon"] == "inf"]
    best = max(nonprivate, key=lambda r: r["NDCG@10"], default=None)
    for r in rows:
        own = reference.get(r["model"]) if not r.get("baseline") else None
        r["share_of_own"] = r["NDCG@10"] / own if own else None
        r["share_of_best"] = r["NDCG@10"] / best["NDCG@10"] if best and best["NDCG@10"] > 0 else None
        r["best_nonprivate"] = best["model"] if best else None


def federated_vs_centralised(split, settings: ReportSettings, say=lambda _m: None) -> dict[str, Any]:
    """The Flower federation and the same model trained centrally, on all training shoppers."""
    from shoprec.privacy.federated import FedConfig, run_federated, train_centralised

    check_int("fed_rounds", settings.fed_rounds, 1, 100_000, "privacy_report")
    config = FedConfig(**{"seed": settings.seed, **settings.fed_params})
    epochs = settings.fed_rounds * settings.fed_local_epochs
    t0 = time.perf_counter()
    central = train_centralised(split, config, epochs)
    central_s = time.perf_counter() - t0
    say(f"centralised: best NDCG@10 {max(e['NDCG@10'] for e in central):.4f} ({central_s:.0f}s)")
    fed = run_federated(
        split,
        num_clients=settings.fed_clients,
        rounds=settings.fed_rounds,
        config=config,
        local_epochs=settings.fed_local_epochs,
        seed=settings.seed,
    )
    best_central = max(e["NDCG@10"] for e in central)
    best_fed = fed.best("NDCG@10")
    target = 0.95 * best_central
    say(f"federated: best NDCG@10 {best_fed:.4f} ({fed.seconds:.0f}s)")
    return {
        "centralised": {
            "NDCG@10": best_central,
            "HR@10": max(e["HR@10"] for e in central),
            "epochs": epochs,
            "log": central,
            "seconds": central_s,
        },
        "federated": {
            "NDCG@10": best_fed,
            "HR@10": fed.best("HR@10"),
            "rounds": settings.fed_rounds,
            "clients": settings.fed_clients,
            "local_epochs": settings.fed_local_epochs,
            "log": fed.rounds,
            "seconds": fed.seconds,
            "epsilon": "inf" if math.isinf(fed.epsilon) else fed.epsilon,
        },
        "federated_gap": {
            "NDCG@10_absolute": best_central - best_fed,
            "NDCG@10_relative": (best_central - best_fed) / best_central if best_central > 0 else None,
            "rounds_to_95pct_of_centralised": fed.rounds_to_reach(target),
            "centralised_epochs_to_95pct": next(
                (e["epoch"] for e in central if e["NDCG@10"] >= target), None
            ),
        },
    }


# ---- output ------------------------------------------------------------------------------------
def json_summary(report: dict[str, Any]) -> dict[str, Any]:
    """What `--json` writes: per model and epsilon {"epsilon", "delta", "NDCG@10", "coverage",
    "mia_auc"} (plus the spent epsilon, HR@10, noise and fit time), the federated and centralised
    figures side by side, and the run's settings."""
    models: dict[str, list[dict[str, Any]]] = {}
    for row in report["rows"]:
        models.setdefault(row["model"], []).append(
            {k: row.get(k) for k in ("epsilon", "delta", "unit", "NDCG@10", "coverage", "mia_auc", "mia_auc_se",
                                     "share_of_own", "share_of_best", "best_nonprivate", "epsilon_spent",
                                     "HR@10", "mechanism", "noise_multiplier", "fit_seconds")}
        )
    out = {k: report[k] for k in ("data", "n_users", "n_items", "n_events", "protocol", "mia_holdout",
                                  "n_train_users", "settings") if k in report}
    out["models"] = models
    if "federated" in report:
        out["federated_vs_centralised"] = {
            "federated": report["federated"],
            "centralised": report["centralised"],
            "gap": report["federated_gap"],
        }
    return out


def write_json(report: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_summary(report), indent=2) + "\n")
    return path


def format_table(report: dict[str, Any]) -> str:
    """Markdown tables: the privacy-utility rows, then federated vs centralised."""
    head = ("| model | unit | epsilon | epsilon spent | delta | noise | NDCG@10 | share of own | share of best | "
            "HR@10 | coverage@10 | MIA AUC (± s.e.) | fit s |")
    lines = [head, "|" + "---|" * 13]

    def pct(v):
        return "–" if v is None else f"{100 * v:.0f}%"

    for r in report["rows"]:
        eps_spent = r["epsilon_spent"]
        se = r.get("mia_auc_se")
        mia = f"{r['mia_auc']:.3f}" + (f" ± {se:.3f}" if se is not None else "")
        lines.append(
            f"| {r['model']} | {r.get('unit', 'user')} | {r['epsilon']} | "
            f"{eps_spent if isinstance(eps_spent, str) else f'{eps_spent:.2f}'} | {r['delta']:.2g} | "
            f"{r['noise_multiplier']:.2f} | {r['NDCG@10']:.4f} | {pct(r.get('share_of_own'))} | "
            f"{pct(r.get('share_of_best'))} | {r['HR@10']:.4f} | {r['coverage']:.4f} | "
            f"{mia} | {r['fit_seconds']:.0f} |"
        )
    best = next((r["best_nonprivate"] for r in report["rows"] if r.get("best_nonprivate")), None)
    if best:
        lines += ["", (f"Share of own: of the same model at epsilon = inf; share of best: of the best "
                       f"non-private row ({best}).")]
    if "federated" in report:
        f, c, g = report["federated"], report["centralised"], report["federated_gap"]
        lines += [
            "",
            "| training | NDCG@10 (best) | HR@10 (best) | rounds / epochs | clients | seconds |",
            "|---|---|---|---|---|---|",
            f"| centralised | {c['NDCG@10']:.4f} | {c['HR@10']:.4f} | {c['epochs']} epochs | 1 | {c['seconds']:.0f} |",
            (
                f"| federated (FedAvg) | {f['NDCG@10']:.4f} | {f['HR@10']:.4f} | {f['rounds']} rounds x "
                f"{f['local_epochs']} local epoch(s) | {f['clients']} | {f['seconds']:.0f} |"
            ),
            "",
            (
                f"Gap: {g['NDCG@10_absolute']:.4f} NDCG@10 ({100 * (g['NDCG@10_relative'] or 0):.1f}% of "
                f"centralised); rounds to reach 95% of centralised: {g['rounds_to_95pct_of_centralised']} "
                f"(centralised epochs: {g['centralised_epochs_to_95pct']})."
            ),
        ]
    return "\n".join(lines)


def plot_report(report: dict[str, Any], path: str | Path) -> Path:
    """Privacy-utility curves (NDCG@10, coverage@10, MIA AUC against epsilon, the non-private
    model as a dashed reference line) and, when present, federated vs centralised by round."""
    from shoprec.errors import require_extra

    require_extra("matplotlib", "plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    with_fed = "federated" in report
    fig, axes = plt.subplots(1, 4 if with_fed else 3, figsize=(18 if with_fed else 14, 4.2))
    panels = (("NDCG@10", "NDCG@10"), ("coverage", "coverage@10"), ("mia_auc", "membership-inference AUC"))
    models = list(dict.fromkeys(r["model"] for r in report["rows"]))
    for ax, (key, title) in zip(axes, panels):
        for i, model in enumerate(models):
            rows = [r for r in report["rows"] if r["model"] == model]
            finite = sorted((float(r["epsilon"]), r[key]) for r in rows if r["epsilon"] != "inf")
            color = f"C{i}"
            if finite:
                ax.plot([e for e, _ in finite], [v for _, v in finite], "o-", color=color, label=f"{model} (DP)")
            ref = [r[key] for r in rows if r["epsilon"] == "inf"]
            if ref:
                ax.axhline(ref[0], color=color, linestyle="--", label=f"{model}, no DP")
        if key == "mia_auc":
            ax.axhline(0.5, color="grey", linestyle=":", label="chance")
        ax.set_xscale("log")
        # Label the epsilons that were run, not matplotlib's overlapping minor log ticks.
        ticks = sorted({float(r["epsilon"]) for r in report["rows"] if r["epsilon"] != "inf"})
        ax.set_xticks(ticks, [f"{e:g}" for e in ticks])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel("epsilon (user-level, log scale)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if with_fed:
        ax = axes[3]
        fed = report["federated"]["log"]
        cen = report["centralised"]["log"]
        ax.plot([r["round"] for r in fed], [r["NDCG@10"] for r in fed], "o-", label="federated (rounds)")
        ax.plot([e["epoch"] for e in cen], [e["NDCG@10"] for e in cen], "s--", label="centralised (epochs)")
        ax.set_xlabel("round / epoch")
        ax.set_title("federated vs centralised: NDCG@10")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"shoprec privacy report: {Path(str(report['data'])).name} ({report['protocol']})")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = [
    "DEFAULT_EPSILONS",
    "DEFAULT_MODELS",
    "DEFAULT_PARAMS",
    "GRAM_MODELS",
    "PRIVATE_MODELS",
    "REFERENCE_PARAMS",
    "RELEASE_MODELS",
    "ReportSettings",
    "add_shares",
    "check_budgets",
    "federated_vs_centralised",
    "format_table",
    "json_summary",
    "parse_epsilons",
    "plot_report",
    "privacy_report",
    "write_json",
]
