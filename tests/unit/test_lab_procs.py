"""The lab's process registry: when a stopped process really counts as gone."""

from __future__ import annotations

import pathlib
import signal
import subprocess
import sys
import time

from tests.lab.procs import is_running

# The leader thread leaves with pthread_exit() while another thread sleeps on: the
# leader shows as a zombie although the process (and its open files) lives on. A
# killed multi-threaded server passes through the same state on its way out.
LEADER_EXITS_FIRST = (
    "import ctypes, threading, time\n"
    "threading.Thread(target=time.sleep, args=(60,)).start()\n"
    "ctypes.CDLL(None).pthread_exit(None)\n"
)


def _state(pid: int) -> str:
    raw = pathlib.Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2]


def test_a_zombie_leader_with_live_threads_is_still_running():
    proc = subprocess.Popen([sys.executable, "-c", LEADER_EXITS_FIRST])
    try:
        deadline = time.monotonic() + 10
        while _state(proc.pid) != "Z" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _state(proc.pid) == "Z"
        assert is_running(proc.pid)
        proc.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 10
        while is_running(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not is_running(proc.pid)
        # is_running reaped its own child on the way.
        assert not pathlib.Path(f"/proc/{proc.pid}").exists()
    finally:
        proc.kill()
