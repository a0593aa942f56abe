"""The Spark adapter over the shared decision core: raw Kafka records in, Kafka records out, 1:1.

``process_arrays`` is the whole per-batch job, on Arrow arrays in the Python worker:

1. validate every raw value with the contract (``parse.parse_array``: column-wise, pydantic for
   what that does not accept; ``parse.parse_values``, pydantic per record, for small batches);
2. velocity of the valid rows from the ONLINE store (Redis, ``BatchRedisVelocity.features_arrays``:
   records the batch idempotently by ``transaction_id``, then reads, in ONE script call with the
   same keys and semantics as the scoring API's per-transaction script), so
   the stream and ``POST /score`` see the same velocity and the query itself stays stateless;
3. ``DecisionEngine.decide_batch`` (the same engine ``POST /score`` uses; its vectorised batch path
   ``payments_core.batch``);
4. one output record per input record: the decision for ``payments.decisions`` (key
   ``transaction_id``, a ``pa.context`` header with the transaction facts the decision log and the
   metrics need), or a ``DeadLetter`` for ``payments.transactions.dlq``.

Three Spark forms wrap it, all Arrow-batched (never one Python call per row):

* ``score_udf`` -- a scalar ``arrow_udf`` returning a struct (``ArrowEvalPythonExec``); the default,
  because it is 1:1 and is the UDF form real-time mode on Databricks accepts;
* ``score_map_in_arrow`` -- ``DataFrame.mapInArrow`` (``MapInArrowExec``);
* ``score_publish_udf`` -- real-time mode in OSS Spark: an iterator ``arrow_udf`` that publishes each
  batch's records to Kafka itself (``Publisher``, one idempotent producer per worker, flushed before
  the task ends) and hands Spark nothing to write. OSS Spark 4.2's Python runner reads a UDF's
  results back only when the socket to the worker is full or the task's input ends, and a real-time
  task's input ends with its batch: through Spark's sink a decision waited for the end of the
  real-time batch (p50 ~ half the batch duration). See the README, "Real-time mode".

The engine, the velocity client and the rule/model sources live once per Python worker process
(workers are reused across tasks) and ``DecisionEngine.refresh()`` runs at most every
``refresh_seconds``: a new champion alias or rule-set file is picked up without restart, and every
decision records the ``rule_set_version`` and ``model_versions`` that made it.
"""

from __future__ import annotations

import gc
import logging
import os
import queue
import sys
import threading
import time
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import redis
from confluent_kafka import Producer
from pyspark.sql import types as T
from pyspark.sql.functions import arrow_udf

from payments_core.contract.clock import DEFAULT_MAX_EVENT_SKEW_SECONDS, EventClock
from payments_core.contract.decision_records import CONTEXT_FIELDS, CONTEXT_HEADER
from payments_core.engine import DecisionEngine
from payments_core.features import VELOCITY_FEATURES
from payments_core.models import ModelSource
from payments_core.rules.model import RuleSource
from payments_core.velocity import event_millis
from payments_core.velocity_batch import ENTITY_COLUMNS, BatchRedisVelocity
from services.stream_processor.parse import Parsed, dead_letter, dead_letter_key, parse_array, parse_values

log = logging.getLogger(__name__)

# The ``pa.context`` header of each decision record (transaction facts for the decision log, the
# one-minute metrics and the latency figures) is part of the contract: ``contract.decision_records``.
OUTPUT_DDL = "topic string, key binary, value binary, headers array<struct<key:string,value:binary>>"
_HEADER_TYPE = pa.struct([pa.field("key", pa.string()), pa.field("value", pa.binary())])
OUTPUT_ARROW = pa.struct(
    [
        pa.field("topic", pa.string()),
        pa.field("key", pa.binary()),
        pa.field("value", pa.binary()),
        pa.field("headers", pa.list_(_HEADER_TYPE)),
    ]
)
# Batches up to this many rows take the engine's one-row path (``decide`` per row, the same
# decisions by definition): the vectorised path has a fixed set-up cost of a few milliseconds per
# batch (pandas frames, rule masks), which real-time mode's small batches would pay per record.
SMALL_BATCH_ROWS = 256
# the Kafka source columns the scorer reads, in this order
INPUT_COLUMNS: tuple[str, ...] = ("key", "value", "topic", "partition", "offset", "timestamp")


