"""/dashboards: the 12 dashboards drawn from the dashboard tables, read without a JVM.

The tables are written here with delta-rs, shaped like the datasets of dashboards 1 and 12 (the Spark
job that writes them for real is tested in tests/spark/jobs/test_dashboard_tables.py, which also
checks the numbers against Spark). Numbers, filters, freshness and the pages are checked through the
HTTP API, as the browser gets them.
"""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from dashboards import BY_ID, FOLDER
from services.control_plane.dashboard_data import NOT_REFRESHED
from spark.jobs.dashboard_tables import refresh_table

SCHEMA_DIR = ("main", "payment_analysis")
REFRESHED = datetime(2026, 11, 5, 6, 0, tzinfo=UTC)
DAYS = [date(2026, 11, 2), date(2026, 11, 3), date(2026, 11, 4)]
DAILY = [  # (transactions, approved, total value, avg fraud score)
    (100, 90, Decimal("1000.00"), 0.10),
    (200, 150, Decimal("2500.50"), 0.20),
    (50, 49, Decimal("400.25"), 0.05),
]
GEO = [  # code, name, region, transactions, approval rate, value
    ("BR", "Brazil", "LATAM", 300, 0.9, Decimal("3000.00")),
    ("US", "United States", "North America", 40, 0.8, Decimal("800.75")),
    ("MX", "Mexico", "LATAM", 10, 0.5, Decimal("100.00")),
]


def arrow_type(name: str) -> pa.DataType:
    """The type Spark gives each column of the gold views, from its name (enough for these tables)."""
    if name.endswith("_date"):
        return pa.date32()
    if name in ("event_hour", "evaluated_at", "window_start", "window_end") or name.endswith(("_at", "_hour")):
        return pa.timestamp("us", tz="UTC")
    if name.endswith("_usd"):
        return pa.decimal128(18, 2)
    if name.startswith("is_"):
        return pa.bool_()
    if re.search(r"(rate|share|score|latitude|longitude|_ms)$", name):
        return pa.float64()
    if re.search(r"(transactions|approved|declined|declines|count|seconds|merchants)$", name):
        return pa.int64()
    return pa.string()


def write_dataset(schema_dir: Path, name: str, rows: list[dict]) -> None:
    dataset = next(d for dash in BY_ID.values() for d in dash.datasets if d.name == name)
    schema = pa.schema([pa.field(c, arrow_type(c)) for c in dataset.columns])
    table = pa.Table.from_pylist([{c: r.get(c) for c in dataset.columns} for r in rows], schema)
    write_deltalake(str(schema_dir / dataset.table), table, mode="overwrite", schema_mode="overwrite")


def write_refreshes(schema_dir: Path, statuses: dict[str, str]) -> None:
    rows = [
        dict(
            dataset=name,
            table_name="dash_" + name,
            dashboards="1",
            refreshed_at=REFRESHED,
            status=status,
            row_count=None if status == "failed" else 3,
            content_hash=None,
            error="missing inputs: v_reason_code_insights" if status == "failed" else None,
        )
        for name, status in statuses.items()
    ]
    # the table as the job writes it (its schema)
    write_deltalake(str(schema_dir / "dash_refreshes"), refresh_table(rows), mode="overwrite")


@pytest.fixture
def warehouse(tmp_path) -> Path:
    root = tmp_path / "warehouse"
    schema_dir = root.joinpath(*SCHEMA_DIR)
    daily = [
        dict(
            event_date=d,
            transactions=n,
            approved=a,
            declined=n - a,
            total_value_usd=v,
            approved_value_usd=(v / 2).quantize(Decimal("0.01")),
            declined_value_usd=v - (v / 2).quantize(Decimal("0.01")),
            avg_fraud_score=f,
            fraud_transactions=1,
        )
        for d, (n, a, v, f) in zip(DAYS, DAILY)
    ]
    write_dataset(schema_dir, "daily_kpis", daily)
    hourly = [
        dict(
            event_hour=datetime.combine(d, datetime.min.time(), UTC) + timedelta(hours=h),
            event_date=d,
            transactions=n // 2,
            approved=a // 2,
        )
        for d, (n, a, _, _) in zip(DAYS, DAILY)
        for h in (9, 15)
    ]
    write_dataset(schema_dir, "hourly_kpis", hourly)
    write_dataset(
        schema_dir,
        "geography",
        [
            dict(country_code=c, country_name=n, region=r, transactions=t, approval_rate=ar, total_value_usd=v)
            for c, n, r, t, ar, v in GEO
        ],
    )
    write_refreshes(schema_dir, {"daily_kpis": "written", "hourly_kpis": "written", "geography": "unchanged"})
    return root


