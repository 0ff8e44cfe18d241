"""Candidate pools: what a policy may show a shopper, and where each candidate came from.

Four pools, merged in this order (an item found by two pools keeps the first source):

- exploit: the exploitation model's top-N;
- interest: long-tail items (below a popularity quantile) nearest to each of the shopper's
  interests (`history_interests`: cluster centres of the embeddings of what they engaged with,
  by k-means or by the Gaussian-mixture interests of `shoprec.text.interests`);
- new: items without interaction history, reachable through their (text) embedding, nearest to
  any of the shopper's interests;
- trending: the items with the most recent engagement, the same for every shopper.

Everything is batched over requests: arrays have a leading request dimension and a fixed number
of candidate columns, with -1 marking an empty column.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from shoprec.errors import DataError, check_choice, check_float, check_int

__all__ = [
    "INTEREST_METHODS", "SOURCES", "Candidates", "PoolConfig", "build_candidates", "history_interests",
    "interest_pool", "long_tail",
    "merge_pools", "new_item_pool", "top_n", "trending_pool",
]

SOURCES: tuple[str, ...] = ("exploit", "interest", "new", "trending")
"""Pool names; a candidate's `source` code is its position here."""


@dataclass(frozen=True)
class PoolConfig:
    """Pool sizes. tail_quantile: items with popularity at or below this quantile are long-tail."""

    n_exploit: int = 50
    n_per_interest: int = 5
    tail_quantile: float = 0.8
    n_new: int = 10
    n_trending: int = 10

    def __post_init__(self) -> None:
        where = "PoolConfig"
        check_int("n_exploit", self.n_exploit, 1, 100_000, where)
        check_int("n_per_interest", self.n_per_interest, 0, 10_000, where)
        check_float("tail_quantile", self.tail_quantile, 0.0, 1.0, where)
        check_int("n_new", self.n_new, 0, 10_000, where)
        check_int("n_trending", self.n_trending, 0, 10_000, where)


@dataclass
class Candidates:
    """Candidate items per request. items (n, C) int64 with -1 for empty columns; source (n, C)
    codes into SOURCES; interest (n, C) the interest index for the interest pool (else -1)."""

    items: np.ndarray
    source: np.ndarray
    interest: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        return self.items >= 0

    def __len__(self) -> int:
        return len(self.items)

    def take(self, rows: np.ndarray) -> Candidates:
        return Candidates(self.items[rows], self.source[rows], self.interest[rows])

    @classmethod
    def from_items(cls, items: np.ndarray, source: str = "exploit") -> Candidates:
        """Candidates from an (n, C) item array (-1 = empty), all from one pool."""
        items = np.atleast_2d(np.asarray(items, dtype=np.int64))
        return cls(items, np.full(items.shape, SOURCES.index(source), np.int8), np.full(items.shape, -1, np.int16))


def top_n(scores: np.ndarray, n: int, allowed: np.ndarray | None = None) -> np.ndarray:
    """Indices of the n best columns per row, best first (ties by lower index); -1 pads rows
    with fewer than n allowed columns. allowed: boolean mask, (cols,) or (rows, cols).

    A request scores a whole catalogue to keep a few dozen items, so the common case is served by
    a partial selection of the raw scores (no masked copy), checked to be exact: the best n
    allowed of a row are inside its raw top m whenever the top m hold n allowed items scoring
    strictly above the m-th raw score. Rows where that check fails take the exact masked path.
    """
    scores = np.atleast_2d(np.asarray(scores))
    if scores.dtype.kind != "f":
        scores = scores.astype(np.float64)
    rows, cols = scores.shape
    n = min(n, cols)
    if n == 0:
        return np.zeros((rows, 0), np.int64)
    m = 2 * n + 32
    if m * 4 > cols:
        return _top_n_masked(scores, n, allowed)
    part = _largest(scores, m)
    vals = np.take_along_axis(scores, part, axis=1)
    floor = vals.min(axis=1)
    if allowed is not None:
        allowed = np.asarray(allowed, bool)
        ok = allowed[part] if allowed.ndim == 1 else np.take_along_axis(np.broadcast_to(allowed, scores.shape), part, 1)
        vals = np.where(ok, vals, -np.inf)
    order = np.lexsort((part, -vals), axis=1)[:, :n]
    top = np.take_along_axis(part, order, axis=1)
    best = np.take_along_axis(vals, order, axis=1)
    exact = best[:, -1] > floor  # n allowed items above the partition's floor: nothing outside beats them
    top = np.where(np.isfinite(best), top, -1)
    if not exact.all():
        redo = np.flatnonzero(~exact)
        sub = None if allowed is None else (allowed if allowed.ndim == 1 else np.broadcast_to(allowed, scores.shape)[redo])
        top[redo] = _top_n_masked(scores[redo], n, sub)
    return top


