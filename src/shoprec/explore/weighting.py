"""The exploration weight of one shopper and one request, and why it is what it is.

    w = clip(sigmoid(base + history * h + variance * v + drift * r + payoff * p), min_weight, max_weight)

with four signals, each in a fixed range:

- h = 1 / (1 + n / history_scale), n the shopper's past events plus online feedback: 1 for a new
  shopper, 1/2 at `history_scale` events, towards 0 for a long history (we know them).
- v = mean posterior variance of the shopper's correction over the request's candidates divided
  by its prior variance: 1 before any feedback, shrinking as the shopper's feedback accumulates.
- r = (1 - cos(recent, long-term interest)) / 2: 0 while what the shopper engages with now
  matches their long-term average, up to 1 when it points the opposite way (drift).
- p = log of the ratio of the shopper's reward per examined exploratory slot to the reward per
  examined exploit slot, clipped to [-2, 2]: positive when their recent exploratory slots paid
  off better than the exploit ones. Each rate is smoothed with `payoff_prior` pseudo-exposures
  towards the same rate over all shoppers (when given), so a shopper with little feedback gets
  the population's verdict on exploration and their own evidence takes over as it accumulates.

A per-request override in [0, 1] replaces w. The weight scales how much the policy explores
(see `shoprec.explore.policies`), and every slate reports it with the four signals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shoprec.errors import ConfigError, DataError, check_float

__all__ = ["COEFFICIENTS", "FITTED_WEIGHTS", "WeightConfig", "check_override", "exploration_weight"]


COEFFICIENTS: tuple[str, ...] = ("base", "history", "variance", "drift", "payoff")
"""The rule's logit coefficients, in order: what `shoprec.simulation.fit` fits and the service's
`weight_coefficients` setting lists; the signal settings are not among them."""


@dataclass(frozen=True)
class WeightConfig:
    """Coefficients of the weight rule (logit scale); see the module docstring.

    base: logit of the weight of a long-known, stable shopper with no payoff evidence.
    history_scale: number of events at which the history signal is 1/2.
    payoff_prior: pseudo-exposures that smooth both payoff rates towards `payoff_prior_rate`.
    """

    base: float = -1.0
    history: float = 2.5
    variance: float = 1.0
    drift: float = 4.0
    payoff: float = 1.0
    history_scale: float = 20.0
    payoff_prior: float = 5.0
    payoff_prior_rate: float = 0.03
    min_weight: float = 0.0
    max_weight: float = 1.0

    def __post_init__(self) -> None:
        where = "WeightConfig"
        for name in COEFFICIENTS:
            check_float(name, getattr(self, name), -50.0, 50.0, where)
        check_float("history_scale", self.history_scale, 1e-6, 1e9, where)
        check_float("payoff_prior", self.payoff_prior, 1e-6, 1e9, where)
        check_float("payoff_prior_rate", self.payoff_prior_rate, 1e-6, 1.0, where)
        check_float("min_weight", self.min_weight, 0.0, 1.0, where)
        check_float("max_weight", self.max_weight, 0.0, 1.0, where)
        if self.min_weight > self.max_weight:
            raise ConfigError(
                f"The 'min_weight' parameter of WeightConfig must be <= max_weight ({self.max_weight}). "
                f"Got {self.min_weight} instead."
            )


def exploration_weight(
    n_events: np.ndarray,
    variance_ratio: np.ndarray,
    recent: np.ndarray,
    longterm: np.ndarray,
    payoff: np.ndarray,
    config: WeightConfig | None = None,
    override: float | np.ndarray | None = None,
    population_payoff: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Weights (n,) in [0, 1] and their signals {"history", "variance", "drift", "payoff", "logit"}.

    n_events (n,): past plus online events; variance_ratio (n,): mean posterior / prior variance;
    recent, longterm (n, d): interest averages; payoff (n, 4): decayed [explore exposure, explore
    reward, exploit exposure, exploit reward]; override: a number or (n,) array in [0, 1] or NaN
    (NaN keeps the rule's weight for that request); population_payoff (4,): the payoff counters
    summed over all shoppers (None: smooth both rates towards `payoff_prior_rate`).
    """
    config = config or WeightConfig()
    n_events = np.asarray(n_events, np.float64)
    h = 1.0 / (1.0 + np.maximum(n_events, 0.0) / config.history_scale)
    v = np.clip(np.asarray(variance_ratio, np.float64), 0.0, 1.0)
    norm = np.linalg.norm(recent, axis=1) * np.linalg.norm(longterm, axis=1)
    cos = np.where(norm > 0, np.einsum("nd,nd->n", recent, longterm) / np.where(norm > 0, norm, 1.0), 1.0)
    r = (1.0 - np.clip(cos, -1.0, 1.0)) / 2.0
    c, mu = config.payoff_prior, config.payoff_prior_rate
    mu_explore = mu_exploit = mu
    if population_payoff is not None:
        pop = np.asarray(population_payoff, np.float64)
        mu_explore = (pop[1] + c * mu) / (pop[0] + c)
        mu_exploit = (pop[3] + c * mu) / (pop[2] + c)
    explore_rate = (payoff[:, 1] + c * mu_explore) / (payoff[:, 0] + c)
    exploit_rate = (payoff[:, 3] + c * mu_exploit) / (payoff[:, 2] + c)
    p = np.clip(np.log(explore_rate / exploit_rate), -2.0, 2.0)
    logit = config.base + config.history * h + config.variance * v + config.drift * r + config.payoff * p
    w = np.clip(1.0 / (1.0 + np.exp(-logit)), config.min_weight, config.max_weight)
    if override is not None:
        o = check_override(override, len(w))
        w = np.where(np.isnan(o), w, o)
    return w, {"history": h, "variance": v, "drift": r, "payoff": p, "logit": logit}


def check_override(override: float | np.ndarray, n: int) -> np.ndarray:
    """An (n,) array of overrides in [0, 1] (NaN = none), or a ConfigError naming what came."""
    arr = np.broadcast_to(np.asarray(override, dtype=np.float64), (n,)) if np.ndim(override) == 0 else np.asarray(override, np.float64)
    if arr.shape != (n,):
        raise DataError(f"The exploration override must be one number or one per request ({n}). Got shape {arr.shape} instead.")
    bad = ~np.isnan(arr) & ((arr < 0) | (arr > 1))
    if bad.any():
        raise ConfigError(
            f"The 'override' parameter of exploration_weight must be a number in [0, 1]. "
            f"Got {float(arr[bad][0])} instead."
        )
    return arr


FITTED_WEIGHTS = WeightConfig(base=-1.3009, history=2.7327, variance=2.2964, drift=2.6453, payoff=-0.1517)
"""The coefficients fitted on the Online Retail store (the bundled shop's log) by
`benchmarks/simulate.py` (CMA-ES on tuning seeds 100-101, `shoprec.simulation.fit`; four
decimals of benchmarks/results/simulate-calibrated.json's "fitted_rule"), what the service's
"fitted" weight rule uses unless a shop fits its own. Against the hand-set rule they explore
more while the shopper's own posterior is uncertain (variance 2.3 against 1.0) and no longer
follow the payoff signal (-0.15 against 1.0)."""
