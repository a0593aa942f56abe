"""Training benchmark: the four models (approval, risk, smart routing, smart retry) on 1M simulated
transactions, through the real training job code (silver Delta table -> pandas -> features with the
core's definitions and velocity -> scikit-learn -> MLflow registry in a throwaway sqlite).

Goal (2 cores): <= 300 s for the four models. ``train_1m_s`` is the wall clock of ``spark.jobs.train.run``
(load silver, features, fit candidates and baselines, thresholds, metrics, registration), not the
generation of the silver table (done first, batch, with the same silver transformations as the
pipeline). Reports each model's holdout AUC and its logistic-regression baseline's.

    make bench-train                         # 1,000,000 rows
    make bench-train BENCH_ARGS="--rows 200000"
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa

from bench.common import exit_on_sigterm, print_table, write_results
from services.simulator.generator import GeneratorConfig, TransactionGenerator
from spark.common.session import get_spark
from spark.common.tables import Lakehouse
from spark.etl import silver
from spark.jobs import train
from spark.ml.training import TrainingConfig


def build_silver(spark, lakehouse: Lakehouse, rows: int, days: float, chunk: int = 250_000) -> float:
    """Simulated history -> bronze-shaped rows -> silver (batch path of the pipeline's transforms)."""
    t0 = time.perf_counter()
    gen = TransactionGenerator(
        GeneratorConfig(
            seed=42, start=datetime.now(UTC) - timedelta(days=days), events_per_second=rows * 1.02 / (days * 86_400.0)
        )
    )
    bronze_path = str(lakehouse.path("_bench_bronze"))
    offset = 0
    for batch in gen.iter_batches(rows, chunk):
        values = batch.json_array()
        n = len(values)
        now = datetime.now(UTC)
        table = pa.table(
            {
                "record_key": pa.array([None] * n, pa.string()),
                "record_value": values,
                "topic": pa.array(["payments.transactions"] * n),
                "kafka_partition": pa.array([0] * n, pa.int32()),
                "kafka_offset": pa.array(range(offset, offset + n), pa.int64()),
                "kafka_timestamp": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
                "ingested_at": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
            }
        )
        spark.createDataFrame(table.to_pandas()).write.format("delta").mode("append").save(bronze_path)
        offset += n
    bronze = spark.read.format("delta").load(bronze_path)
    lakehouse.write(silver.silver_transactions(bronze), "silver_transactions")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--days", type=float, default=30.0)
    p.add_argument("--workdir", default=None, help="keep data here (default: a temporary folder)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        work = Path(args.workdir or tmp)
        lakehouse = Lakehouse(catalog="bench", schema="train", warehouse_dir=work / "warehouse")
        spark = get_spark(
            "bench-train", warehouse_dir=lakehouse.warehouse_dir, extra_conf={"spark.driver.memory": "3g"}
        )
        if (
            lakehouse.exists(spark, "silver_transactions")
            and lakehouse.read(spark, "silver_transactions").count() == args.rows
        ):
            silver_s = None  # reused from --workdir
        else:
            silver_s = build_silver(spark, lakehouse, args.rows, args.days)
        uri = f"sqlite:///{work / 'mlflow.db'}"
        settings = train.TrainSettings(lakehouse, uri, "bench_models", TrainingConfig())
        t0 = time.perf_counter()
        results = train.run(spark, settings)
        train_s = time.perf_counter() - t0
        spark.stop()
    key = "train_1m_s" if args.rows == 1_000_000 else f"train_{args.rows}_s"
    figures = {
        "rows": args.rows,
        key: round(train_s, 1),
        "silver_build_s": None if silver_s is None else round(silver_s, 1),
        "goal_s": 300,
        "models": {
            r.kind: {
                "estimator": r.estimator,
                "holdout_auc": round(r.metrics.get("auc", float("nan")), 4),
                "baseline_auc": round(r.baseline_metrics.get("auc", float("nan")), 4),
                "threshold": round(r.threshold, 4),
                "precision": round(r.metrics["precision"], 4),
                "recall": round(r.metrics["recall"], 4),
                "ece": round(r.metrics["ece"], 4),
                "train_rows": r.rows["train"],
                "holdout_rows": r.rows["holdout"],
                "seconds": round(r.seconds, 1),
            }
            for r in results
        },
    }
    path = write_results("train", figures)
    rows = [("rows", args.rows), (key, figures[key]), ("silver_build_s", figures["silver_build_s"] or "reused")]
    for kind, m in figures["models"].items():
        rows.append((f"{kind} AUC (baseline)", f"{m['holdout_auc']:.4f} ({m['baseline_auc']:.4f})"))
    print_table("Training (4 models, 2 cores)", rows)
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    exit_on_sigterm()
    raise SystemExit(main())
