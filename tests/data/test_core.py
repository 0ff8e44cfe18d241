"""The core data types as a specification: schema, vocabulary, dataset, splits and k-core."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shoprec.data.dataset import Dataset
from shoprec.data.schema import (
    EVENT_TYPES,
    Catalogue,
    EventWeights,
    Interactions,
    QualityReport,
    event_codes,
)
from shoprec.data.split import k_core, leave_one_out, random_holdout, split, temporal_split
from shoprec.data.vocab import Vocabulary
from shoprec.errors import ConfigError, DataError, EmptyDataError, UnknownIdError


def log(rows, name="log") -> Interactions:
    columns = ["user", "item", "event", "timestamp", "value"][: len(rows[0])]
    return Interactions.from_frame(pd.DataFrame(rows, columns=columns), name)


def dataset(rows, catalogue=None) -> Dataset:
    return Dataset.from_interactions(log(rows), catalogue)


def pairs(data: Dataset, mask=None) -> list[tuple[str, str]]:
    """(user, item) ids of the rows, in the dataset's order."""
    users, items = data.users.id_of(data.user_idx), data.items.id_of(data.item_idx)
    return list(zip(users.tolist(), items.tolist()))


def targets(data: Dataset, matrix) -> dict[str, set[str]]:
    coo = matrix.tocoo()
    out: dict[str, set[str]] = {}
    for u, i in zip(coo.row, coo.col):
        out.setdefault(str(data.users.ids[u]), set()).add(str(data.items.ids[i]))
    return out


# --- schema ----------------------------------------------------------------------------------------


def test_interactions_normalise_types_and_default_the_value_to_nan():
    inter = log([(1, 10, "view", 5), (2, 11, "purchase", 6)])
    frame = inter.frame
    assert list(frame.columns) == ["user", "item", "event", "timestamp", "value"]
    assert frame["user"].tolist() == ["1", "2"] and frame["item"].tolist() == ["10", "11"]
    assert list(frame["event"].cat.categories) == list(EVENT_TYPES)
    assert frame["timestamp"].dtype == np.int64 and frame["value"].isna().all()
    assert (len(inter), inter.n_users, inter.n_items) == (2, 2, 2)


def test_interactions_accept_datetime_timestamps_as_epoch_seconds():
    frame = pd.DataFrame(
        {
            "user": ["u"],
            "item": ["i"],
            "event": ["view"],
            "timestamp": pd.to_datetime(["2011-01-01 00:00:10"]),
        }
    )
    assert Interactions.from_frame(frame).frame["timestamp"].tolist() == [1_293_840_010]


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (
            pd.DataFrame({"user": ["u"], "item": ["i"]}),
            "shop: the interaction log lacks the columns ['event', 'timestamp']",
        ),
        (
            pd.DataFrame({"user": ["u"], "item": ["i"], "event": ["teleport"], "timestamp": [1]}),
            "shop: unknown event types ['teleport']",
        ),
        (
            pd.DataFrame({"user": ["u"], "item": ["i"], "event": ["view"], "timestamp": ["soon"]}),
            "shop: 1 timestamps are missing or not numbers.",
        ),
    ],
)
def test_interactions_reject_bad_frames_with_a_clear_message(frame, message):
    with pytest.raises(DataError) as exc:
        Interactions.from_frame(frame, "shop")
    assert message in str(exc.value)


def test_sorted_orders_by_user_then_time_keeping_file_order_on_ties():
    inter = log(
        [("b", "x", "view", 2), ("a", "y", "view", 5), ("b", "z", "view", 1), ("a", "w", "view", 5)]
    )
    frame = inter.sorted().frame
    assert list(zip(frame["user"], frame["item"])) == [
        ("a", "y"),
        ("a", "w"),
        ("b", "z"),
        ("b", "x"),
    ]


def test_event_codes_are_positions_in_event_types_and_unknown_names_raise():
    assert event_codes(np.array(["view", "rating", "purchase"])).tolist() == [0, 4, 3]
    with pytest.raises(DataError, match=r"Unknown event types \['click'\]"):
        event_codes(np.array(["view", "click"]))


