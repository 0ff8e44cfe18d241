"""Erasure ("right to be forgotten"): `forget(user)` everywhere shoprec keeps shopper data.

What is removed, and what happens to weights trained on the shopper:

=======================  ==================================================================
where                    what `forget` does
=======================  ==================================================================
interaction log (CSV)    every row of the shopper is removed; the file is rewritten and
                         renamed over the old one (`forget_in_log`)
Dataset in memory        rows and the vocabulary entry removed (`forget_in_dataset`)
saved model (.npz)       per-shopper state removed: the user-vocabulary entry, the seen-items
                         row, and the model's per-shopper arrays (user factors, stored recent
                         histories, training-matrix rows); the file is rewritten
                         (`forget_in_model_file`)
shared weights           "sisa" models: the shopper's shard is retrained without them, so the
                         weights are exactly those of training without the shopper.
                         DP models (saved with a privacy report of finite epsilon): kept; their
                         user-level (epsilon, delta)-DP bounds how much any one shopper can
                         have changed them. Any other model: kept, and the report marks the
                         artefact "retrain required" (its weights may still reflect the shopper)
=======================  ==================================================================

A shopper is named by their raw id together with the `Pseudonymizer` that stored them (every
key's pseudonym is erased, so data written before a key rotation goes too) or directly by the
stored id. Files are replaced by rename, so the old bytes leave the file system's namespace, not
necessarily the disk: encrypt the volume, or use storage with secure deletion, where that matters.
"""

from __future__ import annotations

import gzip
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from shoprec.data.dataset import Dataset
from shoprec.data.vocab import Vocabulary
from shoprec.errors import ConfigError, ModelFormatError
from shoprec.models.base import PerUserState
from shoprec.privacy.pseudonym import Pseudonymizer


@dataclass
class ArtefactErasure:
    """What happened to one saved model."""

    path: str
    model: str
    users_removed: int
    arrays_changed: list[str] = field(default_factory=list)
    shared_weights: str = ""  # "retrained shards [..]", "kept: (eps, delta)-DP", "retrain required"

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class ErasureReport:
    """What `forget` removed. Names stored ids only by count, never the raw id."""

    ids: int
    log_rows_removed: dict[str, int] = field(default_factory=dict)
    artefacts: list[ArtefactErasure] = field(default_factory=list)

    @property
    def retrain_required(self) -> list[str]:
        """Artefacts whose shared weights may still reflect the shopper (non-private, unsharded)."""
        return [a.path for a in self.artefacts if a.shared_weights.startswith("retrain required")]

    def as_dict(self) -> dict:
        return {
            "ids": self.ids,
            "log_rows_removed": dict(self.log_rows_removed),
            "artefacts": [a.as_dict() for a in self.artefacts],
            "retrain_required": self.retrain_required,
        }


def stored_ids(user: str, pseudonymizer: Pseudonymizer | None = None) -> list[str]:
    """The ids under which a shopper may be stored: their pseudonym under every key of
    `pseudonymizer` (current and previous), or `user` itself when no pseudonymizer is given."""
    if pseudonymizer is None:
        if not isinstance(user, str) or not user:
            raise ConfigError(f"forget needs a non-empty shopper id. Got {user!r} instead.")
        return [user]
    return pseudonymizer.candidates(user)


# ---- logs and datasets ---------------------------------------------------------------------------
def forget_in_dataset(data: Dataset, ids: list[str]) -> Dataset:
    """The dataset without the shoppers' rows and vocabulary entries (items are unchanged)."""
    gone = data.users.index(ids, missing="drop")
    if len(gone) == 0:
        return data
    keep_user = np.ones(data.n_users, bool)
    keep_user[gone] = False
    remap = np.cumsum(keep_user) - 1
    rows = keep_user[data.user_idx]
    return Dataset.from_arrays(
        Vocabulary(data.users.ids[keep_user], "user"),
        data.items,
        remap[data.user_idx[rows]],
        data.item_idx[rows],
        data.event[rows],
        data.timestamp[rows],
        data.value[rows],
        data.catalogue,
        data.name,
    )