@dataclass(frozen=True)
class ScoringConfig:
    """What a Python worker needs to build its runtime (small and picklable: shipped with the UDF)."""

    decisions_topic: str
    dlq_topic: str
    redis_url: str | None  # None: velocity features are 0 (tests of the adapter without Redis only)
    mlflow_tracking_uri: str | None
    rules_path: str | None  # the live rule-set file ($PA_DATA_DIR/rules/ruleset.json)
    refresh_seconds: float = 10.0
    velocity_prefix: str = "pa:vel"
    uc_catalog: str | None = None
    uc_schema: str | None = None
    # ``score_publish_udf``: Kafka producer settings of the worker's own producer (sorted pairs,
    # librdkafka names; hashable, as the config keys the per-process runtimes)
    publish: tuple[tuple[str, str], ...] | None = None
    # how far an event time may be ahead of the worker's clock (PA_MAX_EVENT_SKEW_SECONDS)
    max_event_skew_seconds: float = DEFAULT_MAX_EVENT_SKEW_SECONDS
    # how long a velocity call is retried while Redis is unreachable (restart, failover) before the
    # task fails (PA_STREAM_REDIS_RETRY_SECONDS)
    redis_retry_seconds: float = 120.0
    # ``score_publish_udf``: decide the Arrow batches waiting in the worker together, up to this many
    # rows (0: one by one); PA_STREAM_REALTIME_COALESCE_ROWS
    coalesce_rows: int = 0


class Publisher:
    """One Kafka producer per Python worker process for ``score_publish_udf``.

    Idempotent, ``acks=all`` and the Java client's partitioner (``murmur2_random``: a key lands on
    the partition Spark's Kafka sink would choose). Delivery is asynchronous; ``flush`` (at the end of
    each task, i.e. before its real-time batch commits) waits for every record and raises on any
    failed delivery, so the task fails and the batch is replayed: at least once, as with the sink."""

    def __init__(self, conf: dict[str, str]):
        self._failed: list[str] = []
        self._producer = Producer(
            # linger.ms comes with ``conf`` (PA_STREAM_REALTIME_LINGER_MS, ``worker_producer_options``)
            {"enable.idempotence": True, "acks": "all", "partitioner": "murmur2_random", **conf}
        )

    def _delivered(self, err, _msg) -> None:
        if err is not None:
            self._failed.append(str(err))

    def publish(self, records: DecidedRecords) -> None:
        produce = self._producer.produce
        rows = zip(records.topics, records.keys, records.values, records.contexts, strict=True)
        for topic, key, value, context in rows:
            while True:
                try:
                    produce(
                        topic,
                        value,
                        key,
                        headers=None if context is None else [(CONTEXT_HEADER, context)],
                        on_delivery=self._delivered,
                    )
                    break
                except BufferError:  # local queue full: serve deliveries, then retry
                    self._producer.poll(0.05)
        self._producer.poll(0)
        self._check()

    def flush(self, timeout_s: float = 60.0) -> None:
        left = self._producer.flush(timeout_s)
        self._check()
        if left:
            raise RuntimeError(f"{left} records not delivered to Kafka within {timeout_s}s")

    def _check(self) -> None:
        if self._failed:
            failed, self._failed = self._failed, []
            raise RuntimeError(f"Kafka delivery failed for {len(failed)} records: {failed[0]}")


