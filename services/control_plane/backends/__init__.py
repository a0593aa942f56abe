"""Where Setup & Run, the services panel, models, decisions and rule publication act: one interface, two
backends, chosen once from ``PA_BACKEND`` when the app starts (``make_backend``).

* ``local`` (``local.py``): steps as child processes (``runner.StepRunner``), the simulator and stream
  processor under supervisord, the MLflow registry of ``PA_MLFLOW_TRACKING_URI``, decisions from Kafka
  (``decision_feed.DecisionFeed``), the live rule set written as a file.
* ``databricks`` (``databricks.py``, ``warehouse.py``): the same steps as Jobs API runs and Lakeflow
  pipeline updates, the services as jobs, Unity Catalog models and aliases, the decision log through a
  SQL warehouse, the live rule set uploaded to a Unity Catalog volume; all through databricks-sdk,
  authenticated by its default configuration chain.

Routers see only the protocols below (``deps.BackendDep``); what differs between the two stays here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from sqlalchemy.orm import sessionmaker

from services.control_plane.db import JobRun
from services.control_plane.steps import Step

if TYPE_CHECKING:
    from payments_core.rules.model import RuleSet
    from services.control_plane.decision_feed import DecisionFilter, Subscription
    from services.control_plane.model_registry import ModelRegistry
    from services.control_plane.settings import ControlPlaneSettings


# ------------------------------------------------------------------------------------------ errors
class BackendError(Exception):
    """A backend refused or failed; the app answers ``status_code`` with this message (never a 500)."""

    status_code = 502


class NotConfigured(BackendError):
    """Something the request needs is not configured; the message names the setting to set."""

    status_code = 409


class BackendUnavailable(BackendError):
    """The workspace (or supervisord) did not answer, or answered with an error."""

    status_code = 503


# ------------------------------------------------------------------------------------------ parts
class StepExecutor(Protocol):
    """Runs the Setup & Run steps: a ``job_runs`` row per run (one active run per step), a log file the
    log view tails, cancel, reconciliation at start, sequences, and small app state."""

    backend: str

    def unavailable(self, step: Step) -> str | None: ...

    def describe(self, step: Step) -> dict[str, Any]: ...

    def start(
        self,
        step: Step,
        params: dict[str, Any] | None = None,
        started_by: str = "system",
        note: str = "",
        on_done: Callable[[JobRun], None] | None = None,
    ) -> JobRun: ...

    def cancel(self, run_id: int) -> bool: ...

    def reconcile(self) -> list[int]: ...

    def run_sequence(self, steps: Sequence[tuple[Step, dict[str, Any]]], state_key: str, started_by: str) -> None: ...

    def get(self, run_id: int) -> JobRun: ...

    def wait(self, run_id: int, timeout: float | None = None) -> None: ...

    def get_state(self, key: str) -> Any: ...

    def set_state(self, key: str, value: Any) -> None: ...

    def close(self) -> None: ...


@dataclass
class ServicesState:
    """The long-running services as the panel shows them: ``infos`` per service name (``state``,
    ``description``, ...); ``managed`` False with ``error`` when they cannot be controlled here."""

    managed: bool
    error: str | None
    infos: dict[str, dict[str, Any]] = field(default_factory=dict)


class ServiceControl(Protocol):
    """Start and stop the simulator and the stream processor (``supervision.MANAGED``)."""

    kind: str

    def status(self) -> ServicesState: ...

    def control(self, name: str, action: Literal["start", "stop"]) -> dict[str, Any]: ...


class DecisionSource(Protocol):
    """Recent decisions (newest first, filtered), one by transaction id, a status line, and a push
    subscription of new decisions for server-sent events."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def recent(self, decision_filter: DecisionFilter, limit: int = 100) -> list[dict[str, Any]]: ...

    def get(self, transaction_id: str) -> dict[str, Any] | None: ...

    def status(self) -> dict[str, Any]: ...

    def subscribe(self, loop: asyncio.AbstractEventLoop, decision_filter: DecisionFilter) -> Subscription: ...

    def unsubscribe(self, subscription: Subscription) -> None: ...


class RulePublisher(Protocol):
    """Where the live rule set is published for the scoring API and the stream processor to read, and
    where a backtest's candidate set is handed to the backtest step."""

    location: str

    def read(self) -> bytes | None: ...

    def publish(self, rule_set: RuleSet) -> None: ...

    def write_candidate(self, rule_set: RuleSet) -> str: ...

    def discard_candidate(self, ref: str) -> None: ...


class Backend(Protocol):
    """One backend: its parts, read-only (implementations hold their own concrete types)."""

    @property
    def name(self) -> str: ...

    @property
    def runner(self) -> StepExecutor: ...

    @property
    def services(self) -> ServiceControl: ...

    @property
    def registry(self) -> ModelRegistry: ...

    @property
    def decisions(self) -> DecisionSource: ...

    @property
    def rules(self) -> RulePublisher: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def first_run_due(self) -> bool:
        """Whether the app starts the first-run sequence by itself (a fresh local lakehouse)."""
        ...

    def info(self, check: bool = False) -> dict[str, Any]: ...


def make_backend(settings: ControlPlaneSettings, sessions: sessionmaker, steps: Sequence[Step]) -> Backend:
    """The backend ``PA_BACKEND`` names, on the app's database."""
    if settings.backend == "databricks":
        # databricks-sdk takes seconds to import: only a control plane on Databricks loads it
        from services.control_plane.backends.databricks import DatabricksBackend  # noqa: PLC0415

        return DatabricksBackend(settings, sessions, steps)
    # the implementations import the runner, which imports the errors above
    from services.control_plane.backends.local import LocalBackend  # noqa: PLC0415

    return LocalBackend(settings, sessions)
