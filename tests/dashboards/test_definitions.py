"""The 12 dashboard definitions and their Lakeview files, checked without Spark.

The structural checks read the committed ``.lvdash.json`` files as JSON (what the bundle deploys),
not the Python objects: every widget's dataset exists, every field a widget or filter uses is a column
of its dataset's query, positions sit on the 6-column grid without overlap, every table or view
named is a gold dataset, and no catalog or schema is written anywhere.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from dashboards import BY_ID, DASHBOARDS, FOLDER, all_datasets, dashboards_using, generate
from dashboards.geo import ISO_NUMERIC
from dashboards.lakeview import to_lakeview
from dashboards.model import GRID_COLUMNS, TABLE_PREFIX
from dashboards.sql import Condition, backticks, column, double_quotes, ratio, select_columns, weighted, widget_query
from spark.common.tables import DASHBOARD_TABLE_PREFIX, DEFAULT_CATALOG, DEFAULT_SCHEMA
from spark.etl.gold import GOLD, GOLD_BY_NAME
from spark.etl.reference import COUNTRIES

REPO = Path(__file__).resolve().parents[2]
FILES = sorted(FOLDER.glob("*.lvdash.json"))
# widget type -> spec version, as workspace exports write them
VERSIONS = {
    "counter": 2,
    "bar": 3,
    "line": 3,
    "area": 3,
    "table": 2,
    "choropleth-map": 1,
    "filter-multi-select": 2,
    "filter-date-range-picker": 2,
}
BACKTICKED = re.compile(r"`([^`]+)`")


def load(path: Path) -> dict:
    return json.loads(path.read_text())


# ---------------------------------------------------------------------------------- definitions
def test_twelve_dashboards_numbered_in_order_with_valid_definitions():
    assert [d.number for d in DASHBOARDS] == list(range(1, 13))
    assert len(BY_ID) == 12
    for d in DASHBOARDS:
        assert d.problems() == [], d.id
        assert d.widgets and d.datasets and d.description


def test_every_dataset_reads_gold_datasets_only_and_the_registry_tags_agree():
    used: dict[str, set[int]] = {}
    for name, dataset in all_datasets().items():
        assert dataset.sources, name
        for source in dataset.sources:
            assert source in GOLD_BY_NAME, f"{name} reads {source}, not a gold dataset"
            used.setdefault(source, set()).update(dashboards_using(name))
    # spark/etl/gold.py tags each gold dataset with the dashboards that use it: the same as here
    assert {g.name: set(g.dashboards) for g in GOLD} == {g.name: used.get(g.name, set()) for g in GOLD}
    assert set(used) == set(GOLD_BY_NAME), "every gold dataset is on a dashboard"


def test_shared_datasets_are_one_definition_and_table_names_fit_the_lakehouse():
    datasets = all_datasets()
    assert len(datasets) == len({d.table for d in datasets.values()})
    assert TABLE_PREFIX == DASHBOARD_TABLE_PREFIX
    assert all(d.table == "dash_" + d.name for d in datasets.values())


def test_filters_make_sense():
    for d in DASHBOARDS:
        for f in d.filters:
            for dataset, name in f.targets:
                assert name in d.dataset(dataset).columns
                if f.kind == "date_range":
                    assert name.endswith("_date"), f"{d.id}.{f.name}: a date range filters a DATE column"


def test_every_country_has_a_map_code():
    assert set(COUNTRIES) <= set(ISO_NUMERIC)
    assert all(re.fullmatch(r"\d{3}", code) for code in ISO_NUMERIC.values())
    world = REPO / "services/control_plane/web/dist/world-countries.geo.json"
    if world.exists():  # built by `make web`
        ids = {f["id"] for f in json.loads(world.read_text())["features"]}
        assert set(ISO_NUMERIC.values()) <= ids


def test_the_dashboards_package_imports_no_spark_and_no_service():
    for path in (REPO / "dashboards").rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        bad = {n for n in names if n.split(".")[0] in {"pyspark", "spark", "services", "delta", "deltalake"}}
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


# ------------------------------------------------------------------------------------------ SQL
@pytest.mark.parametrize(
    ("sql", "columns"),
    [
        ("SELECT a, b AS c, ROUND(x, 2) AS d FROM {t}", ("a", "c", "d")),
        ("SELECT t.a, CASE WHEN x > 0 THEN 1 ELSE 0 END AS flag\nFROM {t} t WHERE y IN (1, 2)", ("a", "flag")),
        ("WITH s AS (SELECT a, b FROM {t}) SELECT s.a AS x FROM s", ("x",)),
        ("SELECT a, 'x' AS k FROM {t} UNION ALL SELECT b, 'y' FROM {t}", ("a", "k")),
        ("SELECT MAX(a) AS m, concat(b, ', ', c) AS s FROM {t}", ("m", "s")),
    ],
)
def test_select_columns(sql, columns):
    assert select_columns(sql) == columns


@pytest.mark.parametrize("sql", ["SELECT * FROM t", "SELECT a + 1 FROM t", "SELECT a, a FROM t", "VALUES (1)"])
def test_select_columns_refuses_what_it_cannot_name(sql):
    with pytest.raises(ValueError):
        select_columns(sql)


def test_widget_query_renders_for_each_engine():
    fields = [("event_date", column("event_date")), ("r", ratio("approved", "transactions"))]
    where = [Condition("segment", values=("Retail", "O'Hara")), Condition("event_date", date_from="2026-11-02")]
    sql = widget_query("dash_x", fields, double_quotes, where, [("r", True)], 5)
    assert sql == (
        'SELECT "event_date" AS "event_date", CAST(SUM("approved") AS DOUBLE) / NULLIF(SUM("transactions"), 0) AS "r" '
        "FROM dash_x WHERE \"segment\" IN ('Retail', 'O''Hara') AND \"event_date\" >= DATE '2026-11-02' "
        'GROUP BY "event_date" ORDER BY "r" DESC NULLS LAST LIMIT 5'
    )
    assert weighted("s", "n").sql(backticks) == (
        "CAST(SUM(`s` * `n`) AS DOUBLE) / NULLIF(SUM(CASE WHEN `s` IS NOT NULL THEN `n` END), 0)"
    )
    assert Condition("c", values=()).sql(backticks) == "FALSE"  # nothing chosen that exists: no rows


# -------------------------------------------------------------------------------- Lakeview files
def test_committed_files_are_what_the_generator_writes_now():
    assert generate.differences() == [], "run `python -m dashboards.generate` and commit the files"
    assert [p.name for p in FILES] == sorted(d.file_name for d in DASHBOARDS)


def test_generator_check_reports_a_stale_file(tmp_path):
    assert generate.main(["--folder", str(tmp_path)]) == 0
    assert generate.main(["--check", "--folder", str(tmp_path)]) == 0
    first = tmp_path / DASHBOARDS[0].file_name
    first.write_text(first.read_text().replace("Executive", "Exec"))
    (tmp_path / "99_gone.lvdash.json").write_text("{}")
    assert generate.differences(tmp_path) == [f"differs: {first.name}", "stale: 99_gone.lvdash.json"]
    assert generate.main(["--check", "--folder", str(tmp_path)]) == 1


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_lakeview_file_structure(path):
    doc = load(path)
    assert set(doc) == {"datasets", "pages", "uiSettings"}
    datasets = {d["name"]: "".join(d["queryLines"]) for d in doc["datasets"]}
    assert len(datasets) == len(doc["datasets"])
    columns = {name: set(select_columns(sql)) for name, sql in datasets.items()}
    used_datasets = set()
    for page in doc["pages"]:
        assert page["pageType"] == "PAGE_TYPE_CANVAS"
        taken: dict[tuple[int, int], str] = {}
        names = set()
        for item in page["layout"]:
            widget, pos = item["widget"], item["position"]
            assert widget["name"] not in names
            names.add(widget["name"])
            # the grid: 6 columns, no overlap
            assert pos["x"] >= 0 and pos["y"] >= 0 and pos["width"] >= 1 and pos["height"] >= 1
            assert pos["x"] + pos["width"] <= GRID_COLUMNS, widget["name"]
            for x in range(pos["x"], pos["x"] + pos["width"]):
                for y in range(pos["y"], pos["y"] + pos["height"]):
                    assert (x, y) not in taken, f"{widget['name']} overlaps {taken.get((x, y))}"
                    taken[(x, y)] = widget["name"]
            if "multilineTextboxSpec" in widget:
                continue
            spec = widget["spec"]
            assert VERSIONS[spec["widgetType"]] == spec["version"], spec["widgetType"]
            query_fields: dict[str, set[str]] = {}
            for q in widget["queries"]:
                query = q["query"]
                dataset = query["datasetName"]
                assert dataset in datasets, f"{widget['name']}: unknown dataset {dataset}"
                used_datasets.add(dataset)
                for f in query["fields"]:
                    referenced = set(BACKTICKED.findall(f["expression"])) - {"associative_filter_predicate_group", "*"}
                    assert referenced or "`*`" in f["expression"] or "associative" in f["expression"], f["expression"]
                    assert referenced <= columns[dataset], f"{widget['name']}: {referenced - columns[dataset]}"
                query_fields[q["name"]] = {f["name"] for f in query["fields"]}
            # every encoded field is a field of the widget's query (filters: of the query they name)
            encodings = spec["encodings"]
            if spec["widgetType"].startswith("filter-"):
                for f in encodings["fields"]:
                    assert f["fieldName"] in query_fields[f["queryName"]]
            else:
                main = query_fields["main_query"]
                encoded = [e for e in encodings.values() if isinstance(e, dict) and "fieldName" in e]
                encoded += encodings.get("columns", [])
                if "region" in encodings:
                    encoded.append(encodings["region"]["admin0"])
                assert encoded
                for e in encoded:
                    assert e["fieldName"] in main, f"{widget['name']}: {e['fieldName']}"
    assert used_datasets == set(datasets), "every dataset is used by a widget"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_lakeview_queries_name_gold_datasets_unqualified(path):
    text = path.read_text()
    for word in (DEFAULT_CATALOG + ".", DEFAULT_SCHEMA, "ahs_demos", "hive_metastore", "{", "}}"):
        if word == "{":
            assert not re.search(r"\{[a-z_]+\}", text), "an unresolved placeholder"
        else:
            assert word not in text, f"hard-coded {word!r}"
    for dataset in load(path)["datasets"]:
        sql = "".join(dataset["queryLines"])
        tables = re.findall(r"\b(?:FROM|JOIN)\s+([A-Za-z_][\w.`]*)", sql, re.IGNORECASE)
        assert tables, dataset["name"]
        for table in tables:
            assert "." not in table, f"{dataset['name']}: {table} is qualified (the bundle sets catalog and schema)"
            assert table in GOLD_BY_NAME, f"{dataset['name']}: {table} is not a gold dataset"


def test_lakeview_document_of_a_definition():
    d = BY_ID["global_coverage"]
    doc = to_lakeview(d)
    layout = doc["pages"][0]["layout"]
    assert layout[0]["widget"]["name"] == "header" and layout[0]["position"]["width"] == GRID_COLUMNS
    filters = [i for i in layout if i["widget"]["name"].startswith("filter_")]
    assert [f["widget"]["spec"]["widgetType"] for f in filters] == ["filter-multi-select"] * 2
    world = next(i["widget"] for i in layout if i["widget"]["name"] == "world")
    assert world["spec"]["encodings"]["region"]["admin0"]["fieldName"] == "country_name"
    # the widgets keep their relative layout below the header and the filters
    counters = [i for i in layout if i["widget"].get("spec", {}).get("widgetType") == "counter"]
    assert {c["position"]["y"] for c in counters} == {2} and sum(c["position"]["width"] for c in counters) == 6