def forget_in_log(path: str | Path, ids: list[str], user_column: str = "user") -> int:
    """Remove the shoppers' rows from a stored CSV log (gzip or plain); returns rows removed.

    The file is rewritten to a temporary file and renamed over the original.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"forget: no log file at {path}.")
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    opener = gzip.open if gz else open
    with opener(path, "rt", encoding="utf-8", newline="") as fh:  # type: ignore[operator]
        frame = pd.read_csv(fh, dtype=str, keep_default_na=False)
    if user_column not in frame.columns:
        raise ConfigError(f"forget: the log {path} has no {user_column!r} column.")
    gone = frame[user_column].isin(ids).to_numpy()
    if not gone.any():
        return 0
    tmp = path.with_name(path.name + ".tmp")
    with opener(tmp, "wt", encoding="utf-8", newline="") as fh:  # type: ignore[operator]
        frame.loc[~gone].to_csv(fh, index=False)
    os.replace(tmp, path)
    return int(gone.sum())


# ---- saved models --------------------------------------------------------------------------------
def _per_user_keys(klass) -> tuple[tuple[str, tuple[str, ...]], ...] | None:
    """(kind, names) pairs of the saved arrays the model class declares per-shopper, or None
    when it declares nothing (see `shoprec.models.base.PerUserState`)."""
    declared = getattr(klass, "per_user_state", None)
    if not isinstance(declared, PerUserState):
        return None
    return (("rows", declared.rows), ("csr", declared.csr))


def _shared_weights_policy(model) -> str:
    from shoprec.privacy.accountant import PrivacyReport

    report = getattr(model, "privacy_", None)
    if isinstance(report, PrivacyReport) and math.isfinite(report.epsilon):
        return (
            f"kept: trained with user-level ({report.epsilon:.3g}, {report.delta:.3g})-DP "
            f"({report.mechanism})"
        )
    if model.name in ("pop", "recent-pop", "random", "dp-pop") and not math.isfinite(
        getattr(report, "epsilon", math.inf)
    ):
        return "retrain required: exact counts include the shopper"
    return "retrain required: shared weights were trained on the shopper without DP"


def forget_in_model_file(path: str | Path, ids: list[str]) -> ArtefactErasure:
    """Remove the shoppers' per-shopper state from a saved model file, in place.

    "sisa" models are loaded, their affected shards retrained without the shoppers, and saved
    again. Other models are edited array by array (no refit): the user vocabulary entry, the
    seen-items row and the per-shopper arrays named by the model class's `per_user_state`. A
    model whose per-shopper arrays are not declared is refused with a ConfigError rather than
    left half-erased.
    """
    from shoprec.models.base import Recommender
    from shoprec.models.registry import model_class

    path = Path(path)
    model = Recommender.load(path)  # validates the file; also gives the privacy report
    name = model.name
    users = model.users_.ids
    gone = np.flatnonzero(np.isin(users, np.asarray(ids, dtype=str)))
    policy = _shared_weights_policy(model)
    if name == "sisa":
        retrained = model.forget(ids) if len(gone) else []
        if len(gone):
            model.save(path)
        return ArtefactErasure(
            str(path), name, len(gone), ["__users__", "__seen__", "shard logs"] if len(gone) else [],
            f"retrained shards {retrained}: exact (as if never trained on the shopper)",
        )
    if len(gone) == 0:
        return ArtefactErasure(str(path), name, 0, [], policy)
    keys = _per_user_keys(model_class(name))
    with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    n_users = len(users)
    keep = np.ones(n_users, bool)
    keep[gone] = False
    if keys is None:
        suspects = [k for k, v in arrays.items() if k.startswith("m/") and v.ndim and v.shape[0] == n_users]
        raise ConfigError(
            f"forget: {path} holds a {name!r} model whose per-shopper state is not declared "
            f"(arrays with one row per user: {suspects or 'none found'}); declare `per_user_state` "
            f"on the model class before erasing."
        )
    changed = ["__users__", "__seen_indptr__", "__seen_indices__"]
    arrays["__users__"] = users[keep]
    arrays["__seen_indptr__"], arrays["__seen_indices__"] = _drop_csr_rows(
        arrays["__seen_indptr__"], arrays["__seen_indices__"], None, keep
    )[:2]
    for kind, names in keys:
        for key in names:
            if kind == "rows":
                full = f"m/{key}"
                if full in arrays and arrays[full].ndim and arrays[full].shape[0] == n_users:
                    arrays[full] = arrays[full][keep]
                    changed.append(full)
            else:
                p = f"m/{key}_"
                if p + "indptr" in arrays:
                    indptr, indices, data = _drop_csr_rows(
                        arrays[p + "indptr"], arrays[p + "indices"], arrays[p + "data"], keep
                    )
                    arrays[p + "indptr"], arrays[p + "indices"], arrays[p + "data"] = indptr, indices, data
                    changed += [p + "indptr", p + "indices", p + "data"]
    tmp = path.with_name(path.name + ".tmp")
    with open(os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600), "wb") as fh:  # owner-only, as saved
        np.savez(fh, **arrays)
    os.replace(tmp, path)
    # Check that the edited file still loads as the same kind of model.
    try:
        Recommender.load(path)
    except ModelFormatError as exc:  # pragma: no cover - would mean a wrong per_user_state
        raise ModelFormatError(f"forget: {path} no longer loads after erasure ({exc}).") from exc
    return ArtefactErasure(str(path), name, len(gone), changed, policy)


def _drop_csr_rows(indptr, indices, data, keep):
    lengths = np.diff(indptr)
    row_of = np.repeat(np.arange(len(lengths)), lengths)
    mask = keep[row_of]
    new_indptr = np.concatenate([[0], np.cumsum(lengths[keep])]).astype(indptr.dtype)
    return new_indptr, indices[mask], None if data is None else data[mask]


def forget_in_model(model, ids: list[str]):
    """A copy of a fitted in-memory model without the shoppers' per-shopper state (what
    `forget_in_model_file` does to a file, through a private temporary file)."""
    import tempfile

    from shoprec.models.base import Recommender

    with tempfile.TemporaryDirectory() as tmp:
        path = model.save(Path(tmp) / "model.npz")
        forget_in_model_file(path, ids)
        return Recommender.load(path)


def forget_in_artefacts(paths: list[str | Path], ids: list[str]) -> list[ArtefactErasure]:
    """`forget_in_model_file` over several saved models (what the HTTP service's erase endpoint
    calls for its model artefacts, with the shopper's stored ids)."""
    return [forget_in_model_file(p, ids) for p in paths]


def forget(
    user: str,
    *,
    pseudonymizer: Pseudonymizer | None = None,
    logs: list[str | Path] = (),
    artefacts: list[str | Path] = (),
    user_column: str = "user",
) -> ErasureReport:
    """Erase one shopper from stored logs and saved models.

    user: the raw shopper id when `pseudonymizer` is given (all its keys' pseudonyms are erased),
        else the id as stored.
    logs: CSV logs (shoprec layout, plain or gzip); artefacts: saved model files.
    Returns an ErasureReport; `report.retrain_required` lists models whose shared weights were
    trained on the shopper without DP or sharding (retrain them to remove the shopper's influence).
    """
    ids = stored_ids(user, pseudonymizer)
    report = ErasureReport(len(ids))
    for log in logs:
        report.log_rows_removed[str(log)] = forget_in_log(log, ids, user_column)
    report.artefacts = forget_in_artefacts(list(artefacts), ids)
    return report


__all__ = [
    "ArtefactErasure",
    "ErasureReport",
    "forget",
    "forget_in_artefacts",
    "forget_in_dataset",
    "forget_in_log",
    "forget_in_model_file",
    "stored_ids",
]
