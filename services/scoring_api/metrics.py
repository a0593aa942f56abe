"""Prometheus metrics. With several uvicorn workers ``serve`` sets PROMETHEUS_MULTIPROC_DIR and
/metrics aggregates the workers' files (prometheus_client multiprocess mode)."""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

REQUEST_SECONDS = Histogram(
    "pa_scoring_request_seconds",
    "HTTP request latency of the scoring API",
    ["route", "method"],
    buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
DECISIONS = Counter("pa_decisions_total", "Decisions returned by POST /score, by outcome", ["outcome"])
_DECIDED: dict[str, Counter] = {}


def decided(outcome: str) -> None:
    """``DECISIONS.labels(outcome).inc()`` with the labelled child looked up once per outcome."""
    child = _DECIDED.get(outcome)
    if child is None:
        child = _DECIDED[outcome] = DECISIONS.labels(outcome)
    child.inc()


REPLAYS = Counter("pa_decision_replays_total", "Idempotent replays (stored decision returned)")
MODEL_INFO = Gauge(
    "pa_model_version_info", "Model version in use (value 1)", ["kind", "version"], multiprocess_mode="liveall"
)
RULES_INFO = Gauge("pa_rule_set_info", "Rule set version in use (value 1)", ["version"], multiprocess_mode="liveall")
MODEL_FALLBACK = Gauge(
    "pa_model_fallback",
    "1 when the model of this kind decides with the built-in heuristic instead of a registered model",
    ["kind"],
    multiprocess_mode="liveall",
)
RULES_FALLBACK = Gauge(
    "pa_rules_fallback",
    "1 when the starter rule set decides (no published rule set, or it could not be read)",
    multiprocess_mode="liveall",
)
RATE_LIMITED = Counter("pa_rate_limited_total", "Requests refused with 429 (per-key rate limit)")
REDIS_UNAVAILABLE = Counter(
    "pa_redis_unavailable_total", "Requests answered 503 because Redis failed or exceeded PA_REDIS_TIMEOUT_MS"
)
IDEMPOTENCY_CONFLICTS = Counter(
    "pa_idempotency_conflicts_total", "Requests refused with 409: a transaction_id reused for a different request"
)
PUBLISHED = Counter("pa_decisions_published_total", "API decisions acknowledged by Kafka on payments.decisions")
PUBLISH_ERRORS = Counter(
    "pa_decision_publish_errors_total", "API decisions Kafka did not acknowledge (kept in the outbox, sent again)"
)
REPUBLISHED = Counter(
    "pa_decisions_republished_total", "Outbox decisions sent again (not acknowledged in time, or of a dead process)"
)
OUTBOX = Gauge(
    "pa_decisions_outbox", "API decisions answered and not yet acknowledged by Kafka", multiprocess_mode="livesum"
)

_shown: dict[str, tuple[str, ...]] = {}


def show_versions(model_versions: dict[str, str], rule_set_version: str) -> None:
    """Point the info gauges at the versions in use (old label sets removed)."""
    for kind, version in model_versions.items():
        prev = _shown.get(f"model:{kind}")
        if prev and prev != (kind, version):
            MODEL_INFO.remove(*prev)
        MODEL_INFO.labels(kind, version).set(1)
        _shown[f"model:{kind}"] = (kind, version)
    prev = _shown.get("rules")
    if prev and prev != (rule_set_version,):
        RULES_INFO.remove(*prev)
    RULES_INFO.labels(rule_set_version).set(1)
    _shown["rules"] = (rule_set_version,)


def render() -> tuple[bytes, str]:
    if MULTIPROC:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