class Runtime:
    """Per-process decision engine + velocity store, refreshed on a timer."""

    def __init__(self, config: ScoringConfig):
        started = time.perf_counter()
        self.config = config
        if config.mlflow_tracking_uri:
            # This worker process talks to one registry. ``ModelSource.load`` resolves ``models:/``
            # artifact URIs through MLflow's process-wide registry URI (its ``registry_uri`` argument
            # is not used for them in MLflow 3.17), so point the process at the registry too.
            import mlflow  # noqa: PLC0415 - seconds to import; only workers that use a registry pay for it

            mlflow.set_tracking_uri(config.mlflow_tracking_uri)
            mlflow.set_registry_uri(config.mlflow_tracking_uri)
        models = (
            ModelSource(config.mlflow_tracking_uri, config.uc_catalog, config.uc_schema)
            if config.mlflow_tracking_uri
            else None
        )
        self.engine = DecisionEngine.from_sources(RuleSource(config.rules_path), models)
        self.velocity = None
        if config.redis_url:
            self.velocity = BatchRedisVelocity.from_url(config.redis_url, prefix=config.velocity_prefix)
        self.publisher = Publisher(dict(config.publish)) if config.publish else None
        self._refreshed = time.monotonic()
        # PySpark's worker daemon runs a full gc.collect() after EVERY task of a reused worker. With
        # the engine, the models, pandas, pyarrow and MLflow loaded that took ~200 ms of CPU per task,
        # in the gap between two micro-batches: per batch, per worker. Objects alive now live as long
        # as the worker: move them out of the collector's reach (later objects are still collected).
        gc.freeze()
        print(  # noqa: T201 - a Python worker has no logging set up; its stderr is the executor's log
            f"[score pid={os.getpid()}] runtime ready in {time.perf_counter() - started:.2f}s at {time.time():.3f}",
            file=sys.stderr,
            flush=True,
        )

    def maybe_refresh(self) -> None:
        if time.monotonic() - self._refreshed >= self.config.refresh_seconds:
            self._refreshed = time.monotonic()
            self.engine.refresh()

    def velocity_features(
        self, tids: list[str], ts_ms: list[int], amounts: list[int], entities: list[list[str]]
    ) -> np.ndarray:
        """``BatchRedisVelocity.features_arrays``, retried while Redis cannot be reached.

        A Redis restart or failover must not fail the batch (a failed task fails the query, and the
        processor with it). The call is idempotent -- recording is keyed by transaction_id and the
        features are read after the whole batch is recorded -- so a call that reached Redis before
        the connection broke gives the same result when repeated. Retried with backoff for at most
        ``redis_retry_seconds``; then the error fails the task as before."""
        assert self.velocity is not None
        give_up = time.monotonic() + self.config.redis_retry_seconds
        pause, attempt = 0.05, 0
        while True:
            try:
                return self.velocity.features_arrays(tids, ts_ms, amounts, entities)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                attempt += 1
                if time.monotonic() + pause > give_up:
                    raise
                if attempt == 1 or attempt % 20 == 0:
                    print(  # noqa: T201 - a Python worker has no logging set up; its stderr is the executor's log
                        f"[score pid={os.getpid()}] velocity store unreachable ({type(exc).__name__}: {exc}); "
                        f"retrying the batch's velocity call (attempt {attempt})",
                        file=sys.stderr,
                        flush=True,
                    )
                time.sleep(pause)
                pause = min(pause * 2, 2.0)


_PROFILE = bool(os.environ.get("PA_STREAM_PROFILE"))
_RUNTIMES: dict[ScoringConfig, Runtime] = {}
_RUNTIMES_LOCK = threading.Lock()


def runtime(config: ScoringConfig) -> Runtime:
    rt = _RUNTIMES.get(config)
    if rt is None:
        with _RUNTIMES_LOCK:
            rt = _RUNTIMES.get(config)
            if rt is None:
                rt = _RUNTIMES[config] = Runtime(config)
    return rt


