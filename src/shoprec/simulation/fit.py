"""Fitting the exploration weight rule's coefficients from simulated feedback.

The hand-set rule of `shoprec.explore.weighting` maps a shopper's signals (history h, posterior
variance v, drift r, payoff p) to a weight through five logit coefficients chosen by hand. The
online level bandit of `shoprec.explore.learned` learns that map from each slate's immediate
clicks and could not resolve it within a run (docs/exploration.md): most of what exploration
earns comes later, and to other shoppers, through what it teaches the shared item statistics.

`fit_weight_rule` fits the coefficients to what a policy earns over a whole run instead: it is
policy search by CMA-ES (Hansen's `cma` package) over (base, history, variance, drift, payoff),
each candidate scored by the caller's objective, typically the mean clicks per shopper of the
dynamic policy with those coefficients over a store's tuning seeds (common random numbers, so
candidates are compared on the same shoppers and coin flips). The search starts from the
hand-set rule and returns the best candidate it evaluated, which is then reported on seeds the
fit never saw. The objective takes a whole generation at once so the caller can run it in
parallel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from shoprec.errors import ConfigError, check_float, check_int
from shoprec.explore.weighting import COEFFICIENTS, WeightConfig

__all__ = ["COEFFICIENTS", "FitConfig", "WeightFit", "fit_weight_rule"]

@dataclass(frozen=True)
class FitConfig:
    """How the weight rule is searched.

    generations: CMA-ES generations. population: candidates per generation (CMA-ES's popsize,
    at least 2). sigma: initial step size, in logits, for every coefficient. bound: every
    coefficient stays in [-bound, bound]. seed: the search's own random numbers (not the
    store's).
    """

    generations: int = 3
    population: int = 8
    sigma: float = 1.5
    bound: float = 8.0
    seed: int = 0

    def __post_init__(self) -> None:
        where = "FitConfig"
        check_int("generations", self.generations, 1, 10_000, where)
        check_int("population", self.population, 2, 10_000, where)
        check_float("sigma", self.sigma, 1e-6, 50.0, where)
        check_float("bound", self.bound, 1e-6, 50.0, where)
        check_int("seed", self.seed, 0, 2**31 - 2, where)  # cma takes seed + 1 below 2**31


@dataclass(frozen=True)
class WeightFit:
    """The fitted rule and every candidate the search scored (coefficients in `COEFFICIENTS`
    order, objective value), the start first."""

    best: WeightConfig
    best_value: float
    start_value: float
    evaluated: list[tuple[tuple[float, ...], float]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"best": {c: getattr(self.best, c) for c in COEFFICIENTS}, "best_value": self.best_value,
                "start_value": self.start_value,
                "evaluated": [{"coefficients": list(x), "value": v} for x, v in self.evaluated]}


def coefficients(config: WeightConfig) -> np.ndarray:
    return np.array([getattr(config, c) for c in COEFFICIENTS], np.float64)


def with_coefficients(config: WeightConfig, x: Sequence[float]) -> WeightConfig:
    return replace(config, **{c: float(v) for c, v in zip(COEFFICIENTS, x, strict=True)})


def fit_weight_rule(
    objective: Callable[[list[WeightConfig]], Sequence[float]],
    start: WeightConfig | None = None,
    config: FitConfig | None = None,
) -> WeightFit:
    """Maximise `objective` over the rule's five coefficients; see the module docstring.

    objective: takes a list of candidate `WeightConfig`s and returns one finite value each
    (higher is better). start: the first candidate and the search's centre (default: the
    hand-set rule). Returns the best evaluated candidate (the start included, so the fit is
    never worse than the start on the objective it was fitted on).
    """
    import cma

    start = start or WeightConfig()
    config = config or FitConfig()
    x0 = np.clip(coefficients(start), -config.bound, config.bound)
    start = with_coefficients(start, x0)
    evaluated: list[tuple[tuple[float, ...], float]] = []

    def score(candidates: list[np.ndarray]) -> list[float]:
        values = [float(v) for v in objective([with_coefficients(start, x) for x in candidates])]
        if len(values) != len(candidates) or not all(np.isfinite(values)):
            raise ConfigError(
                f"The weight-rule objective must return one finite value per candidate ({len(candidates)}). "
                f"Got {values!r} instead."
            )
        evaluated.extend((tuple(float(v) for v in x), val) for x, val in zip(candidates, values, strict=True))
        return values

    start_value = score([x0])[0]
    es = cma.CMAEvolutionStrategy(
        x0, config.sigma,
        {"popsize": config.population, "seed": config.seed + 1, "bounds": [-config.bound, config.bound],
         "verbose": -9, "verb_disp": 0, "verb_log": 0},
    )
    for _ in range(config.generations):
        candidates = [np.asarray(x, np.float64) for x in es.ask()]
        values = score(candidates)
        es.tell(candidates, [-v for v in values])  # cma minimises
    best_x, best_value = max(evaluated, key=lambda e: e[1])
    return WeightFit(with_coefficients(start, best_x), best_value, start_value, evaluated)
