"""User-level differentially private implicit ALS ("dp-als"): private item factors, and every
shopper's factor computed from their own history alone (joint DP; Chien et al., ICML 2021).

The model is implicit ALS with a uniform weight alpha on every shopper-item pair,

    min  sum_{(u,i) seen} (1 - u.v_i)^2 + alpha sum_{u,i} (u.v_i)^2 + l2 (|U|^2 + |V|^2),

over the items modelled (the `max_modelled` with the largest noisy counts). Alternating:

- shopper step (never released): u = (V_S^T V_S + alpha V^T V + l2 I)^-1 V_S^T 1 from the
  shopper's own items S and the released V; clipped to norm <= 1 in private runs;
- item step (released): v_i = (A_i + alpha G + l2 I)^-1 b_i from b_i = sum_{u sees i} u, the
  shoppers' Gramian G = sum_u u u^T and, with `item_gramian="released"`, A_i = sum_{u sees i}
  u u^T; with "average" (the default), A_i is taken as (n_i / n) G from the released counts
  n_i instead (its d x d entries per item are then not released: each would need as much noise
  as b_i, and for most items the noise would swamp them).

Privacy. Every shopper keeps their `max_items_per_user` m most recent distinct items and has a
factor of norm <= 1, so adding or removing one shopper changes the item step's release (all
b_i, the upper triangle of G and, when released, of every A_i) by at most
Delta = sqrt(m + 1) in L2 (sqrt(2 m + 1) with the A_i). The other shoppers' factors do not
change, since each is computed from their own items and the previous release only. Each of the
`iterations` item steps adds N(0, (sigma Delta)^2) to every released entry: the Gaussian
mechanism, 1 / (2 sigma^2)-zCDP. The item counts that choose the modelled items are released
first with sensitivity sqrt(m) and a `count_share` of the budget. The zCDP costs add up
(adaptive composition) and the total is converted to (epsilon, delta) with the tight conversion
of Canonne, Kamath & Steinke (2020, Corollary 13), the same as the discrete Gram release's.

At epsilon = inf (target_epsilon None) nothing is clipped or noised and max_items_per_user /
max_modelled None keep every item: plain implicit ALS with these settings, the counterpart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from shoprec.data.dataset import Dataset
from shoprec.errors import (
    ConfigError,
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_optional_str,
)
from shoprec.privacy.accountant import PrivacyReport, check_budget, is_private
from shoprec.privacy.discrete import cdp_delta
from shoprec.privacy.gram import (
    GramRecommender,
    check_release_settings,
    place_scores,
    recent_items_matrix,
)

__all__ = ["DPALS", "DPALSConfig", "als_sensitivity", "item_statistics", "shopper_factors", "zcdp_rho_for"]

MECHANISM = "gaussian-als"
ITEM_GRAMIANS = ("average", "released")
INITS = ("random", "text")
_USER_BLOCK = 4096  # shoppers solved at once: a block holds (block, d, d) float64


def zcdp_rho_for(epsilon: float, delta: float) -> float:
    """The largest rho whose rho-zCDP implies (epsilon, delta)-DP under CKS Corollary 13."""
    lo, hi = 0.0, max(epsilon, 1.0)
    while cdp_delta(hi, epsilon) <= delta:  # delta grows with rho: find a bracket first
        lo, hi = hi, 2 * hi
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdp_delta(mid, epsilon) <= delta else (lo, mid)
    return lo


def als_sensitivity(max_items: int, released_item_gramians: bool) -> float:
    """L2 change of one item step's release when one shopper (m items, factor norm <= 1) is
    added or removed: sum b_i moves by u on m items, G by u u^T, each A_i (if released) by u u^T."""
    m = float(max_items)
    return math.sqrt((2.0 * m if released_item_gramians else m) + 1.0)


@dataclass(frozen=True)
class DPALSConfig:
    """DP-ALS's hyperparameters. The defaults are the private settings chosen on ML-1M's
    validation items at epsilon 8 and 2 (benchmarks/results/privacy-als-validation.log).

    Args:
        factors: d, the factor dimension, in [2, 256].
        iterations: alternating rounds, in [1, 50]; each releases the item factors once.
        alpha: weight of every shopper-item pair's (u.v)^2 (the implicit zeros), in [0, 100].
        l2: ridge penalty of both steps, > 0.
        item_gramian: "average" (A_i = n_i / n x G, only counts, b_i and G released) or
            "released" (each item's A_i released with noise too).
        target_epsilon: the budget of the whole fit; None or inf: no privacy (plain iALS).
        target_delta: None -> 1 / n ** 1.1 for n training shoppers; else in (0, 1/n).
        max_items_per_user: m, each shopper's most recent distinct items used, in [1, 100000];
            None keeps every item (only without privacy).
        max_modelled: at most this many items get factors, those with the largest noisy counts
            (None: every item), in [1, 200000]; the others score below them by noisy count.
        count_share: share of the budget spent on the item counts, in (0, 1).
        init: the item factors the first shopper step reads: "random" or "text" (the top
            principal directions of the items' MiniLM title vectors: public, so free of budget;
            items without text, or data without a catalogue, get random rows).
        text_cache_dir: where title vectors are cached (None: no cache).
        norm_power: scores are u.v_i / |v_i|^norm_power, in [0, 1]: 0 the dot product, 1 the
            cosine (item factors' lengths grow with popularity; dividing them out spreads the
            top 10 over more of the catalogue).
        unit_shoppers: the item step sums unit-length shopper factors (their direction only).
            The noise is calibrated to norm 1, and unclipped factors on ML-1M have norms near
            0.25: scaled to 1 they carry four times the signal for the same noise. Scoring is
            unchanged (a shopper's ranking does not depend on their factor's length).
        seed: seeds the initial factors and the noise.
    """

    factors: int = 16
    iterations: int = 3
    alpha: float = 0.2
    l2: float = 10.0
    item_gramian: str = "average"
    target_epsilon: float | None = None
    target_delta: float | None = None
    max_items_per_user: int | None = 10
    max_modelled: int | None = 2000
    count_share: float = 0.1
    init: str = "random"
    text_cache_dir: str | None = None
    norm_power: float = 0.0
    unit_shoppers: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        where = type(self).__name__
        check_int("factors", self.factors, 2, 256, where)
        check_int("iterations", self.iterations, 1, 50, where)
        check_float("alpha", self.alpha, 0.0, 100.0, where)
        if check_float("l2", self.l2, 0.0, 1e9, where) == 0.0:
            raise ConfigError(f"The 'l2' parameter of {where} must be a number > 0. Got 0.0 instead.")
        check_choice("item_gramian", self.item_gramian, ITEM_GRAMIANS, where)
        check_release_settings(self, where)
        share = check_float("count_share", self.count_share, 0.0, 1.0, where)
        if not 0.0 < share < 1.0:
            raise ConfigError(f"The 'count_share' parameter of {where} must be in (0, 1). Got {share} instead.")
        check_choice("init", self.init, INITS, where)
        check_optional_str("text_cache_dir", self.text_cache_dir, where)
        check_float("norm_power", self.norm_power, 0.0, 1.0, where)
        check_bool("unit_shoppers", self.unit_shoppers, where)
        check_int("seed", self.seed, 0, 2**31 - 1, where)

    @property
    def private(self) -> bool:
        return is_private(self.target_epsilon)


def _gramian_rows(vectors: np.ndarray) -> np.ndarray:
    """(n, d * d): every row's outer product v v^T, flattened (what a sparse product sums)."""
    return np.einsum("nd,ne->nde", vectors, vectors).reshape(len(vectors), -1)


def _symmetric_noise(shape: tuple[int, ...], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """(..., d, d) symmetric noise whose upper triangles (diagonals included) are iid N(0, sigma^2)."""
    z = rng.standard_normal(shape) * sigma
    upper = np.triu(z)
    return upper + np.swapaxes(np.triu(z, 1), -1, -2)


def _psd(matrices: np.ndarray) -> np.ndarray:
    """The nearest positive semidefinite matrices (eigenvalues clipped at 0), batched."""
    w, q = np.linalg.eigh(matrices)
    return (q * np.maximum(w, 0.0)[..., None, :]) @ np.swapaxes(q, -1, -2)


def shopper_factors(rows: sp.csr_matrix, item_factors: np.ndarray, alpha: float, l2: float,
                    clip: bool, unit: bool = False) -> np.ndarray:
    """Each row's factor from its own items only: (V_S^T V_S + alpha V^T V + l2 I)^-1 V_S^T 1,
    clipped to norm <= 1 (clip) or scaled to norm 1 (unit; a row without items stays 0)."""
    v = np.asarray(item_factors, np.float64)
    d = v.shape[1]
    base = alpha * (v.T @ v) + l2 * np.eye(d)
    per_item = _gramian_rows(v)
    out = np.zeros((rows.shape[0], d))
    for s in range(0, rows.shape[0], _USER_BLOCK):
        block = rows[s : s + _USER_BLOCK]
        a = np.asarray(block @ per_item).reshape(-1, d, d) + base
        b = np.asarray(block @ v)
        out[s : s + len(b)] = np.linalg.solve(a, b[..., None])[..., 0]
    if clip or unit:
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out /= np.where(norms > 0, norms, 1.0) if unit else np.maximum(norms, 1.0)
    return out


def _text_init(train: Dataset, keep: np.ndarray, random_rows: np.ndarray, cache_dir: str | None) -> np.ndarray:
    """Initial item factors from the title vectors' top principal directions (rows of unit
    mean length, like the random ones); items without a title keep their random row."""
    from shoprec.models.transformer import item_text

    text = item_text(train, cache_dir)
    if text is None:
        return random_rows
    x = np.asarray(text, np.float64)[keep]
    has = np.abs(x).sum(axis=1) > 0
    d = random_rows.shape[1]
    if has.sum() <= d:
        return random_rows
    centred = x[has] - x[has].mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    projected = centred @ vt[:d].T
    out = random_rows.copy()
    out[has] = projected / np.linalg.norm(projected, axis=1).mean()
    return out


def item_statistics(items_by_shopper: sp.csr_matrix, shopper: np.ndarray, released: bool):
    """What one item step releases, before noise: b (items, d) = sum of the factors of each
    item's shoppers, G (d, d) = the shoppers' Gramian and, when `released`, A (items, d, d) =
    each item's shoppers' Gramian (else None). items_by_shopper: items x shoppers, binary."""
    d = shopper.shape[1]
    b = np.asarray(items_by_shopper @ shopper)
    a = np.asarray(items_by_shopper @ _gramian_rows(shopper)).reshape(-1, d, d) if released else None
    return b, shopper.T @ shopper, a


class DPALS(GramRecommender):
    """Implicit ALS with user-level DP item factors (joint DP; see the module docstring).

    Hyperparameters: the fields of `DPALSConfig` (`shoprec models --params dp-als`).
    After fit, `item_factors_` (modelled items x d) are the released factors, `keep_` the
    modelled items and `privacy_` the accountant's record (saved with the model).
    """

    name = "dp-als"
    config_class = DPALSConfig
    config_: DPALSConfig

    def _fit(self, train: Dataset, valid=None) -> None:
        cfg = self.config_
        where = type(self).__name__
        x = recent_items_matrix(train, cfg.max_items_per_user)
        n_users = max(int((np.diff(x.indptr) > 0).sum()), 1)
        eps, dlt = check_budget(cfg.target_epsilon, cfg.target_delta, n_users, where)
        private = math.isfinite(eps)
        rng = np.random.default_rng(cfg.seed)
        released = cfg.item_gramian == "released"
        counts = np.asarray(x.sum(axis=0)).ravel().astype(np.float64)
        sigma_counts = sigma_step = sens = 0.0
        if private:
            m = int(cfg.max_items_per_user)
            rho = zcdp_rho_for(eps, dlt)
            # rho = Delta^2 / (2 (sigma Delta)^2) per Gaussian release: sigma in units of Delta.
            sigma_counts = math.sqrt(m) / math.sqrt(2 * cfg.count_share * rho)
            sigma_step = 1.0 / math.sqrt(2 * (1 - cfg.count_share) * rho / cfg.iterations)
            sens = als_sensitivity(m, released)
            counts = counts + rng.standard_normal(len(counts)) * sigma_counts
        keep = np.arange(train.n_items)
        if cfg.max_modelled is not None and len(keep) > cfg.max_modelled:
            keep = np.sort(np.lexsort((keep, -counts))[: int(cfg.max_modelled)])
        xk = sp.csr_matrix(x[:, keep], dtype=np.float64)
        xt = xk.T.tocsr()
        d = int(cfg.factors)
        v = rng.standard_normal((len(keep), d)) / math.sqrt(d)  # public: costs nothing
        if cfg.init == "text":
            v = _text_init(train, keep, v, cfg.text_cache_dir)
        noise = sigma_step * sens
        n_k = np.maximum(counts[keep], 0.0)
        for _ in range(int(cfg.iterations)):
            u = shopper_factors(xk, v, cfg.alpha, cfg.l2, clip=private, unit=cfg.unit_shoppers)
            b, g, a = item_statistics(xt, u, released)
            if private:
                g = _psd(g + _symmetric_noise((d, d), noise, rng))
                b = b + rng.standard_normal(b.shape) * noise
                if released:
                    a = _psd(a + _symmetric_noise(a.shape, noise, rng))
            if a is None:
                a = (n_k / n_users)[:, None, None] * g
            v = np.linalg.solve(a + cfg.alpha * g + cfg.l2 * np.eye(d), b[..., None])[..., 0]
        self.item_factors_ = v.astype(np.float32)
        self.keep_ = keep.astype(np.int64)
        self.counts_ = counts
        self.privacy_ = self._report(eps, dlt, n_users, sigma_step, sigma_counts, sens) if private else \
            PrivacyReport("none", math.inf, 0.0, unit="user", n_users=n_users,
                          max_items_per_user=cfg.max_items_per_user)

    def _report(self, eps, dlt, n_users, sigma_step, sigma_counts, sens) -> PrivacyReport:
        cfg = self.config_
        rho = cfg.iterations / (2 * sigma_step**2) + 1.0 / (2 * (sigma_counts / math.sqrt(cfg.max_items_per_user)) ** 2)
        return PrivacyReport(
            MECHANISM, eps, dlt, unit="user", target_epsilon=eps, noise_multiplier=sigma_step,
            steps=int(cfg.iterations), n_users=n_users, max_items_per_user=cfg.max_items_per_user,
            accountant="zcdp-gaussian",
            extra={
                "released": f"item factors after each of {cfg.iterations} item steps (sums of shopper "
                            f"factors per item, the shoppers' Gramian{', per-item Gramians' if cfg.item_gramian == 'released' else ''}) "
                            f"and noisy item counts, from each shopper's {cfg.max_items_per_user} most recent items",
                "l2_sensitivity": sens, "sigma": sigma_step * sens, "count_sigma": sigma_counts,
                "rho": rho, "delta_at_rho": cdp_delta(rho, eps), "item_gramian": cfg.item_gramian,
            },
        )

    # ---- scoring ---------------------------------------------------------------------------
    def _score_rows(self, rows) -> np.ndarray:
        cfg = self.config_
        kept_rows = sp.csr_matrix(rows[:, self.keep_] if len(self.keep_) < rows.shape[1] else rows, dtype=np.float64)
        u = shopper_factors(kept_rows, self.item_factors_, cfg.alpha, cfg.l2, clip=self.privacy_.private)
        v = self.item_factors_.astype(np.float64)
        if cfg.norm_power > 0:  # post-processing of the release: costs no budget
            v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12) ** cfg.norm_power
        kept = (u @ v.T).astype(np.float32)
        return place_scores(kept, self.keep_, self.counts_, rows.shape[1], break_ties=self.privacy_.private)

    def item_embeddings(self) -> np.ndarray:
        """Item vectors for similar items and the exploration space: the released factors for
        modelled items, zeros for the rest."""
        self._check_fitted()
        out = np.zeros((len(self.items_), self.item_factors_.shape[1]), np.float32)
        out[self.keep_] = self.item_factors_
        return out

    # ---- persistence -----------------------------------------------------------------------
    def _get_state(self):
        return {"item_factors": self.item_factors_, "keep": self.keep_, "counts": self.counts_,
                "privacy": self.privacy_.state()}

    def _set_state(self, state):
        self.item_factors_ = np.asarray(state["item_factors"], np.float32)
        self.keep_ = np.asarray(state["keep"], np.int64)
        self.counts_ = np.asarray(state["counts"], np.float64)
        self.privacy_ = PrivacyReport.from_state(state["privacy"])
