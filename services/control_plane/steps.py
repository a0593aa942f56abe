"""The Setup & Run steps, in the seed demo's order, each a local command (a Spark job or a service
CLI). On Databricks the same steps map to bundle jobs/pipelines (see bundle/)."""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    id: str
    title: str
    module: str
    args: tuple[str, ...] = ()
    description: str = ""

    def argv(self) -> list[str]:
        return [sys.executable, "-m", self.module, *self.args]

    @property
    def available(self) -> bool:
        """False until the module behind the step is part of this checkout."""
        try:
            return importlib.util.find_spec(self.module) is not None
        except ModuleNotFoundError:
            return False


STEPS: tuple[Step, ...] = (
    Step("backfill", "Transaction history backfill", "services.simulator", ("backfill", "--days", "7"),
         "Generate a week of realistic history into Kafka so dashboards and training have data"),
    Step("etl", "Lakeflow ETL (bronze, silver, gold)", "spark.jobs.etl", (),
         "One-shot refresh of the declarative pipeline over the transactions topic"),
    Step("gold_views", "Gold views", "spark.jobs.gold_views", (), "Create / refresh every gold view"),
    Step("bootstrap", "Lakehouse bootstrap", "spark.jobs.bootstrap", (),
         "app_config, approval rules, recommendations, countries, online features (idempotent)"),
    Step("train", "Train ML models", "spark.jobs.train", (),
         "Approval, risk, routing and retry models; registered in MLflow, champion by alias"),
    Step("backtest", "Backtest rules and models", "spark.jobs.backtest", (),
         "Replay the candidate rule set / model over silver history against the live set"),
)

STEPS_BY_ID = {s.id: s for s in STEPS}
