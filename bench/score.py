"""Scoring API load test on loopback: ``make bench-score`` (``python -m bench.score``).

What runs (all real, throwaway, on free ports):

* Redis (``launcher.local.redis``), Kafka (``launcher.local.kafka``: the API publishes every decision
  to payments.decisions), an MLflow sqlite registry with four small trained models (champion
  aliases), the scoring API as ``python -m services.scoring_api serve --workers K --no-consumer``
  (PA_ENV=dev, as ``make up``; with an API key, rate limit off), and a BARE FastAPI app served by the same uvicorn
  settings whose ``POST /score`` validates the same ``TransactionRequest`` and returns a constant:
  the ceiling of the HTTP stack.
* A load generator in its own process: asyncio + uvloop, keep-alive HTTP/1.1 connections, every
  request a distinct transaction (no idempotent replays).
  - fixed offered loads (open loop): requests are scheduled at ``t0 + i/rate`` and latency is measured
    from the SCHEDULED time, so queueing when the server falls behind counts (no coordinated
    omission);
  - saturation (closed loop): N connections send back to back; rps = completed / duration.

Writes ``bench/results/score.json`` with ``p99_ms_at_1000_rps``, ``max_rps``, ``bare_max_rps`` and
``ratio`` (= max_rps / bare_max_rps), plus every run and a micro-benchmark of the decision core.

Both servers run with ONE worker by default: what ``make up`` runs, and on 2 cores shared with Redis
and the load generator the second worker mostly adds contention (tail latency) for ~25% more
throughput. ``--compare-workers 2`` (default) repeats saturation and the 1,000 rps run with two
workers each and reports them under ``compare_workers``.
Run heavy: ``flock /tmp/pa-heavy.lock python -m bench.score``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import hashlib
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import uvloop
from fastapi import FastAPI
from fastapi.responses import Response

from bench.common import print_table, write_results
from launcher import local
from launcher.infra import free_port
from launcher.local import stop_process
from launcher.topics import ensure_topics
from payments_core.contract.events import TransactionRequest
from payments_core.engine import DecisionEngine
from payments_core.model_features import feature_matrix
from payments_core.models import ModelSource, log_and_register
from payments_core.rules import RuleSource
from payments_core.samples import sample_request, synthetic_labels

REPO = Path(__file__).resolve().parents[1]
PLACEHOLDER = b"txn_PLACEHOLDER00000"[:20]  # 20 bytes, like txn_ + 16 hex


# ------------------------------------------------------------------------------------------ bare app
def bare_app():
    """uvicorn factory: the same request model, no work (ceiling of the HTTP stack)."""
    app = FastAPI()
    body = orjson.dumps({"outcome": "approve"})

    @app.post("/score")
    async def score(tx: TransactionRequest) -> Response:
        return Response(body, media_type="application/json")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


# ------------------------------------------------------------------------------------------ load generator
def _templates(n: int, seed: int = 42) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        tx = sample_request(rng)
        tx["transaction_id"] = PLACEHOLDER.decode()
        out.append(orjson.dumps(tx, option=orjson.OPT_UTC_Z))
    return out


BENCH_KEY = "bench-api-key"


def _request_bytes(template: bytes, txn: bytes, port: int) -> bytes:
    body = template.replace(PLACEHOLDER, txn)
    return (
        b"POST /score HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
        b"X-API-Key: %s\r\nContent-Length: %d\r\n\r\n" % (port, BENCH_KEY.encode(), len(body))
    ) + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
            break
    if length:
        await reader.readexactly(length)
    return status


def _load(
    port: int, mode: str, rate: float, duration: float, connections: int, run_tag: str, templates: int = 2000
) -> dict[str, Any]:
    """Runs in a separate process. mode: 'open' (fixed rate) or 'closed' (saturation)."""
    temps = _templates(templates)
    counter = iter(range(10**9))

    tag = hashlib.sha256(run_tag.encode()).hexdigest()[:6].encode()  # hex, distinct per run

    def next_request() -> bytes:
        i = next(counter)
        txn = b"txn_" + tag + b"%010x" % i
        return _request_bytes(temps[i % len(temps)], txn, port)

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0

    async def connect():
        return await asyncio.open_connection("127.0.0.1", port)

    async def closed_worker(stop_at: float) -> None:
        nonlocal errors
        reader, writer = await connect()
        while time.perf_counter() < stop_at:
            t = time.perf_counter()
            writer.write(next_request())
            try:
                st = await _read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                errors += 1
                writer.close()
                reader, writer = await connect()
                continue
            latencies.append(time.perf_counter() - t)
            statuses[st] = statuses.get(st, 0) + 1
        writer.close()

    async def open_worker(queue: asyncio.Queue) -> None:
        nonlocal errors
        reader, writer = await connect()
        while True:
            scheduled = await queue.get()
            if scheduled is None:
                break
            writer.write(next_request())
            try:
                st = await _read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                errors += 1
                writer.close()
                reader, writer = await connect()
                continue
            latencies.append(time.perf_counter() - scheduled)
            statuses[st] = statuses.get(st, 0) + 1
        writer.close()

    async def main() -> float:
        if mode == "closed":
            t0 = time.perf_counter()
            stop_at = t0 + duration
            await asyncio.gather(*(closed_worker(stop_at) for _ in range(connections)))
            return time.perf_counter() - t0
        queue: asyncio.Queue = asyncio.Queue()
        workers = [asyncio.create_task(open_worker(queue)) for _ in range(connections)]
        await asyncio.sleep(0.2)  # connections up
        total = int(rate * duration)
        t0 = time.perf_counter()
        i = 0
        while i < total:
            now = time.perf_counter()
            while i < total and t0 + i / rate <= now:
                queue.put_nowait(t0 + i / rate)
                i += 1
            await asyncio.sleep(max(0.0, min(0.0005, t0 + i / rate - time.perf_counter())))
        for _ in workers:
            queue.put_nowait(None)
        await asyncio.gather(*workers)
        return time.perf_counter() - t0

    elapsed = uvloop.run(main())
    lat = np.array(latencies) * 1000.0
    ok = statuses.get(200, 0)
    return {
        "mode": mode,
        "offered_rps": rate if mode == "open" else None,
        "connections": connections,
        "duration_s": round(elapsed, 3),
        "requests": len(lat),
        "ok": ok,
        "errors": errors,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "rps": round(ok / elapsed, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 3) if len(lat) else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 3) if len(lat) else None,
        "p999_ms": round(float(np.percentile(lat, 99.9)), 3) if len(lat) else None,
        "max_ms": round(float(lat.max()), 3) if len(lat) else None,
    }


# ------------------------------------------------------------------------------------------ orchestration
def _wait_http(port: int, path: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"server not ready:\n{log.read_text()[-3000:]}")


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )


def _register_models(workdir: Path, kind: str) -> str:
    """Four small models trained on synthetic samples, registered with alias champion."""
    # MLflow and scikit-learn take seconds to import: only the orchestrating process loads them,
    # not the load generator or the servers started from this module
    import mlflow  # noqa: PLC0415
    from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: PLC0415
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415
    from sklearn.pipeline import make_pipeline  # noqa: PLC0415
    from sklearn.preprocessing import StandardScaler  # noqa: PLC0415

    rng = random.Random(7)
    rows, labels = [], []
    for _ in range(4000):
        tx = sample_request(rng)
        rows.append(tx)
        labels.append(synthetic_labels(tx, rng))
    df = pd.DataFrame(rows)
    X = feature_matrix(df)
    approved = np.array([lab["is_approved"] for lab in labels], dtype=int)
    fraud = np.array([lab["is_fraud"] for lab in labels], dtype=int)
    retry = df["is_retry"].to_numpy()

    def make():
        if kind == "trees":
            return HistGradientBoostingClassifier(max_iter=100, max_depth=6, random_state=0)
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment("bench-score")
    with mlflow.start_run(run_name=f"bench-{kind}"):
        for name, est in (
            ("approval", make().fit(X, approved)),
            ("risk", make().fit(X, fraud)),
            ("routing", make().fit(X, approved)),
            ("retry", make().fit(X[retry], approved[retry])),
        ):
            log_and_register(name, est, threshold=0.8, X_sample=X[:3])
    return uri


def micro_benchmark(uri: str | None, n: int = 3000) -> dict[str, float]:
    """Decision core only (no HTTP, no Redis): microseconds per decision, one row and batch."""

    engine = DecisionEngine.from_sources(RuleSource(None), ModelSource(uri) if uri else None)
    rng = random.Random(3)
    txs = [sample_request(rng) for _ in range(n)]
    reqs = [TransactionRequest(**t) for t in txs]
    for r in reqs[:200]:
        engine.decide(r)
    t = time.perf_counter()
    for r in reqs:
        engine.decide(r)
    one = (time.perf_counter() - t) / n * 1e6
    df = pd.DataFrame(txs)
    t = time.perf_counter()
    engine.decide_batch(df)
    batch = (time.perf_counter() - t) / n * 1e6
    fast = {k: m.fast.kind for k, m in engine.bundle.champions.items()}
    return {
        "decide_us": round(one, 1),
        "decide_batch_us_per_row": round(batch, 1),
        "fast_paths": fast,
        "model_versions": engine.model_versions,
    }


def _servers(work: Path, env: dict[str, str], workers: int) -> tuple[subprocess.Popen, int, subprocess.Popen, int]:
    full_port, bare_port = free_port(), free_port()
    py = sys.executable
    full = _start(
        [
            py,
            "-m",
            "services.scoring_api",
            "serve",
            "--port",
            str(full_port),
            "--workers",
            str(workers),
            "--no-consumer",
            "--log-level",
            "warning",
        ],
        env,
        work / f"full-{workers}.log",
    )
    bare = _start(
        [
            py,
            "-m",
            "uvicorn",
            "bench.score:bare_app",
            "--factory",
            "--port",
            str(bare_port),
            "--workers",
            str(workers),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env,
        work / f"bare-{workers}.log",
    )
    return full, full_port, bare, bare_port


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("BENCH_WORKERS", "1")),
        help="uvicorn workers of both servers (1 = what `make up` runs)",
    )
    ap.add_argument(
        "--compare-workers",
        type=int,
        default=2,
        help="also measure saturation (full and bare) with this many workers (0: skip)",
    )
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    ap.add_argument("--rates", default="500,1000,2000")
    ap.add_argument("--connections", type=int, default=64, help="open-loop connections")
    ap.add_argument("--saturation-connections", type=int, default=32)
    ap.add_argument("--models", choices=("linear", "trees"), default="linear")
    args = ap.parse_args()

    rates = [float(r) for r in args.rates.split(",")]
    ctx = multiprocessing.get_context("spawn")
    with (
        tempfile.TemporaryDirectory(prefix="pa-bench-score-") as tmp,
        local.redis(Path(tmp)) as redis_url,
        local.kafka(Path(tmp)) as bootstrap,
    ):
        work = Path(tmp)
        ensure_topics(bootstrap, "")
        print("training and registering models ...", flush=True)
        uri = _register_models(work, args.models)
        micro = {"heuristic": micro_benchmark(None), args.models: micro_benchmark(uri)}
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "PA_ENV": "dev",
            "PA_REDIS_URL": redis_url,
            "PA_MLFLOW_TRACKING_URI": uri,
            "PA_DATA_DIR": str(work),
            "PA_REDIS_PREFIX": "bench",
            "PA_KAFKA_BOOTSTRAP": bootstrap,
            "PA_API_KEYS": BENCH_KEY,
            "PA_RATE_LIMIT": "off",
        }
        runs: dict[str, Any] = {}
        compare: dict[str, Any] = {}
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:

            def run(
                name: str, port: int, mode: str, rate: float, conns: int, duration: float, into: dict[str, Any] = runs
            ) -> dict:
                res = pool.submit(
                    _load, port, mode, rate, duration, conns, f"{len(runs) + len(compare):02d}{name[:4]}"
                ).result()
                into[name] = res
                print(
                    f"{name:<22} rps={res['rps']:>8} p50={res['p50_ms']}ms p99={res['p99_ms']}ms "
                    f"p99.9={res['p999_ms']}ms statuses={res['statuses']} errors={res['errors']}",
                    flush=True,
                )
                return res

            full, full_port, bare, bare_port = _servers(work, env, args.workers)
            try:
                _wait_http(full_port, "/ready", full, work / f"full-{args.workers}.log")
                _wait_http(bare_port, "/health", bare, work / f"bare-{args.workers}.log")
                run("warmup_full", full_port, "open", 500, 16, 3)
                run("warmup_bare", bare_port, "open", 500, 16, 3)
                for rate in rates:
                    run(f"full_open_{int(rate)}", full_port, "open", rate, args.connections, args.duration)
                run("full_saturation", full_port, "closed", 0, args.saturation_connections, args.duration)
                run("bare_saturation", bare_port, "closed", 0, args.saturation_connections, args.duration)
                for rate in rates:
                    run(f"bare_open_{int(rate)}", bare_port, "open", rate, args.connections, args.duration)
            finally:
                stop_process(full)
                stop_process(bare)
            if args.compare_workers and args.compare_workers != args.workers:
                k = args.compare_workers
                full, full_port, bare, bare_port = _servers(work, env, k)
                try:
                    _wait_http(full_port, "/ready", full, work / f"full-{k}.log")
                    _wait_http(bare_port, "/health", bare, work / f"bare-{k}.log")
                    run(f"warmup_full_{k}w", full_port, "open", 500, 16, 3, into=compare)
                    run(
                        f"full_saturation_{k}w",
                        full_port,
                        "closed",
                        0,
                        args.saturation_connections,
                        args.duration,
                        into=compare,
                    )
                    run(
                        f"bare_saturation_{k}w",
                        bare_port,
                        "closed",
                        0,
                        args.saturation_connections,
                        args.duration,
                        into=compare,
                    )
                    run(f"full_open_1000_{k}w", full_port, "open", 1000, args.connections, args.duration, into=compare)
                finally:
                    stop_process(full)
                    stop_process(bare)
        server_errors = any("Traceback" in log.read_text() for log in work.glob("full-*.log"))

    max_rps = runs["full_saturation"]["rps"]
    bare_max = runs["bare_saturation"]["rps"]
    figures = {
        "p99_ms_at_1000_rps": runs.get("full_open_1000", {}).get("p99_ms"),
        "max_rps": max_rps,
        "bare_max_rps": bare_max,
        "ratio": round(max_rps / bare_max, 3) if bare_max else None,
        "workers": args.workers,
        "models": args.models,
        "server_tracebacks": server_errors,
        "goals": {},
        "micro_benchmark": micro,
        "runs": runs,
    }
    if compare:
        k = args.compare_workers
        c_full, c_bare = compare[f"full_saturation_{k}w"]["rps"], compare[f"bare_saturation_{k}w"]["rps"]
        figures["compare_workers"] = {
            "workers": k,
            "max_rps": c_full,
            "bare_max_rps": c_bare,
            "ratio": round(c_full / c_bare, 3) if c_bare else None,
            "p99_ms_at_1000_rps": compare[f"full_open_1000_{k}w"]["p99_ms"],
            "runs": compare,
        }
    p99 = figures["p99_ms_at_1000_rps"]
    figures["goals"] = {
        "p99_ms_at_1000_rps<=5": p99 is not None and p99 <= 5.0,
        "max_rps>=2000": max_rps >= 2000,
        "ratio>=0.7": (figures["ratio"] or 0) >= 0.7,
    }
    path = write_results("score", figures)
    rows = [
        (f"p99 ms at 1000 rps ({args.workers} worker(s))", p99 or float("nan")),
        ("max rps (/score, saturation)", max_rps),
        ("bare FastAPI max rps", bare_max),
        ("ratio", figures["ratio"] or float("nan")),
    ]
    if compare:
        cw = figures["compare_workers"]
        rows += [
            (f"{cw['workers']} workers: max rps / bare", f"{cw['max_rps']:,.0f} / {cw['bare_max_rps']:,.0f}"),
            (f"{cw['workers']} workers: ratio", cw["ratio"] or float("nan")),
            (f"{cw['workers']} workers: p99 ms at 1000 rps", cw["p99_ms_at_1000_rps"]),
        ]
    rows += [
        ("decide() us, heuristic", micro["heuristic"]["decide_us"]),
        (f"decide() us, {args.models}", micro[args.models]["decide_us"]),
    ]
    print_table("Scoring API (loopback, 2 cores shared with the load generator and Redis)", rows)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
