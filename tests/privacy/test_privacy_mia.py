"""Membership inference: the attack's AUC against known truths."""

from __future__ import annotations

import numpy as np
import pytest

from shoprec.errors import EmptyDataError
from shoprec.privacy.mia import history_losses, membership_inference, split_members


class _Memoriser:
    """Scores a history's items high only when the history is one it 'trained' on."""

    def __init__(self, trained, n_items):
        self.trained = {tuple(h) for h in trained}
        self.n_items = n_items

    def score_histories(self, histories, events=None):
        out = np.zeros((len(histories), self.n_items))
        for r, h in enumerate(histories):
            if tuple(h) in self.trained:
                out[r, h] = 5.0
        return out


class _Oblivious:
    def __init__(self, n_items):
        self.n_items = n_items

    def score_histories(self, histories, events=None):
        return np.tile(np.linspace(0, 1, self.n_items), (len(histories), 1))


def _histories(n, n_items=50, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.choice(n_items, 5, replace=False) for _ in range(n)]


def test_a_model_that_memorises_members_is_caught():
    members, others = _histories(100, seed=1), _histories(100, seed=2)
    result = membership_inference(_Memoriser(members, 50), members, others)
    assert result.auc == pytest.approx(1.0)
    assert result.member_loss < result.nonmember_loss


def test_a_model_that_ignores_training_data_leaks_nothing():
    members, others = _histories(400, seed=1), _histories(400, seed=2)
    result = membership_inference(_Oblivious(50), members, others)
    assert abs(result.auc - 0.5) < 0.06


def test_history_loss_is_cross_entropy_by_hand():
    model = _Oblivious(3)
    scores = np.linspace(0, 1, 3)
    expected = np.log(np.exp(scores).sum()) - scores[[0, 2]].mean()
    assert history_losses(model, [np.array([0, 2])])[0] == pytest.approx(expected)
    assert np.isnan(history_losses(model, [np.array([], dtype=np.int64)])[0])


def test_split_members_holds_out_the_asked_share_of_active_users(tiny_shop):
    members = split_members(tiny_shop, holdout=0.5, seed=0)
    assert members.sum() == 3 and len(members) == tiny_shop.n_users


def test_the_attack_needs_both_groups():
    with pytest.raises(EmptyDataError, match="one member and one non-member"):
        membership_inference(_Oblivious(5), _histories(3, 5), [])


def test_the_auc_standard_error_matches_hanley_and_mcneil():
    from shoprec.privacy.mia import auc_standard_error

    # A = 0.5: Q1 = 1/3, Q2 = 1/3; var = (0.25 + 99/12 + 99/12) / 100^2.
    assert auc_standard_error(0.5, 100, 100) == pytest.approx(((0.25 + 2 * 99 / 12) / 1e4) ** 0.5)
