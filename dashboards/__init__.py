"""The 12 dashboards, defined once (``dashboards.definitions``) and rendered twice: as Lakeview files
(``python -m dashboards.generate`` writes ``dashboards/NN_<id>.lvdash.json``, deployed by the bundle)
and by the control plane (``/dashboards``) from the dashboard tables ``dash_<dataset>`` that
``spark.jobs.dashboard_tables`` materialises after the gold views. See docs/dashboards.md.

This package is pure Python (no Spark, no service): the control plane, the Spark jobs and the
generator all import it.
"""

from __future__ import annotations

from pathlib import Path

from dashboards.definitions import DASHBOARDS
from dashboards.model import Dashboard, Dataset

FOLDER = Path(__file__).resolve().parent
BY_ID: dict[str, Dashboard] = {d.id: d for d in DASHBOARDS}


def all_datasets() -> dict[str, Dataset]:
    """Every dataset of every dashboard once, by name (a shared dataset is one object)."""
    out: dict[str, Dataset] = {}
    for dashboard in DASHBOARDS:
        for d in dashboard.datasets:
            known = out.setdefault(d.name, d)
            if known.sql != d.sql:
                raise ValueError(f"two different datasets are named {d.name!r}")
    return out


def dashboards_using(dataset: str) -> tuple[int, ...]:
    return tuple(d.number for d in DASHBOARDS if any(x.name == dataset for x in d.datasets))


__all__ = ["BY_ID", "DASHBOARDS", "FOLDER", "Dashboard", "Dataset", "all_datasets", "dashboards_using"]
