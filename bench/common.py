"""Shared benchmark plumbing: results files, tables, machine facts."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


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
