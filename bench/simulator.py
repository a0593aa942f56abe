"""Simulator throughput: events/s and MB/s from ONE process into a local Kafka broker.

Starts a throwaway broker on loopback (launcher.local.kafka), then measures, alternating, in the
same run:

* ceiling: a bare ``produce`` loop of pre-serialised bytes (real simulator events, generated up
  front) with the same producer settings, ending with a full flush;
* simulator: the real run loop (generate -> encode JSON -> produce, rate = max), ending with a
  full flush, exactly what ``python -m services.simulator run --rate max`` does.

Both count only delivered events (the final flush is inside the timing). It also times the stages
without Kafka (generate, encode, produce-enqueue) to show where the time goes. Writes
bench/results/simulator.json with events_per_s, ceiling_events_per_s and ratio.

    make bench-simulator                      # default 1,000,000 events per measurement
    make bench-simulator BENCH_ARGS="--events 300000 --rounds 1"
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import exit_on_sigterm, print_table, write_results
from launcher import local
from launcher.topics import ensure_topics
from payments_core.contract.topics import TRANSACTIONS, TopicSpec, prefixed
from services.simulator.generator import GeneratorConfig, TransactionGenerator
from services.simulator.producer import EventProducer
from services.simulator.runner import default_batch_size, run

CEILING = TopicSpec("bench.ceiling", 6, "card_token_id", "bare producer ceiling")
POOL = 100_000  # distinct pre-serialised events cycled by the ceiling loop


def ceiling(
    bootstrap: str, topic: str, values: list[bytes], keys: list[bytes], total: int, compression: str
) -> tuple[float, float]:
    producer = EventProducer(bootstrap, topic, compression=compression)
    p = producer.client  # the bare confluent-kafka producer: no per-batch bookkeeping at all
    produce, poll = p.produce, p.poll
    pool = len(values)
    nbytes = 0
    t0 = time.perf_counter()
    sent = 0
    while sent < total:
        chunk = min(pool, total - sent)
        i = 0
        while i < chunk:
            try:
                for i in range(i, chunk):  # noqa: B020 - i is the retry point on BufferError
                    produce(topic, values[i], keys[i])
                i = chunk
            except BufferError:
                poll(0.05)
        poll(0)
        nbytes += sum(map(len, values[:chunk]))
        sent += chunk
    left = p.flush(120)
    seconds = time.perf_counter() - t0
    if left or producer.stats.failed:
        raise RuntimeError(f"ceiling run lost events: {left} undelivered, {producer.stats.failed} failed")
    return total / seconds, nbytes / seconds / 1e6


def simulator(bootstrap: str, topic: str, total: int, compression: str, batch_size: int) -> tuple[float, float, dict]:
    gen = TransactionGenerator(GeneratorConfig(seed=42))
    producer = EventProducer(bootstrap, topic, compression=compression)
    gen.batch(1_000)  # warm-up (lookup tables, first allocations)
    report = run(gen, producer, count=total, batch_size=batch_size, progress=None, flush_timeout=120)
    if report.lost or report.delivered != total:
        raise RuntimeError(f"simulator run lost events: {report.summary()}")
    return report.events_per_s, report.bytes / report.seconds / 1e6, {"approval_rate": report.approval_rate}


def stages(total: int, batch_size: int, bootstrap: str, topic: str, compression: str) -> dict[str, float]:
    """Microseconds per event of each stage, measured separately (no overlap)."""
    gen = TransactionGenerator(GeneratorConfig(seed=7))
    gen.batch(1_000)
    t_gen = t_enc = t_keys = t_prod = 0.0
    producer = EventProducer(bootstrap, topic, compression=compression)
    n = 0
    while n < total:
        t0 = time.perf_counter()
        batch = gen.batch(batch_size)
        t1 = time.perf_counter()
        values = batch.json_values()
        t2 = time.perf_counter()
        keys = batch.keys()
        t3 = time.perf_counter()
        producer.send(values, keys)
        t4 = time.perf_counter()
        t_gen, t_enc, t_keys, t_prod = t_gen + t1 - t0, t_enc + t2 - t1, t_keys + t3 - t2, t_prod + t4 - t3
        n += batch_size
    producer.flush(120)
    return {
        "generate_us": t_gen / n * 1e6,
        "encode_json_us": t_enc / n * 1e6,
        "keys_us": t_keys / n * 1e6,
        "produce_enqueue_us": t_prod / n * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="events per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="alternating ceiling/simulator rounds (best kept)")
    parser.add_argument("--compression", default="lz4", choices=["lz4", "zstd", "snappy", "none"])
    parser.add_argument("--batch-size", type=int, default=default_batch_size(None))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="pa-bench-sim-") as tmp, local.kafka(Path(tmp)) as bootstrap:
        prefix = f"bench{int(time.time())}."
        ensure_topics(bootstrap, prefix, (TRANSACTIONS, CEILING))
        sim_topic, ceil_topic = prefixed(TRANSACTIONS, prefix), prefixed(CEILING, prefix)
        pool_gen = TransactionGenerator(GeneratorConfig(seed=1, start=datetime(2026, 3, 2, tzinfo=UTC)))
        values, keys = [], []
        while len(values) < POOL:
            b = pool_gen.batch(50_000)
            values += b.json_values()
            keys += b.keys()
        # warm the broker (JIT, page cache, log segments) so the first measurement is not penalised
        ceiling(bootstrap, ceil_topic, values, keys, min(args.events, 300_000), args.compression)
        ceil_rates, ceil_mb, sim_rates, sim_mb = [], [], [], []
        extra: dict = {}
        for r in range(args.rounds):
            c_rate, c_mb = ceiling(bootstrap, ceil_topic, values, keys, args.events, args.compression)
            s_rate, s_mb, extra = simulator(bootstrap, sim_topic, args.events, args.compression, args.batch_size)
            print(f"round {r + 1}: ceiling {c_rate:,.0f} ev/s  simulator {s_rate:,.0f} ev/s", flush=True)
            ceil_rates.append(c_rate)
            ceil_mb.append(c_mb)
            sim_rates.append(s_rate)
            sim_mb.append(s_mb)
        stage = stages(min(args.events, 400_000), args.batch_size, bootstrap, sim_topic, args.compression)

    best_sim, best_ceil = max(sim_rates), max(ceil_rates)
    figures = {
        "events_per_s": round(best_sim),
        "mb_per_s": round(max(sim_mb), 2),
        "ceiling_events_per_s": round(best_ceil),
        "ceiling_mb_per_s": round(max(ceil_mb), 2),
        "ratio": round(best_sim / best_ceil, 3),
        "events_per_measurement": args.events,
        "rounds": args.rounds,
        "all_events_per_s": [round(x) for x in sim_rates],
        "all_ceiling_events_per_s": [round(x) for x in ceil_rates],
        "median_events_per_s": round(statistics.median(sim_rates)),
        "avg_event_bytes": round(sum(map(len, values)) / len(values), 1),
        "batch_size": args.batch_size,
        "compression": args.compression,
        "producer": "confluent-kafka, enable.idempotence, acks=all, linger.ms=20, batch.size=1MB",
        "stage_us_per_event": {k: round(v, 3) for k, v in stage.items()},
        "goal_events_per_s": 100_000,
        **extra,
    }
    print_table(
        "Simulator -> Kafka, one process (delivered, incl. final flush)",
        [
            ("simulator events/s", figures["events_per_s"]),
            ("simulator MB/s", figures["mb_per_s"]),
            ("ceiling events/s (bare produce loop)", figures["ceiling_events_per_s"]),
            ("ceiling MB/s", figures["ceiling_mb_per_s"]),
            ("ratio simulator/ceiling", figures["ratio"]),
            ("avg event bytes", figures["avg_event_bytes"]),
            *[(f"stage {k}", v) for k, v in figures["stage_us_per_event"].items()],
        ],
    )
    path = write_results("simulator", figures)
    print(f"wrote {path}")


if __name__ == "__main__":
    exit_on_sigterm()
    main()
