"""The one place a SparkSession is built.

Locally: Delta extensions and the Kafka/Delta jars (resolved by Maven into .cache, passed as
``spark.jars``; never ``spark.jars.packages``, which would download through Ivy at run time).
On Databricks the runtime already has a session with both, so it is returned as is.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from spark.common.jars import spark_jars


def on_databricks() -> bool:
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


def local_conf(warehouse_dir: Path, *, shuffle_partitions: int = 4, driver_memory: str = "2g") -> dict[str, str]:
    return {
        "spark.jars": ",".join(str(p) for p in spark_jars()),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.warehouse.dir": str(warehouse_dir),
        "spark.driver.memory": driver_memory,
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={warehouse_dir.parent / 'derby'}",
        "spark.sql.shuffle.partitions": str(shuffle_partitions),
        "spark.default.parallelism": "2",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.databricks.delta.snapshotPartitions": "2",
        "spark.databricks.delta.properties.defaults.autoOptimize.optimizeWrite": "false",
        "spark.sql.streaming.stateStore.providerClass": (
            "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
        ),
        # Kafka/Delta sources are small locally; skip the Derby-backed Hive metastore entirely.
        "spark.sql.catalogImplementation": "in-memory",
    }


def get_spark(
    app_name: str = "payment-analysis",
    *,
    warehouse_dir: Path | str | None = None,
    extra_conf: dict[str, str] | None = None,
    java_options: str = "",
) -> SparkSession:
    """A SparkSession ready for Kafka and Delta (local) or the Databricks runtime's session.

    ``java_options``: added to the driver JVM's options (local only; the JVM starts with the session)."""
    if on_databricks():
        return SparkSession.builder.getOrCreate()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if warehouse_dir is None:
        warehouse_dir = Path(
            os.environ.get("PA_WAREHOUSE_DIR") or Path(__file__).resolve().parents[2] / ".data" / "warehouse"
        )
    warehouse = Path(warehouse_dir).resolve()
    warehouse.mkdir(parents=True, exist_ok=True)
    builder = SparkSession.builder.appName(app_name).master(os.environ.get("PA_SPARK_MASTER", "local[2]"))
    conf = {**local_conf(warehouse), **(extra_conf or {})}
    if java_options:
        conf["spark.driver.extraJavaOptions"] = f"{conf['spark.driver.extraJavaOptions']} {java_options}"
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("PA_SPARK_LOG_LEVEL", "WARN"))
    return spark
