"""A learned exploration weight: a contextual bandit over a few exploration levels.

The hand-set rule of `shoprec.explore.weighting` maps a shopper's four signals (history h,
posterior variance v, drift r, payoff of past exploration p) to a weight through coefficients
chosen by hand. `LevelBandit` learns that map from feedback instead: for each request it picks
one of `levels` (say 0, 0.05, 0.1, 0.2, 0.4: the probability that each exploration slot of the
budget explores) by LinUCB (Li et al., WWW 2010) over the context x = [1, h, v, r, p], and is
updated with the request's reward (the clicks of its slate) for the level it used:

    level = argmax_l  x . b_l  +  alpha * sigma * sqrt(x^T A_l^-1 x),   A_l = ridge I + sum x x^T

with sigma the running standard deviation of the request rewards, so that `alpha` is in
units of reward noise. The choice is a deterministic function of the bandit's state and the
context, so the probability of a shown item is the exploration mechanism's own, exact one
(epsilon-greedy's binomial mixture at the chosen level). Ties go to the lower level, so a fresh
bandit starts at level 0 (greedy) and tries the others as their bonus outgrows its.

`LevelBandit.weight` has the interface of `shoprec.explore.weighting.exploration_weight`
(weights and signals from the same shopper arrays); `update` takes the signals back with the
rewards. The state is plain arrays (`to_arrays` / `from_arrays`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shoprec.errors import ConfigError, DataError, check_float
from shoprec.explore.weighting import WeightConfig, check_override, exploration_weight

__all__ = ["CONTEXT", "LevelBandit", "LevelConfig"]

CONTEXT: tuple[str, ...] = ("bias", "history", "variance", "drift", "payoff")
"""The bandit's context, in order: a constant and the four signals of the hand-set rule."""


@dataclass(frozen=True)
class LevelConfig:
    """The learned weight's settings.

    levels: the exploration levels to choose among, each in [0, 1], increasing. alpha: the UCB
    bonus in reward standard deviations. ridge: prior precision of each level's coefficients.
    signals: how the four signals are computed (the hand-set rule's `WeightConfig`; only its
    signal settings are used, never its coefficients).
    """

    levels: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.4)
    alpha: float = 1.0
    ridge: float = 1.0
    signals: WeightConfig = field(default_factory=WeightConfig)

    def __post_init__(self) -> None:
        where = "LevelConfig"
        levels = tuple(float(v) for v in self.levels)
        if not levels or any(not 0.0 <= v <= 1.0 for v in levels) or list(levels) != sorted(set(levels)):
            raise ConfigError(
                f"The 'levels' parameter of {where} must be distinct increasing numbers in [0, 1]. "
                f"Got {self.levels!r} instead."
            )
        object.__setattr__(self, "levels", levels)
        check_float("alpha", self.alpha, 0.0, 1e6, where)
        check_float("ridge", self.ridge, 1e-9, 1e9, where)


class LevelBandit:
    """LinUCB over exploration levels; see the module docstring. State: A (L, d, d) precision,
    b (L, d) reward sums, and the running count, mean and second moment of request rewards."""

    def __init__(self, config: LevelConfig | None = None) -> None:
        self.config = config or LevelConfig()
        n_levels, d = len(self.config.levels), len(CONTEXT)
        self.precision = np.tile(self.config.ridge * np.eye(d), (n_levels, 1, 1))
        self.reward_sum = np.zeros((n_levels, d))
        self.moments = np.zeros(3)  # count, sum, sum of squares of request rewards

    @property
    def levels(self) -> np.ndarray:
        return np.asarray(self.config.levels)

    @staticmethod
    def context(signals: dict[str, np.ndarray]) -> np.ndarray:
        """(n, 5) contexts [1, h, v, r, p] from a weight's signals."""
        h = np.asarray(signals["history"], np.float64)
        return np.stack([np.ones_like(h), h, signals["variance"], signals["drift"], signals["payoff"]], axis=1)

    def noise_sd(self) -> float:
        """Running sd of request rewards (1 before two rewards have been seen)."""
        n, s, ss = self.moments
        if n < 2:
            return 1.0
        return float(np.sqrt(max(ss / n - (s / n) ** 2, 1e-12)))

    def scores(self, x: np.ndarray) -> np.ndarray:
        """(n, L) upper confidence bounds of each level's reward."""
        inv = np.linalg.inv(self.precision)
        coef = np.einsum("lde,le->ld", inv, self.reward_sum)
        mean = x @ coef.T
        width = np.sqrt(np.maximum(np.einsum("nd,lde,ne->nl", x, inv, x), 0.0))
        return mean + self.config.alpha * self.noise_sd() * width

    def choose(self, x: np.ndarray) -> np.ndarray:
        """(n,) level indices: the highest bound, ties to the lower level."""
        return np.argmax(self.scores(np.asarray(x, np.float64)), axis=1)

    def weight(
        self,
        n_events: np.ndarray,
        variance_ratio: np.ndarray,
        recent: np.ndarray,
        longterm: np.ndarray,
        payoff: np.ndarray,
        override: float | np.ndarray | None = None,
        population_payoff: np.ndarray | None = None,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Weights (n,) and signals, as `exploration_weight` returns them, plus "level" (the
        chosen level's index, -1 where an override set the weight)."""
        _, signals = exploration_weight(n_events, variance_ratio, recent, longterm, payoff, self.config.signals,
                                        population_payoff=population_payoff)
        arm = self.choose(self.context(signals))
        w = self.levels[arm]
        if override is not None:
            o = check_override(override, len(w))
            arm = np.where(np.isnan(o), arm, -1)
            w = np.where(np.isnan(o), w, o)
        return w, {**signals, "level": arm.astype(np.float64)}

    def update(self, signals: dict[str, np.ndarray], rewards: np.ndarray) -> None:
        """Learn from requests' signals (as `weight` returned them) and rewards (n,); requests
        whose weight was overridden (level -1) are skipped."""
        rewards = np.asarray(rewards, np.float64)
        arm = np.asarray(signals["level"]).astype(np.int64)
        if rewards.shape != arm.shape:
            raise DataError(f"rewards must have one value per request ({arm.shape}). Got {rewards.shape} instead.")
        use = arm >= 0
        x, arm, r = self.context(signals)[use], arm[use], rewards[use]
        onehot = np.eye(len(self.levels))[arm]  # (n, L)
        self.precision += np.einsum("nl,nd,ne->lde", onehot, x, x)
        self.reward_sum += np.einsum("nl,nd->ld", onehot, x * r[:, None])
        self.moments += [len(r), r.sum(), (r**2).sum()]

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"precision": self.precision, "reward_sum": self.reward_sum, "moments": self.moments,
                "levels": self.levels}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], config: LevelConfig | None = None) -> LevelBandit:
        bandit = cls(config)
        if not np.array_equal(np.asarray(arrays["levels"]), bandit.levels):
            raise DataError(f"Saved levels {list(arrays['levels'])} differ from the config's {list(bandit.levels)}.")
        bandit.precision = np.asarray(arrays["precision"], np.float64).copy()
        bandit.reward_sum = np.asarray(arrays["reward_sum"], np.float64).copy()
        bandit.moments = np.asarray(arrays["moments"], np.float64).copy()
        return bandit
