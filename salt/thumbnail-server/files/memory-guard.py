#!/usr/bin/python3
"""opskit memory guard -- managed by Salt (opskit thumbnail-server formula).

Restarts a systemd service whose resident memory stays above a limit, for hosts where
the kernel cannot enforce the unit's MemoryMax= (no cgroup memory controller: cgroup v1
hosts without it, or containers to which it is not delegated). Where MemoryMax= works,
the kernel acts first and this guard never fires.

Every INTERVAL seconds it sums VmRSS of the unit's processes (from the unit's cgroup,
or its main process and that process's descendants). After SAMPLES consecutive samples
above LIMIT MiB it logs what it saw and sends SIGKILL to the unit's processes, as the
kernel's OOM killer would under MemoryMax=; the unit's Restart= brings the service
back. Then it waits for a new main process before it samples again.

With --textfile PATH it also writes what it samples, for node_exporter's textfile
collector (when PATH's directory exists): the unit's resident memory, its limit and
systemd's restart count (NRestarts), as opskit_service_memory_rss_bytes,
opskit_service_memory_limit_bytes and opskit_service_restarts_total{unit="..."}, which
the monitoring formula's ServiceMemoryNearLimit and ServiceRestarting alerts read.

Usage: memory-guard --unit NAME.service --limit-mb N [--interval S] [--samples N]
                    [--textfile PATH]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

CGROUP_ROOTS = ("/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup")


def log(message: str) -> None:
    print(message, flush=True)


def show(unit: str, prop: str) -> str:
    proc = subprocess.run(
        ["systemctl", "show", "--property", prop, "--value", unit],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip()


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def cgroup_pids(control_group: str) -> list[int] | None:
    if not control_group:
        return None
    for root in CGROUP_ROOTS:
        path = f"{root}{control_group}/cgroup.procs"
        try:
            with open(path, encoding="ascii") as handle:
                return [int(line) for line in handle if line.strip()]
        except OSError:
            continue
    return None


def descendants(main_pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [main_pid]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def sample(unit: str) -> tuple[int, int, int]:
    """(main pid, number of processes, summed VmRSS in KiB)."""
    main_pid = int(show(unit, "MainPID") or 0)
    if not main_pid:
        return 0, 0, 0
    pids = cgroup_pids(show(unit, "ControlGroup")) or descendants(main_pid)
    return main_pid, len(pids), sum(rss_kib(pid) for pid in pids)


METRICS = (
    ("opskit_service_memory_rss_bytes", "gauge", "Resident memory of the unit's processes."),
    ("opskit_service_memory_limit_bytes", "gauge", "The unit's memory limit."),
    ("opskit_service_restarts_total", "counter", "Restarts of the unit by systemd (NRestarts)."),
)


def write_metrics(path: str, unit: str, rss: int, limit: int) -> bool:
    """Replace ``path`` (Prometheus text format) atomically; False when its directory
    does not exist (node_exporter's textfile collector is not set up here)."""
    if not os.path.isdir(os.path.dirname(path)):
        return False
    restarts = show(unit, "NRestarts")
    label = unit.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    values = (rss, limit, int(restarts) if restarts.isdigit() else None)
    lines = []
    for (name, kind, text), value in zip(METRICS, values, strict=True):
        if value is not None:
            lines += [
                f"# HELP {name} {text}",
                f"# TYPE {name} {kind}",
                f'{name}{{unit="{label}"}} {value}',
            ]
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--unit", required=True)
    parser.add_argument("--limit-mb", type=int, required=True)
    parser.add_argument("--interval", type=float, default=10)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--textfile", help="node_exporter textfile collector file to write")
    args = parser.parse_args(argv)
    limit_kib = args.limit_mb * 1024
    log(
        f"guarding {args.unit}: restart when its processes' resident memory exceeds "
        f"{args.limit_mb} MiB in {args.samples} consecutive samples, {args.interval:g}s apart"
    )
    over, killed_pid, reported = 0, 0, ""
    while True:
        main_pid, count, rss = sample(args.unit)
        if args.textfile:
            try:
                written = write_metrics(args.textfile, args.unit, rss * 1024, limit_kib * 1024)
                problem = None if written else f"{os.path.dirname(args.textfile)} does not exist"
            except OSError as err:
                problem = str(err)
            if problem != reported:  # say it once, and again when it changes
                log(
                    f"metrics for node_exporter not written to {args.textfile}: {problem}"
                    if problem
                    else f"writing metrics to {args.textfile}"
                )
                reported = problem
        if killed_pid and main_pid in (0, killed_pid):
            over = 0  # wait for Restart= to bring up a new main process
        elif rss > limit_kib:
            killed_pid = 0
            over += 1
            if over >= args.samples:
                log(
                    f"{args.unit}: {count} process(es) of main PID {main_pid} use "
                    f"{rss // 1024} MiB, above the limit of {args.limit_mb} MiB for {over} "
                    "samples: sending SIGKILL (Restart= restarts it)"
                )
                subprocess.run(["systemctl", "kill", "--signal=SIGKILL", args.unit], check=False)
                killed_pid, over = main_pid, 0
        else:
            killed_pid, over = 0, 0
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
