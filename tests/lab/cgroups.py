"""Each lab minion gets cgroups of its own on the host, in every cgroup hierarchy.

The lab host's PID 1 is not systemd, so ``systemd-nspawn --keep-unit --register=no``
leaves a container in the cgroups of whoever started it and puts its ``supervisor`` and
``payload`` cgroups below that. Started from the root cgroup, every container of every
lab shared one ``/payload`` subtree in the ``name=systemd`` and cgroup2 hierarchies: the
``salt-minion.service`` processes of all minions of all labs sat in one cgroup, and
systemd in each container watched unit cgroups that other containers kept populated.

So each minion is started inside ``<the lab process's own cgroup>/opskit-lab-<lab>/
<container>`` in every hierarchy (``join_argv``): nspawn puts ``supervisor``/``payload``
below that, and the container's cgroup namespace is rooted there. In the cgroup v1
controller hierarchies (cpu, memory, ...) that subtree is also the only part a Docker
minion's dockerd can write (``docker_minion.py``). The memory hierarchy gets the same
treatment: the per-minion cgroup is a child of the lab process's own memory cgroup, so
whatever accounts for the lab's memory still does.

``down`` removes the subtrees (bottom-up ``rmdir``; they must be empty by then), and
``leftovers`` reports any that remain. Only directories named ``opskit-lab-<this lab>``
are ever touched.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

from tests.lab.config import LabConfig
from tests.lab.procs import LabError

CGROUP_ROOT = pathlib.Path("/sys/fs/cgroup")
# Joins the cgroups named before "--" (by writing its own PID into each cgroup.procs),
# then execs the rest: the process keeps its PID, so the pid file still names nspawn.
JOIN_SCRIPT = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 1; shift; done; shift; exec "$@"'
SEARCH_DEPTH = 6


@dataclasses.dataclass(frozen=True)
class Hierarchy:
    """A mounted cgroup hierarchy: where it is mounted, and how ``/proc/<pid>/cgroup``
    names it (``cpu,cpuacct``, ``memory``, ``name=systemd``, ``""`` for cgroup2)."""

    mount: pathlib.Path
    key: str
    version: int

    @property
    def is_v1_controller(self) -> bool:
        return self.version == 1 and not self.key.startswith("name=")


def parse_hierarchies(mountinfo: str, controllers: set[str]) -> list[Hierarchy]:
    """The cgroup hierarchies in a ``/proc/<pid>/mountinfo`` text, each once (a mount of
    the hierarchy's root; bind mounts of subtrees are skipped)."""
    found: dict[str, Hierarchy] = {}
    for line in mountinfo.splitlines():
        before, sep, after = line.partition(" - ")
        if not sep:
            continue
        fields, tail = before.split(), after.split()
        if len(fields) < 5 or len(tail) < 3 or fields[3] != "/":
            continue
        fstype, options = tail[0], tail[2].split(",")
        if fstype == "cgroup2":
            key, version = "", 2
        elif fstype == "cgroup":
            names = [o for o in options if o in controllers or o.startswith("name=")]
            if not names:
                continue
            key, version = ",".join(sorted(names)), 1
        else:
            continue
        found.setdefault(key, Hierarchy(pathlib.Path(fields[4]), key, version))
    return list(found.values())


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``/proc/<pid>/cgroup`` as {hierarchy key (sorted controller list): path}."""
    paths = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            paths[",".join(sorted(filter(None, parts[1].split(","))))] = parts[2]
    return paths


def _enabled_controllers() -> set[str]:
    with open("/proc/cgroups", encoding="ascii") as handle:
        rows = [line.split() for line in handle if not line.startswith("#")]
    return {row[0] for row in rows if len(row) >= 4 and row[3] == "1"}


def hierarchies() -> list[Hierarchy]:
    """The host's cgroup hierarchies, as mounted in this process's mount namespace."""
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        mountinfo = handle.read()
    return parse_hierarchies(mountinfo, _enabled_controllers())


def lab_dirname(cfg: LabConfig) -> str:
    return f"opskit-lab-{cfg.name}"


def _own_path(hierarchy: Hierarchy) -> str:
    with open("/proc/self/cgroup", encoding="utf-8") as handle:
        own = parse_proc_cgroup(handle.read())
    if hierarchy.key not in own:
        raise LabError(f"this process is in no cgroup of the hierarchy at {hierarchy.mount}")
    return own[hierarchy.key]


def _make(hierarchy: Hierarchy, path: pathlib.Path) -> None:
    """Create ``path`` (and missing parents) in ``hierarchy``. A new cpuset cgroup has no
    CPUs or memory nodes, and no task can join it until it gets its parent's."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for new in reversed(missing):
        new.mkdir()
        if "cpuset" in hierarchy.key.split(","):
            for name in ("cpuset.cpus", "cpuset.mems"):
                if (new / name).read_text(encoding="ascii").strip() == "":
                    parent = (new.parent / name).read_text(encoding="ascii")
                    (new / name).write_text(parent, encoding="ascii")


def prepare(cfg: LabConfig, container: str) -> list[pathlib.Path]:
    """Create the container's cgroups; return the ``cgroup.procs`` files it must join."""
    procs = []
    for hierarchy in hierarchies():
        base = hierarchy.mount / _own_path(hierarchy).lstrip("/")
        path = base / lab_dirname(cfg) / container
        try:
            _make(hierarchy, path)
        except OSError as err:
            raise LabError(
                f"cannot create the cgroup {path} for lab container {container}: {err}"
            ) from err
        procs.append(path / "cgroup.procs")
    return procs


def join_argv(procs: list[pathlib.Path], argv: list[str]) -> list[str]:
    """``argv`` started in the cgroups whose ``cgroup.procs`` files are ``procs``."""
    return ["/bin/sh", "-c", JOIN_SCRIPT, "opskit-lab-cgroup-join", *map(str, procs), "--", *argv]


def find(cfg: LabConfig) -> list[pathlib.Path]:
    """Every ``opskit-lab-<lab>`` cgroup directory of this lab, in every hierarchy."""
    name, found = lab_dirname(cfg), []
    for hierarchy in hierarchies():
        top = len(hierarchy.mount.parts)
        for current, dirs, _ in os.walk(hierarchy.mount):
            here = pathlib.Path(current)
            if here.name == name:
                found.append(here)
                dirs.clear()
            elif len(here.parts) - top >= SEARCH_DEPTH:
                dirs.clear()
            else:
                # other labs' subtrees and Docker's are no place to look for ours
                dirs[:] = [d for d in dirs if d == name or not d.startswith("opskit-lab-")]
    return found


def remove(cfg: LabConfig) -> None:
    """Remove this lab's cgroups, bottom-up (each must be empty: its processes gone)."""
    for top in find(cfg):
        for current, _, _ in os.walk(top, topdown=False):
            try:
                os.rmdir(current)
            except FileNotFoundError:
                pass
            except OSError:
                break  # still in use: reported by leftovers()


def leftovers(cfg: LabConfig) -> list[str]:
    return [f"cgroup {path}" for path in find(cfg)]


def in_lab_cgroup(pid: int, cfg: LabConfig) -> bool:
    """True if ``pid`` is in one of this lab's cgroups (a minion's process, Docker's
    containers included), as seen from this process's cgroup namespace."""
    name = lab_dirname(cfg)
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8") as handle:
            paths = parse_proc_cgroup(handle.read()).values()
    except OSError:
        return False
    return any(name in path.split("/") for path in paths)
