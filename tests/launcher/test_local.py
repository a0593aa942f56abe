"""The throwaway servers of tests and benchmarks (launcher/local.py): stopped for real on exit."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg

from launcher import local


def _processes_of(folder: Path) -> list[str]:
    found = subprocess.run(["pgrep", "-fa", str(folder)], capture_output=True, text=True)
    return [line for line in found.stdout.splitlines() if "pgrep" not in line]


def test_postgres_stops_with_its_wrapper_and_leaves_no_server_behind(platform_dir: Path):
    # run as root, PostgreSQL runs under `runuser`, which ignores SIGINT (the fast-shutdown signal):
    # the signal must reach the server itself, not only the wrapper that is killed after the timeout.
    # (platform_dir: a folder the postgres user can traverse; the session's own servers use other subfolders)
    folder = platform_dir / "local_postgres_stop"
    with local.postgres(folder) as url:
        with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert _processes_of(folder), "the server runs from the folder while the context is open"
    assert _processes_of(folder) == []
    assert not (folder / "postgres" / "cluster" / "postmaster.pid").exists(), "a clean shutdown removes it"
