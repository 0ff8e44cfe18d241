"""The Gram release with exact discrete Gaussian noise (`sampler="discrete"` / "discrete-seeded").

The release must be integers, symmetric, with the calibrated variance off the diagonal and that
variance over diag_weight^2 on it; its record must carry the zCDP accounting that covers it (the
smallest grid sigma^2 whose delta is below the one asked for); the hardened sampler must not be
reproducible and the seeded one must; the models built on the release accept it.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from test_privacy_gram import _shop

from shoprec.errors import ConfigError
from shoprec.models.base import Recommender
from shoprec.privacy.discrete import SeededIntegers, cdp_delta
from shoprec.privacy.dpease import DPEASE
from shoprec.privacy.dpknn import DPItemKNN
from shoprec.privacy.gram import (
    discrete_symmetric_noise,
    gram_sensitivity,
    private_gram,
    recent_items_matrix,
)


def test_discrete_noise_is_integer_symmetric_with_its_two_variances():
    z = discrete_symmetric_noise(1200, Fraction(9), Fraction(9, 4), SeededIntegers(1))
    np.testing.assert_array_equal(z, z.T)
    np.testing.assert_array_equal(z, np.round(z))
    assert np.var(z[np.triu_indices(1200, 1)]) == pytest.approx(9.0, rel=0.01)
    assert np.var(np.diag(z)) == pytest.approx(2.25, rel=0.15)


@pytest.mark.parametrize(("epsilon", "delta", "m", "diag_weight"), [(8.0, 1e-6, 20, 1.0), (2.0, 1e-5, 10, 2.0)])
def test_a_discrete_release_is_integer_and_carries_the_zcdp_accounting_that_covers_it(epsilon, delta, m, diag_weight):
    data = _shop(n_users=300, n_items=300, max_len=60, seed=5)
    x = recent_items_matrix(data, m)
    exact = (x.T @ x).toarray()
    release = private_gram(x, epsilon, delta, max_items=m, diag_weight=diag_weight, sampler="discrete-seeded", seed=3)
    noise = release.gram.astype(np.float64) - exact
    np.testing.assert_array_equal(noise, np.round(noise))  # integer counts plus integer noise
    np.testing.assert_array_equal(release.gram, release.gram.T)
    report = release.report
    assert report.mechanism == "discrete-gaussian-gram" and report.accountant == "zcdp-discrete-gaussian"
    assert (report.epsilon, report.delta, report.unit) == (epsilon, delta, "user")
    sigma2 = Fraction(report.extra["sigma2_exact"])
    squared = math.ceil(gram_sensitivity(m, diag_weight) ** 2 - 1e-9)
    assert report.extra["rho"] == pytest.approx(squared / (2 * float(sigma2)))
    assert report.extra["delta_bound"] <= delta
    assert cdp_delta(squared / (2 * 0.99 * float(sigma2)), epsilon) > delta  # not much more noise than needed
    off = noise[np.triu_indices(len(noise), 1)]
    assert np.var(off) == pytest.approx(float(sigma2), rel=0.03)
    assert np.var(np.diag(noise)) == pytest.approx(float(sigma2) / diag_weight**2, rel=0.25)


def test_the_secure_sampler_is_not_reproducible_and_the_seeded_one_is():
    x = recent_items_matrix(_shop(n_users=100, n_items=60, max_len=20, seed=1), 10)
    secure = [private_gram(x, 4.0, 1e-4, max_items=10, sampler="discrete").gram for _ in range(2)]
    assert not np.array_equal(*secure)
    seeded = [private_gram(x, 4.0, 1e-4, max_items=10, sampler="discrete-seeded", seed=7).gram for _ in range(2)]
    np.testing.assert_array_equal(*seeded)
    assert private_gram(x, 4.0, 1e-4, max_items=10, sampler="discrete").report.extra["randomness"] == "secure"


@pytest.mark.parametrize("klass", [DPEASE, DPItemKNN])
def test_the_gram_models_train_on_a_discrete_release_and_keep_its_record(klass, synthetic_shop, tmp_path):
    model = klass(target_epsilon=4.0, target_delta=1e-4, max_items_per_user=10, sampler="discrete").fit(synthetic_shop)
    assert model.privacy.mechanism == "discrete-gaussian-gram" and model.privacy.extra["sampler"] == "discrete"
    loaded = Recommender.load(model.save(tmp_path / "m.npz"))
    assert loaded.privacy == model.privacy
    np.testing.assert_allclose(loaded.score_history(["i1", "i2"]), model.score_history(["i1", "i2"]), rtol=1e-6)


def test_an_unknown_sampler_is_refused_by_name(synthetic_shop):
    with pytest.raises(ConfigError, match="sampler"):
        DPEASE(target_epsilon=4.0, sampler="exact").fit(synthetic_shop)
    with pytest.raises(ConfigError, match="sampler"):
        private_gram(recent_items_matrix(synthetic_shop, 5), 4.0, 1e-4, max_items=5, sampler="exact")
