"""The Recommender interface itself, shown through the non-personalised baselines."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest

from shoprec.data.dataset import Dataset
from shoprec.data.schema import Interactions
from shoprec.data.vocab import Vocabulary
from shoprec.errors import ConfigError, ModelFormatError, NotFittedError, UnknownIdError
from shoprec.models import ItemKNN, Recommender
from shoprec.models.base import FORMAT_VERSION, histories_to_csr
from shoprec.models.popularity import Popularity, RandomRecommender, RecentPopularity

DAY = 86_400


# ---- errors with exact messages ----------------------------------------------------------------
def test_using_an_unfitted_model_says_what_to_call_first():
    message = "This Popularity is not fitted yet; call fit(train) or load(path) first."
    for call in (
        lambda m: m.recommend("u1"),
        lambda m: m.recommend_history(["i1"]),
        lambda m: m.score_users(np.array([0])),
        lambda m: m.score_items("u1", ["i1"]),
        lambda m: m.save("model.npz"),
    ):
        with pytest.raises(NotFittedError) as info:
            call(Popularity())
        assert str(info.value) == message


@pytest.mark.parametrize(
    ("k", "message"),
    [
        (0, "The 'k' parameter of recommend must be an int in [1, 10000]. Got 0 instead."),
        (-3, "The 'k' parameter of recommend must be an int in [1, 10000]. Got -3 instead."),
        (10_001, "The 'k' parameter of recommend must be an int in [1, 10000]. Got 10001 instead."),
        (
            2.5,
            "The 'k' parameter of recommend must be an int in [1, 10000]. Got 2.5 (float) instead.",
        ),
        (
            True,
            "The 'k' parameter of recommend must be an int in [1, 10000]. Got True (bool) instead.",
        ),
    ],
)
def test_k_outside_its_range_is_a_config_error_naming_k(tiny_shop, k, message):
    model = Popularity().fit(tiny_shop)
    with pytest.raises(ConfigError) as info:
        model.recommend("u1", k=k)
    assert str(info.value) == message
    with pytest.raises(ConfigError) as info:
        model.recommend_history(["i1"], k=k)
    assert str(info.value) == message.replace("of recommend ", "of recommend_history ")


def test_an_unknown_user_is_an_unknown_id_error_that_names_it(tiny_shop):
    model = Popularity().fit(tiny_shop)
    with pytest.raises(UnknownIdError) as info:
        model.recommend("nobody")
    assert str(info.value) == "Unknown user ids ['nobody'] (1 in all)."
    assert isinstance(info.value, KeyError)
    with pytest.raises(UnknownIdError):
        model.score_items("nobody", ["i1"])
    with pytest.raises(UnknownIdError, match=r"User indices must be in \[0, 6\)"):
        model.score_users(np.array([-1]))


def test_fit_rejects_what_is_not_a_dataset_and_mismatched_validation_targets(tiny_shop):
    with pytest.raises(ConfigError, match="fit expects a shoprec Dataset. Got DataFrame instead."):
        Popularity().fit(pd.DataFrame())
    with pytest.raises(ConfigError, match="valid must be a 6 x 8 matrix"):
        Popularity().fit(tiny_shop, valid=histories_to_csr([np.array([0])], 8))


def test_scoring_with_a_history_on_another_item_vocabulary_is_a_config_error(tiny_shop):
    model = Popularity().fit(tiny_shop)
    other = Dataset.from_arrays(
        tiny_shop.users, Vocabulary(["x"], "item"), np.array([0]), np.array([0])
    )
    with pytest.raises(ConfigError, match="item vocabulary"):
        model.score_users(np.array([0]), history=other)


def test_event_types_must_match_the_raw_history_one_to_one(tiny_shop):
    model = Popularity().fit(tiny_shop)
    with pytest.raises(ConfigError, match="one entry per history item"):
        model.recommend_history(["i1", "i2"], events=["view"])


# ---- raw histories -----------------------------------------------------------------------------
def test_a_raw_history_ignores_unknown_item_ids(tiny_shop):
    model = ItemKNN(shrink=0.0).fit(tiny_shop)
    np.testing.assert_array_equal(
        model.score_history(["i1", "not-sold-here", "i2"]), model.score_history(["i1", "i2"])
    )
    assert model.recommend_history(["i1", "not-sold-here"], k=3) == model.recommend_history(
        ["i1"], k=3
    )


def test_an_empty_history_gets_the_unconditional_ranking(tiny_shop):
    model = Popularity().fit(tiny_shop)
    recs = model.recommend_history([], k=2)
    assert recs == [("i5", 4.0), ("i1", 3.0)]
    assert model.recommend_history(["never-seen"], k=2) == recs


def test_recommend_history_excludes_the_history_unless_asked_not_to(tiny_shop):
    model = Popularity().fit(tiny_shop)
    assert model.recommend_history(["i5"], k=1) == [("i1", 3.0)]
    assert model.recommend_history(["i5"], k=1, exclude_seen=False) == [("i5", 4.0)]


# ---- persistence -------------------------------------------------------------------------------
def test_save_load_round_trip_keeps_class_parameters_vocabularies_and_scores(tiny_shop, tmp_path):
    model = RecentPopularity(window_days=7).fit(tiny_shop)
    path = model.save(tmp_path / "trend")
    assert path == tmp_path / "trend.npz"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trend.npz"]  # no temporary left behind
    loaded = Recommender.load(path)
    assert type(loaded) is RecentPopularity
    assert loaded.get_params() == {"window_days": 7}
    assert loaded.users_ == model.users_ and loaded.items_ == model.items_
    assert (loaded.seen_ != model.seen_).nnz == 0
    users = np.arange(tiny_shop.n_users)
    np.testing.assert_array_equal(loaded.score_users(users), model.score_users(users))
    assert loaded.recommend("u1", k=3) == model.recommend("u1", k=3)
    assert Popularity.load(path).get_params() == {
        "window_days": 7
    }  # a subclass loads through its base


def _saved(tiny_shop, tmp_path) -> tuple:
    path = Popularity().fit(tiny_shop).save(tmp_path / "pop.npz")
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return path, arrays, json.loads(str(arrays["__meta__"]))


def _npz_bytes(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _with(arrays: dict, meta=None, drop: tuple = ()) -> bytes:
    out = {k: v for k, v in arrays.items() if k not in drop}
    if meta is not None:
        out["__meta__"] = np.array(json.dumps(meta))
    return _npz_bytes(out)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda raw, arrays, meta: raw[: len(raw) // 2], "not a shoprec model file"),
        (lambda raw, arrays, meta: b"", "not a shoprec model file"),
        (lambda raw, arrays, meta: b"this is not a model" * 20, "not a shoprec model file"),
        (lambda raw, arrays, meta: _npz_bytes({"weights": np.ones(3)}), "not a shoprec model file"),
        (
            lambda raw, arrays, meta: _with(arrays, {**meta, "format": "other-lib"}),
            "not a shoprec model file",
        ),
        (lambda raw, arrays, meta: _with(arrays, [1, 2]), "not a shoprec model file"),
        (
            lambda raw, arrays, meta: _with(arrays, {**meta, "format_version": FORMAT_VERSION + 1}),
            f"model format version {FORMAT_VERSION + 1} is not supported",
        ),
        (lambda raw, arrays, meta: _with(arrays, {**meta, "model": "deep-magic"}), "does not know"),
        (lambda raw, arrays, meta: _with(arrays, drop=("m/item_scores",)), "incomplete or damaged"),
        (lambda raw, arrays, meta: _with(arrays, drop=("__items__",)), "incomplete or damaged"),
        (
            lambda raw, arrays, meta: _with(arrays, {**meta, "params": {"bogus": 1}}),
            "incomplete or damaged",
        ),
    ],
    ids=[
        "truncated",
        "empty",
        "random-bytes",
        "foreign-npz",
        "foreign-format",
        "meta-not-a-dict",
        "newer-version",
        "unknown-model",
        "missing-state",
        "missing-vocabulary",
        "bad-params",
    ],
)
def test_loading_a_damaged_or_foreign_file_is_a_model_format_error(
    tiny_shop, tmp_path, damage, message
):
    path, arrays, meta = _saved(tiny_shop, tmp_path)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(damage(path.read_bytes(), arrays, meta))
    with pytest.raises(ModelFormatError, match=message):
        Recommender.load(bad)


def test_loading_a_missing_file_is_a_model_format_error(tmp_path):
    with pytest.raises(ModelFormatError, match="no such model file"):
        Recommender.load(tmp_path / "nothing.npz")


def test_loading_through_the_wrong_class_is_a_model_format_error(tiny_shop, tmp_path):
    path = Popularity().fit(tiny_shop).save(tmp_path / "pop.npz")
    with pytest.raises(ModelFormatError, match="holds a 'pop' model, not 'item-knn'"):
        ItemKNN.load(path)


def test_saved_files_hold_no_pickles(tiny_shop, tmp_path):
    path = ItemKNN().fit(tiny_shop).save(tmp_path / "knn.npz")
    with np.load(path, allow_pickle=False) as npz:
        assert all(npz[k].dtype != object for k in npz.files)


# ---- parameters --------------------------------------------------------------------------------
def test_parameters_are_stored_as_given_and_shown_in_repr():
    model = RecentPopularity(window_days=3)
    assert model.get_params() == {"window_days": 3}
    assert repr(model) == "RecentPopularity(window_days=3)"
    assert not hasattr(model, "item_scores_")


# ---- the non-personalised baselines ------------------------------------------------------------
def test_popularity_ranks_unseen_items_by_distinct_users(tiny_shop):
    # i5 has 4 users; i6 and i7 have 3 (u5's two i6 events count once); ties go to the lower index.
    model = Popularity().fit(tiny_shop)
    assert model.recommend("u1", k=3) == [("i5", 4.0), ("i6", 3.0), ("i7", 3.0)]
    assert model.recommend("u1", k=1, exclude_seen=False) == [("i5", 4.0)]
    np.testing.assert_array_equal(model.score_items("u1", ["i8", "i5"]), [2.0, 4.0])


def _trend_shop() -> Dataset:
    # "classic" was bought by four users a year ago; "new" by two users this week.
    now = 400 * DAY
    rows = [(f"old{j}", "classic", "purchase", 10 * DAY) for j in range(4)]
    rows += [(f"old{j}", "basic", "purchase", 11 * DAY) for j in range(2)]
    rows += [("new0", "new", "purchase", now - DAY), ("new1", "new", "purchase", now)]
    frame = pd.DataFrame(rows, columns=["user", "item", "event", "timestamp"])
    return Dataset.from_interactions(Interactions.from_frame(frame, "trend"))


def test_recent_popularity_ranks_trending_items_first_then_all_time_popularity():
    data = _trend_shop()
    recent = RecentPopularity(window_days=30).fit(data)
    assert [item for item, _ in recent.recommend_history([], k=3)] == ["new", "classic", "basic"]
    all_time = Popularity().fit(data)
    assert [item for item, _ in all_time.recommend_history([], k=3)] == ["classic", "basic", "new"]
    # A window that reaches back a year is all-time popularity again.
    yearly = RecentPopularity(window_days=400).fit(data)
    assert [item for item, _ in yearly.recommend_history([], k=3)] == ["classic", "basic", "new"]


def test_recent_popularity_validates_its_window(tiny_shop):
    with pytest.raises(ConfigError) as info:
        RecentPopularity(window_days=0).fit(tiny_shop)
    assert str(info.value) == (
        "The 'window_days' parameter of RecentPopularity must be an int in [1, 100000]. Got 0 instead."
    )


def test_random_scores_are_uniform_and_reproducible_for_a_seed(tiny_shop):
    users = np.arange(tiny_shop.n_users)
    a = RandomRecommender(seed=5).fit(tiny_shop).score_users(users)
    b = RandomRecommender(seed=5).fit(tiny_shop).score_users(users)
    c = RandomRecommender(seed=6).fit(tiny_shop).score_users(users)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.min() >= 0.0 and a.max() < 1.0


def test_histories_to_csr_counts_a_repeated_item_once():
    m = histories_to_csr([np.array([2, 0, 2]), np.array([], np.int64)], 3)
    np.testing.assert_array_equal(m.toarray(), [[1, 0, 1], [0, 0, 0]])