def numbers(body: dict) -> dict[str, dict]:
    return {w["name"]: w for w in body["widgets"]}


def value(widget: dict):
    (row,) = widget["rows"]
    (v,) = row.values()
    return v


def test_pages_before_the_first_refresh(make_client, tmp_path):
    client = make_client(warehouse_dir=tmp_path / "empty")
    listing = client.get("/api/dashboards").json()
    assert len(listing["dashboards"]) == 12 and listing["refreshed_at"] is None
    assert listing["message"] == NOT_REFRESHED
    assert all(d["datasets_missing"] for d in listing["dashboards"])
    page = client.get("/dashboards")
    assert page.status_code == 200 and "Global coverage" in page.text and html.escape(NOT_REFRESHED) in page.text
    body = client.get("/api/dashboards/executive_overview").json()
    assert body["message"] == NOT_REFRESHED
    assert {w["message"] for w in body["widgets"]} >= {"no data: dash_daily_kpis has not been written yet"}
    assert client.get("/dashboards/executive_overview").status_code == 200


def test_numbers_of_the_executive_overview_and_its_date_filter(make_client, warehouse):
    client = make_client(warehouse_dir=warehouse)
    body = client.get("/api/dashboards/executive_overview").json()
    assert body["refreshed_at"] == REFRESHED.isoformat() and body["message"] is None and not body["stale"]
    w = numbers(body)
    n, approved = sum(x[0] for x in DAILY), sum(x[1] for x in DAILY)
    assert value(w["volume"]) == n
    assert value(w["approval_rate"]) == pytest.approx(approved / n)
    assert value(w["value"]) == pytest.approx(float(sum(x[2] for x in DAILY)))
    assert value(w["avg_fraud"]) == pytest.approx(sum(x[0] * x[3] for x in DAILY) / n)
    assert value(w["fraud_rate"]) == pytest.approx(3 / n)
    # a line per hour (ascending), bars per day, the map with its ISO numeric codes
    assert [r["event_hour"] for r in w["approval_by_hour"]["rows"]] == sorted(
        r["event_hour"] for r in w["approval_by_hour"]["rows"]
    )
    assert len(w["approval_by_hour"]["rows"]) == 6
    assert [r["sum(transactions)"] for r in w["volume_by_day"]["rows"]] == [x[0] for x in DAILY]
    assert {r["country_code"]: r["iso_n3"] for r in w["approval_by_country"]["rows"]} == {
        "BR": "076",
        "US": "840",
        "MX": "484",
    }
    assert w["top_decline_reasons"]["message"] == "no data: dash_reason_codes has not been written yet"
    (dates,) = body["filters"]
    assert (dates["min"], dates["max"], dates["from"], dates["to"]) == ("2026-11-02", "2026-11-04", None, None)

    # the date range applies to the datasets it targets (daily and hourly KPIs), not to the map
    one_day = client.get("/api/dashboards/executive_overview?dates_from=2026-11-03&dates_to=2026-11-03").json()
    w = numbers(one_day)
    assert value(w["volume"]) == 200 and value(w["approval_rate"]) == pytest.approx(0.75)
    assert w["volume"]["filtered_by"] == ["Dates"] and w["approval_by_country"]["filtered_by"] == []
    assert len(w["approval_by_hour"]["rows"]) == 2 and len(w["approval_by_country"]["rows"]) == 3
    assert one_day["filters"][0]["from"] == "2026-11-03"
    open_ended = numbers(client.get("/api/dashboards/executive_overview?dates_from=2026-11-03").json())
    assert value(open_ended["volume"]) == 250
    bad = client.get("/api/dashboards/executive_overview?dates_from=yesterday")
    assert bad.status_code == 422 and "YYYY-MM-DD" in bad.json()["detail"]


