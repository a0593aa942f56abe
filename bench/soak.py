"""Soak test: ``make bench-soak`` (``python -m bench.soak``); not part of ``make test``.

Both decision paths under steady load for ``--minutes`` (10), with everything real and throwaway on
free ports in a temporary folder: Kafka and Redis (``launcher.local``), an MLflow sqlite registry with
four small trained models (``bench.score.register_models``), the stream processor exactly as
``make up`` runs it (``python -m services.stream_processor run``: micro-batch scoring query, the
Delta decision log in its own low-priority process), the scoring API as
``python -m services.scoring_api serve`` (one worker, its decision consumer beside it, every decision
it returns published to payments.decisions; PA_ENV=dev, an API key, rate limit off) and the simulator
(``python -m services.simulator run --rate 1000``).

Order: the stream processor and the API start, then the simulator; once decisions flow and the
decision log has committed its first batch (``--startup-seconds``), ``POST /score`` gets a short
warm-up, then its saturation is measured in place (closed loop, ``--saturation-seconds`` 20, with the
stream running beside it, as during the soak). The soak then runs ``/score`` open loop at
``--score-fraction`` (0.5) of that saturation, every request a distinct transaction with the current
time as event time, for ``--minutes``, while the simulator keeps producing. Then the load stops, and
the decision log gets up to ``--drain-seconds`` (120) to hold every decision. Measured:

* ``errors``: ``/score`` requests of the soak that got no 2xx (status, timeout after 10 s, broken
  connection, an answer for another transaction), records in payments.transactions.dlq and
  payments.decisions.dlq, processes that died (each is restarted, as supervisord would), events
  the simulator could not deliver, and ERROR lines or tracebacks in the services' logs;
* ``lost``: transactions without a row in the Delta decision log: every transaction the simulator
  put on payments.transactions and every ``/score`` request answered with a decision (warm-up and
  saturation included);
* ``duplicates``: transactions with more than one row in the log, or two different outcomes
  anywhere (what ``/score`` answered, the records of payments.decisions, the log). The same outcome
  twice on the topic is at-least-once delivery, which the log absorbs: counted apart, not a duplicate;
* ``rss_growth_pct``: resident memory of each service's whole process tree (simulator; scoring API
  with its consumer; stream processor = Python driver, JVM and Python workers; the decision-log
  process, same) sampled from /proc every ``--sample-seconds`` (5). After ``--warmup-minutes`` (2):
  (median of the last minute - median of the first minute after warm-up) / the latter. Kafka,
  Redis, the load generator and the API's decision consumer (part of the API's tree) are sampled
  apart too, for information (Redis holds 24 h of velocity windows and an hour of decisions: it grows
  by design).

Also reported, to explain the figures: the CPU (cores) each process tree used, minute by minute;
``/score`` latency and errors minute by minute; the stream's event -> decision latency and how far
the decision log was behind (``logged_at - published_at``) minute by minute; the machine's load.

Writes ``bench/results/soak.json``. Goals: 0 errors, 0 lost, 0 duplicates, every service's
``rss_growth_pct`` <= 10.

    flock /tmp/pa-heavy.lock make bench-soak
    make bench-soak BENCH_ARGS="--minutes 3 --warmup-minutes 1"
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import multiprocessing
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import uvloop
from confluent_kafka import Consumer, TopicPartition
from deltalake import DeltaTable

from bench.common import drive_load, exit_on_sigterm, leave_parties_open, print_table, with_parties, write_results
from bench.score import BENCH_KEY, PLACEHOLDER, register_models, wait_http
from bench.stream import Platform
from launcher import local
from launcher.infra import free_port
from launcher.topics import ensure_topics
from payments_core.contract.topics import DECISIONS, DECISIONS_DLQ, TRANSACTIONS, TRANSACTIONS_DLQ
from payments_core.samples import sample_request
from services.stream_processor.settings import StreamProcessorSettings
from services.stream_processor.tables import DECISION_LOG

REPO = Path(__file__).resolve().parents[1]
TS_PLACEHOLDER = b'"TS_PLACEHOLDER"'
REQUEST_TIMEOUT_S = 10.0
SERVICES = ("stream_processor", "decision_log", "scoring_api", "simulator")
INFRASTRUCTURE = ("kafka", "redis", "load_generator")
# parts of a service measured apart too, for information: the API's decision consumer shares its session
# (and so, with scheduler autogroups, its share of the CPU) with the server
PARTS = ("scoring_api.consumer",)


# ------------------------------------------------------------------------------------------ /score load
# who pays and where: drawn per request from the simulator's population (bench.common.with_parties)


def _templates(n: int, seed: int) -> list[bytes]:
    """Request bodies with the transaction id, the event time, the card (token, cardholder, device)
    and the merchant left as placeholders."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        tx = sample_request(rng)
        tx["transaction_id"] = PLACEHOLDER.decode()
        tx["event_timestamp"] = TS_PLACEHOLDER.decode().strip('"')
        out.append(orjson.dumps(leave_parties_open(tx)))
    return out


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
            break
    return int(head[9:12]), await reader.readexactly(length) if length else b""


