"""The train job's last task points each serving endpoint at its model's champion, against a loopback
server that answers the Unity Catalog and serving REST paths the SDK calls with the real API's shapes."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from databricks.sdk import WorkspaceClient

from bundle.tasks import serve_champions

CATALOG, SCHEMA = "main", "jane_doe_payment_analysis"
ENDPOINTS = {"approval": "ep-approval", "risk": "ep-risk", "routing": "ep-routing", "retry": "ep-retry"}


class Workspace(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        # model -> champion version; endpoint -> served (model, version) or None
        self.champions = {
            f"{CATALOG}.{SCHEMA}.payment_analysis_approval": 3,
            f"{CATALOG}.{SCHEMA}.payment_analysis_risk": 1,
            f"{CATALOG}.{SCHEMA}.payment_analysis_routing": 2,
        }
        self.served: dict[str, tuple[str, str] | None] = {
            "ep-approval": (f"{CATALOG}.{SCHEMA}.payment_analysis_approval", "2"),
            "ep-risk": (f"{CATALOG}.{SCHEMA}.payment_analysis_risk", "1"),
            "ep-routing": None,
            "ep-retry": None,
        }
        self.updates: list[tuple[str, dict]] = []


class Handler(BaseHTTPRequestHandler):
    server: Workspace

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path.startswith("/api/2.1/unity-catalog/models/") and "/aliases/" in path:
            model, alias = path.removeprefix("/api/2.1/unity-catalog/models/").split("/aliases/")
            version = self.server.champions.get(model)
            if alias != "champion" or version is None:
                return self._send(
                    404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"alias {alias} of {model}"}
                )
            return self._send(
                200,
                {"model_name": model, "version": version, "aliases": [{"alias_name": alias, "version_num": version}]},
            )
        if path.startswith("/api/2.0/serving-endpoints/"):
            name = path.removeprefix("/api/2.0/serving-endpoints/")
            served = self.server.served[name]
            config = (
                {"served_entities": [{"name": "x", "entity_name": served[0], "entity_version": served[1]}]}
                if served
                else None
            )
            return self._send(
                200, {"name": name, "state": {"ready": "READY"}, **({"config": config} if config else {})}
            )
        self._send(404, {"error_code": "NOT_FOUND", "message": path})

    def do_PUT(self) -> None:
        name = self.path.removeprefix("/api/2.0/serving-endpoints/").removesuffix("/config")
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.updates.append((name, body))
        entity = body["served_entities"][0]
        self.server.served[name] = (entity["entity_name"], entity["entity_version"])
        self._send(200, {"name": name, "state": {"config_update": "IN_PROGRESS"}})

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def workspace() -> Iterator[Workspace]:
    server = Workspace()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_endpoints_follow_the_champion_alias(workspace: Workspace) -> None:
    w = WorkspaceClient(host=f"http://127.0.0.1:{workspace.server_address[1]}", token="loopback")
    updates = serve_champions.run(w, CATALOG, SCHEMA, ENDPOINTS, "Small")
    # approval moves 2 -> 3, routing gets its first version, risk is current, retry has no champion yet
    assert [(u.endpoint, u.version) for u in updates] == [("ep-approval", "3"), ("ep-routing", "2")]
    name, body = workspace.updates[0]
    assert name == "ep-approval"
    assert body["served_entities"] == [
        {
            "name": "approval",
            "entity_name": f"{CATALOG}.{SCHEMA}.payment_analysis_approval",
            "entity_version": "3",
            "workload_size": "Small",
            "scale_to_zero_enabled": True,
        }
    ]
    assert body["traffic_config"] == {"routes": [{"served_entity_name": "approval", "traffic_percentage": 100}]}
    assert serve_champions.run(w, CATALOG, SCHEMA, ENDPOINTS, "Small") == []  # nothing left to move


def test_the_endpoint_arguments_are_checked() -> None:
    assert serve_champions.parse_endpoints(["risk=a", "retry=b"]) == {"risk": "a", "retry": "b"}
    with pytest.raises(SystemExit, match="KIND=NAME"):
        serve_champions.parse_endpoints(["fraud=a"])