def test_multi_select_keeps_only_known_values(make_client, warehouse):
    client = make_client(warehouse_dir=warehouse)
    body = client.get("/api/dashboards/global_coverage?country=BR&country=XX'; DROP TABLE x&region=LATAM").json()
    region, country = body["filters"]
    assert country["options"] == ["BR", "MX", "US"] and country["selected"] == ["BR"]
    assert region["selected"] == ["LATAM"]
    w = numbers(body)
    assert value(w["volume"]) == 300 and value(w["countries"]) == 1
    assert [r["country_code"] for r in w["countries_table"]["rows"]] == ["BR"]
    latam = numbers(client.get("/api/dashboards/global_coverage?region=LATAM").json())
    assert value(latam["volume"]) == 310
    assert value(latam["approval"]) == pytest.approx((300 * 0.9 + 10 * 0.5) / 310)
    assert [r["country_name"] for r in latam["approval_by_country"]["rows"]] == ["Brazil", "Mexico"]
    nothing = numbers(client.get("/api/dashboards/global_coverage?country=XX").json())
    assert value(nothing["volume"]) is None and nothing["world"]["rows"] == []
    assert nothing["world"]["message"] == "no rows for the selected filters"


def test_freshness_failures_and_pages(make_client, warehouse):
    client = make_client(warehouse_dir=warehouse)
    schema_dir = warehouse.joinpath(*SCHEMA_DIR)
    listing = client.get("/api/dashboards").json()
    by_id = {d["id"]: d for d in listing["dashboards"]}
    assert by_id["global_coverage"]["datasets_missing"] == []
    assert by_id["executive_overview"]["datasets_missing"] == ["reason_codes"]

    # the job could not compute a dataset: its widgets say why
    write_refreshes(schema_dir, {"daily_kpis": "written", "geography": "written", "reason_codes": "failed"})
    w = numbers(client.get("/api/dashboards/executive_overview").json())
    assert w["top_decline_reasons"]["message"] == "not refreshed: missing inputs: v_reason_code_insights"

    # the ETL wrote after the refresh: the page says the numbers are behind
    write_deltalake(str(schema_dir / "gold_partials"), pa.table({"n": [1]}))
    body = client.get("/api/dashboards/global_coverage").json()
    assert body["stale"] and "run Gold views" in body["message"]

    page = client.get("/dashboards/global_coverage?country=US")
    assert page.status_code == 200 and "/vendor/echarts.min.js" in page.text
    embedded = json.loads(
        re.search(r'<script type="application/json" id="dash-data">(.*?)</script>', page.text).group(1)
    )
    assert embedded["id"] == "global_coverage" and value(numbers(embedded)["volume"]) == 40
    assert 'value="US" checked' in page.text
    assert re.search(r'<a href="/dashboards"\s+class="active"', page.text), "Dashboards is a page, not upcoming"

    lakeview = client.get("/dashboards/global_coverage/lakeview.json")
    assert lakeview.status_code == 200
    assert lakeview.content == (FOLDER / BY_ID["global_coverage"].file_name).read_bytes()
    assert client.get("/dashboards/nope").status_code == 404
    assert client.get("/api/dashboards/nope").status_code == 404


def test_dashboards_need_a_signed_in_user(make_client, warehouse):
    client = make_client(warehouse_dir=warehouse, signed_in=False)
    assert client.get("/api/dashboards").status_code == 401
    assert client.get("/api/dashboards/global_coverage").status_code == 401
    page = client.get("/dashboards/global_coverage", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
