"""How a policy is configured: its kind, its exploration parameter, and the slate, learner and
weight settings it runs with (`PolicyConfig`), plus the position-bias curve every policy shares.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shoprec.errors import ConfigError, check_choice, check_float
from shoprec.explore.learned import LevelConfig
from shoprec.explore.slate import SlateConfig
from shoprec.explore.state import BanditConfig
from shoprec.explore.weighting import WeightConfig

__all__ = ["EXPLORERS", "EXPLORE_ORDERS", "POLICY_KINDS", "PolicyConfig", "examination"]

POLICY_KINDS: tuple[str, ...] = ("greedy", "egreedy", "ucb", "softmax", "linucb", "thompson", "dynamic", "learned")
MAIN_PARAMETER = {"egreedy": "epsilon", "ucb": "ucb_c", "softmax": "temperature", "linucb": "alpha",
                   "thompson": "thompson_scale", "dynamic": "alpha"}
EXPLORE_ORDERS: tuple[str, ...] = ("uniform", "ucb")
EXPLORERS: tuple[str, ...] = ("thompson", "linucb", "egreedy")


def examination(k: int) -> np.ndarray:
    """Probability that slot j (0-based) is looked at: 1 / log2(j + 2), as in DCG."""
    return 1.0 / np.log2(np.arange(k) + 2.0)


@dataclass(frozen=True)
class PolicyConfig:
    """A policy: its kind, its exploration parameter, and how it builds slates and learns.

    epsilon: egreedy's exploration probability per budget slot. alpha: LinUCB's bonus in posterior
    sds. ucb_c: UCB's bonus in sds of the item residual. temperature: softmax's, in reward units.
    thompson_scale: multiplies the posterior sd of Thompson draws. explorer: the dynamic
    policy's exploration rule, "thompson" (the default; Monte-Carlo propensities), "linucb"
    (deterministic, exact propensities) or "egreedy" (each budget slot explores with probability
    w, the rule's weight, in `explore_order`; exact binomial propensities).
    score_scaling: "rank" turns the model's scores into -log(1 + rank) among each request's
    candidates (the calibrator then fits click rates that fall as a power of the rank); "given"
    takes the scores as that feature already (for example -log(1 + rank) over the catalogue,
    which keeps an item's feature independent of what else is in the pool).
    explore_order: what an epsilon-greedy exploration slot shows (egreedy, learned, and dynamic
    with the egreedy explorer):
    "uniform", a uniformly random candidate from outside the exploit top-k, or "ucb", the outside
    candidates in order of their LinUCB value (mean + alpha sd of the posterior), so that the
    slate is a deterministic function of the number of exploring slots; both are exact.
    levels: the learned policy's exploration levels and bandit (`shoprec.explore.learned`); the
    learned policy is epsilon-greedy whose epsilon, per request, is the level its bandit picks.
    uniform_mix: probability that a whole slate is drawn uniformly at random from the candidates
    instead (every candidate then has a positive propensity in every slot: a logging policy for
    off-policy evaluation). 1 gives the uniform logging policy that replay needs.
    """

    kind: str = "dynamic"
    epsilon: float = 0.1
    alpha: float = 1.0
    ucb_c: float = 1.0
    temperature: float = 0.01
    thompson_scale: float = 1.0
    explorer: str = "thompson"
    score_scaling: str = "rank"
    explore_order: str = "uniform"
    uniform_mix: float = 0.0
    slate: SlateConfig = field(default_factory=SlateConfig)
    bandit: BanditConfig = field(default_factory=BanditConfig)
    weighting: WeightConfig = field(default_factory=WeightConfig)
    levels: LevelConfig = field(default_factory=LevelConfig)
    label: str = ""

    def __post_init__(self) -> None:
        where = "PolicyConfig"
        check_choice("kind", self.kind, POLICY_KINDS, where)
        check_choice("explorer", self.explorer, EXPLORERS, where)
        check_choice("score_scaling", self.score_scaling, ("rank", "given"), where)
        check_choice("explore_order", self.explore_order, EXPLORE_ORDERS, where)
        check_float("epsilon", self.epsilon, 0.0, 1.0, where)
        check_float("alpha", self.alpha, 0.0, 1e6, where)
        check_float("ucb_c", self.ucb_c, 0.0, 1e6, where)
        check_float("temperature", self.temperature, 1e-9, 1e6, where)
        check_float("thompson_scale", self.thompson_scale, 0.0, 1e6, where)
        check_float("uniform_mix", self.uniform_mix, 0.0, 1.0, where)

    @property
    def name(self) -> str:
        return self.label or self.kind

    @property
    def epsilon_greedy(self) -> bool:
        """Whether exploration slots follow epsilon-greedy (egreedy, learned at its level, and
        dynamic with the egreedy explorer at the rule's weight)."""
        return self.kind in ("egreedy", "learned") or (self.kind == "dynamic" and self.explorer == "egreedy")

    @property
    def monte_carlo(self) -> bool:
        """Whether propensities are Monte-Carlo estimates (Thompson sampling and softmax)."""
        return self.kind in ("softmax", "thompson") or (self.kind == "dynamic" and self.explorer == "thompson")

    @classmethod
    def parse(cls, spec: str, **overrides) -> PolicyConfig:
        """'linucb', or 'egreedy:0.05' (kind:main parameter: epsilon, alpha, ucb_c, temperature
        or thompson_scale); overrides are other PolicyConfig fields."""
        kind, _, value = spec.strip().partition(":")
        kind = check_choice("policy", kind, POLICY_KINDS, "PolicyConfig.parse")
        params = dict(overrides)
        if value:
            if kind not in MAIN_PARAMETER:
                raise ConfigError(f"The {kind} policy takes no parameter. Got {spec!r} instead.")
            try:
                params[MAIN_PARAMETER[kind]] = float(value)
            except ValueError:
                raise ConfigError(f"The parameter in policy {spec!r} must be a number. Got {value!r} instead.") from None
        params.setdefault("label", spec.strip())
        return cls(kind=kind, **params)
