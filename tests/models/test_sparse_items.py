"""Sparse item-table updates (`sparse_item_grads`) and the time budget inside an epoch.

With a sampled softmax a batch touches a few rows of the item table; sparse gradients and a
lazy Adam update only those. What must hold: the sparse gradient is the dense gradient, rows the
batch did not touch do not move, the model trains, saves, loads, resumes and grows as the dense
one does, and settings that cannot work are refused by name. The speed-up is measured in
benchmarks/scale.py, never asserted here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_sequential import _new_events, _one_torch_thread  # noqa: F401 (an autouse fixture)
from test_sequential import transformer as tiny_transformer

from shoprec.errors import ConfigError
from shoprec.models.base import Recommender
from shoprec.models.caser import Caser
from shoprec.models.neural.losses import negative_sampler, sequence_loss
from shoprec.models.neural.optimizers import ItemSparseAdam, make_optimizer
from shoprec.models.transformer import TransformerConfig, TransformerRecommender

SPARSE = {"loss": "sampled", "n_negatives": 4, "sparse_item_grads": True}


def transformer(**kw) -> TransformerRecommender:
    # test_sequential's tiny Transformer without dropout, so gradients are comparable.
    return tiny_transformer(**{"dropout": 0.0, **kw})


def _batch(n_items: int, seed: int = 0):
    """A left-padded batch (items, events, gaps) and its next-item targets."""
    rng = np.random.default_rng(seed)
    items = torch.as_tensor(rng.integers(1, n_items + 1, size=(3, 6)))
    items[0, :2] = 0  # padding
    events = torch.ones_like(items) * (items > 0)
    gaps = torch.zeros_like(items)
    targets = items[:, 1:] * (items[:, :-1] > 0)
    return items[:, :-1], events[:, :-1], gaps[:, :-1], targets


def _loss(net, n_items, negatives):
    items, events, gaps, targets = _batch(n_items)
    _, log_q = negative_sampler(np.ones(n_items), "uniform", torch.device("cpu"))
    return sequence_loss(net, net(items, events, gaps), targets, negatives, log_q), items, targets


def test_the_sparse_item_gradient_equals_the_dense_one(synthetic_shop):
    sparse = transformer(epochs=0, **SPARSE).fit(synthetic_shop).net_
    dense = transformer(epochs=0, loss="sampled", n_negatives=4).fit(synthetic_shop).net_
    dense.load_state_dict(sparse.state_dict())  # same weights; only the gradient layout differs
    negatives = torch.tensor([3, 17, 17, 60])
    for net in (sparse, dense):
        net.train()
        _loss(net, synthetic_shop.n_items, negatives)[0].backward()
    assert sparse.item_emb.weight.grad.is_sparse and not dense.item_emb.weight.grad.is_sparse
    torch.testing.assert_close(sparse.item_emb.weight.grad.to_dense(), dense.item_emb.weight.grad)
    for (name, p), q in zip(sparse.named_parameters(), dense.parameters()):
        if name != "item_emb.weight":
            torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_a_step_moves_only_the_rows_the_batch_touched(synthetic_shop):
    model = transformer(epochs=0, **SPARSE).fit(synthetic_shop)
    net, n_items = model.net_, synthetic_shop.n_items
    net.train()
    optimizer = make_optimizer(net, model.config_)
    assert isinstance(optimizer, ItemSparseAdam)
    before = net.item_emb.weight.detach().clone()
    negatives = torch.tensor([3, 17, 60])
    loss, items, targets = _loss(net, n_items, negatives)
    loss.backward()
    optimizer.step()
    touched = set(items.flatten().tolist()) | set(targets.flatten().tolist()) | set((negatives + 1).tolist())
    touched.discard(0)  # padding row
    moved = set(torch.nonzero((net.item_emb.weight.detach() != before).any(dim=1)).flatten().tolist())
    assert moved == touched


def test_a_model_with_sparse_item_updates_trains_saves_resumes_and_grows(synthetic_shop, tmp_path):
    model = transformer(epochs=6, batch_size=32, max_len=12, n_negatives=16, loss="sampled",
                        sparse_item_grads=True).fit(synthetic_shop)
    losses = [e["loss"] for e in model.training_log]
    assert losses[-1] < losses[0] - 0.2, losses
    loaded = Recommender.load(model.save(tmp_path / "m.npz"))
    users = np.arange(synthetic_shop.n_users)
    np.testing.assert_allclose(loaded.score_users(users), model.score_users(users), rtol=1e-5, atol=1e-6)
    assert loaded.config_.sparse_item_grads

    ckpt = str(tmp_path / "ckpt")
    transformer(epochs=2, checkpoint_dir=ckpt, **SPARSE).fit(synthetic_shop)
    resumed = transformer(epochs=3, checkpoint_dir=ckpt, resume=True, **SPARSE).fit(synthetic_shop)
    assert [e["epoch"] for e in resumed.training_log] == [1, 2, 3]

    grown = transformer(epochs=1, **SPARSE).fit(synthetic_shop)
    user = synthetic_shop.users.ids[0]
    grown.partial_fit(_new_events(synthetic_shop, [(user, "new-1", "view", 10**9), (user, "new-2", "cart", 10**9 + 1)]))
    assert grown.net_.item_emb.weight.shape[0] == synthetic_shop.n_items + 3


@pytest.mark.parametrize("params, match", [
    ({"sparse_item_grads": True}, "loss='sampled'"),
    ({"sparse_item_grads": True, "loss": "sampled", "weight_decay": 0.01}, "weight_decay=0"),
    ({"sparse_item_grads": "yes", "loss": "sampled"}, "sparse_item_grads"),
])
def test_settings_that_cannot_work_are_refused_by_name(params, match):
    with pytest.raises(ConfigError, match=match):
        TransformerConfig(**params)


def test_a_model_without_sparse_item_tables_refuses_it(tiny_shop):
    with pytest.raises(ConfigError, match="not supported by"):
        Caser(d=8, window=2, n_h=2, epochs=1, device="cpu", **SPARSE).fit(tiny_shop)
    # Under torchrun the sparse gradients are all-reduced by DDP: tests/models/test_ddp.py.


# ---- the time budget inside an epoch --------------------------------------------------------
def test_an_epoch_that_outlasts_the_budget_stops_after_the_batch_that_spent_it(synthetic_shop):
    from shoprec.data.split import leave_one_out

    split = leave_one_out(synthetic_shop)
    # 300 shoppers in batches of one: the budget is spent long before the epoch's last batch.
    model = transformer(epochs=5, batch_size=1, max_seconds=1e-3).fit(split.train, split.valid)
    (entry,) = model.training_log
    assert model.stopped_by_ == "max_seconds"
    assert 0 < entry["share_of_epoch"] < 1
    assert entry["targets"] > 0 and "valid_ndcg" in entry  # the partial epoch is still checked


def test_every_partial_fit_run_draws_its_own_negatives(tiny_shop, monkeypatch):
    from shoprec.models.neural import loop

    drawn: list[list[int]] = []
    real = torch.multinomial

    def recording(*args, **kwargs):
        out = real(*args, **kwargs)
        drawn.append(out.tolist())
        return out

    model = transformer(loss="sampled", n_negatives=4, epochs=1, batch_size=64).fit(tiny_shop)
    new = _new_events(tiny_shop, [("u1", "i2", "view", 10), ("u1", "i5", "view", 11)])
    monkeypatch.setattr(loop.torch, "multinomial", recording)
    model.partial_fit(new, epochs=1)
    model.partial_fit(new, epochs=1)
    assert len(drawn) == 2 and drawn[0] != drawn[1]  # one step each, different streams