def _largest(scores: np.ndarray, m: int) -> np.ndarray:
    """Column indices of the m largest scores of each row, in no order (NaN counts as largest,
    as in np.argpartition). torch's top-k selection is several times faster than
    np.argpartition at catalogue widths, and this runs on every request."""
    values = torch.from_numpy(np.ascontiguousarray(scores))
    return torch.topk(values, m, dim=1, largest=True, sorted=False).indices.numpy()


def _top_n_masked(scores: np.ndarray, n: int, allowed: np.ndarray | None) -> np.ndarray:
    """`top_n` by masking every disallowed column first: exact for any scores, ties included
    (a partition alone would pick any of the items tied at the n-th value)."""
    scores = np.asarray(scores, dtype=np.float64)
    keep = ~np.isnan(scores) if allowed is None else (np.asarray(allowed, bool) & ~np.isnan(scores))
    scores = np.where(keep, scores, -np.inf)
    rows, cols = scores.shape
    nth = np.partition(scores, cols - n, axis=1)[:, cols - n][:, None]
    above = scores > nth
    tied = scores == nth
    need = n - above.sum(axis=1, keepdims=True)
    chosen = above | (tied & (np.cumsum(tied, axis=1) <= need))  # exactly n per row, lowest index among ties
    part = np.nonzero(chosen)[1].reshape(rows, n)
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    top = np.take_along_axis(part, order, axis=1)
    return np.where(np.isfinite(np.take_along_axis(vals, order, axis=1)), top, -1)


