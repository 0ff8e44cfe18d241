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
    assert [(r["model"], r["epsilon"]) for r in rows] == [("dp-mf", 8.0), ("dp-mf", "inf")]
    assert 0 < rows[0]["epsilon_spent"] <= 8.01 and rows[1]["epsilon_spent"] == "inf"
    assert all(0 <= r["mia_auc"] <= 1 and 0 <= r["NDCG@10"] <= 1 for r in rows)
    assert report["federated_gap"]["rounds_to_95pct_of_centralised"] in (None, 1, 2, 3)

    summary = json_summary(report)
    entry = summary["models"]["dp-mf"][0]
    assert {"epsilon", "delta", "NDCG@10", "coverage", "mia_auc"} <= set(entry)
    assert set(summary["federated_vs_centralised"]) == {"federated", "centralised", "gap"}
    json.dumps(summary)
    table = format_table(report)
    assert "| dp-mf | 8.0 |" in table and "federated (FedAvg)" in table
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
    assert "| dp-mf | inf |" in out
    data = json.loads((tmp_path / "r.json").read_text())
    assert [e["epsilon"] for e in data["models"]["dp-mf"]] == [8.0, "inf"]
    assert (tmp_path / "r.png").exists()


def test_the_command_reports_a_bad_budget_as_an_error(tmp_path, capsys):
    code = main(["privacy-report", "--data", str(tmp_path / "none.csv"), "--epsilons", "0"])
    assert code == 2
    assert "epsilon" in capsys.readouterr().err
