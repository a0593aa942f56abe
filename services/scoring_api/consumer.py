"""faust-streaming agent: ``payments.decisions`` -> Redis, deduplicated by transaction_id.

Runs as its own process (``python -m services.scoring_api consume``), started and supervised by
``serve`` next to the uvicorn workers: faust owns its event loop and Kafka consumer group, which
does not mix well with uvicorn's loop and would be duplicated by ``--workers K``. One consumer
process per API instance (consumer group ``PA_CONSUMER_GROUP``); offsets are committed by faust
after processing, and writes are ``SET NX`` (first decision per transaction wins), so a redelivery
after a crash changes nothing.

Each message value is a DecisionEvent JSON; invalid messages are counted and skipped (logged), never
stop the agent. A timer writes ``{prefix}:consumer:heartbeat`` (epoch seconds) for /ready.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import faust
import redis.asyncio
from faust.worker import Worker
from pydantic import ValidationError

from payments_core.contract.events import DecisionEvent
from payments_core.contract.topics import DECISIONS, prefixed
from services.scoring_api.settings import Settings
from services.scoring_api.store import DecisionStore

log = logging.getLogger("scoring_api.consumer")
HEARTBEAT_SECONDS = 5.0


def parse_decision(value: bytes) -> tuple[str, bytes] | None:
    """(transaction_id, normalised JSON) of a valid DecisionEvent message, else None."""
    try:
        event = DecisionEvent.model_validate_json(value)
    except (ValidationError, ValueError) as exc:
        log.warning("skipping invalid decision message: %s", str(exc).splitlines()[0])
        return None
    return event.transaction_id, event.model_dump_json().encode()


def make_app(settings: Settings) -> faust.App:
    datadir = (settings.data_dir or _tmp()) / "faust" / settings.consumer_group
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.consumer_group,
        broker=f"kafka://{settings.kafka_bootstrap}",
        value_serializer="raw",
        key_serializer="raw",
        web_enabled=False,
        store="memory://",
        topic_disable_leader=True,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        datadir=str(datadir),
        producer_acks=1,
    )
    topic = app.topic(
        prefixed(DECISIONS, settings.topic_prefix),
        value_type=bytes,
        key_type=bytes,
        value_serializer="raw",
        key_serializer="raw",
    )
    holder: dict[str, Any] = {}

    def store() -> DecisionStore:
        if "store" not in holder:  # created inside faust's event loop
            client = redis.asyncio.Redis.from_url(settings.redis_url, socket_timeout=5)
            holder["client"] = client
            holder["store"] = DecisionStore(client, settings.redis_prefix, settings.decision_ttl_seconds)
        return holder["store"]

    @app.agent(topic)
    async def decisions(stream: Any) -> None:
        async for batch in stream.take(500, within=0.2):
            items = [parsed for v in batch if (parsed := parse_decision(v)) is not None]
            if items:
                new = await store().put_many(items)
                log.debug("stored %d decisions (%d new)", len(items), new)

    @app.timer(HEARTBEAT_SECONDS)
    async def heartbeat() -> None:
        await store().client.set(
            f"{settings.redis_prefix}:consumer:heartbeat", f"{time.time():.3f}", ex=int(HEARTBEAT_SECONDS * 6)
        )

    return app


def _tmp():
    return Path(tempfile.gettempdir())


def run(settings: Settings) -> None:
    """Run the agent until SIGTERM/SIGINT (blocking)."""
    app = make_app(settings)
    worker = Worker(app, loglevel="info", quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
