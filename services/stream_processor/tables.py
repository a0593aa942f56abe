"""Where the stream processor's Delta tables live and how they are created.

Locally a table is a Delta folder ``<warehouse>/<catalog>/<schema>/<name>`` (the lakehouse layout of
``spark.common.tables``); on Databricks it is the Unity Catalog table ``catalog.schema.name``.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from spark.common.session import on_databricks

log = logging.getLogger(__name__)

DECISION_LOG = "stream_decision_log"
METRICS_1M = "stream_metrics_1m"
ALERTS = "stream_alerts"


@dataclass(frozen=True)
class DeltaTarget:
    name: str
    path: Path | None = None  # local folder; None on Databricks (catalog table)
    qualified_name: str | None = None  # catalog.schema.name on Databricks

    @classmethod
    def of(cls, name: str, warehouse: Path, catalog: str, schema: str) -> DeltaTarget:
        if on_databricks():
            return cls(name, None, f"`{catalog}`.`{schema}`.`{name}`")
        return cls(name, warehouse / catalog / schema / name)

    @property
    def sql(self) -> str:
        """A SQL reference: ``delta.`path``` locally, the catalog name on Databricks."""
        return self.qualified_name or f"delta.`{self.path}`"

    def delta_table(self, spark: SparkSession):
        if self.qualified_name:
            return DeltaTable.forName(spark, self.qualified_name)
        return DeltaTable.forPath(spark, str(self.path))

    def read(self, spark: SparkSession) -> DataFrame:
        if self.qualified_name:
            return spark.read.table(self.qualified_name)
        return spark.read.format("delta").load(str(self.path))

    def append(self, df: DataFrame, txn: tuple[str, int] | None = None) -> None:
        """Append ``df`` in one commit; ``txn`` = (app id, version): skipped if already committed."""
        writer = df.write.format("delta").mode("append")
        if txn is not None:
            writer = writer.option("txnAppId", txn[0]).option("txnVersion", str(txn[1]))
        self._save(writer)

    def replace_where(self, df: DataFrame, predicate: str) -> None:
        """Atomically replace the rows matching ``predicate`` by ``df`` (one Delta commit)."""
        self._save(df.write.format("delta").mode("overwrite").option("replaceWhere", predicate))

    def _save(self, writer) -> None:
        if self.qualified_name:
            writer.saveAsTable(self.qualified_name)
        else:
            writer.save(str(self.path))

    def ensure(
        self,
        spark: SparkSession,
        schema: T.StructType,
        partition_by: Sequence[str] = (),
        properties: dict[str, str] | None = None,
    ) -> None:
        """Create the table when missing (idempotent)."""
        if self.path is not None:
            _drop_uncommitted_log(self.path)

        builder = DeltaTable.createIfNotExists(spark)
        builder = builder.tableName(self.qualified_name) if self.qualified_name else builder.location(str(self.path))
        builder = builder.addColumns(schema)
        if partition_by:
            builder = builder.partitionedBy(*partition_by)
        for key, value in (properties or {}).items():
            builder = builder.property(key, value)
        builder.execute()


def _drop_uncommitted_log(path: Path) -> None:
    """A creation stopped before its first commit leaves ``_delta_log`` without any commit or
    checkpoint file, and Delta then refuses both to read the table and to create it
    (``DELTA_TABLE_NOT_FOUND``) until someone deletes the folder. Nothing was ever committed there,
    so nothing is lost: remove it, and the creation starts over."""
    delta_log = path / "_delta_log"
    if delta_log.is_dir() and not any(f.suffix in (".json", ".parquet", ".crc") for f in delta_log.iterdir()):
        log.warning("%s: a table creation was interrupted before its first commit; creating it again", path)
        shutil.rmtree(delta_log)
