"""The seam between the service and `shoprec.explore`: how a slate is chosen from candidates.

The service ranks candidates; a slate policy picks the k shown, says which were exploration,
and gives each shown item its propensity (the probability that this policy shows it), which is
logged with the impression so that off-policy estimators can evaluate other policies later.

`shoprec.explore` plugs in by exposing `serving_policy(seed: int) -> SlatePolicy` (an object with
`name`, `choose` and `update` as in `SlatePolicy` below). Until it does, the service uses
`GreedyPolicy`: the top k, nothing explored, every propensity 1.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["GreedyPolicy", "Slate", "SlatePolicy", "load_policy"]


@dataclass(frozen=True)
class Slate:
    """What a policy chose: positions into the candidate list (display order), propensities in
    (0, 1], and whether each shown item was exploration rather than exploitation."""

    positions: np.ndarray
    propensities: np.ndarray
    explored: np.ndarray


@runtime_checkable
class SlatePolicy(Protocol):
    """A policy that turns ranked candidates into a slate, and learns from feedback."""

    name: str

    def choose(
        self, item_ids: list[str], scores: np.ndarray, k: int, exploration: float, rng: np.random.Generator
    ) -> Slate:
        """Pick k of the candidates (given best first, with their scores).

        exploration: the weight in [0, 1] the request asked for (0 = exploit only).
        """

    def update(self, item_id: str, reward: float) -> None:
        """Feedback on a shown item: 1 for a click/cart/purchase attributed to a slate."""


class GreedyPolicy:
    """The top k candidates as ranked; nothing explored; propensity 1 (the policy is deterministic)."""

    name = "greedy"

    def choose(self, item_ids, scores, k, exploration, rng) -> Slate:
        n = min(k, len(scores))
        return Slate(np.arange(n), np.ones(n), np.zeros(n, dtype=bool))

    def update(self, item_id: str, reward: float) -> None:  # nothing to learn
        return None


def load_policy(seed: int = 0) -> SlatePolicy:
    """`shoprec.explore.serving_policy(seed)` when that exists, else `GreedyPolicy()`."""
    try:
        explore = importlib.import_module("shoprec.explore")
    except ImportError:  # pragma: no cover - the package always exists, maybe empty
        return GreedyPolicy()
    factory = getattr(explore, "serving_policy", None)
    if factory is None:
        return GreedyPolicy()
    policy = factory(seed=seed)
    if not isinstance(policy, SlatePolicy):
        raise TypeError(
            "shoprec.explore.serving_policy must return an object with name, choose() and update(); "
            f"got {type(policy).__name__}."
        )
    return policy
