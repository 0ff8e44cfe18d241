"""Data-parallel training: two torchrun processes compute what one process computes.

The launch is real (torch.distributed.run, gloo on CPU, a free port via --standalone). The data
is tiny and the model small, so the whole test takes seconds; dropout is 0 so that both runs see
exactly the same computation, up to float summation order. Two epochs of eight steps, with
local batches of two shoppers: small shards are where a rank-dependent computation (for example a
padded position that leaks into the loss) would show.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from shoprec.data.readers import load
from shoprec.models.base import Recommender
from shoprec.models.registry import make_model

PARAMS = {
    "d": 16, "n_layers": 1, "max_len": 6, "dropout": 0.0, "epochs": 2, "batch_size": 4,
    "lr": 0.01, "seed": 3,
}


def _write_sequences(path, n_users=30, n_items=25, seed=0):
    rng = np.random.default_rng(seed)
    lines = []
    for u in range(1, n_users + 1):
        for i in rng.choice(np.arange(1, n_items + 1), size=int(rng.integers(4, 10)), replace=False):
            lines.append(f"{u} {i}")
    path.write_text("\n".join(lines) + "\n")


def _torchrun(data, out, nproc, params):
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
        "-m", "shoprec.cli", "train", "--data", str(data), "--format", "sequence", "--out", str(out),
        "--model", "transformer", "--protocol", "none", "--quiet", "--param", "device=cpu",
    ] + [f"--param={k}={json.dumps(v)}" for k, v in params.items()]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "transformer.json").read_text()), Recommender.load(out / "transformer.npz")


def test_two_processes_train_the_same_model_as_one(tmp_path):
    data = tmp_path / "seq.txt"
    _write_sequences(data)
    log2, model2 = _torchrun(data, tmp_path / "two", 2, PARAMS)
    assert log2["world_size"] == 2

    # The single-process reference: the library's ordinary fit, same global batch and seed.
    dataset = load(data, "sequence").dataset()
    single = make_model("transformer", device="cpu", **PARAMS).fit(dataset)
    losses1 = [e["loss"] for e in single.training_log]
    losses2 = [e["loss"] for e in log2["training_log"]]
    assert len(losses1) == len(losses2) == 2
    np.testing.assert_allclose(losses2, losses1, rtol=1e-5)
    users = np.arange(dataset.n_users)
    np.testing.assert_allclose(model2.score_users(users), single.score_users(users), rtol=1e-3, atol=1e-4)
    weights1 = single._get_state()
    weights2 = model2._get_state()
    d = PARAMS["d"]
    for key in weights1:
        if key.startswith("net/"):
            w1, w2 = weights1[key], weights2[key]
            if key.endswith("in_proj_bias"):
                # The key bias adds the same amount to every logit of a query, so its true gradient
                # is 0; Adam turns the float noise it gets into full-size steps that differ from
                # run to run, with no effect on any output. Compare query and value biases.
                w1, w2 = np.delete(w1, np.s_[d : 2 * d]), np.delete(w2, np.s_[d : 2 * d])
            np.testing.assert_allclose(w2, w1, rtol=1e-3, atol=1e-5, err_msg=key)


def test_two_processes_with_sparse_item_updates_train_the_same_model_as_one(tmp_path):
    # DDP all-reduces the item table's sparse gradients (gloo); every rank draws the same
    # negatives (same seed, same draws), so the sampled loss is the single process's too.
    data = tmp_path / "seq.txt"
    _write_sequences(data)
    params = {**PARAMS, "loss": "sampled", "n_negatives": 8, "sparse_item_grads": True}
    log2, model2 = _torchrun(data, tmp_path / "two", 2, params)
    assert log2["world_size"] == 2
    dataset = load(data, "sequence").dataset()
    single = make_model("transformer", device="cpu", **params).fit(dataset)
    np.testing.assert_allclose([e["loss"] for e in log2["training_log"]],
                               [e["loss"] for e in single.training_log], rtol=1e-5)
    users = np.arange(dataset.n_users)
    np.testing.assert_allclose(model2.score_users(users), single.score_users(users), rtol=1e-3, atol=1e-4)


def test_a_batch_size_that_does_not_split_over_the_processes_is_refused(tiny_shop, monkeypatch):
    from shoprec.errors import ConfigError
    from shoprec.models.neural import loop

    monkeypatch.setattr(loop, "world", lambda: (0, 2))
    with pytest.raises(ConfigError, match="'batch_size'"):
        make_model("transformer", device="cpu", **{**PARAMS, "batch_size": 3}).fit(tiny_shop)


def test_the_train_command_rejects_incomplete_arguments(capsys):
    from shoprec.cli import main

    with pytest.raises(SystemExit):  # no --out: argparse's usage error
        main(["train", "--model", "transformer", "--data", "x", "--format", "sequence"])
    assert main(["train", "--model", "transformer", "--format", "sequence", "--out", "x"]) == 2
    assert "needs --data PATH" in capsys.readouterr().err
