"""The 12 dashboards in headless Debian chromium, over a real gold layer with data.

The lakehouse is the one the Spark test checks (four days of simulated transactions through silver,
the gold partials, the gold views job and the dashboard tables: the session's ``dashboard_lake``); a
control plane serves it (its own process, no JVM). For each dashboard: every chart has drawn marks
(series with data and painted pixels on its canvas, not an empty one), every counter a number, every
table rows, the world map its countries; a filter changes the numbers; a full-page screenshot is saved
to tests/browser/screenshots/dashboards/<id>.png (git-ignored).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page

from dashboards import DASHBOARDS
from launcher.infra import free_port
from tests.browser.conftest import ADMIN_PASSWORD, SCREENSHOTS, Service, clean_env, http_ok, start_service, wait_for
from tests.spark.dashboard_lake import MAY_BE_EMPTY

ERRORS: dict[Page, list[str]] = {}  # page errors seen by each page

# For each chart: how many data points its series hold and how many canvas pixels are painted.
DRAWN = """grid => [...grid.querySelectorAll('.widget')].map(section => {
    const body = section.querySelector('.body');
    const chart = window.echarts && echarts.getInstanceByDom(body);
    const canvas = body.querySelector('canvas');
    let painted = 0;
    if (canvas) {
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        for (let i = 3; i < data.length; i += 4) if (data[i] > 0) painted++;
    }
    const series = chart ? chart.getOption().series : [];
    return {
        name: section.dataset.widget,
        points: series.reduce((n, s) => n + (s.data || []).filter(v => v != null && (v.value ?? v) != null).length, 0),
        painted,
        text: body.innerText.trim(),
        rows: body.querySelectorAll('tbody tr').length,
    };
})"""


@pytest.fixture(scope="module")
def dashboard_server(dashboard_lake, tmp_path_factory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("browser_dashboards")
    lh, report = dashboard_lake
    assert not report.failed
    port = free_port()
    server = start_service(
        "control_plane_dashboards",
        ["-m", "services.control_plane", "serve", "--port", str(port)],
        clean_env(
            PA_DATA_DIR=str(root / "data"),
            PA_WAREHOUSE_DIR=str(lh.warehouse_dir),
            PA_CATALOG=lh.catalog,
            PA_SCHEMA=lh.schema,
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


@pytest.fixture(scope="module")
def dashboard_page(browser: Browser, dashboard_server: Service) -> Iterator[Page]:
    context = browser.new_context(base_url=dashboard_server.url, viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(20_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto("/login?next=/dashboards")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/dashboards")
    ERRORS[page] = errors
    yield page
    context.close()


def drawn(page: Page) -> dict:
    page.wait_for_selector("#dash-grid[data-ready='1']")
    return {w["name"]: w for w in page.eval_on_selector("#dash-grid", DRAWN)}


def shown_data(page: Page) -> dict:
    page.wait_for_selector("#dash-grid[data-ready='1']")
    return page.eval_on_selector("#dash-grid", "grid => grid.dashboardData")


def test_the_list_links_the_twelve(dashboard_page: Page):
    dashboard_page.goto("/dashboards")
    links = dashboard_page.locator(".dash-list h2 a")
    assert links.count() == 12
    assert "never" not in dashboard_page.locator(".page-head").inner_text()


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=lambda d: d.id)
def test_dashboard_draws_real_numbers_and_a_filter_changes_them(dashboard_page: Page, dashboard):
    page = dashboard_page
    page.goto(f"/dashboards/{dashboard.id}")
    try:
        widgets = drawn(page)
        data = shown_data(page)
        assert data["refreshed_at"] and not data["message"]
        for w in data["widgets"]:
            shown = widgets[w["name"]]
            if w["dataset"] in MAY_BE_EMPTY and not w["rows"]:
                continue
            assert w["rows"], f"{w['name']}: {w['message']}"
            if w["kind"] == "counter":  # a number, or the dash of "no value" where the value is null
                (value,) = w["rows"][0].values()  # (the last hour of a history that ended weeks ago)
                assert shown["text"] and (shown["text"] != "\u2013") == (value is not None), (w["name"], value)
            elif w["kind"] == "table":
                assert shown["rows"] == len(w["rows"]), w["name"]
            else:  # a chart or the map: series with points, and a canvas with marks on it
                assert shown["points"] > 0 and shown["painted"] > 500, (w["name"], shown)
        assert not ERRORS[page], ERRORS[page]

        # a filter changes the numbers of the widgets it applies to
        before = {w["name"]: w["rows"] for w in data["widgets"]}
        (f, *_) = data["filters"] or [None]
        if f is None:
            pytest.skip("no filter")
        if f["kind"] == "multi_select":
            page.locator(f"details.multi:has(input[name='{f['name']}']) summary").click()
            page.locator(f"input[name='{f['name']}']").first.check()
        else:
            page.locator(f"input[name='{f['name']}_from']").fill(f["max"])
            page.locator(f"input[name='{f['name']}_from']").dispatch_event("change")
        page.wait_for_function(
            "() => { const g = document.getElementById('dash-grid'), d = g.dashboardData;"
            " return d && g.dataset.ready && d.widgets.some(w => w.filtered_by.length); }"
        )
        after = shown_data(page)
        filtered = [w for w in after["widgets"] if w["filtered_by"]]
        assert filtered
        assert any(w["rows"] != before[w["name"]] for w in filtered), "the filter changed no number"
        assert f["name"] in page.url
    finally:
        SCREENSHOTS.joinpath("dashboards").mkdir(parents=True, exist_ok=True)
        page.screenshot(
            path=str(SCREENSHOTS / "dashboards" / f"{dashboard.number:02d}_{dashboard.id}.png"), full_page=True
        )
