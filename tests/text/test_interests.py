"""Multi-interest shoppers, checked on embeddings whose interests are known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from shoprec.errors import ConfigError, EmptyDataError
from shoprec.text.interests import Interests, retrieve_per_interest, user_interests

DIM = 64


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def centres(n: int, seed: int = 0) -> np.ndarray:
    return unit(np.random.default_rng(seed).normal(size=(n, DIM)))


def around(centre: np.ndarray, n: int, rng: np.random.Generator, spread: float = 0.5) -> np.ndarray:
    """n unit vectors near `centre` (cosine to it about 1 / sqrt(1 + spread**2))."""
    return unit(centre + spread * rng.normal(size=(n, DIM)) / np.sqrt(DIM))


def history(sizes: list[int], seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Embeddings of a history with len(sizes) interests, their true labels, and the centres."""
    rng = np.random.default_rng(seed + 100)
    c = centres(len(sizes), seed)
    x = np.vstack([around(c[i], n, rng) for i, n in enumerate(sizes)])
    return x, np.repeat(np.arange(len(sizes)), sizes), c


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


# ---- finding interests --------------------------------------------------------------------------
@pytest.mark.parametrize("sizes", [[12], [6, 6], [8, 5], [6, 6, 6], [5, 7, 6, 8]])
def test_finds_the_true_interests_of_well_separated_histories(sizes):
    x, labels, true_centres = history(sizes, seed=len(sizes))
    found = user_interests(x, max_interests=4, seed=0)
    assert found.n_interests == len(sizes)
    assert same_partition(found.assignment, labels)
    # Each found centre points at one true centre.
    match = unit(found.means) @ true_centres.T
    assert sorted(match.argmax(axis=1).tolist()) == list(range(len(sizes)))
    assert match.max(axis=1).min() > 0.8


def test_a_short_history_has_one_interest_whatever_its_spread():
    x, _, _ = history([2, 3], seed=1)  # 5 distinct items < 2 x min_items_per_interest
    found = user_interests(x, max_interests=4)
    assert found.n_interests == 1
    np.testing.assert_array_equal(found.assignment, 0)
    np.testing.assert_allclose(found.means[0], x.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(found.weights, [1.0])


def test_max_interests_caps_the_number_found():
    x, _, _ = history([6, 6, 6, 6], seed=2)
    assert user_interests(x, max_interests=2).n_interests <= 2
    assert user_interests(x, max_interests=1).n_interests == 1


def test_weights_are_shares_of_the_history_heaviest_first():
    x, labels, _ = history([10, 5], seed=3)
    found = user_interests(x)
    np.testing.assert_allclose(found.weights, [10 / 15, 5 / 15], atol=1e-6)
    assert (found.assignment[labels == 0] == 0).all()


def test_repeated_items_count_every_time_in_the_weights():
    x, _, _ = history([6, 6], seed=4)
    repeated = np.vstack([x, np.repeat(x[:1], 6, axis=0)])  # item 0 bought six more times
    found = user_interests(repeated)
    assert found.n_interests == 2
    np.testing.assert_allclose(found.weights, [12 / 18, 6 / 18], atol=1e-6)
    assert (found.assignment[6 * 2 :] == found.assignment[0]).all()


def test_items_without_an_embedding_are_left_out_and_marked_minus_one():
    x, _, _ = history([6, 6], seed=5)
    with_blank = np.vstack([x[:3], np.zeros((1, DIM)), x[3:]])
    found = user_interests(with_blank)
    assert found.assignment[3] == -1
    assert (np.delete(found.assignment, 3) >= 0).all()
    with pytest.raises(EmptyDataError, match="no history item"):
        user_interests(np.zeros((4, DIM)))
    with pytest.raises(EmptyDataError):
        user_interests(np.zeros((0, DIM)))


def test_same_input_and_seed_give_the_same_interests():
    x, _, _ = history([7, 7, 7], seed=6)
    first, second = user_interests(x, seed=3), user_interests(x, seed=3)
    np.testing.assert_array_equal(first.means, second.means)
    np.testing.assert_array_equal(first.assignment, second.assignment)


def test_identical_items_only_give_one_interest_without_warnings():
    x = np.repeat(centres(1), 12, axis=0)
    found = user_interests(x)
    assert isinstance(found, Interests) and found.n_interests == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_interests": 0}, "'max_interests'"),
        ({"max_interests": 2.5}, "'max_interests'"),
        ({"seed": -1}, "'seed'"),
        ({"min_items_per_interest": 0}, "'min_items_per_interest'"),
        ({"n_dims": 0}, "'n_dims'"),
        ({"reg_covar": 0.0}, "'reg_covar'"),
        ({"reg_covar": 11.0}, "'reg_covar'"),
    ],
)
def test_invalid_parameters_raise_config_error_naming_them(kwargs, message):
    x, _, _ = history([6, 6])
    with pytest.raises(ConfigError, match=message):
        user_interests(x, **kwargs)


