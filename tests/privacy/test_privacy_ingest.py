"""Ingestion: raw ids and direct identifiers never pass; keys are required and checked."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest

from shoprec.data.readers import load
from shoprec.errors import ConfigError
from shoprec.privacy.ingest import (
    coarsen_timestamps,
    drop_direct_identifiers,
    ingest,
    ingest_file,
    write_log,
)
from shoprec.privacy.pseudonym import ENV_KEY, ENV_KEY_FILE, Pseudonymizer


def test_ingest_drops_identifiers_and_replaces_ids_with_pseudonyms(raw_events, pseudonymizer, tmp_path):
    log, report = ingest(raw_events, pseudonymizer, user_column="customer_id")
    assert sorted(report.dropped_columns) == ["email", "reviewerName"]
    assert report.key_id == "k2026" and report.shoppers == 6 and report.rows == len(raw_events)
    stored = write_log(log, tmp_path / "events.csv.gz")
    with gzip.open(stored, "rt") as fh:
        text = fh.read()
    for raw in raw_events["customer_id"].unique().tolist() + ["alice", "Alice", "example.com"]:
        assert raw not in text
    assert pseudonymizer("CUST-1000") in text
    assert "CUST" not in json.dumps(report.as_dict())


def test_the_stored_log_reads_back_with_the_same_events(raw_events, pseudonymizer, tmp_path):
    log, _ = ingest(raw_events, pseudonymizer, user_column="customer_id")
    back = load(write_log(log, tmp_path / "events.csv"), "shoprec").interactions
    assert len(back) == len(raw_events)
    assert set(back.frame["user"]) == {pseudonymizer(u) for u in raw_events["customer_id"].unique()}


def test_coarsened_timestamps_keep_each_shoppers_order(raw_events, pseudonymizer):
    log, report = ingest(raw_events, pseudonymizer, user_column="customer_id", coarsen="day")
    assert report.timestamp_granularity_s == 86_400
    assert (log.frame["timestamp"] % 86_400 == 0).all()
    from shoprec.data.dataset import Dataset

    data = Dataset.from_interactions(log)
    alice = data.users.index([pseudonymizer("CUST-1000")])[0]
    assert data.items.id_of(data.history(alice)).tolist() == ["i1", "i2", "i3", "i4", "i5"]


def test_coarsening_floors_to_the_granularity():
    np.testing.assert_array_equal(coarsen_timestamps(np.array([0, 3599, 3600, 7201]), "hour"), [0, 0, 3600, 7200])
    np.testing.assert_array_equal(coarsen_timestamps(np.array([10, 25]), 10), [10, 20])


@pytest.mark.parametrize("granularity", ["fortnight", 0, -5, 2.5, True])
def test_a_bad_granularity_is_refused(granularity):
    with pytest.raises(ConfigError, match="'coarsen'"):
        coarsen_timestamps(np.array([1]), granularity)


def test_direct_identifiers_match_whatever_the_spelling():
    frame = pd.DataFrame(columns=["user", "E-Mail", "Reviewer Name", "phone_number", "item", "IP"])
    kept, dropped = drop_direct_identifiers(frame)
    assert sorted(dropped) == ["E-Mail", "IP", "Reviewer Name", "phone_number"]
    assert list(kept.columns) == ["user", "item"]


def test_ingest_without_a_pseudonymizer_is_refused(raw_events):
    with pytest.raises(ConfigError, match="Pseudonymizer"):
        ingest(raw_events, "my-secret", user_column="customer_id")


def test_a_missing_key_is_a_clear_error():
    with pytest.raises(ConfigError, match=f"No pseudonym key configured. Set {ENV_KEY}"):
        Pseudonymizer.from_env({})


def test_a_short_key_is_a_clear_error():
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        Pseudonymizer.from_env({ENV_KEY: "too-short"})


def test_a_key_file_inside_the_data_directory_is_refused(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    key = data_dir / "key"
    key.write_text("k1 " + "x" * 40 + "\n")
    with pytest.raises(ConfigError, match="inside the data directory"):
        Pseudonymizer.from_env({ENV_KEY_FILE: str(key)}, data_dir=data_dir)


def test_a_missing_key_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="Cannot read the pseudonym key file"):
        Pseudonymizer.from_env({ENV_KEY_FILE: str(tmp_path / "nope")})


def test_ingest_file_reads_any_format_and_stores_only_pseudonyms(pseudonymizer, tmp_path):
    src = tmp_path / "reviews.json"
    src.write_text(
        "\n".join(
            json.dumps({"reviewerID": f"A{u}XYZ", "reviewerName": f"Name {u}", "asin": f"B{i}",
                        "overall": 5.0, "unixReviewTime": 1_600_000_000 + i, "reviewText": "loved it"})
            for u in range(3) for i in range(4)
        )
    )
    report = ingest_file(src, "amazon-json", pseudonymizer, tmp_path / "store" / "events.csv", coarsen="week")
    stored = (tmp_path / "store" / "events.csv").read_text()
    assert report.rows == 12 and report.shoppers == 3
    for secret in ("A0XYZ", "Name 0", "loved it"):
        assert secret not in stored
