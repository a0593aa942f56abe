"""Train the approval, risk, smart-routing and smart-retry models from silver; register by alias.

    python -m spark.jobs.train [--catalog main --schema payment_analysis] [--kinds approval,risk]

MLflow: ``--tracking-uri`` / ``$PA_MLFLOW_TRACKING_URI`` (locally ``sqlite:///.data/mlflow.db``, registry in
the same database, artifacts beside it); on Databricks the workspace tracking server and the Unity
Catalog registry, models named ``catalog.schema.payment_analysis_<kind>``. See ``spark.ml.training``
for rows, labels, split, estimators, thresholds and the promotion rule. One row per model and run is
appended to ``model_training_metrics`` for the control plane.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import mlflow
from pyspark.sql import types as T

from payments_core.models import ModelSource
from spark.common.cli import add_lakehouse_args, lakehouse_from_args, setup_logging
from spark.common.session import get_spark
from spark.common.tables import MODEL_METRICS, Lakehouse
from spark.ml.dataset import features, load_history, time_split
from spark.ml.training import KindResult, TrainingConfig, train_kind

log = logging.getLogger("spark.jobs.train")
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_EXPERIMENT = "payment_analysis_models"


@dataclass(frozen=True)
class TrainSettings:
    lakehouse: Lakehouse
    tracking_uri: str
    experiment: str = DEFAULT_EXPERIMENT
    config: TrainingConfig = field(default_factory=TrainingConfig)
    uc_catalog: str | None = None  # registry names catalog.schema.<model> (Unity Catalog)
    uc_schema: str | None = None


def default_tracking_uri() -> str:
    if os.environ.get("PA_MLFLOW_TRACKING_URI"):
        return os.environ["PA_MLFLOW_TRACKING_URI"]
    data = Path(os.environ.get("PA_DATA_DIR") or REPO_ROOT / ".data")
    data.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{data / 'mlflow.db'}"


def setup_mlflow(settings: TrainSettings) -> None:
    lh = settings.lakehouse
    if lh.databricks:
        mlflow.set_tracking_uri("databricks")
        mlflow.set_registry_uri("databricks-uc")
        experiment = settings.experiment if settings.experiment.startswith("/") else f"/Shared/{settings.experiment}"
        mlflow.set_experiment(experiment)
        return
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    if mlflow.get_experiment_by_name(settings.experiment) is None:
        location = None
        if settings.tracking_uri.startswith("sqlite:///"):
            # artifacts next to the database (never ./mlruns of whatever the working directory is)
            location = (
                (Path(settings.tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
            )
        mlflow.create_experiment(settings.experiment, artifact_location=location)
    mlflow.set_experiment(settings.experiment)


def run(spark, settings: TrainSettings) -> list[KindResult]:
    setup_mlflow(settings)
    t0 = time.perf_counter()
    df = load_history(spark, settings.lakehouse)
    if df.empty:
        raise SystemExit("silver_transactions is empty: run the simulator backfill and the ETL first")
    X = features(df)
    split = time_split(df)
    log.info(
        "loaded %d rows and %d features in %.1fs; holdout from %s",
        len(df),
        X.shape[1],
        time.perf_counter() - t0,
        split.holdout_start,
    )
    source = ModelSource(
        mlflow.get_tracking_uri(), settings.uc_catalog, settings.uc_schema, registry_uri=mlflow.get_registry_uri()
    )
    results = []
    with mlflow.start_run(run_name=f"train_{datetime.now(UTC):%Y%m%dT%H%M%S}") as parent:
        mlflow.log_params(
            {"rows": len(df), "holdout_start": str(split.holdout_start), "kinds": ",".join(settings.config.kinds)}
        )
        for kind in settings.config.kinds:
            results.append(
                train_kind(
                    kind, df, X, split, settings.config, source, catalog=settings.uc_catalog, schema=settings.uc_schema
                )
            )
        run_id = parent.info.run_id
    write_metrics(spark, settings.lakehouse, results, run_id)
    return results


def write_metrics(spark, lakehouse: Lakehouse, results: list[KindResult], run_id: str) -> None:
    schema = T.StructType(
        [
            T.StructField(n, t)
            for n, t in (
                ("run_id", T.StringType()),
                ("trained_at", T.TimestampType()),
                ("model_kind", T.StringType()),
                ("registered_version", T.StringType()),
                ("alias", T.StringType()),
                ("estimator", T.StringType()),
                ("holdout_auc", T.DoubleType()),
                ("baseline_auc", T.DoubleType()),
                ("champion_auc_before", T.DoubleType()),
                ("promoted", T.BooleanType()),
                ("threshold", T.DoubleType()),
                ("precision", T.DoubleType()),
                ("recall", T.DoubleType()),
                ("brier", T.DoubleType()),
                ("ece", T.DoubleType()),
                ("train_rows", T.LongType()),
                ("holdout_rows", T.LongType()),
                ("seconds", T.DoubleType()),
            )
        ]
    )
    now = datetime.now(UTC)
    rows = [
        (
            run_id,
            now,
            r.kind,
            r.version,
            r.alias,
            r.estimator,
            r.metrics.get("auc"),
            r.baseline_metrics.get("auc"),
            r.champion_auc_before,
            r.promoted,
            r.threshold,
            r.metrics.get("precision"),
            r.metrics.get("recall"),
            r.metrics.get("brier"),
            r.metrics.get("ece"),
            r.rows["train"],
            r.rows["holdout"],
            r.seconds,
        )
        for r in results
    ]
    lakehouse.write(spark.createDataFrame(rows, schema), MODEL_METRICS, mode="append")


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    p = argparse.ArgumentParser(
        prog="python -m spark.jobs.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_lakehouse_args(p)
    p.add_argument("--tracking-uri", default=None, help="default: $PA_MLFLOW_TRACKING_URI or sqlite:///.data/mlflow.db")
    p.add_argument("--experiment", default=os.environ.get("PA_MLFLOW_EXPERIMENT", DEFAULT_EXPERIMENT))
    p.add_argument("--kinds", default=",".join(TrainingConfig().kinds))
    p.add_argument("--max-train-rows", type=int, default=TrainingConfig().max_train_rows)
    p.add_argument("--min-auc-gain", type=float, default=0.0, help="AUC gain over the champion needed to promote")
    args = p.parse_args(argv)
    lakehouse = lakehouse_from_args(args)
    cfg = TrainingConfig(
        max_train_rows=args.max_train_rows,
        min_auc_gain=args.min_auc_gain,
        kinds=tuple(k.strip() for k in args.kinds.split(",") if k.strip()),
    )
    uc = (lakehouse.catalog, lakehouse.schema) if lakehouse.databricks else (None, None)
    settings = TrainSettings(lakehouse, args.tracking_uri or default_tracking_uri(), args.experiment, cfg, *uc)

    spark = get_spark("train-models", warehouse_dir=lakehouse.warehouse_dir)
    for r in run(spark, settings):
        print(
            f"{r.kind:9} {r.estimator:24} holdout AUC {r.metrics.get('auc', float('nan')):.4f}  baseline "
            f"{r.baseline_metrics.get('auc', float('nan')):.4f}  champion before {r.champion_auc_before}  "
            f"-> v{r.version} @{r.alias}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
