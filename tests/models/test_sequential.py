"""The neural sequence models: the behaviour Transformer, NCF and Caser.

Sizes are tiny (d=16, one layer, a few epochs) so that the whole file runs in seconds on two
cores; the quality targets are measured by benchmarks/transformer.py, never asserted here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from shoprec.data.dataset import Dataset
from shoprec.data.schema import Catalogue, Interactions
from shoprec.data.split import leave_one_out
from shoprec.errors import ConfigError, ModelFormatError
from shoprec.models.base import Recommender
from shoprec.models.caser import Caser
from shoprec.models.ncf import NCF
from shoprec.models.neural.device import resolve_device
from shoprec.models.neural.distributed import epoch_batches, epoch_order
from shoprec.models.neural.sequences import gap_buckets, pad_left
from shoprec.models.transformer import TransformerRecommender

FAST = {"epochs": 3, "batch_size": 4, "device": "cpu", "seed": 0}


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # The tensors here are tiny: a second thread only adds wake-ups on a busy 2-core machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def transformer(**kw) -> TransformerRecommender:
    params = dict(d=16, n_layers=1, n_heads=1, max_len=8, dropout=0.1, lr=5e-3, **FAST)
    params.update(kw)
    return TransformerRecommender(**params)


# ---- determinism, checkpoints, resuming ----------------------------------------------------
def test_same_seed_gives_same_scores_and_another_seed_does_not(tiny_shop):
    users = np.arange(tiny_shop.n_users)
    a = transformer(seed=1).fit(tiny_shop).score_users(users)
    b = transformer(seed=1).fit(tiny_shop).score_users(users)
    c = transformer(seed=2).fit(tiny_shop).score_users(users)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_fit_leaves_the_callers_random_state_alone(tiny_shop):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    transformer().fit(tiny_shop)
    np.testing.assert_array_equal(torch.rand(3).numpy(), expected.numpy())


@pytest.mark.parametrize("make", [transformer, lambda **kw: Caser(d=8, window=2, n_h=2, **{**FAST, **kw})])
def test_resuming_from_a_checkpoint_equals_uninterrupted_training(tiny_shop, tmp_path, make):
    split = leave_one_out(tiny_shop)
    users = np.arange(tiny_shop.n_users)
    straight = make(epochs=4, patience=10).fit(split.train, split.valid)
    # Interrupted after two epochs, then continued by a new process (a new object) from disk.
    make(epochs=2, patience=10, checkpoint_dir=str(tmp_path)).fit(split.train, split.valid)
    resumed = make(epochs=4, patience=10, checkpoint_dir=str(tmp_path), resume=True)
    resumed.fit(split.train, split.valid)
    np.testing.assert_allclose(resumed.score_users(users), straight.score_users(users), rtol=1e-6, atol=1e-6)
    assert [e["epoch"] for e in resumed.training_log] == [1, 2, 3, 4]
    np.testing.assert_allclose(
        [e["loss"] for e in resumed.training_log], [e["loss"] for e in straight.training_log], rtol=1e-6
    )


def test_checkpoints_are_written_every_epoch_and_a_foreign_one_is_refused(tiny_shop, tmp_path):
    transformer(epochs=2, checkpoint_dir=str(tmp_path)).fit(tiny_shop)
    assert (tmp_path / "last.pt").exists()
    with pytest.raises(ModelFormatError, match="checkpoint"):
        NCF(d=8, hidden=(8,), checkpoint_dir=str(tmp_path), resume=True, **FAST).fit(tiny_shop)


def test_early_stopping_restores_the_best_epoch(synthetic_shop):
    split = leave_one_out(synthetic_shop)
    model = transformer(epochs=30, patience=2, lr=3e-2, batch_size=64, max_len=12)
    model.fit(split.train, split.valid)
    log = model.training_log
    scores = [e["valid_ndcg"] for e in log]
    assert len(log) < 30  # stopped early
    assert model.best_epoch_ == log[int(np.argmax(scores))]["epoch"]
    assert len(log) - model.best_epoch_ == 2


def test_a_time_budget_stops_training_after_the_epoch_that_would_overrun_it(tiny_shop):
    model = transformer(epochs=50, max_seconds=1e-3).fit(tiny_shop)
    assert model.stopped_by_ == "max_seconds"
    assert len(model.training_log) == 1


def test_progress_callback_sees_every_epoch(tiny_shop):
    seen = []
    model = transformer(epochs=2)
    model.progress = seen.append
    split = leave_one_out(tiny_shop)
    model.fit(split.train, split.valid)
    assert [e["epoch"] for e in seen] == [1, 2]
    assert all({"loss", "seconds", "valid_ndcg"} <= set(e) for e in seen)


# ---- what the Transformer reads ------------------------------------------------------------
def test_event_type_changes_the_scores(tiny_shop):
    model = transformer().fit(tiny_shop)
    viewed = model.score_history(["i1", "i2", "i3"], events=["view", "view", "view"])
    bought = model.score_history(["i1", "i2", "i3"], events=["view", "view", "purchase"])
    assert not np.allclose(viewed, bought)
    plain = transformer(event_embeddings=False).fit(tiny_shop)
    np.testing.assert_array_equal(
        plain.score_history(["i1", "i2"], events=["view", "view"]),
        plain.score_history(["i1", "i2"], events=["purchase", "cart"]),
    )


def test_order_of_the_history_matters(tiny_shop):
    model = transformer().fit(tiny_shop)
    assert not np.allclose(model.score_history(["i1", "i2", "i3"]), model.score_history(["i3", "i2", "i1"]))


def test_one_requests_scores_are_the_same_through_numpys_product_as_through_torchs(tiny_shop):
    # A few rows under no_grad (the request path) take numpy's product; larger batches torch's.
    model = transformer().fit(tiny_shop)
    hidden = torch.randn(3, 16)
    with torch.no_grad():
        fast = model.net_.score(hidden, None)
    slow = model.net_.score(hidden, None).detach()  # grad enabled: torch's product
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    assert fast.shape == (3, tiny_shop.n_items)


def test_a_live_session_is_scored_without_retraining(tiny_shop):
    model = transformer().fit(tiny_shop)
    recs = model.recommend_history(["i5", "i6", "i7"], events=["view", "cart", "view"], k=3)
    assert len(recs) == 3 and not {"i5", "i6", "i7"} & {i for i, _ in recs}


@pytest.mark.parametrize("block", ["sasrec", "pre_ln"])
def test_a_position_never_sees_the_events_after_it(tiny_shop, block):
    model = transformer(block=block, n_layers=2, attn_dropout=0.3, epochs=1).fit(tiny_shop)
    net = model.net_.eval()
    items = torch.tensor([[0, 0, 3, 5, 2, 7, 1, 4]])
    later_changed = items.clone()
    later_changed[0, 5:] = torch.tensor([6, 6, 6])
    zeros = torch.zeros_like(items)
    with torch.no_grad():
        hidden = net(items, torch.ones_like(items), zeros)
        hidden_changed = net(later_changed, torch.ones_like(items), zeros)
    torch.testing.assert_close(hidden[0, 2:5], hidden_changed[0, 2:5])
    assert not torch.allclose(hidden[0, 5:], hidden_changed[0, 5:])


@pytest.mark.parametrize("block", ["sasrec", "pre_ln"])
def test_short_histories_are_encoded_only_as_wide_as_the_longest_and_mean_the_same(tiny_shop, block):
    # The request path pads a batch only to its longest history; the states must equal those
    # of the same histories padded to max_len (what training and older releases read).
    model = transformer(block=block, n_layers=2, max_len=8, time_gaps=False, epochs=1).fit(tiny_shop)
    histories = [np.array([3, 5, 2]), np.array([1]), np.array([4, 0, 6, 2, 1])]
    events = [np.ones(len(h), np.int64) for h in histories]
    trimmed = model.encode_histories(histories, events)
    items, evs = torch.as_tensor(pad_left(histories, 8, 1)), torch.as_tensor(pad_left(events, 8, 1))
    with torch.no_grad():
        wide = model.net_(items, evs, torch.zeros_like(items))[:, -1]
    assert items.shape[1] > max(len(h) for h in histories)
    torch.testing.assert_close(trimmed, wide, rtol=1e-5, atol=1e-5)


def test_time_gaps_are_bucketed_by_log2_seconds():
    np.testing.assert_array_equal(gap_buckets(np.array([0, 0, 1, 4, 1000]), 32), [1, 2, 3, 4, 11])
    assert gap_buckets(np.array([0, 10**12]), 8)[1] == 7  # clipped to the last bucket


def test_time_gaps_read_the_history_timestamps(tiny_shop):
    model = transformer(time_gaps=True).fit(tiny_shop)
    users = np.arange(tiny_shop.n_users)
    spread = Dataset.from_arrays(
        tiny_shop.users, tiny_shop.items, tiny_shop.user_idx, tiny_shop.item_idx, tiny_shop.event,
        tiny_shop.timestamp * 86_400, catalogue=tiny_shop.catalogue,
    )
    assert not np.allclose(model.score_users(users, history=tiny_shop), model.score_users(users, history=spread))


def test_sampled_softmax_trains_and_the_loss_decreases(synthetic_shop):
    for sampling in ("uniform", "popularity"):
        model = transformer(loss="sampled", n_negatives=16, negative_sampling=sampling, epochs=6,
                            batch_size=32, max_len=12)
        model.fit(synthetic_shop)
        losses = [e["loss"] for e in model.training_log]
        assert losses[-1] < losses[0] - 0.2, losses


def test_sampled_loss_applies_the_logq_correction():
    from shoprec.models.neural.losses import sequence_loss

    class Dot(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.items = torch.nn.Parameter(torch.eye(3))

        def score(self, h, c):
            return h @ (self.items if c is None else self.items[c]).T

        def score_pairs(self, h, i):
            return (h * self.items[i]).sum(-1)

    net, hidden = Dot(), torch.zeros(1, 1, 3)  # all logits 0
    targets, negatives = torch.tensor([[1]]), torch.tensor([1, 2])  # item 0; negatives 1 and 2
    log_q = torch.log(torch.tensor([0.5, 0.25, 0.25]))
    loss = sequence_loss(net, hidden, targets, negatives, log_q)
    # logits after correction: target -log .5, negatives -log .25 twice
    logits = torch.tensor([np.log(2), np.log(4), np.log(4)])
    assert loss.item() == pytest.approx(float(-torch.log_softmax(logits, 0)[0]))
    # an accidental hit (a negative equal to the target) is masked out
    hit = sequence_loss(net, hidden, targets, torch.tensor([0, 2]), log_q)
    assert hit.item() == pytest.approx(float(-torch.log_softmax(torch.tensor([np.log(2), np.log(4)]), 0)[0]))


# ---- online updates and catalogue growth ---------------------------------------------------
def _new_events(base: Dataset, rows: list[tuple[str, str, str, int]]) -> Dataset:
    frame = pd.DataFrame(rows, columns=["user", "item", "event", "timestamp"])
    items = base.items.extend(frame["item"])
    log = Interactions.from_frame(frame, "new")
    return Dataset.from_interactions(log, base.catalogue, items=items)


@pytest.mark.parametrize("make", [transformer, lambda **kw: NCF(d=16, hidden=(16,), n_negatives=8, **{**FAST, **kw}),
                                  lambda **kw: Caser(d=16, window=2, n_h=2, **{**FAST, **kw})])
def test_partial_fit_with_new_items_grows_the_catalogue_and_recommends_them(tiny_shop, make):
    model = make(lr=2e-2, batch_size=8).fit(tiny_shop)
    # A new product "i9" that everyone now buys right after a red mug.
    rows = [(f"n{u}", item, "view", t) for u in range(12) for t, item in enumerate(["i1", "i9"] * 3)]
    new = _new_events(tiny_shop, rows)
    assert new.n_items == tiny_shop.n_items + 1
    model.partial_fit(new, epochs=30)
    assert len(model.items_) == 9 and model.score_history(["i1"]).shape == (9,)
    top = [item for item, _ in model.recommend_history(["i9", "i1"], k=9, exclude_seen=False)]
    assert top[0] == "i9"
    assert model.recommend("n0", k=3)  # new users are known afterwards
    assert model.seen_.shape == (len(model.users_), 9)


def test_partial_fit_refuses_a_vocabulary_that_does_not_extend_the_models(tiny_shop):
    model = transformer(epochs=1).fit(tiny_shop)
    frame = pd.DataFrame({"user": ["x"], "item": ["i9"], "event": ["view"], "timestamp": [1]})
    other = Dataset.from_interactions(Interactions.from_frame(frame))
    with pytest.raises(ConfigError, match="extend"):
        model.partial_fit(other)


def test_partial_fit_survives_save_and_load(tiny_shop, tmp_path):
    model = transformer(epochs=1).fit(tiny_shop)
    model.partial_fit(_new_events(tiny_shop, [("u1", "i9", "cart", 9), ("u1", "i2", "view", 10)]), epochs=1)
    loaded = Recommender.load(model.save(tmp_path / "m.npz"))
    assert loaded.recommend("u1", k=4) == model.recommend("u1", k=4)
    loaded.partial_fit(_new_events(tiny_shop, [("u2", "i9", "view", 9), ("u2", "i10", "view", 10)]), epochs=1)
    assert len(loaded.items_) == 10


# ---- item text -----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["text_init", "text_fusion"])
def test_text_lets_items_without_training_events_be_recommended(tiny_shop, hashed_text, mode):
    # "i8" (spade) has no training events; a new "i9" (garden spade) arrives by partial_fit.
    train = tiny_shop.subset(tiny_shop.item_idx != tiny_shop.items.index(["i8"])[0])
    model = transformer(epochs=5, **{mode: True}).fit(train)
    assert np.isfinite(model.score_history(["i5"])).all()
    catalogue = Catalogue.from_frame(pd.concat([
        tiny_shop.catalogue.frame,
        pd.DataFrame({"item": ["i9"], "title": ["spade"], "category": ["garden"], "price": [9.0]}),
    ]))
    frame = pd.DataFrame({"user": ["u9"], "item": ["i9"], "event": ["view"], "timestamp": [1]})
    new = Dataset.from_interactions(Interactions.from_frame(frame), catalogue, items=train.items.extend(["i9"]))
    weights = model.net_.item_emb.weight.detach().clone()
    model.partial_fit(new, epochs=0)
    if mode == "text_init":  # the new spade starts where the old, untrained spade was put
        i8 = train.items.index(["i8"])[0] + 1
        grown = model.net_.item_emb.weight.detach()
        np.testing.assert_allclose(grown[-1].numpy(), weights[i8].numpy(), rtol=1e-4, atol=1e-5)
    else:
        assert model.net_.text_features.shape[0] == 9
        assert model.net_.text_features[-1].abs().sum() > 0


def test_text_is_skipped_quietly_without_a_catalogue(tiny_shop):
    bare = Dataset.from_arrays(tiny_shop.users, tiny_shop.items, tiny_shop.user_idx, tiny_shop.item_idx,
                               tiny_shop.event, tiny_shop.timestamp)
    model = transformer(epochs=1, text_fusion=True).fit(bare)
    assert not hasattr(model.net_, "text_features")


# ---- parameters and devices ----------------------------------------------------------------
@pytest.mark.parametrize(
    "params, name",
    [
        ({"d": 0}, "d"),
        ({"d": 16, "n_heads": 3}, "n_heads"),
        ({"max_len": 0}, "max_len"),
        ({"dropout": 1.5}, "dropout"),
        ({"attn_dropout": -0.1}, "attn_dropout"),
        ({"block": "post_ln"}, "block"),
        ({"loss": "bpr"}, "loss"),
        ({"negative_sampling": "zipf"}, "negative_sampling"),
        ({"n_negatives": 0}, "n_negatives"),
        ({"lr": 0}, "lr"),
        ({"epochs": -1}, "epochs"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"patience": 0}, "patience"),
        ({"device": "tpu"}, "device"),
        ({"resume": True}, "resume"),
        ({"text_init": "yes"}, "text_init"),
        ({"time_gaps": 1}, "time_gaps"),
        ({"valid_users": 0}, "valid_users"),
        ({"length_groups": 0}, "length_groups"),
    ],
)
def test_invalid_parameters_raise_config_error_naming_them(tiny_shop, params, name):
    with pytest.raises(ConfigError, match=f"'{name}'"):
        TransformerRecommender(**params).fit(tiny_shop)


@pytest.mark.parametrize(
    "model, name",
    [(NCF(hidden=()), "hidden"), (NCF(hidden=(8, -1)), "hidden"), (Caser(window=0), "window"), (Caser(n_h=0), "n_h")],
)
def test_invalid_baseline_parameters_raise_config_error(tiny_shop, model, name):
    with pytest.raises(ConfigError, match=f"'{name}'"):
        model.fit(tiny_shop)


def test_device_auto_picks_cuda_only_when_present():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")


def test_ranks_take_disjoint_interleaved_shards_of_every_global_batch():
    single = epoch_order(10, epoch=3, seed=5)
    ranks = [epoch_order(10, epoch=3, seed=5, rank=r, world_size=2) for r in range(2)]
    assert sorted(np.concatenate(ranks)) == list(range(10))
    # batch j of 2 per rank == batch j of 4 for one process
    for j in range(3):
        np.testing.assert_array_equal(
            np.sort(np.concatenate([r[2 * j : 2 * j + 2] for r in ranks])), np.sort(single[4 * j : 4 * j + 4])
        )


def test_bucketed_batches_hold_similar_lengths_and_shard_like_a_single_process():
    lengths = np.random.default_rng(0).integers(2, 200, size=1000)
    single = epoch_batches(lengths, epoch=1, seed=0, batch_size=16, bucket=True)
    assert sorted(np.concatenate(single)) == list(range(1000))
    spread = np.mean([np.ptp(lengths[b]) for b in single])
    assert spread < 0.2 * np.ptp(lengths)  # random batches of 16 would span most of the range
    ranks = [epoch_batches(lengths, 1, 0, 16, rank=r, world_size=2, bucket=True) for r in range(2)]
    for j, batch in enumerate(single):
        np.testing.assert_array_equal(np.sort(np.concatenate([ranks[0][j], ranks[1][j]])), np.sort(batch))
    assert not all(np.array_equal(a, b) for a, b in zip(single, epoch_batches(lengths, 2, 0, 16, bucket=True)))


def test_bucketed_training_gives_finite_scores(tiny_shop):
    model = transformer(bucket_by_length=True).fit(tiny_shop)
    assert np.isfinite(model.score_users(np.arange(tiny_shop.n_users))).all()


@pytest.mark.parametrize("block", ["sasrec", "pre_ln"])
def test_length_groups_change_the_cost_of_a_batch_not_what_it_learns(synthetic_shop, block):
    # Without dropout training is deterministic: a batch run through the network in groups of
    # similar length (each only as wide as its longest row) must take the same steps as the
    # whole batch at the width of its longest row.
    kw = {"max_len": 30, "dropout": 0.0, "batch_size": 32, "epochs": 2, "block": block, "text_init": False}
    whole = transformer(length_groups=1, **kw).fit(synthetic_shop)
    grouped = transformer(length_groups=5, **kw).fit(synthetic_shop)
    users = np.arange(synthetic_shop.n_users)
    np.testing.assert_allclose(grouped.score_users(users), whole.score_users(users), rtol=1e-4, atol=1e-4)
    losses = [[e["loss"] for e in m.training_log] for m in (whole, grouped)]
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)


def test_the_three_models_are_registered():
    from shoprec.models.registry import make_model

    assert isinstance(make_model("transformer", d=8), TransformerRecommender)
    assert isinstance(make_model("ncf"), NCF)
    assert isinstance(make_model("caser"), Caser)


def test_verbose_training_shows_a_progress_bar_on_stderr(tiny_shop, capsys):
    split = leave_one_out(tiny_shop)
    transformer(epochs=2, verbose=True).fit(split.train, split.valid)
    err = capsys.readouterr().err
    assert "transformer epochs" in err and "NDCG@10" in err
