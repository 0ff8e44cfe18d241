"""Offline evaluation: full ranking over the whole catalogue, or the papers' sampled protocol.

Full ranking (the default). Every evaluated user's scores over all items are computed block by
block (`block_size` users at a time, never a full users x items matrix), the items in the
history the model conditions on are set to -inf, and the top max(k) items are selected with
`torch.topk` and then sorted. Metrics come from those lists (definitions in
`shoprec.evaluate.metrics`).

Tie policy. A list orders items by score descending, then by item index ascending, and every
metric is computed from that list, so an exported list (`shoprec.evaluate.export`) re-scores to
exactly the same numbers. Items scored -inf are never recommended. In the sampled protocol the
same rule ranks the target among its candidates: a negative tied with the target ranks ahead of
it if and only if its item index is lower.

Who is evaluated. A user is evaluated if they have at least one target that is not already in
their history. Targets already in the history are dropped (the ranking excludes seen items, so
no model could hit them; `n_targets_in_history` counts them); users left with no target are
skipped and counted in `n_users_skipped`. A model that returns NaN scores raises `DataError`.

Sampled protocol (SASRec, BERT4Rec), only when asked for with ``sampled=SampledProtocol(...)``:
each evaluated user's targets are ranked against `n_negatives` distinct items drawn, without
replacement, from the items the user never interacted with (neither history nor held-out
targets, nor for ``target="valid"`` the test items), uniformly or with probability proportional
to training popularity (items nobody used in training are then never drawn). A user with fewer
eligible items gets all of them. With one target per user (leave-one-out) this is the papers'
"1 positive + 100 negatives". Sampled figures are not comparable with full ranking, so such a
result has ``sampled=True``, every metric name starts with ``sampled_`` ("sampled_HR@10"), no
beyond-accuracy metrics and an empty `topk`. Same seed and data, same negatives.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from shoprec.data.dataset import Dataset
from shoprec.data.schema import Catalogue
from shoprec.data.split import Split
from shoprec.errors import ConfigError, DataError, EmptyDataError, check_choice, check_int
from shoprec.evaluate import metrics as M

SAMPLING = ("uniform", "popularity")
TARGETS = ("test", "valid")
MAX_K = 100_000
SAMPLED_PREFIX = "sampled_"


@dataclass(frozen=True)
class SampledProtocol:
    """The sampled protocol of SASRec/BERT4Rec: rank each target among n_negatives sampled items.

    by: "uniform", or "popularity" (probability proportional to training popularity).
    seed: seeds the negative sampling; same seed, same negatives.
    """

    n_negatives: int = 100
    by: str = "uniform"
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("n_negatives", self.n_negatives, 1, 1_000_000, "SampledProtocol")
        check_choice("by", self.by, SAMPLING, "SampledProtocol")
        check_int("seed", self.seed, 0, 2**63 - 1, "SampledProtocol")

    def as_dict(self) -> dict:
        return {"n_negatives": int(self.n_negatives), "by": self.by, "seed": int(self.seed)}


@dataclass
class EvaluationResult:
    """Metrics of one evaluation run, and the lists they were computed from.

    metrics: name -> mean over evaluated users, e.g. "HR@10", "NDCG@10", "coverage@10"; for the
        sampled protocol every name starts with "sampled_".
    users: dense indices of the evaluated users, ascending; row r of `topk` belongs to users[r].
    topk: (n_users, max(k)) item indices, best first, -1 where a user had fewer rankable items;
        shape (n_users, 0) for the sampled protocol.
    n_users_skipped: users in the vocabulary that were not evaluated (no target left).
    """

    metrics: dict[str, float]
    k: tuple[int, ...]
    sampled: bool
    n_users: int
    users: np.ndarray
    topk: np.ndarray
    eval_seconds: float
    n_users_skipped: int = 0
    n_targets_in_history: int = 0
    target: str = "test"
    sampled_protocol: SampledProtocol | None = None
    ild_by: str | None = None  # "category", "embedding" or None (no ILD computed)

    def as_dict(self) -> dict:
        """JSON-ready summary (without the per-user arrays)."""
        return {
            "metrics": dict(self.metrics),
            "k": list(self.k),
            "sampled": self.sampled,
            "sampled_protocol": self.sampled_protocol.as_dict() if self.sampled_protocol else None,
            "target": self.target,
            "n_users": int(self.n_users),
            "n_users_skipped": int(self.n_users_skipped),
            "n_targets_in_history": int(self.n_targets_in_history),
            "ild_by": self.ild_by,
            "eval_seconds": float(self.eval_seconds),
        }


def evaluate(
    model,
    split: Split,
    k: int | Sequence[int] = (10,),
    *,
    target: str = "test",
    sampled: SampledProtocol | None = None,
    block_size: int = 1024,
    catalogue: Catalogue | None = None,
    item_embeddings: np.ndarray | None = None,
    progress: bool = False,
) -> EvaluationResult:
    """Evaluate a fitted model on a split.

    target: "test" ranks `split.test` from the `split.test_history` histories; "valid" ranks
        `split.valid` from the `split.train` histories (for tuning and early stopping).
    k: one cutoff or several, e.g. (5, 10, 20); each may exceed the number of items.
    sampled: None for full ranking; a SampledProtocol for the papers' sampled protocol.
    catalogue: categories for ILD; defaults to the catalogue attached to `split.train`.
    item_embeddings: (n_items, d) matrix; when given, ILD is the mean pairwise cosine distance.
    block_size: users scored at once; memory grows with block_size x n_items.
    """
    check_choice("target", target, TARGETS, "evaluate")
    if not isinstance(split, Split):
        raise ConfigError(f"evaluate expects a shoprec Split. Got {type(split).__name__} instead.")
    if target == "test":
        history, targets, later = split.test_history, split.test, None
    else:
        history, targets, later = split.train, split.valid, split.test
    result = evaluate_scores(
        lambda users: model.score_users(users, history=history),
        history,
        targets,
        k,
        sampled=sampled,
        block_size=block_size,
        catalogue=catalogue if catalogue is not None else split.train.catalogue,
        item_embeddings=item_embeddings,
        train=split.train,
        interacted=later,
        progress=progress,
    )
    result.target = target
    return result


def evaluate_scores(
    score_fn: Callable[[np.ndarray], np.ndarray],
    history: Dataset,
    targets: sp.csr_matrix,
    k: int | Sequence[int] = (10,),
    *,
    sampled: SampledProtocol | None = None,
    block_size: int = 1024,
    catalogue: Catalogue | None = None,
    item_embeddings: np.ndarray | None = None,
    train: Dataset | None = None,
    interacted: sp.csr_matrix | None = None,
    progress: bool = False,
) -> EvaluationResult:
    """The engine under `evaluate`: rank `targets` with `score_fn`, masking `history`.

    score_fn: dense user indices (int64 array) -> (len(users), n_items) scores, higher is better.
    history: the log the scores condition on; its items are excluded from every ranking.
    targets: n_users x n_items indicators of the held-out items (for example `Split.valid`).
    train: the training log, for novelty's popularity and popularity sampling; defaults to history.
    interacted: more n_users x n_items indicators never to draw as sampled negatives (items the
        user interacted with after the targets).
    Other arguments as in `evaluate`. Models can call this inside a training loop, for example
    ``evaluate_scores(lambda u: self._score_histories(...), train, valid).metrics["NDCG@10"]``.
    """
    started = time.perf_counter()
    ks = _check_k(k)
    block_size = check_int("block_size", block_size, 1, 10_000_000, "evaluate")
    if sampled is not None and not isinstance(sampled, SampledProtocol):
        raise ConfigError(
            f"sampled must be None or a SampledProtocol. Got {type(sampled).__name__} instead."
        )
    n_users, n_items = history.n_users, history.n_items
    targets = _check_matrix("targets", targets, n_users, n_items)
    if item_embeddings is not None:
        item_embeddings = np.asarray(item_embeddings)
        if item_embeddings.ndim != 2 or item_embeddings.shape[0] != n_items:
            raise ConfigError(
                f"item_embeddings must have shape ({n_items}, d). "
                f"Got {item_embeddings.shape} instead."
            )
    train = history if train is None else train
    seen = history.matrix(binary=True)
    # Held-out items already in the history cannot be recommended: drop them as targets.
    rankable = (targets - targets.multiply(seen)).tocsr()
    rankable.eliminate_zeros()
    rankable.sort_indices()
    n_in_history = int(targets.nnz - rankable.nnz)
    n_targets = np.diff(rankable.indptr)
    users = np.flatnonzero(n_targets > 0)
    if users.size == 0:
        raise EmptyDataError(
            "No user has a held-out item outside their history, so there is nothing to evaluate."
        )
    max_k = max(ks)
    popularity = train.item_popularity()
    n_train_users = int(train.active_users().size)

    if sampled is None:
        topk = np.empty((users.size, max_k), np.int64)
        hits = np.empty((users.size, max_k), bool)
    else:
        never = seen + rankable
        if interacted is not None:
            never = never + _check_matrix("interacted", interacted, n_users, n_items)
        never = never.tocsr()
        rng = np.random.default_rng(sampled.seed)
        weights = popularity.astype(np.float64) if sampled.by == "popularity" else None
        hits = np.zeros((users.size, max_k), bool)

    blocks = range(0, users.size, block_size)
    for start in _progress(blocks, progress):
        block = users[start : start + block_size]
        scores = _block_scores(score_fn, block, n_items)
        if sampled is None:
            _mask(scores, seen[block])
            top = M.top_k(scores, max_k)
            topk[start : start + block.size] = top
            hits[start : start + block.size] = M.hit_matrix(top, rankable[block])
        else:
            negatives = _sample_negatives(never[block], sampled.n_negatives, rng, weights)
            _sampled_hits(scores, rankable[block], negatives, hits[start : start + block.size])

    if sampled is None:
        metrics = M.ranking_metrics(hits, n_targets[users], ks)
        categories, ild_by = None, None
        if item_embeddings is not None:
            ild_by = "embedding"
        elif catalogue is not None:
            labels = np.asarray(catalogue.lookup(history.items.ids, "category"), dtype=object)
            # A catalogue without categories (titles only) says nothing about diversity.
            if (labels != "").any():
                categories = pd.factorize(labels)[0]
                ild_by = "category"
        metrics.update(
            M.beyond_accuracy(
                topk, ks, n_items, popularity, n_train_users, categories, item_embeddings
            )
        )
        metrics = {name: metrics[name] for name in _metric_order(metrics, ks)}
    else:
        metrics = M.ranking_metrics(hits, n_targets[users], ks, prefix=SAMPLED_PREFIX)
        topk = np.empty((users.size, 0), np.int64)
        ild_by = None

    return EvaluationResult(
        metrics=metrics,
        k=ks,
        sampled=sampled is not None,
        n_users=int(users.size),
        users=users,
        topk=topk,
        eval_seconds=time.perf_counter() - started,
        n_users_skipped=int(n_users - users.size),
        n_targets_in_history=n_in_history,
        sampled_protocol=sampled,
        ild_by=ild_by,
    )


# ---- helpers -------------------------------------------------------------------------------


def _check_k(k: int | Sequence[int]) -> tuple[int, ...]:
    values = [k] if isinstance(k, (int, np.integer)) and not isinstance(k, bool) else k
    try:
        if isinstance(values, (str, bytes)):
            raise TypeError
        values = list(values)  # type: ignore[arg-type]
    except TypeError:
        raise ConfigError(
            "The 'k' parameter of evaluate must be an int or a sequence of ints. "
            f"Got {k!r} ({type(k).__name__}) instead."
        ) from None
    if not values:
        raise ConfigError("The 'k' parameter of evaluate must name at least one cutoff.")
    return tuple(sorted({check_int("k", v, 1, MAX_K, "evaluate") for v in values}))


def _check_matrix(name: str, m, n_users: int, n_items: int) -> sp.csr_matrix:
    if not sp.issparse(m):
        raise ConfigError(f"{name} must be a scipy sparse matrix. Got {type(m).__name__} instead.")
    if m.shape != (n_users, n_items):
        raise ConfigError(
            f"{name} must be a {n_users} x {n_items} matrix (users x items of the history). "
            f"Got {m.shape[0]} x {m.shape[1]} instead."
        )
    m = sp.csr_matrix(m, dtype=np.float32, copy=True)
    m.eliminate_zeros()
    m.data[:] = 1.0
    return m


def _block_scores(score_fn, block: np.ndarray, n_items: int) -> np.ndarray:
    """Scores for a block of users as a fresh float array (masking must not touch the model's)."""
    raw = np.asarray(score_fn(block))
    if raw.shape != (block.size, n_items):
        raise DataError(
            f"The model returned scores of shape {raw.shape} for {block.size} users; "
            f"expected ({block.size}, {n_items})."
        )
    dtype = raw.dtype if raw.dtype in (np.float32, np.float64) else np.float64
    scores = np.array(raw, dtype=dtype, copy=True)
    nan_rows = np.isnan(scores).any(axis=1)
    if nan_rows.any():
        bad = block[nan_rows]
        raise DataError(
            f"The model returned NaN scores for {int(nan_rows.sum())} of {block.size} users "
            f"(dense indices {bad[:5].tolist()}...); scores must be numbers (use -inf to exclude "
            "an item). Check the model's training for divergence."
        )
    return scores


def _mask(scores: np.ndarray, seen_rows: sp.csr_matrix) -> None:
    """Set each row's seen items to -inf, in place."""
    rows = np.repeat(np.arange(seen_rows.shape[0]), np.diff(seen_rows.indptr))
    scores[rows, seen_rows.indices] = -np.inf


def _sample_negatives(
    never_rows: sp.csr_matrix, n: int, rng: np.random.Generator, weights: np.ndarray | None
) -> np.ndarray:
    """(rows, n) item indices drawn without replacement outside each row's non-zeros; -1 pads.

    Uniform: the n items with the largest uniform random keys. Weighted: Efraimidis-Spirakis
    keys log(u) / w, whose n largest are a weighted sample without replacement.
    """
    n_rows, n_items = never_rows.shape
    u = rng.random((n_rows, n_items))
    if weights is None:
        keys = u
    else:
        with np.errstate(divide="ignore"):
            keys = np.where(
                weights > 0, np.log1p(-u) / np.where(weights > 0, weights, 1.0), -np.inf
            )
    _mask(keys, never_rows)
    nn = min(n, n_items)
    if nn < n_items:
        part = np.argpartition(-keys, nn - 1, axis=1)[:, :nn]
    else:
        part = np.broadcast_to(np.arange(n_items), (n_rows, n_items)).copy()
    part[np.take_along_axis(keys, part, axis=1) == -np.inf] = -1
    return part


def _sampled_hits(
    scores: np.ndarray, targets: sp.csr_matrix, negatives: np.ndarray, hits: np.ndarray
) -> None:
    """Fill `hits` (rows, K) with each target's rank among the row's targets and negatives.

    rank = candidates with a higher score, plus those with an equal score and a lower index.
    """
    rows = np.repeat(np.arange(targets.shape[0]), np.diff(targets.indptr))
    items = targets.indices.astype(np.int64)
    t_score = scores[rows, items]
    # Negatives ahead of each target.
    valid = negatives >= 0
    neg_score = np.take_along_axis(scores, np.where(valid, negatives, 0), axis=1)[rows]
    neg = negatives[rows]
    ahead = (neg_score > t_score[:, None]) | (
        (neg_score == t_score[:, None]) & (neg < items[:, None])
    )
    rank = (ahead & valid[rows]).sum(axis=1)
    # Other targets of the same user ahead of it: its position in (row, -score, index) order.
    order = np.lexsort((items, -t_score, rows))
    first_of_row = np.searchsorted(rows[order], rows[order], side="left")
    within = np.empty(len(order), np.int64)
    within[order] = np.arange(len(order)) - first_of_row
    rank += within
    keep = rank < hits.shape[1]
    hits[rows[keep], rank[keep]] = True


def _progress(blocks: range, enabled: bool):
    if not enabled:
        return blocks
    from tqdm import tqdm

    # delay: the bar appears only when evaluation takes more than a few seconds.
    return tqdm(blocks, desc="evaluating", unit="block", delay=3.0, leave=False)


def _metric_order(metrics: dict[str, float], ks: tuple[int, ...]) -> list[str]:
    """Accuracy metrics first, then beyond-accuracy, each by K."""
    names = [f"{m}@{kk}" for m in M.ACCURACY_METRICS for kk in ks]
    names += [f"{m}@{kk}" for m in ("coverage", "gini", "novelty", "ILD") for kk in ks]
    return [n for n in names if n in metrics]
