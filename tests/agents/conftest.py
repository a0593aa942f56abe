"""Fixtures of the agents' tests: a copy of the session's dashboard lakehouse (real Spark-built silver,
gold and dash_ tables; copied so that what the agents write never reaches the shared one), read through
the control plane's DeltaReader as the agents are in the app, and silver as a Spark view for recomputing
their figures independently of the gold layer."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.control_plane.lakehouse import DeltaReader

SILVER_VIEW = "agents_test_silver"


@dataclass(frozen=True)
class Lake:
    root: Path
    catalog: str
    schema: str

    @property
    def folder(self) -> Path:
        return self.root / self.catalog / self.schema


def copy_lake(dashboard_lake, target: Path) -> Lake:
    lh, report = dashboard_lake
    assert not report.failed, report.failed
    source = Path(lh.warehouse_dir) / lh.catalog / lh.schema
    shutil.copytree(source, target / lh.catalog / lh.schema)
    return Lake(target, lh.catalog, lh.schema)


@pytest.fixture(scope="session")
def agents_lake(dashboard_lake, tmp_path_factory) -> Lake:
    return copy_lake(dashboard_lake, tmp_path_factory.mktemp("agents_lake"))


@pytest.fixture(scope="session")
def reader(agents_lake: Lake) -> DeltaReader:
    return DeltaReader(agents_lake.root, agents_lake.catalog, agents_lake.schema)


@pytest.fixture(scope="session")
def silver(spark, agents_lake: Lake):
    """``agents_test_silver``: the lake's silver_transactions, for recomputing figures straight from it."""
    df = spark.read.format("delta").load(str(agents_lake.folder / "silver_transactions"))
    df.createOrReplaceTempView(SILVER_VIEW)
    return df
