"""The ETL pipeline (bronze -> silver -> gold), locally through the ``spark-pipelines`` CLI.

    python -m spark.jobs.etl                    # one incremental update (default)
    python -m spark.jobs.etl --full-refresh     # reset every table and checkpoint, re-read Kafka
    python -m spark.jobs.etl --continuous --interval 30 [--gold-every 4]
    python -m spark.jobs.etl --print-command    # the spark-pipelines command line, to run it by hand

A one-shot update then updates the similar-transaction index from the new silver rows
(``spark.jobs.similar_index``, incremental; ``--no-similar-index`` to skip), so lookups see what the ETL
just loaded. A failed index update is reported and fails the run; the tables stay updated.

The definition files (``spark/pipelines/payment_etl``) are Spark Declarative Pipelines sources, the
format a Lakeflow pipeline on Databricks runs too; this job runs them locally.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass

from spark.common.cli import add_lakehouse_args, kafka_bootstrap_default, lakehouse_from_args, setup_logging
from spark.common.tables import Lakehouse
from spark.etl.bronze import KafkaSource
from spark.pipelines.local import LocalPipeline
from spark.pipelines.payment_etl import DEFAULT_MAX_OFFSETS_PER_TRIGGER, PipelineSettings


@dataclass(frozen=True)
class EtlJobSettings:
    lakehouse: Lakehouse
    pipeline: PipelineSettings
    full_refresh: bool = False
    continuous: bool = False
    interval_s: float = 30.0
    driver_memory: str = "2g"
    gold_every: int = 1
    similar_index: bool = True

    @classmethod
    def from_args(cls, argv: list[str] | None = None) -> tuple[EtlJobSettings, argparse.Namespace]:
        p = argparse.ArgumentParser(
            prog="python -m spark.jobs.etl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        add_lakehouse_args(p)
        p.add_argument("--kafka-bootstrap", default=None, help="default: $PA_KAFKA_BOOTSTRAP or the local broker")
        p.add_argument("--topic-prefix", default=os.environ.get("PA_TOPIC_PREFIX", ""))
        p.add_argument("--starting-offsets", default="earliest", choices=("earliest", "latest"))
        p.add_argument("--max-offsets-per-trigger", type=int, default=DEFAULT_MAX_OFFSETS_PER_TRIGGER)
        p.add_argument("--full-refresh", action="store_true", help="reset all tables and checkpoints")
        p.add_argument("--continuous", action="store_true", help="repeat updates every --interval seconds")
        p.add_argument("--interval", type=float, default=30.0)
        p.add_argument(
            "--gold-every",
            type=int,
            default=1,
            help="continuous: refresh gold (the partial aggregates) every N updates",
        )
        p.add_argument("--driver-memory", default=os.environ.get("PA_SPARK_DRIVER_MEMORY", "2g"))
        p.add_argument("--print-command", action="store_true", help="print the spark-pipelines command and exit")
        p.add_argument(
            "--no-similar-index",
            dest="similar_index",
            action="store_false",
            help="one-shot update: do not update the similar-transaction index afterwards",
        )
        args = p.parse_args(argv)
        kafka = KafkaSource(
            bootstrap=args.kafka_bootstrap or kafka_bootstrap_default(),
            topic_prefix=args.topic_prefix,
            starting_offsets=args.starting_offsets,
            max_offsets_per_trigger=args.max_offsets_per_trigger or None,
        )
        return cls(
            lakehouse_from_args(args),
            PipelineSettings(kafka=kafka),
            args.full_refresh,
            args.continuous,
            args.interval,
            args.driver_memory,
            args.gold_every,
            args.similar_index,
        ), args


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    settings, args = EtlJobSettings.from_args(argv)

    pipeline = LocalPipeline(settings.lakehouse, settings.pipeline, driver_memory=settings.driver_memory)
    if args.print_command:
        pipeline.write_spec()
        env = pipeline.environment()
        print(
            f"PYSPARK_SUBMIT_ARGS={shlex.quote(env['PYSPARK_SUBMIT_ARGS'])} "
            f"PYTHONPATH={shlex.quote(env['PYTHONPATH'])} \\"
        )
        print("  " + " ".join(shlex.quote(c) for c in pipeline.command(full_refresh=settings.full_refresh)))
        return 0
    if settings.continuous:
        return pipeline.run_continuously(settings.interval_s, gold_every=settings.gold_every)
    code = pipeline.run_once(full_refresh=settings.full_refresh)
    if code == 0 and settings.similar_index:
        code = update_similar_index(settings.lakehouse)
    return code


def update_similar_index(lakehouse: Lakehouse) -> int:
    """The incremental index update, in its own process: its Spark session reads silver as committed."""
    argv = [sys.executable, "-m", "spark.jobs.similar_index", "--catalog", lakehouse.catalog]
    argv += ["--schema", lakehouse.schema]
    if lakehouse.warehouse_dir is not None:
        argv += ["--warehouse-dir", str(lakehouse.warehouse_dir)]
    return subprocess.run(argv, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
