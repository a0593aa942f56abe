"""Scoring API load test on loopback: ``make bench-score`` (``python -m bench.score``).

What runs (all real, throwaway, on free ports):

* Redis (``launcher.local.redis``), Kafka (``launcher.local.kafka``: the API publishes every decision
  to payments.decisions), an MLflow sqlite registry with four small trained models (champion
  aliases), and three servers, each by uvicorn with the same settings (uvloop, httptools, no access
  log, one worker):
  - the scoring API as ``python -m services.scoring_api serve --workers K --no-consumer`` (PA_ENV=dev,
    as ``make up``; with an API key, rate limit off);
  - the SAME-I/O ceiling (``same_io_app``): ``POST /score`` validates the same ``TransactionRequest``
    and makes the same Redis call the API makes per decision (``services.scoring_api.app.lookup``:
    the lookup + velocity script, same keys, same client and auto-pipeline), then returns a constant.
    What every design of the endpoint needs; the ratio to it is the project's own overhead;
  - the BARE ceiling (``bare_app``): validates the same request and returns a constant (the HTTP
    stack alone).
* A load generator in its own process: asyncio + uvloop, keep-alive HTTP/1.1 connections, every
  request a distinct transaction (no idempotent replays), its card and merchant drawn from the
  simulator's population (200,000 cards, 3,000 merchants: ``bench.common.with_parties``).
  - fixed offered loads (open loop): requests are scheduled at ``t0 + i/rate`` and latency is measured
    from the SCHEDULED time, so queueing when the server falls behind counts (no coordinated
    omission);
  - saturation (closed loop): N connections send back to back; rps = completed / duration.

Writes ``bench/results/score.json``: ``max_rps`` (/score saturation), ``ceiling_same_io_rps``,
``ratio_to_same_io`` (= max_rps / ceiling_same_io_rps), ``p99_ms_at_30pct_of_saturation`` (open loop
at ``--fraction`` 0.3 of THIS run's /score saturation; the same-I/O ceiling at the same rate beside
it), ``bare_max_rps`` and ``ratio`` (= max_rps / bare_max_rps), ``p99_ms_at_1000_rps`` (a fixed load,
kept for comparison between runs), ``cpu_us_per_request_at_saturation`` (the machine's CPU per answered
request by part: server process tree, Kafka broker, Redis, load generator; from ``/proc``), every run,
and a micro-benchmark of the decision core.

``--compare-workers 2`` (default) repeats the three saturations and /score at 1,000 rps with two
workers each and reports them under ``compare_workers``.
Run heavy: ``flock /tmp/pa-heavy.lock python -m bench.score``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import hashlib
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import uvloop
from fastapi import FastAPI, Request
from fastapi.responses import Response

from bench.common import drive_load, exit_on_sigterm, leave_parties_open, print_table, with_parties, write_results
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
    """uvicorn factory: validates the same request model the same way (``read_transaction``), no work
    (ceiling of the HTTP stack)."""
    from services.scoring_api.app import NO_OTEL_BRIDGE, read_transaction, tune_gc  # noqa: PLC0415

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tune_gc()  # the API's own garbage-collector settings
        yield

    app = FastAPI(lifespan=lifespan, telemetry=NO_OTEL_BRIDGE)  # as the API
    body = orjson.dumps({"outcome": "approve"})

    @app.post("/score")
    async def score(request: Request) -> Response:
        await read_transaction(request)
        return Response(body, media_type="application/json")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def same_io_app():
    """uvicorn factory: the SAME-I/O ceiling. Its ``POST /score`` validates the same
    ``TransactionRequest`` the same way (``read_transaction``) and makes the same Redis call ``/score``
    makes for every request (the
    decision lookup + velocity script, ``services.scoring_api.app.lookup``: same script, same keys and
    arguments, same client, auto-pipeline and budget), then returns a constant. No API key, decision
    core, decision write, outbox or Kafka: what every design of the endpoint needs, and nothing else.
    Settings (Redis URL and key prefix) from the same PA_* variables as the API."""
    # imported here: the load generator process never needs the API's modules
    from services.scoring_api.app import (  # noqa: PLC0415
        NO_OTEL_BRIDGE,
        connect_redis,
        lookup,
        read_transaction,
        tune_gc,
    )
    from services.scoring_api.settings import Settings  # noqa: PLC0415

    settings = Settings()
    body = orjson.dumps({"outcome": "approve"})

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = connect_redis(app.state, settings)
        tune_gc()  # the API's own garbage-collector settings
        try:
            yield
        finally:
            await client.aclose()

    app = FastAPI(lifespan=lifespan, telemetry=NO_OTEL_BRIDGE)  # as the API
    app.state.redis_budget = settings.redis_timeout_ms / 1000

    @app.post("/score")
    async def score(request: Request) -> Response:
        path = request.app.state.redis_path  # the API's own Redis handles, read once like /score
        tx = await read_transaction(request)
        await lookup(path, tx.field_values(), time.perf_counter() + path.budget)
        return Response(body, media_type="application/json")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


# ------------------------------------------------------------------------------------------ load generator
def _templates(n: int, seed: int = 42) -> list[bytes]:
    """Request bodies with the transaction id, the card and the merchant left open (filled per request:
    ``bench.common.with_parties``)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        tx = leave_parties_open(sample_request(rng))
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

    parties = random.Random(run_tag)

    def next_request() -> bytes:
        i = next(counter)
        txn = b"txn_" + tag + b"%010x" % i
        return _request_bytes(with_parties(temps[i % len(temps)], parties), txn, port)

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

    cpu0 = time.process_time()
    elapsed = uvloop.run(drive_load(mode, rate, duration, connections, open_worker, closed_worker))
    client_cpu_s = time.process_time() - cpu0
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
        "load_generator_cpu_s": round(client_cpu_s, 3),
    }


