"""The conformance suite, run for every registered model: one class per model configuration.

Adding a model means adding three lines here (a class with `make_model`); the last test fails
for a registered model that has none, or that does not declare its per-shopper state.
"""

from __future__ import annotations

import pytest
from conformance import RecommenderConformance

from shoprec.models.base import PerUserState
from shoprec.models.caser import Caser
from shoprec.models.content import TextContentRecommender
from shoprec.models.ease import EASE, SparseEASE
from shoprec.models.knn import ItemKNN, UserKNN
from shoprec.models.mf import ALS, BPR
from shoprec.models.ncf import NCF
from shoprec.models.popularity import Popularity, RandomRecommender, RecentPopularity
from shoprec.models.registry import model_class, model_names
from shoprec.models.transformer import TransformerRecommender
from shoprec.privacy.dp_counts import DPPopularity
from shoprec.privacy.dpals import DPALS
from shoprec.privacy.dpease import DPEASE
from shoprec.privacy.dpknn import DPItemKNN
from shoprec.privacy.dpmf import DPMF
from shoprec.privacy.dptransformer import DPTransformer
from shoprec.privacy.sharded import ShardedRecommender
from shoprec.text.encoder import TextEncoder, hashed_bag_of_words


# ---- baselines ---------------------------------------------------------------------------------
class TestPopularity(RecommenderConformance):
    personalised = False
    beats_popularity = False

    def make_model(self):
        return Popularity()


class TestRecentPopularity(RecommenderConformance):
    personalised = False
    beats_popularity = False

    def make_model(self):
        return RecentPopularity(window_days=30)


class TestRandom(RecommenderConformance):
    personalised = False
    beats_random = False
    beats_popularity = False
    repeatable = False

    def make_model(self):
        return RandomRecommender(seed=3)


class TestItemKNN(RecommenderConformance):
    def make_model(self):
        return ItemKNN(neighbors=20, shrink=1.0)


class TestItemKNNWithEventWeights(RecommenderConformance):
    def make_model(self):
        return ItemKNN(
            neighbors=20, shrink=1.0, weighting="events", event_weights={"purchase": 4.0}
        )


class TestUserKNN(RecommenderConformance):
    def make_model(self):
        return UserKNN(neighbors=30, min_similarity=0.05)


class TestUserKNNWithEventWeights(RecommenderConformance):
    def make_model(self):
        return UserKNN(neighbors=30, weighting="events", event_weights="view=1,purchase=5")


class TestEASE(RecommenderConformance):
    def make_model(self):
        return EASE(l2=10.0)


class TestSparseEASE(RecommenderConformance):
    def make_model(self):
        return SparseEASE(l2=10.0, neighbors=20)


class TestALS(RecommenderConformance):
    def make_model(self):
        return ALS(factors=16, iterations=10, seed=1)


class TestALSWithEventWeights(RecommenderConformance):
    def make_model(self):
        return ALS(factors=16, iterations=10, seed=1, weighting="events")


class TestBPR(RecommenderConformance):
    def make_model(self):
        return BPR(factors=16, iterations=50, seed=1)


# ---- product text ------------------------------------------------------------------------------
def bow_encoder(cache_dir) -> TextEncoder:
    """Bag-of-words vectors: titles that share words are close. No model, no download."""
    return TextEncoder(cache_dir, model_name="hashed-bow", encode_fn=hashed_bag_of_words(256), dim=256)


class TestTextContentConformance(RecommenderConformance):
    @pytest.fixture(autouse=True)
    def _cache(self, tmp_path):
        self.cache = tmp_path

    def make_model(self):
        return TextContentRecommender(encoder=bow_encoder(self.cache))


# ---- neural sequence models ----------------------------------------------------------------------
class _QualitySizes:
    """Sizes for the synthetic shop (300 x 120): enough epochs to learn its four tastes."""

    uses_valid = True


class TestTransformer(_QualitySizes, RecommenderConformance):
    def make_model(self):
        return TransformerRecommender(
            d=16, n_layers=1, max_len=12, dropout=0.1, lr=1e-2, epochs=12, batch_size=32,
            patience=3, device="cpu", seed=0,
        )


