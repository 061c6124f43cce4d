"""Bring the lab up, talk to it, and take it down again.

``Lab.up()`` removes whatever a previous lab of the same name left behind, then starts,
in order: the bridge and its firewall table, the apt proxy, the sample CMDB (seeded
from ``inventory.yaml``), the artifact mirror, the master host (salt-factories), and the
minion containers, and waits until every minion answers ``test.ping``. ``Lab.down()``
stops all of it by PID, unmounts the overlays, removes the bridge and the table, and
fails loudly if anything is left. Every wait is bounded and names what did not come up.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import pathlib
import secrets
import shutil
import signal
import subprocess
import time

import psutil
import yaml

from tests.lab import artifacts
from tests.lab import cgroups
from tests.lab import docker_images
from tests.lab import docker_minion
from tests.lab import image
from tests.lab import network
from tests.lab.cmdb_server import Store
from tests.lab.config import REPO
from tests.lab.config import VENV
from tests.lab.config import LabConfig
from tests.lab.master import cmdb_ca_file
from tests.lab.master import cmdb_credentials_file
from tests.lab.master import cmdb_password_file
from tests.lab.master import cmdb_webhook_secret_file
from tests.lab.minion import Minion
from tests.lab.minion import MinionSpec
from tests.lab.procs import LabError
from tests.lab.procs import ProcessRegistry
from tests.lab.procs import is_running
from tests.lab.procs import wait_for
from tests.lab.supervisor import READY_FILE

INVENTORY = pathlib.Path(__file__).with_name("inventory.yaml")
PYTHON = str(VENV / "bin" / "python")


def load_inventory() -> dict[str, dict]:
    """minion id -> CMDB record, from inventory.yaml."""
    return yaml.safe_load(INVENTORY.read_text(encoding="utf-8"))["minions"]


class SaltResult:
    """Outcome of a salt CLI call: return code, parsed JSON per minion, raw output."""

    def __init__(self, proc: subprocess.CompletedProcess):
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        try:
            self.data = json.loads(proc.stdout) if proc.stdout.strip() else {}
        except ValueError:
            self.data = None

    def __repr__(self):
        return (
            f"SaltResult(rc={self.returncode}, data={self.data!r}, stderr={self.stderr[-500:]!r})"
        )


class Lab:
    """One lab instance (named by ``LabConfig.name``)."""

    def __init__(self, cfg: LabConfig | None = None, inventory: dict[str, dict] | None = None):
        self.cfg = cfg or LabConfig.from_env()
        self.inventory = inventory if inventory is not None else load_inventory()
        self.registry = ProcessRegistry(self.cfg.run_dir)
        octet = int(self.cfg.subnet.network_address) >> 8 & 0xFF
        self.specs = [
            MinionSpec(
                minion_id=minion_id,
                machine=minion_id.split(".")[0],
                ip=self.cfg.minion_ip(index),
                container=f"m{octet}-{index}",
                docker=_wants_docker(record),
            )
            for index, (minion_id, record) in enumerate(self.inventory.items())
        ]
        self.minions = {s.minion_id: Minion(self.cfg, s, self.registry) for s in self.specs}
        self._container_rootfs: pathlib.Path | None = None  # Docker minions' images

    # Environment for lab subprocesses (they rebuild the same LabConfig from it) -------
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "OPSKIT_LAB_NAME": self.cfg.name,
                "OPSKIT_LAB_CACHE": str(self.cfg.cache_dir),
                "OPSKIT_LAB_STATE": str(self.cfg.state_root),
                "OPSKIT_LAB_SUBNET": str(self.cfg.subnet),
                "PYTHONPATH": str(REPO),
            }
        )
        return env

    @staticmethod
    def _say(message: str) -> None:
        print(f"[lab] {message}", flush=True)

    # Up ------------------------------------------------------------------------------
    def up(self) -> None:
        if os.geteuid() != 0:
            raise LabError("the lab needs root (bridge, nftables, systemd-nspawn)")
        started = time.monotonic()
        self._say(f"lab {self.cfg.name!r}: removing anything a previous run left behind")
        self.down(quiet=True)
        shutil.rmtree(self.cfg.logs_dir, ignore_errors=True)
        image_root = image.ensure_image(self.cfg)
        docker_layers: tuple[pathlib.Path, ...] = ()
        if any(spec.docker for spec in self.specs):
            docker_layers = (docker_minion.ensure_layer(self.cfg, image_root),)
            self._container_rootfs = docker_images.ensure_rootfs(self.cfg, image_root)
        mirror_root = artifacts.ensure_mirror(self.cfg)
        for path in (self.cfg.run_dir, self.cfg.logs_dir, self.cfg.cmdb_dir):
            path.mkdir(parents=True, exist_ok=True)
        try:
            self._say(f"bridge {self.cfg.bridge} {self.cfg.host_ip}/{self.cfg.subnet.prefixlen}")
            network.create(self.cfg)
            self._start_apt_proxy()
            self._start_cmdb()
            self._start_mirror(mirror_root)
            self._start_master()
            self._start_minions(image_root, docker_layers)
            self._wait_for_pings()
        except BaseException:
            self._say("bring-up failed; tearing down what was started")
            self.down(quiet=True)
            raise
        state = {"minions": [vars(s) for s in self.specs], "started": time.time()}
        (self.cfg.run_dir / "lab.json").write_text(json.dumps(state), encoding="utf-8")
        self._say(f"lab up in {time.monotonic() - started:.0f}s: {', '.join(self.minions)}")

    def _start_apt_proxy(self) -> None:
        cfg = self.cfg
        cfg.apt_cache_dir.mkdir(parents=True, exist_ok=True)
        (cfg.logs_dir / "apt-cacher-ng").mkdir(parents=True, exist_ok=True)
        # Our own configuration, not /etc/apt-cacher-ng: Debian's default remaps
        # deb.debian.org to the backends listed there, which need not be reachable.
        # Without remaps apt-cacher-ng is a plain caching proxy for what apt asks for.
        conf_dir = cfg.state_dir / "apt-cacher-ng"
        conf_dir.mkdir(parents=True, exist_ok=True)
        (conf_dir / "acng.conf").write_text(
            "SupportDir: /usr/lib/apt-cacher-ng\nExThreshold: 30\nFreshIndexMaxAge: 120\n",
            encoding="utf-8",
        )
        argv = [
            "/usr/sbin/apt-cacher-ng",
            "-c",
            str(conf_dir),
            "ForeGround=1",
            f"Port={cfg.ports.apt_proxy}",
            f"BindAddress={cfg.host_ip}",
            f"CacheDir={cfg.apt_cache_dir}",
            f"LogDir={cfg.logs_dir / 'apt-cacher-ng'}",
            f"PidFile={cfg.run_dir / 'apt-cacher-ng.daemon.pid'}",
            f"SocketPath={cfg.run_dir / 'apt-cacher-ng.socket'}",
        ]
        self.registry.spawn("apt-proxy", argv, cfg.logs_dir / "apt-proxy.log")
        self._wait_for_port(
            "apt proxy (apt-cacher-ng)", cfg.host_ip, cfg.ports.apt_proxy, "apt-proxy"
        )

    def _start_cmdb(self) -> None:
        import trustme

        cfg = self.cfg
        ca = trustme.CA()
        server_cert = ca.issue_cert(cfg.host_ip)
        ca.cert_pem.write_to_path(str(cmdb_ca_file(cfg)))
        chain, key = cfg.cmdb_dir / "server.pem", cfg.cmdb_dir / "server.key"
        server_cert.cert_chain_pems[0].write_to_path(str(chain))
        for blob in server_cert.cert_chain_pems[1:]:
            blob.write_to_path(str(chain), append=True)
        server_cert.private_key_pem.write_to_path(str(key))
        password = secrets.token_urlsafe(24)
        _write_private(
            cmdb_credentials_file(cfg), json.dumps({"username": "salt", "password": password})
        )
        _write_private(cmdb_password_file(cfg), password + "\n")
        _write_private(cmdb_webhook_secret_file(cfg), secrets.token_urlsafe(32) + "\n")
        key.chmod(0o600)

        store = Store(cfg.cmdb_dir / "cmdb.sqlite")
        for minion_id, record in self.inventory.items():
            store.put(minion_id, record)
        self.start_cmdb()

    def start_cmdb(
        self, latency_ms: float = 0.0, extra_args: list[str] | None = None, webhook: bool = False
    ) -> None:
        """(Re)start the sample CMDB process; tests stop and start it to simulate outages.

        ``webhook``: post a signed webhook to salt-api's ``/hook/cmdb`` on every edit
        (off by default, so that tests editing records decide when minions apply).
        """
        cfg = self.cfg
        if webhook:
            extra_args = [
                "--webhook-url",
                self.cmdb_webhook_url,
                "--webhook-secret-file",
                str(cmdb_webhook_secret_file(cfg)),
                *(extra_args or []),
            ]
        argv = [
            PYTHON,
            "-m",
            "tests.lab.cmdb_server",
            "--db",
            str(cfg.cmdb_dir / "cmdb.sqlite"),
            "--listen",
            f"{cfg.host_ip}:{cfg.ports.cmdb}",
            "--credentials",
            str(cmdb_credentials_file(cfg)),
            "--tls-cert",
            str(cfg.cmdb_dir / "server.pem"),
            "--tls-key",
            str(cfg.cmdb_dir / "server.key"),
            "--request-log",
            str(cfg.logs_dir / "cmdb-requests.jsonl"),
            "--latency-ms",
            str(latency_ms),
            *(extra_args or []),
        ]
        self.registry.spawn("cmdb", argv, cfg.logs_dir / "cmdb.log", env=self.env(), cwd=REPO)
        self._wait_for_port("sample CMDB", cfg.host_ip, cfg.ports.cmdb, "cmdb")

    def stop_cmdb(self) -> None:
        self.registry.stop("cmdb", timeout=10)

    def _start_mirror(self, mirror_root: pathlib.Path) -> None:
        cfg = self.cfg
        argv = [
            PYTHON,
            "-m",
            "tests.lab.mirror_server",
            "--root",
            str(mirror_root),
            "--listen",
            f"{cfg.host_ip}:{cfg.ports.mirror}",
            "--lab-state",
            str(cfg.state_dir),
        ]
        self.registry.spawn("mirror", argv, cfg.logs_dir / "mirror.log", env=self.env(), cwd=REPO)
        self._wait_for_port("artifact mirror", cfg.host_ip, cfg.ports.mirror, "mirror")

    def _start_master(self) -> None:
        self._say("starting salt-master and salt-api (pytest-salt-factories)")
        argv = [PYTHON, "-m", "tests.lab.supervisor", "--lab-state", str(self.cfg.state_dir)]
        self.registry.spawn(
            "supervisor", argv, self.cfg.logs_dir / "supervisor.out", env=self.env(), cwd=REPO
        )

        def ready():
            if self.registry.pid_of("supervisor") is None:
                raise LabError("the lab master host exited")
            return (self.cfg.run_dir / READY_FILE).exists()

        wait_for(
            "salt-master and salt-api to start",
            ready,
            timeout=180,
            hint=(
                f"See {self.cfg.logs_dir / 'supervisor.log'} "
                f"and {self.cfg.master_root}/lab-master/logs."
            ),
        )

    def _start_minions(
        self, image_root: pathlib.Path, docker_layers: tuple[pathlib.Path, ...]
    ) -> None:
        self._say(f"booting {len(self.minions)} minions with systemd-nspawn")
        for minion in self.minions.values():
            minion.prepare(
                image_root,
                docker_layers if minion.spec.docker else (),
                peers=tuple(self.specs),
            )
            minion.start()
        first, *others = self.minions.values()
        with concurrent.futures.ThreadPoolExecutor(len(self.minions)) as pool:
            list(pool.map(lambda m: m.wait_booted(timeout=120), self.minions.values()))
            # Fresh package lists through the lab's apt proxy, so formulas install current
            # packages no matter how old the cached image is. One minion refreshes the
            # proxy's indexes first: apt-cacher-ng renews a stale index by moving it to
            # "<file>.<unix time>", and two clients renewing the same index within one
            # second collide ("Failure to move file ... File exists" in apt-cacher.err),
            # leaving one of them hanging until apt gives up. The others then get the
            # renewed copy, which stays fresh for FreshIndexMaxAge (acng.conf).
            self._apt_update(first)
            list(pool.map(self._apt_update, others))
            list(pool.map(self._ready_docker, self.minions.values()))

    def _ready_docker(self, minion: Minion) -> None:
        if minion.spec.docker:
            started = time.monotonic()
            info = docker_minion.wait_ready(minion)
            images = docker_images.load(self.cfg, minion, self._container_rootfs)
            self._say(
                f"{minion.minion_id}: dockerd {info}; images {', '.join(images)} loaded "
                f"in {time.monotonic() - started:.0f}s"
            )

    def _apt_update(self, minion: Minion) -> None:
        """Refresh a minion's package lists through the lab's apt proxy (bounded)."""
        argv = ["timeout", "150", "apt-get", "update", "-q", "-o", "Acquire::http::Timeout=30"]
        proc = minion.run(argv, check=False, timeout=180)
        if proc.returncode != 0:
            # apt-cacher-ng sometimes stalls one client when several minions fetch the
            # same index at once (seen in CI: the InRelease answered, then nothing). A
            # second attempt finds the index cached; a second failure is real.
            self._say(
                f"{minion.minion_id}: apt-get update failed (exit {proc.returncode}); "
                "trying once more"
            )
            proc = minion.run(argv, check=False, timeout=180)
        if proc.returncode != 0:
            output = (proc.stdout + proc.stderr).strip()[-1500:]
            raise LabError(
                f"apt-get update on {minion.minion_id} through the lab's apt proxy "
                f"({self.cfg.host_ip}:{self.cfg.ports.apt_proxy}) failed "
                f"(exit {proc.returncode}; 124 means it hung for 150s):\n{output}\n"
                f"See {self.cfg.logs_dir / 'apt-cacher-ng'}."
            )

    def _wait_for_pings(self, timeout: float = 120) -> None:
        expected = set(self.minions)

        def answered():
            result = self.salt("*", "test.ping", timeout=10)
            got = {m for m, ret in (result.data or {}).items() if ret is True}
            answered.missing = expected - got
            return not answered.missing

        answered.missing = expected
        try:
            wait_for("every minion to answer test.ping", answered, timeout, interval=2)
        except LabError as err:
            raise LabError(
                f"{err} Missing: {', '.join(sorted(answered.missing))}. "
                f"See {self.cfg.logs_dir} and, inside a minion, journalctl -u salt-minion."
            ) from None

    def _wait_for_port(self, what: str, host: str, port: int, process: str) -> None:
        import socket

        def listening():
            if self.registry.pid_of(process) is None:
                raise LabError(f"{what} exited; see {self.cfg.logs_dir / (process + '.log')}")
            with socket.socket() as sock:
                sock.settimeout(1)
                return sock.connect_ex((host, port)) == 0

        wait_for(f"{what} on {host}:{port}", listening, timeout=30, interval=0.2)

    # Talking to the lab ------------------------------------------------------------------
    @property
    def master_conf_dir(self) -> pathlib.Path:
        return self.cfg.master_conf_dir

    def salt(self, target: str, fun: str, *args: str, timeout: int = 600, extra=()) -> SaltResult:
        """Run the ``salt`` CLI against the lab master; JSON output parsed per minion."""
        argv = [
            str(VENV / "bin" / "salt"),
            "-c",
            str(self.master_conf_dir),
            "--out=json",
            "--static",
            f"--timeout={timeout}",
            *extra,
            target,
            fun,
            *args,
        ]
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout + 60, check=False
        )
        return SaltResult(proc)

    def salt_run(self, fun: str, *args: str, timeout: int = 300) -> SaltResult:
        """Run the ``salt-run`` CLI (runners) against the lab master."""
        argv = [
            str(VENV / "bin" / "salt-run"),
            "-c",
            str(self.master_conf_dir),
            "--out=json",
            fun,
            *args,
        ]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        return SaltResult(proc)

    def cmdb_session(self):
        """A requests session authenticated against the sample CMDB (for edits)."""
        import requests

        creds = json.loads(cmdb_credentials_file(self.cfg).read_text(encoding="utf-8"))
        session = requests.Session()
        # Without this, REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE from the environment replace
        # session.verify (requests merges them over it) and the lab's CA is not used.
        session.trust_env = False
        session.auth = (creds["username"], creds["password"])
        session.verify = str(cmdb_ca_file(self.cfg))
        return session

    @property
    def cmdb_webhook_url(self) -> str:
        """Where the CMDB posts change notifications: salt-api's webhook, tag .../cmdb."""
        return f"{self.cfg.salt_api_url}/hook/cmdb"

    @contextlib.contextmanager
    def cmdb_record_edited(self, minion_id: str, patch: dict):
        """Apply a JSON merge patch to a minion's CMDB record for the duration of a
        ``with`` block, then put the original record back (also on failure)."""
        session, url = self.cmdb_session(), self.cmdb_record_url(minion_id)
        original = session.get(url, timeout=30)
        original.raise_for_status()
        session.patch(url, json=patch, timeout=30).raise_for_status()
        try:
            yield
        finally:
            session.put(url, json=original.json(), timeout=30).raise_for_status()

    def cmdb_record_url(self, minion_id: str) -> str:
        from urllib.parse import quote

        return self.cfg.cmdb_url.format(minion_id=quote(minion_id, safe=""))

    def leftovers(self) -> list[str]:
        """What of this lab is still on the host: see ``leftovers()``, plus the veths and
        propagate directories that killed containers of this inventory left."""
        found = leftovers(self.cfg)
        for minion in self.minions.values():
            found += minion.debris()
        return found

    def is_up(self) -> bool:
        return (self.cfg.run_dir / "lab.json").exists() and self.registry.pid_of(
            "supervisor"
        ) is not None

    # Down ------------------------------------------------------------------------------
    def down(self, quiet: bool = False) -> None:
        """Stop everything this lab started and remove what it created (idempotent)."""
        cfg = self.cfg
        minion_names = [n for n in self.registry.names() if n.startswith("minion-")]
        if minion_names and not quiet:
            self._say(f"stopping {len(minion_names)} minions")
        with concurrent.futures.ThreadPoolExecutor(max(1, len(minion_names))) as pool:
            list(pool.map(lambda n: self.registry.stop(n, timeout=30), minion_names))
        for name in ("supervisor", "cmdb", "mirror", "apt-proxy"):
            self.registry.stop(name, timeout=60)
        self.registry.stop_all()
        _kill_strays(cfg)
        image.unmount_under(cfg.state_dir)
        for minion in self.minions.values():
            minion.remove_debris()
        cgroups.remove(cfg)
        network.remove(cfg)
        for path in (
            cfg.minions_dir,
            cfg.master_root,
            cfg.run_dir,
            cfg.cmdb_dir,
            cfg.state_dir / "srv",
            cfg.state_dir / "apt-cacher-ng",
        ):
            shutil.rmtree(path, ignore_errors=True)
        remaining = self.leftovers()
        if remaining:
            raise LabError("lab down left things behind:\n  " + "\n  ".join(remaining))
        if not quiet:
            self._say(f"lab {cfg.name!r} is down; logs kept in {cfg.logs_dir}")


