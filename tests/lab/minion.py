"""One lab minion: an overlay of the cached image booted by ``systemd-nspawn --boot``.

systemd is PID 1 inside; the container sits on the lab bridge with a static address
and runs salt-minion pointed at the lab master. Commands are run inside with
``nsenter`` against the container's PID 1 (the host has no machined to ask). Each
minion runs in cgroups of its own (``cgroups.py``). A Docker minion (``spec.docker``)
boots with the Docker layer under its overlay and the options ``docker_minion.py``
explains.
"""

from __future__ import annotations

import dataclasses
import pathlib
import shutil
import subprocess
import uuid

from tests.lab import cgroups
from tests.lab import docker_minion
from tests.lab.config import LabConfig
from tests.lab.image import unmount_under
from tests.lab.procs import LabError
from tests.lab.procs import ProcessRegistry
from tests.lab.procs import container_init
from tests.lab.procs import log_tail
from tests.lab.procs import wait_for

CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclasses.dataclass(frozen=True)
class MinionSpec:
    """Identity of a lab minion.

    ``machine`` is the host name inside; ``container`` is the nspawn machine name, unique
    per lab (``m<subnet octet>-<index>``), which also names the host side of its veth
    (``vb-<container>``), so two labs never fight over an interface name.
    """

    minion_id: str
    machine: str
    ip: str
    container: str
    docker: bool = False

    @property
    def veth(self) -> str:
        return f"vb-{self.container}"


