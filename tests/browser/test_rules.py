"""/rules in a real browser: inline validation at the parser's position, a shadow rule backtested by the
real Spark backtest job over silver history, activation, and the scoring API applying the new rule."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import Locator, Page, Route, expect

from spark.common.tables import SILVER_TRANSACTIONS, Lakehouse
from spark.etl import silver
from tests.browser.conftest import BT_MERCHANT, SCREENSHOTS, Service, Stack, click_and_confirm, poll_score, score
from tests.spark.factories import T0, bronze_frame, event

RULE_ID = "BT_BIG"
CONDITION = f"amount_major > 1000000 OR merchant_id = '{BT_MERCHANT}'"


@pytest.fixture(scope="module")
def silver_history(spark, stack: Stack) -> int:
    """A small silver_transactions table in the control plane's warehouse (main.payment_analysis), some
    of it from the merchant the new rule sends to review. Returns its row count."""
    events = [
        event(
            i,
            merchant_id=f"m_{i % 4:06d}",
            amount_minor=1000 + 137 * i,
            event_timestamp=T0 + timedelta(minutes=7 * i),
            fraud_score=0.05 + 0.01 * (i % 5),
        )
        for i in range(1, 25)
    ]
    events += [
        event(
            100 + i,
            merchant_id=BT_MERCHANT,
            amount_minor=4200,
            is_approved=i % 2 == 0,
            event_timestamp=T0 + timedelta(minutes=3 * i + 1),
        )
        for i in range(6)
    ]
    lakehouse = Lakehouse(warehouse_dir=stack.warehouse_dir)  # default catalog/schema, as the control plane
    lakehouse.write(silver.silver_transactions(bronze_frame(spark, events)), SILVER_TRANSACTIONS)
    return len(events)


def fill(form: Locator, **values) -> None:
    """Set the form's fields by name: inputs, selects and checkboxes."""
    for name, value in values.items():
        field = form.locator(f'[name="{name}"]')
        tag = field.evaluate("el => el.tagName.toLowerCase() + ':' + (el.type || '')")
        if tag.startswith("select"):
            field.select_option(str(value))
        elif tag.endswith(":checkbox"):
            field.set_checked(bool(value))
        else:
            field.fill(str(value))


def test_rule_validate_shadow_backtest_activate_and_score(signed_in: Page, scoring_api: Service, silver_history: int):
    page = signed_in
    page.goto("/rules")
    form = page.locator("#rule-form")
    expect(form).to_be_visible()

    # invalid condition: the parser's message with its position, inline
    fill(
        form,
        id=RULE_ID,
        name="Big or watched merchant",
        type="risk",
        condition="amount_major >>= 10",
        action="review",
        priority=5,
    )
    form.locator('[name="condition"]').blur()
    error = page.locator("#condition-error")
    expect(error).to_contain_text(re.compile(r"line 1.*column 15", re.I), timeout=10_000)

    # a valid rule, in shadow
    fill(form, condition=CONDITION)
    expect(page.locator("#condition-note")).to_contain_text("Valid", timeout=10_000)
    expect(error).to_be_empty()
    fill(form, shadow=True)
    page.locator("#rule-save").click()
    draft_row = page.locator(f'#draft-table tr[data-rule-id="{RULE_ID}"]')
    expect(draft_row.locator('.badge:text-is("shadow")')).to_be_visible(timeout=10_000)

    # backtest the draft against the live set: the real Spark job over the silver history
    page.locator("#backtest-draft").click()
    result = page.locator("#backtest-result")
    expect(result.locator('[data-metric="approval_rate"]')).to_be_visible(timeout=240_000)
    expect(page.locator("#backtest-status")).to_contain_text("succeeded")
    expect(result).to_contain_text(f"on {silver_history} transactions")  # the silver history written above

    # make it active and publish the rule set
    fill(form, shadow=False)
    page.locator("#rule-save").click()
    expect(draft_row.locator('.badge:text-is("shadow")')).to_have_count(0, timeout=10_000)
    click_and_confirm(page, page.locator("#activate"))
    latest = page.locator("#history-table tbody tr").first
    expect(latest.locator('.badge:text-is("live")')).to_be_visible(timeout=10_000)
    expect(latest).to_contain_text("1 added")

    decision = poll_score(scoring_api, lambda d: RULE_ID in codes(d), timeout=20, merchant_id=BT_MERCHANT)
    assert RULE_ID in codes(decision), decision
    assert decision["outcome"] == "review", decision
    other = score(scoring_api, merchant_id="m_000123")
    assert RULE_ID not in codes(other), other


def codes(decision: dict) -> list[str]:
    return [r["code"] for r in decision["reason_codes"]]


def test_what_is_typed_before_the_page_has_loaded_is_kept(signed_in: Page):
    """The form is usable at once: the field list (/api/rules/meta) arriving after the user started
    typing fills the action suggestions and resets nothing (it used to clear the form)."""
    page = signed_in
    held: list[Route] = []

    def hold(route: Route) -> None:  # answered only once the user has typed
        held.append(route)

    page.route("**/api/rules/meta", hold)
    try:
        page.goto("/rules")
        form = page.locator("#rule-form")
        fill(form, id="EARLY_1", name="Typed early", condition="amount_major > 5")
        expect(form.locator('[name="type"]')).to_have_value("risk")  # the default, as after loading
        for _ in range(100):
            if held:
                break
            page.wait_for_timeout(50)
        assert held, "the page never asked for /api/rules/meta"
        with page.expect_response("**/api/rules/meta"):
            held[0].continue_()
        expect(page.locator("#action-options option").first).to_be_attached()  # the meta arrived and was used
        assert form.locator('[name="id"]').input_value() == "EARLY_1"
        assert form.locator('[name="name"]').input_value() == "Typed early"
        assert form.locator('[name="condition"]').input_value() == "amount_major > 5"
    finally:
        page.unroute("**/api/rules/meta")


def test_the_fields_below_the_condition_stay_put_while_it_is_validated(signed_in: Page):
    """The condition's error (message, source line, caret) and its "Valid" note take the same room, so a
    click aimed at Shadow or Active while the check of what was just typed comes back lands where it was
    aimed (the error's three lines used to collapse to one and move every field below)."""
    page = signed_in
    page.goto("/rules")
    form = page.locator("#rule-form")
    shadow = form.locator('[name="shadow"]')

    def top() -> float:  # from the document's top, whatever the scroll
        return shadow.evaluate("el => el.getBoundingClientRect().top + window.scrollY")

    expect(page.locator("#action-options option").first).to_be_attached()  # the page has loaded

    fill(form, condition="amount_major >>= 10")
    expect(page.locator("#condition-error pre")).to_contain_text("^", timeout=10_000)
    with_error = top()
    page.screenshot(path=str(SCREENSHOTS / "rules-condition-error.png"), full_page=True)  # the end's shows "Valid"

    fill(form, condition="amount_major > 10")
    expect(page.locator("#condition-note")).to_contain_text("Valid", timeout=10_000)
    expect(page.locator("#condition-error")).to_be_empty()
    valid = top()

    page.locator("#rule-cancel").click()  # Clear form: no error, no note
    expect(form.locator('[name="condition"]')).to_have_value("")
    empty = top()

    assert empty == with_error == valid, (empty, with_error, valid)
