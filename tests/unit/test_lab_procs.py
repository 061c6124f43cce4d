"""The lab's process registry: when a stopped process really counts as gone, and when a
recorded PID still names the process the lab started."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import psutil
import pytest

from tests.lab.procs import ProcessRegistry
from tests.lab.procs import children
from tests.lab.procs import container_init
from tests.lab.procs import is_running
from tests.lab.procs import start_time

# The leader thread leaves with pthread_exit() while another thread sleeps on: the
# leader shows as a zombie although the process (and its open files) lives on. A
# killed multi-threaded server passes through the same state on its way out.
LEADER_EXITS_FIRST = (
    "import ctypes, threading, time\n"
    "threading.Thread(target=time.sleep, args=(60,)).start()\n"
    "ctypes.CDLL(None).pthread_exit(None)\n"
)


def _state(pid: int) -> str:
    """The state letter straight from the kernel, independent of the code under test."""
    raw = pathlib.Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2]


def test_a_zombie_leader_with_live_threads_is_still_running():
    proc = subprocess.Popen([sys.executable, "-c", LEADER_EXITS_FIRST])
    try:
        deadline = time.monotonic() + 10
        while _state(proc.pid) != "Z" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _state(proc.pid) == "Z"
        assert len(os.listdir(f"/proc/{proc.pid}/task")) == 2  # leader + the sleeper
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


def test_a_recorded_pid_counts_only_while_its_start_time_matches(tmp_path):
    registry = ProcessRegistry(tmp_path / "run")
    pid = registry.spawn("sleeper", ["sleep", "60"], tmp_path / "sleeper.log")
    pidfile = tmp_path / "run" / "sleeper.pid"
    try:
        assert registry.pid_of("sleeper") == pid
        record = json.loads(pidfile.read_text())
        assert record["start_time"] == start_time(pid)
        # A pid file from before psutil: start time in clock ticks since boot.
        ticks = int(pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        pidfile.write_text(json.dumps({**record, "start_time": ticks}))
        assert registry.pid_of("sleeper") == pid
        # The same number, another process (a reused PID): never ours.
        pidfile.write_text(json.dumps({**record, "start_time": record["start_time"] - 5}))
        assert registry.pid_of("sleeper") is None
        pidfile.write_text(json.dumps(record))
        registry.stop("sleeper", timeout=5)
        assert not is_running(pid)
        assert registry.pid_of("sleeper") is None
        assert start_time(pid) is None
    finally:
        if psutil.pid_exists(pid) and is_running(pid):
            os.kill(pid, signal.SIGKILL)


def test_children_are_listed_oldest_first():
    code = (
        "import subprocess, time\n"
        "a = subprocess.Popen(['sleep', '60']); time.sleep(0.05)\n"
        "b = subprocess.Popen(['sleep', '60'])\n"
        "print(a.pid, b.pid, flush=True); time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        first, second = (int(p) for p in parent.stdout.readline().split())
        assert children(parent.pid) == [first, second]
        assert children(first) == []
    finally:
        for kid in psutil.Process(parent.pid).children():
            kid.kill()
        parent.kill()
        parent.wait()
    assert children(parent.pid) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="a new PID namespace needs root (CAP_SYS_ADMIN)")
def test_container_init_is_the_child_in_a_new_pid_namespace_not_the_older_one():
    """The shape systemd-nspawn has while it starts a container: an older child in its own
    PID namespace (the outer child) and a newer one in a new namespace (PID 1 inside).
    Only the second is the container's init; before it exists there is none."""
    code = (
        "import ctypes, os, subprocess, sys\n"
        "outer = subprocess.Popen(['sleep', '60'])\n"
        "print(outer.pid, flush=True); sys.stdin.readline()\n"
        "if ctypes.CDLL(None, use_errno=True).unshare(0x20000000) != 0:  # CLONE_NEWPID\n"
        "    raise OSError(ctypes.get_errno(), 'unshare')\n"
        "inner = subprocess.Popen(['sleep', '60'])\n"
        "print(inner.pid, flush=True); sys.stdin.readline()\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        outer = int(parent.stdout.readline())
        assert children(parent.pid) == [outer]
        assert container_init(parent.pid) is None
        parent.stdin.write("\n")
        parent.stdin.flush()
        inner = int(parent.stdout.readline())
        assert children(parent.pid) == [outer, inner]
        assert container_init(parent.pid) == inner
        assert container_init(inner) is None
    finally:
        for kid in psutil.Process(parent.pid).children():
            kid.kill()
        parent.kill()
        parent.wait()
    assert container_init(parent.pid) is None
