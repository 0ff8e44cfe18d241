"""The conformance suite every shoprec model passes.

Subclass `RecommenderConformance` in a test module and say how to build the model; the suite
checks the interface contract and, on a shop with a known taste structure, that the model learns:

    class TestEASE(RecommenderConformance):
        def make_model(self):
            return EASE(l2=10.0)

Class attributes state what a model promises (defaults are for a personalised model):

    personalised      recommendations depend on the user's history
    beats_random      HR@10 above a random ranking on the synthetic shop
    beats_popularity  HR@10 above all-time popularity there
    repeatable        scoring the same thing twice gives the same scores (random models: False)
    uses_valid        the suite passes the split's validation targets to fit (early stopping)
    fit_kwargs        extra keyword arguments for fit
    slow              fitting takes seconds: the quality tests and the two-fit determinism test
                      are marked `slow` (deselect with -m "not slow"); make_model should still
                      pick small sizes and few epochs

`make_model` decides sizes: the shops here are tiny (8 items) and small (300 x 120).
`quality_dataset` picks the shop the HR@10 tests use (the synthetic shop, shuffled in time).
"""

from __future__ import annotations

import types
from typing import Any, ClassVar

import numpy as np
import pytest

from shoprec.data.dataset import Dataset
from shoprec.data.split import leave_one_out
from shoprec.errors import ConfigError, NotFittedError, UnknownIdError
from shoprec.models.base import MAX_K, Recommender
from shoprec.models.popularity import Popularity, RandomRecommender

# Tests that fit on the synthetic shop or fit twice; a `slow = True` model gets them marked slow.
_EXPENSIVE = (
    "test_same_parameters_and_seed_give_identical_scores",
    "test_beats_random_on_hr_at_10",
    "test_beats_popularity_on_hr_at_10",
)


def hit_rate_at_10(model: Recommender, split) -> float:
    """HR@10 of leave-one-out test items, ranking every item the history has not touched."""
    users = split.test_users
    scores = np.asarray(model.score_users(users, history=split.test_history), dtype=np.float64)
    seen = split.test_history.matrix(binary=True)[users]
    scores[seen.nonzero()] = -np.inf
    top = np.argpartition(-scores, 9, axis=1)[:, :10]
    targets = split.test[users].indices  # leave-one-out: exactly one per user
    return float((top == targets[:, None]).any(axis=1).mean())


def shuffled_in_time(data: Dataset, seed: int = 0) -> Dataset:
    """The same events in a random order within each user.

    The synthetic shop appends its two off-taste items last, so leave-one-out would hold out
    exactly the items no model can predict; shuffling time makes the held-out item a typical one.
    """
    order = np.random.default_rng(seed).permutation(len(data))
    return Dataset.from_arrays(
        data.users,
        data.items,
        data.user_idx,
        data.item_idx,
        data.event,
        order,
        data.value,
        data.catalogue,
        data.name,
    )


