"""Tables and plots of simulation experiments (what `shoprec simulate` and the benchmark print)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["ope_table", "policy_table", "write_plot"]


def policy_table(summary: dict[str, dict]) -> str:
    """A Markdown table of the per-policy results (means over seeds, 95% intervals)."""
    cols = ["policy", "reward (clicks/shopper)", "expected clicks", "regret", "purchases", "first 10% regret",
            "new-item exposure", "coverage", "diversity", "explore share"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for name, r in summary.items():
        lo, hi = r["reward_ci95"]
        rlo, rhi = r["regret_ci95"]
        elo, ehi = r["expected_reward_ci95"]
        lines.append("| " + " | ".join([
            name, f"{r['reward_mean']:.3f} [{lo:.3f}, {hi:.3f}]", f"{r['expected_reward_mean']:.3f} [{elo:.3f}, {ehi:.3f}]",
            f"{r['regret_mean']:.3f} [{rlo:.3f}, {rhi:.3f}]",
            f"{r['purchases_mean']:.3f}", f"{r['early_regret']:.3f}", f"{r['new_item_exposure']:.4f}",
            f"{r['coverage']:.3f}", f"{r['diversity']:.3f}", f"{r['explore_share']:.3f}",
        ]) + " |")
    return "\n".join(lines)


def ope_table(ope: dict[str, dict[str, dict]]) -> str:
    """A Markdown table of the off-policy validation: estimate, interval, truth, relative error."""
    lines = ["| policy | estimator | estimate | 95% interval | truth | relative error | truth covered |",
             "|---|---|---|---|---|---|---|"]
    for name, by_est in ope.items():
        for est, v in by_est.items():
            if "estimate" not in v:
                lines.append(f"| {name} | {est} | skipped: {v.get('skipped', '')} | | | | |")
                continue
            lines.append(f"| {name} | {est} | {v['estimate']:.4f} | [{v['ci95'][0]:.4f}, {v['ci95'][1]:.4f}] | "
                         f"{v['truth']:.4f} | {v['relative_error']:.3f} | {v['covered']:.0%} |")
    return "\n".join(lines)


def _moving_average(x: np.ndarray, width: int = 5) -> np.ndarray:
    """Centred moving average that averages fewer points at the ends (no edge dips)."""
    kernel = np.ones(max(1, min(width, len(x))))
    return np.convolve(x, kernel, mode="same") / np.convolve(np.ones_like(x), kernel, mode="same")


def write_plot(series: dict[str, dict[str, np.ndarray]], path: str | Path, title: str = "",
               baseline: str = "greedy") -> Path:
    """Cumulative reward (and its difference from `baseline`, when that policy ran) and the share
    of exploratory slots over rounds, one line per policy (needs matplotlib)."""
    from shoprec.errors import require_extra

    require_extra("matplotlib", "plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    has_base = baseline in series
    fig, axes = plt.subplots(1, 3 if has_base else 2, figsize=(15 if has_base else 11, 4))
    for name, s in series.items():
        rounds = np.arange(1, len(s["reward"]) + 1)
        axes[0].plot(rounds, s["reward"], label=name)
        if has_base:
            axes[1].plot(rounds, s["reward"] - series[baseline]["reward"], label=name)
        axes[-1].plot(rounds, _moving_average(s["explore_share"]), label=name)
    axes[0].set(xlabel="round", ylabel="cumulative clicks per shopper", title="Cumulative reward")
    if has_base:
        axes[1].set(xlabel="round", ylabel=f"cumulative clicks per shopper minus {baseline}'s",
                    title=f"Cumulative reward relative to {baseline}")
        axes[1].axhline(0.0, color="grey", lw=0.8)
    axes[-1].set(xlabel="round", ylabel="share of slots exploring (5-round mean)", title="Exploration share")
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
