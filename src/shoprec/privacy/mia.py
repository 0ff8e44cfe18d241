"""Membership inference: measure how much a trained model leaks about who was in training.

The attack is the loss-threshold attack (Yeom et al. 2018): a model usually fits the shoppers it
was trained on better than others, so a low loss on a shopper's history says "member". Its AUC
over a set of members (shoppers whose histories were in training) and non-members (shoppers
drawn from the same population and held out) is the leakage figure: 0.5 means the attacker
cannot tell them apart, 1.0 means it always can. Differential privacy bounds it: with
(epsilon, delta)-DP, no attack's true-positive rate can exceed e^epsilon x its false-positive
rate + delta, so the AUC of any attack is bounded too (a loose bound for large epsilon).

The per-shopper loss is the model's own training loss where it has one (`per_user_loss`, as the
DP models do); for other models, the mean softmax cross-entropy of the shopper's items given
their history, from the model's scores (`history_losses`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shoprec.data.dataset import Dataset
from shoprec.errors import ConfigError, EmptyDataError, check_float, check_int


@dataclass(frozen=True)
class MIAResult:
    """AUC of the loss-threshold attack and the losses it was computed from (means)."""

    auc: float
    n_members: int
    n_nonmembers: int
    member_loss: float
    nonmember_loss: float

    @property
    def auc_se(self) -> float:
        """Standard error of the AUC (Hanley & McNeil 1982): how far from 0.5 is just chance."""
        return auc_standard_error(self.auc, self.n_members, self.n_nonmembers)

    def as_dict(self) -> dict:
        return {
            "auc": self.auc,
            "auc_se": self.auc_se,
            "n_members": self.n_members,
            "n_nonmembers": self.n_nonmembers,
            "member_loss": self.member_loss,
            "nonmember_loss": self.nonmember_loss,
        }


def auc_standard_error(auc: float, n_pos: int, n_neg: int) -> float:
    """Hanley & McNeil (1982) standard error of an AUC from n_pos positives and n_neg negatives."""
    a = float(auc)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n_pos - 1) * (q1 - a * a) + (n_neg - 1) * (q2 - a * a)) / max(n_pos * n_neg, 1)
    return float(np.sqrt(max(var, 0.0)))


def split_members(data: Dataset, holdout: float = 0.2, seed: int = 0) -> np.ndarray:
    """Boolean mask over users: True for members (to train on), False for the held-out share.

    Only users with events are held out; users without events count as members (they are in
    nobody's training data either way).
    """
    check_float("holdout", holdout, 0.0, 0.9, "split_members")
    active = data.active_users()
    rng = np.random.default_rng(seed)
    n_out = round(holdout * len(active))
    out = rng.choice(active, size=n_out, replace=False) if n_out else np.empty(0, np.int64)
    members = np.ones(data.n_users, bool)
    members[out] = False
    return members


def history_losses(model, histories: list[np.ndarray], batch_size: int = 512) -> np.ndarray:
    """Mean cross-entropy of each history's items under softmax(model scores for that history).

    Models with a `per_user_loss(histories)` method (their own training loss) use it instead.
    Empty histories get NaN.
    """
    check_int("batch_size", batch_size, 1, 1_000_000, "history_losses")
    if hasattr(model, "per_user_loss"):
        return np.asarray(model.per_user_loss(histories), np.float64)
    out = np.full(len(histories), np.nan)
    for start in range(0, len(histories), batch_size):
        block = histories[start : start + batch_size]
        scores = np.asarray(model.score_histories(block), np.float64)
        top = scores.max(axis=1, keepdims=True)
        lse = top[:, 0] + np.log(np.exp(scores - top).sum(axis=1))
        for r, h in enumerate(block):
            if len(h):
                out[start + r] = float(lse[r] - scores[r, np.asarray(h, np.int64)].mean())
    return out


def membership_inference(
    model, members: list[np.ndarray], nonmembers: list[np.ndarray]
) -> MIAResult:
    """AUC of the loss-threshold attack telling `members`' histories from `nonmembers'`.

    Histories are item-index arrays in the model's item vocabulary, encoded the same way for both
    groups (for example each shopper's training part under leave-one-out).
    """
    from sklearn.metrics import roc_auc_score

    m_loss = history_losses(model, members)
    n_loss = history_losses(model, nonmembers)
    m_loss, n_loss = m_loss[np.isfinite(m_loss)], n_loss[np.isfinite(n_loss)]
    if len(m_loss) == 0 or len(n_loss) == 0:
        raise EmptyDataError(
            "membership_inference needs at least one member and one non-member with a history. "
            f"Got {len(m_loss)} members and {len(n_loss)} non-members."
        )
    labels = np.concatenate([np.ones(len(m_loss)), np.zeros(len(n_loss))])
    # Lower loss -> more likely a member, so the attack's score is the negated loss.
    auc = float(roc_auc_score(labels, -np.concatenate([m_loss, n_loss])))
    return MIAResult(auc, len(m_loss), len(n_loss), float(m_loss.mean()), float(n_loss.mean()))


def mia_on_split(model, train: Dataset, members: np.ndarray) -> MIAResult:
    """The attack on a training log: members' histories vs the held-out users' (same encoding).

    train: the log with every user's history (members' rows are what the model was fitted on);
    members: boolean mask over users from `split_members`.
    """
    if len(members) != train.n_users:
        raise ConfigError(
            f"members must have one entry per user ({train.n_users}). Got {len(members)} instead."
        )
    seqs = train.sequences()
    active = np.diff(train.indptr) > 0
    member_ids = np.flatnonzero(members & active)
    other_ids = np.flatnonzero(~members & active)
    return membership_inference(model, [seqs[u] for u in member_ids], [seqs[u] for u in other_ids])


__all__ = ["MIAResult", "auc_standard_error", "history_losses", "membership_inference", "mia_on_split", "split_members"]
