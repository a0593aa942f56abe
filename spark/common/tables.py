"""Where a logical lakehouse table lives: one catalog.schema on Databricks, one folder locally.

Every Spark job names tables logically (``silver_transactions``, ``v_approval_kpis_daily``...) and asks
a :class:`Lakehouse` for them.

* Databricks (Unity Catalog): ``catalog.schema.table``; tables are read and written through the
  metastore; gold views are real views.
* Local (no Docker, ``spark.sql.catalogImplementation=in-memory``): a schema is the folder
  ``<warehouse>/<catalog>/<schema>/`` and each table a Delta folder in it
  (``<warehouse>/<catalog>/<schema>/<table>``). The in-memory catalog forgets tables and views when
  the session ends, so :meth:`Lakehouse.register` (re)registers, in any new session, every Delta folder
  of the schema as a temporary view of the same name, then every gold view of the registry as a
  temporary view over them (``spark.etl.gold``; live, evaluated at query time, exactly as the view on
  Databricks). SQL written against plain table names then runs unchanged in both places.
  The ETL pipeline (``spark-pipelines`` CLI) writes its tables into the same folder; its private
  catalog state (checkpoints, a Derby metastore) lives in ``_pipelines/`` beside them (folders starting
  with ``_`` are never tables).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession

from spark.common.session import on_databricks
from spark.etl.gold import register_views

DEFAULT_CATALOG = "main"
DEFAULT_SCHEMA = "payment_analysis"

# ---------------------------------------------------------------------------------- logical names
BRONZE_TRANSACTIONS = "bronze_transactions"
BRONZE_DEAD_LETTERS = "bronze_dead_letters"
SILVER_TRANSACTIONS = "silver_transactions"
SILVER_QUARANTINE = "silver_quarantine"
DIM_MERCHANTS = "dim_merchants"
# bootstrap
APP_CONFIG = "app_config"
APPROVAL_RULES = "approval_rules"
APPROVAL_RECOMMENDATIONS = "approval_recommendations"
COUNTRIES = "countries"
ONLINE_FEATURES = "online_features"
TRANSACTION_SUMMARIES = "transaction_summaries"
# training / backtest
MODEL_METRICS = "model_training_metrics"
BACKTEST_RESULTS = "gold_backtest_results"

# dashboards: dash_<dataset> and dash_refreshes (spark.jobs.dashboard_tables, dashboards.model.TABLE_PREFIX)
DASHBOARD_TABLE_PREFIX = "dash_"

PIPELINE_TABLES = (BRONZE_TRANSACTIONS, BRONZE_DEAD_LETTERS, SILVER_TRANSACTIONS, SILVER_QUARANTINE, DIM_MERCHANTS)
BOOTSTRAP_TABLES = (
    APP_CONFIG,
    APPROVAL_RULES,
    APPROVAL_RECOMMENDATIONS,
    COUNTRIES,
    ONLINE_FEATURES,
    TRANSACTION_SUMMARIES,
)


def _ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


@dataclass(frozen=True)
class Lakehouse:
    catalog: str = DEFAULT_CATALOG
    schema: str = DEFAULT_SCHEMA
    warehouse_dir: Path | None = None  # local only
    databricks: bool = False

    def __post_init__(self) -> None:
        if self.warehouse_dir is not None and not isinstance(self.warehouse_dir, Path):
            object.__setattr__(self, "warehouse_dir", Path(self.warehouse_dir))

    @classmethod
    def from_env(
        cls, catalog: str | None = None, schema: str | None = None, warehouse_dir: Path | str | None = None
    ) -> Lakehouse:
        """Catalog/schema from arguments, else ``PA_CATALOG``/``PA_SCHEMA``, else the defaults; the
        local warehouse from the argument, else ``PA_WAREHOUSE_DIR``, else ``.data/warehouse``."""
        catalog = catalog or os.environ.get("PA_CATALOG") or DEFAULT_CATALOG
        schema = schema or os.environ.get("PA_SCHEMA") or DEFAULT_SCHEMA
        if on_databricks():
            return cls(catalog, schema, None, True)
        wh = (
            warehouse_dir
            or os.environ.get("PA_WAREHOUSE_DIR")
            or Path(__file__).resolve().parents[2] / ".data" / "warehouse"
        )
        return cls(catalog, schema, Path(wh).resolve(), False)

    # ------------------------------------------------------------------------------ naming
    @property
    def schema_dir(self) -> Path:
        """Local folder of the schema."""
        assert self.warehouse_dir is not None, "schema_dir is local only"
        return self.warehouse_dir / self.catalog / self.schema

    @property
    def pipeline_dir(self) -> Path:
        """Local state of the ETL pipeline (checkpoints, metastore)."""
        return self.schema_dir / "_pipelines"

    def path(self, name: str) -> Path:
        return self.schema_dir / name

    def qualified(self, name: str) -> str:
        """A SQL reference to the table: ``catalog.schema.name`` on Databricks, ``delta.`path``` locally."""
        if self.databricks:
            return f"{_ident(self.catalog)}.{_ident(self.schema)}.{_ident(name)}"
        return f"delta.{_ident(str(self.path(name)))}"

    # ------------------------------------------------------------------------------ I/O
    def exists(self, spark: SparkSession, name: str) -> bool:
        if self.databricks:
            return spark.catalog.tableExists(f"{self.catalog}.{self.schema}.{name}")
        return (self.path(name) / "_delta_log").is_dir()

    def read(self, spark: SparkSession, name: str) -> DataFrame:
        if self.databricks:
            return spark.read.table(f"{self.catalog}.{self.schema}.{name}")
        return spark.read.format("delta").load(str(self.path(name)))

    def write(self, df: DataFrame, name: str, mode: str = "overwrite", *, overwrite_schema: bool = True) -> None:
        writer = df.write.format("delta").mode(mode)
        if mode == "overwrite" and overwrite_schema:
            writer = writer.option("overwriteSchema", "true")
        if self.databricks:
            writer.saveAsTable(f"{self.catalog}.{self.schema}.{name}")
        else:
            writer.save(str(self.path(name)))

    def delta_table(self, spark: SparkSession, name: str):
        if self.databricks:
            return DeltaTable.forName(spark, f"{self.catalog}.{self.schema}.{name}")
        return DeltaTable.forPath(spark, str(self.path(name)))

    def version(self, spark: SparkSession, name: str) -> int | None:
        """Current Delta version of the table (None when it does not exist)."""
        if not self.exists(spark, name):
            return None
        return int(self.delta_table(spark, name).history(1).select("version").first()[0])

    def ensure_schema(self, spark: SparkSession) -> None:
        if self.databricks:
            spark.sql(f"CREATE SCHEMA IF NOT EXISTS {_ident(self.catalog)}.{_ident(self.schema)}")
        else:
            self.schema_dir.mkdir(parents=True, exist_ok=True)

    def local_tables(self) -> list[str]:
        """Delta tables present in the local schema folder."""
        if self.databricks or not self.schema_dir.is_dir():
            return []
        return sorted(
            p.name
            for p in self.schema_dir.iterdir()
            if not p.name.startswith(("_", ".")) and (p / "_delta_log").is_dir()
        )

    def register(self, spark: SparkSession, *, views: bool = True, names: Iterable[str] | None = None) -> list[str]:
        """Make plain table names resolve in ``spark``: on Databricks ``USE catalog.schema``; locally
        a temporary view per Delta folder, then (``views``) every registry gold view whose inputs
        exist. Returns the names registered."""
        if self.databricks:
            spark.sql(f"USE CATALOG {_ident(self.catalog)}")
            spark.sql(f"USE SCHEMA {_ident(self.schema)}")
            return []
        wanted = set(names) if names is not None else None
        done = []
        for name in self.local_tables():
            if wanted is None and name.startswith(DASHBOARD_TABLE_PREFIX):
                continue  # the dashboards' result tables are read by the control plane, not by jobs
            if wanted is None or name in wanted:
                self.read(spark, name).createOrReplaceTempView(name)
                done.append(name)
        if views:
            done += register_views(spark, available=set(done))
        return done
