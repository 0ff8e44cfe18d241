"""Matrix factorisation through the `implicit` library: ALS and BPR.

Known users score from their learned factors. A raw history (an anonymous session, or a user's
history given to `score_users`) is folded in: ALS solves its exact least-squares user step against
the fixed item factors (implicit's `recalculate_user`); BPR solves a small ridge regression of the
history's indicator vector on the item factors.

implicit is imported only when a model is fitted or loaded, and BLAS is limited to one thread
around it, as implicit asks: its own threads do the parallel work.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from shoprec.data.dataset import Dataset
from shoprec.errors import ConfigError, check_float, check_int
from shoprec.models.base import PerUserState, Recommender, histories_to_csr
from shoprec.models.knn import history_matrix, resolve_event_weights


@contextmanager
def _one_blas_thread():
    """Import implicit's CPU models and keep BLAS to one thread while they are built and fit.

    The import comes first so that the BLAS libraries it loads are already known to the limit.
    """
    import implicit.cpu.als
    import implicit.cpu.bpr  # noqa: F401
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _check_positive(name: str, value: object, high: float, where: str) -> float:
    value = check_float(name, value, 0.0, high, where)
    if value == 0.0:
        raise ConfigError(
            f"The {name!r} parameter of {where} must be a number > 0. Got 0.0 instead."
        )
    return value


# Fold-in ridge for BPR, relative to the mean eigenvalue of Z^T Z. Chosen on the synthetic
# 4-cluster shop, where 0.3-3 all match the HR@10 of the learned user factors.
_FOLD_IN_RIDGE = 1.0


class _Factorisation(Recommender):
    """Shared by ALS and BPR: factor arrays, known-user scoring, persistence."""

    per_user_state = PerUserState(rows=("user_factors",))
    user_factors_: np.ndarray
    item_factors_: np.ndarray

    def _score_known_users(self, users: np.ndarray) -> np.ndarray:
        return self.user_factors_[users] @ self.item_factors_.T

    def _get_state(self):
        return {"user_factors": self.user_factors_, "item_factors": self.item_factors_}

    def _set_state(self, state):
        self.user_factors_ = state["user_factors"]
        self.item_factors_ = state["item_factors"]
        self._after_state()

    def _after_state(self) -> None:
        """Rebuild whatever fold-in needs from the factors."""


class ALS(_Factorisation):
    """Implicit-feedback ALS (Hu, Koren & Volinsky 2008) with conjugate-gradient steps.

    Interactions are positives with confidence alpha x value (value 1, or the summed event weights
    with weighting="events"); every other item is a negative with confidence 1.

    factors: latent dimensions, in [1, 10000].
    regularization: L2 penalty on the factors, >= 0.
    alpha: confidence scale of the positives, > 0.
    iterations: ALS sweeps, in [1, 10000].
    seed: seeds the initial factors; the same seed gives the same model with any num_threads.
    num_threads: implicit's threads (0: all cores).
    weighting, event_weights: as in ItemKNN.
    """

    name = "als"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.01,
        alpha: float = 1.0,
        iterations: int = 15,
        seed: int = 0,
        num_threads: int = 1,
        weighting: str = "binary",
        event_weights: dict[str, float] | str | None = None,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.seed = seed
        self.num_threads = num_threads
        self.weighting = weighting
        self.event_weights = event_weights

    def _check_params(self) -> None:
        where = "ALS"
        check_int("factors", self.factors, 1, 10_000, where)
        check_float("regularization", self.regularization, 0.0, 1e6, where)
        _check_positive("alpha", self.alpha, 1e6, where)
        check_int("iterations", self.iterations, 1, 10_000, where)
        check_int("seed", self.seed, 0, 2**32 - 1, where)
        check_int("num_threads", self.num_threads, 0, 1024, where)
        weights = resolve_event_weights(self.weighting, self.event_weights, where)
        self._weights = None if weights is None else weights.as_array()
        self._event_weights = weights

    def _implicit_model(self):
        from implicit.cpu.als import AlternatingLeastSquares

        return AlternatingLeastSquares(
            factors=int(self.factors),
            regularization=float(self.regularization),
            alpha=float(self.alpha),
            iterations=int(self.iterations),
            random_state=int(self.seed),
            num_threads=int(self.num_threads),
            dtype=np.float32,
        )

    def _fit(self, train: Dataset, valid=None) -> None:
        confidence = (
            self.seen_ if self._event_weights is None else train.matrix(self._event_weights)
        )
        with _one_blas_thread():
            model = self._implicit_model()
            model.fit(confidence.astype(np.float32), show_progress=False)
        self.user_factors_ = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        self._model = model

    def _after_state(self) -> None:
        with _one_blas_thread():
            self._model = self._implicit_model()
        self._model.user_factors = self.user_factors_
        self._model.item_factors = self.item_factors_

    def _score_histories(self, histories, events=None) -> np.ndarray:
        rows = history_matrix(histories, events, len(self.items_), self._weights)
        if rows.shape[0] == 0:
            return np.zeros((0, len(self.items_)), np.float32)
        users = self._model.recalculate_user(np.arange(rows.shape[0]), rows)
        return users @ self.item_factors_.T


class BPR(_Factorisation):
    """Bayesian personalised ranking (Rendle et al. 2009) by SGD on sampled (user, pos, neg).

    Interactions are binary positives. implicit appends an item-bias column to the item factors
    (and a constant 1 to the user factors), so a known user's score is user . item + bias.
    A history's indicator vector h folds in by ridge regression on the item factors Z, bias column
    included (the user's weight on the bias is fitted too, since a folded-in vector is not on the
    scale of the learned ones): x = argmin |Z x - h|^2 + r |x|^2, scores Z x, with r the mean
    eigenvalue of Z^T Z.

    factors: latent dimensions (the bias column comes on top), in [1, 10000].
    learning_rate: SGD step size, > 0.
    regularization: L2 penalty on the factors, >= 0.
    iterations: epochs, in [1, 100000].
    seed: seeds the initial factors and the negative sampling.
    num_threads: implicit's threads; SGD runs Hogwild across threads, so only num_threads=1 (the
        default) is reproducible for a seed.
    """

    name = "bpr"

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 0.01,
        regularization: float = 0.01,
        iterations: int = 100,
        seed: int = 0,
        num_threads: int = 1,
    ) -> None:
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.seed = seed
        self.num_threads = num_threads

    def _check_params(self) -> None:
        where = "BPR"
        check_int("factors", self.factors, 1, 10_000, where)
        _check_positive("learning_rate", self.learning_rate, 100.0, where)
        check_float("regularization", self.regularization, 0.0, 1e6, where)
        check_int("iterations", self.iterations, 1, 100_000, where)
        check_int("seed", self.seed, 0, 2**32 - 1, where)
        check_int("num_threads", self.num_threads, 0, 1024, where)

    def _fit(self, train: Dataset, valid=None) -> None:
        with _one_blas_thread():
            from implicit.cpu.bpr import BayesianPersonalizedRanking

            model = BayesianPersonalizedRanking(
                factors=int(self.factors),
                learning_rate=float(self.learning_rate),
                regularization=float(self.regularization),
                iterations=int(self.iterations),
                random_state=int(self.seed),
                num_threads=int(self.num_threads),
                dtype=np.float32,
            )
            model.fit(self.seen_, show_progress=False)
        self.user_factors_ = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        self._after_state()

    def _after_state(self) -> None:
        # Project onto the span of the item factors, bias column included: with Z the item
        # factors, x = (Z^T Z + r I)^-1 Z^T h and scores Z x. The ridge r is relative (the mean
        # eigenvalue of Z^T Z), so it suits any factor scale.
        z = self.item_factors_.astype(np.float64)
        gram = z.T @ z
        ridge = _FOLD_IN_RIDGE * np.trace(gram) / len(gram) + 1e-12
        self._fold_in = np.linalg.solve(gram + ridge * np.eye(len(gram)), z.T).T  # items x dims

    def _score_histories(self, histories, events=None) -> np.ndarray:
        rows = histories_to_csr(histories, len(self.items_))
        x = np.asarray(rows @ self._fold_in, dtype=np.float32)  # sum of the history's rows
        return x @ self.item_factors_.T
