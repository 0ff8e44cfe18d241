"""End to end in real headless Chromium: load the storefront, act as a shopper, watch the
recommendations change; then the dashboard shows the traffic.

Needs Playwright (the 'dev' extra) and Debian's chromium (`apt-get install chromium`, done by
scripts/ci_services.sh); Playwright's own browser download is never used. Skips with the reason
when either is missing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from serve_helpers import ADMIN_KEY, LiveServer, catalogue_rows

from shoprec.serve.app import create_app
from shoprec.serve.settings import ServeSettings


def _chromium() -> str:
    path = os.environ.get("SHOPREC_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        pytest.skip("chromium not installed (apt-get install chromium, or run scripts/ci_services.sh)")
    return path


@pytest.fixture
def database_url(tmp_path) -> str:  # the page does not depend on the backend: SQLite only
    return f"sqlite:///{tmp_path / 'shop.db'}"


@pytest.fixture
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (dev extra)")
    executable = _chromium()
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True)
        yield b
        b.close()


@pytest.fixture
def shop_server(database_url, pseudonymizer, knn, tiny_shop):
    app = create_app(ServeSettings(database_url=database_url, admin_key=ADMIN_KEY, demo=True, exploration=0.0),
                     pseudonymizer=pseudonymizer, model=knn)
    app.state.service.sample_shoppers = ["u1", "u4"]
    server = LiveServer(app)
    import httpx

    httpx.post(f"{server.url}/v1/items/batch", json={"items": catalogue_rows(tiny_shop)},
               headers={"X-API-Key": ADMIN_KEY}).raise_for_status()
    yield server
    server.stop()


def _open_page(browser):
    """A new page, and the list its script errors are collected in."""
    page = browser.new_page()
    page.set_default_timeout(60_000)  # a loaded 2-core CI machine is slow, not broken
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page, errors


def _cards(page) -> list[str]:
    return page.locator("#recs .rec-card").evaluate_all("els => els.map(e => e.dataset.item)")


def test_shopper_acts_and_recommendations_change_in_the_browser(browser, shop_server):
    page, errors = _open_page(browser)
    requests = []
    page.on("request", lambda request: requests.append(request))
    page.goto(shop_server.url + "/")
    page.get_by_role("button", name="New shopper").click()
    page.wait_for_selector("#recs .rec-card")
    before = _cards(page)
    assert len(before) == 8  # a cold start: every item, popular first
    assert page.locator("#recs .rec-card .why").first.inner_text().startswith("Popular")

    first = page.locator("#recs .rec-card").first
    title = first.locator(".title").inner_text()
    impression = page.locator("#recs").get_attribute("data-impression")
    first.get_by_role("button", name="Buy").click()
    page.wait_for_function("imp => document.querySelector('#recs').dataset.impression !== imp", arg=impression)
    after = _cards(page)
    assert after != before and before[0] not in after, (before, after)  # bought: not offered again
    whys = page.locator("#recs .rec-card .why").all_inner_texts()
    assert f"Because you bought “{title}”" in whys, whys
    assert page.locator("#history li").first.inner_text() == f"bought: {title}"

    page.locator("#sample-buttons button", has_text="Sample shopper 2").click()
    page.wait_for_function("() => document.querySelector('#recs-heading').textContent.includes('Sample shopper 2')")

    # The page holds short-lived shopper tokens only: no API key in any request or in its config.
    api_calls = [r for r in requests if "/v1/" in r.url]
    assert api_calls and all(r.headers.get("authorization", "").startswith("Bearer st_") for r in api_calls)
    assert not [r for r in requests if "x-api-key" in r.headers]
    assert ADMIN_KEY not in page.evaluate("() => JSON.stringify(localStorage)")

    import httpx

    httpx.post(f"{shop_server.url}/v1/experiments", headers={"X-API-Key": ADMIN_KEY},
               json={"id": "ab-1", "variants": {"greedy": {"exploration": 0.0}, "dynamic": {}}}).raise_for_status()
    page.goto(shop_server.url + "/dashboard")
    page.wait_for_selector("#tile-slates")
    page.wait_for_selector("#experiment-table tr.variant")
    assert page.locator("#experiment-table tr.variant").count() == 2
    assert "ab-1: running" in page.locator("#experiment-words").inner_text()
    assert int(page.locator("#tile-slates .value").inner_text()) >= 3
    assert page.locator("#chart-traffic svg path.series").count() == 2
    assert page.locator("#tile-privacy .value").inner_text() == "not DP-trained"
    assert errors == [], errors


@pytest.fixture
def transformer_server(database_url, pseudonymizer, synthetic_shop, hashed_text):
    """The live system as `make demo` serves it: the behaviour Transformer (text-initialised) with
    per-shopper dynamic exploration, on the 120-item synthetic shop."""
    from shoprec.models.transformer import TransformerRecommender

    model = TransformerRecommender(d=16, n_layers=1, max_len=12, epochs=4, batch_size=32, device="cpu", seed=0,
                                   text_init=True).fit(synthetic_shop)
    app = create_app(ServeSettings(database_url=database_url, admin_key=ADMIN_KEY, demo=True),
                     pseudonymizer=pseudonymizer, model=model)
    app.state.service.sample_shoppers = ["u1"]
    server = LiveServer(app)
    import httpx

    httpx.post(f"{server.url}/v1/items/batch", json={"items": catalogue_rows(synthetic_shop)},
               headers={"X-API-Key": ADMIN_KEY}).raise_for_status()
    yield server
    server.stop()


def test_a_new_shopper_buys_and_sees_the_weight_the_badges_and_what_the_slate_cites(browser, transformer_server):
    page, errors = _open_page(browser)
    page.goto(transformer_server.url + "/")
    page.get_by_role("button", name="New shopper").click()  # the page gets a token for a new guest
    page.wait_for_selector("#recs .rec-card")
    page.wait_for_function("() => document.querySelector('#model-words').textContent.includes('Transformer')")
    weight = page.locator("#weight").inner_text()
    assert weight.startswith("Exploring at weight") and "we know little of this shopper yet" in weight, weight
    assert page.locator("#recent li").first.inner_text() == "nothing yet: a new shopper"
    seen_badges = page.locator("#recs .badge.explore").count()
    for _ in range(3):  # buy the first card a few times; the slate and the history follow
        impression = page.locator("#recs").get_attribute("data-impression")
        first = page.locator("#recs .rec-card").first
        title = first.locator(".title").inner_text()
        first.get_by_role("button", name="Buy").click()
        page.wait_for_function("imp => document.querySelector('#recs').dataset.impression !== imp", arg=impression)
        assert page.locator("#recent li").first.inner_text() == f"purchase{title}"
        seen_badges += page.locator("#recs .badge.explore").count()
    assert seen_badges > 0  # a new shopper's slates explore
    assert page.locator("#recs .rec-card.fresh").count() > 0  # the slate changed after the purchase
    whys = page.locator("#recs .rec-card .why").all_inner_texts()
    assert any(w.startswith("Because you bought") for w in whys), whys
    assert page.locator("#recent li.cited").count() >= 1  # the cited purchase is highlighted in the history
    assert page.locator("#legend").inner_text().count("exploring") >= 1

    page.goto(transformer_server.url + "/dashboard")
    page.wait_for_selector("#tile-slates")
    page.wait_for_selector("#chart-weights svg")
    heights = page.locator("#chart-weights svg rect").evaluate_all("els => els.map(e => +e.getAttribute('height'))")
    assert len(heights) == 10 and sum(h > 0 for h in heights) >= 1
    assert "Transformer" in page.locator("#model-words").inner_text()
    assert "trained without differential privacy" in page.locator("#model-table").inner_text()
    assert errors == [], errors


def test_a_shopper_chooses_no_personalisation_and_the_shop_keeps_nothing(browser, shop_server):
    page, errors = _open_page(browser)
    page.goto(shop_server.url + "/")
    page.get_by_role("button", name="New shopper").click()
    page.wait_for_selector("#recs .rec-card")
    page.wait_for_function("() => document.querySelector('#privacy-words').textContent.includes('learn from')")

    def buy_first() -> None:
        impression = page.locator("#recs").get_attribute("data-impression")
        page.locator("#recs .rec-card").first.get_by_role("button", name="Buy").click()
        page.wait_for_function("imp => document.querySelector('#recs').dataset.impression !== imp", arg=impression)

    buy_first()
    assert page.locator("#recent li").count() == 1 and "purchase" in page.locator("#recent li").first.inner_text()
    page.get_by_label("No personalisation: keep nothing of what I do").check()
    page.wait_for_function("() => document.querySelector('#privacy-words').textContent.includes('1 stored events "
                           "were deleted')")
    buy_first()  # acknowledged by the service, but not stored
    assert page.locator("#recent li").first.inner_text() == "nothing yet: a new shopper"
    assert all(w.startswith("Popular") for w in page.locator("#recs .rec-card .why").all_inner_texts())
    assert errors == [], errors
