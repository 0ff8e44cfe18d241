"""Exported top-K lists: format, reading back, and re-scoring to the engine's numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shoprec.data.split import leave_one_out, random_holdout
from shoprec.data.vocab import Vocabulary
from shoprec.errors import ConfigError, DataError, MalformedFileError
from shoprec.evaluate import SampledProtocol, evaluate, export_topk, read_topk, score_export
from shoprec.evaluate.protocol import EvaluationResult
from shoprec.models.popularity import Popularity, RandomRecommender

RESCORED = ("HR", "Recall", "Precision", "F1", "NDCG", "MRR", "MAP", "coverage", "gini")


@pytest.mark.parametrize("protocol", ["loo", "random"])
@pytest.mark.parametrize("model", [Popularity, RandomRecommender])
def test_exported_lists_rescore_to_the_same_metrics(tmp_path, synthetic_shop, protocol, model):
    # Popularity ties a lot (the tie rule matters); random holdout gives several targets per
    # user and targets already in the history.
    split = (
        leave_one_out(synthetic_shop)
        if protocol == "loo"
        else random_holdout(synthetic_shop, seed=1)
    )
    result = evaluate(model().fit(split.train), split, k=(1, 5, 20))
    path = export_topk(result, synthetic_shop.users, synthetic_shop.items, tmp_path / "top.tsv")
    rescored = score_export(path, split, synthetic_shop.items, k=(1, 5, 20))
    assert set(rescored) == {f"{m}@{k}" for m in RESCORED for k in (1, 5, 20)}
    for name, value in rescored.items():
        assert value == pytest.approx(result.metrics[name], rel=1e-12, abs=1e-15), name


def test_export_writes_one_line_per_user_with_external_ids_best_first(tmp_path, tiny_shop):
    split = leave_one_out(tiny_shop)
    result = evaluate(Popularity().fit(split.train), split, k=(3,))
    path = export_topk(result, tiny_shop.users, tiny_shop.items, tmp_path / "sub" / "top.tsv")
    lines = path.read_text().splitlines()
    assert len(lines) == result.n_users
    user, items = lines[0].split("\t")
    assert user == "u1" and items.split(" ") == list(tiny_shop.items.id_of(result.topk[0]))
    assert read_topk(path) == {
        str(u): list(tiny_shop.items.id_of(row))
        for u, row in zip(tiny_shop.users.id_of(result.users), result.topk)
    }


def test_short_lists_are_written_without_padding(tmp_path):
    users, items = Vocabulary(["a", "b"]), Vocabulary(["x", "y", "z"])
    result = EvaluationResult(
        {}, (3,), False, 2, np.array([0, 1]), np.array([[2, 0, -1], [-1, -1, -1]]), 0.0
    )
    path = export_topk(result, users, items, tmp_path / "top.tsv")
    assert path.read_text() == "a\tz x\nb\t\n"
    assert read_topk(path) == {"a": ["z", "x"], "b": []}


def test_score_export_by_hand_counts_missing_users_as_misses(tmp_path):
    path = tmp_path / "top.tsv"
    path.write_text("a\tx y z\nb\ty x\nd\tz\n")
    truth = [("a", "y"), ("b", "q"), ("c", "x")]  # c has no line; d has no target (ignored)
    m = score_export(path, truth, Vocabulary(["x", "y", "z", "q", "w"]), k=2)
    # a: hit at rank 2 -> NDCG 1/log2(3), MRR 1/2; b, c: misses.
    assert m["HR@2"] == pytest.approx(1 / 3)
    assert m["NDCG@2"] == pytest.approx(1 / math.log2(3) / 3)
    assert m["MRR@2"] == pytest.approx(1 / 6)
    # Lists of users with targets @2: [x y], [y x], [] -> 2 of 5 items, each shown twice;
    # exposure sorted 0 0 0 2 2: gini = ((2*4-6)*2 + (2*5-6)*2) / (5 * 4) = 3/5.
    assert m["coverage@2"] == pytest.approx(2 / 5)
    assert m["gini@2"] == pytest.approx(3 / 5)
    # A mapping gives the same as pairs.
    assert (
        score_export(
            path, {"a": ["y"], "b": ["q"], "c": ["x"]}, Vocabulary(["x", "y", "z", "q", "w"]), k=2
        )
        == m
    )


def test_a_sampled_result_cannot_be_exported(tmp_path, tiny_shop):
    split = leave_one_out(tiny_shop)
    result = evaluate(Popularity().fit(split.train), split, sampled=SampledProtocol(3))
    with pytest.raises(ConfigError, match="a sampled result has none"):
        export_topk(result, tiny_shop.users, tiny_shop.items, tmp_path / "top.tsv")


def test_ids_with_separators_are_refused(tmp_path):
    result = EvaluationResult({}, (1,), False, 1, np.array([0]), np.array([[0]]), 0.0)
    with pytest.raises(DataError, match="1 item ids contain ' '.*'red mug'"):
        export_topk(result, Vocabulary(["a"]), Vocabulary(["red mug"]), tmp_path / "top.tsv")
    with pytest.raises(DataError, match="user ids contain '\\\\t'"):
        export_topk(result, Vocabulary(["a\tb"]), Vocabulary(["x"]), tmp_path / "top.tsv")


@pytest.mark.parametrize(
    "text, message",
    [
        ("a\tx\nb x y\n", "line 2: expected 'user<TAB>item item ...'"),
        ("a\tx\na\ty\n", "line 2: user 'a' appears twice"),
    ],
)
def test_malformed_files_name_the_line(tmp_path, text, message):
    path = tmp_path / "top.tsv"
    path.write_text(text)
    with pytest.raises(MalformedFileError) as info:
        read_topk(path)
    assert str(info.value) == f"{path}, {message}"
