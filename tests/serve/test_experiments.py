"""Online A/B experiments in the service: assignment by a hash of the pseudonym, the variant on
every impression, and a report whose statistics find a difference the test put there."""

from __future__ import annotations

import numpy as np
from serve_helpers import ADMIN, event, recommend

EXPERIMENT = {"id": "greedy-vs-explore", "variants": {"greedy": {"exploration": 0.0}, "explore": {"exploration": 0.5}}}


def _start(client, body=EXPERIMENT) -> dict:
    r = client.post("/v1/experiments", json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    return r.json()


def test_a_shopper_keeps_one_variant_and_its_slates_follow_the_arm(client):
    _start(client)
    first = recommend(client, shopper_id="ann", k=4)
    again = recommend(client, shopper_id="ann", k=4)
    assert first["experiment"] == again["experiment"] and first["experiment"]["id"] == "greedy-vs-explore"
    weight = {"greedy": 0.0, "explore": 0.5}[first["experiment"]["variant"]]
    assert first["exploration"]["weight"] == weight and first["exploration"]["overridden"]
    assert recommend(client, session=[{"item_id": "i1", "event": "view"}])["experiment"] is None  # no shopper


def test_the_split_follows_the_shares(client):
    _start(client, {"id": "split", "variants": {"a": {"weight": 1}, "b": {"weight": 4}}})
    service = client.app.state.service
    experiment = service.running_experiment()
    names = [service.assign_variant(experiment, f"test.{n}")["name"] for n in range(4000)]
    assert abs(names.count("a") / 4000 - 0.2) < 0.03


def test_the_report_finds_a_known_difference_with_intervals_and_no_sample_ratio_mismatch(client):
    _start(client)
    rng = np.random.default_rng(0)
    click_rate = {"greedy": 0.15, "explore": 0.6}  # the truth the report must recover
    n = 0
    for s in range(120):
        for _ in range(2):
            body = recommend(client, shopper_id=f"s{s}", k=3)
            if rng.random() < click_rate[body["experiment"]["variant"]]:
                n += 1
                kind = "purchase" if rng.random() < 0.5 else "view"
                r = client.post("/v1/events", json=event(f"c{n}", f"s{s}", body["items"][0]["item_id"], kind=kind,
                                                         impression_id=body["impression_id"]), headers=ADMIN)
                assert r.status_code == 200
    report = client.get("/v1/experiments/greedy-vs-explore", headers=ADMIN).json()
    by_name = {v["name"]: v for v in report["variants"]}
    assert sum(v["shoppers"] for v in report["variants"]) == 120
    assert all(v["slates"] == 2 * v["shoppers"] for v in report["variants"])
    for name, rate in click_rate.items():
        ctr = by_name[name]["click_through"]
        assert ctr["low"] <= rate <= ctr["high"], (name, ctr)
    [ctr_diff] = [c for c in report["comparisons"] if c["metric"] == "click_through"]
    assert ctr_diff["variant"] == "explore" and ctr_diff["low"] > 0 and ctr_diff["p_value"] < 0.001
    assert report["sample_ratio"]["mismatch"] is False and report["control"] == "greedy"


def test_one_experiment_at_a_time_stop_and_clear_errors(client):
    _start(client)
    again = client.post("/v1/experiments", json={**EXPERIMENT, "id": "second"}, headers=ADMIN)
    assert again.status_code == 409 and "'greedy-vs-explore' is running" in again.json()["error"]["message"]
    stopped = client.post("/v1/experiments/greedy-vs-explore/stop", headers=ADMIN).json()
    assert stopped["stopped_at"] is not None
    assert recommend(client, shopper_id="ann")["experiment"] is None
    assert client.get("/v1/experiments/nope", headers=ADMIN).status_code == 404
    bad = client.post("/v1/experiments", json={"id": "x", "variants": {"a": {}}}, headers=ADMIN)
    assert bad.status_code == 422 and "at least 2" in bad.json()["error"]["message"]
    assert client.post("/v1/experiments", json=EXPERIMENT, headers=ADMIN).status_code == 409  # id used before
