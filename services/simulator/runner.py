"""The run loop (generate -> produce, rate control, scenario switches, progress, clean shutdown) and
backfill (N days of history to Kafka, Parquet or JSON Lines)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from services.simulator.control import ControlListener
from services.simulator.encode import ARROW_SCHEMA, EventBatch
from services.simulator.generator import GeneratorConfig, TransactionGenerator
from services.simulator.producer import EventProducer

Printer = Callable[[str], None]


@dataclass
class RunReport:
    events: int = 0
    enqueued: int = 0
    delivered: int = 0
    failed: int = 0
    undelivered: int = 0  # still in the local queue when the final flush timed out
    bytes: int = 0
    seconds: float = 0.0
    approval_rate: float = 0.0
    scenario_switches: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    stopped_by_signal: bool = False

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    @property
    def lost(self) -> int:
        return self.failed + self.undelivered

    def summary(self) -> str:
        return (
            f"events={self.events:,} delivered={self.delivered:,} failed={self.failed:,} "
            f"undelivered={self.undelivered:,} in {self.seconds:.1f}s ({self.events_per_s:,.0f} ev/s, "
            f"{self.bytes / self.seconds / 1e6 if self.seconds else 0:.1f} MB/s) "
            f"approval={self.approval_rate:.1%}" + (f" errors={self.errors}" if self.errors else "")
        )


def default_batch_size(rate: float | None) -> int:
    """About ten batches a second at modest rates; large batches when running flat out."""
    if not rate:
        return 20_000
    return int(min(20_000, max(1, round(rate / 10))))


def run(
    generator: TransactionGenerator,
    producer: EventProducer,
    *,
    rate: float | None = None,
    count: int | None = None,
    duration: float | None = None,
    batch_size: int | None = None,
    control: ControlListener | None = None,
    stop: threading.Event | None = None,
    progress: Printer | None = print,
    progress_interval: float = 10.0,
    flush_timeout: float = 60.0,
) -> RunReport:
    """Produce until ``count`` events, ``duration`` seconds or ``stop`` is set, then flush.

    ``rate`` is events per second (None or 0 = as fast as possible). The batch size is fixed for a
    run, so with a simulated clock the event sequence does not depend on timing.
    """
    if rate is not None and rate < 0:
        raise ValueError("rate must be >= 0")
    if count is not None and count < 0:
        raise ValueError("count must be >= 0")
    if duration is not None and duration < 0:
        raise ValueError("duration must be >= 0")
    stop = stop or threading.Event()
    size = batch_size or default_batch_size(rate)
    report = RunReport()
    approved = 0
    t0 = time.monotonic()
    last_print, last_events, last_approved = t0, 0, 0
    latency_sample: list[np.ndarray] = []  # per-interval sample of processing_time_ms
    fraud = last_fraud = 0
    try:
        while not stop.is_set():
            if count is not None and report.events >= count:
                break
            if duration is not None and time.monotonic() - t0 >= duration:
                break
            if control is not None:
                switch = control.poll()
                if switch is not None:
                    try:
                        generator.set_scenario(switch.scenario, switch.issuer)
                        report.scenario_switches += 1
                        if progress:
                            target = f" ({generator.scenario_issuer})" if generator.scenario_issuer else ""
                            progress(f"scenario -> {switch.scenario}{target}")
                    except ValueError as exc:
                        if progress:
                            progress(f"ignoring scenario switch: {exc}")
            n = size if count is None else min(size, count - report.events)
            batch = generator.batch(n)
            sent = producer.send(batch.json_values(), batch.keys(), stop)
            report.events += sent
            approved += int(np.count_nonzero(batch.columns["approved"][:sent]))
            if progress:
                fraud += int(np.count_nonzero(batch.columns["is_fraud"][:sent]))
                latency_sample.append(batch.columns["processing_ms"][:2_000])
            now = time.monotonic()
            if progress and now - last_print >= progress_interval:
                interval = now - last_print
                done = report.events - last_events
                appr = (approved - last_approved) / done if done else 0.0
                fraud_share = (fraud - last_fraud) / done if done else 0.0
                p95 = float(np.percentile(np.concatenate(latency_sample), 95)) if latency_sample else 0.0
                st = producer.stats
                progress(
                    f"{report.events:>12,} events  {done / interval:>9,.0f} ev/s  "
                    f"{st.bytes / (now - t0) / 1e6:6.1f} MB/s  approval {appr:6.1%}  fraud {fraud_share:5.2%}  "
                    f"p95 {p95:6,.0f} ms  failed {st.failed:,}  in-flight {producer.in_flight:,}  "
                    f"scenario {generator.scenario}  retries pending {generator.pending_retries:,}"
                )
                last_print, last_events, last_approved, last_fraud = now, report.events, approved, fraud
                latency_sample = []
            if rate:
                ahead = t0 + report.events / rate - time.monotonic()
                if ahead > 0:
                    stop.wait(ahead)
    finally:
        report.stopped_by_signal = stop.is_set()
        report.undelivered = producer.flush(flush_timeout)
        report.seconds = time.monotonic() - t0
        st = producer.stats
        report.enqueued, report.failed, report.bytes = st.enqueued, st.failed, st.bytes
        report.delivered = st.delivered(report.undelivered)
        report.errors = dict(st.errors)
        report.approval_rate = approved / report.events if report.events else 0.0
    return report


# ---------------------------------------------------------------------------------------- backfill
@dataclass(frozen=True)
class Incident:
    start: datetime
    end: datetime
    scenario: str
    issuer: str | None = None


def incident_schedule(seed: int, start: datetime, days: float) -> list[Incident]:
    """A reproducible sprinkle of incidents in history: roughly every other day one of the
    non-normal scenarios for 20-90 minutes, so dashboards and alerts have something to show."""
    rng = np.random.default_rng([seed, 0x494E43])
    out = []
    kinds = ("issuer_outage", "fraud_ring", "bin_attack", "latency_spike")
    issuers = ("iss_br_01", "iss_br_02", "iss_br_04", "iss_br_05", "iss_mx_01")
    for day in range(int(np.ceil(days))):
        if rng.random() < 0.5:
            begin = start + timedelta(days=day, minutes=float(rng.uniform(8 * 60, 22 * 60)))
            length = timedelta(minutes=float(rng.uniform(20, 90)))
            kind = str(rng.choice(kinds))
            issuer = str(rng.choice(issuers)) if kind == "issuer_outage" else None
            if begin < start + timedelta(days=days):
                out.append(Incident(begin, begin + length, kind, issuer))
    return out


@dataclass
class BackfillReport:
    events: int
    start: datetime
    end: datetime
    seconds: float
    target: str
    incidents: list[Incident]
    approval_rate: float
    delivery: RunReport | None = None


def backfill(
    days: float,
    start: datetime | None = None,
    *,
    events_per_day: int = 100_000,
    seed: int = 42,
    path: str | Path | None = None,
    producer: EventProducer | None = None,
    scenario: str = "normal",
    incidents: bool = True,
    n_merchants: int = 3_000,
    n_cardholders: int = 200_000,
    stop: threading.Event | None = None,
    progress: Printer | None = None,
) -> BackfillReport:
    """Generate ``days`` of history from ``start`` (default: ``days`` before now) on the simulated
    clock, to a Parquet / JSON Lines file (``path``) or to Kafka (``producer``; the Kafka message
    timestamp is the produce time, so topic retention does not delete old history at once).
    ``events_per_day`` is the mean rate of first attempts; retries come on top (~4%)."""
    if days <= 0:
        raise ValueError("days must be positive")
    if events_per_day <= 0:
        raise ValueError("events_per_day must be positive")
    if (path is None) == (producer is None):
        raise ValueError("give exactly one of path (Parquet/JSON Lines file) or producer (Kafka)")
    if start is None:  # history that ends now, so live traffic continues it
        start = (datetime.now(UTC) - timedelta(days=days)).replace(second=0, microsecond=0)
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware (UTC)")
    end = start + timedelta(days=days)
    gen = TransactionGenerator(
        GeneratorConfig(
            seed=seed,
            start=start,
            events_per_second=events_per_day / 86_400.0,
            scenario=scenario,
            n_merchants=n_merchants,
            n_cardholders=n_cardholders,
        )
    )
    schedule = incident_schedule(seed, start, days) if incidents else []
    size = int(min(50_000, max(500, events_per_day / 288)))  # ~5 simulated minutes per batch
    writer = _Writer(Path(path)) if path is not None else None
    stop = stop or threading.Event()
    approved = 0
    t0 = time.monotonic()
    end_us = int(end.timestamp() * 1e6)
    last_print = t0
    current: tuple[str, str | None] = (scenario, None)
    try:
        while not stop.is_set() and gen.clock < end:
            now = gen.clock
            active = next((i for i in schedule if i.start <= now < i.end), None)
            want = (active.scenario, active.issuer) if active else (scenario, None)
            if want != current:
                gen.set_scenario(*want)
                current = want
            batch = gen.batch(size)
            keep = batch.columns["ts"] < end_us
            if not keep.all():
                batch = EventBatch({k: v[keep] for k, v in batch.columns.items()}, gen.population)
            if len(batch) == 0:
                break
            approved += int(np.count_nonzero(batch.columns["approved"]))
            if writer is not None:
                writer.write(batch)
            elif producer is not None:
                producer.send(batch.json_values(), batch.keys(), stop)
            if progress and time.monotonic() - last_print >= 5:
                last_print = time.monotonic()
                progress(f"backfill at {gen.clock:%Y-%m-%d %H:%M} ({gen.stats.events:,} events)")
    finally:
        if writer is not None:
            writer.close()
    events = writer.rows if writer is not None else producer.stats.enqueued if producer is not None else 0
    delivery = None
    if producer is not None:
        undelivered = producer.flush(120)
        st = producer.stats
        delivery = RunReport(
            events=st.enqueued,
            enqueued=st.enqueued,
            delivered=st.delivered(undelivered),
            failed=st.failed,
            undelivered=undelivered,
            bytes=st.bytes,
            seconds=time.monotonic() - t0,
            errors=dict(st.errors),
        )
    return BackfillReport(
        events=events,
        start=start,
        end=end,
        seconds=time.monotonic() - t0,
        target=str(path) if path is not None else producer.topic if producer is not None else "",
        incidents=schedule,
        approval_rate=approved / events if events else 0.0,
        delivery=delivery,
    )


class _Writer:
    """Parquet (``.parquet``) or JSON Lines (``.jsonl``/``.json``) output, batch by batch."""

    def __init__(self, path: Path):
        suffix = path.suffix.lower()
        if suffix not in (".parquet", ".jsonl", ".json"):
            raise ValueError(f"backfill output must end in .parquet, .jsonl or .json, not {path.name!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.rows = 0
        self._parquet: pq.ParquetWriter | None = None
        self._file: BinaryIO | None = None
        self._pending: list = []
        self._pending_rows = 0
        if suffix == ".parquet":
            self._parquet = pq.ParquetWriter(path, ARROW_SCHEMA, compression="zstd")
        else:
            self._file = path.open("wb")

    ROW_GROUP = 250_000

    def write(self, batch) -> None:
        if self._parquet is not None:
            self._pending.append(batch.to_arrow())
            self._pending_rows += len(batch)
            if self._pending_rows >= self.ROW_GROUP:
                self._flush_row_group()
        elif self._file is not None:
            self._file.write(batch.json_lines())
        self.rows += len(batch)

    def _flush_row_group(self) -> None:
        if self._pending and self._parquet is not None:
            self._parquet.write_table(pa.concat_tables(self._pending), row_group_size=self.ROW_GROUP)
        self._pending, self._pending_rows = [], 0

    def close(self) -> None:
        if self._parquet is not None:
            self._flush_row_group()
            self._parquet.close()
        if self._file is not None:
            self._file.close()
