"""`shoprec ope` on hand-written service logs: numbers worked out by hand, and clear refusals.

The log has slates of 4 slots from epsilon-greedy at w = 0.1 with the service's layout (explore
budget 3, so slots 2 and 3 can explore, slot 2 first). The number of exploring slots m is
Binomial(2, w): P(m=0) = 0.81, P(m=1) = 0.18, P(m=2) = 0.01. An exploit item in slot 2 or 3 of a
slate without exploration was shown with probability 0.81; slot 3 showing exploit rank 2 (slot 2
explored) with 0.18; an explored item in slot 2, one of 10 outside candidates, with 0.19 / 10.
"""

from __future__ import annotations

import hashlib
import json

import pytest

pytest.importorskip("sqlalchemy", reason="the 'serve' extra is not installed")

from shoprec.cli import main
from shoprec.serve.storage import Store

N_OUTSIDE = 10
# slate A: no exploration, clicks in slots 0 and 3; slate B: slot 2 explored, clicks in slots 2 and 3.
SLATES = {
    "a": {"propensity": [1.0, 1.0, 0.81, 0.81], "explored": [False] * 4, "clicked": [0, 3]},
    "b": {"propensity": [1.0, 1.0, 0.19 / N_OUTSIDE, 0.18], "explored": [False, False, True, False],
          "clicked": [2, 3]},
}


def _write_log(url: str, slates=SLATES, created_at: int = 1_700_000_000, weight: float = 0.1,
               policy: str = "egreedy:0.1", shoppers: dict[str, str] | None = None) -> None:
    """shoppers: the shopper of each slate id (default: shopper "p.<id>", one slate each)."""
    store = Store(url)
    store.migrate()
    events = []
    for sid, slate in slates.items():
        shopper = (shoppers or {}).get(sid, f"p.{sid}")
        store.log_impressions([
            {"impression_id": sid, "position": j, "shopper": shopper, "item_id": f"{sid}{j}", "score": 0.1,
             "propensity": p, "explored": x, "reason": "explore" if x else "exploit", "policy": policy,
             "model": "v1", "created_at": created_at, "z": -1.0, "weight": weight, "experiment": None,
             "variant": None}
            for j, (p, x) in enumerate(zip(slate["propensity"], slate["explored"]))])
        events += [{"event_id": f"{sid}-{j}", "shopper": shopper, "item_id": f"{sid}{j}", "event": "view",
                    "ts": created_at + 5, "value": None, "impression_id": sid} for j in slate["clicked"]]
    # Not rewards: an event on an item the slate did not show, and one from another shopper.
    events += [{"event_id": f"stray-{created_at}", "shopper": "p.a", "item_id": "b0", "event": "view", "ts": created_at + 6,
                "value": None, "impression_id": "a"},
               {"event_id": f"other-{created_at}", "shopper": "p.b", "item_id": "a1", "event": "cart", "ts": created_at + 6,
                "value": None, "impression_id": "a"}]
    store.add_events(events)
    store.dispose()


@pytest.fixture
def log_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    _write_log(url)
    return url


def _ope(tmp_path, url, policy, *extra) -> dict:
    out = tmp_path / "ope.json"
    assert main(["ope", "--db", url, "--policy", policy, "--quiet", "--json", str(out), *extra]) == 0
    return {p["target"]: p for p in json.loads(out.read_text())["policies"]}


def test_ips_and_snips_of_greedy_and_fixed_rates_match_the_hand_computation(tmp_path, log_url):
    got = _ope(tmp_path, log_url, "logged,greedy,fixed:0.1,fixed:0.2")
    # logged: weight 1, so IPS is the observed 2 clicks per slate.
    assert got["logged"]["estimates"]["ips"]["estimate"] == pytest.approx(2.0)
    assert got["logged"]["observed"] == pytest.approx(2.0)
    # greedy: A keeps 1, 1, 1/0.81, 1/0.81; B's explored slot and the shifted slot below it get 0.
    greedy = got["greedy"]
    assert greedy["estimates"]["ips"]["estimate"] == pytest.approx((1 + 1 / 0.81) / 2)
    # SNIPS per slot: slot 0 (1 + 0) / 2, slot 1 0, slot 2 0 / (1/0.81), slot 3 (1/0.81) / (1/0.81).
    assert greedy["estimates"]["snips"]["estimate"] == pytest.approx(0.5 + 0 + 0 + 1)
    assert greedy["zero_target_share"] == pytest.approx(2 / 8)
    assert greedy["max_weight"] == pytest.approx(1 / 0.81)
    # fixed at the logged rate is the logging policy: every weight 1.
    assert got["fixed:0.1"]["estimates"]["ips"]["estimate"] == pytest.approx(2.0)
    assert got["fixed:0.1"]["ess"] == pytest.approx(8.0)
    # fixed:0.2: P(m) = 0.64, 0.32, 0.04. A's slots 2 and 3: 0.64 / 0.81. B's explored slot 2:
    # P(slot 2 explores) 0.36 / 0.19; B's slot 3 (exploit rank 2, m = 1): 0.32 / 0.18.
    expected = ((1 + 0.64 / 0.81) + (0.36 / 0.19 + 0.32 / 0.18)) / 2
    assert got["fixed:0.2"]["estimates"]["ips"]["estimate"] == pytest.approx(expected)


