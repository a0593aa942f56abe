"""Dashboard page and API: live KPIs and per-minute series from the stream's Delta tables, DLQ rate.

KPIs and charts come from ``stream_metrics_1m`` and the decision log (``lakehouse.py``, read without a
JVM). The dead-letter rate comes from the Kafka topics themselves: records of the window in
``payments.transactions.dlq`` against ``payments.transactions`` (``offsets_for_times``), or, when the
broker is unreachable, from ``bronze_dead_letters`` if the ETL has written it.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from confluent_kafka import Consumer, TopicPartition
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from payments_core.contract.topics import TRANSACTIONS, TRANSACTIONS_DLQ, prefixed
from services.control_plane import lakehouse
from services.control_plane.deps import PageUser, SettingsDep, Viewer
from services.control_plane.settings import ControlPlaneSettings
from services.control_plane.templating import render

router = APIRouter(tags=["dashboard"])
WINDOWS_MINUTES = (15, 60, 360, 1440)
KAFKA_TIMEOUT_S = 1.5
KAFKA_CACHE_S = 10.0  # the page polls every 5 s; topic offsets need not be fresher
log = logging.getLogger("control_plane.dashboard")
_quiet = logging.getLogger("control_plane.kafka")
_quiet.setLevel(logging.CRITICAL)
_kafka_cache: dict[tuple, tuple[float, dict]] = {}
_kafka_lock = threading.Lock()


def records_since(bootstrap: str, topics: list[str], since_ms: int, timeout: float = KAFKA_TIMEOUT_S) -> dict:
    """Records per topic with a timestamp at or after ``since_ms`` (None: topic missing). Raises when the
    broker does not answer."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "control-plane-dashboard",
            "enable.auto.commit": False,
            "logger": _quiet,
        }
    )
    try:
        meta = consumer.list_topics(timeout=timeout)
        counts: dict[str, int | None] = {}
        for topic in topics:
            if topic not in meta.topics:
                counts[topic] = None
                continue
            wanted = [TopicPartition(topic, pid, since_ms) for pid in meta.topics[topic].partitions]
            total = 0
            for found in consumer.offsets_for_times(wanted, timeout=timeout):
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, found.partition), timeout=timeout)
                first = found.offset if found.offset >= 0 else high  # -1: no record that recent
                total += high - max(first, low)
            counts[topic] = total
        return counts
    finally:
        consumer.close()


def dlq_rate(settings: ControlPlaneSettings, reader: lakehouse.DeltaReader, since: datetime, minutes: int) -> dict:
    """Dead letters of the window: from Kafka, else from bronze_dead_letters, else unknown (said so)."""
    dlq_topic = prefixed(TRANSACTIONS_DLQ, settings.topic_prefix)
    tx_topic = prefixed(TRANSACTIONS, settings.topic_prefix)
    since_ms = int(since.timestamp() * 1000)
    key = (settings.kafka_bootstrap, dlq_topic, since_ms)
    with _kafka_lock:
        cached = _kafka_cache.get(key)
    if cached and time.monotonic() - cached[0] < KAFKA_CACHE_S:
        counts = cached[1]
    else:
        try:
            counts = records_since(settings.kafka_bootstrap, [dlq_topic, tx_topic], since_ms)
        except Exception as exc:  # broker down: fall back to the lakehouse
            log.debug("DLQ counts from %s failed: %s", settings.kafka_bootstrap, exc)
            counts = {"error": f"Kafka at {settings.kafka_bootstrap} not reachable"}
        with _kafka_lock:
            if len(_kafka_cache) > 32:
                _kafka_cache.clear()
            _kafka_cache[key] = (time.monotonic(), counts)
    if "error" not in counts and counts.get(dlq_topic) is not None:
        dead, received = counts[dlq_topic], counts.get(tx_topic)
        return {
            "source": "kafka",
            "topic": dlq_topic,
            "dead_letters": dead,
            "per_minute": dead / minutes,
            "transactions_received": received,
            "share": dead / received if received else None,
            "message": None,
        }
    why = counts.get("error") or f"Kafka topic {dlq_topic} does not exist"
    dead = lakehouse.bronze_dead_letters(reader, since)
    if dead is not None:
        return {
            "source": lakehouse.BRONZE_DEAD_LETTERS,
            "topic": dlq_topic,
            "dead_letters": dead,
            "per_minute": dead / minutes,
            "transactions_received": None,
            "share": None,
            "message": f"{why}: dead letters counted from {lakehouse.BRONZE_DEAD_LETTERS} (as of the last ETL)",
        }
    return {
        "source": None,
        "topic": dlq_topic,
        "dead_letters": None,
        "per_minute": None,
        "transactions_received": None,
        "share": None,
        "message": f"DLQ rate unknown: {why} and no {lakehouse.BRONZE_DEAD_LETTERS} table",
    }


@router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
def dashboard_page(request: Request, user: PageUser):
    return render(request, "dashboard.html", user, "/dashboard", windows=WINDOWS_MINUTES)


@router.get("/api/dashboard")
def dashboard_data(
    settings: SettingsDep,
    _user: Viewer,
    minutes: Annotated[int, Query(ge=1, le=1440, description="Window: the last N minutes")] = 60,
) -> dict[str, Any]:
    """KPIs of the window (approval rates, volume, value, fraud share, latency, DLQ rate), per-minute
    series for the charts and when the data was last updated."""
    reader = lakehouse.reader_for(settings.lakehouse_dir, settings.catalog, settings.lakehouse_schema)
    now = datetime.now(UTC)
    body = lakehouse.dashboard(reader, minutes, now)
    body["dlq"] = dlq_rate(settings, reader, lakehouse.window_since(now, minutes), minutes)
    return body
