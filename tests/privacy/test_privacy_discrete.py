"""Exact discrete Laplace / Gaussian noise: the draws follow the exact pmf, the calibration meets
the budget for the discrete mechanism, and DP counts record which sampler they used.

The distribution tests use fixed seeds, so they are deterministic; their thresholds (chi-square
p > 1e-4, moments within 4.5 standard errors) are loose for a correct sampler and are shown to
reject rounded continuous samplers (`test_the_checks_reject_rounded_continuous_samplers`).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy.stats import binomtest, chi2
from test_privacy_dp_counts import _shop

from shoprec.errors import ConfigError
from shoprec.privacy.discrete import (
    MAX_SCALE,
    MAX_SIGMA2,
    SecureIntegers,
    SeededIntegers,
    bernoulli_exp,
    calibrate_discrete_gaussian,
    calibrate_discrete_laplace,
    cdp_delta,
    discrete_gaussian,
    discrete_gaussian_delta,
    discrete_gaussian_pmf,
    discrete_laplace,
    discrete_laplace_pmf,
    discrete_scale,
    discrete_sigma2,
)
from shoprec.privacy.dp_counts import DPPopularity, dp_item_counts, gaussian_sigma

N = 200_000
P_MIN = 1e-4  # chi-square p-value below which a seeded sample is rejected
Z_MAX = 4.5  # standard errors beyond which a seeded sample's mean or variance is rejected


def _moments(pmf, half_width: int) -> tuple[float, float]:
    z = np.arange(-half_width, half_width + 1)
    p = pmf(z)
    return float((p * z**2).sum()), float((p * z**4).sum())


def distribution_check(draws: np.ndarray, pmf, half_width: int) -> dict[str, float]:
    """Chi-square p-value of the draws against `pmf` (bins with >= 20 expected, tails pooled),
    and z-scores of the sample mean (0), variance and positive-negative balance."""
    n = len(draws)
    z = np.arange(-half_width, half_width + 1)
    expected = n * pmf(z)
    core = z[expected >= 20]
    lo, hi = core.min(), core.max()
    observed = np.bincount(np.clip(draws, lo - 1, hi + 1) - (lo - 1), minlength=hi - lo + 3)
    exp_core = n * pmf(np.arange(lo, hi + 1))
    tail = (n - exp_core.sum()) / 2
    exp_all = np.concatenate([[tail], exp_core, [tail]])
    keep = exp_all > 0
    stat = float(((observed[keep] - exp_all[keep]) ** 2 / exp_all[keep]).sum())
    var, m4 = _moments(pmf, half_width)
    positive, negative = int((draws > 0).sum()), int((draws < 0).sum())
    return {
        "p": float(chi2.sf(stat, keep.sum() - 1)),
        "z_mean": float(draws.mean() / math.sqrt(var / n)),
        "z_var": float((draws.astype(np.float64).var() - var) / math.sqrt((m4 - var**2) / n)),
        "z_sign": (positive - negative) / math.sqrt(positive + negative),
    }


def passes(check: dict[str, float]) -> bool:
    return check["p"] > P_MIN and all(abs(check[k]) < Z_MAX for k in ("z_mean", "z_var", "z_sign"))


LAPLACE_SCALES = [1.0, 3.0, Fraction(10, 3), 25.0]
GAUSSIAN_SIGMA2S = [0.5, 2.5, 30.25, 400.0]


def _laplace_pmf(scale):
    b = float(discrete_scale(scale))
    return lambda z: discrete_laplace_pmf(z, b)


def _gaussian_pmf(sigma2):
    s2 = float(discrete_sigma2(sigma2))
    return lambda z: discrete_gaussian_pmf(z, s2)


@pytest.mark.parametrize("scale", LAPLACE_SCALES)
def test_discrete_laplace_draws_follow_the_exact_pmf(scale):
    draws = discrete_laplace(scale, N, SeededIntegers(11))
    assert draws.dtype == np.int64
    check = distribution_check(draws, _laplace_pmf(scale), int(60 * float(scale)) + 60)
    assert passes(check), check


@pytest.mark.parametrize("sigma2", GAUSSIAN_SIGMA2S)
def test_discrete_gaussian_draws_follow_the_exact_pmf(sigma2):
    draws = discrete_gaussian(sigma2, N, SeededIntegers(12))
    assert draws.dtype == np.int64
    check = distribution_check(draws, _gaussian_pmf(sigma2), int(40 * math.sqrt(sigma2)) + 40)
    assert passes(check), check


def test_the_checks_reject_rounded_continuous_samplers():
    """The tests above would catch the classic mistakes: rounding a continuous draw, or
    rounding one with a 5% wrong scale (at every parameter), and rounding the right continuous
    distribution where it differs from the discrete one (small scales)."""
    rng = np.random.default_rng(13)
    for scale in LAPLACE_SCALES:
        b, pmf, width = float(scale), _laplace_pmf(scale), int(60 * float(scale)) + 60
        wrong = np.rint(rng.laplace(0, 1.05 * b, N)).astype(np.int64)
        assert not passes(distribution_check(wrong, pmf, width)), scale
        if b <= 3.0:
            rounded = np.rint(rng.laplace(0, b, N)).astype(np.int64)
            assert not passes(distribution_check(rounded, pmf, width)), scale
    for sigma2 in GAUSSIAN_SIGMA2S:
        s, pmf, width = math.sqrt(sigma2), _gaussian_pmf(sigma2), int(40 * math.sqrt(sigma2)) + 40
        wrong = np.rint(rng.normal(0, 1.05 * s, N)).astype(np.int64)
        assert not passes(distribution_check(wrong, pmf, width)), sigma2
        if sigma2 <= 2.5:
            rounded = np.rint(rng.normal(0, s, N)).astype(np.int64)
            assert not passes(distribution_check(rounded, pmf, width)), sigma2


@pytest.mark.parametrize("gamma", [Fraction(0), Fraction(1, 3), Fraction(1), Fraction(5, 2), Fraction(7)])
def test_bernoulli_exp_succeeds_with_probability_exp_minus_gamma(gamma):
    hits = bernoulli_exp(np.full(N, gamma.numerator), gamma.denominator, SeededIntegers(14))
    p = math.exp(-gamma)
    assert abs(hits.mean() - p) < Z_MAX * math.sqrt(max(p * (1 - p), 1e-12) / N)


def test_the_secure_source_follows_the_exact_pmf():
    # Not seeded: a correct sampler fails this with probability about 1e-6.
    draws = discrete_gaussian(2.5, N, SecureIntegers())
    check = distribution_check(draws, _gaussian_pmf(2.5), 100)
    assert check["p"] > 1e-6 and abs(check["z_var"]) < 5.0, check
    uniform = SecureIntegers().below(np.full(300_000, 3))
    assert set(np.unique(uniform)) == {0, 1, 2}
    assert chi2.sf(((np.bincount(uniform) - 1e5) ** 2 / 1e5).sum(), 2) > 1e-6
    # With the bound 3 * 2^61, 64-bit words reduced without rejection would put 3/8 of the draws
    # below 2^61 instead of 1/3: the rejection of a quarter of the words removes that bias.
    big = SecureIntegers().below(np.full(100_000, 3 * 2**61))
    assert big.min() >= 0 and big.max() < 3 * 2**61
    assert binomtest(int((big < 2**61).sum()), len(big), 1 / 3).pvalue > 1e-6


def test_seeded_draws_are_reproducible_and_secure_draws_are_not():
    assert np.array_equal(discrete_gaussian(9.0, 1000, SeededIntegers(3)), discrete_gaussian(9.0, 1000, SeededIntegers(3)))
    assert not np.array_equal(discrete_gaussian(9.0, 1000, SeededIntegers(3)), discrete_gaussian(9.0, 1000, SeededIntegers(4)))
    assert not np.array_equal(discrete_laplace(9.0, 1000, SecureIntegers()), discrete_laplace(9.0, 1000, SecureIntegers()))
    assert not np.array_equal(discrete_gaussian(9.0, 1000, SecureIntegers()), discrete_gaussian(9.0, 1000, SecureIntegers()))


def test_the_rational_parameters_are_rounded_up_and_are_fixed_points():
    for value in (0.3, 1.0, math.pi, 1234.5678, 1e6):
        assert discrete_scale(value) >= Fraction(value) and float(discrete_scale(value)) == pytest.approx(value, rel=1e-6)
        assert discrete_scale(discrete_scale(value)) == discrete_scale(value)
        assert discrete_sigma2(value) >= Fraction(value) and float(discrete_sigma2(value)) == pytest.approx(value, rel=1e-6)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: discrete_laplace(0.0, 10, SeededIntegers()), "'scale' parameter of discrete_laplace must be in"),
        (lambda: discrete_laplace(float("nan"), 10, SeededIntegers()), "must be finite and > 0"),
        (lambda: discrete_laplace(MAX_SCALE * 2.0, 10, SeededIntegers()), "overflow"),
        (lambda: discrete_gaussian(-1.0, 10, SeededIntegers()), "'sigma2' parameter of discrete_gaussian"),
        (lambda: discrete_gaussian(MAX_SIGMA2 * 2.0, 10, SeededIntegers()), "overflow"),
        (lambda: discrete_gaussian("4", 10, SeededIntegers()), "must be a number > 0. Got '4'"),
        (lambda: discrete_gaussian(4.0, -1, SeededIntegers()), "'size' of a discrete noise draw"),
    ],
)
def test_invalid_noise_parameters_are_refused(call, message):
    with pytest.raises(ConfigError, match=message):
        call()


# ---- calibration --------------------------------------------------------------------------


def _hockey_stick(p: np.ndarray, q: np.ndarray, epsilon: float) -> float:
    return float(np.maximum(p - math.exp(epsilon) * q, 0.0).sum())


@pytest.mark.parametrize("sensitivity", [1, 2])
@pytest.mark.parametrize("epsilon", [0.5, 1.0, 2.0])
def test_theorem_7_delta_is_the_exact_hockey_stick_divergence(sensitivity, epsilon):
    sigma2 = 5.0
    y = np.arange(-200, 201)
    p, q = discrete_gaussian_pmf(y, sigma2), discrete_gaussian_pmf(y - sensitivity, sigma2)
    assert discrete_gaussian_delta(sigma2, epsilon, sensitivity) == pytest.approx(_hockey_stick(p, q, epsilon), rel=1e-9)


def _product_delta(sigma2: float, coordinates: int, epsilon: float) -> float:
    """Exact delta of N_Z(0, sigma2)^k against the same shifted by 1 in each of k coordinates:
    the privacy loss is (k - 2 S) / (2 sigma2) with S the sum of the k draws."""
    half = int(40 * math.sqrt(sigma2)) + 40
    one = discrete_gaussian_pmf(np.arange(-half, half + 1), sigma2)
    total = one
    for _ in range(coordinates - 1):
        total = np.convolve(total, one)
    s = np.arange(len(total)) - half * coordinates
    loss = (coordinates - 2 * s) / (2 * sigma2)
    return float((total * np.maximum(0.0, -np.expm1(epsilon - loss))).sum())


def test_the_product_delta_helper_agrees_with_theorem_7_for_one_coordinate():
    assert _product_delta(7.0, 1, 1.0) == pytest.approx(discrete_gaussian_delta(7.0, 1.0, 1), rel=1e-9)


@pytest.mark.parametrize("c", [1, 4, 10])
@pytest.mark.parametrize("epsilon, delta", [(1.0, 1e-5), (4.0, 1e-7)])
def test_the_calibrated_discrete_gaussian_meets_the_budget_when_a_shopper_adds_c_counts(c, epsilon, delta):
    cal = calibrate_discrete_gaussian(epsilon, delta, c, coordinates_changed=1 if c == 1 else None)
    assert cal.bound == ("cks-theorem-7" if c == 1 else "zcdp")
    assert cal.delta_bound <= delta
    # The exact delta of the worst neighbour (c counts, each moved by one) is within the budget...
    assert _product_delta(float(cal.sigma2), c, epsilon) <= delta
    # ... and the calibration is tight for its bound: 1% less variance breaks it.
    smaller = float(cal.sigma2) * 0.99
    if c == 1:
        assert discrete_gaussian_delta(smaller, epsilon) > delta
    else:
        assert cdp_delta(c / (2 * smaller), epsilon) > delta


def test_the_continuous_analytic_sigma_would_not_cover_the_discrete_gaussian():
    """Why the continuous calibration is not reused: at epsilon 1, delta 1e-5 the discrete
    Gaussian with the analytic continuous sigma has a delta above 1e-5 (CKS Theorem 7)."""
    continuous = gaussian_sigma(1.0, 1e-5, 1.0)
    assert discrete_gaussian_delta(continuous**2, 1.0) > 1e-5
    discrete = math.sqrt(calibrate_discrete_gaussian(1.0, 1e-5, 1, coordinates_changed=1).sigma2)
    assert continuous < discrete < 1.01 * continuous
    # With 10 items per shopper the zCDP route costs ~8% more sigma than the continuous one.
    zcdp = math.sqrt(calibrate_discrete_gaussian(1.0, 1e-5, 10).sigma2)
    assert 1.0 < zcdp / gaussian_sigma(1.0, 1e-5, math.sqrt(10)) < 1.12


@pytest.mark.parametrize("sigma2", [4.0, 14.0, 100.0])
@pytest.mark.parametrize("epsilon", [0.5, 1.0, 3.0])
def test_the_zcdp_conversion_bounds_the_exact_delta_and_beats_the_standard_bound(sigma2, epsilon):
    rho = 1 / (2 * sigma2)
    exact = discrete_gaussian_delta(sigma2, epsilon)
    assert exact <= cdp_delta(rho, epsilon) <= math.exp(-((epsilon - rho) ** 2) / (4 * rho))


@pytest.mark.parametrize("epsilon, c", [(0.7, 10), (2.0, 1), (0.01, 3)])
def test_the_discrete_laplace_scale_spends_at_most_epsilon(epsilon, c):
    cal = calibrate_discrete_laplace(epsilon, c)
    assert cal.scale >= Fraction(c) / Fraction(epsilon)
    assert epsilon * (1 - 1e-6) <= cal.epsilon <= epsilon
    # The pmf ratio of outputs one count apart c times over is exactly exp(c / scale) <= e^eps.
    b = float(cal.scale)
    assert discrete_laplace_pmf(0, b) / discrete_laplace_pmf(c, b) == pytest.approx(math.exp(cal.epsilon))


# ---- DP counts with the discrete sampler ------------------------------------------------


@pytest.mark.parametrize("mechanism", ["laplace", "gaussian"])
@pytest.mark.parametrize("sampler", ["discrete", "discrete-seeded"])
def test_discrete_counts_are_non_negative_integers_and_name_the_discrete_mechanism(mechanism, sampler):
    result = dp_item_counts(_shop(), 1.0, mechanism=mechanism, max_items_per_user=4, sampler=sampler)
    report = result.report
    assert report.mechanism == f"discrete-{mechanism}"
    assert report.extra["sampler"] == sampler
    assert report.extra["randomness"] == ("secure" if sampler == "discrete" else "seeded")
    assert (result.counts >= 0).all() and np.array_equal(result.counts, np.rint(result.counts))
    assert report.epsilon <= 1.0 and report.target_epsilon == 1.0
    if mechanism == "gaussian":
        assert report.extra["bound"] == "zcdp" and 0 < report.extra["delta_bound"] <= report.delta < 1 / 200
    else:
        assert report.delta == 0.0 and report.extra["scale"] >= 4.0


def test_the_float_sampler_is_still_the_default_and_says_so():
    report = dp_item_counts(_shop(), 1.0).report
    assert report.mechanism == "laplace" and report.extra["sampler"] == "float"


def test_discrete_laplace_counts_carry_noise_of_the_calibrated_variance():
    data = _shop(n_users=2000, n_items=40, per_user=10)
    exact = dp_item_counts(data, None, max_items_per_user=10).counts  # ~500 per item: no clipping
    noise = np.concatenate([
        dp_item_counts(data, 2.0, max_items_per_user=10, sampler="discrete-seeded", seed=s).counts - exact
        for s in range(50)
    ])
    b = 10 / 2.0
    variance = 2 * math.exp(-1 / b) / (1 - math.exp(-1 / b)) ** 2
    assert noise.var() == pytest.approx(variance, rel=0.2)  # 2,000 draws: s.e. of the variance ~8%


def test_discrete_seeded_counts_are_reproducible_and_secure_counts_are_not():
    data = _shop()
    one, two = (dp_item_counts(data, 1.0, sampler="discrete-seeded", seed=5).counts for _ in range(2))
    assert np.array_equal(one, two)
    three, four = (dp_item_counts(data, 1.0, sampler="discrete", seed=5).counts for _ in range(2))
    assert not np.array_equal(three, four)


def test_the_secure_sampler_does_not_take_heavy_shoppers_items_from_the_public_seed():
    # Without noise, the only randomness is which 5 of each shopper's 30 items count.
    data = _shop(per_user=30)
    assert np.array_equal(dp_item_counts(data, None, max_items_per_user=5, seed=0).counts,
                          dp_item_counts(data, None, max_items_per_user=5, seed=0).counts)
    secure = [dp_item_counts(data, None, max_items_per_user=5, sampler="discrete").counts for _ in range(2)]
    assert not np.array_equal(*secure)


def test_dp_popularity_saves_the_discrete_mechanism_with_its_counts(tmp_path):
    model = DPPopularity(epsilon=1.0, mechanism="gaussian", max_items_per_user=2, sampler="discrete-seeded").fit(_shop())
    model.save(tmp_path / "pop.npz")
    loaded = type(model).load(tmp_path / "pop.npz")
    assert loaded.privacy.mechanism == "discrete-gaussian" and loaded.sampler == "discrete-seeded"
    assert loaded.privacy == model.privacy


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: dp_item_counts(_shop(n_users=5), 1.0, sampler="exact"),
         (r"The 'sampler' parameter of dp_item_counts must be one of \['float', 'discrete', "
         r"'discrete-seeded'\]. Got 'exact' instead.")),
        (lambda: DPPopularity(epsilon=1.0, sampler="secure").fit(_shop(n_users=5)),
         r"The 'sampler' parameter of DPPopularity must be one of"),
    ],
)
def test_an_unknown_sampler_is_refused(call, message):
    with pytest.raises(ConfigError, match=message):
        call()
