"""Cleaning: every finding is counted with its action, and the policy decides what happens."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from shoprec.data.clean import DEFAULT_MIN_TIMESTAMP, CleanPolicy, clean, to_epoch, to_epoch_seconds
from shoprec.errors import ConfigError, DataError

T0 = 1_300_000_000  # 2011-03-13, inside the default window


def frame(
    rows: list[tuple], columns=("user", "item", "event", "timestamp", "value")
) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(columns))


def dropped(report) -> int:
    return sum(n for k, n in report.counts.items() if report.actions[k] == "dropped")


def test_default_policy_is_documented_and_safe():
    policy = CleanPolicy()
    assert policy.drop_duplicates and policy.drop_nonpositive_quantity and policy.drop_out_of_range
    assert policy.unknown_events == "drop" and policy.cancellations == "drop"
    assert policy.event_map["pv"] == "view" and policy.event_map["buy"] == "purchase"
    low, high = policy.window()
    assert low == DEFAULT_MIN_TIMESTAMP == to_epoch("1990-01-01")
    assert abs(high - (time.time() + 86_400)) < 60


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"unknown_events": "ignore"},
            "The 'unknown_events' parameter of CleanPolicy must be one of ['drop', 'error']. Got 'ignore' instead.",
        ),
        (
            {"cancellations": "keep"},
            "The 'cancellations' parameter of CleanPolicy must be one of ['drop', 'net']. Got 'keep' instead.",
        ),
        (
            {"event_map": {"click": "clicked"}},
            "must map onto ['view', 'cart', 'favourite', 'purchase', 'rating']. Got {'click': 'clicked'} instead.",
        ),
        (
            {"min_timestamp": "not a date"},
            "The 'min_timestamp' parameter must be epoch seconds, an ISO date string or a datetime. Got 'not a date' instead.",
        ),
        ({"max_timestamp": [1]}, "The 'max_timestamp' parameter must be epoch seconds"),
    ],
)
def test_invalid_policy_names_the_parameter(kwargs, message):
    with pytest.raises(ConfigError) as exc:
        CleanPolicy(**kwargs)
    assert message in str(exc.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1_500_000_000, 1_500_000_000),
        ("2017-11-25T00:00:00+08:00", 1_511_539_200),
        ("1990-01-01", 631_152_000),
        (datetime(2000, 1, 1), 946_684_800),  # naive means UTC
        (datetime(2000, 1, 1, tzinfo=UTC), 946_684_800),
        (None, None),
    ],
)
def test_to_epoch_accepts_seconds_iso_strings_and_datetimes(value, expected):
    assert to_epoch(value) == expected


def test_to_epoch_seconds_parses_numbers_iso_dates_and_marks_the_rest_nan():
    values = pd.Series(
        ["1300000000", "2010-12-01 08:26:00", "2010-12-01T08:26:00Z", "yesterday", None],
        dtype="str",
    )
    out = to_epoch_seconds(values)
    assert out[:3].tolist() == [1_300_000_000, 1_291_191_960, 1_291_191_960]
    assert np.isnan(out[3]) and np.isnan(out[4])
    stamps = pd.Series(pd.to_datetime(["2010-12-01 08:26:00", None]))
    assert to_epoch_seconds(stamps)[0] == 1_291_191_960 and np.isnan(to_epoch_seconds(stamps)[1])


def test_to_epoch_seconds_falls_back_to_other_layouts_for_non_iso_exports():
    out = to_epoch_seconds(pd.Series(["12/1/2010 8:26", "12/9/2011 12:50"], dtype="str"))
    assert out.tolist() == [1_291_191_960, 1_323_435_000]


def test_clean_counts_each_finding_once_with_its_action():
    rows = [
        ("u1", "i1", "purchase", T0, 2),  # good
        ("u1", "i1", "purchase", T0, 2),  # exact duplicate
        ("", "i1", "view", T0, None),  # missing user
        ("u2", None, "view", T0, None),  # missing item
        ("u2", "i2", "view", None, None),  # missing timestamp
        ("u2", "i2", "view", "someday", None),  # unparseable timestamp
        ("u2", "i2", "teleport", T0, None),  # unknown event
        ("u2", "i2", "purchase", T0, "lots"),  # unparseable value
        ("u2", "i2", "purchase", T0, -1),  # negative quantity
        ("u2", "i2", "cart", T0, 0),  # zero quantity
        ("u2", "i2", "view", 100, None),  # 1970: out of range
        ("u2", "i2", "view", int(time.time()) + 3 * 86_400, None),  # 3 days ahead
        ("u2", "i3", "PV", T0 + 1, None),  # a known alias, repaired
        ("u3", "i3", "rating", "2011-03-13 12:00:00", "4.5"),  # good, ISO time
        (None, None, None, None, None),  # missing user counts first
    ]
    out, report = clean(frame(rows), "shop.csv")
    assert report.source == "shop.csv"
    assert report.counts == {
        "missing_user": 2,
        "missing_item": 1,
        "missing_timestamp": 1,
        "unparseable_timestamp": 1,
        "events_renamed": 1,
        "unknown_event": 1,
        "unparseable_value": 1,
        "nonpositive_quantity": 2,
        "timestamp_out_of_range": 2,
        "exact_duplicates": 1,
    }
    assert report.actions["events_renamed"] == "repaired"
    assert {a for k, a in report.actions.items() if k != "events_renamed"} == {"dropped"}
    assert report.rows_read == len(rows) and report.rows_kept == len(out) == 3
    assert report.rows_read == report.rows_kept + dropped(report)
    assert out["user"].tolist() == ["u1", "u2", "u3"]
    assert out["event"].astype(str).tolist() == ["purchase", "view", "rating"]
    assert out["timestamp"].tolist() == [T0, T0 + 1, 1_300_017_600]
    assert out["timestamp"].dtype == np.int64 and out["value"].dtype == np.float64
    assert out.index.tolist() == [0, 12, 13]  # source rows can be joined back


def test_policy_can_keep_what_it_would_drop_and_says_so():
    rows = [
        ("u1", "i1", "purchase", T0, 1),
        ("u1", "i1", "purchase", T0, 1),
        ("u1", "i2", "purchase", T0, -2),
        ("u1", "i3", "view", 5, None),
    ]
    policy = CleanPolicy(
        drop_duplicates=False, drop_nonpositive_quantity=False, drop_out_of_range=False
    )
    out, report = clean(frame(rows), "log", policy)
    assert len(out) == 4
    assert report.actions == {
        "nonpositive_quantity": "kept",
        "timestamp_out_of_range": "kept",
        "exact_duplicates": "kept",
    }
    assert report.counts == {
        "nonpositive_quantity": 1,
        "timestamp_out_of_range": 1,
        "exact_duplicates": 1,
    }


def test_time_window_is_inclusive_and_configurable():
    rows = [("u", "i", "view", t, None) for t in (999, 1000, 2000, 2001)]
    out, report = clean(
        frame(rows), "log", CleanPolicy(min_timestamp=1000, max_timestamp="1970-01-01T00:33:20Z")
    )
    assert out["timestamp"].tolist() == [1000, 2000]
    assert report.counts == {"timestamp_out_of_range": 2}


def test_unknown_events_can_be_an_error_naming_them():
    rows = [("u", "i", "view", T0, None), ("u", "i", "teleport", T0, None)]
    with pytest.raises(DataError, match=r"log: unknown event types \['teleport'\]"):
        clean(frame(rows), "log", CleanPolicy(unknown_events="error"))


def test_event_map_is_case_insensitive_and_extends_the_defaults():
    rows = [("u", "i", "Basket", T0, None), ("u", "i", "BUY", T0 + 1, None)]
    out, report = clean(
        frame(rows), "log", CleanPolicy(event_map={"basket": "cart", "buy": "purchase"})
    )
    assert out["event"].astype(str).tolist() == ["cart", "purchase"]
    assert report.counts == {"events_renamed": 2}


def test_without_event_or_value_columns_rows_are_purchases_without_value():
    out, report = clean(frame([("u", 7, T0)], ("user", "item", "timestamp")), "log")
    assert out["event"].astype(str).tolist() == ["purchase"]
    assert out["item"].tolist() == ["7"] and np.isnan(out["value"].iloc[0])
    assert report.counts == {}


def test_ordinal_time_skips_the_window_and_the_duplicate_check():
    rows = [("u", "i", "purchase", 1, None), ("u", "i", "purchase", 2, None)]
    out, report = clean(frame(rows), "seq.txt", ordinal_time=True)
    assert len(out) == 2 and report.counts == {}


def test_integral_float_ids_lose_their_decimal_point():
    out, _ = clean(frame([(17850.0, 3.0, "view", T0, None)]), "log")
    assert out["user"].tolist() == ["17850"] and out["item"].tolist() == ["3"]


def test_findings_are_added_to_a_readers_report():
    from shoprec.data.schema import QualityReport

    report = QualityReport("file.csv", rows_read=10)
    report.add("cancellations", 8, "dropped")
    _, same = clean(
        frame([("u", "i", "view", T0, None), ("u", "i", "view", T0, None)]),
        "file.csv",
        report=report,
    )
    assert same is report
    assert report.rows_read == 10 and report.rows_kept == 1
    assert report.counts == {"cancellations": 8, "exact_duplicates": 1}


def test_a_frame_without_required_columns_is_an_error():
    with pytest.raises(DataError, match="log: the interaction frame lacks the column 'timestamp'"):
        clean(pd.DataFrame({"user": ["u"], "item": ["i"]}), "log")
