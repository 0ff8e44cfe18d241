"""Metric functions against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from shoprec.errors import ConfigError
from shoprec.evaluate import metrics as M

INF = np.inf


# ---- top_k: order and tie policy -----------------------------------------------------------


def test_top_k_orders_by_score_then_lower_index_on_ties():
    scores = np.array([[1.0, 3.0, 3.0, 2.0, 3.0]])
    # Three items tie at 3 (indices 1, 2, 4): the two lowest indices win the two slots.
    assert M.top_k(scores, 2).tolist() == [[1, 2]]
    assert M.top_k(scores, 4).tolist() == [[1, 2, 4, 3]]


def test_top_k_breaks_ties_at_the_cut_by_index_whatever_argpartition_does():
    # All 50 items tie: the list must be 0..k-1 in order, for every row.
    scores = np.zeros((3, 50), np.float32)
    assert M.top_k(scores, 7).tolist() == [list(range(7))] * 3
    # A tie straddling the cut: item 40 beats all; 10 items tie at 1, only 3 of them fit.
    scores = np.zeros((1, 50))
    scores[0, 40] = 5.0
    scores[0, [45, 3, 30, 12, 7, 49, 20, 1, 33, 25]] = 1.0
    assert M.top_k(scores, 4).tolist() == [[40, 1, 3, 7]]


def test_top_k_never_recommends_minus_inf_and_pads_with_minus_one():
    scores = np.array([[-INF, 1.0, -INF], [0.0, 0.0, 0.0]])
    # K = 5 is larger than the catalogue of 3 items: lists are padded with -1.
    assert M.top_k(scores, 5).tolist() == [[1, -1, -1, -1, -1], [0, 1, 2, -1, -1]]


def test_top_k_matches_a_full_stable_sort():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(20, 30)).astype(np.float64)  # many ties
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :6]
    assert (M.top_k(scores, 6) == expected).all()


# ---- accuracy ------------------------------------------------------------------------------


def test_ranking_metrics_two_users_by_hand():
    # User A: 1 target, found at rank 2.       User B: 3 targets, found at ranks 1 and 3.
    hits = np.array([[False, True, False], [True, False, True]])
    n_targets = np.array([1, 3])
    m = M.ranking_metrics(hits, n_targets, k=(3,))
    # A: HR 1, Recall 1/1, Precision 1/3, NDCG = (1/log2 3) / 1, MRR 1/2, AP = (1/2) / min(1, 3)
    # B: HR 1, Recall 2/3, Precision 2/3, NDCG = (1 + 1/log2 4) / (1 + 1/log2 3 + 1/log2 4),
    #    MRR 1, AP = (1/1 + 2/3) / min(3, 3) = 5/9
    ndcg_a = 1 / math.log2(3)
    ndcg_b = 1.5 / (1 + 1 / math.log2(3) + 0.5)
    assert m["HR@3"] == pytest.approx(1.0)
    assert m["Recall@3"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["Precision@3"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert m["NDCG@3"] == pytest.approx((ndcg_a + ndcg_b) / 2)
    assert m["MRR@3"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["MAP@3"] == pytest.approx((0.5 + 5 / 9) / 2)


def test_ranking_metrics_at_several_cutoffs_and_beyond_the_list():
    # One user, 2 targets, hits at ranks 2 and 3 of a 3-long list.
    hits = np.array([[False, True, True]])
    m = M.ranking_metrics(hits, np.array([2]), k=(1, 2, 5), prefix="sampled_")
    assert set(m) == {f"sampled_{n}@{k}" for n in M.ACCURACY_METRICS for k in (1, 2, 5)}
    assert m["sampled_HR@1"] == 0.0 and m["sampled_HR@2"] == 1.0
    assert m["sampled_Recall@2"] == pytest.approx(1 / 2)
    assert m["sampled_Recall@5"] == pytest.approx(1.0)
    # Precision's denominator is the cutoff even where the list is shorter: 2 / 5.
    assert m["sampled_Precision@5"] == pytest.approx(2 / 5)
    # NDCG@5 = (1/log2 3 + 1/log2 4) / (1 + 1/log2 3)
    assert m["sampled_NDCG@5"] == pytest.approx((1 / math.log2(3) + 0.5) / (1 + 1 / math.log2(3)))
    assert m["sampled_MRR@5"] == pytest.approx(1 / 2)
    # AP@5 = (1/2 + 2/3) / min(2, 5)
    assert m["sampled_MAP@5"] == pytest.approx((0.5 + 2 / 3) / 2)


def test_ranking_metrics_rejects_users_without_targets():
    with pytest.raises(ConfigError, match="at least one target"):
        M.ranking_metrics(np.zeros((1, 3), bool), np.array([0]), k=(3,))


def test_hit_matrix_ignores_padding():
    topk = np.array([[2, 0, -1], [1, -1, -1]])
    targets = sp.csr_matrix(np.array([[1, 0, 0], [0, 1, 1]], np.float32))
    assert M.hit_matrix(topk, targets).tolist() == [[False, True, False], [True, False, False]]


# ---- beyond accuracy -----------------------------------------------------------------------


def test_gini_is_zero_for_uniform_and_n_minus_one_over_n_for_one_item():
    assert M.gini(np.array([5, 5, 5, 5])) == pytest.approx(0.0)
    assert M.gini(np.array([0, 0, 8, 0])) == pytest.approx(3 / 4)
    # Sorted [1, 3], n = 2: ((2-3)*1 + (4-3)*3) / (2 * 4) = 1/4
    assert M.gini(np.array([3, 1])) == pytest.approx(1 / 4)
    assert M.gini(np.zeros(3)) == 0.0


def test_coverage_counts_distinct_items_over_the_catalogue():
    topk = np.array([[0, 1], [1, 2], [2, -1]])
    assert M.coverage(topk, 5) == pytest.approx(3 / 5)


def test_novelty_is_mean_self_information_with_unseen_items_counted_once():
    popularity = np.array([4, 2, 1, 0])
    # With 4 users: -log2(4/4) = 0, -log2(2/4) = 1, -log2(1/4) = 2, and item 3 counts as 1 -> 2.
    topk = np.array([[0, 1], [2, 3], [1, -1]])
    # Per list: (0 + 1)/2, (2 + 2)/2, 1/1  ->  mean (0.5 + 2 + 1) / 3
    assert M.novelty(topk, popularity, n_users=4) == pytest.approx(3.5 / 3)


def test_ild_by_category_is_share_of_pairs_in_different_categories():
    categories = np.array([0, 0, 1, 1])  # items 0, 1 in one category, 2, 3 in another
    topk = np.array([[0, 1, 2], [0, 2, -1], [3, -1, -1]])
    # [0, 1, 2]: pairs (0,1) same, (0,2) and (1,2) differ -> 2/3. [0, 2]: 1/1.
    # [3]: no pair, left out.
    assert M.ild_category(topk, categories) == pytest.approx((2 / 3 + 1) / 2)


def test_ild_by_embedding_is_mean_pairwise_cosine_distance():
    emb = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [-3.0, 0.0]])
    topk = np.array([[0, 1, 3], [0, 2, -1]])
    # [0, 1, 3]: distances 1 - 0, 1 - (-1), 1 - 0 -> 4/3.  [0, 2]: 1 - 1/sqrt(2).
    expected = (4 / 3 + (1 - 1 / math.sqrt(2))) / 2
    assert M.ild_embedding(topk, emb) == pytest.approx(expected)


def test_beyond_accuracy_names_each_cutoff():
    topk = np.array([[0, 1], [0, 2]])
    out = M.beyond_accuracy(
        topk,
        (1, 2),
        4,
        popularity=np.array([2, 1, 1, 0]),
        n_train_users=2,
        categories=np.array([0, 1, 1, 0]),
    )
    assert out["coverage@1"] == pytest.approx(1 / 4) and out["coverage@2"] == pytest.approx(3 / 4)
    # Exposure @1: [2, 0, 0, 0] -> one item takes all: (4 - 1) / 4.
    assert out["gini@1"] == pytest.approx(3 / 4)
    # @2 info: item 0 -> 0, items 1 and 2 -> 1: both lists (0 + 1) / 2.
    assert out["novelty@2"] == pytest.approx(0.5)
    assert out["ILD@2"] == pytest.approx(1.0) and "ILD@1" not in out  # no pair in a 1-item list
