"""The one interface every shoprec model implements.

A model is built from hyperparameters only (the constructor stores them and does nothing else),
learns its state in `fit`, and scores items for histories of item indices. Everything else
(recommend for a user id, recommend for a raw history, score given items, save, load) is
provided here once, so that a new model writes three methods: `_fit`, `_score_histories`, and
`_get_state`/`_set_state` for persistence, plus `_check_params` when it has parameters.

The contract, in the order a model meets it:

- hyperparameters: either keyword arguments of `__init__` stored as attributes (small models),
  or the fields of a frozen dataclass named by `config_class` (the torch models); `get_params`
  and `param_defaults` list them either way, and `param_docs` gives one line each.
- `_check_params()`: the one validation hook. `fit` and `load` call it first; it raises
  ConfigError naming the parameter, its allowed values and what came.
- `per_user_state`: which saved arrays hold per-shopper data, so that erasure can remove a
  shopper from a saved model. Every model declares it (`PerUserState()` for none).
- `score_histories` and `is_fitted`: the public hooks other layers (the service, evaluation,
  privacy attacks) use.

Saved models are a single `.npz` file of plain arrays plus a JSON header (format version, model
name, parameters); it is read with `allow_pickle=False`, so loading an untrusted file cannot
run code.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from shoprec.data.dataset import Dataset
from shoprec.data.vocab import Vocabulary
from shoprec.errors import (
    ConfigError,
    EmptyDataError,
    ModelFormatError,
    NotFittedError,
    UnknownIdError,
    check_int,
    check_param_names,
)

FORMAT_VERSION = 1
MAX_K = 10_000

_DOC_LINE = re.compile(r"^\s*([a-z_][a-z0-9_]*(?:\s*,\s*[a-z_][a-z0-9_]*)*)\s*:\s*(\S.*)$")


def _doc_entries(doc: str) -> list[tuple[list[str], str]]:
    """(names, text) of each `name: text` (or `a, b: text`) line of a docstring, with the more
    indented lines that follow it joined to its text."""
    entries: list[tuple[list[str], str]] = []
    indent = None
    for line in doc.splitlines():
        match = _DOC_LINE.match(line)
        depth = len(line) - len(line.lstrip())
        if match and (indent is None or depth <= indent):
            entries.append((re.split(r"\s*,\s*", match.group(1)), match.group(2).strip()))
            indent = depth
        elif entries and indent is not None and depth > indent and line.strip():
            names, text = entries[-1]
            entries[-1] = (names, f"{text} {line.strip()}")
        else:
            indent = None
    return entries


@dataclass(frozen=True)
class PerUserState:
    """Which arrays of a model's saved state hold per-shopper data (what erasure removes).

    rows: arrays indexed by user on axis 0. csr: prefixes of user x item csr matrices saved as
    <prefix>_data, <prefix>_indices and <prefix>_indptr. The user vocabulary and the seen-items
    matrix every model keeps are handled for all models and are not listed here.
    """

    rows: tuple[str, ...] = ()
    csr: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.rows or self.csr)


class Recommender(ABC):
    """Fit on a Dataset; score and recommend items for known users or raw histories.

    Subclasses set `name` and `per_user_state`, declare their hyperparameters (constructor
    arguments, or `config_class`), and implement `_fit`, `_score_histories`, `_check_params` and
    (if they have learned arrays) `_get_state` / `_set_state`. Models whose state is per-user
    (for example matrix factorisation) may also override `_score_known_users` to use it.
    """

    name: ClassVar[str] = "base"
    #: True when the model reads order and event types of histories (sequence models).
    sequential: ClassVar[bool] = False
    #: A frozen dataclass whose fields are the model's hyperparameters (None: the constructor's
    #: keyword arguments are). `fit` builds it from the parameters, validated, as `config_`.
    config_class: ClassVar[type | None] = None
    #: The saved arrays that hold per-shopper data; every concrete model declares it.
    per_user_state: ClassVar[PerUserState]

    # ---- fitted state shared by every model ------------------------------------------------
    users_: Vocabulary
    items_: Vocabulary
    seen_: sp.csr_matrix  # user x item, 1 where the user interacted in training

    def __init__(self, **params: Any) -> None:
        """Store the hyperparameters: the fields of `config_class` (defaults for those not given).

        Models without a `config_class` define their own `__init__`. Validation waits for
        `fit` (`_check_params`); an unknown name is refused at once, as Python would.
        """
        defaults = self.param_defaults()
        check_param_names(type(self).__name__, params, defaults)
        for key, default in defaults.items():
            value = params.get(key, default)
            # Tuples are kept as lists, as a saved model's JSON header gives them back.
            setattr(self, key, list(value) if isinstance(value, tuple) else value)

    # ---- what subclasses implement ---------------------------------------------------------
    @abstractmethod
    def _fit(self, train: Dataset, valid: sp.csr_matrix | None = None) -> None:
        """Learn the model's state from `train` (vocabularies are already set, parameters checked).

        valid: optional held-out targets (user x item indicators, same vocabularies) that models
        with early stopping score against, predicting from the `train` histories.
        """

    @abstractmethod
    def _score_histories(
        self, histories: list[np.ndarray], events: list[np.ndarray] | None = None
    ) -> np.ndarray:
        """Scores of shape (len(histories), n_items) for histories of item indices in time order.

        `events` holds the matching event codes when known. Higher is better; the caller masks
        already-seen items, so a model need not.
        """

    def _check_params(self) -> None:
        """The one validation hook, called by `fit` and `load` before anything else.

        Raises ConfigError naming a bad parameter. With a `config_class`, builds the frozen,
        validated `config_` from the parameters (the dataclass validates itself); models with
        constructor parameters override this.
        """
        if self.config_class is not None:
            self.config_ = self.config_class(**self.get_params())

    def _get_state(self) -> dict[str, np.ndarray]:
        """Learned arrays to save (plain numeric or str arrays, no objects)."""
        return {}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what `_get_state` returned."""

    def _score_known_users(self, users: np.ndarray) -> np.ndarray:
        """Scores for known users from fitted state; defaults to their training histories."""
        histories = [self._train_histories[u] for u in users]
        events = [self._train_events[u] for u in users]
        return self._score_histories(histories, events)

    # ---- parameters ------------------------------------------------------------------------
    @classmethod
    def param_defaults(cls) -> dict[str, Any]:
        """Every hyperparameter with its default, in declaration order."""
        if cls.config_class is not None:
            return {
                f.name: f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
                for f in dataclasses.fields(cls.config_class)
                if f.init
            }
        if cls.__init__ is Recommender.__init__:
            return {}
        sig = inspect.signature(cls.__init__)
        return {
            p.name: None if p.default is p.empty else p.default
            for p in sig.parameters.values()
            if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        }

    @classmethod
    def param_docs(cls) -> dict[str, str]:
        """One line per hyperparameter, from the `name: text` entries of the docstrings that
        document them (the config class's and its bases', else the model's and its bases');
        an entry's indented continuation lines are joined to it."""
        sources = list(cls.config_class.__mro__) if cls.config_class is not None else []
        sources += [k for k in cls.__mro__ if issubclass(k, Recommender)]
        names = cls.param_defaults()
        docs: dict[str, str] = {}
        for source in sources:
            for keys, text in _doc_entries(source.__doc__ or ""):
                for key in keys:
                    if key in names and key not in docs:
                        docs[key] = text
        return {key: docs.get(key, "") for key in names}

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters as given to the constructor (scikit-learn style)."""
        return {p: getattr(self, p) for p in self.param_defaults() if hasattr(self, p)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def item_embeddings(self) -> np.ndarray | None:
        """(n_items, d) vectors of the items in the model's own space, when it learns one (the
        Transformer's item embeddings, factor models' item factors); None otherwise. The service
        derives similar items and exploration features from them."""
        factors = getattr(self, "item_factors_", None)
        if isinstance(factors, np.ndarray) and factors.ndim == 2 and factors.shape[0] == len(self.items_):
            return factors
        return None

    @property
    def is_fitted(self) -> bool:
        """Whether the model was fitted (or loaded) and can score."""
        return getattr(self, "_fitted", False)

    # ---- fitting ---------------------------------------------------------------------------
    def fit(self, train: Dataset, valid: sp.csr_matrix | None = None) -> Recommender:
        """Learn from a training dataset and return self.

        valid: optional validation targets (for example `Split.valid`) for early stopping; models
        without early stopping ignore it.
        """
        if not isinstance(train, Dataset):
            raise ConfigError(f"fit expects a shoprec Dataset. Got {type(train).__name__} instead.")
        if len(train) == 0:
            raise EmptyDataError(f"Cannot fit {self.name} on an empty dataset ({train.name}).")
        self._check_params()
        self._adopt(train)
        if valid is not None and valid.shape != (train.n_users, train.n_items):
            raise ConfigError(
                f"valid must be a {train.n_users} x {train.n_items} matrix. Got {valid.shape} instead."
            )
        self._fit(train, valid)
        self._fitted = True
        return self

    def _adopt(self, data: Dataset) -> None:
        """Take the vocabularies, seen items and ordered histories of the training data."""
        self.users_ = data.users
        self.items_ = data.items
        self.seen_ = data.matrix(binary=True)
        self._train_histories = data.sequences()
        self._train_events = np.split(data.event, data.indptr[1:-1])

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet; call fit(train) or load(path) first."
            )

    @property
    def n_items(self) -> int:
        self._check_fitted()
        return len(self.items_)

    # ---- scoring ---------------------------------------------------------------------------
    def score_users(self, users: np.ndarray, history: Dataset | None = None) -> np.ndarray:
        """Scores (len(users), n_items) for known users given by dense index.

        history: an up-to-date log with the same vocabularies (for example train + validation);
        when given, every model conditions on it instead of the training log.
        """
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64)
        if users.size and (users.min() < 0 or users.max() >= len(self.users_)):
            raise UnknownIdError(f"User indices must be in [0, {len(self.users_)}).")
        if history is None:
            return self._score_known_users(users)
        if history.items != self.items_:
            raise ConfigError("The history dataset must use the model's item vocabulary.")
        ptr = history.indptr
        histories = [history.item_idx[ptr[u] : ptr[u + 1]] for u in users]
        events = [history.event[ptr[u] : ptr[u + 1]] for u in users]
        return self._score_histories(histories, events)

    def score_histories(
        self, histories: list[np.ndarray], events: list[np.ndarray] | None = None
    ) -> np.ndarray:
        """Scores (len(histories), n_items) for histories of item indices, oldest first.

        The batch hook other layers use (the service, privacy attacks): no id lookups, no
        masking. `events` holds the matching event codes when known.
        """
        self._check_fitted()
        return self._score_histories(histories, events)

    def score_history(self, items: list[str] | np.ndarray, events: list[str] | None = None) -> np.ndarray:
        """Scores over all items for one raw history of external item ids (unknown ids ignored)."""
        self._check_fitted()
        idx = self.items_.index(np.asarray(items, dtype=str), missing="-1")
        keep = idx >= 0
        codes = None
        if events is not None:
            from shoprec.data.schema import event_codes

            if len(events) != len(idx):
                raise ConfigError("events must have one entry per history item.")
            codes = [event_codes(np.asarray(events))[keep]]
        return self._score_histories([idx[keep]], codes)[0]

    # ---- recommending ----------------------------------------------------------------------
    def recommend(
        self, user: str, k: int = 10, exclude_seen: bool = True
    ) -> list[tuple[str, float]]:
        """Top-k (item id, score) for a known user id, best first."""
        self._check_fitted()
        k = check_int("k", k, 1, MAX_K, "recommend")
        u = self.users_.index([user])[0]
        scores = self._score_known_users(np.array([u]))[0]
        seen = self.seen_.indices[self.seen_.indptr[u] : self.seen_.indptr[u + 1]] if exclude_seen else None
        return self._top(scores, k, seen)

    def recommend_history(
        self,
        items: list[str],
        k: int = 10,
        events: list[str] | None = None,
        exclude_seen: bool = True,
    ) -> list[tuple[str, float]]:
        """Top-k (item id, score) for a raw history of item ids (an anonymous session, say)."""
        self._check_fitted()
        k = check_int("k", k, 1, MAX_K, "recommend_history")
        scores = self.score_history(items, events)
        seen = self.items_.index(np.asarray(items, dtype=str), missing="drop") if exclude_seen else None
        return self._top(scores, k, seen)

    def score_items(self, user: str, items: list[str]) -> np.ndarray:
        """Scores of the given item ids for a known user."""
        self._check_fitted()
        u = self.users_.index([user])[0]
        return self._score_known_users(np.array([u]))[0][self.items_.index(items)]

    def _top(self, scores: np.ndarray, k: int, seen: np.ndarray | None) -> list[tuple[str, float]]:
        scores = np.asarray(scores, dtype=np.float64).copy()
        if seen is not None and len(seen):
            scores[seen] = -np.inf
        k = min(k, int(np.isfinite(scores).sum()))
        if k == 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((top, -scores[top]))]  # score desc, index asc on ties
        ids = self.items_.id_of(top)
        return [(str(i), float(s)) for i, s in zip(ids, scores[top])]

    # ---- persistence -----------------------------------------------------------------------
    def state_arrays(self) -> dict[str, np.ndarray]:
        """The learned state as plain arrays (what `save` stores, without the vocabularies)."""
        self._check_fitted()
        return dict(self._get_state())

    @classmethod
    def from_state(cls, params: dict[str, Any], state: dict[str, np.ndarray], data: Dataset) -> Recommender:
        """A fitted model from its parameters, its `state_arrays` and the dataset it was fitted on
        (vocabularies, seen items and ordered histories come from `data`): how a model that
        nests others (the SISA ensemble) restores them."""
        model = cls(**params)
        model._check_params()
        model._adopt(data)
        model._set_state(state)
        model._fitted = True
        return model

    def save(self, path: str | Path) -> Path:
        """Write the fitted model to one `.npz` file (safe to load: no pickle)."""
        self._check_fitted()
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
        meta = {
            "format": "shoprec-model",
            "format_version": FORMAT_VERSION,
            "model": self.name,
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "params": jsonable_params(self.get_params()),
        }
        arrays: dict[str, np.ndarray] = {
            "__meta__": np.array(json.dumps(meta)),
            "__users__": self.users_.ids,
            "__items__": self.items_.ids,
            "__seen_indptr__": self.seen_.indptr,
            "__seen_indices__": self.seen_.indices,
        }
        for key, value in self._get_state().items():
            arr = np.asarray(value)
            if arr.dtype == object:
                raise ModelFormatError(f"State {key!r} of {self.name} is an object array; not saveable.")
            arrays[f"m/{key}"] = arr
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        # Write then rename: a crash never leaves half a model. Owner-only: a model holds
        # per-shopper state (pseudonymous ids, histories or factors).
        with open(os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600), "wb") as fh:
            np.savez(fh, **arrays)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        """Load a model saved by `save`. On the base class, returns the right subclass."""
        from shoprec.models.registry import model_class

        path = Path(path)
        if not path.exists():
            raise ModelFormatError(f"{path}: no such model file.")
        try:
            # Open the file here: np.load leaks its own handle when a zip turns out truncated.
            with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            meta = json.loads(str(arrays.pop("__meta__")))
        except Exception as exc:  # truncated zips, .npy files, pickles: whatever fails to parse
            raise ModelFormatError(f"{path}: not a shoprec model file ({exc}).") from exc
        if not isinstance(meta, dict) or meta.get("format") != "shoprec-model":
            raise ModelFormatError(f"{path}: not a shoprec model file.")
        if meta.get("format_version") != FORMAT_VERSION:
            raise ModelFormatError(
                f"{path}: model format version {meta.get('format_version')} is not supported "
                f"(this shoprec reads version {FORMAT_VERSION})."
            )
        try:
            klass = model_class(meta.get("model"))
        except ConfigError as exc:
            raise ModelFormatError(f"{path}: holds a model this shoprec does not know ({exc})") from exc
        if cls is not Recommender and not issubclass(klass, cls):
            raise ModelFormatError(f"{path}: holds a {meta['model']!r} model, not {cls.name!r}.")
        try:
            model = klass(**meta["params"])
            model._check_params()
            model.users_ = Vocabulary(arrays.pop("__users__"), "user")
            model.items_ = Vocabulary(arrays.pop("__items__"), "item")
            indptr, indices = arrays.pop("__seen_indptr__"), arrays.pop("__seen_indices__")
            model.seen_ = sp.csr_matrix(
                (np.ones(len(indices), np.float32), indices, indptr),
                shape=(len(model.users_), len(model.items_)),
            )
            # Training histories are kept only as the seen set after loading; their order is lost,
            # so sequence models store their own history arrays in their state.
            model._train_histories = np.split(model.seen_.indices.astype(np.int64), model.seen_.indptr[1:-1])
            model._train_events = [np.full(len(h), 3, np.int8) for h in model._train_histories]
            model._set_state({k[2:]: v for k, v in arrays.items() if k.startswith("m/")})
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ModelFormatError(
                f"{path}: the {meta.get('model')!r} model file is incomplete or damaged ({exc!r})."
            ) from exc
        model._fitted = True
        return model


def jsonable_params(params: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in params.items():
        if isinstance(v, (np.integer,)):
            v = int(v)
        elif isinstance(v, (np.floating,)):
            v = float(v)
        elif isinstance(v, tuple):
            v = list(v)
        out[k] = v
    json.dumps(out)  # raises early if a parameter cannot be stored
    return out


def histories_to_csr(histories: list[np.ndarray], n_items: int) -> sp.csr_matrix:
    """Binary csr matrix with one row per history (repeated items count once)."""
    lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = np.concatenate(histories).astype(np.int64) if len(histories) and lengths.sum() else np.empty(0, np.int64)
    m = sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(len(histories), n_items))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m

