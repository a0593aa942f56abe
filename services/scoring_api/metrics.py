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
REPLAYS = Counter("pa_decision_replays_total", "Idempotent replays (stored decision returned)")
MODEL_INFO = Gauge(
    "pa_model_version_info", "Model version in use (value 1)", ["kind", "version"], multiprocess_mode="liveall"
)
RULES_INFO = Gauge("pa_rule_set_info", "Rule set version in use (value 1)", ["version"], multiprocess_mode="liveall")

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
