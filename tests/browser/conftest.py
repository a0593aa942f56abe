"""Browser-test fixtures: a real stack (MLflow registry, scoring API, control plane, and for /decisions
the stream processor) as subprocesses on free ports, and headless Debian chromium driven by Playwright.

Every server gets the same temporary data folder, topic prefix and Redis namespace, exactly as
``make up`` wires them (launcher/services.py ``service_env``). Each test gets a fresh browser context
and page; its screenshot goes to ``tests/browser/screenshots/<test name>.png``, also when it fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition
from playwright.sync_api import Browser, BrowserContext, Locator, Page, sync_playwright

from launcher.infra import free_port
from payments_core.contract.topics import DECISIONS, TRANSACTIONS, prefixed
from payments_core.samples import EXAMPLE_REQUEST
from tests.payments_core.helpers import mlflow_uri, register_all, train_models
from tests.services.stream_processor.conftest import make_events, produce

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(__file__).parent / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN_PASSWORD = "browser-tests-admin-pw"
API_KEY = "browser-tests-key"
BT_MERCHANT = "m_987654"  # the merchant the rules test's BT_BIG rule matches (not in the samples' range)


# ------------------------------------------------------------------------------------------- processes
@dataclass
class Service:
    """One server or worker started by these fixtures (its own process group), logging to a file."""

    name: str
    proc: subprocess.Popen
    log_path: Path
    url: str = ""

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return "(no log)"

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; log tail:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        """``sig`` to the process, then SIGKILL to its whole group (a Spark JVM it started included)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # the group is ours: start_new_session below
        self.proc.wait()


def clean_env(**pa: str) -> dict[str, str]:
    """The test process's environment without any ``PA_*`` of the caller's shell, plus ``pa``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PA_")}
    env.update(
        PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable
    )
    env.update(pa)
    return env


def start_service(name: str, argv: list[str], env: dict[str, str], log_dir: Path, url: str = "") -> Service:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [sys.executable, *argv],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Service(name, proc, log_path, url)


def wait_for(
    what: str, check: Callable[[], bool], timeout: float, service: Service | None = None, interval: float = 0.3
) -> None:
    """Poll ``check`` until true; fail with the service's log when it dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service is not None:
            service.check_alive()
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(interval)
    tail = f"; log tail:\n{service.log_tail()}" if service is not None else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{tail}")


def http_ok(url: str) -> Callable[[], bool]:
    return lambda: httpx.get(url, timeout=2).status_code == 200


# ------------------------------------------------------------------------------------------- the stack
@dataclass(frozen=True)
class Stack:
    data_dir: Path
    warehouse_dir: Path
    log_dir: Path
    registry_uri: str
    kafka_bootstrap: str
    topic_prefix: str
    redis_url: str
    redis_prefix: str

    def env(self, **extra: str) -> dict[str, str]:
        """What every service of this stack gets (as ``service_env`` in launcher/services.py)."""
        return clean_env(
            PA_KAFKA_BOOTSTRAP=self.kafka_bootstrap,
            PA_TOPIC_PREFIX=self.topic_prefix,
            PA_REDIS_URL=self.redis_url,
            PA_REDIS_PREFIX=self.redis_prefix,
            PA_DATA_DIR=str(self.data_dir),
            PA_WAREHOUSE_DIR=str(self.warehouse_dir),
            PA_MLFLOW_TRACKING_URI=self.registry_uri,
            **extra,
        )

    @property
    def transactions_topic(self) -> str:
        return prefixed(TRANSACTIONS, self.topic_prefix)

    @property
    def decisions_topic(self) -> str:
        return prefixed(DECISIONS, self.topic_prefix)


