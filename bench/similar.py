"""Similar past transactions: ``make bench-similar`` (``python -m bench.similar``).

What runs (all real, throwaway, on loopback):

* a week of simulated traffic from the simulator's generator (``TransactionGenerator.table``, vectorised,
  on a simulated clock: every hour of the day, retries as they fall due): 1,000,000 transactions
  encoded by the decision core (``payments_core.similarity``: model features -> vector) in batches and
  added to the usearch HNSW index, saved, then memory-mapped read-only as the scoring API serves it;
  2,000 more drawn at random from the same stream are held out as the lookups;
* lookup latency: ``SimilarIndex.search(vector, k=20)`` (neighbours and mix), one query at a time: wall
  time (``p99_ms``; includes whatever else the machine runs) and the lookup's own CPU time; also with
  the validation and encoding of the request body included;
* ``recall_at_20``: the approximate neighbours against exact ones (NumPy brute force, float64) for 500
  of the held-out queries (retries reported apart: a sparse region of the space);
* ``/score`` p99 at a fixed rate with ``PA_SIMILAR_ENRICH`` on, beside the same run's p99 with it off:
  the scoring API (``python -m services.scoring_api serve``, one worker, heuristic models, Redis and
  a Kafka broker for its published decisions from ``launcher.local``) serving that index, an open-loop
  load generator in its own process (latency from the scheduled send time, so queueing counts),
  rounds alternating off / on.

Writes ``bench/results/similar.json`` with ``p99_ms`` (goal <= 5), ``recall_at_20`` (goal >= 0.95),
``score_p99_ms_enrich_on`` beside ``score_p99_ms_enrich_off``, each with its goal or baseline.

    make bench-similar
    make bench-similar BENCH_ARGS="--transactions 200000 --rounds 1"
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd

from bench.common import drive_load, exit_on_sigterm, print_table, write_results
from launcher import local
from launcher.infra import free_port
from launcher.local import stop_process
from launcher.topics import ensure_topics
from payments_core.contract.events import TransactionRequest
from payments_core.samples import sample_request
from payments_core.similarity import (
    DEFAULT_K,
    METRIC,
    NDIM,
    SimilarIndex,
    outcome_rows,
    vector_of_request,
    vectors_of_frame,
)
from services.simulator.generator import GeneratorConfig, TransactionGenerator

REPO = Path(__file__).resolve().parents[1]
P99_GOAL_MS = 5.0
RECALL_GOAL = 0.95
PLACEHOLDER = "txn_PLACEHOLDER00000"  # 20 characters, like txn_ + 16 hex digits
API_KEY = "bench-similar-key"  # auth is on in every PA_ENV
SIMULATED_START = datetime(2026, 10, 1, tzinfo=UTC)
SIMULATED_SECONDS = 7 * 86400


# ------------------------------------------------------------------------------------------ index
@dataclass
class Built:
    index: SimilarIndex
    indexed_vectors: np.ndarray  # row i = the transaction of key i
    query_vectors: np.ndarray
    query_bodies: list[dict]
    query_is_retry: np.ndarray
    timings: dict[str, float]


def build_index(total: int, queries: int, batch: int, seed: int) -> Built:
    """A week of simulated traffic (simulated clock: every hour of the day, retries as they come):
    ``total`` transactions indexed and ``queries`` others drawn at random from the same stream, held out
    as the lookups (the index never holds a query)."""
    per_second = (total + queries) / SIMULATED_SECONDS
    gen = TransactionGenerator(GeneratorConfig(seed=seed, start=SIMULATED_START, events_per_second=per_second))
    held_out = np.zeros(total + queries, dtype=bool)
    held_out[np.random.default_rng(seed).choice(total + queries, queries, replace=False)] = True
    index = SimilarIndex.empty()
    indexed: list[np.ndarray] = []
    query_frames = []
    encode_s = add_s = 0.0
    done = 0
    while done < total + queries:
        n = min(batch, total + queries - done)
        t = time.perf_counter()
        frame = gen.table(n).to_pandas()
        mask = held_out[done : done + n]
        query_frames.append(frame[mask])
        frame = frame[~mask]
        vectors, outcomes = vectors_of_frame(frame), outcome_rows(frame)
        encode_s += time.perf_counter() - t
        t = time.perf_counter()
        index.add(vectors, outcomes)
        add_s += time.perf_counter() - t
        indexed.append(vectors)
        done += n
        print(f"  generated {done:>9,} ({encode_s:.0f} s generating+encoding, {add_s:.0f} s adding)", flush=True)
    queries_frame = pd.concat(query_frames, ignore_index=True)
    bodies = [
        orjson.loads(TransactionRequest(**{k: row[k] for k in TransactionRequest.model_fields}).model_dump_json())
        for row in queries_frame.to_dict("records")
    ]
    return Built(
        index,
        np.concatenate(indexed),
        vectors_of_frame(queries_frame),
        bodies,
        (queries_frame["attempt_number"] > 1).to_numpy(),
        {"generate_and_encode_s": round(encode_s, 1), "add_s": round(add_s, 1)},
    )


def lookup_latency(index: SimilarIndex, vectors: np.ndarray, bodies: list[dict]) -> dict[str, Any]:
    """Wall time of each lookup (what a caller waits, other processes on the machine included) and
    the CPU time of this thread (the lookup's own cost)."""
    for v in vectors[:200]:  # warm-up: page in the memory-mapped graph
        index.search(v, DEFAULT_K)
    wall, cpu, encoded = [], [], []
    for v in vectors:
        t, c = time.perf_counter(), time.thread_time()
        index.search(v, DEFAULT_K)
        cpu.append((time.thread_time() - c) * 1000)
        wall.append((time.perf_counter() - t) * 1000)
    for body in bodies:
        t = time.perf_counter()
        tx = TransactionRequest.model_validate(body).model_dump()
        index.search(vector_of_request(tx), DEFAULT_K)
        encoded.append((time.perf_counter() - t) * 1000)

    def pct(values: list[float], q: float) -> float:
        return round(float(np.percentile(np.array(values), q)), 3)

    return {
        "queries": len(wall),
        "p50_ms": pct(wall, 50),
        "p99_ms": pct(wall, 99),
        "max_ms": round(max(wall), 3),
        "cpu_p50_ms": pct(cpu, 50),
        "cpu_p99_ms": pct(cpu, 99),
        "with_encoding_p50_ms": pct(encoded, 50),
        "with_encoding_p99_ms": pct(encoded, 99),
    }


def recall(
    index: SimilarIndex, indexed: np.ndarray, vectors: np.ndarray, is_retry: np.ndarray, k: int, chunk: int = 50
) -> dict[str, float]:
    """Share of the exact k nearest (NumPy brute force over the ``indexed`` vectors, float64) the
    index returns; ``with_ties`` also counts a returned neighbour exactly as near as the k-th exact one.
    Retries are reported apart: a sparse region of the space (few retries, each unlike the rest)."""
    data = indexed.astype(np.float64)  # row i is the transaction of key i
    norms = np.einsum("ij,ij->i", data, data)
    by_id, by_distance = [], []
    for start in range(0, len(vectors), chunk):
        q = vectors[start : start + chunk].astype(np.float64)
        d = norms[None, :] - 2.0 * (q @ data.T) + np.einsum("ij,ij->i", q, q)[:, None]
        exact = np.argpartition(d, k, axis=1)[:, :k]
        kth = np.take_along_axis(d, exact, axis=1).max(axis=1)
        for i in range(q.shape[0]):
            rows, _ = index.search_rows(vectors[start + i], k)
            by_id.append(len(set(rows.tolist()) & set(exact[i].tolist())) / k)
            by_distance.append(float(np.mean(d[i, rows] <= kth[i] + 1e-6)))
    hits = np.array(by_id)
    retry = is_retry[: len(hits)]
    return {
        "recall_at_20": round(float(hits.mean()), 4),
        "recall_at_20_with_ties": round(float(np.mean(by_distance)), 4),
        "queries": len(hits),
        "retry_queries": int(retry.sum()),
        "recall_at_20_retry_queries": round(float(hits[retry].mean()), 4) if retry.any() else None,
    }


# ------------------------------------------------------------------------------------------ /score load
def _templates(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [
        orjson.dumps({**sample_request(rng), "transaction_id": PLACEHOLDER}, option=orjson.OPT_UTC_Z) for _ in range(n)
    ]


async def _read_status(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return int(head[9:12])


def open_loop_load(port: int, rate: float, duration: float, connections: int, tag: str) -> dict[str, Any]:
    """Runs in its own process: ``rate`` requests/s of distinct transactions for ``duration`` s; the
    latency of each counts from its scheduled send time."""
    templates = _templates(1000, seed=len(tag))
    request_head = (
        b"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + API_KEY.encode() + b"\r\n"
    )
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = iter(range(10**9))

    def request() -> bytes:
        i = next(counter)
        body = templates[i % len(templates)].replace(PLACEHOLDER.encode(), b"txn_%s%010x" % (tag.encode(), i))
        return request_head + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)

    async def worker(queue: asyncio.Queue) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while (scheduled := await queue.get()) is not None:
            writer.write(request())
            status = await _read_status(reader)
            latencies.append(time.perf_counter() - scheduled)
            statuses[status] = statuses.get(status, 0) + 1
        writer.close()

    asyncio.run(drive_load("open", rate, duration, connections, worker))
    ms = np.array(latencies) * 1000.0
    return {
        "requests": len(ms),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "max_ms": round(float(ms.max()), 3),
        "latencies_ms": ms.tolist(),
    }


def _start_api(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    argv = [sys.executable, "-m", "services.scoring_api", "serve", "--port", str(port), "--workers", "1"]
    proc = subprocess.Popen(
        [*argv, "--no-consumer", "--log-level", "warning"],
        cwd=REPO,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"scoring API exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"scoring API not ready:\n{log.read_text()[-3000:]}")


def score_runs(
    work: Path, index_path: Path, rate: float, duration: float, rounds: int, connections: int
) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    pooled: dict[str, list[float]] = {"off": [], "on": []}
    runs: list[dict[str, Any]] = []
    with (
        local.redis(work) as redis_url,
        local.kafka(work) as kafka_bootstrap,  # the API publishes its decisions: to a throwaway broker
        concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool,
    ):
        ensure_topics(kafka_bootstrap, "bench.")
        for r in range(rounds):
            for flag in ("off", "on"):
                env = {
                    **os.environ,
                    "PYTHONPATH": str(REPO),
                    "PA_ENV": "dev",
                    "PA_API_KEYS": API_KEY,
                    "PA_REDIS_URL": redis_url,
                    "PA_KAFKA_BOOTSTRAP": kafka_bootstrap,
                    "PA_TOPIC_PREFIX": "bench.",
                    "PA_REDIS_PREFIX": f"bench{r}{flag}",
                    "PA_DATA_DIR": str(work),
                    "PA_SIMILAR_INDEX_PATH": str(index_path),
                    "PA_SIMILAR_ENRICH": "true" if flag == "on" else "false",
                }
                env.pop("PA_MLFLOW_TRACKING_URI", None)  # heuristic models: the enrichment's cost stands out
                proc, port = _start_api(env, work / f"api-{r}-{flag}.log")
                # ids: txn_ + a 6-hex-digit tag per run + a 10-digit counter, never reused (no replays)
                tag = f"{r:02x}{flag.encode().hex():0<4}"[:6]
                try:
                    body = orjson.loads(_templates(1, seed=99)[0])
                    check = httpx.post(
                        f"http://127.0.0.1:{port}/score",
                        json={**body, "transaction_id": f"txn_ffff{tag}{0:06x}"},
                        headers={"Authorization": f"Bearer {API_KEY}"},
                    )
                    if check.status_code != 200 or ("similar" in check.json()) != (flag == "on"):
                        raise RuntimeError(f"/score, PA_SIMILAR_ENRICH {flag}: {check.status_code} {check.text[:300]}")
                    pool.submit(open_loop_load, port, rate, 3.0, connections, f"ee{tag[2:]}").result()  # warm-up
                    res = pool.submit(open_loop_load, port, rate, duration, connections, tag).result()
                finally:
                    stop_process(proc)
                pooled[flag] += res.pop("latencies_ms")
                runs.append({"round": r, "enrich": flag, **res})
                print(
                    f"  /score enrich={flag:<3} round {r}: p50={res['p50_ms']} ms p99={res['p99_ms']} ms "
                    f"statuses={res['statuses']}",
                    flush=True,
                )
    p99 = {flag: round(float(np.percentile(np.array(v), 99)), 3) for flag, v in pooled.items()}
    return {"rate_rps": rate, "duration_s": duration, "rounds": rounds, "p99_ms": p99, "runs": runs}


# ------------------------------------------------------------------------------------------ main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--transactions", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=100_000, help="transactions generated and encoded at a time")
    ap.add_argument("--queries", type=int, default=2000, help="held-out lookups timed")
    ap.add_argument("--recall-queries", type=int, default=500)
    ap.add_argument("--rate", type=float, default=200.0, help="/score requests per second (moderate: 2 shared cores)")
    ap.add_argument("--duration", type=float, default=15.0, help="seconds per /score run")
    ap.add_argument("--rounds", type=int, default=2, help="off/on pairs of /score runs")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="pa-bench-similar-") as tmp:
        work = Path(tmp)
        print(f"building the index of {args.transactions:,} simulated transactions ...", flush=True)
        built = build_index(args.transactions, args.queries, args.batch, args.seed)
        path = work / "similar" / "index.usearch"
        built.index.save(path)
        hnsw = {
            "connectivity": built.index.index.connectivity,
            "expansion_add": built.index.index.expansion_add,
            "expansion_search": built.index.index.expansion_search,
        }
        built.index = SimilarIndex.open(path)  # memory-mapped, as the scoring API has it
        served = built.index
        print("timing lookups ...", flush=True)
        latency = lookup_latency(served, built.query_vectors, built.query_bodies)
        print("exact neighbours for recall ...", flush=True)
        n = args.recall_queries
        quality = recall(served, built.indexed_vectors, built.query_vectors[:n], built.query_is_retry[:n], DEFAULT_K)
        built.indexed_vectors = np.zeros((0, NDIM), dtype=np.float32)  # 400 MB back before the servers start
        print(f"/score at {args.rate:g} rps, PA_SIMILAR_ENRICH off and on ...", flush=True)
        score = score_runs(work, path, args.rate, args.duration, args.rounds, args.connections)
        figures = {
            "transactions_indexed": len(served),
            "k": DEFAULT_K,
            "p99_ms": latency["p99_ms"],
            "p99_ms_goal": P99_GOAL_MS,
            "recall_at_20": quality["recall_at_20"],
            "recall_at_20_goal": RECALL_GOAL,
            "score_p99_ms_enrich_on": score["p99_ms"]["on"],
            "score_p99_ms_enrich_off": score["p99_ms"]["off"],
            "score_rate_rps": args.rate,
            "lookup": latency,
            "recall": quality,
            "index": {
                "ndim": NDIM,
                "metric": METRIC,
                "dtype": "f32",
                **hnsw,
                "file_mb": round(path.stat().st_size / 1e6, 1),
                **built.timings,
                "simulated": f"{SIMULATED_SECONDS // 86400} days from {SIMULATED_START:%Y-%m-%d}, seed {args.seed}",
            },
            "score": score,
        }
    path_out = write_results("similar", figures)
    print_table(
        "similar past transactions",
        [
            ("transactions indexed", figures["transactions_indexed"]),
            ("lookup p99 ms (k=20)", figures["p99_ms"]),
            ("  goal", P99_GOAL_MS),
            ("recall@20", figures["recall_at_20"]),
            ("  goal", RECALL_GOAL),
            (f"/score p99 ms enrich on ({args.rate:g} rps)", figures["score_p99_ms_enrich_on"]),
            ("  same run, enrich off", figures["score_p99_ms_enrich_off"]),
        ],
    )
    print(f"results: {path_out}")


if __name__ == "__main__":
    exit_on_sigterm()
    main()