class Minion:
    """A lab minion container and the files that back it."""

    def __init__(self, cfg: LabConfig, spec: MinionSpec, registry: ProcessRegistry):
        self.cfg = cfg
        self.spec = spec
        self.registry = registry
        self.base = cfg.minions_dir / spec.machine
        self.root = self.base / "root"  # the overlay the container boots
        self.upper = self.base / "upper"
        self.work = self.base / "work"
        self.data_root = self.base / "docker"  # a Docker minion's /var/lib/docker

    @property
    def process_name(self) -> str:
        return f"minion-{self.spec.machine}"

    @property
    def propagate_dir(self) -> pathlib.Path:
        """Where nspawn keeps this container's mount-propagation directory."""
        return pathlib.Path("/run/systemd/nspawn/propagate") / self.spec.container

    @property
    def minion_id(self) -> str:
        return self.spec.minion_id

    # Lifecycle ---------------------------------------------------------------------
    def prepare(
        self,
        image: pathlib.Path,
        layers: tuple[pathlib.Path, ...] = (),
        peers: tuple[MinionSpec, ...] = (),
    ) -> None:
        """Mount a fresh overlay of ``image`` (under the read-only ``layers``, topmost
        first) and write this minion's identity into it; ``peers`` (the lab's other
        minions) get /etc/hosts entries, since the lab has no DNS and a monitoring host
        scrapes the others by name."""
        for path in (self.root, self.upper, self.work):
            path.mkdir(parents=True, exist_ok=True)
        if self.spec.docker:
            docker_minion.mount_data_root(self.data_root)
        lower = ":".join(str(path) for path in (*layers, image))
        options = f"lowerdir={lower},upperdir={self.upper},workdir={self.work}"
        proc = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", options, str(self.root)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise LabError(f"cannot mount the overlay for {self.minion_id}: {proc.stderr.strip()}")
        self._write_identity(peers)

    def _write_identity(self, peers: tuple[MinionSpec, ...]) -> None:
        cfg, spec = self.cfg, self.spec
        others = "".join(
            f"{peer.ip} {peer.minion_id} {peer.machine}\n" for peer in peers if peer != spec
        )
        files = {
            "etc/hostname": f"{spec.machine}\n",
            "etc/machine-id": uuid.uuid4().hex + "\n",
            "etc/hosts": (
                f"127.0.0.1 localhost\n{spec.ip} {spec.minion_id} {spec.machine}\n"
                f"{cfg.host_ip} salt lab-host\n{others}"
            ),
            "etc/systemd/network/10-host0.network": (
                "[Match]\nName=host0\n\n[Network]\n"
                f"Address={spec.ip}/{cfg.subnet.prefixlen}\nLinkLocalAddressing=no\n"
                "IPv6AcceptRA=no\n"
            ),
            "etc/salt/minion.d/lab.conf": (
                f"id: {spec.minion_id}\nmaster: {cfg.host_ip}\n"
                f"publish_port: {cfg.ports.master_publish}\n"
                f"master_port: {cfg.ports.master_return}\n"
                "acceptance_wait_time: 2\nrandom_reauth_delay: 0\n"
                "recon_default: 500\nrecon_max: 2000\nlog_level_logfile: info\n"
            ),
            "etc/apt/apt.conf.d/01opskit-lab-proxy": (
                f'Acquire::http::Proxy "http://{cfg.host_ip}:{cfg.ports.apt_proxy}";\n'
                'Acquire::Retries "3";\n'
            ),
            # Lab containers are small: no recommended packages, no documentation.
            "etc/apt/apt.conf.d/02opskit-lab-slim": 'APT::Install-Recommends "false";\n',
            "etc/dpkg/dpkg.cfg.d/01opskit-lab-nodoc": (
                "path-exclude=/usr/share/doc/*\npath-exclude=/usr/share/man/*\n"
                "path-include=/usr/share/doc/*/copyright\n"
            ),
        }
        for relative, content in files.items():
            path = self.root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")

    def start(self) -> None:
        argv = [
            "systemd-nspawn",
            "--quiet",
            "--boot",
            f"--directory={self.root}",
            f"--machine={self.spec.container}",
            f"--hostname={self.spec.machine}",
            "--register=no",
            "--keep-unit",
            f"--network-bridge={self.cfg.bridge}",
            "--console=passive",
            "--resolv-conf=off",
            "--timezone=off",
            "--link-journal=no",
        ]
        if self.spec.docker:
            argv += docker_minion.nspawn_args(self.data_root)
        argv = cgroups.join_argv(cgroups.prepare(self.cfg, self.spec.container), argv)
        self.registry.spawn(self.process_name, argv, self.cfg.logs_dir / f"{self.process_name}.log")

    def leader_pid(self) -> int | None:
        """PID (on the host) of the container's systemd, or None if it is not running."""
        nspawn = self.registry.pid_of(self.process_name)
        return None if nspawn is None else container_init(nspawn)

    def wait_booted(self, timeout: float = 90) -> None:
        """Wait until systemd inside reports the system running (or degraded)."""

        log = self.cfg.logs_dir / f"{self.process_name}.log"

        def booted():
            if self.registry.pid_of(self.process_name) is None:
                raise LabError(
                    f"systemd-nspawn for {self.minion_id} exited while booting; "
                    f"the end of {log}:\n{log_tail(log)}"
                )
            leader = self.leader_pid()
            if leader is None:
                return False  # the container's PID 1 does not exist yet
            # One PID for the whole check: if the container stops in between, nsenter
            # fails, this poll says "not yet" and the next one reports nspawn's exit.
            systemctl = ["systemctl", "is-system-running"]
            state = self._nsenter(leader, systemctl, timeout=15).stdout.strip()
            return state in ("running", "degraded")

        wait_for(
            f"minion {self.minion_id} to boot (systemctl is-system-running)",
            booted,
            timeout,
            hint=f"See {log}.",
        )

    def stop(self, timeout: float = 30) -> None:
        """Shut the container down (nspawn forwards SIGTERM as an orderly halt), unmount."""
        self.registry.stop(self.process_name, timeout=timeout)
        unmount_under(self.root)

    def remove_debris(self) -> None:
        """Remove what a killed nspawn leaves on the host: its veth, its propagate dir."""
        if pathlib.Path(f"/sys/class/net/{self.spec.veth}").exists():
            subprocess.run(
                ["ip", "link", "delete", self.spec.veth], check=False, capture_output=True
            )
        if self.propagate_dir.exists():
            unmount_under(self.propagate_dir)
            shutil.rmtree(self.propagate_dir, ignore_errors=True)

    def debris(self) -> list[str]:
        found = []
        if self.data_root.exists():
            found.append(f"Docker data root {self.data_root} of {self.minion_id}")
        if pathlib.Path(f"/sys/class/net/{self.spec.veth}").exists():
            found.append(f"interface {self.spec.veth} of {self.minion_id}")
        if self.propagate_dir.exists():
            found.append(f"directory {self.propagate_dir}")
        return found

    # Commands ----------------------------------------------------------------------
    def run(
        self,
        argv: list[str],
        check: bool = True,
        timeout: float = 120,
        input_text: str | None = None,
    ) -> subprocess.CompletedProcess:
        """Run ``argv`` inside the container as root; raise LabError on failure if ``check``."""
        leader = self.leader_pid()
        if leader is None:
            raise LabError(f"minion {self.minion_id} is not running")
        proc = self._nsenter(leader, argv, timeout=timeout, input_text=input_text)
        if check and proc.returncode != 0:
            raise LabError(
                f"on {self.minion_id}: {' '.join(argv)} exited {proc.returncode}: "
                f"{(proc.stderr or proc.stdout).strip()[-2000:]}"
            )
        return proc

    @staticmethod
    def _nsenter(
        leader: int, argv: list[str], timeout: float = 120, input_text: str | None = None
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["nsenter", f"--target={leader}", "--all", "--", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input_text,
            env={"PATH": CONTAINER_PATH, "LANG": "C.UTF-8", "HOME": "/root", "TERM": "dumb"},
            check=False,
        )

    def read_file(self, path: str) -> str:
        return self.run(["cat", path]).stdout