@pytest.fixture(scope="package")
def browser_registry(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real sqlite MLflow registry: every model kind registered twice (versions 1 and 2), champion = 1."""
    tmp = tmp_path_factory.mktemp("browser_mlflow")
    uri = mlflow_uri(tmp)
    register_all(uri, tmp / "artifacts", train_models(n=800, seed=5), aliases=("champion",))
    register_all(uri, tmp / "artifacts", train_models(n=800, seed=6), aliases=())
    return uri


@pytest.fixture(scope="package")
def stack(tmp_path_factory, browser_registry: str, kafka_bootstrap: str, kafka_topics: str, redis_url: str) -> Stack:
    root = tmp_path_factory.mktemp("browser_stack")
    for sub in ("data", "warehouse", "logs"):
        (root / sub).mkdir()
    return Stack(
        root / "data",
        root / "warehouse",
        root / "logs",
        browser_registry,
        kafka_bootstrap,
        kafka_topics,
        redis_url,
        f"bt{uuid.uuid4().hex[:8]}",
    )


@pytest.fixture(scope="package")
def servers(stack: Stack) -> Iterator[tuple[Service, Service]]:
    """The scoring API and the control plane, started together (neither needs the other to start)."""
    api_port, cp_port = free_port(), free_port()
    api_url, cp_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{cp_port}"
    api = start_service(
        "scoring_api",
        ["-m", "services.scoring_api", "serve", "--port", str(api_port), "--no-consumer"],
        stack.env(PA_ENV="prod", PA_API_KEYS=API_KEY, PA_REFRESH_SECONDS="1"),
        stack.log_dir,
        api_url,
    )
    cp = start_service(
        "control_plane",
        ["-m", "services.control_plane", "serve", "--port", str(cp_port)],
        stack.env(
            PA_ADMIN_PASSWORD=ADMIN_PASSWORD,
            PA_SCORING_API_URL=api_url,
            PA_SCORING_API_KEY=API_KEY,
            PA_FIRST_RUN="false",
        ),
        stack.log_dir,
        cp_url,
    )
    try:
        wait_for("scoring API /ready (rules and models loaded)", http_ok(f"{api_url}/ready"), 120, api)
        wait_for("control plane /health", http_ok(f"{cp_url}/health"), 90, cp)
        yield api, cp
    finally:
        cp.stop()
        api.stop()


@pytest.fixture(scope="package")
def scoring_api(servers: tuple[Service, Service]) -> Service:
    return servers[0]


@pytest.fixture(scope="package")
def control_plane(servers: tuple[Service, Service]) -> Service:
    return servers[1]


# ------------------------------------------------------------------------------------------- Kafka, /score
def new_transaction(**overrides: Any) -> dict[str, Any]:
    """One valid transaction event (JSON-ready), a fresh id, timestamped now."""
    (event,) = make_events(1, seed=uuid.uuid4().int % 10**9, start=datetime.now(UTC), **overrides)
    event["transaction_id"] = overrides.get("transaction_id") or f"txn_{uuid.uuid4().hex[:16]}"
    return event


def produce_transaction(stack: Stack, event: dict[str, Any]) -> None:
    produce(stack.kafka_bootstrap, stack.transactions_topic, [orjson.dumps(event)], [event["transaction_id"].encode()])


def find_decision(stack: Stack, transaction_id: str, timeout: float, service: Service | None = None) -> dict:
    """The decision of ``transaction_id`` read from the decisions topic (from its beginning)."""
    consumer = Consumer(
        {
            "bootstrap.servers": stack.kafka_bootstrap,
            "group.id": f"bt-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        topic = stack.decisions_topic
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        deadline = time.monotonic() + timeout
        needle = transaction_id.encode()
        while time.monotonic() < deadline:
            if service is not None:
                service.check_alive()
            msg = consumer.poll(0.5)
            if msg is None or msg.error() or needle not in (msg.value() or b""):
                continue
            decision = orjson.loads(msg.value())
            if decision.get("transaction_id") == transaction_id:
                return decision
    finally:
        consumer.close()
    tail = f"; log tail:\n{service.log_tail()}" if service is not None else ""
    raise AssertionError(f"no decision for {transaction_id} on {stack.decisions_topic} after {timeout:.0f}s{tail}")


def score(scoring_api: Service, **overrides: Any) -> dict[str, Any]:
    """``POST /score`` a fresh copy of the example request (idempotency is by id: a new id each call)."""
    body = {
        **EXAMPLE_REQUEST,
        "transaction_id": f"txn_{uuid.uuid4().hex[:16]}",
        "event_timestamp": datetime.now(UTC).isoformat(),
        **overrides,
    }
    resp = httpx.post(f"{scoring_api.url}/score", json=body, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def poll_score(scoring_api: Service, accept: Callable[[dict], bool], timeout: float = 20, **overrides: Any) -> dict:
    """Score until ``accept(decision)`` (the API re-reads rules and aliases every PA_REFRESH_SECONDS)."""
    deadline = time.monotonic() + timeout
    while True:
        decision = score(scoring_api, **overrides)
        if accept(decision) or time.monotonic() > deadline:
            return decision
        time.sleep(0.5)


# ------------------------------------------------------------------------------------------- browser
# Package scope, not session: Playwright's sync API keeps an event loop running in the main thread
# until it stops, and later tests that call asyncio.run() must not find one; the servers stop too.
@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    pw = sync_playwright().start()
    try:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
    finally:
        pw.stop()


@pytest.fixture
def context(browser: Browser, control_plane: Service) -> Iterator[BrowserContext]:
    ctx = browser.new_context(base_url=control_plane.url, viewport={"width": 1366, "height": 900})
    ctx.set_default_timeout(20_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext, request: pytest.FixtureRequest) -> Page:
    """A fresh page; its full-page screenshot is saved when the test ends, passed or failed."""
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    page.on("console", lambda msg: errors.append(f"console.{msg.type}: {msg.text}") if msg.type == "error" else None)

    def screenshot() -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        try:
            page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True, timeout=15_000)
        except Exception as exc:  # a screenshot must never hide the test's own result
            print(f"screenshot of {name} failed: {exc}")
        if errors:
            print(f"browser errors during {name}:\n  " + "\n  ".join(errors))

    request.addfinalizer(screenshot)
    return page


def sign_in(page: Page, password: str = ADMIN_PASSWORD, next_path: str = "/setup") -> None:
    """Through the real login form."""
    page.goto(f"/login?next={next_path}")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


@pytest.fixture
def signed_in(page: Page) -> Page:
    sign_in(page)
    page.wait_for_url("**/setup")
    return page


def click_and_confirm(page: Page, target: Locator) -> None:
    """Click ``target`` and accept the app's confirmation ``<dialog>`` (``PA.confirmDialog`` in app.js)."""
    target.click()
    page.locator("dialog[open] button[value='yes']").click(timeout=10_000)


# ------------------------------------------------------------------------------------------- stream
@pytest.fixture(scope="module")
def stream_processor(stack: Stack) -> Iterator[Service]:
    """The real stream processor on the stack's topics (decision log off to keep it light); ready once
    a warm-up transaction's decision is on the decisions topic (Spark start-up: 20-60 s)."""
    env = stack.env(PA_STREAM_DECISION_LOG="false")
    svc = start_service("stream_processor", ["-m", "services.stream_processor", "run"], env, stack.log_dir)
    try:
        warm_up = new_transaction()
        produce_transaction(stack, warm_up)
        find_decision(stack, warm_up["transaction_id"], timeout=180, service=svc)
        yield svc
    finally:
        svc.stop(signal.SIGTERM, timeout=60)
