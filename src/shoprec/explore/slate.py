"""Slates: exploit slots, a budget of exploration slots, diversity re-ranking, and propensities.

A slate of k slots is built in three steps (batched over requests):

1. The exploit list: the candidates ranked by the policy's posterior mean, optionally re-ranked
   for diversity by maximal marginal relevance (`mmr_lambda` < 1) or calibrated to the shopper's
   category mix (`calibration` > 0). It is deterministic.
2. The number of exploration slots n_e <= `explore_budget`, decided by the policy. Exploration
   slots take fixed positions: the first n_e of `explore_positions(k, budget, first_explore_slot)`
   (slots before `first_explore_slot` are never exploratory, so the top of the slate stays safe).
3. Exploit slots show the exploit list in order; exploration slots show the policy's n_e picks
   among the candidates outside the exploit top-k.

Every shown item carries its propensity: the probability that the policy shows that item in that
slot, exact for greedy, UCB, LinUCB and epsilon-greedy, and estimated by Monte-Carlo for
Thompson sampling and softmax (see `shoprec.explore.policies`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shoprec.errors import check_float, check_int
from shoprec.explore.pools import SOURCES

__all__ = ["Slate", "SlateBatch", "SlateConfig", "assemble", "calibrated_rerank", "diversify_by_category", "explore_positions", "mmr_rerank"]


@dataclass(frozen=True)
class SlateConfig:
    """Slate size, exploration budget and re-ranking.

    k: slots per slate. explore_budget: most exploratory slots per slate. first_explore_slot:
    slots before it are never exploratory. mmr_lambda: 1 = pure relevance, lower = more diverse.
    calibration: 0 = off, up to 1 = match the shopper's category mix only. propensity_samples:
    Monte-Carlo draws behind the propensities of randomised policies.
    """

    k: int = 10
    explore_budget: int = 3
    first_explore_slot: int = 2
    mmr_lambda: float = 1.0
    calibration: float = 0.0
    propensity_samples: int = 200

    def __post_init__(self) -> None:
        where = "SlateConfig"
        check_int("k", self.k, 1, 1000, where)
        check_int("first_explore_slot", self.first_explore_slot, 0, self.k - 1, where)
        check_int("explore_budget", self.explore_budget, 0, self.k - self.first_explore_slot, where)
        check_float("mmr_lambda", self.mmr_lambda, 0.0, 1.0, where)
        check_float("calibration", self.calibration, 0.0, 1.0, where)
        check_int("propensity_samples", self.propensity_samples, 1, 1_000_000, where)


def explore_positions(k: int, budget: int, first: int = 2) -> np.ndarray:
    """The slots that become exploratory, in the order they are used: spread down the slate,
    every third slot from `first`, then the slots between them (k=10, first=2: 2 5 8 3 6 9 4 7)."""
    eligible = np.arange(first, k)
    order = sorted(eligible.tolist(), key=lambda j: ((j - first) % 3, j))
    return np.array(order[: max(budget, 0)], dtype=np.int64)


def mmr_rerank(relevance: np.ndarray, features: np.ndarray, valid: np.ndarray, k: int, lam: float) -> np.ndarray:
    """Maximal marginal relevance: k columns per row, each maximising
    lam * relevance - (1 - lam) * max cosine to those already chosen (relevance min-max scaled
    to [0, 1] per row). lam = 1 is the plain relevance order. -1 pads rows with fewer valid."""
    check_float("mmr_lambda", lam, 0.0, 1.0, "mmr_rerank")
    n, c = relevance.shape
    k = min(k, c)
    rel = np.where(valid, relevance, np.nan)
    lo, hi = np.nanmin(np.where(valid, rel, np.inf), axis=1, keepdims=True), np.nanmax(np.where(valid, rel, -np.inf), axis=1, keepdims=True)
    span = np.where(hi > lo, hi - lo, 1.0)
    rel = np.where(valid, (relevance - lo) / span, -np.inf)
    chosen = np.full((n, k), -1, np.int64)
    max_sim = np.zeros((n, c))
    taken = ~valid.copy()
    rows = np.arange(n)
    for step in range(k):
        value = lam * rel - (1.0 - lam) * max_sim
        value = np.where(taken, -np.inf, value)
        # Ties go to the lower column, so lam = 1 gives exactly the relevance order.
        pick = np.argmax(value, axis=1)
        ok = np.isfinite(value[rows, pick])
        chosen[ok, step] = pick[ok]
        taken[rows[ok], pick[ok]] = True
        if lam < 1.0:
            sim = np.einsum("ncd,nd->nc", features, features[rows, pick])
            max_sim = sim if step == 0 else np.maximum(max_sim, sim)
    return chosen


def calibrated_rerank(
    relevance: np.ndarray, categories: np.ndarray, target: np.ndarray, valid: np.ndarray, k: int,
    strength: float, smoothing: float = 0.01,
) -> np.ndarray:
    """Calibrated re-ranking (Steck 2018): k columns per row greedily maximising
    (1 - strength) * sum of relevance (scaled to [0, 1]) - strength * KL(target || mix of chosen).

    categories (n, C) int codes; target (n, n_cat) the shopper's category distribution.
    """
    check_float("calibration", strength, 0.0, 1.0, "calibrated_rerank")
    n, c = relevance.shape
    k = min(k, c)
    n_cat = target.shape[1]
    rel = np.where(valid, relevance, np.nan)
    lo = np.nanmin(np.where(valid, rel, np.inf), axis=1, keepdims=True)
    hi = np.nanmax(np.where(valid, rel, -np.inf), axis=1, keepdims=True)
    rel = np.where(valid, (relevance - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0)
    p = target / np.maximum(target.sum(axis=1, keepdims=True), 1e-12)
    onehot = np.eye(n_cat)[np.clip(categories, 0, n_cat - 1)] * (categories >= 0)[..., None]
    counts = np.zeros((n, n_cat))
    total_rel = np.zeros(n)
    chosen = np.full((n, k), -1, np.int64)
    taken = ~valid.copy()
    rows = np.arange(n)
    for step in range(k):
        q = (counts[:, None, :] + onehot) / (step + 1)
        q = (1 - smoothing) * q + smoothing * p[:, None, :]
        kl = np.where(p[:, None, :] > 0, p[:, None, :] * np.log(np.maximum(p[:, None, :], 1e-12) / np.maximum(q, 1e-12)), 0.0).sum(-1)
        value = (1 - strength) * (total_rel[:, None] + rel) - strength * kl
        value = np.where(taken, -np.inf, value)
        pick = np.argmax(value, axis=1)
        ok = np.isfinite(value[rows, pick])
        chosen[ok, step] = pick[ok]
        taken[rows[ok], pick[ok]] = True
        counts[ok] += onehot[rows[ok], pick[ok]]
        total_rel[ok] += rel[rows[ok], pick[ok]]
    return chosen


def assemble(exploit_order: np.ndarray, explore_order: np.ndarray, n_explore: np.ndarray,
             positions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Place items into k slots: exploration slots are the first n_explore of `positions` and show
    `explore_order` in order; the other slots show `exploit_order` in order.

    exploit_order (n, >=k), explore_order (n, >=max n_explore): candidate columns (-1 = none).
    Returns (slots (n, k) candidate columns, -1 where nothing is left; explored (n, k) bool).
    """
    n = len(exploit_order)
    rank_of_slot = np.full(k, k + 1, np.int64)
    rank_of_slot[positions] = np.arange(len(positions))
    explored = rank_of_slot[None, :] < np.asarray(n_explore)[:, None]
    exploit_rank = np.cumsum(~explored, axis=1) - 1
    exploit_pick = np.take_along_axis(exploit_order, np.minimum(exploit_rank, exploit_order.shape[1] - 1), axis=1)
    if explore_order.shape[1]:
        explore_rank = np.minimum(np.broadcast_to(rank_of_slot, (n, k)), explore_order.shape[1] - 1)
        explore_pick = np.take_along_axis(explore_order, explore_rank, axis=1)
    else:
        explore_pick = np.full((n, k), -1, np.int64)
    slots = np.where(explored, explore_pick, exploit_pick)
    return slots, explored & (slots >= 0)


