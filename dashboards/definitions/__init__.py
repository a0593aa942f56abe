"""The 12 dashboards of the SPEC, one module each: its datasets (Spark SQL over the gold layer, the
gold datasets written ``{name}``), its widgets in rows on the 6-column grid, and its filters. What
several dashboards share (shorthands, common fields, shared datasets) is in ``common``.

``python -m dashboards.generate`` writes the Lakeview file of each; ``spark.jobs.dashboard_tables``
materialises every dataset as ``dash_<dataset>``; the control plane draws the widgets from those
tables.

Queries stay portable (Spark locally, a Databricks SQL warehouse on Databricks): ANSI SQL plus
functions both engines have, every output column named, no ``*``.
"""

from __future__ import annotations

from dashboards.definitions import (
    daily_trends,
    decline_analysis,
    executive_overview,
    financial_impact,
    fraud_risk,
    global_coverage,
    merchant_performance,
    real_time_monitoring,
    routing_retry,
    streaming_data_quality,
    technical_performance,
    three_ds_funnel,
)
from dashboards.model import Dashboard

DASHBOARDS: tuple[Dashboard, ...] = (
    executive_overview.DASHBOARD,
    decline_analysis.DASHBOARD,
    real_time_monitoring.DASHBOARD,
    fraud_risk.DASHBOARD,
    merchant_performance.DASHBOARD,
    routing_retry.DASHBOARD,
    daily_trends.DASHBOARD,
    three_ds_funnel.DASHBOARD,
    financial_impact.DASHBOARD,
    technical_performance.DASHBOARD,
    streaming_data_quality.DASHBOARD,
    global_coverage.DASHBOARD,
)
