"""Gold: every gold dataset of the SPEC, each name defined once, in this registry.

Each :class:`GoldDataset` is a SQL SELECT over logical table names written ``{name}``. The registry is
read by:

* the ETL pipeline (``spark/pipelines/payment_etl/transformations/gold.py``): it maintains
  ``gold_partials`` (``spark.etl.gold_partials``), silver summed per update at every grain the
  datasets below need, appended incrementally (only the new silver rows are read), and would make a
  materialized view of every dataset of kind ``materialized`` (none at present);
* the gold views job (``spark.jobs.gold_views``): every dataset of kind ``view`` becomes
  ``CREATE OR REPLACE VIEW catalog.schema.name`` on Databricks; locally a view is registered per
  session by ``Lakehouse.register`` (live) and the job also writes a snapshot Delta table;
* dashboards and the control plane (``GOLD_BY_NAME``; ``dashboards`` says which of the 12 use it).

Every dataset is a view computed on read: the ones over ``gold_partials`` re-aggregate a few thousand
partial rows (additive sums; exact latency histograms for the percentiles: the rank statistic
``percentile_approx`` approximates, exactly); the wall-clock ones (last hour, active alerts) filter
silver on ``event_timestamp``; ``v_data_quality`` counts rows. A pipeline update therefore does no
full recompute of gold (OSS materialized views are full recomputes over all of silver).

Money: values are DECIMAL(18,2) USD from integer minor units (``silver.amount_usd``); rates are
fractions in [0, 1] rounded to 4 places; latencies are milliseconds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from spark.etl.gold_partials import PARTIALS
from spark.etl.reference import COUNTRIES

SILVER = "{silver_transactions}"
PARTIALS_REF = "{" + PARTIALS + "}"
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


@dataclass(frozen=True)
class GoldDataset:
    name: str
    kind: Literal["materialized", "view"]
    sql: str
    description: str
    dashboards: tuple[int, ...] = ()

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(_PLACEHOLDER.findall(self.sql)))

    def render(self, resolve: Callable[[str], str] = lambda n: n) -> str:
        return _PLACEHOLDER.sub(lambda m: resolve(m.group(1)), self.sql)


# ------------------------------------------------------------------------------------------ fragments
def _rate(cond: str) -> str:
    return f"ROUND(AVG(CASE WHEN {cond} THEN 1 ELSE 0 END), 4)"


def _usd(expr: str) -> str:
    return f"CAST(COALESCE(SUM({expr}), 0) AS DECIMAL(18,2))"


KPI_COLUMNS = f"""
    COUNT(*) AS transactions,
    COUNT_IF(is_approved) AS approved,
    COUNT_IF(NOT is_approved) AS declined,
    {_rate("is_approved")} AS approval_rate,
    {_usd("amount_usd")} AS total_value_usd,
    {_usd("CASE WHEN is_approved THEN amount_usd END")} AS approved_value_usd,
    {_usd("CASE WHEN NOT is_approved THEN amount_usd END")} AS declined_value_usd,
    ROUND(AVG(fraud_score), 4) AS avg_fraud_score,
    COUNT_IF(is_fraud) AS fraud_transactions,
    {_rate("is_fraud")} AS fraud_rate,
    ROUND(AVG(processing_time_ms), 1) AS avg_latency_ms,
    percentile_approx(processing_time_ms, 0.95, 10000) AS p95_latency_ms"""

KPI_NAMES = tuple(re.findall(r" AS ([a-z0-9_]+)", KPI_COLUMNS))

COUNTRY_VALUES = ",\n        ".join(
    f"('{c}', '{n}', '{r}', CAST({lat} AS DOUBLE), CAST({lon} AS DOUBLE))" for c, (n, r, lat, lon) in COUNTRIES.items()
)

# Alert thresholds: relative to the baseline (previous 24 hours), so a normal day never fires.
ALERTS = {
    "min_transactions": 30,
    "approval_drop_pp": 0.05,  # last-hour approval rate below baseline by more than 5 points
    "fraud_score_threshold": 0.7,  # share of transactions with fraud_score >= 0.7 ...
    "fraud_spike_ratio": 2.0,  # ... more than twice the baseline share ...
    "fraud_spike_min_pp": 0.02,  # ... and at least 2 points above it
    "latency_ratio": 1.5,  # p95 latency above 1.5x the baseline p95 ...
    "latency_min_ms": 200,  # ... and at least 200 ms above it
}


# ------------------------------------------------------------------------------------------ partials
def _grain(grain: str) -> str:
    return f"(SELECT * FROM {PARTIALS_REF} WHERE grain = '{grain}')"


def _cents(expr: str) -> str:
    """USD DECIMAL(18,2) of a sum of cents (what ``_usd`` gives over silver's ``amount_usd``)."""
    return f"CAST(COALESCE(SUM({expr}), 0) / 100.0 AS DECIMAL(18,2))"


def _avg_usd(cents: str, n: str) -> str:
    """``CAST(AVG(amount_usd) AS DECIMAL(18,2))`` from sums: the average rounded to 6 places (AVG of a
    DECIMAL(18,2)), then to cents."""
    return f"CAST(CAST(CAST(SUM({cents}) AS DECIMAL(28,0)) / 100 / SUM({n}) AS DECIMAL(22,6)) AS DECIMAL(18,2))"


def _ratio(num: str, den: str = "n", places: int = 4) -> str:
    return f"ROUND(SUM({num}) / NULLIF(SUM({den}), 0), {places})"


def _quantile(q: float, value: str = "processing_time_ms") -> str:
    """The value of rank ceil(q * n) of a histogram (``cum_n``, ``total_n`` of ``_histogram``): the rank
    statistic ``percentile_approx`` approximates, exactly."""
    return f"MIN(CASE WHEN cum_n >= CEIL(CAST({q} AS DOUBLE) * total_n) THEN {value} END)"


def _histogram(
    grain: str, keys: str, measures: tuple[str, ...], value: str = "processing_time_ms", extra: str = ""
) -> str:
    """A CTE body: per ``keys`` and distinct ``value`` the summed ``measures``, the running count
    ``cum_n`` in value order and the keys' ``total_n`` (for ``_quantile``)."""
    sums = ", ".join(f"SUM({m}) AS {m}" for m in measures)
    return f"""SELECT *,
            SUM(n) OVER (PARTITION BY {keys} ORDER BY {value} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
            AS cum_n, SUM(n) OVER (PARTITION BY {keys}) AS total_n
    FROM (SELECT {keys}, {value}, {sums}{extra} FROM {_grain(grain)} GROUP BY {keys}, {value})"""


KPI_MEASURES = ("n", "approved", "value_cents", "approved_cents", "fraud", "fraud_score_sum", "latency_sum")
ROUTE_MEASURES = ("n", "approved", "approved_cents", "fraud", "latency_sum")

# the approval KPIs over partial rows carrying KPI_MEASURES and a latency histogram (same names and
# types as over silver: see KPI_COLUMNS)
KPI_SUMS = f"""
    SUM(n) AS transactions,
    SUM(approved) AS approved,
    SUM(n) - SUM(approved) AS declined,
    {_ratio("approved")} AS approval_rate,
    {_cents("value_cents")} AS total_value_usd,
    {_cents("approved_cents")} AS approved_value_usd,
    {_cents("value_cents - approved_cents")} AS declined_value_usd,
    {_ratio("fraud_score_sum")} AS avg_fraud_score,
    SUM(fraud) AS fraud_transactions,
    {_ratio("fraud")} AS fraud_rate,
    {_ratio("latency_sum", places=1)} AS avg_latency_ms,
    {_quantile(0.95)} AS p95_latency_ms"""

RECOVERY_PARTIALS_CTE = f"""recovery AS (
    SELECT previous_decline_code AS decline_reason, {_ratio("approved")} AS retry_success_rate
    FROM {_grain("retry")} WHERE is_retry AND previous_decline_code IS NOT NULL
    GROUP BY previous_decline_code)"""


# ------------------------------------------------------------------------------------------ datasets
GOLD: tuple[GoldDataset, ...] = (
    GoldDataset(
        "dim_merchants",
        "view",
        f"""
WITH m AS (
    SELECT merchant_id, merchant_segment, merchant_mcc, merchant_segment_risk, geo_country, SUM(n) AS n,
        SUM(approved) AS approved, SUM(value_cents) AS value_cents, MIN(event_ts_min) AS first_seen,
        MAX(event_ts_max) AS last_seen
    FROM {_grain("merchant")}
    GROUP BY merchant_id, merchant_segment, merchant_mcc, merchant_segment_risk, geo_country),
home AS (
    SELECT merchant_id, geo_country,
        ROW_NUMBER() OVER (PARTITION BY merchant_id ORDER BY SUM(n) DESC, geo_country) AS rk
    FROM m WHERE geo_country IS NOT NULL GROUP BY merchant_id, geo_country)
SELECT m.merchant_id,
    max_by(m.merchant_segment, m.last_seen) AS merchant_segment,
    max_by(m.merchant_mcc, m.last_seen) AS merchant_mcc,
    max_by(m.merchant_segment_risk, m.last_seen) AS merchant_segment_risk,
    MAX(h.geo_country) AS merchant_country,
    MIN(m.first_seen) AS first_seen_at,
    MAX(m.last_seen) AS last_seen_at,
    SUM(m.n) AS transactions,
    {_ratio("m.approved", "m.n")} AS approval_rate,
    {_cents("m.value_cents")} AS total_value_usd,
    CASE WHEN SUM(m.n) >= 1000 THEN 'large' WHEN SUM(m.n) >= 100 THEN 'medium' ELSE 'small' END AS merchant_size
FROM m LEFT JOIN home h ON m.merchant_id = h.merchant_id AND h.rk = 1
GROUP BY m.merchant_id""",
        "Merchant dimension observed in silver (segment, MCC, home country, activity, size)",
        (5,),
    ),
    GoldDataset(
        "v_approval_kpis_daily",
        "view",
        f"""
WITH h AS ({_histogram("hour_latency", "event_date", KPI_MEASURES)})
SELECT event_date, {KPI_SUMS}
FROM h GROUP BY event_date""",
        "Approval KPIs per UTC day",
        (1, 4, 9, 11),
    ),
    GoldDataset(
        "v_approval_kpis_hourly",
        "view",
        f"""
WITH h AS ({_histogram("hour_latency", "event_hour", KPI_MEASURES)})
SELECT event_hour, {KPI_SUMS}
FROM h GROUP BY event_hour""",
        "Approval KPIs per hour",
        (1, 3, 10),
    ),
    GoldDataset(
        "v_approval_kpis_last_hour",
        "view",
        f"""
SELECT current_timestamp() - INTERVAL 1 HOUR AS window_start, current_timestamp() AS window_end, {KPI_COLUMNS}
FROM {SILVER} WHERE event_timestamp >= current_timestamp() - INTERVAL 1 HOUR""",
        "Approval KPIs over the last hour (wall clock)",
        (3,),
    ),
    GoldDataset(
        "v_decline_patterns",
        "view",
        f"""
WITH {RECOVERY_PARTIALS_CTE},
declines AS (
    SELECT decline_reason_std AS decline_reason, decline_group, is_soft_decline, recommended_action,
        merchant_segment, payment_solution, SUM(n) AS declines, {_cents("value_cents")} AS declined_value_usd
    FROM {_grain("declines")}
    GROUP BY decline_reason_std, decline_group, is_soft_decline, recommended_action, merchant_segment, payment_solution)
SELECT d.*, ROUND(d.declines / SUM(d.declines) OVER (), 4) AS share_of_declines,
    CASE WHEN d.is_soft_decline THEN COALESCE(r.retry_success_rate, 0) ELSE 0 END AS retry_success_rate,
    CAST(CASE WHEN d.is_soft_decline THEN d.declined_value_usd * COALESCE(r.retry_success_rate, 0) ELSE 0 END
         AS DECIMAL(18,2)) AS recoverable_value_usd
FROM declines d LEFT JOIN recovery r ON d.decline_reason = r.decline_reason""",
        "Declines by reason, segment and route with recovery potential (soft declines x retry success)",
        (2, 9),
    ),
    GoldDataset(
        "v_risk_signals",
        "view",
        f"""
SELECT risk_tier, merchant_segment,
    SUM(n) AS transactions,
    {_ratio("composite_risk_sum")} AS avg_composite_risk,
    {_ratio("fraud_score_sum")} AS avg_fraud_score,
    {_ratio("aml_risk_sum")} AS avg_aml_risk_score,
    {_ratio("device_trust_sum")} AS avg_device_trust_score,
    SUM(fraud) AS fraud_transactions,
    {_ratio("fraud")} AS fraud_rate,
    SUM(fraud_declined) AS fraud_declined,
    SUM(fraud_approved) AS fraud_approved,
    {_cents("fraud_approved_cents")} AS fraud_approved_value_usd,
    {_ratio("approved")} AS approval_rate,
    {_ratio("cross_border")} AS cross_border_share,
    {_ratio("night")} AS night_share
FROM {_grain("risk")} GROUP BY risk_tier, merchant_segment""",
        "Risk tiers by segment: scores, fraud caught and missed",
        (4,),
    ),
    GoldDataset(
        "v_routing_performance",
        "view",
        f"""
WITH h AS ({_histogram("route_latency", "payment_solution, card_network", ROUTE_MEASURES)})
SELECT payment_solution, card_network,
    SUM(n) AS transactions,
    SUM(approved) AS approved,
    {_ratio("approved")} AS approval_rate,
    {_cents("approved_cents")} AS approved_value_usd,
    {_ratio("latency_sum", places=1)} AS avg_latency_ms,
    {_quantile(0.5)} AS p50_latency_ms, {_quantile(0.95)} AS p95_latency_ms, {_quantile(0.99)} AS p99_latency_ms,
    MAX(processing_time_ms) AS max_latency_ms,
    {_ratio("fraud")} AS fraud_rate
FROM h GROUP BY payment_solution, card_network""",
        "Approval, value and latency percentiles per payment solution and card network",
        (3, 6, 10),
    ),
    GoldDataset(
        "v_latency_histogram",
        "view",
        f"""
SELECT CASE WHEN processing_time_ms < 100 THEN '0000-0099' WHEN processing_time_ms < 200 THEN '0100-0199'
            WHEN processing_time_ms < 300 THEN '0200-0299' WHEN processing_time_ms < 500 THEN '0300-0499'
            WHEN processing_time_ms < 1000 THEN '0500-0999' WHEN processing_time_ms < 2000 THEN '1000-1999'
            WHEN processing_time_ms < 5000 THEN '2000-4999' ELSE '5000+' END AS latency_bucket_ms,
    SUM(n) AS transactions, {_ratio("approved")} AS approval_rate
FROM {_grain("route_latency")} GROUP BY 1""",
        "Processing-time histogram",
        (10,),
    ),
    GoldDataset(
        "v_retry_performance",
        "view",
        f"""
WITH retries AS (SELECT * FROM {_grain("retry")} WHERE is_retry AND previous_decline_code IS NOT NULL),
first_attempts AS (
    SELECT {_ratio("approved")} AS first_attempt_approval_rate FROM {_grain("retry")} WHERE NOT is_retry),
advised AS (
    SELECT *, CASE WHEN retry_waited_as_advised THEN n END AS advised_n,
        CASE WHEN retry_waited_as_advised THEN approved END AS advised_approved,
        CASE WHEN NOT retry_waited_as_advised THEN n END AS early_n,
        CASE WHEN NOT retry_waited_as_advised THEN approved END AS early_approved
    FROM retries)
SELECT r.previous_decline_code AS decline_reason,
    SUM(n) AS retries,
    SUM(approved) AS recovered,
    {_ratio("approved")} AS retry_success_rate,
    {_cents("approved_cents")} AS recovered_value_usd,
    {_ratio("seconds_since_previous_sum", "seconds_since_previous_n", 1)} AS avg_seconds_since_previous,
    COALESCE(SUM(advised_n), 0) AS advised_retries,
    {_ratio("advised_approved", "advised_n")} AS advised_success_rate,
    COALESCE(SUM(early_n), 0) AS early_retries,
    {_ratio("early_approved", "early_n")} AS baseline_success_rate,
    ROUND(SUM(advised_approved) / NULLIF(SUM(advised_n), 0) - SUM(early_approved) / NULLIF(SUM(early_n), 0), 4)
        AS lift_over_baseline,
    MAX(f.first_attempt_approval_rate) AS first_attempt_approval_rate
FROM advised r CROSS JOIN first_attempts f
GROUP BY r.previous_decline_code""",
        "Retries per previous decline reason: success, value recovered, and lift of waiting as the taxonomy "
        "advises over the baseline of earlier retries",
        (2, 6),
    ),
    GoldDataset(
        "v_three_ds_funnel",
        "view",
        f"""
SELECT card_network,
    SUM(n) AS transactions,
    SUM(three_ds_requested) AS three_ds_requested,
    SUM(three_ds_routed) AS three_ds_routed,
    SUM(three_ds_challenged) AS three_ds_challenged,
    SUM(three_ds_authenticated) AS three_ds_authenticated,
    SUM(authenticated_approved) AS approved_after_authentication,
    {_ratio("three_ds_routed", "three_ds_requested")} AS routing_rate,
    {_ratio("three_ds_challenged", "three_ds_routed")} AS challenge_rate,
    {_ratio("three_ds_authenticated", "three_ds_routed")} AS authentication_rate,
    {_ratio("authenticated_approved", "three_ds_authenticated")} AS approval_rate_after_authentication
FROM {_grain("three_ds")} GROUP BY card_network""",
        "3DS funnel per card network: requested, routed, challenged, authenticated, approved",
        (8,),
    ),
    GoldDataset(
        "v_reason_code_insights",
        "view",
        f"""
WITH {RECOVERY_PARTIALS_CTE},
codes AS (
    SELECT decline_reason_std AS decline_reason, decline_code_std AS decline_code, decline_group, is_soft_decline,
        recommended_action, retry_after_seconds, SUM(n) AS declines, {_cents("value_cents")} AS declined_value_usd,
        {_avg_usd("value_cents", "n")} AS avg_declined_amount_usd
    FROM {_grain("declines")}
    GROUP BY decline_reason_std, decline_code_std, decline_group, is_soft_decline, recommended_action,
        retry_after_seconds),
segments AS (
    SELECT decline_reason_std AS decline_reason, merchant_segment, SUM(n) AS n,
        ROW_NUMBER() OVER (PARTITION BY decline_reason_std ORDER BY SUM(n) DESC, merchant_segment) AS rk
    FROM {_grain("declines")} GROUP BY decline_reason_std, merchant_segment)
SELECT c.*, ROUND(c.declines / SUM(c.declines) OVER (), 4) AS share_of_declines,
    s.merchant_segment AS top_merchant_segment,
    CASE WHEN c.is_soft_decline THEN COALESCE(r.retry_success_rate, 0) ELSE 0 END AS retry_success_rate,
    CAST(CASE WHEN c.is_soft_decline THEN c.declined_value_usd * COALESCE(r.retry_success_rate, 0) ELSE 0 END
         AS DECIMAL(18,2)) AS estimated_recoverable_value_usd
FROM codes c LEFT JOIN recovery r ON c.decline_reason = r.decline_reason
LEFT JOIN segments s ON c.decline_reason <=> s.decline_reason AND s.rk = 1""",
        "One row per standard decline code: volume, value, action and estimated recoverable value",
        (1, 2),
    ),
    GoldDataset(
        "v_entry_system_distribution",
        "view",
        f"""
SELECT entry_system, flow_type,
    SUM(n) AS transactions,
    ROUND(SUM(n) / SUM(SUM(n)) OVER (), 4) AS share_of_transactions,
    {_ratio("approved")} AS approval_rate,
    {_cents("value_cents")} AS total_value_usd,
    {_ratio("latency_sum", places=1)} AS avg_latency_ms
FROM {_grain("entry")} GROUP BY entry_system, flow_type""",
        "Transactions by entry system and flow",
        (5,),
    ),
    GoldDataset(
        "v_merchant_segment_performance",
        "view",
        f"""
WITH merchants AS (
    SELECT merchant_segment, COUNT(DISTINCT merchant_id) AS merchants
    FROM {_grain("merchant")} GROUP BY merchant_segment),
h AS ({
            _histogram(
                "segment_latency",
                "merchant_segment",
                KPI_MEASURES,
                extra=", MAX(merchant_mcc) AS merchant_mcc, MAX(merchant_segment_risk) AS merchant_segment_risk",
            )
        }),
kpis AS (
    SELECT merchant_segment, MAX(merchant_mcc) AS merchant_mcc, MAX(merchant_segment_risk) AS merchant_segment_risk,
        {KPI_SUMS},
        {_avg_usd("value_cents", "n")} AS avg_ticket_usd
    FROM h GROUP BY merchant_segment),
seg AS (
    SELECT k.merchant_segment, k.merchant_mcc, k.merchant_segment_risk, m.merchants,
        {", ".join("k." + c for c in KPI_NAMES)}, k.avg_ticket_usd
    FROM kpis k JOIN merchants m ON k.merchant_segment <=> m.merchant_segment),
top_decline AS (
    SELECT merchant_segment, decline_reason_std AS top_decline_reason,
        ROW_NUMBER() OVER (PARTITION BY merchant_segment ORDER BY SUM(n) DESC, decline_reason_std) AS rk
    FROM {_grain("declines")} GROUP BY merchant_segment, decline_reason_std)
SELECT seg.*, t.top_decline_reason
FROM seg LEFT JOIN top_decline t ON seg.merchant_segment = t.merchant_segment AND t.rk = 1""",
        "KPIs per merchant segment with its top decline reason",
        (5,),
    ),
    GoldDataset(
        "v_geography",
        "view",
        f"""
WITH countries(country_code, country_name, region, latitude, longitude) AS (VALUES
        {COUNTRY_VALUES})
SELECT s.geo_country AS country_code, c.country_name, c.region, c.latitude, c.longitude,
    SUM(s.n) AS transactions,
    {_ratio("s.approved", "s.n")} AS approval_rate,
    {_cents("s.value_cents")} AS total_value_usd,
    {_ratio("s.fraud", "s.n")} AS fraud_rate,
    {_ratio("s.cross_border", "s.n")} AS cross_border_share
FROM {_grain("geo")} s LEFT JOIN countries c ON s.geo_country = c.country_code
GROUP BY s.geo_country, c.country_name, c.region, c.latitude, c.longitude""",
        "KPIs per transaction country with map coordinates",
        (1, 12),
    ),
    GoldDataset(
        "v_daily_trends",
        "view",
        """
WITH d AS (SELECT * FROM {v_approval_kpis_daily}),
recent AS (SELECT * FROM d WHERE event_date > date_sub((SELECT MAX(event_date) FROM d), 90))
SELECT event_date, transactions, approval_rate, total_value_usd, approved_value_usd, fraud_rate, avg_latency_ms,
    LAG(transactions) OVER (ORDER BY event_date) AS previous_transactions,
    ROUND(transactions / LAG(transactions) OVER (ORDER BY event_date) - 1, 4) AS transactions_dod_change,
    ROUND(approval_rate - LAG(approval_rate) OVER (ORDER BY event_date), 4) AS approval_rate_dod_change,
    ROUND(CAST(total_value_usd AS DOUBLE) / CAST(LAG(total_value_usd) OVER (ORDER BY event_date) AS DOUBLE) - 1, 4)
        AS value_dod_change
FROM recent""",
        "Last 90 days of daily KPIs with day-over-day change",
        (7,),
    ),
    GoldDataset(
        "v_streaming_ingestion",
        "view",
        f"""
WITH b AS (SELECT date_trunc('hour', ingested_at) AS ingestion_hour, COUNT(*) AS bronze_events,
                  MAX(ingested_at) AS last_ingested_at
           FROM {{bronze_transactions}} GROUP BY 1),
lag AS ({_histogram("ingestion", "ingestion_hour", ("n", "ingestion_lag_sum"), value="ingestion_lag_s")}),
s AS (SELECT ingestion_hour, SUM(n) AS silver_rows,
             {_ratio("ingestion_lag_sum", places=3)} AS avg_ingestion_lag_s,
             ROUND({_quantile(0.95, "ingestion_lag_s")}, 3) AS p95_ingestion_lag_s
      FROM lag GROUP BY ingestion_hour),
q AS (SELECT date_trunc('hour', ingested_at) AS ingestion_hour, COUNT(*) AS quarantined_rows
      FROM {{silver_quarantine}} GROUP BY 1),
d AS (SELECT date_trunc('hour', ingested_at) AS ingestion_hour, COUNT(*) AS dead_letters
      FROM {{bronze_dead_letters}} GROUP BY 1)
SELECT COALESCE(b.ingestion_hour, s.ingestion_hour, q.ingestion_hour, d.ingestion_hour) AS ingestion_hour,
    COALESCE(b.bronze_events, 0) AS bronze_events, COALESCE(s.silver_rows, 0) AS silver_rows,
    COALESCE(q.quarantined_rows, 0) AS quarantined_rows, COALESCE(d.dead_letters, 0) AS dead_letters,
    COALESCE(b.bronze_events, 0) - COALESCE(s.silver_rows, 0) - COALESCE(q.quarantined_rows, 0) AS duplicates_dropped,
    s.avg_ingestion_lag_s, s.p95_ingestion_lag_s, b.last_ingested_at
FROM b FULL OUTER JOIN s ON b.ingestion_hour = s.ingestion_hour
FULL OUTER JOIN q ON COALESCE(b.ingestion_hour, s.ingestion_hour) = q.ingestion_hour
FULL OUTER JOIN d ON COALESCE(b.ingestion_hour, s.ingestion_hour, q.ingestion_hour) = d.ingestion_hour""",
        "Per ingestion hour: bronze vs silver vs quarantine vs dead letters, duplicates, ingestion lag "
        "(p95 lag from 3-significant-digit buckets)",
        (11,),
    ),
    GoldDataset(
        "v_data_quality",
        "view",
        f"""
WITH totals AS (SELECT COUNT(*) AS bronze_events FROM {{bronze_transactions}}),
silver AS (SELECT COUNT(*) AS silver_rows FROM {SILVER}),
checks AS (
    SELECT quarantine_check AS check_name, quarantine_reason AS detail, COUNT(*) AS affected_rows
    FROM {{silver_quarantine}} GROUP BY quarantine_check, quarantine_reason
    UNION ALL
    SELECT 'duplicate' AS check_name, 'transaction_id seen before' AS detail,
        (SELECT bronze_events FROM totals) - (SELECT silver_rows FROM silver)
            - (SELECT COUNT(*) FROM {{silver_quarantine}}) AS affected_rows
    UNION ALL
    SELECT 'dead_letter' AS check_name, 'refused upstream (DLQ topic)' AS detail, COUNT(*) AS affected_rows
    FROM {{bronze_dead_letters}})
SELECT c.check_name, c.detail, c.affected_rows, t.bronze_events,
    ROUND(c.affected_rows / NULLIF(t.bronze_events, 0), 6) AS affected_share
FROM checks c CROSS JOIN totals t""",
        "Data-quality checks: quarantine reasons, duplicates, dead letters",
        (11,),
    ),
    GoldDataset(
        "v_active_alerts",
        "view",
        f"""
WITH cur AS (
    SELECT COUNT(*) AS n, AVG(CAST(is_approved AS INT)) AS approval_rate,
        AVG(CASE WHEN fraud_score >= {ALERTS["fraud_score_threshold"]} THEN 1 ELSE 0 END) AS high_fraud_share,
        percentile_approx(processing_time_ms, 0.95, 10000) AS p95_latency_ms
    FROM {SILVER} WHERE event_timestamp >= current_timestamp() - INTERVAL 1 HOUR),
base AS (
    SELECT COUNT(*) AS n, AVG(CAST(is_approved AS INT)) AS approval_rate,
        AVG(CASE WHEN fraud_score >= {ALERTS["fraud_score_threshold"]} THEN 1 ELSE 0 END) AS high_fraud_share,
        percentile_approx(processing_time_ms, 0.95, 10000) AS p95_latency_ms
    FROM {SILVER} WHERE event_timestamp >= current_timestamp() - INTERVAL 25 HOURS
        AND event_timestamp < current_timestamp() - INTERVAL 1 HOUR),
candidates AS (
    SELECT 'approval_drop' AS alert_type, 'approval_rate' AS metric, cur.approval_rate AS current_value,
        base.approval_rate AS baseline_value, base.approval_rate - {ALERTS["approval_drop_pp"]} AS threshold,
        cur.approval_rate < base.approval_rate - {ALERTS["approval_drop_pp"]} AS firing,
        cur.approval_rate < base.approval_rate - 2 * {ALERTS["approval_drop_pp"]} AS critical,
        cur.n AS n, base.n AS base_n
    FROM cur CROSS JOIN base
    UNION ALL
    SELECT 'fraud_spike', 'high_fraud_score_share', cur.high_fraud_share, base.high_fraud_share,
        GREATEST(base.high_fraud_share * {ALERTS["fraud_spike_ratio"]},
            base.high_fraud_share + {ALERTS["fraud_spike_min_pp"]}),
        cur.high_fraud_share > GREATEST(base.high_fraud_share * {ALERTS["fraud_spike_ratio"]},
                                        base.high_fraud_share + {ALERTS["fraud_spike_min_pp"]}),
        cur.high_fraud_share > GREATEST(base.high_fraud_share * 2 * {ALERTS["fraud_spike_ratio"]},
                                        base.high_fraud_share + 2 * {ALERTS["fraud_spike_min_pp"]}), cur.n, base.n
    FROM cur CROSS JOIN base
    UNION ALL
    SELECT 'latency', 'p95_latency_ms', CAST(cur.p95_latency_ms AS DOUBLE), CAST(base.p95_latency_ms AS DOUBLE),
        GREATEST(base.p95_latency_ms * {ALERTS["latency_ratio"]}, base.p95_latency_ms + {ALERTS["latency_min_ms"]}),
        cur.p95_latency_ms > GREATEST(base.p95_latency_ms * {ALERTS["latency_ratio"]},
                                      base.p95_latency_ms + {ALERTS["latency_min_ms"]}),
        cur.p95_latency_ms > GREATEST(base.p95_latency_ms * 2 * {ALERTS["latency_ratio"]},
                                      base.p95_latency_ms + 2 * {ALERTS["latency_min_ms"]}), cur.n, base.n
    FROM cur CROSS JOIN base)
SELECT alert_type, metric, CASE WHEN critical THEN 'critical' ELSE 'warning' END AS severity,
    ROUND(current_value, 4) AS current_value, ROUND(baseline_value, 4) AS baseline_value,
    ROUND(threshold, 4) AS threshold, n AS transactions_last_hour, base_n AS transactions_baseline,
    current_timestamp() AS evaluated_at,
    concat(alert_type, ': ', metric, ' ', CAST(ROUND(current_value, 4) AS STRING), ' vs baseline ',
           CAST(ROUND(baseline_value, 4) AS STRING)) AS message
FROM candidates
WHERE firing AND n >= {ALERTS["min_transactions"]} AND base_n >= {ALERTS["min_transactions"]}""",
        "Alerts firing now: last hour vs the previous 24 hours (approval drop, fraud spike, latency)",
        (3,),
    ),
    GoldDataset(
        "v_recommendations",
        "view",
        f"""
WITH routes AS (
    SELECT merchant_segment, card_network, payment_solution, SUM(n) AS n,
        SUM(approved) / SUM(n) AS approval_rate, CAST(SUM(value_cents) / 100.0 AS DECIMAL(28,2)) AS value_usd
    FROM {_grain("route_segment")} GROUP BY merchant_segment, card_network, payment_solution),
scoped AS (
    SELECT *, SUM(n) OVER (PARTITION BY merchant_segment, card_network) AS scope_n,
        SUM(approval_rate * n) OVER (PARTITION BY merchant_segment, card_network)
            / SUM(n) OVER (PARTITION BY merchant_segment, card_network) AS scope_rate,
        SUM(value_usd) OVER (PARTITION BY merchant_segment, card_network) AS scope_value_usd,
        ROW_NUMBER() OVER (PARTITION BY merchant_segment, card_network
            ORDER BY approval_rate DESC, payment_solution) AS rk
    FROM routes WHERE n >= 50),
routing AS (
    SELECT 'routing' AS category, concat(merchant_segment, '/', card_network) AS scope,
        concat('Route more ', merchant_segment, ' ', card_network, ' traffic via ', payment_solution, ': approval ',
               CAST(ROUND(approval_rate * 100, 1) AS STRING), '% vs ', CAST(ROUND(scope_rate * 100, 1) AS STRING),
               '% for the segment and network') AS recommendation,
        'approval_rate' AS metric, ROUND(scope_rate, 4) AS current_value, ROUND(approval_rate, 4) AS expected_value,
        CAST(scope_value_usd * (approval_rate - scope_rate) AS DECIMAL(18,2)) AS estimated_impact_usd,
        scope_n AS evidence_transactions
    FROM scoped WHERE rk = 1 AND approval_rate - scope_rate >= 0.02),
retry AS (
    SELECT 'retry', decline_reason,
        concat('Retry ', decline_reason, ' declines after the advised wait: success ',
               CAST(ROUND(advised_success_rate * 100, 1) AS STRING), '% vs ',
               CAST(ROUND(baseline_success_rate * 100, 1) AS STRING), '% for earlier retries'),
        'retry_success_rate', baseline_success_rate, advised_success_rate,
        CAST(recovered_value_usd * lift_over_baseline / NULLIF(retry_success_rate, 0) AS DECIMAL(18,2)), retries
    FROM {{v_retry_performance}} WHERE lift_over_baseline > 0 AND advised_retries >= 20 AND early_retries >= 20),
recovery AS (
    SELECT 'decline_recovery', decline_reason,
        concat('Recover ', decline_reason, ' declines (', recommended_action, '): estimated ',
               CAST(estimated_recoverable_value_usd AS STRING), ' USD recoverable'),
        'estimated_recoverable_value_usd', CAST(0 AS DOUBLE), CAST(estimated_recoverable_value_usd AS DOUBLE),
        estimated_recoverable_value_usd, declines
    FROM {{v_reason_code_insights}} WHERE estimated_recoverable_value_usd > 0),
alls AS (SELECT * FROM routing UNION ALL SELECT * FROM retry UNION ALL SELECT * FROM recovery)
SELECT sha2(concat(category, ':', scope), 256) AS recommendation_id, category, scope, recommendation, metric,
    current_value, expected_value, estimated_impact_usd, evidence_transactions,
    ROW_NUMBER() OVER (ORDER BY estimated_impact_usd DESC NULLS LAST, category, scope) AS priority
FROM alls""",
        "Data-driven recommendations (routing, retry timing, decline recovery) with the numbers behind them",
        (6, 9),
    ),
)

GOLD_BY_NAME: dict[str, GoldDataset] = {d.name: d for d in GOLD}
assert len(GOLD_BY_NAME) == len(GOLD), "a gold dataset name is defined twice"
MATERIALIZED: tuple[GoldDataset, ...] = tuple(d for d in GOLD if d.kind == "materialized")
VIEWS: tuple[GoldDataset, ...] = tuple(d for d in GOLD if d.kind == "view")
GOLD_NAMES: tuple[str, ...] = tuple(GOLD_BY_NAME)


def in_dependency_order(datasets: Iterable[GoldDataset]) -> list[GoldDataset]:
    """Datasets sorted so that each comes after the gold datasets it reads."""
    wanted = {d.name: d for d in datasets}
    done: list[GoldDataset] = []
    seen: set[str] = set()

    def visit(d: GoldDataset) -> None:
        if d.name in seen:
            return
        seen.add(d.name)
        for s in d.sources:
            if s in wanted:
                visit(wanted[s])
        done.append(d)

    for d in wanted.values():
        visit(d)
    return done


def register_views(spark, available: set[str]) -> list[str]:
    """Register every view of the registry whose inputs are available as a temp view (local)."""
    have = set(available)
    done = []
    for d in in_dependency_order(VIEWS):
        if all(s in have for s in d.sources):
            spark.sql(d.render()).createOrReplaceTempView(d.name)
            have.add(d.name)
            done.append(d.name)
    return done


def build(spark, name: str):
    """The DataFrame of one gold dataset over plain (registered) table names."""
    return spark.sql(GOLD_BY_NAME[name].render())
