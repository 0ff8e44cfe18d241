"""Differentially private EASE ("dp-ease"): EASE's closed form on a private release of X^T X.

The item-item Gram of the training shoppers (each shopper's `max_items_per_user` most recent
distinct items) is released once with the Gaussian mechanism at user level (`shoprec.privacy.gram`);
everything after that is post-processing. EASE's weights B = I - P / diag(P), P = (G~ + l2' I)^-1,
are computed from the noisy Gram G~, whose L2 penalty l2' = l2 + noise_l2 x 2 sigma sqrt(n)
also absorbs the noise: a symmetric Gaussian noise matrix has spectral norm about 2 sigma sqrt(n),
so the penalty damps the directions made of noise alone. By default (denoise="psd") the release
is first projected to the nearest positive semidefinite matrix, so any l2' > 0 can be inverted;
without it, noise_l2 must stay well above 1 (near 1, G~ + l2' I is close to singular and its
inverse is dominated by noise), and a factorisation that fails falls back to the projection.
A shopper's scores are their own history times B, computed when they ask (joint DP: only the
item side is released).

With target_epsilon None (or inf), max_items_per_user None and max_modelled None the model is
EASE exactly (same scores): the non-private counterpart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shoprec.data.dataset import Dataset
from shoprec.errors import ConfigError, check_float, check_int
from shoprec.models.ease import ease_weights
from shoprec.privacy.accountant import PrivacyReport
from shoprec.privacy.gram import GramConfig, GramRecommender, denoise_gram, noise_edge, place_scores

__all__ = ["DPEASE", "DPEASEConfig"]


@dataclass(frozen=True)
class DPEASEConfig(GramConfig):
    """DP-EASE's hyperparameters: EASE's below, the release's from `GramConfig`.

    Args:
        l2: EASE's L2 penalty, > 0 (500 suits ML-1M without privacy).
        noise_l2: added penalty in units of the noise's spectral norm 2 sigma sqrt(n), in [0, 100]
            (0 without privacy whatever its value, since sigma = 0).
        max_items: the largest catalogue fitted (B is a dense n x n float32 matrix).
    """

    l2: float = 500.0
    noise_l2: float = 0.5
    max_items: int = 30_000

    def __post_init__(self) -> None:
        super().__post_init__()
        where = type(self).__name__
        if check_float("l2", self.l2, 0.0, 1e9, where) == 0.0:
            raise ConfigError(f"The 'l2' parameter of {where} must be a number > 0. Got 0.0 instead.")
        check_float("noise_l2", self.noise_l2, 0.0, 100.0, where)
        check_int("max_items", self.max_items, 1, 200_000, where)


class DPEASE(GramRecommender):
    """EASE on a user-level differentially private item-item Gram (one Gaussian release).

    Hyperparameters: the fields of `DPEASEConfig` (`shoprec models --params dp-ease`).
    After fit, `privacy_` holds the release's (epsilon, delta), sigma and sensitivity; it is
    saved with the model. `l2_` is the penalty used, `items_modelled_` the items kept.
    """

    name = "dp-ease"
    config_class = DPEASEConfig
    config_: DPEASEConfig

    def _fit(self, train: Dataset, valid=None) -> None:
        cfg = self.config_
        where = type(self).__name__
        if train.n_items > cfg.max_items:
            raise ConfigError(
                f"{where} needs a dense {train.n_items} x {train.n_items} item matrix, above its "
                f"'max_items' limit of {cfg.max_items}; raise max_items or set min_count to model "
                f"fewer items."
            )
        release = cfg.release(train, where)
        keep = cfg.modelled_items(release.counts)
        gram = release.gram if len(keep) == train.n_items else release.gram[np.ix_(keep, keep)]
        edge = noise_edge(len(keep), release.sigma)
        if release.sigma > 0:
            gram = denoise_gram(gram, cfg.denoise, edge)
        l2 = float(cfg.l2) + float(cfg.noise_l2) * edge
        try:
            weights = ease_weights(gram.copy() if release.sigma else gram, l2)
        except ConfigError:
            # A noisy Gram can have eigenvalues below -l2: its nearest PSD matrix always works.
            weights = ease_weights(denoise_gram(gram, "psd"), l2)
        self.weights_ = weights
        self.keep_ = keep.astype(np.int64)
        self.counts_ = release.counts
        self.l2_ = l2
        self.privacy_ = release.report

    # ---- scoring ---------------------------------------------------------------------------
    def _score_rows(self, rows) -> np.ndarray:
        kept = np.asarray(rows[:, self.keep_] @ self.weights_) if len(self.keep_) < rows.shape[1] \
            else np.asarray(rows @ self.weights_)
        return place_scores(kept, self.keep_, self.counts_, rows.shape[1], break_ties=self.privacy_.private)


    # ---- persistence -----------------------------------------------------------------------
    def _get_state(self):
        return {"weights": self.weights_, "keep": self.keep_, "counts": self.counts_,
                "l2": np.array(self.l2_), "privacy": self.privacy_.state()}

    def _set_state(self, state):
        self.weights_ = state["weights"]
        self.keep_ = np.asarray(state["keep"], np.int64)
        self.counts_ = np.asarray(state["counts"], np.float64)
        self.l2_ = float(state["l2"])
        self.privacy_ = PrivacyReport.from_state(state["privacy"])
