"""Privacy accounting for user-level DP: budgets, the accountant's epsilon, noise calibration,
and the report a private run leaves behind.

The unit protected is the shopper. `check_budget` validates a requested (epsilon, delta);
`plan_dp_sgd` turns (shoppers, batch size, epochs, epsilon) into the Poisson sample rate, steps
and noise multiplier DP-SGD will use, refusing with a `ConfigError` a budget that cannot be met
(see `shoprec.privacy.dp` for the training itself); `PrivacyReport` records what a run spent.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from shoprec.errors import ConfigError, check_choice, check_int, require_extra

__all__ = [
    "ACCOUNTANTS",
    "DEFAULT_MAX_NOISE_MULTIPLIER",
    "EPSILON_TOLERANCE",
    "DPSGDPlan",
    "PrivacyReport",
    "accountant_epsilon",
    "accountant_kwargs",
    "check_budget",
    "default_delta",
    "is_private",
    "noise_multiplier_for",
    "plan_dp_sgd",
    "quiet_opacus_warnings",
]

ACCOUNTANTS = ("rdp", "prv", "gdp")
DEFAULT_MAX_NOISE_MULTIPLIER = 50.0
# The accountant's binary search stops within this of the target; anything above target + this
# after training is an overshoot and is refused.
EPSILON_TOLERANCE = 0.01
# RDP orders: Opacus' defaults plus larger ones, which give tighter bounds at small noise.
RDP_ALPHAS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + [80, 96, 128, 192, 256, 384, 512, 1024]
# Integer orders only: 10-20x faster to evaluate and never below the epsilon of RDP_ALPHAS (a
# subset of orders gives an upper bound), so a noise level they accept is accepted by both.
RDP_INT_ALPHAS = list(range(2, 64)) + [80, 96, 128, 192, 256, 384, 512, 1024]


def accountant_kwargs(accountant: str, fast: bool = False) -> dict[str, Any]:
    if accountant != "rdp":
        return {}
    return {"alphas": RDP_INT_ALPHAS if fast else RDP_ALPHAS}


def default_delta(n_users: int) -> float:
    """1 / n ** 1.1: the delta used when none is given (always below 1 / n)."""
    return 1.0 / max(int(n_users), 2) ** 1.1


def is_private(epsilon: float | None) -> bool:
    """False for None or +inf (train without privacy), True for a finite epsilon."""
    return epsilon is not None and not (isinstance(epsilon, float) and math.isinf(epsilon) and epsilon > 0)


def check_budget(
    epsilon: float | None, delta: float | None, n_users: int, where: str = ""
) -> tuple[float, float]:
    """Validate a requested (epsilon, delta) for n_users shoppers; returns them resolved.

    epsilon None or inf -> (inf, 0.0), no privacy. Otherwise epsilon must be a finite number
    > 0 and delta (default `default_delta(n_users)`) in (0, 1 / n_users).
    """
    place = f" of {where}" if where else ""
    if not is_private(epsilon):
        return math.inf, 0.0
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float, np.integer, np.floating)):
        raise ConfigError(
            f"The 'target_epsilon' parameter{place} must be a number > 0, or None / inf for "
            f"no privacy. Got {epsilon!r} ({type(epsilon).__name__}) instead."
        )
    epsilon = float(epsilon)
    if not math.isfinite(epsilon) or epsilon <= 0:
        raise ConfigError(
            f"The 'target_epsilon' parameter{place} must be a number > 0, or None / inf for "
            f"no privacy. Got {epsilon} instead: no training run can promise epsilon <= 0."
        )
    n = int(n_users)
    if n < 1:
        raise ConfigError(f"A private run{place} needs at least one shopper. Got {n} instead.")
    if delta is None:
        delta = default_delta(n)
    if isinstance(delta, bool) or not isinstance(delta, (int, float, np.integer, np.floating)):
        raise ConfigError(
            f"The 'target_delta' parameter{place} must be a number in (0, 1/n) = (0, {1.0 / n:.3g}) "
            f"for n={n} shoppers. Got {delta!r} instead."
        )
    delta = float(delta)
    if not 0.0 < delta < 1.0 / n:
        raise ConfigError(
            f"The 'target_delta' parameter{place} must be in (0, 1/n) = (0, {1.0 / n:.3g}) for "
            f"n={n} shoppers. Got {delta} instead: a delta of 1/n or more allows releasing a "
            f"whole shopper's data."
        )
    return epsilon, delta


def accountant_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float,
                       accountant: str = "rdp") -> float:
    """Epsilon after `steps` Poisson-subsampled Gaussian steps (cached: accounting is slow)."""
    return _accountant_epsilon(float(noise_multiplier), float(sample_rate), int(steps), float(delta), accountant)


@functools.lru_cache(maxsize=8192)
def _accountant_epsilon(
    sigma: float, rate: float, steps: int, delta: float, accountant: str, fast: bool = False
) -> float:
    require_extra("opacus", "privacy")
    from opacus.accountants import create_accountant

    if steps == 0:
        return 0.0
    with quiet_opacus_warnings():
        acc = create_accountant(mechanism=accountant)
        acc.history = [(sigma, rate, steps)]
        return float(acc.get_epsilon(delta=delta, **accountant_kwargs(accountant, fast)))


def noise_multiplier_for(
    epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    *,
    accountant: str = "rdp",
    max_noise_multiplier: float = DEFAULT_MAX_NOISE_MULTIPLIER,
    where: str = "",
) -> float:
    """The smallest noise multiplier whose accountant epsilon after `steps` steps at
    `sample_rate` is at most `epsilon` (at `delta`); ConfigError when none is acceptable.
    Results are cached, so repeated fits with one configuration search once."""
    check_choice("accountant", accountant, ACCOUNTANTS, where or "DP-SGD")
    sigma, at_max = _search_noise(
        float(epsilon), float(delta), float(sample_rate), int(steps), accountant, float(max_noise_multiplier)
    )
    place = f" for {where}" if where else ""
    advice = "Train fewer epochs, use a smaller batch_size, or ask for a larger epsilon."
    if sigma is None:
        raise ConfigError(
            f"epsilon={epsilon:g} at delta={delta:.3g} cannot be met{place} with sample rate "
            f"{sample_rate:.4g} over {steps} steps: even the largest allowed noise multiplier, "
            f"max_noise_multiplier={max_noise_multiplier:g}, spends epsilon={at_max:.3g}. {advice}"
        )
    return sigma


@functools.lru_cache(maxsize=1024)
def _search_noise(epsilon, delta, sample_rate, steps, accountant, max_noise_multiplier):
    """(sigma, None), or (None, epsilon at the largest allowed sigma) when even that overshoots.

    Epsilon falls as sigma grows. A bisection with the fast integer orders finds a sigma that
    surely meets the target; three more steps with all orders lower it by up to 20% towards the
    smallest such sigma. The result always meets the target under the full accountant.
    """
    if max_noise_multiplier <= 0:
        return None, math.inf
    # Integer orders first (fast); the full set only when they cannot show feasibility.
    if _accountant_epsilon(max_noise_multiplier, sample_rate, steps, delta, accountant, True) > epsilon:
        at_max = _accountant_epsilon(max_noise_multiplier, sample_rate, steps, delta, accountant)
        if at_max > epsilon:
            return None, at_max

    def bisect(lo: float, hi: float, fast: bool, rel: float, max_steps: int = 60) -> float:
        for _ in range(max_steps):
            if hi - lo <= rel * hi:
                break
            mid = (lo + hi) / 2
            eps = _accountant_epsilon(mid, sample_rate, steps, delta, accountant, fast)
            if eps <= epsilon:
                hi = mid
                if epsilon - eps < EPSILON_TOLERANCE:
                    break
            else:
                lo = mid
        return hi

    hi = max_noise_multiplier
    if _accountant_epsilon(hi, sample_rate, steps, delta, accountant, True) <= epsilon:
        hi = bisect(0.0, hi, True, 1e-3)
    # The full orders' epsilon is lower, so a smaller sigma may do: three bisection steps
    # (full orders are slow) between 0.8 x and 1 x the integer-order answer.
    return bisect(0.8 * hi, hi, False, 1e-2, max_steps=3), None


@dataclass(frozen=True)
class DPSGDPlan:
    """The numbers a DP-SGD run will use: Poisson sample rate, steps and noise multiplier."""

    epsilon: float
    delta: float
    sample_rate: float
    steps: int
    noise_multiplier: float


def plan_dp_sgd(
    n_users: int,
    batch_size: int,
    epochs: int,
    target_epsilon: float,
    target_delta: float | None = None,
    *,
    accountant: str = "rdp",
    max_noise_multiplier: float = DEFAULT_MAX_NOISE_MULTIPLIER,
    where: str = "DP-SGD",
) -> DPSGDPlan:
    """Check a private configuration before training; ConfigError if it cannot meet epsilon.

    The sample rate is 1 / ceil(n / batch_size), as Opacus' Poisson data loader uses, and
    steps = epochs / sample rate.
    """
    n = check_int("n_users", n_users, 1, 10**10, where)
    batch_size = check_int("batch_size", batch_size, 1, 10_000_000, where)
    epochs = check_int("epochs", epochs, 1, 100_000, where)
    epsilon, delta = check_budget(target_epsilon, target_delta, n, where)
    if not math.isfinite(epsilon):
        raise ConfigError(f"{where}: plan_dp_sgd needs a finite target_epsilon. Got {target_epsilon!r}.")
    steps_per_epoch = math.ceil(n / min(batch_size, n))
    rate = 1.0 / steps_per_epoch
    sigma = noise_multiplier_for(
        epsilon, delta, rate, epochs * steps_per_epoch,
        accountant=accountant, max_noise_multiplier=max_noise_multiplier, where=where,
    )
    return DPSGDPlan(epsilon, delta, rate, epochs * steps_per_epoch, sigma)


@dataclass(frozen=True)
class PrivacyReport:
    """What a training run spent, as the accountant computed it.

    epsilon, delta: the guarantee of the released shared weights (inf, 0 without privacy).
    unit: what one 'neighbouring dataset' step changes ("user": one shopper's whole history).
    mechanism: "dp-sgd", "none", "laplace", "gaussian", "discrete-laplace", "discrete-gaussian",
        "gaussian-gram", "discrete-gaussian-gram", "dp-fedavg".
    """

    mechanism: str
    epsilon: float
    delta: float
    unit: str = "user"
    target_epsilon: float = math.inf
    noise_multiplier: float = 0.0
    max_grad_norm: float | None = None
    sample_rate: float | None = None
    steps: int = 0
    epochs: int = 0
    n_users: int = 0
    max_items_per_user: int | None = None
    accountant: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def private(self) -> bool:
        return math.isfinite(self.epsilon)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: infinite epsilons become the string "inf"."""
        out = asdict(self)
        for key in ("epsilon", "target_epsilon"):
            if math.isinf(out[key]):
                out[key] = "inf"
        return out

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PrivacyReport:
        raw = json.loads(text)
        for key in ("epsilon", "target_epsilon"):
            if raw.get(key) == "inf":
                raw[key] = math.inf
        return cls(**raw)

    def state(self) -> np.ndarray:
        """A 0-d str array for a model's saved state (safe npz: no pickle)."""
        return np.array(self.to_json())

    @classmethod
    def from_state(cls, value: np.ndarray) -> PrivacyReport:
        return cls.from_json(str(value))


@contextlib.contextmanager
def quiet_opacus_warnings():
    """Silence the three warnings Opacus runs emit that say nothing about this code, and no others.

    "Secure RNG turned off": we seed for reproducibility; production runs that need a
    cryptographically secure RNG must install torchcsprng and use opacus' secure_mode.
    "Full backward hook is firing ... no inputs require gradients": the first layer is an
    embedding of integer ids, whose inputs never require gradients; harmless.
    "Optimal order is the largest/smallest alpha": the RDP bound at the edge of the orders tried
    is still a valid (upper) bound, only possibly loose; RDP_ALPHAS already extends the range.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Secure RNG turned off", category=UserWarning)
        warnings.filterwarnings(
            "ignore", message=r"Full backward hook is firing when gradients are computed",
            category=UserWarning,
        )
        warnings.filterwarnings(
            "ignore", message=r"Optimal order is the (largest|smallest) alpha", category=UserWarning
        )
        yield
