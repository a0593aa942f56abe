"""faust-streaming agent: ``payments.decisions`` -> Redis, deduplicated by transaction_id.

Runs as its own process (``python -m services.scoring_api consume``), started and supervised by
``serve`` next to the uvicorn workers: faust owns its event loop and Kafka consumer group, which
does not mix well with uvicorn's loop and would be duplicated by ``--workers K``. One consumer
process per API instance (consumer group ``PA_CONSUMER_GROUP``); offsets are committed by faust
after processing, and writes are ``SET NX`` (first decision per transaction wins), so a redelivery
after a crash changes nothing.

Each message is checked against the contract (``contract.decision_records.check_decision_record``: the
value a ``DecisionEvent``, its ``pa.context`` header, when it has one, valid too). A record that is not
-- a forged or broken decision, an outcome outside the enum, an amount that is not integer minor units
-- is never written to Redis (where, first-write-wins, it would stand in for the real decision of its
transaction): it goes to ``payments.decisions.dlq`` with the reasons (a ``DeadLetter``, ``refused_by``
this consumer; delivered before the batch's offsets are committed) and is counted: the Redis counter
``{prefix}:consumer:refused`` (readable by every API process) and the Prometheus counter
``pa_decisions_refused_total`` (in /metrics when the processes share ``PROMETHEUS_MULTIPROC_DIR``).
Refused records never stop the agent. A timer writes ``{prefix}:consumer:heartbeat`` (epoch seconds)
and the status /ready reads (``consumer_status``: lag, failing, last error); a batch Redis refuses is
retried until it is stored (its offsets are committed only then), and the failure is in the status at
once, as is a crash of the agent.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust
import redis.asyncio
from faust.worker import Worker
from prometheus_client import Counter

from payments_core.contract.dead_letters import DeadLetter, Reason, dead_letter, dead_letter_key
from payments_core.contract.decision_records import check_decision_record, context_header
from payments_core.contract.topics import DECISIONS, DECISIONS_DLQ, prefixed
from services.scoring_api.consumer_status import ConsumerStatus, describe, status_key
from services.scoring_api.settings import Settings
from services.scoring_api.store import DecisionStore

log = logging.getLogger("scoring_api.consumer")
HEARTBEAT_SECONDS = 5.0
REFUSED_BY = "scoring_api.consumer"
REFUSED = Counter(
    "pa_decisions_refused_total",
    "Records of payments.decisions the decisions consumer refused (not valid decisions; sent to the decisions DLQ)",
)


def parse_decision(value: bytes | None, headers: Any = None) -> tuple[str, bytes] | list[Reason]:
    """(transaction_id, normalised JSON) of a valid decision record, else the reasons it is not one."""
    checked = check_decision_record(value, context_header(headers))
    if isinstance(checked, list):
        return checked
    return checked.transaction_id, checked.model_dump_json().encode()


def refused_letter(event: Any, reasons: list[Reason]) -> DeadLetter:
    """The dead letter of a faust event (its message's value, key, headers and position)."""
    msg = event.message
    stamp = getattr(msg, "timestamp", None)
    return dead_letter(
        reasons,
        raw=msg.value,
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        timestamp=datetime.fromtimestamp(stamp, UTC) if stamp else None,
        key=msg.key,
        refused_by=REFUSED_BY,
    )


class _App(faust.App):
    """faust.App that also reports a crashed agent (``on_agent_failed``) to the consumer status."""

    on_agent_failed: Callable[[BaseException], Awaitable[None]] | None = None

    async def _on_agent_error(self, agent: Any, exc: BaseException) -> None:
        if self.on_agent_failed is not None:
            await self.on_agent_failed(exc)
        await super()._on_agent_error(agent, exc)


def make_app(settings: Settings) -> faust.App:
    datadir = (settings.data_dir or _tmp()) / "faust" / settings.consumer_group
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = _App(
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
    dlq = app.topic(
        prefixed(DECISIONS_DLQ, settings.topic_prefix),
        value_type=bytes,
        key_type=bytes,
        value_serializer="raw",
        key_serializer="raw",
    )
    refused_key = f"{settings.redis_prefix}:consumer:refused"
    holder: dict[str, Any] = {}
    status = ConsumerStatus(status_key(settings.redis_prefix))

    def store() -> DecisionStore:
        if "store" not in holder:  # created inside faust's event loop
            client = redis.asyncio.Redis.from_url(settings.redis_url, socket_timeout=5)
            holder["client"] = client
            holder["store"] = DecisionStore(client, settings.redis_prefix, settings.decision_ttl_seconds)
        return holder["store"]

    @app.agent(topic)
    async def decisions(stream: Any) -> None:
        # take_events: the values with their messages (headers, position); the batch's offsets are
        # committed after this body has run (stored, and refused records delivered to the DLQ)
        await status.try_write(store().client)  # running: /ready need not wait for the first heartbeat
        async for events in stream.take_events(500, within=0.2):
            items: list[tuple[str, bytes]] = []
            refused: list[DeadLetter] = []
            for event in events:
                checked = parse_decision(event.message.value, event.message.headers)
                if isinstance(checked, list):
                    refused.append(refused_letter(event, checked))
                else:
                    items.append(checked)
            if refused:
                await _dead_letter(refused)
            if items:
                new = await status.retrying(store().client, store().put_many, items)
                log.debug("stored %d decisions (%d new)", len(items), new)

    async def agent_failed(exc: BaseException) -> None:  # faust restarts the agent after this
        status.error(exc)
        log.error("decisions agent crashed: %s", describe(exc))
        await status.try_write(store().client)

    app.on_agent_failed = agent_failed

    async def _dead_letter(letters: list[DeadLetter]) -> None:
        pending = [
            await dlq.send(
                key=dead_letter_key(letter.source_topic, letter.source_partition, letter.source_offset),
                value=letter.model_dump_json().encode(),
            )
            for letter in letters
        ]
        for delivered in pending:
            await delivered
        REFUSED.inc(len(letters))
        try:  # a metric: the dead letters are the record, a Redis hiccup must not fail the batch
            await store().client.incrby(refused_key, len(letters))
        except Exception as exc:
            log.debug("refused counter not updated: %s", exc)
        log.warning(
            "refused %d records of %s that are not valid decisions (sent to %s); e.g. offset %d: %s",
            len(letters),
            letters[0].source_topic,
            dlq.get_topic_name(),
            letters[0].source_offset,
            letters[0].error[:200],
        )

    @app.timer(HEARTBEAT_SECONDS)
    async def heartbeat() -> None:
        await status.measure_lag(app)
        await status.try_write(store().client)  # never raises: a stale status is what /ready sees then
        try:
            await store().client.set(
                f"{settings.redis_prefix}:consumer:heartbeat", f"{time.time():.3f}", ex=int(HEARTBEAT_SECONDS * 6)
            )
        except Exception as exc:
            log.debug("heartbeat not written: %s", exc)

    return app


def _tmp():
    return Path(tempfile.gettempdir())


def run(settings: Settings) -> None:
    """Run the agent until SIGTERM/SIGINT (blocking)."""
    app = make_app(settings)
    worker = Worker(app, loglevel="info", quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
