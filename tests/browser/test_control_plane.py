"""Sign-in, CSRF and Setup & Run in a real browser against a real control plane (and a real step)."""

from __future__ import annotations

import json
import re
import time

from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.conftest import ADMIN_PASSWORD, SCREENSHOTS, Service, sign_in

RUN_URL = "/api/steps/backfill/run"


def test_sign_in_and_csrf(browser: Browser, control_plane: Service, context: BrowserContext, page: Page):
    # a page needs a session: /setup sends the browser to the login form
    page.goto("/setup")
    expect(page).to_have_url(re.compile(r"/login\?next=(/|%2F)setup$"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()

    sign_in(page, password="not-the-password")
    expect(page.get_by_role("alert")).to_have_text("Wrong user name or password.")
    expect(page).to_have_url(re.compile(r"/login"))

    sign_in(page, password=ADMIN_PASSWORD)
    page.wait_for_url("**/setup")
    expect(page.get_by_role("heading", name="Setup & Run", level=1)).to_be_visible()
    expect(page.locator("header .who")).to_contain_text("admin")

    # first page load of a signed-in user: navigation timing and time until the steps table is filled
    started = time.perf_counter()
    page.goto("/setup", wait_until="load")
    load_s = time.perf_counter() - started
    expect(page.locator("#steps tbody tr[data-step]").first).to_be_visible()
    steps_s = time.perf_counter() - started
    nav = page.evaluate("""() => { const n = performance.getEntriesByType("navigation")[0];
        return {ttfb_ms: n.responseStart - n.startTime, dom_content_loaded_ms: n.domContentLoadedEventEnd - n.startTime,
                load_ms: n.loadEventEnd - n.startTime}; }""")
    timing = {
        "page": "/setup",
        "wall_load_s": round(load_s, 3),
        "wall_steps_table_s": round(steps_s, 3),
        **{k: round(v, 1) for k, v in nav.items()},
    }
    print(f"first page load: {json.dumps(timing)}")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / "page_load_timing.json").write_text(json.dumps(timing, indent=2) + "\n")

    # no session at all: refused before anything runs
    anonymous = browser.new_context(base_url=control_plane.url)
    try:
        resp = anonymous.request.post(RUN_URL, data={"params": {"days": 0.01}})
        assert resp.status == 401, resp.text()
    finally:
        anonymous.close()

    # a session (the context's cookies) but no CSRF token: refused
    resp = context.request.post(RUN_URL, data={"params": {"days": -1}})
    assert resp.status == 403, resp.text()
    assert "CSRF" in resp.text()

    # with the page's token the request reaches the handler, which refuses the bad parameter (not CSRF)
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert token
    resp = context.request.post(RUN_URL, data={"params": {"days": -1}}, headers={"X-CSRF-Token": token})
    assert resp.status == 422, resp.text()
    assert "days" in resp.json()["detail"]
    resp = context.request.post(RUN_URL, data={"params": {"days": -1}}, headers={"X-CSRF-Token": token + "x"})
    assert resp.status == 403, resp.text()


def test_run_backfill_step_and_follow_its_log(signed_in: Page):
    page = signed_in
    row = page.locator('tr[data-step="backfill"]')
    expect(row).to_be_visible()
    row.locator('input[name="days"]').fill("0.01")
    row.locator('input[name="events_per_day"]').fill("2000")
    row.locator('button[data-run="backfill"]').click()

    log = page.locator("#log")
    expect(page.locator("#log-panel")).to_be_visible()
    # the command line is the log's first line: the parameters typed in the row were passed
    expect(log).to_contain_text("services.simulator backfill", timeout=15_000)
    expect(log).to_contain_text("--days 0.01")
    expect(log).to_contain_text("--events-per-day 2000")
    expect(page.locator("#log-status")).to_contain_text("succeeded", timeout=120_000)
    expect(log).to_contain_text(re.compile(r"backfill: [\d,]+ events"))  # the simulator's own summary line

    latest = page.locator("#history tbody tr").first
    expect(latest).to_contain_text("backfill", timeout=10_000)
    expect(latest).to_contain_text("succeeded")
    expect(latest).to_contain_text('"events_per_day":2000')
    expect(row.locator('button[data-run="backfill"]')).to_be_enabled()