def test_event_weights_default_to_the_funnel_and_parse_overrides():
    weights = EventWeights()
    assert weights.as_array().tolist() == [1.0, 3.0, 2.0, 5.0, 1.0]
    assert EventWeights.parse("view=0.5, purchase=10").as_array().tolist() == [
        0.5,
        3.0,
        2.0,
        10.0,
        1.0,
    ]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: EventWeights(view=-1),
            "The event weight 'view' must be a finite number >= 0. Got -1 instead.",
        ),
        (
            lambda: EventWeights(cart=float("nan")),
            "The event weight 'cart' must be a finite number >= 0.",
        ),
        (lambda: EventWeights.parse("click=1"), "Event weights must look like 'view=1,purchase=5'"),
        (lambda: EventWeights.parse("view=lots"), "Event weight 'view' is not a number: 'lots'."),
    ],
)
def test_invalid_event_weights_say_what_is_wrong(make, message):
    with pytest.raises(ConfigError) as exc:
        make()
    assert message in str(exc.value)


def test_catalogue_keeps_one_row_per_item_the_last_wins():
    cat = Catalogue.from_frame(
        pd.DataFrame(
            {"item": [1, 2, 1], "title": ["old mug", "rake", "new mug"], "price": ["3.5", "x", "4"]}
        )
    )
    assert len(cat) == 2
    assert cat.lookup(["1", "2", "unknown"]) == ["new mug", "rake", ""]
    assert cat.lookup(["2"], "category") == [""]
    assert cat.frame.set_index("item")["price"].to_dict() == pytest.approx(
        {"1": 4.0, "2": np.nan}, nan_ok=True
    )
    with pytest.raises(DataError, match="The catalogue needs an 'item' column."):
        Catalogue.from_frame(pd.DataFrame({"title": ["x"]}))


def test_quality_report_accumulates_findings_with_their_action():
    report = QualityReport("f.csv", rows_read=10, rows_kept=7)
    report.add("exact_duplicates", 2, "dropped")
    report.add("exact_duplicates", 1, "dropped")
    assert report.as_dict() == {
        "source": "f.csv",
        "rows_read": 10,
        "rows_kept": 7,
        "findings": {"exact_duplicates": {"rows": 3, "action": "dropped"}},
    }


# --- vocabulary ------------------------------------------------------------------------------------


def test_vocabulary_maps_ids_to_dense_indices_and_back():
    vocab = Vocabulary.from_values(np.array(["b", "a", "b", "c"]), "item")
    assert vocab.ids.tolist() == ["b", "a", "c"]  # order of first appearance
    assert vocab.index(["c", "b"]).tolist() == [2, 0]
    assert vocab.id_of([1, 2]).tolist() == ["a", "c"]
    assert "a" in vocab and "z" not in vocab and len(vocab) == 3
    assert Vocabulary([1, 2]).index(np.array([2])).tolist() == [1]  # ids compare as strings


def test_unknown_ids_are_an_error_naming_them_unless_told_otherwise():
    vocab = Vocabulary(["u1", "u2"], "user")
    with pytest.raises(UnknownIdError) as exc:
        vocab.index(["u1", "ghost", "u9"])
    assert str(exc.value) == "Unknown user ids ['ghost', 'u9'] (2 in all)."
    assert isinstance(exc.value, KeyError)
    assert vocab.index(["u2", "ghost"], missing="-1").tolist() == [1, -1]
    assert vocab.index(["ghost", "u2"], missing="drop").tolist() == [1]
    assert vocab.index([]).tolist() == []


def test_vocabulary_rejects_duplicates_and_extends_without_moving_ids():
    with pytest.raises(ValueError, match="item vocabulary has duplicate ids"):
        Vocabulary(["a", "a"], "item")
    vocab = Vocabulary(["a", "b"])
    bigger = vocab.extend(["c", "a", "d", "c"])
    assert bigger.ids.tolist() == ["a", "b", "c", "d"]
    assert bigger.index(["a", "b"]).tolist() == vocab.index(["a", "b"]).tolist()
    assert bigger != vocab and Vocabulary(["a", "b"]) == vocab


# --- dataset ---------------------------------------------------------------------------------------


