"""First run: on a fresh data folder the control plane runs the whole sequence (backfill, ETL, gold
views, bootstrap, training) in the background, so a newcomer sees real numbers without knowing the
order. Progress is kept in ``app_state['first_run']`` and shown on /setup."""

from __future__ import annotations

import logging
from typing import Any

from services.control_plane.runner import StepRunner
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


def is_fresh(settings: ControlPlaneSettings) -> bool:
    """No lakehouse yet: nothing was ever run against this data folder."""
    return not any(settings.lakehouse_dir.glob("*/*/silver_transactions/_delta_log"))


def maybe_start_first_run(runner: StepRunner, catalog: StepCatalog, settings: ControlPlaneSettings) -> bool:
    if not settings.first_run or runner.get_state(FIRST_RUN_KEY) is not None or not is_fresh(settings):
        return False
    steps = first_run_steps(catalog, settings)
    if not steps:
        return False
    log.info("fresh data folder: running the first-run sequence (%s)", ", ".join(s.id for s, _ in steps))
    runner.run_sequence(steps, FIRST_RUN_KEY, "first-run")
    return True