def test_slates_of_the_served_fitted_rule_are_evaluated_like_epsilon_greedy_at_their_logged_weight(tmp_path):
    # The default rule explores each budget slot with its per-request weight and draws the item
    # uniformly, as egreedy does: at the same logged weight, the same figures.
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    _write_log(url, policy="fitted", weight=0.1)
    got = _ope(tmp_path, url, "fixed:0.1,fixed:0.2")
    assert got["fixed:0.1"]["estimates"]["ips"]["estimate"] == pytest.approx(2.0)
    expected = ((1 + 0.64 / 0.81) + (0.36 / 0.19 + 0.32 / 0.18)) / 2
    assert got["fixed:0.2"]["estimates"]["ips"]["estimate"] == pytest.approx(expected)


def test_the_intervals_bracket_the_estimates_and_dm_and_dr_are_reported(tmp_path, log_url):
    got = _ope(tmp_path, log_url, "greedy")["greedy"]["estimates"]
    assert set(got) == {"ips", "snips", "dm", "dr"}
    for est in got.values():
        assert est["ci95"][0] <= est["estimate"] <= est["ci95"][1]
        assert est["n"] == 2


def test_the_intervals_resample_shoppers_unless_told_to_resample_slates(tmp_path):
    # Two shoppers with four copies of their slate each: resampling shoppers draws each one's four
    # slates together, so a resample is all of one shopper a quarter of the time each way, and
    # the interval spans both shoppers' values; resampling the eight slates one by one rarely
    # draws all from one shopper.
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    slates = {f"{sid}{copy}": SLATES[sid] for sid in SLATES for copy in range(4)}
    _write_log(url, slates, shoppers={sid: f"p.{sid[0]}" for sid in slates})
    by_shopper = _ope(tmp_path, url, "greedy")["greedy"]["estimates"]["ips"]
    by_slate = _ope(tmp_path, url, "greedy", "--resample", "slates")["greedy"]["estimates"]["ips"]
    assert by_shopper["estimate"] == by_slate["estimate"] and by_shopper["n"] == by_slate["n"] == 8
    assert by_shopper["ci95"][0] < by_slate["ci95"][0] and by_slate["ci95"][1] < by_shopper["ci95"][1]


def test_an_unknown_resampling_unit_is_refused_by_name(log_url, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["ope", "--db", log_url, "--policy", "greedy", "--resample", "days"])
    assert exit_.value.code == 2
    assert "argument --resample: invalid choice: 'days' (choose from 'shoppers', 'slates')" in capsys.readouterr().err


def test_purchase_rewards_count_only_purchases(tmp_path, log_url):
    got = _ope(tmp_path, log_url, "logged", "--reward", "purchase")
    assert got["logged"]["observed"] == 0.0  # the log's rewards are views; the one cart came from another shopper


def test_the_window_and_the_filters_select_slates(tmp_path):
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    _write_log(url, {"a": SLATES["a"]}, created_at=1_700_000_000)
    _write_log(url, {"b": SLATES["b"]}, created_at=1_700_100_000)
    early = _ope(tmp_path, url, "greedy", "--until", "1700050000")["greedy"]
    assert early["n_slates"] == 1 and early["estimates"]["ips"]["estimate"] == pytest.approx(1 + 1 / 0.81)
    late = _ope(tmp_path, url, "greedy", "--since", "2023-11-15T22:00:00")["greedy"]  # 1700085600
    assert late["n_slates"] == 1 and late["estimates"]["ips"]["estimate"] == pytest.approx(0.0)


