"""The evaluation engine: full ranking and the sampled protocol, on models with known scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from shoprec.data.dataset import Dataset
from shoprec.data.split import leave_one_out, random_holdout
from shoprec.data.vocab import Vocabulary
from shoprec.errors import ConfigError, DataError, EmptyDataError
from shoprec.evaluate import SampledProtocol, evaluate, evaluate_scores
from shoprec.models.popularity import Popularity


def _dataset(n_users: int, n_items: int, pairs: list[tuple[int, int]]) -> Dataset:
    users = Vocabulary([f"u{u}" for u in range(n_users)], "user")
    items = Vocabulary([f"i{i}" for i in range(n_items)], "item")
    u, i = (np.array(x, np.int64) for x in zip(*pairs)) if pairs else (np.empty(0, np.int64),) * 2
    return Dataset.from_arrays(users, items, u, i)


def _targets(n_users: int, n_items: int, pairs: list[tuple[int, int]]) -> sp.csr_matrix:
    u, i = zip(*pairs)
    return sp.csr_matrix((np.ones(len(u), np.float32), (u, i)), shape=(n_users, n_items))


# The hand example: 4 users, 6 items, fixed scores.
#   u0: history {0}, target {2}; scores 9 5 4 3 2 1 -> list 1 2 3 4 5: target at rank 2
#   u1: history {5}, targets {0, 3, 4}; all other scores tie -> list 0 1 2 3 4: ranks 1, 4, 5
#   u2: history {2}, target {2}: the only target is already seen -> dropped, u2 not evaluated
#   u3: no history, target {5}; all scores tie -> list 0 1 2 3 4 5: rank 6
SCORES = np.array(
    [[9, 5, 4, 3, 2, 1], [1, 1, 1, 1, 1, 9], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]], np.float32
)
HISTORY = [(0, 0), (1, 5), (2, 2)]
TARGETS = [(0, 2), (1, 0), (1, 3), (1, 4), (2, 2), (3, 5)]


@pytest.fixture
def hand():
    return _dataset(4, 6, HISTORY), _targets(4, 6, TARGETS)


def _fixed(users):
    return SCORES[users]


@pytest.mark.parametrize("block_size", [1, 2, 1024])
def test_full_ranking_metrics_match_the_hand_example(hand, block_size):
    history, targets = hand
    r = evaluate_scores(_fixed, history, targets, k=(3, 10), block_size=block_size)
    assert r.users.tolist() == [0, 1, 3] and r.n_users == 3
    assert r.n_users_skipped == 1 and r.n_targets_in_history == 1
    assert not r.sampled
    assert r.topk.tolist() == [
        [1, 2, 3, 4, 5, -1, -1, -1, -1, -1],
        [0, 1, 2, 3, 4, -1, -1, -1, -1, -1],
        [0, 1, 2, 3, 4, 5, -1, -1, -1, -1],
    ]
    m = r.metrics
    log2 = math.log2
    # @3: u0 hit at 2; u1 hit at 1 (1 of 3 targets); u3 nothing.
    assert m["HR@3"] == pytest.approx(2 / 3)
    assert m["Recall@3"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert m["Precision@3"] == pytest.approx((1 / 3 + 1 / 3 + 0) / 3)
    # F1 per user: u0 P 1/3 R 1 -> 1/2; u1 P 1/3 R 1/3 -> 1/3; u3 no hit -> 0.
    assert m["F1@3"] == pytest.approx((1 / 2 + 1 / 3 + 0) / 3)
    idcg3 = 1 + 1 / log2(3) + 1 / log2(4)
    assert m["NDCG@3"] == pytest.approx((1 / log2(3) + 1 / idcg3 + 0) / 3)
    assert m["MRR@3"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert m["MAP@3"] == pytest.approx((1 / 2 + 1 / 3 + 0) / 3)  # u1: (1/1) / min(3, 3)
    # @10 is longer than the 6-item catalogue: u0 rank 2; u1 ranks 1, 4, 5; u3 rank 6.
    assert m["HR@10"] == pytest.approx(1.0)
    assert m["Recall@10"] == pytest.approx(1.0)
    assert m["Precision@10"] == pytest.approx((1 + 3 + 1) / 30)
    f1 = [2 * p / (p + 1) for p in (1 / 10, 3 / 10, 1 / 10)]  # recall is 1 for everyone at 10
    assert m["F1@10"] == pytest.approx(sum(f1) / 3)
    ndcg_u1 = (1 + 1 / log2(5) + 1 / log2(6)) / idcg3
    assert m["NDCG@10"] == pytest.approx((1 / log2(3) + ndcg_u1 + 1 / log2(7)) / 3)
    assert m["MRR@10"] == pytest.approx((1 / 2 + 1 + 1 / 6) / 3)
    assert m["MAP@10"] == pytest.approx((1 / 2 + (1 + 2 / 4 + 3 / 5) / 3 + 1 / 6) / 3)
    # Top-3 lists [1 2 3], [0 1 2], [0 1 2]: items {0, 1, 2, 3} of 6; exposure 2 3 3 1 0 0,
    # sorted 0 0 1 2 3 3: gini = (-1*1 + 1*2 + 3*3 + 5*3) / (6 * 9) = 25/54.
    assert m["coverage@3"] == pytest.approx(4 / 6)
    assert m["gini@3"] == pytest.approx(25 / 54)


def test_metric_names_come_in_a_stable_order(hand):
    history, targets = hand
    r = evaluate_scores(_fixed, history, targets, k=(10, 3))
    assert r.k == (3, 10)
    names = list(r.metrics)
    assert names[:4] == ["HR@3", "HR@10", "Recall@3", "Recall@10"]
    assert names.index("MAP@10") < names.index("coverage@3")


def test_a_model_returning_nan_is_a_clear_error(hand):
    history, targets = hand

    def broken(users):
        s = SCORES[users].copy()
        s[:, 1] = np.nan
        return s

    with pytest.raises(DataError, match="NaN scores for 3 of 3 users"):
        evaluate_scores(broken, history, targets)


def test_scores_of_the_wrong_shape_are_a_clear_error(hand):
    history, targets = hand
    with pytest.raises(DataError, match=r"shape \(3, 5\) for 3 users; expected \(3, 6\)"):
        evaluate_scores(lambda users: SCORES[users][:, :5], history, targets)


def test_masking_does_not_modify_the_models_scores(hand):
    history, targets = hand
    shared = SCORES.copy()
    evaluate_scores(
        lambda users: shared[users] if len(users) > 1 else shared[users[0]][None], history, targets
    )
    assert (shared == SCORES).all()


def test_no_user_with_a_target_is_an_empty_data_error(hand):
    history, _ = hand
    only_seen = _targets(4, 6, [(2, 2)])
    with pytest.raises(EmptyDataError, match="nothing to evaluate"):
        evaluate_scores(_fixed, history, only_seen)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"k": 0}, "The 'k' parameter of evaluate must be an int in [1, 100000]. Got 0 instead."),
        ({"k": ()}, "The 'k' parameter of evaluate must name at least one cutoff."),
        (
            {"k": "ten"},
            "The 'k' parameter of evaluate must be an int or a sequence of ints. Got 'ten' (str) instead.",
        ),
        (
            {"k": (10, 2.5)},
            "The 'k' parameter of evaluate must be an int in [1, 100000]. Got 2.5 (float) instead.",
        ),
        (
            {"block_size": 0},
            "The 'block_size' parameter of evaluate must be an int in [1, 10000000]. Got 0 instead.",
        ),
        ({"sampled": 100}, "sampled must be None or a SampledProtocol. Got int instead."),
    ],
)
def test_invalid_arguments_name_the_parameter(hand, kwargs, message):
    history, targets = hand
    with pytest.raises(ConfigError) as info:
        evaluate_scores(_fixed, history, targets, **kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"by": "zipf"},
            "The 'by' parameter of SampledProtocol must be one of ['uniform', 'popularity']. Got 'zipf' instead.",
        ),
        (
            {"n_negatives": 0},
            "The 'n_negatives' parameter of SampledProtocol must be an int in [1, 1000000]. Got 0 instead.",
        ),
    ],
)
def test_sampled_protocol_validates_its_options(kwargs, message):
    with pytest.raises(ConfigError) as info:
        SampledProtocol(**kwargs)
    assert str(info.value) == message


# ---- the sampled protocol ------------------------------------------------------------------


def test_sampled_protocol_ranks_the_target_among_its_negatives_with_the_tie_rule():
    # One user, 10 items. History {0} (scored highest, must never be drawn), target 5 at 0.5.
    # Every other item is drawn, since 100 negatives > 8 eligible. Ahead of the target: 1 (0.9),
    # 6 (0.7), and the ties at 0.5 with a lower index, 2 and 4; item 8 ties but has a higher
    # index, so it ranks behind. The target's rank is 5.
    history = _dataset(1, 10, [(0, 0)])
    targets = _targets(1, 10, [(0, 5)])
    scores = np.array([[10, 0.9, 0.5, 0.1, 0.5, 0.5, 0.7, 0.2, 0.5, 0.0]])
    r = evaluate_scores(
        lambda u: scores[u], history, targets, k=(4, 5, 10), sampled=SampledProtocol(100)
    )
    assert r.sampled and r.sampled_protocol == SampledProtocol(100)
    assert r.topk.shape == (1, 0)
    assert all(name.startswith("sampled_") for name in r.metrics)
    assert not any(name.startswith(("coverage", "gini", "novelty", "ILD")) for name in r.metrics)
    assert r.metrics["sampled_HR@4"] == 0.0 and r.metrics["sampled_HR@5"] == 1.0
    assert r.metrics["sampled_NDCG@5"] == pytest.approx(1 / math.log2(6))
    assert r.metrics["sampled_MRR@10"] == pytest.approx(1 / 5)
    # Full ranking over the same 9 unseen items puts the target at the same rank.
    full = evaluate_scores(lambda u: scores[u], history, targets, k=(5,))
    assert full.metrics["NDCG@5"] == pytest.approx(1 / math.log2(6))


def test_sampled_protocol_ranks_several_targets_of_one_user():
    # Targets 1 (0.8) and 3 (0.8, a tie won by index 1) and item 2 the only other item (0.9).
    history = _dataset(1, 4, [(0, 0)])
    targets = _targets(1, 4, [(0, 1), (0, 3)])
    scores = np.array([[0.0, 0.8, 0.9, 0.8]])
    r = evaluate_scores(lambda u: scores[u], history, targets, k=(3,), sampled=SampledProtocol(5))
    # Ranks 2 and 3: Recall 1, Precision 2/3, NDCG (1/log2 3 + 1/2) / (1 + 1/log2 3), MRR 1/2.
    assert r.metrics["sampled_Recall@3"] == pytest.approx(1.0)
    assert r.metrics["sampled_Precision@3"] == pytest.approx(2 / 3)
    assert r.metrics["sampled_NDCG@3"] == pytest.approx(
        (1 / math.log2(3) + 0.5) / (1 + 1 / math.log2(3))
    )
    assert r.metrics["sampled_MRR@3"] == pytest.approx(0.5)


def _sampling_setup(n_users=300):
    # Every user saw item 0 and holds item 1 out; the model ranks item 2 above the target and
    # every other item below. With one negative, the target is first unless item 2 is drawn.
    # In training item 2 has 100 users and items 3..9 one each (0 and 1 have none).
    history = _dataset(n_users, 10, [(u, 0) for u in range(n_users)])
    targets = _targets(n_users, 10, [(u, 1) for u in range(n_users)])
    train = _dataset(
        n_users, 10, [(u, 2) for u in range(min(100, n_users))] + [(0, i) for i in range(3, 10)]
    )
    scores = np.zeros(10)
    scores[2], scores[1] = 1.0, 0.5
    return history, targets, train, lambda users: np.tile(scores, (len(users), 1))


def test_uniform_and_popularity_sampling_draw_negatives_as_specified():
    history, targets, train, score_fn = _sampling_setup()
    # Uniform: item 2 is one of 8 eligible items (2..9): HR@1 = 7/8 in expectation.
    uni = evaluate_scores(
        score_fn,
        history,
        targets,
        k=(1,),
        train=train,
        sampled=SampledProtocol(1, "uniform", seed=1),
    )
    # Popularity: item 2 is drawn with probability 100/107: HR@1 = 7/107 ~ 0.065 in expectation.
    pop = evaluate_scores(
        score_fn,
        history,
        targets,
        k=(1,),
        train=train,
        sampled=SampledProtocol(1, "popularity", seed=1),
    )
    # 300 users: binomial standard deviations are about 0.02 and 0.014.
    assert 0.78 < uni.metrics["sampled_HR@1"] < 0.97
    assert 0.0 < pop.metrics["sampled_HR@1"] < 0.15


def test_sampling_never_draws_seen_held_out_or_interacted_items():
    history, targets, train, score_fn = _sampling_setup(50)
    # Mark item 2 as interacted later (say, a test item when ranking validation): never drawn.
    later = _targets(50, 10, [(u, 2) for u in range(50)])
    for by in ("uniform", "popularity"):
        r = evaluate_scores(
            score_fn,
            history,
            targets,
            k=(1,),
            train=train,
            interacted=later,
            sampled=SampledProtocol(3, by),
        )
        assert r.metrics["sampled_HR@1"] == 1.0


def test_sampled_protocol_is_reproducible_and_independent_of_block_size():
    history, targets, train, score_fn = _sampling_setup(100)
    runs = [
        evaluate_scores(
            score_fn,
            history,
            targets,
            k=(1,),
            train=train,
            block_size=b,
            sampled=SampledProtocol(2, "popularity", seed=3),
        ).metrics
        for b in (7, 1024, 1024)
    ]
    assert runs[0] == runs[1] == runs[2]


# ---- evaluate() on a split -----------------------------------------------------------------


class SpyModel:
    """Scores items by index (lower is better) and records the history it was given."""

    def __init__(self, n_items):
        self.n_items, self.histories = n_items, []

    def score_users(self, users, history=None):
        self.histories.append(history)
        return np.tile(-np.arange(self.n_items, dtype=np.float64), (len(users), 1))


def test_evaluate_scores_test_from_test_history_and_valid_from_train(tiny_shop):
    split = leave_one_out(tiny_shop)
    spy = SpyModel(tiny_shop.n_items)
    r = evaluate(spy, split, k=(2,))
    assert r.target == "test" and all(h is split.test_history for h in spy.histories)
    # u5 carted i6 and then bought it: that test item is already in the history, so u5 is skipped.
    assert split.test_users.size == 6 and r.n_users == 5
    assert r.n_users_skipped == 1 and r.n_targets_in_history == 1
    spy.histories.clear()
    r = evaluate(spy, split, k=(2,), target="valid")
    assert r.target == "valid" and all(h is split.train for h in spy.histories)
    # The catalogue defaults to the split's: ILD by category is reported.
    assert r.ild_by == "category" and "ILD@2" in r.metrics
    with pytest.raises(ConfigError, match="'target' parameter of evaluate must be one of"):
        evaluate(spy, split, target="train")


def test_evaluate_excludes_the_history_from_every_list(tiny_shop):
    split = leave_one_out(tiny_shop)
    r = evaluate(Popularity().fit(split.train), split, k=(8,))
    for user, row in zip(r.users, r.topk):
        listed = set(row[row >= 0].tolist())
        seen = set(split.test_history.history(user).tolist())
        assert listed and not listed & seen
        assert len(listed) == tiny_shop.n_items - len(seen)


def test_blockwise_lists_equal_a_full_sort_of_all_users(synthetic_shop):
    split = random_holdout(synthetic_shop, seed=1)  # several targets per user, some already seen
    model = Popularity().fit(split.train)
    small = evaluate(model, split, k=(5, 20), block_size=7)
    big = evaluate(model, split, k=(5, 20), block_size=4096)
    assert small.metrics == big.metrics and (small.topk == big.topk).all()
    # Reference: the whole users x items matrix, a stable sort (index order on ties).
    scores = model.score_users(small.users, history=split.test_history).astype(np.float64)
    seen = split.test_history.matrix(binary=True)[small.users].toarray() > 0
    scores[seen] = -np.inf
    reference = np.argsort(-scores, axis=1, kind="stable")[:, :20]
    assert (small.topk == reference).all()


def test_item_embeddings_switch_ild_to_cosine_distance(tiny_shop):
    split = leave_one_out(tiny_shop)
    model = Popularity().fit(split.train)
    emb = np.eye(tiny_shop.n_items)  # every pair orthogonal: distance 1
    r = evaluate(model, split, k=(3,), item_embeddings=emb)
    assert r.ild_by == "embedding" and r.metrics["ILD@3"] == pytest.approx(1.0)
    with pytest.raises(ConfigError, match=r"item_embeddings must have shape \(8, d\)"):
        evaluate(model, split, k=(3,), item_embeddings=np.eye(3))


def test_novelty_uses_training_popularity(tiny_shop):
    split = leave_one_out(tiny_shop)
    r = evaluate(Popularity().fit(split.train), split, k=(1,))
    pop = split.train.item_popularity()
    n = split.train.active_users().size
    expected = np.mean(-np.log2(np.maximum(pop[r.topk[:, 0]], 1) / n))
    assert r.metrics["novelty@1"] == pytest.approx(expected)


def test_as_dict_is_json_ready_and_labels_sampling(tiny_shop):
    import json

    split = leave_one_out(tiny_shop)
    model = Popularity().fit(split.train)
    full = evaluate(model, split, progress=True).as_dict()
    assert full["sampled"] is False and full["sampled_protocol"] is None
    sampled = evaluate(model, split, sampled=SampledProtocol(3, seed=2)).as_dict()
    assert sampled["sampled"] is True
    assert sampled["sampled_protocol"] == {"n_negatives": 3, "by": "uniform", "seed": 2}
    json.dumps([full, sampled])
