"""A/B statistics: delta-method intervals over shoppers, the difference test and the SRM check,
checked against simulated experiments whose true answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from shoprec.errors import ConfigError
from shoprec.evaluate.ab import compare_ratios, ratio_estimate, sample_ratio_mismatch


def _shoppers(rng, n: int, ctr: float, shopper_sd: float = 0.0):
    """n shoppers, 1-20 slates each, each slate clicked with the shopper's own probability
    (around `ctr`, spread `shopper_sd`): slates of one shopper are correlated, as in a shop."""
    slates = rng.integers(1, 21, size=n)
    p = np.clip(ctr + shopper_sd * rng.standard_normal(n), 0.0, 1.0)
    return rng.binomial(slates, p), slates


def test_the_ratio_is_sum_over_sum():
    est = ratio_estimate(np.array([1, 0, 3]), np.array([2, 2, 6]))
    assert est.value == pytest.approx(4 / 10) and est.n_units == 3 and est.low < est.value < est.high


def test_intervals_cover_the_truth_about_95_percent_of_the_time_even_with_correlated_slates():
    rng = np.random.default_rng(0)
    covered = []
    for _ in range(400):
        x, n = _shoppers(rng, 300, 0.10, shopper_sd=0.08)
        est = ratio_estimate(x, n)
        covered.append(est.low <= 0.10 <= est.high)
    assert 0.92 <= np.mean(covered) <= 0.98  # a binomial-per-slate interval would cover far less


def test_a_known_difference_is_found_and_an_a_a_test_finds_none():
    rng = np.random.default_rng(1)
    control = ratio_estimate(*_shoppers(rng, 2000, 0.10, 0.05))
    better = ratio_estimate(*_shoppers(rng, 2000, 0.12, 0.05))
    found = compare_ratios(control, better)
    assert found["low"] <= 0.02 <= found["high"] and found["low"] > 0 and found["p_value"] < 1e-4
    assert found["relative"] == pytest.approx(found["difference"] / control.value)
    p_values = [compare_ratios(ratio_estimate(*_shoppers(rng, 500, 0.1, 0.05)),
                               ratio_estimate(*_shoppers(rng, 500, 0.1, 0.05)))["p_value"] for _ in range(200)]
    assert 0.02 <= np.mean(np.asarray(p_values) < 0.05) <= 0.09  # false positives at about the 5% level


def test_sample_ratio_mismatch_flags_a_broken_split_only():
    assert not sample_ratio_mismatch([5030, 4970], [0.5, 0.5])["mismatch"]
    assert sample_ratio_mismatch([5300, 4700], [0.5, 0.5])["mismatch"]
    assert not sample_ratio_mismatch([2010, 7990], [0.2, 0.8])["mismatch"]
    with pytest.raises(ConfigError, match="two variants"):
        sample_ratio_mismatch([10], [1.0])


def test_empty_and_single_shopper_variants_give_no_interval():
    assert np.isnan(ratio_estimate(np.array([]), np.array([])).value)
    one = ratio_estimate(np.array([1]), np.array([4]))
    assert one.value == 0.25 and np.isnan(one.se)
    with pytest.raises(ConfigError, match="one entry per shopper"):
        ratio_estimate(np.array([1, 2]), np.array([1]))
