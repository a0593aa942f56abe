"""Session-scoped real infrastructure for the whole suite.

Each server starts only when a test asks for it, on free loopback ports in a temporary folder, and
stops at the end of the session. Topic names carry a per-run prefix so runs never see each other's
data, and Redis keys a per-run namespace.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher import local
from launcher.topics import ensure_topics
from spark.common.session import get_spark

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)

RUN_ID = uuid.uuid4().hex[:8]


def pytest_addoption(parser: pytest.Parser) -> None:
    # here, not in tests/bundle/conftest.py: pytest only takes options from the root conftest of a run
    parser.addoption(
        "--bundle-schema",
        default=None,
        help="the official Databricks bundle JSON schema the bundle tests validate against "
        "(default: $PA_BUNDLE_SCHEMA)",
    )


def _pa_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(("PA_", "DATABRICKS_"))}


_ENVIRONMENT_AT_START = _pa_environment()


@pytest.fixture(autouse=True)
def no_leaked_settings() -> Iterator[None]:
    """Settings come from the environment, so a test (or a fixture of any scope) that leaves a
    ``PA_``/``DATABRICKS_`` variable behind changes what every later test runs on: fail where it happens
    and put the environment back. Use ``monkeypatch.setenv`` or pass an explicit mapping instead."""
    yield
    leaked = _pa_environment()
    if leaked != _ENVIRONMENT_AT_START:
        changed = sorted(set(leaked.items()) ^ set(_ENVIRONMENT_AT_START.items()))
        for name in {k for k, _ in changed}:
            os.environ.pop(name, None)
            if name in _ENVIRONMENT_AT_START:
                os.environ[name] = _ENVIRONMENT_AT_START[name]
        pytest.fail(f"the environment was changed and not restored: {sorted({k for k, _ in changed})}")


@pytest.fixture(scope="session")
def platform_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("platform")
    # PostgreSQL runs as the postgres user and must traverse the folder
    for parent in [path, *path.parents]:
        if str(parent).startswith("/tmp"):
            os.chmod(parent, 0o755) if parent != Path("/tmp") else None
    return path


@pytest.fixture(scope="session")
def kafka_bootstrap(platform_dir: Path) -> Iterator[str]:
    with local.kafka(platform_dir) as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def topic_prefix() -> str:
    return f"test{RUN_ID}."


@pytest.fixture(scope="session")
def kafka_topics(kafka_bootstrap: str, topic_prefix: str) -> str:
    """The contract's topics, created under this run's prefix. Returns the prefix."""
    ensure_topics(kafka_bootstrap, topic_prefix)
    return topic_prefix


@pytest.fixture(scope="session")
def redis_url(platform_dir: Path) -> Iterator[str]:
    with local.redis(platform_dir) as url:
        yield url


@pytest.fixture(scope="session")
def postgres_url(platform_dir: Path) -> Iterator[str]:
    with local.postgres(platform_dir) as url:
        yield url


@pytest.fixture(scope="session")
def warehouse_dir(platform_dir: Path) -> Path:
    path = platform_dir / "warehouse"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def spark(warehouse_dir: Path):
    """One local SparkSession for the whole test session (with Kafka and Delta jars)."""
    session = get_spark(
        "payment-analysis-tests", warehouse_dir=warehouse_dir, extra_conf={"spark.sql.shuffle.partitions": "2"}
    )
    yield session
    session.stop()


@pytest.fixture(scope="session")
def dashboard_lake(spark, tmp_path_factory: pytest.TempPathFactory, worker_id: str):
    """Four days of history through silver, gold and the dashboard tables (tests/spark/dashboard_lake.py),
    built once for the Spark and the browser tests of the dashboards; under xdist (`make test`) once
    for the whole run, each worker on its own copy."""
    from tests.spark import dashboard_lake as lake  # noqa: PLC0415 - only sessions that ask for it pay for Spark imports

    own = tmp_path_factory.mktemp("dashboard_lake") / "wh"
    if worker_id == "master":  # one process: no other worker to share with
        return lake.build_lake(spark, own)
    return lake.build_once(spark, tmp_path_factory.getbasetemp().parent / "dashboard_lake", own)
