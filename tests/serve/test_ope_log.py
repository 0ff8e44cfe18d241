"""Off-policy evaluation on slates the service served and logged itself, and clicks sent to it.

The service runs its "fixed" rule (epsilon-greedy) or its dynamic rule; shoppers click through
the HTTP API with the impression id. The estimates read the database the service writes.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from serve_helpers import ADMIN, event, recommend

from shoprec.cli import main
from shoprec.explore.offpolicy import TargetPolicy, evaluate_logged, target_probabilities
from shoprec.serve.storage.logged import LogFilter, read_logged_slates


def _serve_and_click(client, n_shoppers: int = 40, slates_each: int = 3, k: int = 4, seed: int = 0) -> dict:
    """Slates for new shoppers; each shown item is clicked with a probability falling with its
    slot. Returns what was sent: slates, and the distinct (slate, item) clicks."""
    rng = np.random.default_rng(seed)
    sent = {"slates": 0, "clicks": set()}
    n = 0
    for s in range(n_shoppers):
        for _ in range(slates_each):
            body = recommend(client, shopper_id=f"s{s}", k=k)
            sent["slates"] += 1
            for j, item in enumerate(body["items"]):
                if rng.random() < 0.5 / (j + 1):
                    n += 1
                    kind = ["view", "cart", "purchase"][n % 3]
                    r = client.post("/v1/events", json=event(f"c{n}", f"s{s}", item["item_id"], kind=kind,
                                                             impression_id=body["impression_id"]), headers=ADMIN)
                    assert r.status_code == 200, r.text
                    sent["clicks"].add((body["impression_id"], item["item_id"]))
    return sent


@pytest.fixture
def egreedy_client(make_client):
    return make_client(weight_rule="fixed", epsilon=0.5, exploration=None)


def test_logged_ips_equals_the_clicks_per_slate_that_were_sent(egreedy_client, database_url):
    sent = _serve_and_click(egreedy_client)
    log = read_logged_slates(database_url)
    report = evaluate_logged(log, TargetPolicy.parse("logged"), n_bootstrap=100)
    assert len(log) == sent["slates"]
    # Each slate names its shopper (a pseudonym): 40 shoppers with 3 slates each, whom the
    # intervals resample together.
    assert len(set(log.shopper)) == 40 and all(np.unique(log.shopper, return_counts=True)[1] == 3)
    assert report.observed == pytest.approx(len(sent["clicks"]) / sent["slates"])
    assert report.estimates["ips"].value == pytest.approx(report.observed)
    assert report.estimates["dr"].value == pytest.approx(report.observed)  # DM's error is corrected exactly
    assert np.allclose(report.weights[log.shown], 1.0)


def test_fixed_at_the_services_own_rate_gives_every_logged_slot_weight_one(egreedy_client, database_url):
    # The binomial layout of `shoprec.explore.offpolicy` must reproduce the policy's propensities.
    _serve_and_click(egreedy_client, n_shoppers=20)
    log = read_logged_slates(database_url)
    assert log.explored.any() and set(log.policy) == {"egreedy:0.5"}
    w = target_probabilities(log, TargetPolicy.parse("fixed:0.5")) / np.where(log.shown, log.propensity, 1.0)
    assert np.allclose(w[log.shown], 1.0)
    lower = target_probabilities(log, TargetPolicy.parse("fixed:0.1"))
    assert (lower[log.explored] < log.propensity[log.explored]).all()  # explores less: explored slots weigh less


def test_greedy_gives_explored_slots_and_the_exploit_slots_they_shifted_zero_weight(egreedy_client, database_url):
    _serve_and_click(egreedy_client, n_shoppers=20)
    log = read_logged_slates(database_url)
    report = evaluate_logged(log, TargetPolicy.parse("greedy"), n_bootstrap=100)
    w, shown = report.weights, log.shown
    explored_above = np.cumsum(log.explored, axis=1) > 0  # this slot or one above it explored
    assert log.explored.any() and (shown & ~log.explored & explored_above).any()  # the cases occur
    assert (w[log.explored] == 0).all()
    assert (w[shown & explored_above] == 0).all()
    unshifted = shown & ~explored_above
    assert np.allclose(w[unshifted], 1.0 / log.propensity[unshifted])
    assert report.zero_share == pytest.approx((shown & explored_above).sum() / shown.sum())


def test_the_command_evaluates_the_services_database(egreedy_client, database_url, tmp_path, capsys):
    _serve_and_click(egreedy_client, n_shoppers=10)
    out = tmp_path / "ope.json"
    assert main(["ope", "--db", database_url, "--policy", "logged,greedy,fixed:0.2", "--json", str(out),
                 "--bootstrap", "100", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "logged by egreedy:0.5" in printed and "fixed:0.2" in printed
    got = json.loads(out.read_text())
    assert [p["target"] for p in got["policies"]] == ["logged", "greedy", "fixed:0.2"]
    assert got["n_slates"] == 30 and got["explore_budget"] == 3
    assert all(set(p["estimates"]) == {"ips", "snips", "dm", "dr"} for p in got["policies"])


def test_fixed_is_refused_on_the_dynamic_rules_log_but_greedy_is_not(make_client, database_url):
    client = make_client(exploration=None, weight_rule="dynamic")  # the hand-set rule, Thompson explorer
    _serve_and_click(client, n_shoppers=10)
    log = read_logged_slates(database_url, LogFilter(policy="dynamic-thompson"))
    assert len(log) == 30
    with pytest.raises(Exception, match="can only be evaluated on slates of an epsilon-greedy policy"):
        evaluate_logged(log, TargetPolicy.parse("fixed:0.1"))
    report = evaluate_logged(log, TargetPolicy.parse("greedy"), n_bootstrap=100)
    assert (report.weights[log.explored] == 0).all()
