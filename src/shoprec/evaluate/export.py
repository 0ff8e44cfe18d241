"""Top-K lists as a plain text file, and an independent re-scorer for such files.

The format is one line per evaluated user, the shop's own (external) ids, best item first::

    user<TAB>item item item ...

A user with no rankable item has an empty item list ("user<TAB>"). Anyone can re-score a file
with their own evaluator; `score_export` is ours, written without the vectorised engine (plain
Python over users), so that a test can check that the file re-scores to the printed numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from shoprec.data.split import Split
from shoprec.data.vocab import Vocabulary
from shoprec.errors import ConfigError, DataError, MalformedFileError, check_int
from shoprec.evaluate.protocol import EvaluationResult


def export_topk(
    result: EvaluationResult, users_vocab: Vocabulary, items_vocab: Vocabulary, path: str | Path
) -> Path:
    """Write a full-ranking result's top-K lists with external ids; returns the path.

    Raises ConfigError for a sampled result (it has no full-ranking lists) and DataError when an
    id contains whitespace that would break the format.
    """
    if result.sampled:
        raise ConfigError(
            "export_topk writes full-ranking top-K lists, and a sampled result has none; "
            "evaluate without `sampled` to export."
        )
    user_ids = users_vocab.id_of(result.users)
    item_ids = items_vocab.ids
    _check_ids(user_ids, "user", ("\t", "\n", "\r"))
    used = np.unique(result.topk[result.topk >= 0])
    _check_ids(item_ids[used], "item", (" ", "\t", "\n", "\r"))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.writelines(
            f"{user}\t{' '.join(item_ids[row[row >= 0]])}\n"
            for user, row in zip(user_ids, result.topk)
        )
    return path


def read_topk(path: str | Path) -> dict[str, list[str]]:
    """Read a file written by `export_topk`: user id -> item ids, best first."""
    path = Path(path)
    out: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            line = line.rstrip("\n").rstrip("\r")
            if not line:
                continue
            user, sep, items = line.partition("\t")
            if not sep:
                raise MalformedFileError(path, number, "expected 'user<TAB>item item ...'")
            if user in out:
                raise MalformedFileError(path, number, f"user {user!r} appears twice")
            out[user] = items.split(" ") if items else []
    return out


def score_export(
    path: str | Path,
    targets: Split | Mapping[str, Iterable[str]] | Iterable[tuple[str, str]],
    items_vocab: Vocabulary,
    k: int | Sequence[int] = (10,),
) -> dict[str, float]:
    """Re-score an exported file: HR, Recall, Precision, NDCG, MRR, MAP, coverage and gini @K.

    targets: a Split (its test items outside each user's test history, as `evaluate` counts
        them), a mapping user id -> target item ids, or (user id, item id) pairs.
    items_vocab: the catalogue, for coverage and gini (their denominators are its size).
    Users with targets but no line in the file count as all misses; lines of users without
    targets are ignored. Definitions are those of `shoprec.evaluate.metrics`.
    """
    ks = sorted(
        {check_int("k", v, 1, 100_000, "score_export") for v in ([k] if isinstance(k, int) else k)}
    )
    truth = _truth(targets)
    if not truth:
        raise DataError("score_export: there are no targets to score against.")
    lists = read_topk(path)
    n_items = len(items_vocab)
    out: dict[str, float] = {}
    for kk in ks:
        sums = dict.fromkeys(("HR", "Recall", "Precision", "F1", "NDCG", "MRR", "MAP"), 0.0)
        exposure: dict[str, int] = {}
        for user, relevant in truth.items():
            top = lists.get(user, [])[:kk]
            for item in top:
                exposure[item] = exposure.get(item, 0) + 1
            n_hit, dcg, rr, ap = 0, 0.0, 0.0, 0.0
            for rank, item in enumerate(top, start=1):
                if item in relevant:
                    n_hit += 1
                    dcg += 1.0 / math.log2(rank + 1)
                    ap += n_hit / rank
                    if rr == 0.0:
                        rr = 1.0 / rank
            n_ideal = min(len(relevant), kk)
            sums["HR"] += 1.0 if n_hit else 0.0
            sums["Recall"] += n_hit / len(relevant)
            sums["Precision"] += n_hit / kk
            if n_hit:
                p, r = n_hit / kk, n_hit / len(relevant)
                sums["F1"] += 2 * p * r / (p + r)
            sums["NDCG"] += dcg / sum(1.0 / math.log2(r + 1) for r in range(1, n_ideal + 1))
            sums["MRR"] += rr
            sums["MAP"] += ap / n_ideal
        for name, total in sums.items():
            out[f"{name}@{kk}"] = total / len(truth)
        out[f"coverage@{kk}"] = len(exposure) / n_items
        counts = sorted(list(exposure.values()) + [0] * (n_items - len(exposure)))
        total = sum(counts)
        out[f"gini@{kk}"] = (
            sum((2 * i - n_items - 1) * c for i, c in enumerate(counts, start=1))
            / (n_items * total)
            if total
            else 0.0
        )
    return out


def _truth(targets) -> dict[str, set[str]]:
    if isinstance(targets, Split):
        test, history = targets.test.tocsr(), targets.test_history
        users, items = history.users, history.items
        truth: dict[str, set[str]] = {}
        for u in np.flatnonzero(np.diff(test.indptr) > 0):
            relevant = set(test.indices[test.indptr[u] : test.indptr[u + 1]].tolist())
            relevant -= set(history.history(u).tolist())
            if relevant:
                truth[str(users.ids[u])] = {str(items.ids[i]) for i in relevant}
        return truth
    if isinstance(targets, Mapping):
        pairs = ((user, item) for user, items in targets.items() for item in items)
    else:
        pairs = targets
    truth = {}
    for pair in pairs:
        try:
            user, item = pair
        except (TypeError, ValueError):
            raise ConfigError(
                f"score_export targets must be (user, item) pairs. Got {pair!r} instead."
            ) from None
        truth.setdefault(str(user), set()).add(str(item))
    return truth


def _check_ids(ids: np.ndarray, kind: str, forbidden: tuple[str, ...]) -> None:
    ids = np.asarray(ids, dtype=str)
    for ch in forbidden:
        bad = ids[np.char.find(ids, ch) >= 0] if ids.size else ids
        if bad.size:
            raise DataError(
                f"Cannot export: {len(bad)} {kind} ids contain {ch!r}, which the top-K format "
                f"uses as a separator (first: {bad[0]!r})."
            )
