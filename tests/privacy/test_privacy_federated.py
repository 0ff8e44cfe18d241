"""Federated training: histories and shopper factors stay on clients; Flower runs the rounds."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from shoprec.data.split import leave_one_out
from shoprec.privacy.federated.task import (
    ClientData,
    FedConfig,
    _loss,
    _pad,
    client_data,
    evaluate_local,
    init_item_params,
    init_user_factors,
    local_train,
    partition_users,
    reconstruct_factors,
    reconstruct_for_histories,
    train_centralised,
    write_partitions,
)


@pytest.fixture
def split(synthetic_shop):
    return leave_one_out(synthetic_shop)


def test_partition_files_hold_no_shopper_ids(split, tmp_path):
    paths = write_partitions(split, 3, tmp_path, seed=0)
    assert [p.name for p in paths] == ["client-0.npz", "client-1.npz", "client-2.npz"]
    parts = [ClientData.load(p) for p in paths]
    assert sum(p.n_users for p in parts) == 300
    with np.load(paths[0]) as npz:
        assert sorted(npz.files) == ["indptr", "items", "n_items", "test", "valid"]
        assert all(npz[k].dtype.kind in "iu" for k in npz.files)


def test_partitions_are_disjoint_and_cover_everyone():
    parts = partition_users(10, 3, seed=1)
    assert sorted(np.concatenate(parts).tolist()) == list(range(10))


def test_local_training_lowers_the_loss_and_returns_only_item_parameters(split):
    config = FedConfig(factors=8, lr=0.05, local_epochs=1)
    data = client_data(split, np.arange(100))
    params = init_item_params(data.n_items, config)
    users = init_user_factors(data.n_users, config)
    _, _, first = local_train(params, users, data, config)
    new_params, new_users, later = local_train(params, users, data, FedConfig(factors=8, lr=0.05, local_epochs=5))
    assert later < first
    assert [p.shape for p in new_params] == [(120, 8), (120,)]  # what would be sent
    assert new_users.shape == (100, 8) and not np.allclose(new_users, users)  # what stays


def test_evaluation_matches_a_hand_ranking():
    data = ClientData(4, np.array([0, 1]), np.array([0]), np.array([1]), np.array([3]))
    params = [np.eye(4, 2, dtype=np.float32), np.array([0, 5, 1, 2], np.float32)]
    m = evaluate_local(params, np.array([[0.0, 0.0]], np.float32), data, k=10)
    # Items 0 (history) and 1 (validation) are masked; 3 outranks 2: rank 0.
    assert m["n"] == 1 and m["hr_sum"] == 1 and m["ndcg_sum"] == pytest.approx(1.0)


RECONSTRUCT = FedConfig(factors=8, lr=0.05, reconstruct_steps=30, reconstruct_lr=0.1)


def test_a_reconstructed_factor_fits_the_shopper_better_than_none(split):
    import torch

    data = client_data(split, np.arange(50))
    params = init_item_params(data.n_items, RECONSTRUCT)
    params, _, _ = local_train(params, init_user_factors(50, RECONSTRUCT), data, FedConfig(factors=8, lr=0.05))
    rows = _pad(data.histories(), RECONSTRUCT.max_items_per_user)
    factors = reconstruct_factors(params, rows, RECONSTRUCT)
    q, b = (torch.as_tensor(p) for p in params)
    fitted = _loss(torch, torch.as_tensor(factors), q, b, torch.as_tensor(rows), data.n_items)
    zero = _loss(torch, torch.zeros_like(torch.as_tensor(factors)), q, b, torch.as_tensor(rows), data.n_items)
    assert (fitted < zero).all()


def test_each_shopper_is_reconstructed_as_if_alone(split):
    data = client_data(split, np.arange(5))
    params = init_item_params(data.n_items, RECONSTRUCT)
    together = reconstruct_for_histories(params, data.histories(), RECONSTRUCT)
    alone = np.vstack([reconstruct_for_histories(params, [h], RECONSTRUCT) for h in data.histories()])
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-6)
    assert not np.allclose(together[0], together[1])  # one shopper's items move only their factor


def test_a_shopper_without_history_is_scored_by_the_item_biases_alone():
    params = [np.ones((4, 2), np.float32), np.array([0, 5, 1, 2], np.float32)]
    factors = reconstruct_for_histories(params, [np.array([], np.int64)], FedConfig(factors=2, reconstruct_steps=5))
    assert np.array_equal(factors, np.zeros((1, 2), np.float32))


def test_with_reconstruction_a_client_ignores_kept_factors_and_trains_only_items(split):
    data = client_data(split, np.arange(40))
    params = init_item_params(data.n_items, RECONSTRUCT)
    kept = init_user_factors(40, RECONSTRUCT, salt=3)
    a_params, a_users, _ = local_train(params, kept, data, RECONSTRUCT, round_seed=1)
    b_params, _, _ = local_train(params, np.zeros_like(kept), data, RECONSTRUCT, round_seed=1)
    for a, b in zip(a_params, b_params):
        np.testing.assert_array_equal(a, b)  # the kept factors played no part
    assert not np.allclose(a_params[0], params[0])
    rows = _pad(data.histories(), RECONSTRUCT.max_items_per_user)
    np.testing.assert_allclose(a_users, reconstruct_factors(params, rows, RECONSTRUCT), rtol=1e-5)


def test_sgd_local_steps_move_items_by_their_gradient_only(split):
    # A shopper's softmax loss has a gradient for every item, so no item stays put; but SGD's
    # step for an item is proportional to its gradient, where Adam's is about lr for all.
    data = client_data(split, np.arange(1))
    config = FedConfig(factors=8, lr=0.01, optimizer="sgd", batch_size=1, reconstruct_steps=10)
    params = init_item_params(data.n_items, config)
    sgd, _, _ = local_train(params, np.zeros((1, 8), np.float32), data, config)
    adam, _, _ = local_train(params, np.zeros((1, 8), np.float32), data, FedConfig(**{**config.as_dict(),
                                                                                     "optimizer": "adam"}))
    assert np.linalg.norm(sgd[0] - params[0]) < 0.1 * np.linalg.norm(adam[0] - params[0])


def test_a_reconstructing_client_scores_with_factors_fitted_to_each_history(split):
    data = client_data(split, np.arange(60))
    params, _, _ = local_train(init_item_params(data.n_items, RECONSTRUCT), init_user_factors(60, RECONSTRUCT),
                               data, RECONSTRUCT)
    stale = init_user_factors(60, RECONSTRUCT, salt=9)
    fitted = reconstruct_for_histories(params, data.histories(), RECONSTRUCT)
    assert evaluate_local(params, stale, data, config=RECONSTRUCT) == pytest.approx(evaluate_local(params, fitted, data))
    assert evaluate_local(params, stale, data) != evaluate_local(params, fitted, data)


@pytest.mark.parametrize("field, value", [("optimizer", "rmsprop"), ("reconstruct_steps", -1),
                                          ("reconstruct_lr", 0.0)])
def test_bad_federated_settings_are_refused_by_name(field, value):
    from shoprec.errors import ConfigError

    with pytest.raises(ConfigError, match=field):
        FedConfig(**{field: value})


def test_centralised_training_improves_on_its_first_epoch(split):
    log = train_centralised(split, FedConfig(factors=8, lr=0.05), epochs=4)
    assert [e["epoch"] for e in log] == [1, 2, 3, 4]
    assert log[-1]["loss"] < log[0]["loss"]


@pytest.mark.slow
# Ray, under Flower's simulation, leaves files of its helper processes open and drops the handle
# of one still-exiting helper process when it shuts down; neither is this code's doing.
@pytest.mark.filterwarnings("ignore:unclosed file:ResourceWarning")
@pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function Popen.__del__:pytest.PytestUnraisableExceptionWarning"
)
def test_a_flower_simulation_with_dp_fedavg_and_secagg_runs_two_rounds(split):
    from shoprec.privacy.federated import run_federated

    result = run_federated(
        split, num_clients=2, rounds=2, config=FedConfig(factors=8, lr=0.05), dp="client",
        noise_multiplier=0.5, clipping_norm=1.0, secagg=True, num_cpus=2,
    )
    assert [r["round"] for r in result.rounds] == [1, 2]
    assert all(0 <= r["NDCG@10"] <= 1 and r["loss"] > 0 for r in result.rounds)
    assert [p.shape for p in result.item_params] == [(120, 8), (120,)]
    assert math.isfinite(result.epsilon) and result.settings["secagg"] is True
    assert result.rounds_to_reach(0.0) == 1


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:unclosed file:ResourceWarning")
@pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function Popen.__del__:pytest.PytestUnraisableExceptionWarning"
)
def test_user_level_dp_fedavg_with_reconstruction_releases_only_item_parameters(split):
    # What benchmarks/privacy_dpfedavg.py runs, small: one shopper per SuperNode, a sample of them
    # per round, server-side clipping and noise, no evaluation rounds (the released item
    # parameters are scored afterwards, each history reconstructed as its device would).
    from shoprec.privacy.federated import run_federated
    from shoprec.privacy.federated.task import ReconstructingScorer

    small = dataclasses.replace(split, train=split.train.subset(split.train.user_idx < 6, "six shoppers"))
    config = FedConfig(factors=4, lr=5.0, optimizer="sgd", reconstruct_steps=5)
    result = run_federated(small, num_clients=6, rounds=2, config=config, fraction_fit=0.5, fraction_evaluate=0.0,
                           dp="server", noise_multiplier=0.8, clipping_norm=1.0, num_cpus=2)
    assert [r["round"] for r in result.rounds] == [1, 2]
    assert all(r["NDCG@10"] is None and r["loss"] > 0 for r in result.rounds)
    assert result.settings["reconstruct-steps"] == 5 and result.settings["optimizer"] == "sgd"
    assert math.isfinite(result.epsilon)
    scores = ReconstructingScorer(result.item_params, config).score_histories([np.array([1, 2]), np.array([], np.int64)])
    assert scores.shape == (2, 120) and np.isfinite(scores).all()
