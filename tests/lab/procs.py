"""Start, track and stop the lab's long-running processes by PID.

Each process is started in its own session (so its whole process group can be
signalled) and recorded in ``<run_dir>/<name>.pid`` together with its creation time
(psutil): a recorded PID is only ever signalled while it still belongs to the process
the lab started, never to an unrelated process that reused the number.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pathlib
import signal
import subprocess
import time

import psutil


class LabError(RuntimeError):
    """Something in the lab did not come up or did not go away; the message says what."""


def start_time(pid: int) -> float | None:
    """The process's creation time (seconds since the epoch), or None if it is gone."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return None


def _same_start(recorded, pid: int) -> bool:
    """True if ``pid`` is still the process whose start time was ``recorded``.

    Pid files written before the lab used psutil hold clock ticks since boot (an int
    from /proc/<pid>/stat); psutil's creation time is boot time + ticks / CLK_TCK.
    """
    current = start_time(pid)
    if current is None or recorded is None:
        return False
    if isinstance(recorded, int):
        recorded = psutil.boot_time() + recorded / os.sysconf("SC_CLK_TCK")
    return abs(current - recorded) < 0.05


def is_running(pid: int) -> bool:
    """True while ``pid`` exists and has not exited (zombies count as exited).

    A killed multi-threaded process shows its leader as a zombie while its other threads
    are still exiting, and its file descriptors (a listening socket, say) stay open until
    the last one is gone; such a process still counts as running.
    """
    try:
        process = psutil.Process(pid)
        if process.status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return True
        if any(thread.id != pid for thread in process.threads()):
            return True
    except psutil.NoSuchProcess:
        return False
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
    return False


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (oldest first)."""
    try:
        kids = psutil.Process(pid).children()
    except psutil.NoSuchProcess:
        return []
    return [kid.pid for kid in sorted(kids, key=_creation_order)]


def tail_lines(text: str, lines: int = 15) -> str:
    """The last ``lines`` lines of ``text`` (a command's output, a log), for messages."""
    return "\n".join(text.strip().splitlines()[-lines:])


def log_tail(path: pathlib.Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log file, or a note saying it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        return f"(cannot read {path}: {err.strerror})"
    return tail_lines(text, lines)


def pid_namespace(pid: int) -> str | None:
    """The PID namespace ``pid`` runs in (``pid:[inode]``), or None if it is gone."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def container_init(pid: int) -> int | None:
    """The direct child of ``pid`` that runs in a PID namespace of its own, or None.

    ``systemd-nspawn`` starts a container in two steps (src/nspawn/nspawn.c): it clones
    an "outer child" with ``CLONE_NEWNS`` only (``run``/``run_container``), which clones
    the "inner child", the container's PID 1, with the requested namespaces, PID among
    them (``outer_child``), and exits. Until then nspawn's only child is the outer one,
    and entering *its* namespaces reaches the host's systemd, not the container's.
    """
    own = pid_namespace(pid)
    for kid in children(pid):
        namespace = pid_namespace(kid)
        if namespace is not None and namespace != own:
            return kid
    return None


def _creation_order(process) -> tuple:
    try:
        return (process.create_time(), process.pid)
    except psutil.NoSuchProcess:
        return (float("inf"), process.pid)


class ProcessRegistry:
    """The lab's processes, recorded as pid files in one directory."""

    def __init__(self, run_dir: pathlib.Path):
        self.run_dir = run_dir

    def _pidfile(self, name: str) -> pathlib.Path:
        return self.run_dir / f"{name}.pid"

    def spawn(
        self,
        name: str,
        argv: list[str],
        log_path: pathlib.Path,
        env: dict[str, str] | None = None,
        cwd: pathlib.Path | None = None,
    ) -> int:
        """Start ``argv`` detached in a new session, output to ``log_path``; return its PID."""
        if self.pid_of(name) is not None:
            raise LabError(f"lab process {name!r} is already running (pid {self.pid_of(name)})")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log, open(os.devnull, "rb") as devnull:
            proc = subprocess.Popen(
                argv,
                stdin=devnull,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        record = {"pid": proc.pid, "start_time": start_time(proc.pid), "argv": argv}
        self._pidfile(name).write_text(json.dumps(record), encoding="utf-8")
        return proc.pid

    def pid_of(self, name: str) -> int | None:
        """PID of the named process if it is still the one the lab started, else None."""
        try:
            record = json.loads(self._pidfile(name).read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None
        pid = record["pid"]
        if not is_running(pid) or not _same_start(record["start_time"], pid):
            return None
        return pid

    def names(self) -> list[str]:
        if not self.run_dir.is_dir():
            return []
        return sorted(p.stem for p in self.run_dir.glob("*.pid"))

    def stop(self, name: str, timeout: float = 30.0, sig: int = signal.SIGTERM) -> None:
        """Signal the process group of ``name``; SIGKILL it if it outlives ``timeout``."""
        pid = self.pid_of(name)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
            deadline = time.monotonic() + timeout
            while is_running(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if is_running(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                deadline = time.monotonic() + 10
                while is_running(pid) and time.monotonic() < deadline:
                    time.sleep(0.2)
                if is_running(pid):
                    raise LabError(f"lab process {name!r} (pid {pid}) survived SIGKILL")
        self._pidfile(name).unlink(missing_ok=True)

    def stop_all(self, timeout: float = 30.0) -> None:
        for name in self.names():
            self.stop(name, timeout=timeout)


def wait_for(what: str, check, timeout: float, interval: float = 0.5, hint: str = ""):
    """Poll ``check()`` until it returns a truthy value; raise LabError naming ``what``.

    A LabError raised by ``check`` (say, the process being waited for has exited) ends
    the wait at once; other exceptions count as "not yet" and are reported on timeout.
    """
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except LabError:
            raise
        except Exception as err:  # noqa: BLE001 - reported below if it never succeeds
            last_error = err
        else:
            if value:
                return value
        time.sleep(interval)
    detail = f" (last error: {last_error})" if last_error else ""
    raise LabError(f"timed out after {timeout:.0f}s waiting for {what}{detail}. {hint}".strip())


@contextlib.contextmanager
def file_lock(lock_path: pathlib.Path):
    """Hold an exclusive lock on ``lock_path`` (shared caches are built by one lab at a time)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