def test_dataset_rows_are_sorted_by_user_then_time(tiny_shop):
    assert np.all(np.diff(tiny_shop.user_idx) >= 0)
    for u in range(tiny_shop.n_users):
        rows = slice(tiny_shop.indptr[u], tiny_shop.indptr[u + 1])
        assert np.all(np.diff(tiny_shop.timestamp[rows]) >= 0)
    u1 = tiny_shop.users.index(["u1"])[0]
    assert tiny_shop.items.id_of(tiny_shop.history(u1)).tolist() == ["i1", "i2", "i3", "i4"]


def test_dataset_sorts_by_time_not_file_order_and_keeps_file_order_on_ties():
    data = dataset(
        [
            ("u", "late", "view", 9),
            ("u", "early", "view", 1),
            ("u", "tie1", "view", 5),
            ("u", "tie2", "view", 5),
        ]
    )
    assert [i for _, i in pairs(data)] == ["early", "tie1", "tie2", "late"]


def test_dataset_sequences_and_matrix(tiny_shop):
    seqs = tiny_shop.sequences()
    assert len(seqs) == tiny_shop.n_users and sum(map(len, seqs)) == len(tiny_shop)
    m = tiny_shop.matrix(EventWeights())
    u5, i6 = tiny_shop.users.index(["u5"])[0], tiny_shop.items.index(["i6"])[0]
    assert m[u5, i6] == 3.0 + 5.0  # a cart and a purchase of i6
    binary = tiny_shop.matrix(binary=True)
    assert binary[u5, i6] == 1.0 and binary.nnz == m.nnz
    pop = tiny_shop.item_popularity()
    assert pop[tiny_shop.items.index(["i5"])[0]] == 4  # distinct users u2, u4, u5, u6


def test_catalogue_items_without_events_are_part_of_the_item_space():
    cat = Catalogue.from_frame(pd.DataFrame({"item": ["a", "new"], "title": ["A", "New"]}))
    data = dataset([("u", "a", "view", 1)], cat)
    assert data.items.ids.tolist() == ["a", "new"] and data.item_popularity().tolist() == [1, 0]


def test_an_empty_log_cannot_become_a_dataset():
    empty = Interactions.from_frame(
        pd.DataFrame(columns=["user", "item", "event", "timestamp"]), "nothing"
    )
    with pytest.raises(EmptyDataError, match="nothing: the interaction log is empty."):
        Dataset.from_interactions(empty)


def test_subset_keeps_the_vocabularies(tiny_shop):
    part = tiny_shop.subset(tiny_shop.event == EVENT_TYPES.index("purchase"))
    assert len(part) == 6 and part.users == tiny_shop.users and part.items == tiny_shop.items
    assert part.active_users().tolist() == list(range(6))


# --- splits ----------------------------------------------------------------------------------------


def test_leave_one_out_holds_out_each_users_last_two_events_by_time():
    # Rows are given out of time order: the split must follow timestamps, not the file.
    data = dataset(
        [
            ("a", "a3", "view", 3),
            ("a", "a1", "view", 1),
            ("a", "a4", "view", 4),
            ("a", "a2", "view", 2),
            ("b", "b2", "view", 2),
            ("b", "b1", "view", 1),
            ("c", "c1", "view", 1),
            ("c", "c2", "view", 2),
            ("c", "c3", "view", 3),
        ]
    )
    parts = leave_one_out(data)
    assert parts.protocol == "loo"
    assert targets(data, parts.test) == {"a": {"a4"}, "c": {"c3"}}
    assert targets(data, parts.valid) == {"a": {"a3"}, "c": {"c2"}}
    # b has fewer than 3 events: it stays wholly in training and is not evaluated.
    assert sorted(pairs(parts.train)) == [
        ("a", "a1"),
        ("a", "a2"),
        ("b", "b1"),
        ("b", "b2"),
        ("c", "c1"),
    ]
    # The test prediction sees the validation item as history (SASRec's protocol).
    assert sorted(pairs(parts.test_history)) == sorted(
        pairs(parts.train) + [("a", "a3"), ("c", "c2")]
    )
    assert data.users.id_of(parts.test_users).tolist() == ["a", "c"]
    assert parts.train.users == data.users and parts.train.items == data.items


