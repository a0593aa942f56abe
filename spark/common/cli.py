"""Shared command-line plumbing of the Spark jobs: catalog/schema/warehouse options and logging."""

from __future__ import annotations

import argparse
import logging
import os

from payments_core.settings import CommonSettings
from spark.common.tables import Lakehouse


def add_lakehouse_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--catalog", default=None, help="Catalog (default: $PA_CATALOG or 'main')")
    parser.add_argument("--schema", default=None, help="Schema (default: $PA_SCHEMA or 'payment_analysis')")
    parser.add_argument(
        "--warehouse-dir", default=None, help="Local warehouse folder (default: $PA_WAREHOUSE_DIR or .data/warehouse)"
    )


def lakehouse_from_args(args: argparse.Namespace) -> Lakehouse:
    return Lakehouse.from_env(args.catalog, args.schema, args.warehouse_dir)


def kafka_bootstrap_default() -> str:
    """``PA_KAFKA_BOOTSTRAP``, else the shared default (the local broker `make up` runs)."""
    return CommonSettings().kafka_bootstrap


def setup_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("PA_LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
