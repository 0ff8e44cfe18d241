"""The `shoprec` command line, end to end on a tiny CSV log."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from shoprec.cli import main


@pytest.fixture
def tiny_csv(tmp_path, synthetic_shop):
    """The synthetic shop written as a generic CSV with the shop's own column names."""
    d = synthetic_shop
    frame = pd.DataFrame(
        {
            "customer": d.users.id_of(d.user_idx),
            "sku": d.items.id_of(d.item_idx),
            "ts": d.timestamp,
        }
    )
    path = tmp_path / "log.csv"
    frame.to_csv(path, index=False)
    return path


def test_evaluate_writes_json_and_export(tmp_path, tiny_csv, capsys):
    out_json, out_export = tmp_path / "r.json", tmp_path / "top.tsv"
    code = main([
        "evaluate", "--data", str(tiny_csv), "--format", "csv", "--mapping", "user=customer,item=sku,timestamp=ts",
        "--model", "item-knn", "--k", "10", "--json", str(out_json), "--export", str(out_export), "--quiet",
    ])
    assert code == 0
    report = json.loads(out_json.read_text())
    assert report["model"] == "item-knn" and report["protocol"] == "loo" and report["sampled"] is False
    assert set(report) >= {"model", "data", "protocol", "sampled", "metrics", "fit_seconds", "eval_seconds", "n_users", "n_items"}
    assert 0.0 <= report["metrics"]["NDCG@10"] <= report["metrics"]["HR@10"] <= 1.0
    lines = out_export.read_text().splitlines()
    assert len(lines) == report["n_users_evaluated"]
    user, items = lines[0].split("\t")
    assert user.startswith("u") and len(items.split(" ")) == 10
    assert "NDCG@10" in capsys.readouterr().out


def test_sampled_protocol_is_labelled_as_sampled(tmp_path, tiny_csv, capsys):
    out_json = tmp_path / "r.json"
    code = main([
        "evaluate", "--data", str(tiny_csv), "--format", "csv", "--mapping", "user=customer,item=sku,timestamp=ts",
        "--model", "pop", "--sampled", "20", "--json", str(out_json), "--quiet",
    ])
    assert code == 0
    report = json.loads(out_json.read_text())
    assert report["sampled"] is True
    assert "SAMPLED" in capsys.readouterr().out


def test_unknown_model_is_a_clear_error(tiny_csv, capsys):
    code = main(["evaluate", "--data", str(tiny_csv), "--format", "csv", "--mapping",
                 "user=customer,item=sku,timestamp=ts", "--model", "nope", "--quiet"])
    assert code == 2
    assert "Unknown model 'nope'" in capsys.readouterr().err


def test_missing_file_is_a_clear_error(tmp_path, capsys):
    code = main(["data", "report", "--data", str(tmp_path / "absent.csv"), "--format", "csv"])
    assert code == 2
    assert "absent.csv" in capsys.readouterr().err