def _wants_docker(record: dict) -> bool:
    """Whether a minion's CMDB record asks the lab for a Docker engine (``lab: {docker:
    true}``; lab scaffolding, read by the lab harness only)."""
    lab = record.get("lab") if isinstance(record, dict) else None
    return isinstance(lab, dict) and lab.get("docker") is True


def _write_private(path: pathlib.Path, content: str) -> None:
    """Write a secret file readable by root only (created 0600, never world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(content)
    path.chmod(0o600)


def _in_lab_container(pid: int, state: str) -> bool:
    """True if ``pid`` runs inside one of the lab's containers: its root mount (in its
    own mount namespace) is an overlay whose upper directory is under ``state``."""
    try:
        if os.readlink(f"/proc/{pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt"):
            return False
        with open(f"/proc/{pid}/mountinfo", encoding="utf-8") as mountinfo:
            for line in mountinfo:
                if line.split()[4] == "/":
                    return f"upperdir={state}/" in line
    except (OSError, IndexError):
        return False
    return False


def _lab_processes(cfg: LabConfig) -> list[tuple[int, str]]:
    """Processes that belong to this lab.

    Host-side services are recognised by their command line, which always names the
    lab's state directory or bridge. Processes inside a container are recognised by
    their root mount, an overlay under the state directory: that also finds a container
    whose systemd-nspawn was killed, leaving its systemd orphaned.
    """
    state = str(cfg.state_dir)
    markers = (state + "/", f"--lab-state\0{state}\0", f"--network-bridge={cfg.bridge}")
    mine = {os.getpid(), os.getppid()}
    found = []
    for process in psutil.process_iter(["cmdline"]):
        pid = process.pid
        if pid in mine or process.info["cmdline"] is None:
            continue  # gone, or not readable
        cmdline = "".join(arg + "\0" for arg in process.info["cmdline"])
        ours = (
            any(marker in cmdline for marker in markers)
            or _in_lab_container(pid, state)
            or cgroups.in_lab_cgroup(pid, cfg)
        )
        if ours and is_running(pid):
            found.append((pid, cmdline.replace("\0", " ").strip()))
    return found


def _kill_strays(cfg: LabConfig) -> None:
    """Stop lab processes that no pid file points at any more (a crashed earlier run).

    Processes of orphaned containers get SIGKILL at once: the container's systemd
    (PID 1 there) takes SIGTERM as a request to re-execute itself, and nothing in a
    crashed lab's minions needs saving.
    """
    strays = _lab_processes(cfg)
    for pid, _ in strays:
        in_container = _in_lab_container(pid, str(cfg.state_dir)) or cgroups.in_lab_cgroup(pid, cfg)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL if in_container else signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(is_running(pid) for pid, _ in strays):
        time.sleep(0.2)
    for pid, _ in strays:
        if is_running(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def leftovers(cfg: LabConfig) -> list[str]:
    """Everything of this lab still present on the host: processes, mounts, bridge, rules."""
    found = [f"process {pid}: {cmd[:160]}" for pid, cmd in _lab_processes(cfg)]
    prefix = str(cfg.state_dir)
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        found += [
            f"mount {line.split()[1]}" for line in mounts if line.split()[1].startswith(prefix)
        ]
    if network.bridge_exists(cfg):
        found.append(f"bridge {cfg.bridge}")
    if network.nft_table_exists(cfg):
        found.append(f"nftables table inet {cfg.nft_table}")
    found += cgroups.leftovers(cfg)
    return found
