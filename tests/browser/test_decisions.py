"""/decisions in a real browser: a transaction produced to Kafka is decided by the real stream processor
and appears live (no reload); "Try a transaction" scores through the real scoring API."""

from __future__ import annotations

import json
import re
import time

import httpx
from playwright.sync_api import Page, expect

from tests.browser.conftest import API_KEY, Service, Stack, new_transaction, produce_transaction


def test_try_a_transaction_shows_the_decision_and_why(signed_in: Page, scoring_api: Service):
    page = signed_in
    page.goto("/decisions")
    form = page.locator("#try-form")
    # prefilled from a realistic sample
    expect(form.locator('[name="merchant_id"]')).not_to_have_value("", timeout=15_000)
    expect(form.locator('[name="amount"]')).not_to_have_value("")
    txn = json.loads(page.locator("#t-raw").input_value())["transaction_id"]
    page.locator("#try-submit").click()

    result = page.locator("#try-result")
    outcome = result.locator(".result-head .badge").first
    expect(outcome).to_have_text(re.compile(r"^(approve|decline|review|challenge_3ds)$"), timeout=20_000)
    # why: the reason codes (rules that fired, the models' factors, the policy)
    expect(result.locator("[data-reason-code]").first).to_be_visible()
    assert result.locator("[data-reason-code]").count() >= 1

    # the real scoring API decided it: it serves the same decision by transaction id
    stored = poll_stored_decision(scoring_api, txn)
    assert stored["outcome"] == outcome.inner_text()
    shown = result.locator("[data-reason-code]").evaluate_all("els => els.map(e => e.dataset.reasonCode)")
    assert shown == [r["code"] for r in stored["reason_codes"]]


def poll_stored_decision(scoring_api: Service, txn: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        resp = httpx.get(
            f"{scoring_api.url}/decisions/{txn}", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5
        )
        if resp.status_code == 200 or time.monotonic() > deadline:
            assert resp.status_code == 200, resp.text
            return resp.json()
        time.sleep(0.3)


def test_produced_transaction_appears_live(signed_in: Page, stack: Stack, stream_processor: Service):
    page = signed_in
    page.goto("/decisions")
    expect(page.locator("#decisions-table")).to_be_visible()
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads

    event = new_transaction()
    txn = event["transaction_id"]
    produce_transaction(stack, event)

    row = page.locator(f'#decisions-table tr[data-transaction-id="{txn}"]')
    expect(row).to_be_visible(timeout=90_000)
    assert page.evaluate("window.__sameDocument === true"), "the decision must arrive without a reload"
    row.click()
    expect(page.locator("#decision-detail")).to_contain_text(txn, timeout=10_000)
    expect(page.locator("#decision-detail")).to_contain_text(event["merchant_id"])
