"""The local backend: what `make up` and docker compose run. Steps are child processes
(``runner.StepRunner``), the simulator and stream processor are supervisord programs, models live in the
MLflow registry of ``PA_MLFLOW_TRACKING_URI``, decisions come from Kafka (``DecisionFeed``) and the live
rule set is a file (``<data_dir>/rules/ruleset.json``, or ``$PA_RULES_VOLUME_PATH/ruleset.json``)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Literal

from sqlalchemy.orm import sessionmaker

from payments_core.rules.model import RuleSet, ruleset_path, write_ruleset
from services.control_plane.backends import BackendUnavailable, ServicesState
from services.control_plane.decision_feed import DecisionFeed
from services.control_plane.model_registry import ModelRegistry, redact_uri
from services.control_plane.runner import StepRunner
from services.control_plane.settings import ControlPlaneSettings
from services.control_plane.supervision import MANAGED, Supervisor, SupervisorUnavailable

CANDIDATES_KEPT = 50  # backtest candidate files kept (a backtest reads its file when it starts)


def step_environment(settings: ControlPlaneSettings) -> dict[str, str]:
    """What every step's process gets on top of the control plane's own environment: the same data
    folder, lakehouse, registry, Kafka and rules as the control plane, however those were configured."""
    env = {
        "PA_DATA_DIR": str(settings.data_dir),
        "PA_WAREHOUSE_DIR": str(settings.lakehouse_dir),
        "PA_MLFLOW_TRACKING_URI": settings.tracking_uri,
        "PA_CATALOG": settings.catalog,
        "PA_SCHEMA": settings.lakehouse_schema,
        "PA_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "PA_TOPIC_PREFIX": settings.topic_prefix,
    }
    if settings.rules_volume_path:
        env["PA_RULES_VOLUME_PATH"] = settings.rules_volume_path
    return env


class SupervisedServices:
    """The simulator and the stream processor as supervisord programs (``PA_SUPERVISOR_URL``)."""

    kind = "supervisord"

    def __init__(self, settings: ControlPlaneSettings):
        self.url = settings.supervisor_url

    def status(self) -> ServicesState:
        try:
            supervisor = Supervisor(self.url)
            return ServicesState(True, None, {name: supervisor.info(name) for name in MANAGED})
        except SupervisorUnavailable as exc:
            return ServicesState(False, str(exc), {})

    def control(self, name: str, action: Literal["start", "stop"]) -> dict[str, Any]:
        try:
            supervisor = Supervisor(self.url)
            getattr(supervisor, action)(name)
            return supervisor.info(name)
        except SupervisorUnavailable as exc:
            raise BackendUnavailable(str(exc)) from None


class FileRulePublisher:
    """The live rule set as a file, replaced atomically (``write_ruleset``); readers follow it by stat."""

    def __init__(self, settings: ControlPlaneSettings):
        path = ruleset_path(settings.data_dir, settings.rules_volume_path)
        assert path is not None  # data_dir always has a value
        self.path = path
        self.location = str(path)
        self.candidates = Path(settings.data_dir) / "rules" / "candidates"

    def read(self) -> bytes | None:
        return self.path.read_bytes() if self.path.exists() else None

    def publish(self, rule_set: RuleSet) -> None:
        write_ruleset(rule_set, self.path)

    def write_candidate(self, rule_set: RuleSet) -> str:
        path = self.candidates / f"{uuid.uuid4().hex}.json"
        write_ruleset(rule_set, path)
        for old in sorted(self.candidates.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)[
            CANDIDATES_KEPT:
        ]:
            old.unlink(missing_ok=True)
        return str(path)

    def discard_candidate(self, ref: str) -> None:
        Path(ref).unlink(missing_ok=True)


class LocalBackend:
    name = "local"

    def __init__(self, settings: ControlPlaneSettings, sessions: sessionmaker):
        self.settings = settings
        self.runner = StepRunner(sessions, settings.job_log_dir, step_environment(settings))
        self.services = SupervisedServices(settings)
        self.registry = ModelRegistry(settings.tracking_uri, settings.uc_catalog, settings.uc_schema)
        self.decisions = DecisionFeed(settings)
        self.rules = FileRulePublisher(settings)

    def start(self) -> None:
        self.runner.reconcile()
        if self.settings.decision_feed:
            self.decisions.start()

    def stop(self) -> None:
        self.decisions.stop()
        self.runner.close()

    def first_run_due(self) -> bool:
        """No lakehouse yet: nothing was ever run against this data folder."""
        return not any(self.settings.lakehouse_dir.glob("*/*/silver_transactions/_delta_log"))

    def info(self, check: bool = False) -> dict[str, Any]:
        return {
            "backend": self.name,
            "steps": "child processes of the control plane",
            "services": self.settings.supervisor_url or None,
            "models": redact_uri(self.registry.registry_uri),
            "decisions": f"Kafka {self.settings.kafka_bootstrap}",
            "rules": self.rules.location,
        }
