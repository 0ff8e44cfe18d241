"""Statistics of online A/B experiments whose unit of randomisation is the shopper.

A shop assigns shoppers, not slates, to variants, and one shopper sees many slates, so slates
are not independent draws: treating them as such understates the variance. Every metric here is
a ratio of per-shopper sums (clicked slates over slates, purchases over slates), and its
standard error comes from the delta method over shoppers (Deng et al., "Applying the delta
method in metric analytics", KDD 2018):

    R = sum(x) / sum(n),  Var(R) ~ (s_x^2 - 2 R s_xn + R^2 s_n^2) / (N mean(n)^2)

with s_x^2, s_n^2, s_xn the sample (co)variances of the per-shopper x and n over the N shoppers.
The difference of two variants is tested with a two-sided z-test on R_B - R_A (the two groups
are independent), with a 95% interval. The sample-ratio-mismatch check (SRM) compares the
shoppers per variant with the configured shares by a chi-square test: a p-value under 0.001
says the assignment or the logging is broken, and no difference should be read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from shoprec.errors import ConfigError

__all__ = ["RatioEstimate", "compare_ratios", "ratio_estimate", "sample_ratio_mismatch"]

Z95 = 1.959963984540054
SRM_ALPHA = 0.001


@dataclass(frozen=True)
class RatioEstimate:
    """A ratio metric of one variant: value, standard error and 95% interval, over n_units shoppers."""

    value: float
    se: float
    low: float
    high: float
    n_units: int

    def as_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


def ratio_estimate(numerators: np.ndarray, denominators: np.ndarray) -> RatioEstimate:
    """sum(numerators) / sum(denominators) over shoppers, with its delta-method standard error."""
    x = np.asarray(numerators, dtype=np.float64)
    n = np.asarray(denominators, dtype=np.float64)
    if x.shape != n.shape or x.ndim != 1:
        raise ConfigError("ratio_estimate needs two 1-d arrays of the same length (one entry per shopper).")
    units = len(x)
    if units == 0 or n.sum() <= 0:
        return RatioEstimate(math.nan, math.nan, math.nan, math.nan, units)
    value = float(x.sum() / n.sum())
    if units < 2:
        return RatioEstimate(value, math.nan, math.nan, math.nan, units)
    cov = np.cov(np.vstack([x, n]), ddof=1)
    var = (cov[0, 0] - 2 * value * cov[0, 1] + value**2 * cov[1, 1]) / (units * n.mean() ** 2)
    se = float(math.sqrt(max(var, 0.0)))
    return RatioEstimate(value, se, value - Z95 * se, value + Z95 * se, units)


def compare_ratios(control: RatioEstimate, treatment: RatioEstimate) -> dict[str, float]:
    """treatment - control: difference, its 95% interval, the relative lift and a two-sided p-value."""
    diff = treatment.value - control.value
    se = math.sqrt(control.se**2 + treatment.se**2) if math.isfinite(control.se + treatment.se) else math.nan
    if not math.isfinite(se) or se == 0:
        p = math.nan
    else:
        p = float(2 * stats.norm.sf(abs(diff) / se))
    lift = diff / control.value if control.value else math.nan
    return {"difference": diff, "low": diff - Z95 * se, "high": diff + Z95 * se, "relative": lift, "p_value": p}


def sample_ratio_mismatch(counts: list[int], shares: list[float]) -> dict[str, float | bool]:
    """Chi-square test of the shoppers per variant against the configured shares."""
    observed = np.asarray(counts, dtype=np.float64)
    expected_share = np.asarray(shares, dtype=np.float64)
    if observed.shape != expected_share.shape or len(observed) < 2:
        raise ConfigError("sample_ratio_mismatch needs a count and a share per variant, two variants or more.")
    total = observed.sum()
    if total == 0:
        return {"chi2": math.nan, "p_value": math.nan, "mismatch": False}
    expected = expected_share / expected_share.sum() * total
    chi2, p = stats.chisquare(observed, expected)
    return {"chi2": float(chi2), "p_value": float(p), "mismatch": bool(p < SRM_ALPHA)}