def test_leave_one_out_min_history_decides_who_is_evaluated(tiny_shop):
    assert leave_one_out(tiny_shop, min_history=5).test.nnz == 0
    assert leave_one_out(tiny_shop).test.nnz == 6


def test_temporal_split_puts_the_latest_events_in_test():
    rows = [(f"u{t % 7}", f"i{t % 11}", "view", t) for t in range(100)]
    data = dataset(rows)
    parts = temporal_split(data, test_fraction=0.2, valid_fraction=0.1)
    assert parts.protocol == "temporal"
    assert (
        parts.test.nnz + parts.valid.nnz + len(parts.train) >= 90
    )  # a pair may repeat within a part
    assert parts.train.timestamp.max() < 70
    test_times = data.timestamp[data.timestamp > np.quantile(data.timestamp, 0.8, method="lower")]
    assert test_times.min() >= 80 and len(test_times) == 20
    assert len(parts.test_history) == 80 and parts.test_history.timestamp.max() < 80


def test_random_holdout_is_deterministic_for_a_seed(synthetic_shop):
    one, same, other = (random_holdout(synthetic_shop, 0.2, 0.1, seed=s) for s in (3, 3, 4))
    assert (one.test != same.test).nnz == 0 and (one.valid != same.valid).nnz == 0
    assert np.array_equal(one.train.item_idx, same.train.item_idx)
    assert (one.test != other.test).nnz > 0
    n = len(synthetic_shop)
    assert 0.15 * n < n - len(one.test_history) < 0.25 * n  # about 20% of events are test
    assert 0.05 * n < len(one.test_history) - len(one.train) < 0.15 * n  # about 10% validation


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda d: temporal_split(d, test_fraction=1.5),
            "The 'test_fraction' parameter of temporal_split must be a number in [0.0, 0.9]. Got 1.5 instead.",
        ),
        (
            lambda d: random_holdout(d, valid_fraction="a"),
            "The 'valid_fraction' parameter of random_holdout must be a number in [0.0, 0.9]. Got 'a' (str) instead.",
        ),
        (lambda d: random_holdout(d, 0.6, 0.5), "test_fraction + valid_fraction must be below 1."),
        (
            lambda d: split(d, "kfold"),
            "The 'protocol' parameter of split must be one of ['loo', 'temporal', 'random']. Got 'kfold' instead.",
        ),
    ],
)
def test_invalid_split_parameters_are_named(tiny_shop, call, message):
    with pytest.raises(ConfigError) as exc:
        call(tiny_shop)
    assert message in str(exc.value)


def test_split_dispatches_by_protocol_name(tiny_shop):
    assert [split(tiny_shop, p, seed=1).protocol for p in ("loo", "temporal", "random")] == [
        "loo",
        "temporal",
        "random",
    ]


# --- k-core ----------------------------------------------------------------------------------------


def test_k_core_removes_users_and_items_until_both_thresholds_hold():
    # x is bought by a, b, c; y by a, b; z by c only. With k=2: z goes, then c has 1 item (x) and
    # goes, then x has 2 users: a, b, x, y survive. The cascade needs more than one round.
    rows = [
        (u, i, "purchase", t)
        for t, (u, i) in enumerate(
            [("a", "x"), ("a", "y"), ("b", "x"), ("b", "y"), ("c", "x"), ("c", "z"), ("a", "x")]
        )
    ]
    core = k_core(dataset(rows), k_users=2, k_items=2)
    assert core.users.ids.tolist() == ["a", "b"] and core.items.ids.tolist() == ["x", "y"]
    assert len(core) == 5  # a's repeated purchase of x stays: the core counts distinct pairs


def test_k_core_result_satisfies_the_thresholds(synthetic_shop):
    core = k_core(synthetic_shop, 10, 15)
    binary = core.matrix(binary=True)
    assert binary.sum(axis=1).min() >= 10 and binary.sum(axis=0).min() >= 15
    assert core.n_users == len(np.unique(core.user_idx)) and core.n_items == len(
        np.unique(core.item_idx)
    )


def test_k_core_with_no_survivors_is_an_empty_data_error(tiny_shop):
    with pytest.raises(EmptyDataError, match=r"Nothing survives a \(5, 5\)-core filter."):
        k_core(tiny_shop, 5, 5)
