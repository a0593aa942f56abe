"""The Genie space sync against the stand-in workspace (tests/databricks_stub.py answers the Genie REST
paths with the API's shapes and checks a version-2 ``serialized_space`` as the API does): created once,
left alone when it matches, updated with its etag when someone changed it, found by title across pages."""

from __future__ import annotations

import json

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import DatabricksError

from spark.etl.gold import GOLD
from spark.jobs import genie_sync
from tests.databricks_stub import PAT, WAREHOUSE_ID, DatabricksStub


@pytest.fixture
def stub():
    s = DatabricksStub()
    with s.running():
        yield s


def client(stub: DatabricksStub) -> WorkspaceClient:
    return WorkspaceClient(host=stub.base_url, token=PAT)


def writes(stub: DatabricksStub) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in stub.requests if r.path.startswith("/api/2.0/genie") and r.method != "GET"]


def test_the_space_is_created_then_left_alone_then_repaired(stub, tmp_path):
    stub.add_genie_space("an analyst's own space")
    stub.add_genie_space("another one")
    stub.genie_page_size = 1  # the sync pages through the list to find its space by title
    w = client(stub)

    first = genie_sync.sync(w, "main", "pay", WAREHOUSE_ID)
    assert first.action == "created" and writes(stub) == [("POST", "/api/2.0/genie/spaces")]
    space = stub.genie_spaces[first.space_id]
    assert (space["title"], space["warehouse_id"]) == ("payment-analysis", WAREHOUSE_ID)
    content = json.loads(space["serialized_space"])
    tables = {t["identifier"]: t["description"][0] for t in content["data_sources"]["tables"]}
    assert set(tables) == {f"main.pay.{d.name}" for d in GOLD} | {
        "main.pay.approval_recommendations",
        "main.pay.gold_backtest_results",
    }
    retry = next(d for d in GOLD if d.name == "v_retry_performance")
    assert tables["main.pay.v_retry_performance"] == retry.description
    assert len(content["config"]["sample_questions"]) == len(genie_sync.SAMPLE_QUESTIONS)
    assert "DECIMAL(18,2)" in content["instructions"]["text_instructions"][0]["content"][0]
    sqls = ["".join(x["sql"]) for x in content["instructions"]["example_question_sqls"]]
    assert all("FROM main.pay." in sql for sql in sqls)

    # the same definition again: found by title (third page), nothing written
    again = genie_sync.sync(w, "main", "pay", WAREHOUSE_ID)
    assert (again.action, again.space_id) == ("unchanged", first.space_id)
    assert len(writes(stub)) == 1
    listed = [r for r in stub.requests if r.path == "/api/2.0/genie/spaces" and r.method == "GET"]
    assert [r.query.get("page_token") for r in listed[-3:]] == [None, ["1"], ["2"]]

    # someone dropped a table and renamed it by hand: the sync puts its definition back, with the etag it read
    broken = dict(content, data_sources={"tables": content["data_sources"]["tables"][1:]})
    stub.genie_spaces[first.space_id].update(serialized_space=json.dumps(broken), description="mine now")
    etag = stub.genie_spaces[first.space_id]["etag"]
    repaired = genie_sync.sync(w, "main", "pay", WAREHOUSE_ID, space_id=first.space_id)
    assert repaired.action == "updated"
    patch = [r for r in stub.requests if r.method == "PATCH"][-1]
    assert patch.body["etag"] == etag and patch.body["description"] == genie_sync.DESCRIPTION
    assert json.loads(stub.genie_spaces[first.space_id]["serialized_space"]) == content

    # the command line, as the bundle job runs it
    out = tmp_path / "genie.json"
    argv = ["--catalog", "main", "--schema", "pay", "--warehouse-id", WAREHOUSE_ID, "--result-json", str(out)]
    assert genie_sync.main(argv, client=w) == 0
    assert json.loads(out.read_text()) == {
        "action": "unchanged", "space_id": first.space_id, "title": "payment-analysis", "tables": len(tables)
    }  # fmt: skip


def test_another_catalog_gets_its_own_space_and_a_bad_warehouse_is_an_error(stub):
    w = client(stub)
    dev = genie_sync.sync(w, "dev", "me_pay", WAREHOUSE_ID, title="payment-analysis (dev)")
    prod = genie_sync.sync(w, "main", "pay", WAREHOUSE_ID)
    assert dev.space_id != prod.space_id and dev.action == prod.action == "created"
    with pytest.raises(DatabricksError, match="warehouse 'nope' not found"):
        genie_sync.sync(w, "main", "other", "nope", title="payment-analysis (other)")
    with pytest.raises(SystemExit):
        genie_sync.main(["--catalog", "main"], client=w)  # no warehouse: refused before any call
