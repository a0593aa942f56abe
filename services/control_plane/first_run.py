"""First run: on a fresh data folder the control plane runs the whole sequence (backfill, ETL, gold
views, bootstrap, training) in the background, so a newcomer sees real numbers without knowing the
order. Progress is kept in ``app_state['first_run']`` and shown on /setup."""

from __future__ import annotations

import logging
from typing import Any

from services.control_plane.backends import Backend
from services.control_plane.settings import ControlPlaneSettings
from services.control_plane.steps import Step, StepCatalog

log = logging.getLogger("control_plane.first_run")
FIRST_RUN_KEY = "first_run"


def first_run_steps(catalog: StepCatalog, settings: ControlPlaneSettings) -> list[tuple[Step, dict[str, Any]]]:
    out = []
    for step in catalog.steps:
        if not step.first_run or not step.available:
            continue
        params = step.resolve(None)
        if step.id == "backfill":
            params.update(days=settings.first_run_backfill_days, events_per_day=settings.first_run_events_per_day)
        out.append((step, params))
    return out


def close_interrupted_sequence(backend: Backend) -> bool:
    """At start: a sequence still marked running belongs to a control plane that stopped (its thread is
    gone); it is marked failed, its running step ``interrupted``, so that /setup offers to run it again."""
    state = backend.runner.get_state(FIRST_RUN_KEY)
    if not state or state.get("status") != "running":
        return False
    for step in state.get("steps", []):
        if step.get("status") == "running":
            step["status"] = "interrupted"
    state.update(status="failed", error="the control plane restarted while the sequence ran")
    backend.runner.set_state(FIRST_RUN_KEY, state)
    log.warning("the first-run sequence was interrupted by a restart; start it again on /setup")
    return True


def maybe_start_first_run(backend: Backend, catalog: StepCatalog, settings: ControlPlaneSettings) -> bool:
    """Start the sequence when it never ran and the backend wants it (locally: a fresh data folder; on
    Databricks the bundle's first_run job does it)."""
    runner = backend.runner
    if not settings.first_run or runner.get_state(FIRST_RUN_KEY) is not None or not backend.first_run_due():
        return False
    steps = first_run_steps(catalog, settings)
    if not steps:
        return False
    log.info("fresh data folder: running the first-run sequence (%s)", ", ".join(s.id for s, _ in steps))
    runner.run_sequence(steps, FIRST_RUN_KEY, "first-run")
    return True