class RecommenderConformance:
    """Mixin of tests every Recommender passes. Subclasses implement `make_model`."""

    personalised: ClassVar[bool] = True
    beats_random: ClassVar[bool] = True
    beats_popularity: ClassVar[bool] = True
    repeatable: ClassVar[bool] = True
    uses_valid: ClassVar[bool] = False
    slow: ClassVar[bool] = False
    fit_kwargs: ClassVar[dict[str, Any]] = {}

    def make_model(self) -> Recommender:
        """A fresh, unfitted model with small sizes (same call, same parameters and seed)."""
        raise NotImplementedError

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.slow:
            for name in _EXPENSIVE:
                setattr(
                    cls,
                    name,
                    pytest.mark.slow(_copy_function(getattr(RecommenderConformance, name))),
                )

    # ---- helpers --------------------------------------------------------------------------
    def quality_dataset(self, synthetic_shop: Dataset) -> Dataset:
        """The shop the HR@10 tests split by leave-one-out; override to test on another."""
        return shuffled_in_time(synthetic_shop)

    def fitted(self, data: Dataset) -> Recommender:
        return self.make_model().fit(data, **self.fit_kwargs)

    def _quality(self, synthetic_shop: Dataset) -> tuple[float, float, float]:
        """HR@10 of this model, of popularity and of random on the synthetic shop (cached per class)."""
        cache = type(self).__dict__.get("_quality_cache")
        if cache is None:
            split = leave_one_out(self.quality_dataset(synthetic_shop))
            valid = {"valid": split.valid} if self.uses_valid else {}
            model = self.make_model().fit(split.train, **valid, **self.fit_kwargs)
            cache = (
                hit_rate_at_10(model, split),
                hit_rate_at_10(Popularity().fit(split.train), split),
                hit_rate_at_10(RandomRecommender(seed=0).fit(split.train), split),
            )
            type(self)._quality_cache = cache
        return cache

    # ---- fitting --------------------------------------------------------------------------
    def test_constructor_only_stores_parameters(self):
        model = self.make_model()
        assert not getattr(model, "_fitted", False)
        params = model.get_params()
        assert type(model)(**params).get_params() == params

    def test_fit_returns_self(self, tiny_shop):
        model = self.make_model()
        assert model.fit(tiny_shop, **self.fit_kwargs) is model

    def test_model_is_registered_under_its_name(self):
        from shoprec.models.registry import model_class

        model = self.make_model()
        assert model_class(model.name) is type(model)

    # ---- recommending for known users -----------------------------------------------------
    def test_recommend_returns_k_distinct_unseen_items_best_first(self, tiny_shop):
        model = self.fitted(tiny_shop)
        seen = set(tiny_shop.items.id_of(tiny_shop.history(tiny_shop.users.index(["u1"])[0])))
        recs = model.recommend("u1", k=3)
        items = [item for item, _ in recs]
        scores = [score for _, score in recs]
        assert len(items) == 3
        assert len(set(items)) == 3
        assert not seen & set(items)
        assert all(np.isfinite(scores))
        assert scores == sorted(scores, reverse=True)

    def test_recommend_ranks_unseen_items_by_their_scores(self, tiny_shop):
        if not self.repeatable:
            pytest.skip("scores are drawn afresh on every call")
        model = self.fitted(tiny_shop)
        u = tiny_shop.users.index(["u4"])[0]
        scores = model.score_users(np.array([u]))[0].astype(np.float64)
        scores[tiny_shop.history(u)] = -np.inf
        recs = model.recommend("u4", k=3)
        got = np.array([score for _, score in recs])
        np.testing.assert_allclose(got, np.sort(scores)[::-1][:3], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            got, scores[tiny_shop.items.index([i for i, _ in recs])], rtol=1e-5, atol=1e-6
        )

    def test_recommend_with_k_above_the_catalogue_returns_every_unseen_item(self, tiny_shop):
        model = self.fitted(tiny_shop)
        u = tiny_shop.users.index(["u1"])[0]
        unseen = set(tiny_shop.items.ids) - set(tiny_shop.items.id_of(tiny_shop.history(u)))
        recs = model.recommend("u1", k=1000)
        assert {item for item, _ in recs} == unseen
        assert len(recs) == len(unseen)

    def test_recommend_before_fit_raises_not_fitted_error(self):
        model = self.make_model()
        with pytest.raises(NotFittedError, match="fit"):
            model.recommend("u1")
        with pytest.raises(NotFittedError):
            model.recommend_history(["i1"])
        with pytest.raises(NotFittedError):
            model.score_users(np.array([0]))

    def test_recommend_for_an_unknown_user_raises_unknown_id_error(self, tiny_shop):
        model = self.fitted(tiny_shop)
        with pytest.raises(UnknownIdError, match="nobody"):
            model.recommend("nobody")
        with pytest.raises(UnknownIdError):
            model.score_users(np.array([tiny_shop.n_users]))

    @pytest.mark.parametrize("k", [0, -3, MAX_K + 1, 2.5, "10", None])
    def test_recommend_with_k_out_of_range_raises_config_error_naming_k(self, tiny_shop, k):
        model = self.fitted(tiny_shop)
        with pytest.raises(ConfigError, match="'k'"):
            model.recommend("u1", k=k)
        with pytest.raises(ConfigError, match="'k'"):
            model.recommend_history(["i1"], k=k)

    def test_personalised_model_recommends_differently_to_different_tastes(self, tiny_shop):
        if not self.personalised:
            pytest.skip("not a personalised model")
        model = self.fitted(tiny_shop)
        kitchen = model.score_history(["i1", "i2"])
        garden = model.score_history(["i5", "i6"])
        assert not np.allclose(kitchen, garden)

    # ---- raw histories --------------------------------------------------------------------
    def test_recommend_history_takes_raw_item_ids_and_excludes_them(self, tiny_shop):
        model = self.fitted(tiny_shop)
        recs = model.recommend_history(["i5", "i6"], k=4)
        items = [item for item, _ in recs]
        assert len(items) == 4 and len(set(items)) == 4
        assert not {"i5", "i6"} & set(items)
        assert set(items) <= set(tiny_shop.items.ids)
        assert all(np.isfinite([score for _, score in recs]))

    def test_recommend_history_ignores_unknown_item_ids(self, tiny_shop):
        model = self.fitted(tiny_shop)
        with_unknown = model.recommend_history(["i5", "no-such-item", "i6"], k=4)
        assert len(with_unknown) == 4
        if self.repeatable:
            assert with_unknown == model.recommend_history(["i5", "i6"], k=4)

    @pytest.mark.parametrize("history", [[], ["no-such-item"]])
    def test_recommend_history_handles_an_empty_history(self, tiny_shop, history):
        model = self.fitted(tiny_shop)
        recs = model.recommend_history(history, k=5)
        assert len(recs) == 5
        assert len({item for item, _ in recs}) == 5
        assert all(np.isfinite([score for _, score in recs]))

    def test_recommend_history_accepts_event_types(self, tiny_shop):
        model = self.fitted(tiny_shop)
        recs = model.recommend_history(["i5", "i6"], k=3, events=["view", "purchase"])
        assert len(recs) == 3

    # ---- scoring --------------------------------------------------------------------------
    def test_score_users_has_one_finite_row_per_user(self, tiny_shop):
        model = self.fitted(tiny_shop)
        users = np.arange(tiny_shop.n_users)
        scores = model.score_users(users)
        assert scores.shape == (tiny_shop.n_users, tiny_shop.n_items)
        assert np.isfinite(scores).all()
        with_history = model.score_users(users[:2], history=tiny_shop)
        assert with_history.shape == (2, tiny_shop.n_items)
        assert np.isfinite(with_history).all()
        assert model.score_users(np.array([], dtype=np.int64)).shape[0] == 0

    def test_items_without_training_events_get_finite_scores(self, tiny_shop):
        split = leave_one_out(tiny_shop)  # i8's only events are held out
        assert split.train.item_popularity()[tiny_shop.items.index(["i8"])[0]] == 0
        model = self.make_model().fit(split.train, **self.fit_kwargs)
        users = np.arange(tiny_shop.n_users)
        assert np.isfinite(model.score_users(users)).all()
        assert np.isfinite(model.score_users(users, history=split.test_history)).all()
        assert len(model.recommend("u6", k=5)) == 5

    def test_same_parameters_and_seed_give_identical_scores(self, tiny_shop):
        first, second = self.fitted(tiny_shop), self.fitted(tiny_shop)
        users = np.arange(tiny_shop.n_users)
        np.testing.assert_array_equal(first.score_users(users), second.score_users(users))
        np.testing.assert_array_equal(
            first.score_history(["i1", "i5"]), second.score_history(["i1", "i5"])
        )

    # ---- persistence ----------------------------------------------------------------------
    def test_save_then_load_gives_identical_scores_and_recommendations(self, tiny_shop, tmp_path):
        model = self.fitted(tiny_shop)
        path = model.save(tmp_path / "model.npz")
        loaded = Recommender.load(path)
        assert type(loaded) is type(model)
        assert loaded.get_params() == model.get_params()
        assert type(model).load(path).get_params() == model.get_params()
        # Same calls in the same order, so even a seeded random model stays in step.
        users = np.arange(tiny_shop.n_users)
        np.testing.assert_array_equal(model.score_users(users), loaded.score_users(users))
        np.testing.assert_array_equal(
            model.score_users(users, history=tiny_shop),
            loaded.score_users(users, history=tiny_shop),
        )
        assert model.recommend("u2", k=4) == loaded.recommend("u2", k=4)
        assert model.recommend_history(["i1", "i7"], k=4) == loaded.recommend_history(
            ["i1", "i7"], k=4
        )

    # ---- learning -------------------------------------------------------------------------
    def test_beats_random_on_hr_at_10(self, synthetic_shop):
        if not self.beats_random:
            pytest.skip("this model is not meant to beat a random ranking")
        model_hr, _, random_hr = self._quality(synthetic_shop)
        assert model_hr > random_hr + 0.05, f"HR@10 {model_hr:.3f} vs random {random_hr:.3f}"

    def test_beats_popularity_on_hr_at_10(self, synthetic_shop):
        if not self.beats_popularity:
            pytest.skip("this model is not meant to beat popularity")
        model_hr, pop_hr, _ = self._quality(synthetic_shop)
        assert model_hr > pop_hr + 0.1, f"HR@10 {model_hr:.3f} vs popularity {pop_hr:.3f}"


def _copy_function(func: types.FunctionType) -> types.FunctionType:
    """A copy of a function, so marks set on it do not reach the mixin's original."""
    copy = types.FunctionType(
        func.__code__, func.__globals__, func.__name__, func.__defaults__, func.__closure__
    )
    copy.__dict__.update({k: v for k, v in func.__dict__.items() if k != "pytestmark"})
    copy.__dict__["pytestmark"] = list(getattr(func, "pytestmark", []))
    copy.__qualname__ = func.__qualname__
    copy.__doc__ = func.__doc__
    return copy