# ------------------------------------------------------------------------------------------ orchestration
def wait_http(port: int, path: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
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


def register_models(workdir: Path, kind: str) -> str:
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


def micro_benchmark(uri: str | None, n: int = 3000) -> dict[str, Any]:
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
    dumped = [r.model_dump() for r in reqs]
    t = time.perf_counter()
    for d in dumped:  # what POST /score calls: a validated request's dump in, the decision's JSON out
        engine.decide_json(d)
    api = (time.perf_counter() - t) / n * 1e6
    df = pd.DataFrame(txs)
    t = time.perf_counter()
    engine.decide_batch(df)
    batch = (time.perf_counter() - t) / n * 1e6
    fast = {k: m.fast.kind for k, m in engine.bundle.champions.items()}
    return {
        "decide_us": round(one, 1),
        "decide_json_us": round(api, 1),
        "decide_batch_us_per_row": round(batch, 1),
        "fast_paths": fast,
        "model_versions": engine.model_versions,
    }


UVICORN = ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]
API_LOG = ["--log-level", "warning"]
SERVERS = ("full", "same_io", "bare")
READY_PATH = {"full": "/ready", "same_io": "/health", "bare": "/health"}


def _servers(work: Path, env: dict[str, str], workers: int) -> dict[str, tuple[subprocess.Popen, int, Path]]:
    """The scoring API and the two ceilings, each served by uvicorn with the same settings (``serve``
    runs uvicorn with uvloop, httptools and no access log): name -> (process, port, log)."""
    py = sys.executable
    argv = {
        "full": [py, "-m", "services.scoring_api", "serve", "--workers", str(workers), "--no-consumer", *API_LOG],
        "same_io": [py, "-m", "uvicorn", "bench.score:same_io_app", "--factory", "--workers", str(workers), *UVICORN],
        "bare": [py, "-m", "uvicorn", "bench.score:bare_app", "--factory", "--workers", str(workers), *UVICORN],
    }
    out = {}
    for name in SERVERS:
        port = free_port()
        log = work / f"{name}-{workers}.log"
        out[name] = (_start([*argv[name], "--port", str(port)], env, log), port, log)
    return out


_TICK = os.sysconf("SC_CLK_TCK")


