"""The Setup & Run steps, in the seed demo's order: each a local command (a Spark job or a service
CLI) with typed parameters, run by the control plane as a child process (``runner.py``), or on the
Databricks backend as the run of the step's job (the etl step: an update of the Lakeflow pipeline) with
the same parameters as job parameters (``backends/databricks.py``)."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from typing import Any, Literal

from payments_core.contract.control import SCENARIOS

ParamKind = Literal["int", "float", "bool", "choice", "text"]


@dataclass(frozen=True)
class Param:
    name: str
    label: str
    kind: ParamKind
    default: Any
    flag: str  # command-line option; for bool: given when true
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    help: str = ""
    hidden: bool = False  # set by the control plane itself (e.g. a backtest's candidate file)

    def coerce(self, value: Any) -> Any:
        """The value as this parameter's type; ValueError naming the parameter otherwise."""
        try:
            if self.kind == "bool":
                if isinstance(value, str):
                    if value.lower() not in ("true", "false", "1", "0", "on", "off", ""):
                        raise ValueError
                    return value.lower() in ("true", "1", "on")
                return bool(value)
            if self.kind == "int":
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError
                out: Any = int(value)
            elif self.kind == "float":
                out = float(value)
            else:
                out = str(value)
        except (TypeError, ValueError):
            raise ValueError(f"parameter {self.name!r}: {value!r} is not a valid {self.kind}") from None
        if self.kind == "choice" and out not in self.choices:
            raise ValueError(f"parameter {self.name!r}: {out!r} is not one of {', '.join(self.choices)}")
        if self.minimum is not None and out < self.minimum:
            raise ValueError(f"parameter {self.name!r}: {out} is below the minimum {self.minimum:g}")
        if self.maximum is not None and out > self.maximum:
            raise ValueError(f"parameter {self.name!r}: {out} is above the maximum {self.maximum:g}")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "kind": self.kind,
            "default": self.default,
            "choices": list(self.choices),
            "minimum": self.minimum,
            "maximum": self.maximum,
            "help": self.help,
        }


@dataclass(frozen=True)
class Step:
    id: str
    title: str
    module: str
    args: tuple[str, ...] = ()
    description: str = ""
    params: tuple[Param, ...] = ()
    result_flag: str | None = None  # the step writes a JSON result to the path given with this flag
    first_run: bool = False  # part of the first-run sequence
    # the module the step's bundle job runs when it differs from the local one (a Databricks service
    # does the work there, e.g. Vector Search instead of the local index)
    databricks_module: str | None = None

    def resolve(self, given: dict[str, Any] | None) -> dict[str, Any]:
        """Defaults completed with the given values, each checked; unknown names are refused."""
        given = dict(given or {})
        known = {p.name: p for p in self.params}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise ValueError(
                f"unknown parameter(s) for step {self.id!r}: {', '.join(unknown)}; known: {', '.join(known) or 'none'}"
            )
        out: dict[str, Any] = {}
        for p in self.params:
            if p.name in given and given[p.name] not in (None, ""):
                out[p.name] = p.coerce(given[p.name])
            elif p.default is not None:
                out[p.name] = p.default
        return out

    def argv(self, params: dict[str, Any] | None = None) -> list[str]:
        argv = [sys.executable, "-m", self.module, *self.args]
        by_name = {p.name: p for p in self.params}
        for name, value in (params or {}).items():
            p = by_name[name]
            if p.kind == "bool":
                if value:
                    argv.append(p.flag)
            else:
                argv += [p.flag, str(value)]
        return argv

    @property
    def available(self) -> bool:
        """False until the module behind the step is part of this checkout."""
        try:
            return importlib.util.find_spec(self.module) is not None
        except ModuleNotFoundError:
            return False

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "available": self.available,
            "command": " ".join(["python", "-m", self.module, *self.args]),
            "params": [p.as_dict() for p in self.params if not p.hidden],
        }


STEPS: tuple[Step, ...] = (
    Step(
        "backfill",
        "Transaction history backfill",
        "services.simulator",
        ("backfill",),
        "Generate days of realistic history into Kafka so dashboards and training have data",
        params=(
            Param("days", "Days of history", "float", 7.0, "--days", minimum=0.01, maximum=90),
            Param("events_per_day", "Events per day", "int", 30_000, "--events-per-day", minimum=1, maximum=2_000_000),
            Param("scenario", "Background scenario", "choice", "normal", "--scenario", SCENARIOS),
        ),
        first_run=True,
    ),
    Step(
        "etl",
        "Lakeflow ETL (bronze, silver, gold)",
        "spark.jobs.etl",
        (),
        "One-shot refresh of the declarative pipeline over the transactions topic",
        params=(
            Param(
                "full_refresh",
                "Full refresh",
                "bool",
                False,
                "--full-refresh",
                help="Reset every table and checkpoint, then rebuild from the topic",
            ),
        ),
        first_run=True,
    ),
    Step(
        "gold_views",
        "Gold views",
        "spark.jobs.gold_views",
        (),
        "Create / refresh every gold view, then the 12 dashboards' tables",
        first_run=True,
    ),
    Step(
        "bootstrap",
        "Lakehouse bootstrap",
        "spark.jobs.bootstrap",
        (),
        "app_config, approval rules, recommendations, countries, online features (idempotent)",
        params=(Param("max_summaries", "Transaction summaries", "int", None, "--max-summaries", minimum=0),),
        first_run=True,
    ),
    Step(
        "train",
        "Train ML models",
        "spark.jobs.train",
        (),
        "Approval, risk, routing and retry models; registered in MLflow, champion by alias",
        params=(
            Param("max_train_rows", "Training sample size", "int", None, "--max-train-rows", minimum=100),
            Param("min_auc_gain", "AUC gain needed to promote", "float", None, "--min-auc-gain", minimum=0, maximum=1),
        ),
        first_run=True,
    ),
    Step(
        "backtest",
        "Backtest rules and models",
        "spark.jobs.backtest",
        (),
        "Replay the candidate rule set / model over silver history against the live set",
        params=(
            Param("days", "Days of history", "int", 7, "--days", minimum=1, maximum=365),
            Param("max_rows", "Most recent rows (0 = all)", "int", 100_000, "--max-rows", minimum=0),
            Param("candidate_rules", "Candidate rule set file", "text", None, "--candidate-rules", hidden=True),
        ),
        result_flag="--result-json",
    ),
    Step(
        "similar_index",
        "Similar-transaction index",
        "spark.jobs.similar_index",
        (),
        "Index silver transactions for similar-past-transaction lookups (incremental; the ETL step also "
        "updates it after each run). On Databricks: the Vector Search index over transaction_summaries",
        databricks_module="spark.jobs.vector_search_index",
    ),
)

STEPS_BY_ID = {s.id: s for s in STEPS}


@dataclass
class StepCatalog:
    """The steps one app serves (tests give their own)."""

    steps: tuple[Step, ...] = STEPS
    by_id: dict[str, Step] = field(init=False)

    def __post_init__(self) -> None:
        self.by_id = {s.id: s for s in self.steps}
