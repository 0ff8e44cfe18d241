"""Exploration and exploitation, weighed per shopper and request.

- `pools`: candidate pools (exploit top-N, long-tail items near each interest, new items reachable
  through their text, trending items).
- `policies`: greedy, epsilon-greedy, UCB, softmax, LinUCB, linear Thompson sampling and the
  dynamic policy, over one shared online learner.
- `weighting`: the dynamic exploration weight and its signals.
- `slate`: exploration budget, MMR and calibrated re-ranking, propensities, the Slate result.
- `state`: per-shopper posteriors and per-item statistics as plain arrays (Sherman-Morrison
  updates, `to_arrays` / `from_arrays`).
- `serving`: the policy the HTTP service plugs in (`serving_policy`).

See docs/exploration.md for the rules and the benchmark.
"""

from shoprec.explore.policies import POLICY_KINDS, Policy, PolicyConfig, examination
from shoprec.explore.pools import (
    SOURCES,
    Candidates,
    PoolConfig,
    build_candidates,
    history_interests,
)
from shoprec.explore.serving import serving_policy
from shoprec.explore.slate import Slate, SlateBatch, SlateConfig, calibrated_rerank, mmr_rerank
from shoprec.explore.state import (
    BanditConfig,
    Calibrator,
    ItemStats,
    ShopperState,
    ShopperStates,
    project,
    update_shopper,
)
from shoprec.explore.weighting import WeightConfig, exploration_weight

__all__ = [
    "POLICY_KINDS",
    "SOURCES",
    "BanditConfig",
    "Calibrator",
    "Candidates",
    "ItemStats",
    "Policy",
    "PolicyConfig",
    "PoolConfig",
    "ShopperState",
    "ShopperStates",
    "Slate",
    "SlateBatch",
    "SlateConfig",
    "WeightConfig",
    "build_candidates",
    "calibrated_rerank",
    "examination",
    "exploration_weight",
    "history_interests",
    "mmr_rerank",
    "project",
    "serving_policy",
    "update_shopper",
]
