"""Federated training: histories and shopper factors stay on clients; Flower runs the rounds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shoprec.data.split import leave_one_out
from shoprec.privacy.federated.task import (
    ClientData,
    FedConfig,
    client_data,
    evaluate_local,
    init_item_params,
    init_user_factors,
    local_train,
    partition_users,
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
