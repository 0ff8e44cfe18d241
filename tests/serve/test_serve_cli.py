"""`shoprec serve` and the demo bootstrap (on a small stand-in for the bundled shop)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from shoprec.cli import main
from shoprec.cli.serve import add_parser as add_serve_parser
from shoprec.data.readers import LoadedData
from shoprec.data.schema import Catalogue, Interactions, QualityReport
from shoprec.serve import demo
from shoprec.serve.storage import Store


@pytest.fixture
def small_shop(monkeypatch) -> LoadedData:
    """40 shoppers, 12 items in 3 categories; stands in for load_demo() (which takes seconds)."""
    rng = np.random.default_rng(3)
    rows = [(f"c{u}", f"p{(u % 3) * 4 + int(j)}", "purchase", 1_300_000_000 + 60 * t)
            for u in range(40) for t, j in enumerate(rng.integers(0, 4, size=6))]
    log = Interactions.from_frame(pd.DataFrame(rows, columns=["user", "item", "event", "timestamp"]), "small")
    cat = Catalogue.from_frame(pd.DataFrame({
        "item": [f"p{i}" for i in range(12)], "title": [f"product {i}" for i in range(12)],
        "category": [f"cat{i // 4}" for i in range(12)], "price": np.arange(12) + 0.5}))
    loaded = LoadedData(log, cat, QualityReport("small"))
    monkeypatch.setattr(demo, "_load_shop", lambda: loaded)
    return loaded


def test_serve_parser_takes_the_documented_options():
    parser = argparse.ArgumentParser(prog="shoprec")
    add_serve_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--db", "sqlite:///x.db", "--host", "0.0.0.0", "--port", "9000",
                              "--model", "m.npz", "--demo"])
    assert (args.database_url, args.host, args.port, args.model_path, args.demo) == (
        "sqlite:///x.db", "0.0.0.0", 9000, "m.npz", True)


def test_demo_bootstrap_imports_pseudonymised_data_and_trains_a_model_once(small_shop, tmp_path, pseudonymizer):
    store = Store(f"sqlite:///{tmp_path / 'data' / 'shop.db'}")
    store.migrate()
    state = demo.bootstrap_demo(store, pseudonymizer, tmp_path / "models", n_samples=3)
    assert store.count_items() == 12 and store.count_events() == 240
    assert len(state.sample_shoppers) == 3 and all(s.startswith("c") for s in state.sample_shoppers)
    info = json.loads(state.model_path.with_suffix(".json").read_text())
    assert "NDCG@10" in info["metrics"] and info["privacy"]["dp"] is False
    from shoprec.models.base import Recommender

    model = Recommender.load(state.model_path)
    assert all(u.startswith("test.") for u in model.users_.ids)  # no raw shopper id in the model file
    stamp = state.model_path.stat().st_mtime_ns
    demo.bootstrap_demo(store, pseudonymizer, tmp_path / "models")  # a second start changes nothing
    assert store.count_events() == 240 and state.model_path.stat().st_mtime_ns == stamp
    store.dispose()


def test_serve_demo_builds_the_app_and_prints_the_url(small_shop, tmp_path, monkeypatch, capsys):
    import uvicorn

    for name in ("SHOPREC_PSEUDONYM_KEY", "SHOPREC_PSEUDONYM_KEY_FILE", "SHOPREC_ADMIN_KEY", "SHOPREC_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    ran = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: ran.update(app=app, **kw))
    assert main(["serve", "--demo", "--port", "8123", "--quiet"]) == 0
    assert "shoprec service on http://127.0.0.1:8123/" in capsys.readouterr().out
    service = ran["app"].state.service
    assert ran["port"] == 8123 and service.settings.demo and not hasattr(service, "demo_key")
    # Connections are bounded: a request must arrive within the deadline, idle ones are closed.
    assert ran["http"].request_timeout_s == service.settings.request_timeout_s
    assert ran["timeout_keep_alive"] == service.settings.idle_timeout_s
    assert service.engine.model_view.name == "item-knn" and len(service.sample_shoppers) == 6
    assert (tmp_path / "config" / "shoprec" / "pseudonym.key").is_file()  # the key lives apart
    assert not list((tmp_path / "data").rglob("*.key"))


def test_serve_without_a_pseudonym_key_fails_with_what_to_set(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("SHOPREC_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("SHOPREC_PSEUDONYM_KEY_FILE", raising=False)
    assert main(["serve", "--db", f"sqlite:///{tmp_path / 'x.db'}"]) == 2
    assert "SHOPREC_PSEUDONYM_KEY" in capsys.readouterr().err
