"""The ETL pipeline (bronze -> silver -> gold), locally through the ``spark-pipelines`` CLI.

    python -m spark.jobs.etl                    # one incremental update (default)
    python -m spark.jobs.etl --full-refresh     # reset every table and checkpoint, re-read Kafka
    python -m spark.jobs.etl --continuous --interval 30 [--gold-every 4]
    python -m spark.jobs.etl --print-command    # the spark-pipelines command line, to run it by hand

The definition files (``spark/pipelines/payment_etl``) are Spark Declarative Pipelines sources, the
format a Lakeflow pipeline on Databricks runs too; this job runs them locally.
"""

from __future__ import annotations

import argparse
import os
import shlex
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
    return pipeline.run_once(full_refresh=settings.full_refresh)


if __name__ == "__main__":
    sys.exit(main())
