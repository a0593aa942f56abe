"""``make bundle-validate-cli``: ``databricks bundle validate`` by the official CLI, offline.

Builds the Databricks CLI at the bundle's minimum version (``bundle.databricks_cli_version``) from
the Go module proxy into ``.cache/databricks-cli/v<version>/databricks`` (once; the Go module and
build caches stay in ``.cache/go``), starts a loopback HTTP server answering the few workspace calls
``bundle validate`` makes (current user, the warehouse lookup, the deployment folder), and validates
every target with ``-o json``. It fails on a CLI error, a warning other than the CLI's known
false ones, a request the server does not know, or resolved output that misses what the bundle
declares. Not part of ``make test``: a first build compiles the CLI (about 4 to 5 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from bundle.build import report
from bundle.deploy import BUNDLE_DIR, minimum_cli_version

REPO_ROOT = BUNDLE_DIR.parent
CACHE_DIR = REPO_ROOT / ".cache"
CLI_MODULE = "github.com/databricks/cli"
TARGETS = ("dev", "prod")
USER = {"id": "4242", "userName": "jane.doe@example.com", "displayName": "Jane Doe", "active": True}
WAREHOUSE = {"id": "0123456789abcdef", "name": "Serverless Starter Warehouse"}
VARIABLES = {"catalog": "main", "kafka_bootstrap_servers": "broker-1.example.com:9092"}
# bundle.deploy.without_false_warnings: the CLI checks sync.include against bundle/, not the sync root
KNOWN_FALSE_WARNING = re.compile(r"^Warning: Pattern bundle/\S+ does not match any files$")


def cli_path(version: str) -> Path:
    return CACHE_DIR / "databricks-cli" / f"v{version}" / "databricks"


def build_cli(version: str) -> Path:
    """The CLI binary of ``version``, built once with the version stamped as a release build does."""
    binary = cli_path(version)
    if binary.is_file():
        return binary
    work = binary.parent.parent / f"build-v{version}"
    work.mkdir(parents=True, exist_ok=True)
    (work / "go.mod").write_text("module local/databricks-cli-build\n\ngo 1.26.0\n")
    env = {
        **os.environ,
        "GOFLAGS": "-buildvcs=false",
        "GOMODCACHE": str(CACHE_DIR / "go" / "mod"),
        "GOCACHE": str(CACHE_DIR / "go" / "build"),
    }
    started = time.monotonic()
    # `go install module@version` asks the proxy for the module's version list, which it refuses here;
    # a build inside a throwaway module asks only for the exact version.
    subprocess.run(["go", "get", f"{CLI_MODULE}@v{version}"], cwd=work, env=env, check=True)
    stamp = f"-X {CLI_MODULE}/internal/build.buildProjectName=cli -X {CLI_MODULE}/internal/build.buildVersion={version}"
    subprocess.run(
        ["go", "build", "-trimpath", "-ldflags", f"-s -w {stamp}", "-o", str(binary), CLI_MODULE],
        cwd=work,
        env=env,
        check=True,
    )
    report(f"cli_check: built the Databricks CLI {version} in {time.monotonic() - started:.0f}s")
    return binary


class FakeWorkspace(ThreadingHTTPServer):
    """Answers what ``bundle validate`` asks a workspace; records anything else."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.folders: set[str] = set()
        self.unknown: list[str] = []
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> FakeWorkspace:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: FakeWorkspace

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        status, out = 200, {}
        if url.path == "/api/2.0/preview/scim/v2/Me":
            out = USER
        elif url.path == "/api/2.0/sql/warehouses":
            out = {"warehouses": [WAREHOUSE]}
        elif url.path == "/api/2.0/workspace/mkdirs":
            self.server.folders.add(body.get("path", ""))
        elif url.path == "/api/2.0/workspace/get-status":
            path = query.get("path", [""])[0]
            if path in self.server.folders:
                out = {"object_type": "DIRECTORY", "path": path, "object_id": 1}
            else:
                status, out = 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"{path} does not exist"}
        elif url.path == "/.well-known/databricks-config":
            status, out = 404, {"error_code": "NOT_FOUND", "message": "no host metadata"}
        else:
            self.server.unknown.append(f"{self.command} {url.path}")
            status, out = 404, {"error_code": "NOT_FOUND", "message": f"{url.path} is not served here"}
        data = json.dumps(out).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


def cli_env(workspace: FakeWorkspace, home: Path, variables: dict[str, str] = VARIABLES) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),  # no ~/.databrickscfg, no cached host metadata of a real workspace
        "DATABRICKS_HOST": workspace.url,
        "DATABRICKS_TOKEN": "loopback",
        **{f"BUNDLE_VAR_{k}": v for k, v in variables.items()},
    }