# ------------------------------------------------------------------------------------------ the job
@dataclass
class DecidedRecords:
    """The output records of one batch, one per input row in the same order, as plain lists (what a
    publishing worker hands to its producer; ``as_struct`` for Spark)."""

    topics: list[str]
    keys: list[bytes]
    values: list[bytes]
    contexts: list[bytes | None]  # the ``pa.context`` header of a decision; None on a dead letter

    def __len__(self) -> int:
        return len(self.values)

    def as_struct(self) -> pa.StructArray:
        """The output struct column (``OUTPUT_ARROW``)."""
        has_header = np.fromiter((c is not None for c in self.contexts), dtype=bool, count=len(self.contexts))
        return pa.StructArray.from_arrays(
            [
                pa.array(self.topics, pa.string()),
                pa.array(self.keys, pa.binary()),
                pa.array(self.values, pa.binary()),
                _headers(has_header, [c for c in self.contexts if c is not None]),
            ],
            fields=list(OUTPUT_ARROW),
        )


def process_arrays(
    config: ScoringConfig, *columns: pa.Array, now: Callable[[], datetime] | None = None
) -> pa.StructArray:
    """Decide one Arrow batch of raw Kafka records (``INPUT_COLUMNS``, in that order); one output
    struct per input row, same order: ``decide_records`` as Spark's output column."""
    return decide_records(config, *columns, now=now).as_struct()


