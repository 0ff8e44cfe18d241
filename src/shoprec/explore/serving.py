"""The policy the HTTP service plugs in through `shoprec.serve.exploration.load_policy`.

The service gives ranked candidates (item ids and scores, best first), the slate size and the
request's exploration weight w in [0, 1]. The slate keeps the top of the ranking in the exploit
slots; a Binomial(budget, w) number of exploration slots (placed as in `shoprec.explore.slate`)
show the candidates outside the top k with the best item-level UCB on their observed click rate.
The choice among candidates is deterministic given the number of exploration slots, so every
propensity is exact: the sum of the binomial probabilities of the counts under which the item
lands in that slot.

Per-shopper posteriors (`shoprec.explore.Policy`) need item embeddings and shopper rows; the
service can move to them when it keeps those. This one needs only item ids.
"""

from __future__ import annotations

import numpy as np

from shoprec.errors import ConfigError, DataError, check_float, check_int
from shoprec.explore.slate import Slate, SlateConfig, assemble, explore_positions

__all__ = ["ItemUCBPolicy", "serving_policy"]


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

    def choose(self, item_ids: list[str], scores: np.ndarray, k: int, exploration: float,
               rng: np.random.Generator) -> Slate:
        """Pick min(k, len(item_ids)) candidates (given best first); see the module docstring."""
        from scipy.stats import binom

        k = check_int("k", k, 1, 1000, "ItemUCBPolicy.choose")
        w = check_float("exploration", exploration, 0.0, 1.0, "ItemUCBPolicy.choose")
        n = len(item_ids)
        if len(scores) != n:
            raise DataError(f"item_ids and scores must have the same length. Got {n} and {len(scores)}.")
        if n == 0:
            raise DataError("There are no candidates to choose from.")
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
        shown = [item_ids[i] for i in slots[0]]
        for item in shown:
            self.impressions[item] = self.impressions.get(item, 0.0) + 1.0
        reasons = ["exploring: uncertain" if e else "exploit" for e in explored[0]]
        return Slate(slots[0].copy(), np.asarray(scores, np.float64)[slots[0]], prop, explored[0].copy(),
                     reasons, w, {}, self.name)

    def update(self, item_id: str, reward: float) -> None:
        """Record a reward (1 for a click, cart or purchase) for a shown item."""
        if not np.isfinite(reward):
            raise ConfigError(f"reward must be a finite number. Got {reward!r} instead.")
        self.rewards[item_id] = self.rewards.get(item_id, 0.0) + float(reward)


def serving_policy(seed: int = 0) -> ItemUCBPolicy:
    """The service's slate policy (see `shoprec.serve.exploration.SlatePolicy`)."""
    return ItemUCBPolicy(seed=seed)
