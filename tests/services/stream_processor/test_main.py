"""The decision-log child process: low priority in its own session (and autogroup), and it dies with
the processor even when the processor is killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
PARENT = """
import sys, time
from services.stream_processor.__main__ import spawn_low_priority
child = spawn_low_priority([sys.executable, "-c", "import time; time.sleep(600)"], 19)
print(child.pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_child_runs_niced_in_its_own_session_and_dies_with_a_killed_parent():
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], cwd=REPO, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        child = int(parent.stdout.readline())
        stat = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
        assert int(stat[16]) == 19  # nice
        assert os.getsid(child) == child != os.getsid(parent.pid)  # a session of its own
        autogroup = Path(f"/proc/{child}/autogroup")
        if autogroup.exists():  # kernels with CONFIG_SCHED_AUTOGROUP
            assert autogroup.read_text().strip().endswith("nice 19")
        os.killpg(parent.pid, signal.SIGKILL)  # the processor's group only: not the child's session
        parent.wait(10)
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child)
    finally:
        if parent.poll() is None:
            parent.kill()
