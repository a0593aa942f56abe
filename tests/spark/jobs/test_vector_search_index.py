"""The Databricks form of the similar-transaction index (Vector Search Delta Sync over
transaction_summaries) through the real databricks-sdk, against a local HTTP server answering the REST
paths it calls with bodies shaped like the real API's (field names from
databricks/sdk/service/vectorsearch.py), and Change Data Feed turned on by real Spark SQL."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
from databricks.sdk import WorkspaceClient

from spark.jobs import vector_search_index as vs

TOKEN = "dapi-vector-search-stub"
WORKSPACE_ID = "6051921418418893"


class VectorSearchStub:
    """Endpoints go PROVISIONING -> ONLINE and indexes not ready -> ready one status read after they
    are created or synced; queries answer ``rows`` (nearest first) with a ``score`` column appended."""

    def __init__(self) -> None:
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.indexes: dict[str, dict[str, Any]] = {}
        self.rows: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, Any]] = []
        self.base_url = ""
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ routing
    def handle(self, method: str, path: str, body: Any, headers: Any) -> tuple[int, Any]:
        if path == "/.well-known/databricks-config":
            return 200, {"oidc_endpoint": f"{self.base_url}/oidc", "workspace_id": WORKSPACE_ID, "cloud": "aws"}
        if headers.get("Authorization") != f"Bearer {TOKEN}":
            return 401, {"error_code": "UNAUTHENTICATED", "message": "invalid token"}
        with self._lock:
            self.requests.append((method, path, body))
            parts = path.removeprefix("/api/2.0/vector-search/").split("/")
            if parts[0] == "endpoints":
                return self._endpoints(method, parts[1:], body)
            if parts[0] == "indexes":
                return self._indexes(method, parts[1:], body)
        return 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"no API at {path}"}

    def _endpoints(self, method: str, rest: list[str], body: Any) -> tuple[int, Any]:
        if method == "POST" and not rest:
            info = {
                "name": body["name"],
                "endpoint_type": body["endpoint_type"],
                "endpoint_status": {"state": "PROVISIONING", "message": "Endpoint is being provisioned"},
                "id": f"ep-{len(self.endpoints) + 1}",
                "creation_timestamp": 1767225600000,
                "last_updated_timestamp": 1767225600000,
                "creator": "someone@example.com",
                "num_indexes": 0,
            }
            self.endpoints[body["name"]] = info
            return 200, info
        if method == "GET" and len(rest) == 1:
            info = self.endpoints.get(rest[0])
            if info is None:
                return 404, {
                    "error_code": "RESOURCE_DOES_NOT_EXIST",
                    "message": f"Vector search endpoint {rest[0]} not found",
                }
            answer = json.loads(json.dumps(info))
            if info["endpoint_status"]["state"] == "PROVISIONING":  # online from the next read on
                info["endpoint_status"] = {"state": "ONLINE", "message": "Endpoint is online"}
            return 200, answer
        return 405, {"error_code": "BAD_REQUEST", "message": f"{method} not handled"}

    def _indexes(self, method: str, rest: list[str], body: Any) -> tuple[int, Any]:
        if method == "POST" and not rest:
            if body["name"] in self.indexes:
                return 409, {"error_code": "RESOURCE_ALREADY_EXISTS", "message": f"Index {body['name']} already exists"}
            spec = body["delta_sync_index_spec"]
            index = {
                "name": body["name"],
                "endpoint_name": body["endpoint_name"],
                "primary_key": body["primary_key"],
                "index_type": body["index_type"],
                "delta_sync_index_spec": {**spec, "pipeline_id": "pipe-1"},
                "status": {"ready": False, "message": "Index is being provisioned", "indexed_row_count": 0},
                "creator": "someone@example.com",
            }
            self.indexes[body["name"]] = index
            self.endpoints[body["endpoint_name"]]["num_indexes"] += 1
            return 200, index
        index = self.indexes.get(rest[0]) if rest else None
        if index is None:
            return 404, {
                "error_code": "RESOURCE_DOES_NOT_EXIST",
                "message": f"Index {rest[0] if rest else ''} does not exist",
            }
        if method == "GET" and len(rest) == 1:
            answer = json.loads(json.dumps(index))
            if not index["status"]["ready"]:  # the pipeline finishes between two reads
                index["status"] = {"ready": True, "message": "Index is ready", "indexed_row_count": len(self.rows)}
            return 200, answer
        if method == "POST" and rest[1:] == ["sync"]:
            index["status"] = {**index["status"], "ready": False, "message": "Syncing"}
            return 200, {}
        if method == "POST" and rest[1:] == ["query"]:
            wanted = body["columns"]
            data = [[r.get(c) for c in wanted] + [round(0.9 - 0.01 * i, 4)] for i, r in enumerate(self.rows)]
            data = data[: body.get("num_results", 10)]
            types = {"is_approved": "boolean", "is_fraud": "boolean", "amount_usd": "decimal(18,2)"}
            columns = [{"name": c, "type_text": types.get(c, "string")} for c in wanted] + [
                {"name": "score", "type_text": "float"}
            ]
            return 200, {
                "manifest": {"column_count": len(columns), "columns": columns},
                "result": {"row_count": len(data), "data_array": data},
                "next_page_token": "",
            }
        return 405, {"error_code": "BAD_REQUEST", "message": f"{method} not handled"}


@contextmanager
def stub_server() -> Iterator[VectorSearchStub]:
    stub = VectorSearchStub()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            status, answer = stub.handle(method, urlsplit(self.path).path, body, self.headers)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stub.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def stub() -> Iterator[VectorSearchStub]:
    with stub_server() as s:
        yield s


def _client(stub: VectorSearchStub) -> WorkspaceClient:
    return WorkspaceClient(host=stub.base_url, token=TOKEN)


TARGET = vs.IndexTarget(catalog="main", schema="payment_analysis")


def test_creates_the_endpoint_and_the_delta_sync_index_then_syncs_it(stub):
    w = _client(stub)
    stub.rows = [{"transaction_id": f"txn_{i:016x}"} for i in range(3)]
    first = vs.sync(w, TARGET, wait_seconds=5, poll_seconds=0.01)
    assert first == vs.SyncReport(
        endpoint="payment-analysis-vs",
        endpoint_created=True,
        index="main.payment_analysis.transaction_summaries_vs",
        index_created=True,
        synced=False,
        ready=True,
        indexed_row_count=3,
    )
    created = next(b for m, p, b in stub.requests if m == "POST" and p == "/api/2.0/vector-search/indexes")
    assert created["index_type"] == "DELTA_SYNC" and created["primary_key"] == "transaction_id"
    assert created["endpoint_name"] == "payment-analysis-vs"
    spec = created["delta_sync_index_spec"]
    assert spec["source_table"] == "main.payment_analysis.transaction_summaries"
    assert spec["pipeline_type"] == "TRIGGERED"
    assert spec["embedding_source_columns"] == [
        {"name": "summary", "embedding_model_endpoint_name": "databricks-gte-large-en"}
    ]
    assert {"is_approved", "decline_reason", "is_fraud"} <= set(spec["columns_to_sync"])
    assert stub.endpoints["payment-analysis-vs"]["endpoint_type"] == "STANDARD"

    # a second run creates nothing and asks for a sync (the incremental refresh after ETL/bootstrap)
    stub.rows.append({"transaction_id": "txn_0000000000000009"})
    again = vs.sync(w, TARGET, wait_seconds=5, poll_seconds=0.01)
    assert (again.endpoint_created, again.index_created, again.synced, again.ready, again.indexed_row_count) == (
        False,
        False,
        True,
        True,
        4,
    )
    posts = [p for m, p, _ in stub.requests if m == "POST"]
    assert posts.count("/api/2.0/vector-search/endpoints") == 1 and posts.count("/api/2.0/vector-search/indexes") == 1
    assert posts.count(f"/api/2.0/vector-search/indexes/{TARGET.index}/sync") == 1


def test_an_index_over_another_table_or_an_offline_endpoint_is_an_error(stub):
    w = _client(stub)
    vs.sync(w, TARGET, wait_seconds=0, poll_seconds=0.01)
    stub.indexes[TARGET.index]["delta_sync_index_spec"]["source_table"] = "main.other.table"
    with pytest.raises(vs.VectorSearchSetupError, match=r"source table main\.other\.table"):
        vs.sync(w, TARGET, wait_seconds=0, poll_seconds=0.01)
    stub.endpoints["payment-analysis-vs"]["endpoint_status"] = {"state": "OFFLINE", "message": "quota exceeded"}
    with pytest.raises(vs.VectorSearchSetupError, match="OFFLINE: quota exceeded"):
        vs.sync(w, TARGET, wait_seconds=0, poll_seconds=0.01)


def test_query_returns_the_nearest_summaries_with_their_outcomes_and_mix(stub):
    w = _client(stub)
    vs.sync(w, TARGET, wait_seconds=0, poll_seconds=0.01)
    outcomes = [
        (True, None, False),
        (False, "DO_NOT_HONOR", True),
        (False, "DO_NOT_HONOR", False),
        (True, None, False),
        (False, "EXPIRED_CARD", False),
    ]
    stub.rows = [
        {"transaction_id": f"txn_{i:016x}", "summary": f"row {i}", "is_approved": a, "decline_reason": r, "is_fraud": f}
        for i, (a, r, f) in enumerate(outcomes)
    ]
    found = vs.query_similar(w, TARGET.index, "Declined DO_NOT_HONOR : 54.00 BRL Retail visa", k=4)
    assert [r["transaction_id"] for r in found.rows] == [f"txn_{i:016x}" for i in range(4)]
    assert found.rows[0]["score"] == 0.9
    query = next(b for m, p, b in stub.requests if p.endswith("/query"))
    assert query["query_text"].startswith("Declined DO_NOT_HONOR") and query["num_results"] == 4
    mix = found.mix
    assert (mix.neighbours, mix.approval_rate, mix.top_decline_reason, mix.top_decline_reason_count) == (
        4,
        0.5,
        "DO_NOT_HONOR",
        2,
    )
    assert (mix.fraud_share, mix.fraud_labelled) == (0.25, 4)


def test_command_line_against_the_workspace_of_the_environment(stub, monkeypatch):
    monkeypatch.setenv("DATABRICKS_HOST", stub.base_url)
    monkeypatch.setenv("DATABRICKS_TOKEN", TOKEN)
    argv = ["--catalog", "main", "--schema", "payment_analysis", "--no-change-data-feed", "--poll-seconds", "0.01"]
    assert vs.main([*argv, "--wait-seconds", "5"]) == 0
    assert TARGET.index in stub.indexes
    assert vs.main([*argv, "--index-name", "main.payment_analysis.other_vs", "--wait-seconds", "0"]) == 0
    assert set(stub.indexes) == {TARGET.index, "main.payment_analysis.other_vs"}


def test_change_data_feed_is_turned_on_for_the_source_table(spark, tmp_path):
    spark.range(3).write.format("delta").save(str(tmp_path / "summaries"))
    spark.sql(f"CREATE TABLE vs_summaries USING delta LOCATION '{tmp_path / 'summaries'}'")
    try:
        vs.enable_change_data_feed(spark, "spark_catalog.default.vs_summaries")
        vs.enable_change_data_feed(spark, "spark_catalog.default.vs_summaries")  # again: a no-op
        props = {r.key: r.value for r in spark.sql("SHOW TBLPROPERTIES vs_summaries").collect()}
        assert props["delta.enableChangeDataFeed"] == "true"
    finally:
        spark.sql("DROP TABLE IF EXISTS vs_summaries")