def test_the_command_prints_a_table_of_estimates_and_weights(log_url, capsys):
    assert main(["ope", "--db", log_url, "--policy", "greedy", "--quiet", "--bootstrap", "200"]) == 0
    out = capsys.readouterr().out
    assert "2 slates, 8 slots, logged by egreedy:0.1" in out
    for word in ("ips", "snips", "dm", "dr", "ess", "zero_target_share"):
        assert word in out


def test_the_database_is_opened_read_only_and_not_changed(tmp_path, log_url):
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from shoprec.serve.storage.logged import read_only_engine

    path = tmp_path / "shop.db"
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    _ope(tmp_path, log_url, "logged,greedy")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    engine = read_only_engine(log_url)
    with pytest.raises(OperationalError, match="readonly"), engine.begin() as conn:
        conn.execute(text("DELETE FROM impressions"))
    engine.dispose()


def test_fixed_refuses_a_log_whose_propensities_follow_another_budget(tmp_path, log_url, capsys):
    assert main(["ope", "--db", log_url, "--policy", "fixed:0.2", "--explore-budget", "1"]) == 2
    err = capsys.readouterr().err
    assert "do not follow epsilon-greedy with an explore budget of 1" in err
    # greedy does not depend on the budget
    assert main(["ope", "--db", log_url, "--policy", "greedy", "--explore-budget", "1", "--quiet"]) == 0


def test_fixed_refuses_slates_of_a_policy_that_is_not_epsilon_greedy(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    _write_log(url, policy="dynamic-thompson", weight=0.4)
    assert main(["ope", "--db", url, "--policy", "fixed:0.1"]) == 2
    assert "the log also holds slates of ['dynamic-thompson']" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--policy", "softmax"], "Unknown target policy 'softmax'; the log can evaluate ['logged', 'greedy', 'fixed:EPS']"),
    (["--policy", "fixed:lots"], "needs a number EPS in [0, 1] after 'fixed:'. Got 'lots' instead."),
    (["--policy", "fixed:1.5"], "needs a number EPS in [0, 1] after 'fixed:'. Got 1.5 instead."),
    (["--policy", "greedy:0.1"], "Unknown target policy 'greedy:0.1'"),
    (["--policy", " , "], "--policy needs at least one target policy"),
    (["--policy", "greedy", "--since", "yesterday"], "--since must be an ISO date or date-time"),
    (["--policy", "greedy", "--since", "2030-01-01"], "No logged slates of known shoppers match (since=1893456000)"),
    (["--policy", "greedy", "--experiment", "nope"], "No logged slates of known shoppers match (experiment=nope)"),
    (["--policy", "greedy", "--variant", "b"], "A variant filter needs the experiment it belongs to"),
    (["--policy", "greedy", "--until", "1", "--since", "5"], "The window is empty"),
    (["--policy", "greedy", "--bootstrap", "3"], "'bootstrap' parameter of shoprec ope must be an int in [10,"),
])
def test_bad_input_is_one_clear_line_and_exit_2(log_url, capsys, argv, message):
    assert main(["ope", "--db", log_url, *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("shoprec: error: ") and message in err and len(err.strip().splitlines()) == 1


def test_an_unreachable_or_wrong_database_is_a_clear_error_and_nothing_is_created(tmp_path, capsys):
    missing = tmp_path / "none.db"
    assert main(["ope", "--db", f"sqlite:///{missing}", "--policy", "greedy"]) == 2
    assert f"No SQLite database at {missing}" in capsys.readouterr().err and not missing.exists()
    assert main(["ope", "--db", "postgresql+psycopg://shoprec:secret@127.0.0.1:9/shop", "--policy", "greedy"]) == 2
    err = capsys.readouterr().err
    assert "Cannot read the database at postgresql+psycopg://shoprec:***@127.0.0.1:9/shop" in err
    assert "secret" not in err
    assert main(["ope", "--db", "not a url", "--policy", "greedy"]) == 2
    assert "'not a url' is not a database URL" in capsys.readouterr().err
    other = tmp_path / "other.db"
    import sqlite3

    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    assert main(["ope", "--db", f"sqlite:///{other}", "--policy", "greedy"]) == 2
    assert "has no impressions table" in capsys.readouterr().err
