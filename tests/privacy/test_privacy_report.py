"""The privacy report and the `shoprec privacy-report` command."""

from __future__ import annotations

import json
import math

import pytest

from shoprec.cli import main
from shoprec.errors import ConfigError
from shoprec.privacy.report import (
    ReportSettings,
    format_table,
    json_summary,
    parse_epsilons,
    plot_report,
    privacy_report,
)


def test_epsilons_parse_with_infinity_and_reject_nonsense():
    assert parse_epsilons("0.5, 1,inf") == (0.5, 1.0, math.inf)
    for bad in ("0", "-1", "abc", ""):
        with pytest.raises(ConfigError, match="epsilon"):
            parse_epsilons(bad)


def _fake_federation(monkeypatch):
    """Replace the Flower simulation (tested in test_privacy_federated) by its result shape."""
    from shoprec.privacy.federated import simulation

    def fake(split, *, num_clients, rounds, config, local_epochs, seed):
        log = [{"round": r, "NDCG@10": 0.01 * r, "HR@10": 0.02 * r, "loss": 1.0 / r} for r in range(1, rounds + 1)]
        return simulation.FederatedResult(log, [], math.inf, 0.0, {"num-clients": num_clients}, 1.0)

    monkeypatch.setattr(simulation, "run_federated", fake)


def test_the_report_has_a_row_per_model_and_epsilon_and_the_federated_comparison(synthetic_shop, monkeypatch, tmp_path):
    _fake_federation(monkeypatch)
    settings = ReportSettings(
        models=["dp-mf"], epsilons=[8.0, math.inf],
        model_params={"dp-mf": {"factors": 8, "epochs": 2, "batch_size": 64}},
        reference_params={"dp-mf": {"factors": 8, "epochs": 5, "batch_size": 64}},
        fed_clients=3, fed_rounds=3, fed_params={"factors": 8, "lr": 0.05},
    )
    report = privacy_report(synthetic_shop, settings, name="synthetic")
    rows = report["rows"]
    assert [(r["model"], r["epsilon"]) for r in rows] == [("dp-mf", 8.0), ("dp-mf", "inf"), ("pop", "inf")]
    assert [r["unit"] for r in rows] == ["user", "none", "none"]
    assert rows[0]["share_of_own"] == pytest.approx(rows[0]["NDCG@10"] / rows[1]["NDCG@10"])
    best = max(rows[1]["NDCG@10"], rows[2]["NDCG@10"])
    assert rows[0]["share_of_best"] == pytest.approx(rows[0]["NDCG@10"] / best)
    assert rows[2]["share_of_own"] is None
    assert 0 < rows[0]["epsilon_spent"] <= 8.01 and rows[1]["epsilon_spent"] == "inf"
    assert all(0 <= r["mia_auc"] <= 1 and 0 <= r["NDCG@10"] <= 1 for r in rows)
    assert report["federated_gap"]["rounds_to_95pct_of_centralised"] in (None, 1, 2, 3)

    summary = json_summary(report)
    entry = summary["models"]["dp-mf"][0]
    assert {"epsilon", "delta", "NDCG@10", "coverage", "mia_auc"} <= set(entry)
    assert set(summary["federated_vs_centralised"]) == {"federated", "centralised", "gap"}
    json.dumps(summary)
    table = format_table(report)
    assert "| dp-mf | user | 8.0 |" in table and "federated (FedAvg)" in table
    assert plot_report(report, tmp_path / "p.png").stat().st_size > 10_000


def test_an_impossible_budget_fails_before_any_training(synthetic_shop):
    settings = ReportSettings(
        models=["dp-mf"], epsilons=[1e-4],
        model_params={"dp-mf": {"epochs": 50, "max_noise_multiplier": 5.0}}, federated=False,
    )
    with pytest.raises(ConfigError, match="cannot be met"):
        privacy_report(synthetic_shop, settings)


def test_the_command_prints_the_table_and_writes_json_and_plot(synthetic_shop, tmp_path, capsys):
    import pandas as pd

    path = tmp_path / "events.csv"
    pd.DataFrame(
        {"user": synthetic_shop.users.id_of(synthetic_shop.user_idx),
         "item": synthetic_shop.items.id_of(synthetic_shop.item_idx),
         "timestamp": synthetic_shop.timestamp}
    ).to_csv(path, index=False)
    code = main([
        "privacy-report", "--data", str(path), "--format", "shoprec", "--models", "dp-mf",
        "--epsilons", "8,inf", "--epochs", "2", "--param", "dp-mf:factors=8", "--param",
        "dp-mf:batch_size=64", "--reference-param", "dp-mf:factors=8", "--no-federated",
        "--json", str(tmp_path / "r.json"), "--plot", str(tmp_path / "r.png"), "--quiet",
    ])
    assert code == 0
    out = capsys.readouterr().out
    assert "| dp-mf | none | inf |" in out and "| pop | none | inf |" in out
    data = json.loads((tmp_path / "r.json").read_text())
    assert [e["epsilon"] for e in data["models"]["dp-mf"]] == [8.0, "inf"]
    assert (tmp_path / "r.png").exists()


def test_the_command_reports_a_bad_budget_as_an_error(tmp_path, capsys):
    code = main(["privacy-report", "--data", str(tmp_path / "none.csv"), "--epsilons", "0"])
    assert code == 2
    assert "epsilon" in capsys.readouterr().err


def test_the_gram_models_have_their_own_counterparts_popularity_and_a_user_unit_in_one_report(synthetic_shop):
    settings = ReportSettings(
        models=["dp-ease", "dp-item-knn"], epsilons=[2.0, 8.0, math.inf], federated=False,
        model_params={"dp-ease": {"l2": 10.0, "max_items_per_user": 20},
                      "dp-item-knn": {"neighbors": 20, "max_items_per_user": 20}},
        reference_params={"dp-ease": {"l2": 10.0}, "dp-item-knn": {"neighbors": 20}},
    )
    report = privacy_report(synthetic_shop, settings, name="synthetic")
    rows = {(r["model"], r["epsilon"]): r for r in report["rows"]}
    assert set(rows) == {(m, e) for m in ("dp-ease", "dp-item-knn") for e in (2.0, 8.0, "inf")} | {("pop", "inf")}
    for model in ("dp-ease", "dp-item-knn"):
        for eps in (2.0, 8.0):
            row = rows[(model, eps)]
            assert row["unit"] == "user" and row["mechanism"] == "gaussian-gram"
            assert row["epsilon_spent"] == eps and row["delta"] > 0
            assert row["share_of_own"] == pytest.approx(row["NDCG@10"] / rows[(model, "inf")]["NDCG@10"])
        assert rows[(model, "inf")]["share_of_own"] == pytest.approx(1.0)
    best = max(r["NDCG@10"] for r in report["rows"] if r["epsilon"] == "inf")
    assert all(r["share_of_best"] == pytest.approx(r["NDCG@10"] / best) for r in report["rows"])
    assert "| dp-ease | user | 8.0 |" in format_table(report)


def test_a_gram_model_budget_is_checked_before_anything_is_trained(synthetic_shop):
    settings = ReportSettings(models=["dp-ease"], epsilons=[8.0], delta=0.5, federated=False)
    with pytest.raises(ConfigError, match="target_delta"):
        privacy_report(synthetic_shop, settings)
