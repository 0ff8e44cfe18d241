"""The slate policies the HTTP service runs per request: `ItemUCBPolicy` (its default) and
`GreedyPolicy`, behind the `SlatePolicy` protocol.

The service ranks candidates (item indices and scores, best first) and gives the slate size and
the request's exploration weight w in [0, 1]; a slate policy picks the k shown, says which were
exploration, and gives each shown item its propensity (the probability that this policy shows it
there), which the service logs with the impression so that off-policy estimators can evaluate
other policies later. Both return `shoprec.explore.slate.Slate`.

`ItemUCBPolicy` keeps the top of the ranking in the exploit slots; a Binomial(budget, w) number
of exploration slots (placed as in `shoprec.explore.slate`) show the candidates outside the top
k with the best item-level UCB on their observed click rate. The choice among candidates is
deterministic given the number of exploration slots, so every propensity is exact: the sum of
the binomial probabilities of the counts under which the item lands in that slot. It keys its
counts by item id, so they survive a model reload that renumbers the items.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from shoprec.errors import ConfigError, DataError, check_float, check_int
from shoprec.explore.slate import Slate, SlateConfig, assemble, explore_positions

__all__ = ["GreedyPolicy", "ItemUCBPolicy", "SlatePolicy", "serving_policy"]


@runtime_checkable
class SlatePolicy(Protocol):
    """A policy that turns ranked candidates into a slate, and learns from feedback."""

    name: str

    def choose(self, items: np.ndarray, item_ids: Sequence[str], scores: np.ndarray, k: int,
               exploration: float, rng: np.random.Generator) -> Slate:
        """Pick min(k, len(items)) of the candidates (item indices, given best first, with their
        ids and scores); exploration: the weight in [0, 1] (0 = exploit only)."""

    def update(self, item_id: str, reward: float) -> None:
        """Feedback on a shown item: 1 for a click/cart/purchase attributed to a slate."""


def _check_candidates(items: np.ndarray, item_ids: Sequence[str], scores: np.ndarray, k: int,
                      exploration: float, where: str) -> tuple[int, float]:
    k = check_int("k", k, 1, 1000, where)
    w = check_float("exploration", exploration, 0.0, 1.0, where)
    n = len(items)
    if len(scores) != n or len(item_ids) != n:
        raise DataError(
            f"items, item_ids and scores must have the same length. Got {n}, {len(item_ids)} and {len(scores)}."
        )
    if n == 0:
        raise DataError("There are no candidates to choose from.")
    return k, w


class GreedyPolicy:
    """The top k candidates as ranked; nothing explored; propensity 1 (it is deterministic)."""

    name = "greedy"

    def choose(self, items, item_ids, scores, k, exploration, rng) -> Slate:
        k, _ = _check_candidates(items, item_ids, scores, k, exploration, "GreedyPolicy.choose")
        cols = np.arange(min(k, len(items)))
        return Slate(np.asarray(items, np.int64)[cols], np.asarray(scores, np.float64)[cols], np.ones(len(cols)),
                     np.zeros(len(cols), bool), ["exploit"] * len(cols), 0.0, {}, self.name, cols)

    def update(self, item_id: str, reward: float) -> None:  # nothing to learn
        return None


class ItemUCBPolicy:
    """Exploit the given ranking; explore budget slots by item-level UCB; exact propensities.

    prior_ctr, prior_strength: Beta-style prior of an item's click rate; c: UCB bonus scale.
    """

    name = "item-ucb"

    def __init__(self, slate: SlateConfig | None = None, prior_ctr: float = 0.03, prior_strength: float = 20.0,
                 c: float = 1.0, seed: int = 0) -> None:
        self.slate = slate or SlateConfig()
        self.prior_ctr = check_float("prior_ctr", prior_ctr, 1e-6, 1.0, "ItemUCBPolicy")
        self.prior_strength = check_float("prior_strength", prior_strength, 1e-6, 1e9, "ItemUCBPolicy")
        self.c = check_float("c", c, 0.0, 1e6, "ItemUCBPolicy")
        self.seed = seed
        self.impressions: dict[str, float] = {}
        self.rewards: dict[str, float] = {}

    def _ucb(self, item_ids: list[str]) -> np.ndarray:
        shows = np.array([self.impressions.get(i, 0.0) for i in item_ids])
        clicks = np.array([self.rewards.get(i, 0.0) for i in item_ids])
        total = sum(self.impressions.values()) + 1.0
        rate = (clicks + self.prior_ctr * self.prior_strength) / (shows + self.prior_strength)
        return rate + self.c * np.sqrt(rate * (1 - rate) * np.log(total + 1.0) / (shows + 1.0))

    def choose(self, items, item_ids, scores, k, exploration, rng) -> Slate:
        """See the module docstring."""
        from scipy.stats import binom

        k, w = _check_candidates(items, item_ids, scores, k, exploration, "ItemUCBPolicy.choose")
        n = len(items)
        k_eff = min(k, n)
        first = min(self.slate.first_explore_slot, k_eff - 1)
        positions = explore_positions(k_eff, min(self.slate.explore_budget, k_eff - first), first)
        outside = np.arange(k_eff, n)
        cap = min(len(positions), len(outside))
        order = outside[np.argsort(-self._ucb([item_ids[i] for i in outside]), kind="stable")][:cap]
        exploit = np.arange(k_eff)[None]
        explore = order[None].astype(np.int64) if cap else np.zeros((1, 0), np.int64)
        m = int(rng.binomial(cap, w)) if cap else 0
        slots, explored = assemble(exploit, explore, np.array([m]), positions, k_eff)
        prop = np.zeros(k_eff)
        for mm in range(cap + 1):
            alt, _ = assemble(exploit, explore, np.array([mm]), positions, k_eff)
            prop += binom.pmf(mm, cap, w) * (alt[0] == slots[0])
        cols = slots[0].copy()
        for col in cols:
            self.impressions[item_ids[col]] = self.impressions.get(item_ids[col], 0.0) + 1.0
        reasons = ["exploring: uncertain" if e else "exploit" for e in explored[0]]
        return Slate(np.asarray(items, np.int64)[cols], np.asarray(scores, np.float64)[cols], prop,
                     explored[0].copy(), reasons, w, {}, self.name, cols)

    def update(self, item_id: str, reward: float) -> None:
        """Record a reward (1 for a click, cart or purchase) for a shown item."""
        if not np.isfinite(reward):
            raise ConfigError(f"reward must be a finite number. Got {reward!r} instead.")
        self.rewards[item_id] = self.rewards.get(item_id, 0.0) + float(reward)


def serving_policy(seed: int = 0) -> ItemUCBPolicy:
    """The service's default slate policy."""
    return ItemUCBPolicy(seed=seed)
