"""Ranking and beyond-accuracy metrics on plain arrays, vectorised over users.

Everything here works on two representations of a block of users:

* ``topk``: an ``(n_users, K)`` integer array of item indices, best first, padded with ``-1``
  where a user has fewer than K rankable items (see `top_k` for the order and the tie rule);
* ``hits``: an ``(n_users, K)`` boolean array, True where position j of a user's list holds one
  of that user's targets; together with ``n_targets`` (targets per user) it gives every
  accuracy metric.

Definitions (per user, then averaged over users; "rel" is the user's set of targets, n = |rel|,
rank is the 1-based position in the list):

    HR@K         1 if any target is in the top K, else 0
    Recall@K     (targets in the top K) / n
    Precision@K  (targets in the top K) / K      (K is the cutoff, even where the list is shorter)
    F1@K         2 P R / (P + R) of the user's Precision@K and Recall@K, 0 without a hit (per
                 user, then averaged, as RecBole does; not the F1 of the averaged P and R)
    NDCG@K       DCG / IDCG, DCG = sum over hits of 1 / log2(rank + 1),
                 IDCG = sum_{r=1}^{min(n, K)} 1 / log2(r + 1)
    MRR@K        1 / rank of the first hit, 0 if there is none in the top K
    MAP@K        AP@K = sum over hits of Precision@rank / min(n, K)

Beyond accuracy (over all evaluated users' top-K lists; padding is ignored):

    coverage@K   share of the catalogue's items that appear in at least one list
    gini@K       Gini index of the items' exposure counts over the whole catalogue: 0 when every
                 item is shown equally often, (n_items - 1) / n_items when one item takes it all
    novelty@K    mean self-information -log2(pop_i / n_users) of recommended items, with pop_i
                 the number of training users of item i (items without any count as 1, so
                 their information is capped at log2(n_users)); averaged per list, then users
    ILD@K        intra-list diversity (K >= 2), averaged over lists with at least two items: by
                 category, the share of distinct pairs whose categories differ (an item without
                 a category has the category ""); by embedding, the mean pairwise cosine
                 distance 1 - cos. n_users in novelty is the number of users with training events.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch

from shoprec.errors import ConfigError

ACCURACY_METRICS: tuple[str, ...] = ("HR", "Recall", "Precision", "F1", "NDCG", "MRR", "MAP")
"""Names of the accuracy metrics, in the order they are reported."""

_ROWS_PER_CHUNK = 1024  # for the pairwise (users x K x K) computations of ILD


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Top-k item indices per row, by score descending then item index ascending.

    Items scored ``-inf`` (already seen, or excluded by the model) are never recommended: a row
    with fewer than k finite-or-+inf scores is padded with ``-1`` at the end. Only the k winners
    are sorted (``torch.topk`` selects them first), and ties at the cut are resolved by index, so
    the result does not depend on how the selection happened to break them. `scores` must hold
    no NaN.

    Returns an int64 array of shape (n_rows, k); k may exceed the number of columns.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ConfigError(f"scores must be a 2-d array. Got shape {scores.shape} instead.")
    n_rows, n_items = scores.shape
    out = np.full((n_rows, k), -1, dtype=np.int64)
    kk = min(k, n_items)
    if n_rows == 0 or kk == 0:
        return out
    if kk < n_items:
        # torch's top-k selection: with the tie check, 6.2x faster than np.argpartition on the
        # negated scores at a million items (1.5 s against 9.5 s for 1,024 rows), 3.5x at
        # 100,000, parity at 2,000 (benchmarks/topk_speed.py).
        values = scores if scores.dtype in (np.float32, np.float64) else scores.astype(np.float64)
        best, part = torch.topk(torch.from_numpy(np.ascontiguousarray(values)), kk, dim=1, sorted=False)
        part = part.numpy()
        cut = best.numpy().min(axis=1)  # the k-th largest score of each row
        # Rows with more items at or above the cut than fit tie at the cut: keep the lowest
        # indices among the tied ones.
        fix = np.flatnonzero(np.count_nonzero(scores >= cut[:, None], axis=1) > kk)
        if fix.size:
            s = scores[fix]
            n_above = np.count_nonzero(s > cut[fix, None], axis=1)
            at = s == cut[fix, None]
            keep = (s > cut[fix, None]) | (
                at & (np.cumsum(at, axis=1) <= (kk - n_above)[:, None])
            )
            part[fix] = np.nonzero(keep)[1].reshape(fix.size, kk)
    else:
        part = np.broadcast_to(np.arange(n_items), (n_rows, n_items))
    # Sort the winners: by index first, then a stable sort by score keeps index order on ties.
    part = np.sort(part, axis=1)
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    part = np.take_along_axis(part, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    part[vals == -np.inf] = -1
    out[:, :kk] = part
    return out


def hit_matrix(topk: np.ndarray, targets: sp.csr_matrix) -> np.ndarray:
    """Boolean (n_rows, K): True where topk[r, j] is one of row r's targets.

    targets: a csr matrix with one row per row of `topk` (non-zeros mark the targets).
    """
    topk = np.asarray(topk)
    n_rows, n_items = targets.shape
    if topk.shape[0] != n_rows:
        raise ConfigError(f"topk has {topk.shape[0]} rows but targets has {n_rows}.")
    t = targets.tocoo()
    target_keys = np.unique(t.row.astype(np.int64) * n_items + t.col.astype(np.int64))
    keys = np.arange(n_rows, dtype=np.int64)[:, None] * n_items + topk
    hits = np.isin(keys, target_keys)
    hits &= topk >= 0
    return hits


def ranking_metrics(
    hits: np.ndarray, n_targets: np.ndarray, k: Sequence[int] = (10,), prefix: str = ""
) -> dict[str, float]:
    """Mean HR, Recall, Precision, F1, NDCG, MRR and MAP at each cutoff in k (module docstring).

    hits: (n_users, max K) booleans, position 0 best; columns beyond its width count as misses.
    n_targets: (n_users,) number of targets per user, each >= 1.
    prefix: prepended to every name ("sampled_" gives "sampled_HR@10").
    """
    hits = np.asarray(hits, dtype=bool)
    n_targets = np.asarray(n_targets, dtype=np.float64)
    n_users = hits.shape[0]
    if n_users == 0:
        raise ConfigError("ranking_metrics needs at least one user.")
    if (n_targets < 1).any():
        raise ConfigError("Every user passed to ranking_metrics needs at least one target.")
    width = max(max(k), hits.shape[1])
    if hits.shape[1] < width:
        hits = np.pad(hits, ((0, 0), (0, width - hits.shape[1])))
    h = hits.astype(np.float64)
    discount = 1.0 / np.log2(np.arange(2, width + 2))
    cum_hits = np.cumsum(h, axis=1)
    dcg = np.cumsum(h * discount, axis=1)
    ideal = np.concatenate([[0.0], np.cumsum(discount)])
    ap_terms = np.cumsum(h * cum_hits / np.arange(1, width + 1), axis=1)
    any_hit = hits.any(axis=1)
    first = np.where(any_hit, hits.argmax(axis=1), width)  # 0-based position of the first hit
    out: dict[str, float] = {}
    for kk in k:
        n_hit = cum_hits[:, kk - 1]
        n_ideal = np.minimum(n_targets, kk)
        recall, precision = n_hit / n_targets, n_hit / kk
        values = {
            "HR": n_hit > 0,
            "Recall": recall,
            "Precision": precision,
            "F1": np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(recall),
                            where=n_hit > 0),
            "NDCG": dcg[:, kk - 1] / ideal[n_ideal.astype(np.int64)],
            "MRR": np.where(first < kk, 1.0 / (first + 1), 0.0),
            "MAP": ap_terms[:, kk - 1] / n_ideal,
        }
        for name in ACCURACY_METRICS:
            out[f"{prefix}{name}@{kk}"] = float(np.mean(values[name]))
    return out


def exposure(topk: np.ndarray, n_items: int) -> np.ndarray:
    """How many lists each item appears in (padding ignored); length n_items."""
    topk = np.asarray(topk)
    return np.bincount(topk[topk >= 0].ravel(), minlength=n_items)


def coverage(topk: np.ndarray, n_items: int) -> float:
    """Share of the n_items catalogue that appears in at least one list."""
    return float((exposure(topk, n_items) > 0).sum() / n_items)


def gini(counts: np.ndarray) -> float:
    """Gini index of non-negative counts: 0 if all equal, (n - 1) / n if one holds everything.

    G = sum_i (2 i - n - 1) c_(i) / (n sum c), with c sorted ascending and i = 1..n. All-zero
    counts give 0.
    """
    c = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = len(c), c.sum()
    if n == 0 or total == 0:
        return 0.0
    i = np.arange(1, n + 1)
    return float(np.sum((2 * i - n - 1) * c) / (n * total))


def novelty(topk: np.ndarray, popularity: np.ndarray, n_users: int) -> float:
    """Mean self-information -log2(pop_i / n_users) of recommended items (per list, then users).

    popularity: training users per item; items with 0 count as 1. Lists with no items are left out.
    """
    topk = np.asarray(topk)
    if n_users < 1:
        raise ConfigError(f"novelty needs n_users >= 1. Got {n_users} instead.")
    info = -np.log2(np.maximum(np.asarray(popularity, dtype=np.float64), 1.0) / n_users)
    valid = topk >= 0
    per_slot = np.where(valid, info[np.where(valid, topk, 0)], 0.0)
    length = valid.sum(axis=1)
    ok = length > 0
    if not ok.any():
        return 0.0
    return float(np.mean(per_slot[ok].sum(axis=1) / length[ok]))


def ild_category(topk: np.ndarray, categories: np.ndarray) -> float:
    """Mean share of distinct item pairs in different categories, over lists of >= 2 items.

    categories: one integer code per item (any labelling; equal codes mean the same category).
    """
    codes = np.asarray(categories)

    def pair_values(block: np.ndarray, valid: np.ndarray) -> np.ndarray:
        c = codes[np.where(valid, block, 0)]
        return (c[:, :, None] != c[:, None, :]).astype(np.float64)

    return _mean_pairwise(topk, pair_values)


def ild_embedding(topk: np.ndarray, embeddings: np.ndarray) -> float:
    """Mean pairwise cosine distance (1 - cos) between a list's items, over lists of >= 2 items.

    embeddings: (n_items, d) real matrix; a zero vector is at distance 1 from everything.
    """
    emb = np.asarray(embeddings, dtype=np.float64)
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    unit = emb / np.where(norms > 0, norms, 1.0)

    def pair_values(block: np.ndarray, valid: np.ndarray) -> np.ndarray:
        e = unit[np.where(valid, block, 0)]
        return 1.0 - np.einsum("ukd,ujd->ukj", e, e)

    return _mean_pairwise(topk, pair_values)


def _mean_pairwise(topk: np.ndarray, pair_values) -> float:
    """Mean over lists (>= 2 items) of the mean of pair_values over distinct valid pairs."""
    topk = np.asarray(topk)
    total, n_lists = 0.0, 0
    for start in range(0, topk.shape[0], _ROWS_PER_CHUNK):
        block = topk[start : start + _ROWS_PER_CHUNK]
        valid = block >= 0
        length = valid.sum(axis=1)
        values = pair_values(block, valid)
        pair_ok = valid[:, :, None] & valid[:, None, :]
        pair_ok &= ~np.eye(block.shape[1], dtype=bool)[None]
        sums = np.where(pair_ok, values, 0.0).sum(axis=(1, 2))
        n_pairs = length * (length - 1)  # ordered pairs; both halves are summed too
        ok = n_pairs > 0
        total += float(np.sum(sums[ok] / n_pairs[ok]))
        n_lists += int(ok.sum())
    return total / n_lists if n_lists else 0.0


def beyond_accuracy(
    topk: np.ndarray,
    k: Sequence[int],
    n_items: int,
    popularity: np.ndarray | None = None,
    n_train_users: int | None = None,
    categories: np.ndarray | None = None,
    embeddings: np.ndarray | None = None,
) -> dict[str, float]:
    """coverage@K and gini@K, plus novelty@K (given popularity) and ILD@K (given categories or
    embeddings; embeddings win when both are given; K >= 2 only) for each K in k."""
    out: dict[str, float] = {}
    for kk in k:
        top = np.asarray(topk)[:, :kk]
        counts = exposure(top, n_items)
        out[f"coverage@{kk}"] = float((counts > 0).sum() / n_items)
        out[f"gini@{kk}"] = gini(counts)
        if popularity is not None and n_train_users:
            out[f"novelty@{kk}"] = novelty(top, popularity, n_train_users)
        if kk < 2:  # a list of one item has no pair: ILD is undefined, not 0
            continue
        if embeddings is not None:
            out[f"ILD@{kk}"] = ild_embedding(top, embeddings)
        elif categories is not None:
            out[f"ILD@{kk}"] = ild_category(top, categories)
    return out
