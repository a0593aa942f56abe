"""/models in a real browser: promoting a registered version moves the live ``champion`` alias in the
real MLflow registry, and the real scoring API reports the new version in ``model_versions``."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser.conftest import Service, click_and_confirm, poll_score, score


def test_promote_model_version_reaches_score(signed_in: Page, scoring_api: Service):
    assert score(scoring_api)["model_versions"]["risk"] == "1"  # the registry's champion at start
    page = signed_in
    page.goto("/models")
    row = page.locator('tr[data-model="risk"][data-version="2"]')
    expect(row).to_be_visible(timeout=20_000)
    click_and_confirm(page, row.locator('[data-promote="champion"]'))
    champion_badge = '.badge:text-is("champion")'
    expect(row.locator(champion_badge)).to_be_visible(timeout=15_000)
    expect(page.locator(f'tr[data-model="risk"][data-version="1"] {champion_badge}')).to_have_count(0)

    decision = poll_score(scoring_api, lambda d: d["model_versions"].get("risk") == "2", timeout=20)
    assert decision["model_versions"]["risk"] == "2", decision["model_versions"]
    assert decision["model_versions"]["approval"] == "1"  # only the promoted kind moved
