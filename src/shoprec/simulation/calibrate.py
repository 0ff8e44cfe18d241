"""Fitting a simulated store's knobs to a real behaviour log, and writing them down.

Four quantities are measured on a log and turned into `StoreConfig` fields:

- **engagement** (`funnel_rates`): on a log with a view / cart / favourite / purchase funnel
  (Taobao UserBehavior), the share of viewed (shopper, item) pairs that the shopper went on to
  engage with (cart, favourite or purchase), and the share of engaged pairs that were bought.
  A viewed item is an examined slot that the shopper chose, so the first rate is the store's
  `top_ctr` (the click probability of a shopper's best item at an examined slot) and the
  second its `purchase_rate`. Logs without views (purchases or ratings only) have no
  non-engaged impressions, so they take these two rates from a funnel log, and say so.
- **repeat rate** (`repeat_rate`): the share of a shopper's events, after their first, that are
  on an item they had engaged with before. The store's `fatigue` is fitted by simulated moments
  (`fit_fatigue`): the fatigue at which a fixed reference shop (each round, a slate drawn by
  Plackett-Luce over the store's own model ranking) produces the same repeat rate.
- **arrival of new items** (`arrival_share`): on the event clock (rank of an event's time over the
  log), the share of items with at least `min_events` events whose first event comes after the
  first `warmup` of the log, corrected for sparsity: an item always present, with n events each
  in the warm-up with probability q, is first seen late with probability (1 - q)^n, so
  share = (late - E[(1 - q)^n]) / (1 - E[(1 - q)^n]), with q (the warm-up's share of the events
  of items present from the start) solved jointly with the share. It becomes `new_item_fraction`,
  arriving in `new_item_batches` batches spread over the simulated horizon.
- **drift** (`interest_drift`): for shoppers with at least `min_events` events, the cosine of the
  mean item vector of the first half of their history with that of the second half, divided by
  the same cosine for two random halves (which removes sampling noise): 1 for no drift. The
  store's `drift_strength` is fitted (`fit_drift_strength`, every shopper drifting) so that the
  mean cosine between a shopper's true taste at the start and at the end of the horizon equals
  the log's ratio.

`calibrated_config` puts them together; `save_store_config` / `load_store_config` write and read
the result (a JSON file with the config and the measured figures).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from shoprec.data.dataset import Dataset
from shoprec.data.schema import EVENT_TYPES
from shoprec.errors import ConfigError, DataError, check_float, check_int
from shoprec.explore.state import normalise_rows
from shoprec.simulation.store import SimulatedStore, StoreConfig

__all__ = [
    "LogFit",
    "arrival_share",
    "calibrated_config",
    "fit_drift_strength",
    "fit_fatigue",
    "funnel_rates",
    "interest_drift",
    "load_store_config",
    "reference_log",
    "repeat_rate",
    "save_store_config",
]

_VIEW = EVENT_TYPES.index("view")
_ENGAGED = tuple(EVENT_TYPES.index(e) for e in ("cart", "favourite", "purchase"))
_PURCHASE = EVENT_TYPES.index("purchase")


@dataclass(frozen=True)
class LogFit:
    """What was measured on one log (see the module docstring); None where the log cannot say."""

    log: str
    n_users: int
    n_items: int
    n_events: int
    engagement_rate: float | None
    purchase_rate: float | None
    repeat_rate: float
    arrival_share: float
    arrival_late_observed: float
    arrival_late_expected: float
    drift_cosine: float
    drift_cosine_time: float
    drift_cosine_random: float
    drift_users: int


def _pairs(user: np.ndarray, item: np.ndarray, n_items: int) -> np.ndarray:
    return user.astype(np.int64) * max(n_items, 1) + item.astype(np.int64)


def funnel_rates(data: Dataset) -> tuple[float, float] | None:
    """(engagement rate, purchase rate) of a log with views, or None without views.

    engagement: engaged (cart, favourite or purchase) pairs among all (shopper, item) pairs with
    an event; purchase: bought pairs among engaged pairs."""
    if not (data.event == _VIEW).any():
        return None
    pairs = _pairs(data.user_idx, data.item_idx, data.n_items)
    every = np.unique(pairs)
    engaged = np.unique(pairs[np.isin(data.event, _ENGAGED)])
    bought = np.unique(pairs[data.event == _PURCHASE])
    return len(engaged) / len(every), (len(bought) / len(engaged) if len(engaged) else 0.0)


def repeat_rate(user: np.ndarray, item: np.ndarray, order: np.ndarray | None = None) -> float:
    """Share of events, after each shopper's first, on an item that shopper had an event on before.

    user, item: (n,) indices; order: (n,) times (default: the given order)."""
    user, item = np.asarray(user, np.int64), np.asarray(item, np.int64)
    if len(user) == 0:
        raise DataError("repeat_rate needs at least one event.")
    idx = np.lexsort((np.arange(len(user)), order if order is not None else np.arange(len(user)), user))
    u, i = user[idx], item[idx]
    first_of_user = np.r_[True, u[1:] != u[:-1]]
    pair = u * (int(i.max()) + 1) + i
    _, first_pos = np.unique(pair, return_index=True)
    seen_before = np.ones(len(pair), bool)
    seen_before[first_pos] = False
    later = ~first_of_user
    return float(seen_before[later].mean()) if later.any() else 0.0


def arrival_share(item: np.ndarray, time: np.ndarray, warmup: float = 0.1,
                  min_events: int = 5) -> tuple[float, float, float]:
    """(share of items that arrive during the log, observed late share, late share expected
    without arrivals) on the event clock; see the module docstring."""
    check_float("warmup", warmup, 1e-6, 0.999, "arrival_share")
    check_int("min_events", min_events, 1, 1_000_000, "arrival_share")
    item = np.asarray(item, np.int64)
    clock = np.empty(len(item))
    clock[np.argsort(np.asarray(time), kind="stable")] = (np.arange(len(item)) + 0.5) / len(item)
    counts = np.bincount(item)
    first = np.full(len(counts), np.inf)
    np.minimum.at(first, item, clock)
    keep = counts >= min_events
    if not keep.any():
        raise DataError(f"No item has at least {min_events} events.")
    n = counts[keep].astype(np.float64)
    is_late = first[keep] > warmup
    late = float(is_late.mean())
    # An item present from the start puts each event in the warm-up with probability q, the
    # share of such items' events that fall there; q > warmup when arrivals make the later part
    # of the log busier. Fixed point over (share, q): only items present from the start have
    # events in the warm-up, and a late-first item is one of them with the posterior odds below.
    in_warmup = float(np.count_nonzero(clock[keep[item]] <= warmup))
    q, share = warmup, 0.0
    for _ in range(50):
        stay = (1.0 - q) ** n
        expected = float(stay.mean())
        share = float(np.clip((late - expected) / (1.0 - expected), 0.0, 0.9)) if expected < 1 else 0.0
        old_late = (1 - share) * stay / ((1 - share) * stay + share)
        n_old = n[~is_late].sum() + (n[is_late] * old_late[is_late]).sum()
        q = float(np.clip(in_warmup / max(n_old, 1.0), 1e-6, 1 - 1e-6))
    return float(np.clip(share, 0.0, 0.9)), late, expected


def interest_drift(user: np.ndarray, item: np.ndarray, time: np.ndarray, item_vectors: np.ndarray,
                   min_events: int = 10, seed: int = 0) -> tuple[float, float, float, int]:
    """(ratio, cos time-split, cos random-split, shoppers used): the mean cosine of the mean item
    vector of the first and second half of each history over the same for two random halves."""
    user, item = np.asarray(user, np.int64), np.asarray(item, np.int64)
    idx = np.lexsort((np.arange(len(user)), np.asarray(time), user))
    u, i = user[idx], item[idx]
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
    lengths = np.diff(np.r_[starts, len(u)])
    pos = np.arange(len(u)) - np.repeat(starts, lengths)
    length = np.repeat(lengths, lengths)
    use = length >= min_events
    if not use.any():
        raise DataError(f"No shopper has at least {min_events} events.")
    rng = np.random.default_rng(seed)
    group = np.repeat(np.arange(len(starts)), lengths)
    late = pos >= length / 2
    # A random half of the same size: rank the events of each history by a random key.
    key = rng.random(len(u)) + group
    rank = np.empty(len(u), np.int64)
    rank[np.argsort(key, kind="stable")] = np.arange(len(u))
    rand_half = (rank - np.repeat(starts, lengths)) >= length / 2
    x = normalise_rows(np.asarray(item_vectors, np.float64))[i]
    n_groups = len(starts)

    def mean_cos(half: np.ndarray) -> float:
        a = np.zeros((n_groups, x.shape[1]))
        b = np.zeros((n_groups, x.shape[1]))
        np.add.at(a, group[use & ~half], x[use & ~half])
        np.add.at(b, group[use & half], x[use & half])
        ok = lengths >= min_events
        return float(np.einsum("nd,nd->n", normalise_rows(a[ok]), normalise_rows(b[ok])).mean())

    c_time, c_rand = mean_cos(late), mean_cos(rand_half)
    ratio = float(np.clip(c_time / c_rand, -1.0, 1.0)) if c_rand > 0 else 1.0
    return ratio, c_time, c_rand, int((lengths >= min_events).sum())


def reference_log(store: SimulatedStore, rounds: int, seed: int, fatigue: float | None = None,
                  k: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user, item, round) of the clicks of a fixed reference shop in the store: each round every
    shopper sees k items drawn by Plackett-Luce (Gumbel top-k) with weights 1 / (1 + model rank),
    with the store's position bias, fatigue (or `fatigue`) and exposure memory."""
    rng = np.random.default_rng([seed, 7])
    fat = store.config.fatigue if fatigue is None else fatigue
    n, m = store.n_shoppers, store.n_items
    log_w = store.exploit_z  # -log(1 + rank): log of the Plackett-Luce weights
    exam = 1.0 / np.log2(np.arange(k) + 2.0)
    exposure = np.zeros((n, m), np.float32)
    rows = np.repeat(np.arange(n), k)
    users, items, times = [], [], []
    for t in range(rounds):
        available = store.arrival <= t
        gumbel = -np.log(-np.log(rng.random((n, m)) + 1e-12) + 1e-12)
        keys = np.where(available[None, :], log_w + gumbel, -np.inf)
        top = np.argpartition(-keys, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1), axis=1)
        p = 1.0 / (1.0 + np.exp(-store.logits(t)[np.arange(n)[:, None], top]))
        p = p * np.exp(exposure[np.arange(n)[:, None], top] * np.log(max(fat, 1e-12)))
        clicked = rng.random((n, k)) < exam[None, :] * p
        users.append(rows[clicked.ravel()])
        items.append(top[clicked])
        times.append(np.full(int(clicked.sum()), t))
        exposure *= store.config.fatigue_recovery
        np.add.at(exposure, (rows, top.ravel()), np.tile(exam, n).astype(np.float32))
    return np.concatenate(users), np.concatenate(items), np.concatenate(times)