def test_non_matrix_or_non_finite_input_raises_config_error():
    with pytest.raises(ConfigError, match="2-d"):
        user_interests(np.ones(DIM))
    bad = np.ones((6, DIM))
    bad[2, 3] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        user_interests(bad)


# ---- retrieving around each interest ------------------------------------------------------------
@pytest.fixture
def catalogue_embeddings() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """60 items in 3 groups of 20 around known centres; item 59 has no text (a zero row)."""
    rng = np.random.default_rng(11)
    c = centres(3, seed=11)
    items = np.vstack([around(c[g], 20, rng) for g in range(3)]).astype(np.float32)
    items[59] = 0.0
    return items, np.repeat(np.arange(3), 20), c


def test_each_interest_retrieves_items_of_its_own_group_nearest_first(catalogue_embeddings):
    items, group, c = catalogue_embeddings
    interests = Interests(c[[2, 0]].astype(np.float32), np.array([0.5, 0.5]), np.zeros(0, np.int64))
    pools = retrieve_per_interest(interests, items, 5)
    assert len(pools) == 2
    assert (group[pools[0]] == 2).all() and (group[pools[1]] == 0).all()
    for centre, pool in zip(c[[2, 0]], pools):
        sims = items @ centre
        expected = np.argsort(-sims, kind="stable")[:5]
        np.testing.assert_array_equal(pool, expected)


def test_retrieval_skips_excluded_items_and_items_without_text(catalogue_embeddings):
    items, _group, c = catalogue_embeddings
    interests = Interests(c[[2]].astype(np.float32), np.array([1.0]), np.zeros(0, np.int64))
    nearest = retrieve_per_interest(interests, items, 3)[0]
    again = retrieve_per_interest(interests, items, 3, exclude=nearest[:2])[0]
    assert not set(nearest[:2]) & set(again)
    assert again[0] == nearest[2]
    everything = retrieve_per_interest(interests, items, 60)[0]
    assert len(everything) == 59 and 59 not in everything


def test_retrieval_takes_one_count_per_interest(catalogue_embeddings):
    items, _, c = catalogue_embeddings
    interests = Interests(c.astype(np.float32), np.array([0.5, 0.3, 0.2]), np.zeros(0, np.int64))
    pools = retrieve_per_interest(interests, items, [5, 3, 0])
    assert [len(p) for p in pools] == [5, 3, 0]
    with pytest.raises(ConfigError, match="one count per interest"):
        retrieve_per_interest(interests, items, [5, 3])
    with pytest.raises(ConfigError, match="'k_per_interest'"):
        retrieve_per_interest(interests, items, -1)


def test_retrieval_rejects_mismatched_widths_and_bad_exclusions(catalogue_embeddings):
    items, _, c = catalogue_embeddings
    interests = Interests(c.astype(np.float32), np.ones(3) / 3, np.zeros(0, np.int64))
    with pytest.raises(ConfigError, match="item_embeddings"):
        retrieve_per_interest(interests, items[:, :10], 3)
    with pytest.raises(ConfigError, match="exclude"):
        retrieve_per_interest(interests, items, 3, exclude=[60])


def test_interests_of_a_two_group_history_retrieve_from_both_groups(catalogue_embeddings):
    items, group, _ = catalogue_embeddings
    history_items = np.r_[0:6, 40:46]  # six from group 0, six from group 2
    found = user_interests(items[history_items])
    pools = retrieve_per_interest(found, items, 4, exclude=history_items)
    assert {int(group[p].max()) for p in pools} == {0, 2}
    assert all(len(set(group[p])) == 1 for p in pools)
    # The single mean of the history would sit between the groups; the interests do not.
    assert not set(np.concatenate(pools)) & set(history_items)