def score_load(
    port: int, mode: str, rate: float, duration: float, connections: int, tag: str, answers: str, seed: int = 5
) -> dict[str, Any]:
    """``POST /score`` load, run in its own process. ``mode`` 'open': requests scheduled at
    ``t0 + i/rate``, latency from the scheduled time (queueing counts); 'closed': ``connections``
    back to back (saturation). Every request is a new transaction id ``txn_<tag><counter>`` with the
    current time as event time. The answered decisions go to ``answers`` (``<id> <outcome>`` lines)."""
    temps = _templates(2000, seed)
    parties_rng = random.Random(f"{seed}-{tag}")
    prefix = tag.encode()
    assert len(prefix) == 6 and re.fullmatch(rb"[0-9a-f]{6}", prefix), tag
    counter = iter(range(16**10))
    answered: list[tuple[str, str]] = []
    statuses: Counter[int] = Counter()
    failures: Counter[str] = Counter()
    latencies: list[float] = []
    minutes: dict[int, list[float]] = defaultdict(list)
    minute_errors: Counter[int] = Counter()
    attempts = 0
    t0 = time.perf_counter()

    def request() -> tuple[bytes, bytes]:
        i = next(counter)
        txn = b"txn_" + prefix + b"%010x" % i
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()
        body = temps[i % len(temps)].replace(PLACEHOLDER, txn).replace(TS_PLACEHOLDER, b'"' + now + b'"')
        body = with_parties(body, parties_rng)
        head = (
            b"POST /score HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
            b"X-API-Key: %s\r\nContent-Length: %d\r\n\r\n" % (port, BENCH_KEY.encode(), len(body))
        )
        return txn, head + body

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        try:
            return await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return None

    async def one(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None, since: float):
        """One request on ``conn`` (reconnecting when needed); the connection to use next."""
        nonlocal attempts
        attempts += 1
        minute = int((since - t0) // 60)
        if conn is None:
            conn = await connect()
            if conn is None:
                failures["connect"] += 1
                minute_errors[minute] += 1
                await asyncio.sleep(0.05)
                return None
        reader, writer = conn
        txn, raw = request()
        try:
            writer.write(raw)
            status, body = await asyncio.wait_for(_read_response(reader), REQUEST_TIMEOUT_S)
        except TimeoutError:
            failures["timeout"] += 1
            minute_errors[minute] += 1
            writer.close()
            return None
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            failures["connection"] += 1
            minute_errors[minute] += 1
            writer.close()
            return None
        lat = (time.perf_counter() - since) * 1000.0
        statuses[status] += 1
        if 200 <= status < 300:
            decision = orjson.loads(body)
            if decision.get("transaction_id") != txn.decode():
                failures["wrong_transaction"] += 1
                minute_errors[minute] += 1
            else:
                answered.append((decision["transaction_id"], decision["outcome"]))
        else:
            minute_errors[minute] += 1
        latencies.append(lat)
        minutes[minute].append(lat)
        return conn

    async def closed_worker(stop_at: float) -> None:
        conn = await connect()
        while time.perf_counter() < stop_at:
            conn = await one(conn, time.perf_counter())
        if conn is not None:
            conn[1].close()

    async def open_worker(queue: asyncio.Queue) -> None:
        conn = await connect()
        while (scheduled := await queue.get()) is not None:
            conn = await one(conn, scheduled)
        if conn is not None:
            conn[1].close()

    def started(at: float) -> None:  # the per-minute figures count from the load's start
        nonlocal t0
        t0 = at

    elapsed = uvloop.run(drive_load(mode, rate, duration, connections, open_worker, closed_worker, started))
    Path(answers).write_text("".join(f"{t} {o}\n" for t, o in answered))
    ok = sum(v for k, v in statuses.items() if 200 <= k < 300)
    return {
        "mode": mode,
        "offered_rps": rate if mode == "open" else None,
        "connections": connections,
        "duration_s": round(elapsed, 1),
        "requests": attempts,
        "ok": ok,
        "rps": round(ok / elapsed, 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "failures": dict(failures),
        "errors": sum(statuses.values()) - ok + sum(failures.values()),
        **_percentiles(latencies),
        "per_minute": [
            {"minute": m, "n": len(v), "errors": minute_errors[m], **_percentiles(v)}
            for m, v in sorted(minutes.items())
        ],
    }


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    arr = np.asarray(values)
    return {
        "p50_ms": round(float(np.percentile(arr, 50)), 2),
        "p99_ms": round(float(np.percentile(arr, 99)), 2),
        "max_ms": round(float(arr.max()), 2),
    }


# ------------------------------------------------------------------------------------------ processes
class Service:
    """One service process (own session), restarted when it dies and stopped with ``stop_signal`` to
    its process group, as ``make up``'s supervisord does (``launcher/services.py``)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path, stop_signal: int = signal.SIGTERM):
        self.name, self.argv, self.env, self.log, self.stop_signal = name, argv, env, log, stop_signal
        self.proc: subprocess.Popen | None = None
        self.deaths: list[dict[str, Any]] = []
        self.stopping = False

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def check(self) -> None:
        """Restart the process if it died on its own."""
        if self.stopping or self.proc is None or self.proc.poll() is None:
            return
        self.deaths.append({"at": time.strftime("%H:%M:%S"), "returncode": self.proc.returncode})
        print(f"{self.name} exited with {self.proc.returncode}: restarting", flush=True)
        self.start()

    def stop(self, timeout: float = 90) -> int | None:
        self.stopping = True
        proc = self.proc
        if proc is None:
            return None
        local.stop_process(proc, self.stop_signal, timeout)  # its whole process group
        return proc.returncode


# ------------------------------------------------------------------------------------------ memory
def _proc_table() -> dict[int, tuple[int, int, str, int]]:
    """pid -> (parent pid, resident bytes, command name, CPU ticks), from /proc/<pid>/stat."""
    page = os.sysconf("SC_PAGE_SIZE")
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:  # exited meanwhile
            continue
        lpar, rpar = text.find("("), text.rfind(")")
        fields = text[rpar + 2 :].split()
        cpu = int(fields[11]) + int(fields[12])  # utime + stime
        out[int(entry.name)] = (int(fields[1]), int(fields[21]) * page, text[lpar + 1 : rpar], cpu)
    return out


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _tree(root: int, children: dict[int, list[int]], skip: set[int]) -> list[int]:
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in skip:
            continue
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


class ProcessSampler:
    """Resident memory (MiB) of each service's process tree, sampled on demand; and the CPU each
    tree used between two samples (cores), to see where the machine's time went."""

    def __init__(self, services: dict[str, Service]):
        self.services = services
        # (time, MiB, of which JVMs, processes)
        self.samples: dict[str, list[tuple[float, float, float, int]]] = defaultdict(list)
        self.cpu: dict[str, list[tuple[float, float]]] = defaultdict(list)  # (time, cores since the last sample)
        self._ticks: dict[int, int] = {}
        self._last = 0.0

    def sample(self) -> None:
        table = _proc_table()
        children: dict[int, list[int]] = defaultdict(list)
        for pid, (ppid, *_) in table.items():
            children[ppid].append(pid)
        roots: dict[str, int] = {}
        for name, svc in self.services.items():
            if svc.pid is not None:
                roots[name] = svc.pid
        # the decision log runs in its own session as a child of the processor: measured apart
        skip: set[int] = set()
        proc_root = roots.get("stream_processor")
        if proc_root is not None:
            for pid in children.get(proc_root, ()):
                if b"--only\x00decision_log" in _cmdline(pid):
                    roots["decision_log"] = pid
                    skip.add(pid)
        api_root = roots.get("scoring_api")
        if api_root is not None:
            for pid in children.get(api_root, ()):
                if b"services.scoring_api\x00consume" in _cmdline(pid):
                    roots["scoring_api.consumer"] = pid
        # Kafka (a JVM), Redis and the /score load generator are children of this process
        for pid in children.get(os.getpid(), ()):
            comm = table[pid][2]
            if comm == "java":
                roots["kafka"] = pid
            elif comm.startswith("redis-server"):
                roots["redis"] = pid
            elif b"multiprocessing.spawn" in _cmdline(pid) and b"spawn_main" in _cmdline(pid):
                roots["load_generator"] = pid
        t = time.time()
        tick = os.sysconf("SC_CLK_TCK")
        for name, root in roots.items():
            pids = [p for p in _tree(root, children, skip if name != "decision_log" else set()) if p in table]
            mib = sum(table[p][1] for p in pids) / 2**20
            jvm = sum(table[p][1] for p in pids if table[p][2] == "java") / 2**20
            self.samples[name].append((t, round(mib, 1), round(jvm, 1), len(pids)))
            if self._last:  # processes alive at both samples (a short-lived worker's CPU is missed)
                used = sum(table[p][3] - self._ticks[p] for p in pids if p in self._ticks)
                self.cpu[name].append((t, used / tick / (t - self._last)))
        self._ticks = {pid: row[3] for pid, row in table.items()}
        self._last = t

    def summary(self, start: float, warmup_s: float, end: float) -> dict[str, Any]:
        """Per service: the median of every minute of the soak, and the growth after warm-up."""
        out: dict[str, Any] = {}
        for name, rows in sorted(self.samples.items()):
            soak = [(t - start, mib, jvm, n) for t, mib, jvm, n in rows if start <= t <= end]
            by_minute: dict[int, list[tuple[float, float]]] = defaultdict(list)
            for t, mib, jvm, _ in soak:
                by_minute[int(t // 60)].append((mib, jvm))
            first = [m for t, m, _, _ in soak if warmup_s <= t < warmup_s + 60]
            last = [m for t, m, _, _ in soak if t >= end - start - 60]
            base = statistics.median(first) if first else None
            final = statistics.median(last) if last else None
            out[name] = {
                "first_minute_after_warmup_median_mib": base,
                "last_minute_median_mib": final,
                "rss_growth_pct": round((final - base) / base * 100, 2) if base and final is not None else None,
                "per_minute_median_mib": [
                    round(statistics.median(m for m, _ in v), 1) for _, v in sorted(by_minute.items())
                ],
                "min_mib": min((m for _, m, _, _ in soak), default=None),
                "max_mib": max((m for _, m, _, _ in soak), default=None),
                "processes_min_max": [
                    min((n for *_, n in soak), default=None),
                    max((n for *_, n in soak), default=None),
                ],
                "samples": len(soak),
            }
            cpu_by_minute: dict[int, list[float]] = defaultdict(list)
            for t, cores in self.cpu.get(name, ()):
                if start <= t <= end:
                    cpu_by_minute[int((t - start) // 60)].append(cores)
            out[name]["cpu_cores_per_minute_mean"] = [
                round(statistics.fmean(v), 2) for _, v in sorted(cpu_by_minute.items())
            ]
            if any(jvm for _, _, jvm, _ in soak):
                out[name]["jvm_per_minute_median_mib"] = [
                    round(statistics.median(j for _, j in v), 1) for _, v in sorted(by_minute.items())
                ]
        return out


# ------------------------------------------------------------------------------------------ reading back
def read_topic(bootstrap: str, topic: str, each: Callable[[Any], None], timeout: float = 300) -> int:
    """Every record of ``topic`` from its beginning to its current end, through ``each``."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"soak-read-{os.getpid()}-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "fetch.max.bytes": 64 * 2**20,
        }
    )
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends, assign = {}, []
        for p in parts:
            lo, hi = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if hi > lo:
                ends[p] = hi
                assign.append(TopicPartition(topic, p, lo))
        consumer.assign(assign)
        done: set[int] = set()
        n = 0
        deadline = time.monotonic() + timeout
        while len(done) < len(ends):
            if time.monotonic() > deadline:
                raise RuntimeError(f"reading {topic} did not finish in {timeout}s")
            for msg in consumer.consume(10_000, 1.0):
                if msg.error():
                    continue
                each(msg)
                n += 1
                if msg.offset() + 1 >= ends[msg.partition()]:
                    done.add(msg.partition())
        return n
    finally:
        consumer.close()


def topic_size(bootstrap: str, topic: str) -> int:
    """Records in ``topic`` (sum of high - low watermarks)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"soak-size-{os.getpid()}"})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        total = 0
        for p in parts:
            lo, hi = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += hi - lo
        return total
    finally:
        consumer.close()


_TXN_ID = re.compile(rb'"transaction_id"\s*:\s*"([^"]+)"')
_OUTCOME = re.compile(rb'"outcome"\s*:\s*"([^"]+)"')


def transaction_ids(bootstrap: str, topic: str) -> tuple[int, set[str]]:
    """Records of the transactions topic and their distinct transaction ids."""
    ids: set[str] = set()

    def each(msg: Any) -> None:
        m = _TXN_ID.search(msg.value())
        ids.add(m[1].decode() if m else orjson.loads(msg.value())["transaction_id"])

    return read_topic(bootstrap, topic, each), ids


def topic_decisions(bootstrap: str, topic: str) -> tuple[dict[str, str], set[str], int, int]:
    """The decisions topic (key = transaction id): each id's first outcome, the ids with records of
    different outcomes, how many ids have several records with the same outcome, and the records."""
    first: dict[str, str] = {}
    conflicts: set[str] = set()
    repeated: set[str] = set()

    def each(msg: Any) -> None:
        m = _OUTCOME.search(msg.value())
        outcome = m[1].decode() if m else orjson.loads(msg.value())["outcome"]
        txn = msg.key().decode()
        seen = first.get(txn)
        if seen is None:
            first[txn] = outcome
        else:
            (repeated if seen == outcome else conflicts).add(txn)

    records = read_topic(bootstrap, topic, each)
    return first, conflicts, len(repeated - conflicts), records


def read_log(path: Path, columns: Iterable[str]) -> dict[str, list[Any]]:
    """Columns of the Delta decision log (delta-rs: no JVM); empty before its first commit."""
    if not (path / "_delta_log").exists():
        return {c: [] for c in columns}
    table = DeltaTable(str(path)).to_pyarrow_dataset().to_table(columns=list(columns))
    return {c: table.column(c).to_pylist() for c in columns}


def read_answers(paths: Iterable[Path]) -> dict[str, str]:
    out: dict[str, str] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            txn, outcome = line.split(" ", 1)
            out[txn] = outcome
    return out


def log_error_lines(log: Path) -> list[str]:
    """ERROR lines and tracebacks of a service's log."""
    if not log.exists():
        return []
    return [
        line.strip()[:300]
        for line in log.read_text(errors="replace").splitlines()
        if " ERROR " in line or "[ERROR]" in line or line.startswith("Traceback") or "Exception in thread" in line
    ]


# ------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the soak")
    ap.add_argument("--rate", type=float, default=1000.0, help="simulator events per second")
    ap.add_argument("--score-fraction", type=float, default=0.5, help="/score offered load, share of its saturation")
    ap.add_argument("--warmup-minutes", type=float, default=2.0, help="memory growth is measured after this")
    ap.add_argument("--saturation-seconds", type=float, default=20.0)
    ap.add_argument("--saturation-connections", type=int, default=32)
    ap.add_argument("--connections", type=int, default=64, help="open-loop /score connections")
    ap.add_argument("--drain-seconds", type=float, default=120.0, help="longest wait for the log after the load")
    ap.add_argument(
        "--startup-seconds", type=float, default=600.0, help="longest wait for the stream and its log to be up"
    )
    ap.add_argument("--sample-seconds", type=float, default=5.0, help="memory sampling interval")
    ap.add_argument("--workdir", help="keep everything here (default: a temporary folder)")
    args = ap.parse_args(argv)
    if args.minutes * 60 < args.warmup_minutes * 60 + 120:
        ap.error("--minutes must leave at least two minutes after --warmup-minutes")
    with tempfile.TemporaryDirectory(prefix="pa-bench-soak-") as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        with local.kafka(work, heap="768m") as bootstrap, local.redis(work) as redis_url:
            figures = soak(args, work, bootstrap, redis_url)
    report(args, figures)


def soak(args: argparse.Namespace, work: Path, bootstrap: str, redis_url: str) -> dict[str, Any]:
    ensure_topics(bootstrap, "")
    print("training and registering models ...", flush=True)
    with contextlib.chdir(work):  # MLflow's default artifact folder (./mlruns) in the workdir
        uri = register_models(work, "linear")
    plat = Platform(
        work,
        bootstrap,
        redis_url,
        "",
        {
            "PA_ENV": "dev",
            "PA_MLFLOW_TRACKING_URI": uri,
            "PA_REDIS_PREFIX": "soak",
            "PA_API_KEYS": BENCH_KEY,
            "PA_RATE_LIMIT": "off",
        },
    )
    env = plat.env()
    api_port = free_port()
    py = sys.executable
    services = {
        "stream_processor": Service(
            "stream_processor",
            [py, "-m", "services.stream_processor", "run"],
            env,
            work / "processor.log",
            stop_signal=signal.SIGINT,
        ),
        "scoring_api": Service(
            "scoring_api",
            [py, "-m", "services.scoring_api", "serve", "--port", str(api_port), "--log-level", "warning"],
            env,
            work / "api.log",
        ),
        # real-time clock: the transaction ids are salted with the start time, so a restart makes new ones
        "simulator": Service(
            "simulator",
            [py, "-m", "services.simulator", "run", "--rate", str(args.rate), "--no-control"],
            env,
            work / "simulator.log",
        ),
    }
    sampler = ProcessSampler(services)
    settings = StreamProcessorSettings(
        _env_file=None, data_dir=work / "data", warehouse_dir=work / "warehouse", kafka_bootstrap=bootstrap
    )
    log_path = settings.warehouse / settings.catalog / settings.lakehouse_schema / DECISION_LOG
    ctx = multiprocessing.get_context("spawn")
    answer_files: list[Path] = []
    try:
        services["stream_processor"].start()
        services["scoring_api"].start()
        api_proc = services["scoring_api"].proc
        assert api_proc is not None
        wait_http(api_port, "/ready", api_proc, work / "api.log", timeout=240)
        services["simulator"].start()
        # steady state before anything is measured: decisions flow and the decision log has committed
        # its first batch (a fresh log process warms up, then takes the backlog since the start)
        print("waiting for the stream's decisions and the decision log's first batch ...", flush=True)
        started = time.monotonic()
        while (
            topic_size(bootstrap, DECISIONS.name) < args.rate * 10
            or not read_log(log_path, ["transaction_id"])["transaction_id"]
        ):
            if time.monotonic() - started > args.startup_seconds:
                raise RuntimeError("the stream or its decision log did not start:\n" + plat.tail("processor"))
            for svc in services.values():
                svc.check()
            time.sleep(5)
        startup_s = round(time.monotonic() - started, 1)
        print(f"stream and decision log up after {startup_s}s", flush=True)
        time.sleep(30)  # the log's next batch: what piled up during its first

        with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:

            def load(name: str, tag: str, **kw: Any) -> concurrent.futures.Future:
                answer_files.append(work / f"answers-{name}.txt")
                return pool.submit(score_load, api_port, tag=tag, answers=str(answer_files[-1]), **kw)

            def watch(future: concurrent.futures.Future) -> dict[str, Any]:
                """Sample memory and keep the services up while ``future`` runs."""
                next_sample = 0.0
                while not future.done():
                    for svc in services.values():
                        svc.check()
                    if time.monotonic() >= next_sample:
                        sampler.sample()
                        load_samples.append(os.getloadavg()[0])
                        next_sample = time.monotonic() + args.sample_seconds
                    time.sleep(0.5)
                return future.result()

            load_samples: list[float] = []
            watch(load("warmup", "a0a0a0", mode="open", rate=300, duration=5, connections=16))
            sat = watch(
                load(
                    "saturation",
                    "b1b1b1",
                    mode="closed",
                    rate=0,
                    duration=args.saturation_seconds,
                    connections=args.saturation_connections,
                )
            )
            score_rate = round(sat["rps"] * args.score_fraction, 1)
            print(f"/score saturation beside the stream: {sat['rps']:,.0f} rps; soak at {score_rate:,.0f} rps")
            time.sleep(10)  # the stream's backlog from the saturation run
            load_samples.clear()
            # error lines logged before the soak (startup, saturation run) are reported apart
            before_soak = {name: log_error_lines(svc.log) for name, svc in services.items()}
            soak_start = time.time()
            soak_stats = watch(
                load(
                    "soak",
                    "c2c2c2",
                    mode="open",
                    rate=score_rate,
                    duration=args.minutes * 60,
                    connections=args.connections,
                )
            )
            soak_end = time.time()
        sampler.sample()
        sim_rc = services["simulator"].stop()
        print(
            f"soak done: /score {soak_stats['ok']:,} ok, {soak_stats['errors']:,} errors, "
            f"p99 {soak_stats['p99_ms']} ms; simulator exited {sim_rc}",
            flush=True,
        )

        # every transaction and every answered request must reach the log: wait for it, bounded
        produced, sim_ids = transaction_ids(bootstrap, TRANSACTIONS.name)
        answers = read_answers(answer_files)
        expected = sim_ids | answers.keys()
        drain_start = time.monotonic()
        missing: set[str] = expected
        while True:
            logged = set(read_log(log_path, ["transaction_id"])["transaction_id"])
            missing = expected - logged
            waited = time.monotonic() - drain_start
            print(f"drain {waited:5.0f}s: {len(missing):,} of {len(expected):,} not in the log yet", flush=True)
            if not missing or waited >= args.drain_seconds:
                break
            for svc in services.values():
                svc.check()
            time.sleep(10)
        drain_s = round(time.monotonic() - drain_start, 1)

        log = read_log(
            log_path,
            ["transaction_id", "outcome", "source", "e2e_latency_ms", "event_timestamp", "published_at", "logged_at"],
        )
        on_topic, topic_conflicts, topic_repeats, topic_records = topic_decisions(bootstrap, DECISIONS.name)
        dlq = {t.name: topic_size(bootstrap, t.name) for t in (TRANSACTIONS_DLQ, DECISIONS_DLQ)}
        sim_report = next(
            (line for line in reversed(plat.tail("simulator").splitlines()) if line.startswith("done:")), ""
        )
        # before the services are stopped: what a stop logs is reported apart
        log_errors = {name: log_error_lines(svc.log)[len(before_soak[name]) :] for name, svc in services.items()}
    finally:
        for name in ("simulator", "scoring_api", "stream_processor"):
            services[name].stop()

    # --- lost and duplicates
    rows_per_id = Counter(log["transaction_id"])
    log_outcomes: dict[str, set[str]] = defaultdict(set)
    for txn, outcome in zip(log["transaction_id"], log["outcome"], strict=True):
        log_outcomes[txn].add(outcome)
    multi_rows = {t for t, n in rows_per_id.items() if n > 1}
    api_vs_log = {t for t, o in answers.items() if t in log_outcomes and log_outcomes[t] != {o}}
    api_vs_topic = {t for t, o in answers.items() if t in on_topic and on_topic[t] != o}
    topic_vs_log = {t for t, o in on_topic.items() if t in log_outcomes and log_outcomes[t] != {o}}
    duplicate_ids = multi_rows | api_vs_log | api_vs_topic | topic_conflicts | topic_vs_log
    lost_stream = sim_ids - rows_per_id.keys()
    lost_api = answers.keys() - rows_per_id.keys()
    not_on_topic_api = answers.keys() - on_topic.keys()
    # /score decisions in the log that the client never got (a 503 after the decision was stored: the
    # API's outbox publishes it later); a retry of the request would get it as an idempotent replay
    unanswered_logged = sum(
        1 for txn, src in zip(log["transaction_id"], log["source"], strict=True) if src == "api" and txn not in answers
    )

    # --- errors
    at_stop = {
        name: log_error_lines(svc.log)[len(before_soak[name]) + len(log_errors[name]) :]
        for name, svc in services.items()
    }
    sim_failed = sum(int(v.replace(",", "")) for v in re.findall(r"(?:failed|undelivered)=([\d,]+)", sim_report))
    errors_breakdown = {
        "score_requests": soak_stats["errors"],
        "transactions_dlq": dlq[TRANSACTIONS_DLQ.name],
        "decisions_dlq": dlq[DECISIONS_DLQ.name],
        "process_restarts": {name: len(svc.deaths) for name, svc in services.items()},
        "simulator_undelivered": sim_failed,
        "log_error_lines": {name: len(lines) for name, lines in log_errors.items()},
    }
    errors = (
        soak_stats["errors"]
        + sum(dlq.values())
        + sum(len(svc.deaths) for svc in services.values())
        + sim_failed
        + sum(len(lines) for lines in log_errors.values())
    )

    # --- memory
    memory = sampler.summary(soak_start, args.warmup_minutes * 60, soak_end)
    growth = {name: memory[name]["rss_growth_pct"] for name in SERVICES if name in memory}

    # --- the stream's latency over the soak, from the log (decision published - event time)
    lat_by_source: dict[str, list[float]] = defaultdict(list)
    # and how far the decision log was behind: logged_at - published_at, by minute of publication
    log_lag: dict[int, list[float]] = defaultdict(list)
    soak_window = (datetime.fromtimestamp(soak_start, UTC), datetime.fromtimestamp(soak_end, UTC))
    for src, lat, ts, published, logged in zip(
        log["source"], log["e2e_latency_ms"], log["event_timestamp"], log["published_at"], log["logged_at"], strict=True
    ):
        if lat is not None and ts is not None and soak_window[0] <= _utc(ts) < soak_window[1]:
            lat_by_source[src].append(lat)
        if published is not None and logged is not None and soak_window[0] <= _utc(published) < soak_window[1]:
            minute = int((_utc(published) - soak_window[0]).total_seconds() // 60)
            log_lag[minute].append((_utc(logged) - _utc(published)).total_seconds())

    figures: dict[str, Any] = {
        "errors": errors,
        "lost": len(lost_stream | lost_api),
        "duplicates": len(duplicate_ids),
        "rss_growth_pct": growth,
        "goals_met": {
            "errors==0": errors == 0,
            "lost==0": not (lost_stream or lost_api),
            "duplicates==0": not duplicate_ids,
            "rss_growth_pct<=10": all(g is not None and g <= 10 for g in growth.values()) and len(growth) == 4,
            **{f"rss_growth_pct<=10:{name}": g is not None and g <= 10 for name, g in growth.items()},
        },
        "config": {
            "minutes": args.minutes,
            "simulator_rate": args.rate,
            "score_fraction": args.score_fraction,
            "score_offered_rps": score_rate,
            "warmup_minutes": args.warmup_minutes,
            "drain_seconds_max": args.drain_seconds,
            "saturation_seconds": args.saturation_seconds,
            "saturation_connections": args.saturation_connections,
            "connections": args.connections,
            "sample_seconds": args.sample_seconds,
            "models": "linear",
            "api_workers": 1,
            "stream": "micro-batch, decision log in its own process (as make up)",
        },
        "score_saturation_rps": sat["rps"],
        "errors_breakdown": errors_breakdown,
        "error_lines_sample": {name: lines[:5] for name, lines in log_errors.items() if lines},
        "error_lines_before_soak": {name: lines[:5] for name, lines in before_soak.items() if lines},
        "error_lines_at_stop": {name: lines[:5] for name, lines in at_stop.items() if lines},
        "process_deaths": {name: svc.deaths for name, svc in services.items() if svc.deaths},
        "lost_breakdown": {
            "simulator_transactions": len(lost_stream),
            "score_answers": len(lost_api),
            "score_answers_not_on_decisions_topic": len(not_on_topic_api),
            "examples": sorted(lost_stream | lost_api)[:10],
        },
        "duplicates_breakdown": {
            "log_ids_with_several_rows": len(multi_rows),
            "score_answer_differs_from_log": len(api_vs_log),
            "score_answer_differs_from_topic": len(api_vs_topic),
            "topic_ids_with_different_outcomes": len(topic_conflicts),
            "log_outcome_not_on_topic": len(topic_vs_log),
            "topic_ids_repeated_same_outcome": topic_repeats,
            "examples": sorted(duplicate_ids)[:10],
        },
        "counts": {
            "simulator_records": produced,
            "simulator_transactions": len(sim_ids),
            "simulator_report": sim_report,
            "score_answered": len(answers),
            "decisions_topic_records": topic_records,
            "decisions_topic_transactions": len(on_topic),
            "log_rows": len(log["transaction_id"]),
            "log_transactions": len(rows_per_id),
            "log_score_decisions_not_answered_2xx": unanswered_logged,
        },
        "soak_window_utc": [
            datetime.fromtimestamp(soak_start, UTC).isoformat(timespec="seconds"),
            datetime.fromtimestamp(soak_end, UTC).isoformat(timespec="seconds"),
        ],
        "startup_seconds": startup_s,
        "drain_seconds": drain_s,
        "score_saturation": sat,
        "score_soak": soak_stats,
        "stream_latency_ms_during_soak": {
            src: {"n": len(v), **_percentiles(v)} for src, v in sorted(lat_by_source.items())
        },
        "decision_log_lag_s_by_minute": [
            {"minute": m, "n": len(v), "p50": round(statistics.median(v), 1), "max": round(max(v), 1)}
            for m, v in sorted(log_lag.items())
        ],
        "processes": memory,
        "load_avg_1m_during_soak": {
            "median": round(statistics.median(load_samples), 2) if load_samples else None,
            "max": round(max(load_samples), 2) if load_samples else None,
        },
    }
    return figures


def _utc(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def report(args: argparse.Namespace, figures: dict[str, Any]) -> None:
    path = write_results("soak", figures)
    rows: list[tuple[str, Any]] = [
        ("minutes", args.minutes),
        ("simulator tx/s", args.rate),
        ("/score saturation beside the stream, rps", figures["score_saturation_rps"]),
        ("/score offered during the soak, rps", figures["config"]["score_offered_rps"]),
        ("/score p99 ms during the soak", figures["score_soak"]["p99_ms"]),
        ("errors", figures["errors"]),
        ("lost", figures["lost"]),
        ("duplicates", figures["duplicates"]),
        ("drain seconds", figures["drain_seconds"]),
    ]
    rows += [(f"rss growth % {name}", g if g is not None else "n/a") for name, g in figures["rss_growth_pct"].items()]
    rows += [
        (f"rss growth % {name} (infrastructure)", figures["processes"].get(name, {}).get("rss_growth_pct", "n/a"))
        for name in INFRASTRUCTURE + PARTS
    ]
    for name, proc in figures["processes"].items():
        cpu = proc["cpu_cores_per_minute_mean"]
        rows.append((f"cpu cores {name}, mean of the minutes", round(statistics.fmean(cpu), 2) if cpu else "n/a"))
    print_table("Soak: stream at the simulator's rate and /score open loop, together", rows)
    print(orjson.dumps(figures["goals_met"]).decode())
    print(f"results: {path}")


if __name__ == "__main__":
    exit_on_sigterm()
    main()