def fit_fatigue(store: SimulatedStore, target: float, rounds: int = 60, seed: int = 0,
                steps: int = 12) -> tuple[float, float]:
    """(fatigue, the reference shop's repeat rate at it): bisection on fatigue in [0.01, 1] so
    that `reference_log`'s repeat rate equals `target` (clipped to the attainable range)."""
    def rate(f: float) -> float:
        u, i, t = reference_log(store, rounds, seed, f)
        return repeat_rate(u, i, t) if len(u) else 0.0

    lo, hi = 0.01, 1.0
    r_lo, r_hi = rate(lo), rate(hi)
    if target <= r_lo:
        return lo, r_lo
    if target >= r_hi:
        return hi, r_hi
    for _ in range(steps):
        mid = (lo + hi) / 2
        r = rate(mid)
        lo, hi = (mid, hi) if r < target else (lo, mid)
    f = (lo + hi) / 2
    return f, rate(f)


def fit_drift_strength(store: SimulatedStore, target_cosine: float) -> float:
    """Drift strength at which the mean cosine, over every shopper drifting towards their target,
    between their true taste at the start and after `drift_rounds` equals target_cosine."""
    unit, goal = normalise_rows(store.true_users), normalise_rows(store.drift_target)

    def cosine(a: float) -> float:
        mixed = normalise_rows((1 - a) * unit + a * goal)
        return float(np.einsum("nd,nd->n", unit, mixed).mean())

    if target_cosine >= 1.0:
        return 0.0
    lo, hi = 0.0, 1.0
    if target_cosine <= cosine(hi):
        return 1.0
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cosine(mid) > target_cosine else (lo, mid)
    return (lo + hi) / 2


