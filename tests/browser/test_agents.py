"""/agents in headless Debian chromium over the real dashboard lakehouse (a copy of the session's
``dashboard_lake``; a control plane of its own serves it, no JVM): run a specialist, see a recommendation
with its evidence (the SQL it ran, the figures, the expected lift), accept it, find the rule in the draft
on /rules in shadow. Screenshots: tests/browser/screenshots/agents*.png (git-ignored)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from launcher.infra import free_port
from tests.agents.conftest import copy_lake
from tests.browser.conftest import ADMIN_PASSWORD, SCREENSHOTS, Service, clean_env, http_ok, start_service, wait_for


@pytest.fixture(scope="module")
def agents_server(dashboard_lake, tmp_path_factory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("browser_agents")
    lake = copy_lake(dashboard_lake, root / "lake")
    port = free_port()
    server = start_service(
        "control_plane_agents",
        ["-m", "services.control_plane", "serve", "--port", str(port)],
        clean_env(
            PA_DATA_DIR=str(root / "data"),
            PA_WAREHOUSE_DIR=str(lake.root),
            PA_CATALOG=lake.catalog,
            PA_SCHEMA=lake.schema,
            PA_ADMIN_PASSWORD=ADMIN_PASSWORD,
            PA_FIRST_RUN="false",
            PA_DECISION_FEED="false",
            PA_KAFKA_BOOTSTRAP="127.0.0.1:1",
        ),
        root,
        f"http://127.0.0.1:{port}",
    )
    try:
        wait_for("control plane /health", http_ok(f"{server.url}/health"), 90, server)
        yield server
    finally:
        server.stop()


@pytest.fixture
def agents_page(browser: Browser, agents_server: Service) -> Iterator[Page]:
    context = browser.new_context(base_url=agents_server.url, viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(20_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto("/login?next=/agents")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/agents")
    yield page
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "agents_end.png"), full_page=True)
    context.close()
    assert not errors, errors


def test_run_a_specialist_see_the_evidence_accept_and_find_the_shadow_rule(agents_page: Page):
    page = agents_page
    expect(page.locator("nav a[href='/agents']")).to_have_class("active")
    expect(page.locator("#agents-planner")).to_contain_text("No LLM configured")
    page.locator("#backtest").uncheck()
    page.get_by_role("button", name="Run Smart retry").click()

    card = page.locator("#run-card")
    expect(card).to_have_attribute("data-status", "succeeded", timeout=60_000)
    expect(page.locator("#run-answer")).to_contain_text("Smart retry analysis.")
    proposed = page.locator("#run-recs article.rec[data-status='proposed']")
    rec = proposed.filter(has_text="Retry INSUFFICIENT_FUNDS").first
    expect(rec).to_be_visible()
    expect(rec.locator(".lift")).to_have_attribute("data-lift-method", "gold_estimate")
    expect(rec.locator(".lift")).to_contain_text("more recovered payments")
    rule_id = rec.locator("pre").first  # the proposed rule: condition -> action
    expect(rule_id).to_contain_text("previous_decline_code = 'INSUFFICIENT_FUNDS'")

    # the evidence: the SQL the agent ran over the dashboard table, its parameters, the figures
    rec.locator("details.evidence summary").click()
    expect(rec.locator(".query[data-tool='retry_performance'] pre.sql")).to_contain_text("FROM dash_retry_performance")
    expect(rec.locator("tr[data-figure='advised_success_rate'] td")).to_have_text("83.33%")
    expect(rec.locator("tr[data-figure='recovered_value_usd'] td")).to_contain_text("USD")
    transcript = page.locator("#run-transcript-box")
    transcript.locator("summary").click()
    expect(transcript.locator("tr[data-event='analysis']")).to_contain_text("dash_retry_performance")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "agents.png"), full_page=True)

    # accept: the rule joins the draft in shadow
    rec_id = rec.get_attribute("data-id")
    rec.get_by_role("button", name="Accept into the draft (shadow)").click()
    page.locator("dialog[open] button[value='yes']").click()
    accepted = page.locator(f"#run-recs article.rec[data-id='{rec_id}']")
    expect(accepted).to_have_attribute("data-status", "accepted")
    link = accepted.locator("a.draft-link")
    expect(link).to_contain_text("AG_")
    draft_rule = link.inner_text()
    expect(page.locator(f"#recs article.rec[data-id='{rec_id}']")).to_have_count(0)  # no longer proposed

    link.click()
    page.wait_for_url("**/rules")
    row = page.locator(f"#draft-table tr[data-rule-id='{draft_rule}']")
    expect(row).to_contain_text("retry:21600")
    expect(row).to_contain_text("shadow")
    expect(row).to_contain_text("added")
    page.screenshot(path=str(SCREENSHOTS / "agents_draft_rule.png"), full_page=True)