@dataclass
class Slate:
    """One request's slate, in display order: what every policy returns, batch or per request.

    items: item indices; scores: the policy's score of each (posterior mean reward, or the
    ranking's score); propensities: the probability that the policy shows that item in that
    slot; explored: exploratory or not; reasons: why each item is there; weight: the exploration
    weight used, with its signals; columns: each item's position in the candidate list the
    policy was given.
    """

    items: np.ndarray
    scores: np.ndarray
    propensities: np.ndarray
    explored: np.ndarray
    reasons: list[str]
    weight: float
    weight_signals: dict[str, float] = field(default_factory=dict)
    policy: str = ""
    columns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


@dataclass
class SlateBatch:
    """Slates for n requests: every array has shape (n, k); weight (n,); -1 marks empty slots.

    shoppers (n,): shopper rows; items: item indices; columns: candidate columns; scores: the
    policy's posterior mean reward; weight_signals: the dynamic weight's signals (empty for
    fixed policies).
    """

    shoppers: np.ndarray
    items: np.ndarray
    columns: np.ndarray
    scores: np.ndarray
    propensities: np.ndarray
    explored: np.ndarray
    source: np.ndarray
    interest: np.ndarray
    weight: np.ndarray
    weight_signals: dict[str, np.ndarray]
    policy: str
    model_z: np.ndarray | None = None  # score features of the shown items (for learning)
    repeat: np.ndarray | None = None  # their repeat exposure (for learning)

    def __len__(self) -> int:
        return len(self.items)

    def reasons(self, i: int) -> list[str]:
        """Why each slot of request i shows its item: 'exploit', 'exploring: near interest X',
        'exploring: uncertain', 'new item' or 'trending'."""
        out = []
        for j in range(self.items.shape[1]):
            if self.items[i, j] < 0:
                out.append("")
            elif not self.explored[i, j]:
                out.append("exploit")
            else:
                src = SOURCES[self.source[i, j]] if self.source[i, j] >= 0 else "exploit"
                out.append({
                    "exploit": "exploring: uncertain",
                    "interest": f"exploring: near interest {int(self.interest[i, j])}",
                    "new": "new item",
                    "trending": "trending",
                }[src])
        return out

    def slate(self, i: int) -> Slate:
        """Request i as a Slate (empty slots dropped)."""
        keep = self.items[i] >= 0
        reasons = [r for r, ok in zip(self.reasons(i), keep) if ok]
        return Slate(self.items[i][keep].copy(), self.scores[i][keep].copy(), self.propensities[i][keep].copy(),
                     self.explored[i][keep].copy(), reasons, float(self.weight[i]),
                     {key: float(v[i]) for key, v in self.weight_signals.items()}, self.policy,
                     self.columns[i][keep].copy())

    @property
    def explore_share(self) -> float:
        """Share of shown slots that were exploratory."""
        shown = self.items >= 0
        return float(self.explored[shown].mean()) if shown.any() else 0.0


def diversify_by_category(scores: np.ndarray, categories: np.ndarray, k: int, weight: float) -> np.ndarray:
    """A permutation of the candidates whose first k trade score against repeating a category:
    maximal marginal relevance (`mmr_rerank`) over one-hot categories,
    with lambda = 1 - weight (0 keeps the score order; 1 takes a new category while one is left)."""
    n = len(scores)
    _, codes = np.unique(categories, return_inverse=True)
    onehot = np.eye(codes.max() + 1 if n else 1)[codes]
    first = mmr_rerank(scores[None, :], onehot[None], np.ones((1, n), bool), min(k, n), 1.0 - weight)[0]
    first = first[first >= 0]
    rest = np.setdiff1d(np.arange(n), first, assume_unique=False)
    return np.concatenate([first, rest[np.argsort(-scores[rest], kind="stable")]]).astype(np.int64)