def measure_log(data: Dataset, item_vectors: np.ndarray, warmup: float = 0.1, min_item_events: int = 5,
                min_drift_events: int = 10, seed: int = 0) -> LogFit:
    """Every figure of the module docstring on one log; item_vectors (I, d) for drift (the
    store's truth factors, say)."""
    funnel = funnel_rates(data)
    share, late, expected = arrival_share(data.item_idx, data.timestamp, warmup, min_item_events)
    ratio, c_time, c_rand, n_drift = interest_drift(data.user_idx, data.item_idx, data.timestamp, item_vectors,
                                                    min_drift_events, seed)
    return LogFit(data.name, data.n_users, data.n_items, len(data),
                  None if funnel is None else funnel[0], None if funnel is None else funnel[1],
                  repeat_rate(data.user_idx, data.item_idx, data.timestamp), share, late, expected,
                  ratio, c_time, c_rand, n_drift)


def calibrated_config(data: Dataset, base: StoreConfig, rounds: int,
                      funnel: tuple[float, float, str] | None = None,
                      calibration_seed: int = 10_000, min_drift_events: int = 10) -> tuple[StoreConfig, LogFit, dict]:
    """(fitted config, what the log measured, how each knob was set) for a store of `rounds`
    rounds on `data`. funnel: (engagement rate, purchase rate, name) of a funnel log
    (`funnel_rates`), which replaces the log's own (required for a log without views). The fit
    uses a store built with `calibration_seed` (kept apart from tuning and report seeds); min_drift_events: shortest history that the drift
    measurement uses."""
    check_int("rounds", rounds, 1, 1_000_000, "calibrated_config")
    probe = SimulatedStore.build(data, replace(base, drift_fraction=1.0), calibration_seed)
    fit = measure_log(data, probe.true_items, min_drift_events=min_drift_events, seed=calibration_seed)
    if funnel is None:
        if fit.engagement_rate is None:
            raise ConfigError(f"{data.name} has no view events; pass a funnel log's rates as `funnel`.")
        funnel = (fit.engagement_rate, fit.purchase_rate, data.name)
    engagement, purchase, source = funnel
    batches = min(10, rounds)
    config = replace(base, top_ctr=round(float(np.clip(engagement, 1e-3, 0.9)), 4),
                     purchase_rate=round(float(purchase), 4), new_item_fraction=round(fit.arrival_share, 4),
                     new_item_batches=batches, new_item_every=max(1, rounds // (batches + 1)),
                     drift_fraction=1.0, drift_rounds=rounds)
    strength = fit_drift_strength(probe, fit.drift_cosine)
    config = replace(config, drift_strength=round(strength, 4))
    probe = SimulatedStore.build(data, config, calibration_seed)
    fatigue, reached = fit_fatigue(probe, fit.repeat_rate, seed=calibration_seed)
    config = replace(config, fatigue=round(fatigue, 4))
    how = {
        "top_ctr": f"engagement rate (engaged among viewed shopper-item pairs) of {source}",
        "purchase_rate": f"purchase rate of engaged pairs in {source}",
        "new_item_fraction": "arrival share (event clock, warm-up 10%, corrected for sparsity)",
        "drift_strength": f"every shopper drifts; mean start/end cosine = log's ratio {fit.drift_cosine:.3f}",
        "fatigue": f"reference shop's repeat rate {reached:.3f} against the log's {fit.repeat_rate:.3f}",
    }
    return config, fit, how


def save_store_config(path: str | Path, name: str, config: StoreConfig, fit: LogFit | None = None,
                      how: dict | None = None, extra: dict | None = None) -> None:
    """Write a store's config (and what it was fitted to) as JSON."""
    out = {"name": name, "config": asdict(config), "fit": None if fit is None else asdict(fit),
           "how": how or {}, **(extra or {})}
    Path(path).write_text(json.dumps(out, indent=2) + "\n")


def load_store_config(path: str | Path) -> tuple[StoreConfig, dict]:
    """(StoreConfig, the whole file) from `save_store_config`'s JSON; unknown keys are an error."""
    raw = json.loads(Path(path).read_text())
    names = {f.name for f in fields(StoreConfig)}
    unknown = set(raw.get("config", {})) - names
    if unknown:
        raise ConfigError(f"{path}: unknown StoreConfig fields {sorted(unknown)}.")
    return StoreConfig(**raw["config"]), raw
