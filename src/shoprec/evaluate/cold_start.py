"""The item cold-start protocol: hold items out of training entirely, then rank them.

1. Hold out a seeded random `fraction` of the items that have events; remove every event with
   them from training. Vocabularies stay whole, so held-out items are in the item space (they
   are in the catalogue) but no model saw anyone interact with them.
2. Targets are each user's interactions with held-out items. The users evaluated are those with
   at least one target and at least one training event (a history to start from); their
   histories are their training events, that is all their events on the other items.
3. Each evaluated user's scores over ALL catalogue items are ranked, excluding the items in
   their training history, and Recall@K = (targets in the top K) / (number of targets),
   averaged over users (`shoprec.evaluate.metrics`). Optionally (`candidates="held_out"`) only
   the held-out items are ranked, which asks "which new item" rather than "new or old".

Any model's scores can be ranked this way; the text model (`shoprec.models.content`) is the
one that can score an item nobody interacted with.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from shoprec.data.dataset import Dataset
from shoprec.errors import ConfigError, EmptyDataError, check_choice, check_float, check_int
from shoprec.evaluate.protocol import EvaluationResult, evaluate_scores

__all__ = ["CANDIDATES", "ColdStartSplit", "cold_start_evaluate", "hold_out_items"]


class ColdStartSplit(NamedTuple):
    """What `hold_out_items` returns; unpacks as (train, held_out, targets).

    train: the dataset without any event on a held-out item (same vocabularies and catalogue).
    held_out: sorted dense indices of the held-out items.
    targets: n_users x n_items csr matrix, 1 where a user interacted with a held-out item and
        has at least one training event (the users the protocol evaluates).
    """

    train: Dataset
    held_out: np.ndarray
    targets: sp.csr_matrix


def hold_out_items(dataset: Dataset, fraction: float = 0.1, seed: int = 0) -> ColdStartSplit:
    """Hold a seeded random `fraction` of the items with events out of training entirely.

    fraction: share of the items that have at least one event, in (0, 0.9]; at least one item.
    seed: same dataset and seed, same held-out items.
    See the module docstring for the protocol. Raises EmptyDataError when nothing is left to
    train on or nobody can be evaluated.
    """
    check_float("fraction", fraction, 0.0, 0.9, "hold_out_items")
    if fraction <= 0:
        raise ConfigError(
            f"The 'fraction' parameter of hold_out_items must be above 0. Got {fraction}."
        )
    seed = check_int("seed", seed, 0, 2**63 - 1, "hold_out_items")
    if len(dataset) == 0:
        raise EmptyDataError("Cannot hold items out of an empty dataset.")
    active = np.unique(dataset.item_idx)
    n_hold = max(1, round(fraction * len(active)))
    held = np.sort(np.random.default_rng(seed).choice(active, size=n_hold, replace=False))
    is_held = np.zeros(dataset.n_items, bool)
    is_held[held] = True
    cold = is_held[dataset.item_idx]
    if cold.all():
        raise EmptyDataError("Holding these items out leaves no training events.")
    train = dataset.subset(~cold, f"{dataset.name}[cold-train]")
    has_history = np.bincount(train.user_idx, minlength=dataset.n_users) > 0
    rows = cold & has_history[dataset.user_idx]
    targets = sp.csr_matrix(
        (np.ones(int(rows.sum()), np.float32), (dataset.user_idx[rows], dataset.item_idx[rows])),
        shape=(dataset.n_users, dataset.n_items),
    )
    targets.sum_duplicates()
    targets.data[:] = 1.0
    if targets.nnz == 0:
        raise EmptyDataError("No user with a training history interacted with a held-out item.")
    return ColdStartSplit(train, held, targets)


CANDIDATES = ("all", "held_out")


def cold_start_evaluate(
    score_fn,
    split: ColdStartSplit,
    k: int | tuple[int, ...] = (20,),
    candidates: str = "all",
    block_size: int = 1024,
) -> EvaluationResult:
    """Rank the held-out items for the evaluated users; returns an `EvaluationResult`.

    score_fn: dense user indices -> (len(users), n_items) scores conditioned on the training
        histories, e.g. ``lambda u: model.score_users(u)`` for a model fitted on `split.train`.
    candidates: "all" ranks every catalogue item outside the user's training history (the
        standard); "held_out" ranks the held-out items only.
    The result's metrics include "Recall@K" and "HR@K" for each K (see `shoprec.evaluate`).
    """
    check_choice("candidates", candidates, CANDIDATES, "cold_start_evaluate")
    if candidates == "held_out":
        allowed = np.zeros(split.train.n_items, bool)
        allowed[split.held_out] = True
        inner = score_fn

        def score_fn(users: np.ndarray) -> np.ndarray:
            scores = np.array(inner(users), dtype=np.float64)
            scores[:, ~allowed] = -np.inf
            return scores

    return evaluate_scores(score_fn, split.train, split.targets, k, block_size=block_size)
