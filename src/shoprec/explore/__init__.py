"""Exploration and exploitation, weighed per shopper and request.

- `pools`: candidate pools (exploit top-N, long-tail items near each interest, new items reachable
  through their text, trending items).
- `config`: `PolicyConfig`, how a policy is set up.
- `policies`: greedy, epsilon-greedy, UCB, softmax, LinUCB, linear Thompson sampling and the
  dynamic policy, over one shared online learner.
- `weighting`: the dynamic exploration weight and its signals (hand-set coefficients).
- `learned`: the learned exploration weight, a LinUCB bandit over exploration levels.
- `slate`: exploration budget, MMR and calibrated re-ranking, propensities, the Slate result.
- `state`: per-shopper posteriors and per-item statistics as plain arrays (Sherman-Morrison
  updates, `to_arrays` / `from_arrays`).
- `online`: one request at a time with the shopper's state stored outside (`OnlineExplorer`):
  what the HTTP service runs.
- `offpolicy`: target policies (logged, greedy, fixed-rate epsilon-greedy) evaluated on the
  service's logged slates (`shoprec ope`).

See docs/exploration.md for the rules and the benchmark.
"""

from shoprec.explore.config import POLICY_KINDS, PolicyConfig, examination
from shoprec.explore.learned import LevelBandit, LevelConfig
from shoprec.explore.online import OnlineConfig, OnlineExplorer
from shoprec.explore.policies import Policy
from shoprec.explore.pools import (
    SOURCES,
    Candidates,
    PoolConfig,
    build_candidates,
    history_interests,
)
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
    "LevelBandit",
    "LevelConfig",
    "OnlineConfig",
    "OnlineExplorer",
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
    "update_shopper",
]