def interest_pool(
    interests: np.ndarray, interest_valid: np.ndarray, item_features: np.ndarray, pool: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per request and interest, the n items of `pool` (item indices, e.g. the long tail) with the
    highest cosine to the interest centre. Returns (items (n_req, k * n), interest index)."""
    n_req, k = interest_valid.shape
    pool = np.asarray(pool, np.int64)
    if n == 0 or len(pool) == 0 or k == 0:
        return np.full((n_req, 0), -1, np.int64), np.full((n_req, 0), -1, np.int16)
    sims = interests.reshape(n_req * k, -1).astype(np.float32) @ item_features[pool].T.astype(np.float32)
    best = top_n(sims, n).reshape(n_req, k, -1)
    items = np.where(best >= 0, pool[np.maximum(best, 0)], -1)
    items = np.where(interest_valid[:, :, None], items, -1)
    which = np.broadcast_to(np.arange(k, dtype=np.int16)[None, :, None], items.shape)
    return items.reshape(n_req, -1), np.where(items >= 0, which, -1).reshape(n_req, -1).astype(np.int16)


def long_tail(popularity: np.ndarray, quantile: float, known: np.ndarray) -> np.ndarray:
    """Indices of the `known` items whose popularity is at or below the quantile of the known ones."""
    if not known.any():
        return np.zeros(0, np.int64)
    cut = np.quantile(popularity[known], quantile)
    return np.flatnonzero(known & (popularity <= cut))


def new_item_pool(interests: np.ndarray, interest_valid: np.ndarray, item_features: np.ndarray,
                  new_items: np.ndarray, n: int) -> np.ndarray:
    """Per request, the n new items (no history) nearest to any of the shopper's interests."""
    n_req, k = interest_valid.shape
    new_items = np.asarray(new_items, np.int64)
    if n == 0 or len(new_items) == 0:
        return np.full((n_req, 0), -1, np.int64)
    sims = (interests.reshape(n_req * k, -1) @ item_features[new_items].T).reshape(n_req, k, -1)
    sims = np.where(interest_valid[:, :, None], sims, -np.inf).max(axis=1)
    pick = top_n(sims, n)
    return np.where(pick >= 0, new_items[np.maximum(pick, 0)], -1)


def trending_pool(recent_counts: np.ndarray, n: int, available: np.ndarray, n_req: int) -> np.ndarray:
    """The n items with the most recent engagement (the same row for every request)."""
    recent_counts = np.asarray(recent_counts, np.float64)
    engaged = np.flatnonzero(recent_counts > 0)  # few, early on: select among them only
    pick = top_n(recent_counts[engaged][None], n, np.asarray(available, bool)[engaged])[0]
    trend = np.full(min(n, len(recent_counts)), -1, np.int64)
    trend[: len(pick)] = np.where(pick >= 0, engaged[np.maximum(pick, 0)], -1)
    return np.broadcast_to(trend, (n_req, len(trend)))


def merge_pools(exploit: np.ndarray, interest: np.ndarray, interest_index: np.ndarray, new: np.ndarray,
                trending: np.ndarray) -> Candidates:
    """Concatenate the four pools (each (n_req, width), -1 = empty) and drop repeats."""
    parts = [exploit, interest, new, trending]
    items = np.concatenate(parts, axis=1).astype(np.int64)
    source = np.concatenate([np.full(p.shape, s, np.int8) for s, p in enumerate(parts)], axis=1)
    index = np.concatenate([np.full(exploit.shape, -1, np.int16), interest_index,
                            np.full(new.shape, -1, np.int16), np.full(trending.shape, -1, np.int16)], axis=1)
    items = _drop_duplicates(items)
    return Candidates(items, np.where(items >= 0, source, -1).astype(np.int8),
                      np.where(items >= 0, index, -1).astype(np.int16))


def build_candidates(
    exploit_scores: np.ndarray,
    item_features: np.ndarray,
    interests: np.ndarray,
    interest_valid: np.ndarray,
    popularity: np.ndarray,
    new_items: np.ndarray,
    recent_counts: np.ndarray,
    config: PoolConfig | None = None,
    available: np.ndarray | None = None,
) -> Candidates:
    """Merge the four pools for n requests.

    exploit_scores (n, I): the exploitation model's scores over all items; item_features (I, d):
    unit-norm embeddings; interests (n, k, d) with interest_valid (n, k); popularity (I,): past
    interaction counts; new_items: indices of items without history; recent_counts (I,): recent
    engagement per item; available (I,) bool: items that may be shown (in stock, released).
    Callers that keep some pools between requests call the pool functions and `merge_pools`.
    """
    config = config or PoolConfig()
    scores = np.atleast_2d(exploit_scores)
    n_req, n_items = scores.shape
    if item_features.shape[0] != n_items or popularity.shape != (n_items,) or recent_counts.shape != (n_items,):
        raise DataError(
            f"exploit_scores has {n_items} items but item_features has {item_features.shape[0]}, "
            f"popularity {popularity.shape[0]} and recent_counts {recent_counts.shape[0]}."
        )
    if interests.shape[:2] != interest_valid.shape or interests.shape[0] != n_req:
        raise DataError(f"interests {interests.shape} and interest_valid {interest_valid.shape} do not match {n_req} requests.")
    available = np.ones(n_items, bool) if available is None else np.asarray(available, bool)
    is_new = np.zeros(n_items, bool)
    is_new[np.asarray(new_items, np.int64)] = True
    tail = long_tail(popularity, config.tail_quantile, available & ~is_new)
    return merge_pools(
        top_n(scores, config.n_exploit, available),
        *interest_pool(interests, interest_valid, item_features, tail, config.n_per_interest),
        new_item_pool(interests, interest_valid, item_features, np.flatnonzero(available & is_new), config.n_new),
        trending_pool(recent_counts, config.n_trending, available, n_req),
    )


def _drop_duplicates(items: np.ndarray) -> np.ndarray:
    """-1 for every repeat of an item within a row (the first occurrence stays)."""
    if items.shape[1] < 2:
        return items
    order = np.argsort(items, axis=1, kind="stable")
    s = np.take_along_axis(items, order, axis=1)
    dup_sorted = np.zeros_like(s, dtype=bool)
    dup_sorted[:, 1:] = (s[:, 1:] == s[:, :-1]) & (s[:, 1:] >= 0)
    dup = np.zeros_like(dup_sorted)
    np.put_along_axis(dup, order, dup_sorted, axis=1)
    return np.where(dup, -1, items)


INTEREST_METHODS = ("kmeans", "mixture")


def history_interests(
    item_features: np.ndarray,
    histories: list[np.ndarray],
    max_interests: int = 3,
    min_items_per_interest: int = 3,
    iterations: int = 10,
    method: str = "kmeans",
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Interest centres (n, max_interests, d), unit norm, and validity (n, max_interests) of each
    history's item embeddings: the centres the interest and new-item pools search around.

    method: "kmeans" (cosine k-means, deterministic farthest-point start; a history of m distinct
    items gets min(max_interests, m // min_items_per_interest) interests, at least one) or
    "mixture" (the Gaussian-mixture interests of `shoprec.text.interests`, k chosen by BIC; about
    0.4 s per history, so for small populations).
    """
    check_int("max_interests", max_interests, 1, 100, "history_interests")
    check_choice("method", method, INTEREST_METHODS, "history_interests")
    d = item_features.shape[1]
    centres = np.zeros((len(histories), max_interests, d))
    valid = np.zeros((len(histories), max_interests), bool)
    for u, hist in enumerate(histories):
        items = np.unique(np.asarray(hist, np.int64))
        if len(items) == 0:
            continue
        if method == "mixture":
            c = _mixture_centres(item_features[np.asarray(hist, np.int64)], max_interests,
                                 min_items_per_interest, seed)
        else:
            c = _kmeans_centres(item_features[items], max_interests, min_items_per_interest, iterations)
        k = len(c)
        norm = np.linalg.norm(c, axis=1, keepdims=True)
        centres[u, :k] = np.divide(c, norm, out=np.zeros_like(c), where=norm > 0)
        valid[u, :k] = True
    return centres, valid


def _kmeans_centres(x: np.ndarray, max_interests: int, min_items: int, iterations: int) -> np.ndarray:
    k = max(1, min(max_interests, len(x) // max(1, min_items)))
    first = x.mean(axis=0)
    chosen = [int(np.argmax(x @ first))]
    for _ in range(1, k):
        sim = (x @ x[chosen].T).max(axis=1)
        chosen.append(int(np.argmin(sim)))
    c = x[chosen].copy()
    for _ in range(iterations):
        assign = np.argmax(x @ c.T, axis=1)
        for j in range(k):
            members = x[assign == j]
            if len(members):
                c[j] = members.mean(axis=0)
    return c


def _mixture_centres(x: np.ndarray, max_interests: int, min_items: int, seed: int) -> np.ndarray:
    from shoprec.text.interests import user_interests

    if not (np.abs(x).sum(axis=1) > 0).any():
        return np.zeros((0, x.shape[1]))
    found = user_interests(x, max_interests, seed, min_items_per_interest=max(1, min_items))
    return np.asarray(found.means, np.float64)
