"""Shared benchmark plumbing: results files, tables, machine facts."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# ------------------------------------------------------------------------------------------ who pays
# Load generators send request templates; who pays and where is drawn per request from a population
# the size of the simulator's defaults (PA_SIMULATOR_CARDHOLDERS, PA_SIMULATOR_MERCHANTS). The templates
# alone would put all the traffic on a few thousand cards: at thousands of requests a second each card
# would pay several times a second and its velocity windows would hold hundreds of transactions, a
# state no real card reaches that makes every velocity read and write dearer.
CARDHOLDERS = 200_000
MERCHANTS = 3_000
PARTIES = {b"CARD_PLACEHOLDER": b"tok_%07d", b"CH_PLACEHOLDER": b"ch_%07d", b"DEV_PLACEHOLDER": b"dev_%06x"}
MERCHANT_PLACEHOLDER = b"MER_PLACEHOLDER"


def leave_parties_open(tx: dict[str, Any]) -> dict[str, Any]:
    """``tx`` with its card (token, cardholder, device) and merchant as placeholders for ``with_parties``."""
    tx["card_token_id"], tx["cardholder_id"], tx["device_fingerprint"] = (p.decode() for p in PARTIES)
    tx["merchant_id"] = MERCHANT_PLACEHOLDER.decode()
    return tx


def with_parties(body: bytes, rng: random.Random) -> bytes:
    """``body`` with a card of the population (its cardholder and device go with it) and a merchant."""
    card = rng.randrange(CARDHOLDERS)
    for placeholder, pattern in PARTIES.items():
        body = body.replace(placeholder, pattern % card)
    return body.replace(MERCHANT_PLACEHOLDER, b"m_%06d" % rng.randrange(MERCHANTS))


def exit_on_sigterm() -> None:
    """SIGTERM (``kill``, ``timeout``) ends a benchmark as Ctrl-C does: its ``with`` blocks stop the
    brokers, servers and processors it started instead of leaving them running."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def write_results(area: str, figures: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{area}.json"
    payload = {
        "area": area,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        **figures,
    }
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def print_table(title: str, rows: list[tuple[str, Any]]) -> None:
    width = max(len(name) for name, _ in rows)
    print(f"\n{title}\n" + "-" * (width + 24))
    for name, value in rows:
        shown = f"{value:,.2f}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else str(value)
        print(f"{name:<{width}}  {shown:>20}")
    print()


async def offer_open_loop(queue: asyncio.Queue, rate: float, total: int, t0: float) -> None:
    """Put the scheduled send time ``t0 + i/rate`` of each of ``total`` requests on ``queue`` when it
    is due (open loop: the workers measure latency from it, so queueing counts)."""
    i = 0
    while i < total:
        now = time.perf_counter()
        while i < total and t0 + i / rate <= now:
            queue.put_nowait(t0 + i / rate)
            i += 1
        # until the next request is due, at least 1 ms: uvloop rounds timers to whole milliseconds,
        # so shorter sleeps return at once and the loop would spin (~0.45 of a core)
        await asyncio.sleep(max(0.001, t0 + i / rate - time.perf_counter()))


async def drive_load(
    mode: str,
    rate: float,
    duration: float,
    connections: int,
    open_worker: Callable[[asyncio.Queue], Awaitable[None]],
    closed_worker: Callable[[float], Awaitable[None]] | None = None,
    on_start: Callable[[float], None] = lambda t0: None,
) -> float:
    """Run ``connections`` workers for ``duration`` seconds; returns the seconds it took. 'closed':
    ``closed_worker(stop_at)`` each, back to back (saturation); 'open': ``open_worker(queue)`` each,
    fed the scheduled send times of ``rate`` requests a second (``offer_open_loop``) and then ``None``.
    ``on_start`` gets the start time (``perf_counter``) once the connections are up."""
    if mode == "closed":
        assert closed_worker is not None
        t0 = time.perf_counter()
        on_start(t0)
        await asyncio.gather(*(closed_worker(t0 + duration) for _ in range(connections)))
        return time.perf_counter() - t0
    queue: asyncio.Queue = asyncio.Queue()
    workers = [asyncio.create_task(open_worker(queue)) for _ in range(connections)]
    await asyncio.sleep(0.2)  # connections up
    t0 = time.perf_counter()
    on_start(t0)
    await offer_open_loop(queue, rate, int(rate * duration), t0)
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    return time.perf_counter() - t0
