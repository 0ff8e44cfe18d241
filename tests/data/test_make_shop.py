"""scripts/make_shop.py: the synthetic shop behind the scale benchmark has the shape it claims."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from make_shop import main, make_shop


def test_the_log_has_a_funnel_sessions_in_time_order_and_a_popularity_head():
    log, items = make_shop(50_000, 1_000, seed=3)
    assert abs(len(log) - 50_000) < 500 and len(items) == 1_000
    counts = log["event"].value_counts()
    assert abs(counts["cart"] / counts["view"] - 0.12) < 0.01
    assert abs(counts["purchase"] / counts["cart"] - 0.35) < 0.03
    # Every cart follows a view of the same item by the same shopper; every purchase a cart.
    views = set(zip(log.loc[log.event == "view", "user"], log.loc[log.event == "view", "item"]))
    assert all(pair in views for pair in zip(log.loc[log.event == "cart", "user"], log.loc[log.event == "cart", "item"]))
    assert (log.groupby("user")["timestamp"].diff().dropna() >= 0).all()
    popularity = np.sort(log["item"].value_counts().to_numpy())[::-1]
    assert popularity[: len(popularity) // 10].sum() > 0.3 * popularity.sum()  # the top 10% of items: >30% of events
    assert set(log["item"]) <= set(items["item"]) and items["title"].str.len().min() > 0


def test_the_command_writes_files_shoprec_reads(tmp_path, capsys):
    from shoprec.data.readers import load

    assert main(["--events", "5000", "--items", "200", "--out", str(tmp_path)]) == 0
    data = load(tmp_path / "events.csv.gz", "csv", catalogue=tmp_path / "catalogue.csv").dataset()
    assert len(data) > 4_900 and data.n_items <= 200 and "events" in capsys.readouterr().out
