"""Storage on SQLite and PostgreSQL: migrations, idempotent and atomic writes, durability."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
from serve_helpers import SCHEMA_HEAD
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from shoprec.serve.storage import Store
from shoprec.serve.tables import Base


def _event(i: int, shopper: str = "k.s1", item: str = "i1") -> dict:
    return {"event_id": f"e{i}", "shopper": shopper, "item_id": item, "event": "view", "ts": i,
            "value": None, "impression_id": None}


@pytest.fixture
def store(database_url):
    s = Store(database_url)
    s.migrate()
    yield s
    s.dispose()


def test_migration_reaches_head_and_is_idempotent(store):
    assert store.schema_revision() == SCHEMA_HEAD
    store.migrate()  # a second run changes nothing
    assert store.schema_revision() == SCHEMA_HEAD


def test_migrations_create_exactly_the_declared_tables(store):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_downgrade_removes_every_table(store):
    store.downgrade("base")
    from sqlalchemy import inspect

    assert set(inspect(store.engine).get_table_names()) <= {"alembic_version"}
    store.migrate()
    assert store.count_events() == 0


def test_retried_batch_is_stored_once(store):
    batch = [_event(i) for i in range(5)]
    assert store.add_events(batch) == {f"e{i}" for i in range(5)}
    assert store.add_events(batch) == set()
    assert store.add_events(batch + [_event(9)]) == {"e9"}
    assert store.count_events() == 6


def test_duplicate_ids_inside_one_batch_count_once(store):
    assert store.add_events([_event(1), _event(1), _event(2)]) == {"e1", "e2"}
    assert store.count_events() == 2


def test_failing_batch_stores_nothing_and_keeps_what_was_accepted(store):
    store.add_events([_event(1)])
    bad = [_event(2), _event(3), {**_event(4), "shopper": None}]  # NOT NULL violated at the end
    with pytest.raises(IntegrityError):
        store.add_events(bad)
    assert store.count_events() == 1
    assert store.history(["k.s1"], 10) == (["i1"], ["view"])


def test_concurrent_retries_of_one_batch_store_it_once(store):
    batch = [_event(i) for i in range(50)]
    results: list[set] = []

    def send():
        results.append(store.add_events(batch))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(len(r) for r in results) == 50
    assert store.count_events() == 50


def test_history_is_latest_events_oldest_first_across_pseudonyms(store):
    store.add_events([_event(1, item="a"), _event(2, item="b"), _event(3, shopper="old.s1", item="c"),
                      _event(4, item="d"), _event(5, shopper="k.other", item="z")])
    assert store.history(["k.s1", "old.s1"], 3) == (["b", "c", "d"], ["view"] * 3)


def test_upsert_keeps_creation_time_and_counts_created_and_updated(store):
    row = {"item_id": "i1", "title": "mug", "category": "kitchen", "price": 3.5, "active": True}
    assert store.upsert_items([row]) == (1, 0)
    created = store.get_item("i1")["created_at"]
    assert store.upsert_items([{**row, "title": "red mug"}, {**row, "item_id": "i2"}]) == (1, 1)
    item = store.get_item("i1")
    assert item["title"] == "red mug" and item["created_at"] == created
    assert store.patch_item("i1", {"price": None})["price"] is None
    assert store.patch_item("missing", {"price": 1.0}) is None


def test_erase_removes_events_and_impressions_in_one_go(store):
    store.add_events([_event(1), _event(2, shopper="k.other")])
    store.log_impressions([{"impression_id": "a" * 32, "position": 0, "shopper": "k.s1", "item_id": "i1",
                            "score": 1.0, "propensity": 0.5, "explored": True, "reason": "exploring",
                            "policy": "p", "model": "m", "created_at": 1}])
    assert store.export_shopper(["k.s1"])["impressions"][0]["propensity"] == 0.5
    assert store.erase_shopper(["k.s1"]) == (1, 1)
    assert store.export_shopper(["k.s1"]) == {"events": [], "impressions": [], "states": []}
    assert store.count_events() == 1


def test_sqlite_runs_in_wal_mode(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'wal.db'}")
    store.migrate()
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    store.dispose()


def test_accepted_events_survive_a_killed_process(database_url):
    # The writer commits, then dies without closing anything (as kill -9 would leave it).
    first = Store(database_url)
    first.migrate()
    first.dispose()
    code = (
        "import os, sys\n"
        "from shoprec.serve.storage import Store\n"
        "s = Store(sys.argv[1])\n"
        "s.add_events([{'event_id': f'x{i}', 'shopper': 'k.s', 'item_id': 'i', 'event': 'view',"
        " 'ts': i, 'value': None, 'impression_id': None} for i in range(20)])\n"
        "os._exit(9)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, database_url], capture_output=True, timeout=60,
                          check=False)
    assert proc.returncode == 9, proc.stderr.decode()
    store = Store(database_url)
    assert store.count_events() == 20
    store.dispose()