def decide_records(
    config: ScoringConfig,
    key: pa.Array,
    value: pa.Array,
    topic: pa.Array,
    partition: pa.Array,
    offset: pa.Array,
    timestamp: pa.Array,
    *,
    now: Callable[[], datetime] | None = None,
) -> DecidedRecords:
    """Decide one Arrow batch of raw Kafka records; one output record per input row, same order, as
    plain lists (no Arrow output: what a publishing worker hands to its producer)."""
    rt = runtime(config)
    rt.maybe_refresh()
    t0 = time.perf_counter()
    n = len(value)
    at = (now or (lambda: datetime.now(UTC)))()
    # event times later than this worker's clock plus the allowed skew are refused (the contract's rule)
    clock = EventClock(at, config.max_event_skew_seconds)
    # a few rows (real-time mode): pydantic models and the engine's one-row path, no per-batch
    # set-up; more: the columnar validation and the vectorised batch path
    small = n <= SMALL_BATCH_ROWS
    parsed: Parsed = (
        parse_values(value.to_pylist(), table=False, clock=clock) if small else parse_array(value, clock=clock)
    )
    t1 = t2 = t3 = time.perf_counter()
    out_topic: list[str | None] = [None] * n
    out_key: list[bytes | None] = [None] * n
    out_value: list[bytes | None] = [None] * n
    out_context: list[bytes | None] = [None] * n

    partitions = partition.to_pylist()
    offsets = offset.to_pylist()
    if parsed.valid_rows:
        if small:
            dicts = [m.__dict__ for m in parsed.models]
            ts_ms = [event_millis(d["event_timestamp"]) for d in dicts]
            tids = [d["transaction_id"] for d in dicts]
            amounts = [d["amount_minor"] for d in dicts]
            entities = [[d[c] for d in dicts] for c in ENTITY_COLUMNS]
            ctx_cols = [[d[name] for d in dicts] for name in CONTEXT_FIELDS]
        else:
            table = parsed.table
            assert table is not None  # parse_array builds the table of the valid rows
            ts_ms = (table.column("event_timestamp").cast(pa.int64()).to_numpy() // 1000).tolist()
            tids = table.column("transaction_id").to_pylist()
            amounts = table.column("amount_minor").to_pylist()
            entities = [table.column(c).to_pylist() for c in ENTITY_COLUMNS]
            ctx_cols = [table.column(name).to_pylist() for name in CONTEXT_FIELDS]
        t1 = time.perf_counter()
        feats = rt.velocity_features(tids, ts_ms, amounts, entities) if rt.velocity is not None else None
        t2 = time.perf_counter()
        if small:
            zero = dict.fromkeys(VELOCITY_FEATURES, 0)
            vels = (
                [dict(zip(VELOCITY_FEATURES, row, strict=True)) for row in feats.tolist()]
                if feats is not None
                else [zero] * len(dicts)
            )
            # the decision's JSON straight from its fields (``decide_json``: the same bytes as the
            # event's own serialiser), as the scoring API does
            decide_json = rt.engine.decide_json
            # ``dicts``: each model's fields (its ``model_dump()``: flat, frozen, no serialisers)
            decisions = [decide_json(d, v, source="stream")[1] for d, v in zip(dicts, vels, strict=True)]
        else:
            velocity = pd.DataFrame(feats, columns=list(VELOCITY_FEATURES)) if feats is not None else None
            assert table is not None  # (as above)
            decisions = [orjson.dumps(d) for d in rt.engine.decide_batch(table.to_pandas(), velocity, source="stream")]
        t3 = time.perf_counter()
        dumps = orjson.dumps
        for j, (i, decision, ctx) in enumerate(
            zip(parsed.valid_rows, decisions, zip(*ctx_cols, strict=True), strict=True)
        ):
            out_topic[i] = config.decisions_topic
            out_key[i] = tids[j].encode()
            out_value[i] = decision
            context = dict(zip(CONTEXT_FIELDS, ctx, strict=True))
            context["event_timestamp_ms"] = ts_ms[j]
            context["source_partition"] = partitions[i]
            context["source_offset"] = offsets[i]
            out_context[i] = dumps(context)
    if parsed.invalid:
        keys = key.to_pylist()
        topics = topic.to_pylist()
        stamps = timestamp.to_pylist()
        for i, reasons in parsed.invalid.items():
            letter = dead_letter(
                reasons,
                raw=value[i].as_py(),
                topic=topics[i],
                partition=partitions[i],
                offset=offsets[i],
                timestamp=stamps[i],
                key=keys[i],
                now=at,
            )
            out_topic[i] = config.dlq_topic
            out_key[i] = dead_letter_key(topics[i], partitions[i], offsets[i])
            out_value[i] = letter.model_dump_json().encode()
    if _PROFILE:
        t4 = time.perf_counter()
        print(  # noqa: T201 - a Python worker has no logging set up; its stderr is the executor's log
            f"[score pid={os.getpid()}] rows={n} parse={1e3 * (t1 - t0):.1f}ms velocity={1e3 * (t2 - t1):.1f}ms "
            f"decide={1e3 * (t3 - t2):.1f}ms output={1e3 * (t4 - t3):.1f}ms",
            file=sys.stderr,
            flush=True,
        )
    # every row has its record by now (a decision or a dead letter)
    return DecidedRecords(
        typing.cast(list[str], out_topic),
        typing.cast(list[bytes], out_key),
        typing.cast(list[bytes], out_value),
        out_context,
    )


def _headers(has_header: np.ndarray, header_values: list[bytes]) -> pa.ListArray:
    """``[{key: pa.context, value: ...}]`` on decision rows, ``[]`` on dead letters (vectorised)."""
    m = len(header_values)
    structs = pa.StructArray.from_arrays(
        [pa.array([CONTEXT_HEADER] * m, pa.string()), pa.array(header_values, pa.binary())], fields=list(_HEADER_TYPE)
    )
    offsets = np.concatenate([[0], np.cumsum(has_header.astype(np.int32))]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), structs, type=pa.list_(_HEADER_TYPE))


# ------------------------------------------------------------------------------------------ Spark forms
def score_udf(config: ScoringConfig):
    """A scalar Arrow UDF over the Kafka source columns (``INPUT_COLUMNS``) returning the output struct."""

    def score(
        key: pa.Array, value: pa.Array, topic: pa.Array, partition: pa.Array, offset: pa.Array, timestamp: pa.Array
    ) -> pa.Array:
        return process_arrays(config, key, value, topic, partition, offset, timestamp)

    # pyspark's overloads of arrow_udf do not cover a returnType given without functionType
    return arrow_udf(score, returnType=_struct_type()).asNondeterministic()  # type: ignore[call-overload]