def _proc_table() -> dict[int, tuple[int, bytes, float]]:
    """pid -> (parent pid, command line, CPU seconds so far: user + system, all threads)."""
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            cmdline = Path(entry.path, "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(entry.name)] = (int(fields[1]), cmdline, (int(fields[11]) + int(fields[12])) / _TICK)
    return out


def cpu_by_part(roots: dict[str, int], work: Path, redis_url: str) -> dict[str, float]:
    """CPU seconds used so far by each server's process tree (``roots``: name -> pid), and by the
    Kafka broker (found by the run's folder in its command line) and Redis (by its address: Redis
    rewrites its command line to ``redis-server host:port``) of this run."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out: dict[str, float] = {}
    for name, root in roots.items():
        todo, total = [root], 0.0
        while todo:
            pid = todo.pop()
            total += table.get(pid, (0, b"", 0.0))[2]
            todo.extend(children.get(pid, ()))
        out[name] = total
    folder = str(work).encode()
    redis_address = redis_url.split("//", 1)[-1].split("/", 1)[0].encode()
    for _, cmdline, cpu in table.values():
        if cmdline.startswith(b"redis-server") and redis_address in cmdline:
            out["redis"] = out.get("redis", 0.0) + cpu
        elif folder in cmdline and b"kafka.Kafka" in cmdline:
            out["kafka"] = out.get("kafka", 0.0) + cpu
    return out


def cpu_model() -> str | None:
    """The CPU this run measured on (``/proc/cpuinfo``), for the figures' record."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _stop(servers: dict[str, tuple[subprocess.Popen, int, Path]]) -> None:
    for proc, _, _ in servers.values():
        stop_process(proc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("BENCH_WORKERS", "1")),
        help="uvicorn workers of every server (1 = what `make up` runs)",
    )
    ap.add_argument(
        "--compare-workers",
        type=int,
        default=2,
        help="also measure saturation (all three servers) and 1,000 rps with this many workers (0: skip)",
    )
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    ap.add_argument("--rates", default="500,1000,2000", help="fixed offered loads of /score (open loop)")
    ap.add_argument(
        "--fraction", type=float, default=0.3, help="open-loop run at this fraction of the same run's /score saturation"
    )
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
        uri = register_models(work, args.models)
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
                server = name.split("_open")[0].split("_saturation")[0].removeprefix("warmup_")
                roots = {"server": servers[server][0].pid} if server in servers else {}
                before = cpu_by_part(roots, work, redis_url)
                res = pool.submit(
                    _load, port, mode, rate, duration, conns, f"{len(runs) + len(compare):02d}{name[:4]}"
                ).result()
                after = cpu_by_part(roots, work, redis_url)
                # where the machine's time went, per answered request (server tree: the API with its
                # threads and helper process; the broker; Redis; the load generator)
                used = {part: after[part] - before.get(part, 0.0) for part in after}
                used["load_generator"] = res["load_generator_cpu_s"]
                if res["requests"]:
                    res["cpu_us_per_request"] = {
                        part: round(seconds / res["requests"] * 1e6, 1) for part, seconds in sorted(used.items())
                    }
                into[name] = res
                print(
                    f"{name:<24} rps={res['rps']:>8} p50={res['p50_ms']}ms p99={res['p99_ms']}ms "
                    f"p99.9={res['p999_ms']}ms statuses={res['statuses']} errors={res['errors']}",
                    flush=True,
                )
                return res

            servers = _servers(work, env, args.workers)
            port = {name: p for name, (_, p, _) in servers.items()}
            try:
                for name, (proc, p, log) in servers.items():
                    wait_http(p, READY_PATH[name], proc, log)
                for name in SERVERS:
                    run(f"warmup_{name}", port[name], "open", 500, 16, 3)
                for rate in rates:
                    run(f"full_open_{int(rate)}", port["full"], "open", rate, args.connections, args.duration)
                # saturation of the three back to back (the velocity sets of /score and the same-I/O
                # ceiling are the same keys: each sees the windows the other filled)
                for name in SERVERS:
                    run(f"{name}_saturation", port[name], "closed", 0, args.saturation_connections, args.duration)
                # open loop at a fraction of THIS run's /score saturation, /score and the same-I/O ceiling
                frac_rate = round(args.fraction * runs["full_saturation"]["rps"])
                for name in ("full", "same_io"):
                    run(f"{name}_open_frac", port[name], "open", frac_rate, args.connections, args.duration)
                for rate in rates:
                    run(f"bare_open_{int(rate)}", port["bare"], "open", rate, args.connections, args.duration)
            finally:
                _stop(servers)
            if args.compare_workers and args.compare_workers != args.workers:
                k = args.compare_workers
                servers = _servers(work, env, k)
                port = {name: p for name, (_, p, _) in servers.items()}
                try:
                    for name, (proc, p, log) in servers.items():
                        wait_http(p, READY_PATH[name], proc, log)
                    run(f"warmup_full_{k}w", port["full"], "open", 500, 16, 3, into=compare)
                    run(f"warmup_same_io_{k}w", port["same_io"], "open", 500, 16, 3, into=compare)
                    for name in SERVERS:
                        run(
                            f"{name}_saturation_{k}w",
                            port[name],
                            "closed",
                            0,
                            args.saturation_connections,
                            args.duration,
                            into=compare,
                        )
                    run(f"full_open_1000_{k}w", port["full"], "open", 1000, args.connections, args.duration, compare)
                finally:
                    _stop(servers)
        logs = [log for log in work.glob("*.log") if log.name.split("-")[0] in SERVERS]
        server_errors = sorted(log.name for log in logs if "Traceback" in log.read_text())

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a and b else None

    max_rps = runs["full_saturation"]["rps"]
    same_io_max = runs["same_io_saturation"]["rps"]
    bare_max = runs["bare_saturation"]["rps"]
    frac = runs["full_open_frac"]
    figures = {
        "max_rps": max_rps,
        "ceiling_same_io_rps": same_io_max,
        "ratio_to_same_io": ratio(max_rps, same_io_max),
        "p99_ms_at_30pct_of_saturation": frac["p99_ms"],
        "offered_rps_at_30pct_of_saturation": frac["offered_rps"],
        "same_io_p99_ms_at_that_rate": runs["same_io_open_frac"]["p99_ms"],
        "bare_max_rps": bare_max,
        "ratio": ratio(max_rps, bare_max),
        "same_io_ratio_to_bare": ratio(same_io_max, bare_max),
        "p99_ms_at_1000_rps": runs.get("full_open_1000", {}).get("p99_ms"),
        "bare_p99_ms_at_1000_rps": runs.get("bare_open_1000", {}).get("p99_ms"),
        # machine time per answered request at saturation, by part (where the ratio's gap goes)
        "cpu_us_per_request_at_saturation": {
            name: runs[f"{name}_saturation"].get("cpu_us_per_request") for name in SERVERS
        },
        "fraction_of_saturation": args.fraction,
        "workers": args.workers,
        "models": args.models,
        "command": " ".join(["python -m bench.score", *sys.argv[1:]]),
        "cpu": cpu_model(),
        "server_tracebacks": server_errors,
        "goals": {},
        "micro_benchmark": micro,
        "runs": runs,
    }
    if compare:
        k = args.compare_workers
        c = {name: compare[f"{name}_saturation_{k}w"]["rps"] for name in SERVERS}
        figures["compare_workers"] = {
            "workers": k,
            "max_rps": c["full"],
            "ceiling_same_io_rps": c["same_io"],
            "ratio_to_same_io": ratio(c["full"], c["same_io"]),
            "bare_max_rps": c["bare"],
            "ratio": ratio(c["full"], c["bare"]),
            "p99_ms_at_1000_rps": compare[f"full_open_1000_{k}w"]["p99_ms"],
            "runs": compare,
        }
    p99_frac = figures["p99_ms_at_30pct_of_saturation"]
    p99 = figures["p99_ms_at_1000_rps"]
    figures["goals"] = {
        "ratio_to_same_io>=0.6": (figures["ratio_to_same_io"] or 0) >= 0.6,
        "p99_ms_at_30pct_of_saturation<=5": p99_frac is not None and p99_frac <= 5.0,
        "p99_ms_at_1000_rps<=5": p99 is not None and p99 <= 5.0,
        "max_rps>=2000": max_rps >= 2000,
    }
    path = write_results("score", figures)
    rows = [
        ("max rps (/score, saturation)", max_rps),
        ("same-I/O ceiling max rps", same_io_max),
        ("ratio to the same-I/O ceiling", figures["ratio_to_same_io"] or float("nan")),
        (f"p99 ms at {args.fraction:.0%} of saturation ({frac['offered_rps']:,.0f} rps)", p99_frac or float("nan")),
        ("same-I/O ceiling p99 ms at that rate", figures["same_io_p99_ms_at_that_rate"] or float("nan")),
        ("bare FastAPI max rps", bare_max),
        ("ratio to bare", figures["ratio"] or float("nan")),
        (f"p99 ms at 1000 rps ({args.workers} worker(s))", p99 or float("nan")),
    ]
    for name in ("full", "same_io"):
        split = figures["cpu_us_per_request_at_saturation"][name] or {}
        rows.append((f"CPU us/request at saturation, {name}", ", ".join(f"{k} {v}" for k, v in split.items())))
    if compare:
        cw = figures["compare_workers"]
        rows += [
            (
                f"{cw['workers']} workers: max rps / same-I/O / bare",
                f"{cw['max_rps']:,.0f} / {cw['ceiling_same_io_rps']:,.0f} / {cw['bare_max_rps']:,.0f}",
            ),
            (f"{cw['workers']} workers: ratio to same-I/O", cw["ratio_to_same_io"] or float("nan")),
            (f"{cw['workers']} workers: p99 ms at 1000 rps", cw["p99_ms_at_1000_rps"]),
        ]
    rows += [
        ("decide() us, heuristic", micro["heuristic"]["decide_us"]),
        (f"decide() us, {args.models}", micro[args.models]["decide_us"]),
        (f"decide_json() us (the API's call), {args.models}", micro[args.models]["decide_json_us"]),
    ]
    print_table("Scoring API (loopback, 2 cores shared with the load generator, Redis and Kafka)", rows)
    print(f"results: {path}")


if __name__ == "__main__":
    exit_on_sigterm()
    main()