def test_train_then_recommend_from_saved_model(tmp_path, tiny_csv, capsys):
    code = main(["train", "--data", str(tiny_csv), "--format", "csv", "--mapping", "user=customer,item=sku,timestamp=ts",
                 "--model", "pop", "--out", str(tmp_path / "m"), "--quiet"])
    assert code == 0
    path = capsys.readouterr().out.strip()
    assert main(["recommend", "--model-path", path, "--user", "u1", "--k", "3"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3
    assert main(["recommend", "--model-path", path, "--history", "i1,i2,unknown", "--k", "2"]) == 0
    printed = capsys.readouterr()
    assert len(printed.out.strip().splitlines()) == 2
    assert "does not know these item ids and ignores them: unknown" in printed.err
    # A history the model knows nothing of is an error, not a list of arbitrary zero-scored items.
    assert main(["recommend", "--model-path", path, "--history", "NOPE1,NOPE2"]) == 2
    printed = capsys.readouterr()
    assert printed.out == "" and "knows none of the --history item ids (NOPE1, NOPE2)" in printed.err
    assert main(["recommend", "--model-path", path, "--history", " , "]) == 2
    assert "--history names no item id" in capsys.readouterr().err


def test_data_report_counts_dropped_rows(tmp_path, capsys):
    path = tmp_path / "log.csv"
    path.write_text(
        "user,item,timestamp\nu1,i1,1700000000\nu1,i1,1700000000\nu2,,1700000100\nu2,i2,1700000200\n"
    )
    assert main(["data", "report", "--data", str(path), "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert "rows read 4, kept 2" in out
    assert "duplicate" in out and "missing_item" in out


def test_a_mistyped_parameter_is_one_line_that_names_it_and_lists_the_parameters(tiny_csv, tmp_path, capsys):
    code = main(["train", "--data", str(tiny_csv), "--format", "csv", "--mapping", "user=customer,item=sku,timestamp=ts",
                 "--model", "als", "--param", "factor=32", "--out", str(tmp_path / "m")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("shoprec: error: Model 'als' has no parameter 'factor'. Did you mean 'factors'?")
    assert "Its parameters: factors, regularization, alpha, iterations" in err
    assert not (tmp_path / "m").exists()


def test_a_bad_parameter_value_is_one_line_naming_the_parameter(tiny_csv, tmp_path, capsys):
    code = main(["evaluate", "--data", str(tiny_csv), "--format", "csv", "--mapping", "user=customer,item=sku,timestamp=ts",
                 "--model", "transformer", "--param", "lr=-1", "--quiet"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err == "shoprec: error: The 'lr' parameter of TransformerConfig must be a number in [1e-08, 10.0]. Got -1.0 instead."


def test_models_params_lists_every_parameter_with_its_default_and_a_line_of_help(capsys):
    assert main(["models", "--params", "ncf"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Parameters of ncf (shoprec.models.ncf.NCF)")
    rows = {line.split()[0]: line for line in out[1:]}
    assert rows["hidden"].split()[1] == "[64," and "MLP tower" in rows["hidden"]
    assert rows["loss"].split()[1] == "sampled" and rows["epochs"].split()[1] == "100"


def test_every_parameter_of_every_registered_model_is_documented():
    from shoprec.models.registry import model_class, model_names

    missing = {name: [k for k, doc in model_class(name).param_docs().items() if not doc] for name in model_names()}
    assert not {k: v for k, v in missing.items() if v}


def test_train_writes_the_model_and_a_sidecar_saying_what_it_was_trained_on(tmp_path, tiny_csv, capsys):
    code = main(["train", "--data", str(tiny_csv), "--format", "csv", "--mapping", "user=customer,item=sku,timestamp=ts",
                 "--model", "transformer", "--param", "epochs=2", "--param", "d=8", "--param", "device=cpu",
                 "--protocol", "none", "--out", str(tmp_path / "m"), "--quiet"])
    assert code == 0
    sidecar = json.loads((tmp_path / "m" / "transformer.json").read_text())
    assert sidecar["model"] == "transformer" and sidecar["split"] == "none" and sidecar["world_size"] == 1
    assert sidecar["metrics"] == {} and sidecar["privacy"]["dp"] is False and sidecar["pseudonymised"] is None
    assert sidecar["params"]["d"] == 8 and len(sidecar["training_log"]) == 2
    assert sidecar["n_events"] > 0 and sidecar["trained_at"].endswith("+00:00")


def test_train_on_a_split_puts_the_held_out_metrics_in_the_sidecar_and_pseudonymises_with_the_key(
        tmp_path, tiny_csv, monkeypatch):
    monkeypatch.setenv("SHOPREC_PSEUDONYM_KEY", "k" * 40)
    code = main(["train", "--data", str(tiny_csv), "--format", "csv", "--mapping", "user=customer,item=sku,timestamp=ts",
                 "--model", "item-knn", "--out", str(tmp_path / "m"), "--quiet"])
    assert code == 0
    sidecar = json.loads((tmp_path / "m" / "item-knn.json").read_text())
    assert 0 <= sidecar["metrics"]["NDCG@10"] <= 1 and sidecar["protocol"] == "leave-one-out, full ranking"
    assert sidecar["pseudonymised"] and sidecar["data_window"]["last_event"] >= sidecar["data_window"]["first_event"]
    from shoprec.models.base import Recommender

    users = Recommender.load(tmp_path / "m" / "item-knn.npz").users_.ids
    assert not any(u.startswith("u") for u in users)  # no raw shopper id in the model file


def _store_events(url, d, start=0, stop=None, prefix="e", ts_offset=0):
    from shoprec.serve.storage import Store

    store = Store(url)
    store.migrate()
    rows = list(zip(d.user_idx, d.item_idx, d.timestamp))[start:stop]
    store.add_events([{"event_id": f"{prefix}{j}", "shopper": f"p.{d.users.ids[u]}", "item_id": str(d.items.ids[i]),
                       "event": "view", "ts": int(t) + ts_offset, "value": None, "impression_id": None}
                      for j, (u, i, t) in enumerate(rows)])
    store.dispose()


def test_train_from_the_services_database_chooses_the_model_and_says_why(tmp_path, capsys, synthetic_shop):
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    d = synthetic_shop
    _store_events(url, d)
    assert main(["train", "--db", url, "--out", str(tmp_path / "m"), "--quiet"]) == 0
    path = capsys.readouterr().out.strip()
    sidecar = json.loads(Path(path).with_suffix(".json").read_text())
    assert sidecar["choice"]["name"] in ("transformer", "item-knn") and sidecar["choice"]["reason"]
    assert "NDCG@10" in sidecar["metrics"] and sidecar["data_window"]["last_event_id"] == len(d)


def test_train_needs_data_or_a_database(tmp_path, capsys):
    assert main(["train", "--model", "pop", "--out", str(tmp_path)]) == 2
    assert "--data PATH" in capsys.readouterr().err


def test_retrain_fine_tunes_a_database_trained_model_on_the_events_since_and_records_the_run(
        tmp_path, capsys, synthetic_shop):
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    d = synthetic_shop
    _store_events(url, d, stop=len(d) - 300)
    assert main(["train", "--db", url, "--model", "transformer", "--param", "epochs=2", "--param", "d=8",
                 "--param", "device=cpu", "--out", str(tmp_path / "m"), "--quiet"]) == 0
    model_path = capsys.readouterr().out.strip()
    _store_events(url, d, start=len(d) - 300, prefix="late", ts_offset=10**6)
    assert main(["retrain", "--db", url, "--model", model_path, "--min-events", "50", "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split(":")[0] in ("swapped", "kept") and "300 new events" in out[0] or "below" in out[0]
    from shoprec.serve.storage import Store

    store = Store(url)
    runs = store.retrains()
    store.dispose()
    assert runs[0]["trigger"] == "cli" and runs[0]["n_events"] == 300 and runs[0]["metric_before"] is not None


def test_retrain_refuses_a_model_whose_sidecar_has_no_data_window(tmp_path, tiny_csv, capsys):
    assert main(["train", "--data", str(tiny_csv), "--format", "csv", "--mapping", "user=customer,item=sku,timestamp=ts",
                 "--model", "pop", "--out", str(tmp_path / "m"), "--quiet"]) == 0
    path = capsys.readouterr().out.strip()
    assert main(["retrain", "--db", f"sqlite:///{tmp_path / 'x.db'}", "--model", path]) == 2
    assert "data window" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--workers", "0"], "--workers must be at least 1"),
    (["--workers", "2", "--demo"], "--demo runs one worker"),
])
def test_serve_refuses_worker_counts_it_cannot_run(argv, message, capsys):
    pytest.importorskip("uvicorn")
    assert main(["serve", *argv]) == 2
    assert message in capsys.readouterr().err


def test_retrain_fine_tunes_the_model_an_earlier_run_swapped_in_unless_told_not_to(tmp_path, capsys, synthetic_shop):
    import shutil

    from shoprec.serve.online import RetrainOutcome, record_outcome
    from shoprec.serve.storage import Store
    from shoprec.serve.views import file_version

    url = f"sqlite:///{tmp_path / 'shop.db'}"
    _store_events(url, synthetic_shop)
    assert main(["train", "--db", url, "--model", "item-knn", "--out", str(tmp_path / "m"), "--quiet"]) == 0
    first = Path(capsys.readouterr().out.strip())
    later = first.with_name("item-knn-later.npz")
    shutil.copy(first, later)
    shutil.copy(first.with_suffix(".json"), later.with_suffix(".json"))
    store = Store(url)
    run_id = store.start_retrain("cli")
    record_outcome(store, run_id, RetrainOutcome("swapped", 10, 0.1, 0.1, "copied", str(later), file_version(later)))
    store.dispose()
    assert main(["retrain", "--db", url, "--model", str(first)]) == 0
    assert f"fine-tuning {later.name}, which retrain run {run_id} swapped in" in capsys.readouterr().err
    assert main(["retrain", "--db", url, "--model", str(first), "--no-follow"]) == 0
    assert "swapped in" not in capsys.readouterr().err


@pytest.mark.parametrize("model,mechanism", [("dp-ease", "gaussian-gram"), ("dp-als", "gaussian-als")])
def test_train_with_epsilon_saves_a_private_model_whose_sidecar_carries_its_privacy_record(tmp_path, tiny_csv,
                                                                                          model, mechanism):
    code = main(["train", "--data", str(tiny_csv), "--format", "csv", "--mapping", "user=customer,item=sku,timestamp=ts",
                 "--model", model, "--epsilon", "8", "--delta", "1e-6", "--param", "l2=10",
                 "--out", str(tmp_path / "m"), "--quiet"])
    assert code == 0
    record = json.loads((tmp_path / "m" / f"{model}.json").read_text())["privacy"]
    assert record["dp"] is True and record["epsilon"] == 8.0 and record["delta"] == 1e-6
    assert record["unit"] == "user" and record["mechanism"] == mechanism and record["extra"]["sigma"] > 0
    from shoprec.models.base import Recommender

    assert Recommender.load(tmp_path / "m" / f"{model}.npz").privacy.epsilon == 8.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "dp-ease", "--epsilon", "0"], "--epsilon must be a number > 0"),
        (["--model", "dp-ease", "--epsilon", "-2"], "--epsilon must be a number > 0"),
        (["--model", "dp-ease", "--epsilon", "8", "--delta", "1.5"], r"--delta must be a number in \(0, 1\)"),
        (["--model", "dp-ease", "--epsilon", "8", "--delta", "0"], r"--delta must be a number in \(0, 1\)"),
        (["--model", "dp-ease", "--delta", "1e-6"], "--delta needs --epsilon"),
        (["--model", "ease", "--epsilon", "8"], "'ease' has no privacy budget"),
    ],
)
def test_train_refuses_a_bad_privacy_budget_before_reading_data(tmp_path, capsys, args, message):
    import re

    assert main(["train", "--data", str(tmp_path / "none.csv"), "--out", str(tmp_path), *args]) == 2
    assert re.search(message, capsys.readouterr().err)