class TestTransformerPreLN(_QualitySizes, RecommenderConformance):
    def make_model(self):
        return TransformerRecommender(
            d=16, n_layers=1, max_len=12, dropout=0.1, lr=1e-2, epochs=12, batch_size=32,
            patience=3, block="pre_ln", device="cpu", seed=0,
        )


class TestNCF(_QualitySizes, RecommenderConformance):
    def make_model(self):
        return NCF(d=16, hidden=(16, 8), dropout=0.0, max_len=12, lr=1e-2, epochs=12, batch_size=32,
                   n_negatives=32, patience=3, device="cpu", seed=0)


class TestCaser(_QualitySizes, RecommenderConformance):
    def make_model(self):
        return Caser(d=16, window=3, n_v=2, n_h=4, dropout=0.1, max_len=12, lr=1e-2, epochs=12,
                     batch_size=32, patience=3, device="cpu", seed=0)


# ---- private models -------------------------------------------------------------------------------
class TestDPMFWithoutPrivacy(RecommenderConformance):
    """The reference configuration (epsilon = inf) is a full recommender."""

    def make_model(self):
        return DPMF(factors=16, epochs=30, batch_size=32, lr=1e-2, seed=0)


class TestDPMFPrivate(RecommenderConformance):
    """Private at epsilon = 8: on 300 shoppers the noise leaves no accuracy to test."""

    beats_random = False
    beats_popularity = False

    def make_model(self):
        return DPMF(factors=8, epochs=2, batch_size=4, lr=1e-2, target_epsilon=8.0, seed=0)


class TestDPTransformerWithoutPrivacy(RecommenderConformance):
    slow = True

    def make_model(self):
        return DPTransformer(d=16, n_layers=1, max_len=20, epochs=15, batch_size=32, lr=3e-3, seed=0)


class TestDPPopularity(RecommenderConformance):
    personalised = False
    beats_popularity = False

    def make_model(self):
        return DPPopularity(epsilon=4.0, max_items_per_user=20)


class TestDPEASEWithoutPrivacy(RecommenderConformance):
    """epsilon = inf, no cap: EASE exactly."""

    def make_model(self):
        return DPEASE(l2=10.0, max_items_per_user=None, max_modelled=None)


class TestDPEASEPrivate(RecommenderConformance):
    """One Gaussian release of the capped Gram at epsilon = 8."""

    def make_model(self):
        return DPEASE(l2=10.0, max_items_per_user=20, denoise="psd", target_epsilon=8.0, seed=0)


class TestDPItemKNNPrivate(RecommenderConformance):
    def make_model(self):
        return DPItemKNN(neighbors=20, max_items_per_user=20, target_epsilon=8.0, seed=0)


class TestDPALSWithoutPrivacy(RecommenderConformance):
    """epsilon = inf, no cap: implicit ALS with a uniform weight on every pair."""

    def make_model(self):
        return DPALS(factors=8, iterations=8, alpha=0.1, l2=1.0, max_items_per_user=None, max_modelled=None)


class TestDPALSPrivate(RecommenderConformance):
    """Private item factors at epsilon = 8 (each shopper's from their own items)."""

    def make_model(self):
        return DPALS(factors=8, iterations=3, l2=1.0, max_items_per_user=20, target_epsilon=8.0, seed=0)


class TestSISA(RecommenderConformance):
    """Shard-wise training (for exact erasure) is still a full recommender."""

    def make_model(self):
        return ShardedRecommender(base="ease", n_shards=2, base_params={"l2": 10.0})


# ---- coverage --------------------------------------------------------------------------------------
CONFORMANCE_CLASSES = [
    cls for cls in list(globals().values())
    if isinstance(cls, type) and issubclass(cls, RecommenderConformance) and cls.__name__.startswith("Test")
]


def test_every_registered_model_runs_the_conformance_suite_and_declares_its_per_shopper_state(tmp_path):
    covered = set()
    for cls in CONFORMANCE_CLASSES:
        case = cls()
        case.cache = tmp_path  # what the text model's fixture would set
        covered.add(type(case.make_model()))
    for name in model_names():
        klass = model_class(name)
        assert klass in covered, f"registered model {name!r} has no conformance class in {__name__}"
        assert isinstance(getattr(klass, "per_user_state", None), PerUserState), (
            f"model {name!r} does not declare per_user_state (shoprec.models.base.PerUserState)"
        )