def score_publish_udf(config: ScoringConfig):
    """The iterator form of ``score_udf`` that publishes (``config.publish``) instead of returning.

    Each Arrow batch is decided and its records handed to the worker's producer at once. When the
    task's input ends, the UDF flushes the producer (the task, hence the real-time batch, completes
    only after every record of it is acknowledged by the broker) and returns a null struct per row,
    which the query drops: Spark's sink writes nothing."""

    if not config.publish:
        raise ValueError("score_publish_udf needs ScoringConfig.publish (Kafka producer settings)")

    def score(batches):
        publisher = runtime(config).publisher
        assert publisher is not None  # config.publish is set (checked above)
        rows = 0
        for cols in coalesce_batches(batches, config.coalesce_rows):
            out = decide_records(config, *cols)
            publisher.publish(out)
            rows += len(out)
        publisher.flush()
        # one (null) result per input row, all at the end: results yielded per batch would pile up
        # in the worker -> JVM socket, which the JVM does not read before the input ends; once full,
        # the worker would block and stop reading input (seconds of stall)
        yield pa.nulls(rows, OUTPUT_ARROW)

    # pyspark infers the UDF kind (scalar iterator) from these hints; typing's names, as objects
    score.__annotations__ = {
        "batches": typing.Iterator[typing.Tuple[pa.Array, ...]],  # noqa: UP006
        "return": typing.Iterator[pa.Array],
    }
    return arrow_udf(score, returnType=_struct_type()).asNondeterministic()  # type: ignore[call-overload]


class _Failed:
    __slots__ = ("error",)

    def __init__(self, error: BaseException):
        self.error = error


_END = object()


def coalesce_batches(batches: Iterator[tuple[pa.Array, ...]], max_rows: int) -> Iterator[tuple[pa.Array, ...]]:
    """The input batches, each joined with the ones that arrived while the previous was being decided
    (up to ``max_rows`` rows; 0: as they come).

    Real-time mode needs small Arrow batches (Spark hands one to Python only when it is full), but a
    small batch costs about as much to decide as a few hundred rows (one velocity script call, one
    Python call per stage). A thread takes the batches off the socket as they come; the scorer takes
    everything that is waiting. At low load that is one small batch, decided at once; once behind
    (a start-up, a pause) the groups grow, and so does the throughput, until it has caught up."""
    if max_rows <= 0:
        yield from batches
        return
    waiting: queue.SimpleQueue = queue.SimpleQueue()

    def read() -> None:
        try:
            for cols in batches:
                waiting.put(cols)
        except BaseException as exc:  # handed to the scorer's thread, which fails the task
            waiting.put(_Failed(exc))
        waiting.put(_END)

    reader = threading.Thread(target=read, name="score-input", daemon=True)
    reader.start()
    ended = False
    while not ended:
        group: list[tuple[pa.Array, ...]] = []
        rows = 0
        item = waiting.get()
        while True:
            if item is _END:
                ended = True
                break
            if isinstance(item, _Failed):
                raise item.error
            group.append(item)
            rows += len(item[0])
            if rows >= max_rows:
                break
            try:
                item = waiting.get_nowait()
            except queue.Empty:
                break
        if len(group) == 1:
            yield group[0]
        elif group:
            yield tuple(pa.concat_arrays([cols[i] for cols in group]) for i in range(len(group[0])))
    reader.join()


def score_map_in_arrow(config: ScoringConfig) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """A ``mapInArrow`` function over record batches of the Kafka source columns."""

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            cols = [batch.column(name) for name in INPUT_COLUMNS]
            yield pa.RecordBatch.from_struct_array(process_arrays(config, *cols))

    return score


def _struct_type():
    header = T.StructType([T.StructField("key", T.StringType()), T.StructField("value", T.BinaryType())])
    return T.StructType(
        [
            T.StructField("topic", T.StringType()),
            T.StructField("key", T.BinaryType()),
            T.StructField("value", T.BinaryType()),
            T.StructField("headers", T.ArrayType(header)),
        ]
    )