def validate(binary: Path, target: str, workspace: FakeWorkspace, home: Path) -> tuple[dict, list[str]]:
    """The resolved bundle of ``target`` (``bundle validate -o json``) and the warnings printed."""
    env = cli_env(workspace, home)
    out = subprocess.run(
        [str(binary), "bundle", "validate", "--target", target, "--output", "json"],
        cwd=BUNDLE_DIR,
        env=env,
        text=True,
        capture_output=True,
        timeout=300,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"cli_check: bundle validate -t {target} failed:\n{out.stderr}")
    warnings = [line for line in out.stderr.splitlines() if line.startswith(("Warning:", "Error:"))]
    return json.loads(out.stdout), warnings


def problems(resolved: dict, target: str, warnings: list[str]) -> list[str]:
    """What the resolved bundle gets wrong."""
    out = [f"{target}: {w}" for w in warnings if not KNOWN_FALSE_WARNING.match(w)]
    text = json.dumps(resolved)
    out += [
        f"{target}: unresolved {m}" for m in sorted(set(re.findall(r"\$\{(?:var|bundle|workspace)\.[^}]+\}", text)))
    ]
    files = resolved["workspace"]["file_path"]
    resources = resolved.get("resources", {})
    for key, app in resources.get("apps", {}).items():
        if not app.get("source_code_path", "").startswith(f"{files}/bundle/apps/"):
            out.append(f"{target}: app {key} is deployed from {app.get('source_code_path')}")
    for key, job in resources.get("jobs", {}).items():
        for task in job.get("tasks", []):
            python_file = task.get("spark_python_task", {}).get("python_file")
            if python_file and not python_file.startswith(files):
                out.append(f"{target}: job {key} task {task['task_key']} runs {python_file}")
    for key, pipeline in resources.get("pipelines", {}).items():
        if pipeline.get("root_path") != files:
            out.append(f"{target}: pipeline {key} root_path {pipeline.get('root_path')} is not {files}")
    for kind in ("apps", "jobs", "pipelines", "dashboards", "model_serving_endpoints", "volumes", "schemas"):
        if not resources.get(kind):
            out.append(f"{target}: no {kind} in the resolved bundle")
    return out


def deploy_checks(binary: Path, workspace: FakeWorkspace, home: Path) -> list[str]:
    """``make bundle-validate`` (bundle/deploy.py) with this CLI: its checks pass and it validates; without
    a per-workspace variable it stops with the explanation."""

    def run(variables: dict[str, str]) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **cli_env(workspace, home, variables), "DATABRICKS_CLI": str(binary)}
        env.update({"PYTHONPATH": str(REPO_ROOT)})
        return subprocess.run(
            [sys.executable, "-m", "bundle.deploy", "--validate-only", "--target", "dev"],
            cwd=REPO_ROOT,
            env=env,
            text=True,
            capture_output=True,
            timeout=300,
            check=False,
        )

    out = []
    ok = run(VARIABLES)
    if ok.returncode != 0 or "the bundle is valid" not in ok.stdout:
        out.append(f"bundle.deploy --validate-only failed:\n{ok.stdout}{ok.stderr}")
    missing = run({k: v for k, v in VARIABLES.items() if k != "kafka_bootstrap_servers"})
    if missing.returncode != 2 or "BUNDLE_VAR_kafka_bootstrap_servers" not in missing.stderr:
        out.append(f"bundle.deploy without kafka_bootstrap_servers did not explain it:\n{missing.stderr}")
    report(f"cli_check: make bundle-validate: {'ok' if not out else 'FAILED'}")
    return out


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m bundle.cli_check", description=__doc__).parse_args(argv)
    version = str(minimum_cli_version())
    started = time.monotonic()
    binary = build_cli(version)
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as home, FakeWorkspace() as workspace:
        for target in TARGETS:
            t0 = time.monotonic()
            resolved, warnings = validate(binary, target, workspace, Path(home))
            found = problems(resolved, target, warnings)
            failures += found
            counts = {k: len(v) for k, v in sorted(resolved.get("resources", {}).items())}
            report(f"cli_check: {target}: valid in {time.monotonic() - t0:.1f}s, {counts}")
        failures += deploy_checks(binary, workspace, Path(home))
        failures += [f"unexpected request: {r}" for r in sorted(set(workspace.unknown))]
    for line in failures:
        report(f"cli_check: {line}", sys.stderr)
    report(f"cli_check: Databricks CLI {version}, {len(failures)} problem(s), {time.monotonic() - started:.0f}s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
