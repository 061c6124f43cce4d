"""Docker inside a lab minion: Debian's ``docker.io`` run by the minion's own systemd.

A minion whose CMDB record says ``lab: {docker: true}`` boots with one more read-only
layer under its overlay, built once and cached (``ensure_layer``): Debian 12's
``docker.io`` (20.10) and Docker Compose v2 from Debian 13's ``docker-compose`` package
(bookworm has only Compose v1, the Python one, whose env-file and CLI syntax the
formulas do not target; Debian 13's package is a Go binary that needs nothing but libc
and installs as the docker CLI plugin ``docker compose``).

What dockerd needs from ``systemd-nspawn --boot`` on this host (cgroup v1 controllers,
nspawn's default capabilities and system call filter), found by trying each piece and
documented in docs/lab.md ("Docker in a minion"):

- ``--system-call-filter=add_key keyctl``: runc gives every container a session
  keyring; nspawn's filter answers those calls with EPERM and runc gives up
  ("unable to join session keyring").
- writable cgroup v1 controllers: nspawn mounts them read-only. The minion has its own
  cgroup subtree (``cgroups.py``, its cgroup namespace root), and a unit inside,
  ``opskit-lab-cgroup-rw.service``, remounts the controllers read-write before
  containerd and dockerd start. The container already holds CAP_SYS_ADMIN (nspawn's
  default), so this grants nothing new; it only lets dockerd create its cgroups below
  the minion's own.
- ``--bind=<minion dir>/docker:/var/lib/docker``: overlay2 cannot stack on the minion's
  overlayfs root (dockerd falls back to vfs, which copies every layer). The data root
  is a tmpfs the lab mounts on the host per Docker minion (``mount_data_root``; at
  most ``DATA_ROOT_SIZE``), so ``docker load`` and the lab's removal of it cost no
  disk I/O; ``down`` unmounts it with the minion's other mounts.

Nothing else: no extra capabilities, no device rules, no host network. dockerd's
bridges, veths and iptables rules live in the minion's network namespace and end with
it; its cgroups are under the minion's; its data root is under the lab's state.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import pathlib
import shutil
import subprocess
import time

from tests.lab.config import LabConfig
from tests.lab.image import prune_idle
from tests.lab.image import unmount_under
from tests.lab.procs import LabError
from tests.lab.procs import file_lock
from tests.lab.procs import tail_lines
from tests.lab.procs import wait_for

DATA_ROOT = "/var/lib/docker"
DATA_ROOT_SIZE = "4g"
NSPAWN_ARGS = ("--system-call-filter=add_key keyctl",)
PACKAGES = ("docker.io",)
# Compose v2 from Debian 13 (trixie): apt takes only this package from there.
COMPOSE_SUITE = "trixie"
COMPOSE_PACKAGE = "docker-compose"
TRIXIE_SOURCE = "deb http://deb.debian.org/debian trixie main\n"
TRIXIE_PIN = """\
Package: *
Pin: release n=trixie
Pin-Priority: 1
"""

DAEMON_JSON = {
    # Fail loudly instead of falling back to vfs if overlay2 ever stops working here.
    "storage-driver": "overlay2",
    # cgroup v1 controllers are not managed by the minion's systemd (they are mounted
    # read-only for it): dockerd manages its own cgroups.
    "exec-opts": ["native.cgroupdriver=cgroupfs"],
    "log-driver": "json-file",
    "log-opts": {"max-size": "10m", "max-file": "2"},
}

CGROUP_RW_SCRIPT = """\
#!/bin/sh
# opskit lab: systemd-nspawn mounts the cgroup v1 controllers read-only; dockerd must
# create cgroups below this container's own (its cgroup namespace root). Remount them
# read-write; the name=systemd hierarchy is nspawn's delegation and stays as it is.
set -eu
findmnt -rn -t cgroup -o TARGET,OPTIONS | while read -r target options; do
    case ",$options," in *,name=*) continue ;; esac
    case ",$options," in *,ro,*) mount -o remount,bind,rw "$target" ;; esac
done
"""

CGROUP_RW_UNIT = """\
[Unit]
Description=opskit lab: cgroup v1 controllers writable for dockerd
DefaultDependencies=no
Before=containerd.service docker.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/opskit-lab-cgroup-rw

[Install]
RequiredBy=containerd.service docker.service
"""

LAYER_FILES = {
    "etc/docker/daemon.json": (json.dumps(DAEMON_JSON, indent=2) + "\n", 0o644),
    "usr/local/sbin/opskit-lab-cgroup-rw": (CGROUP_RW_SCRIPT, 0o755),
    "etc/systemd/system/opskit-lab-cgroup-rw.service": (CGROUP_RW_UNIT, 0o644),
}


def _log(message: str) -> None:
    print(f"[lab docker] {message}", flush=True)


def chroot(root: pathlib.Path, argv: list[str], timeout: float = 600) -> str:
    """Run ``argv`` in a chroot at ``root`` (package installs); its stdout."""
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "DEBIAN_FRONTEND": "noninteractive",
        "LANG": "C.UTF-8",
    }
    proc = subprocess.run(
        ["chroot", str(root), *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        tail = tail_lines(proc.stdout + proc.stderr)
        raise LabError(
            f"in the chroot {root}: {' '.join(argv)} failed ({proc.returncode}):\n{tail}"
        )
    return proc.stdout


@contextlib.contextmanager
def overlay_chroot(base_rootfs: pathlib.Path, upper: pathlib.Path, work: pathlib.Path):
    """Mount an overlay of ``base_rootfs`` writing to ``upper``, with no daemon allowed
    to start in it (policy-rc.d); yield its root; unmount it again.

    Full copy-ups only (no redirects, no metacopy): ``upper`` must stand on its own as a
    lower layer of other overlays.
    """
    root = work.parent / "root"
    for path in (upper, work, root):
        path.mkdir(parents=True, exist_ok=True)
    options = (
        f"lowerdir={base_rootfs},upperdir={upper},workdir={work},"
        "redirect_dir=off,metacopy=off,index=off"
    )
    proc = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", options, str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise LabError(f"cannot mount an overlay of {base_rootfs}: {proc.stderr.strip()}")
    policy = root / "usr/sbin/policy-rc.d"
    try:
        policy.write_text("#!/bin/sh\nexit 101\n", encoding="utf-8")
        policy.chmod(0o755)
        yield root
        policy.unlink()
    finally:
        unmount_under(root)
        root.rmdir()


def _install(root: pathlib.Path) -> None:
    """Install the engine and Compose into the mounted overlay ``root`` (the recipe)."""
    trixie_list = root / "etc/apt/sources.list.d/opskit-lab-trixie.list"
    trixie_pin = root / "etc/apt/preferences.d/opskit-lab-trixie"
    trixie_list.write_text(TRIXIE_SOURCE, encoding="utf-8")
    trixie_pin.write_text(TRIXIE_PIN, encoding="utf-8")
    chroot(root, ["apt-get", "update", "-q"])
    chroot(
        root,
        [
            "apt-get",
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            *PACKAGES,
            f"{COMPOSE_PACKAGE}/{COMPOSE_SUITE}",
        ],
    )
    for relative, (content, mode) in LAYER_FILES.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        path.chmod(mode)
    chroot(root, ["systemctl", "enable", "opskit-lab-cgroup-rw.service"])
    # Only bookworm stays configured: the minion never sees trixie's package lists.
    trixie_list.unlink()
    trixie_pin.unlink()
    for lists in (root / "var/lib/apt/lists").glob("*trixie*"):
        lists.unlink()
    chroot(root, ["apt-get", "clean"])
    versions = chroot(
        root, ["dpkg-query", "-W", "-f=${Package} ${Version}\\n", *PACKAGES, COMPOSE_PACKAGE]
    )
    _log("installed: " + ", ".join(versions.split("\n")[:-1]))
    compose = chroot(root, ["/usr/libexec/docker/cli-plugins/docker-compose", "version"])
    if "v2." not in compose and " 2." not in compose:
        raise LabError(f"the Docker layer's compose is not Compose v2: {compose.strip()}")


def layer_key(base_key: str) -> str:
    material = json.dumps(
        [
            base_key,
            inspect.getsource(overlay_chroot),
            inspect.getsource(_install),
            PACKAGES,
            COMPOSE_SUITE,
            COMPOSE_PACKAGE,
            TRIXIE_SOURCE,
            TRIXIE_PIN,
            LAYER_FILES,
        ]
    )
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def ensure_layer(cfg: LabConfig, base_rootfs: pathlib.Path) -> pathlib.Path:
    """The cached overlay layer (an upper directory) that turns the base image into a
    Docker host; built on first use with ``apt-get`` in a chroot over the base image."""
    layers = cfg.cache_dir / "docker-layers"
    key = layer_key(base_rootfs.parent.name)
    target = layers / key
    if (target / ".complete").exists():
        (target / ".complete").touch()
        return target / "layer"
    with file_lock(layers / ".lock"):
        if (target / ".complete").exists():
            return target / "layer"
        started = time.monotonic()
        building = layers / f"{key}.building"
        unmount_under(building)
        shutil.rmtree(building, ignore_errors=True)
        _log(f"building the Docker layer {key} over {base_rootfs.parent.name} (about a minute)")
        try:
            with overlay_chroot(base_rootfs, building / "layer", building / "work") as root:
                _install(root)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        shutil.rmtree(building / "work")
        (building / ".complete").touch()
        shutil.rmtree(target, ignore_errors=True)
        building.rename(target)
        _log(f"Docker layer {key} ready in {time.monotonic() - started:.0f}s")
    prune_idle(layers, keep=target, what="Docker layer")
    return target / "layer"


def mount_data_root(path: pathlib.Path) -> None:
    """Mount the tmpfs that becomes a Docker minion's /var/lib/docker."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={DATA_ROOT_SIZE},mode=0710"
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "opskit-lab-docker", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise LabError(f"cannot mount the Docker data root at {path}: {proc.stderr.strip()}")


def nspawn_args(data_root: pathlib.Path) -> list[str]:
    """The systemd-nspawn options a Docker minion needs beyond the lab's usual ones."""
    return [*NSPAWN_ARGS, f"--bind={data_root}:{DATA_ROOT}"]


def wait_ready(minion, timeout: float = 90) -> str:
    """Wait until the minion's dockerd answers with overlay2 and cgroupfs; return its
    ``docker info`` line (server version, storage and cgroup drivers)."""
    fmt = "{{.ServerVersion}} {{.Driver}} {{.CgroupDriver}} cgroup-v{{.CgroupVersion}}"

    def ready():
        proc = minion.run(["docker", "info", "--format", fmt], check=False, timeout=30)
        return proc.stdout.strip() if proc.returncode == 0 else None

    info = wait_for(
        f"dockerd on {minion.minion_id}",
        ready,
        timeout,
        interval=1,
        hint=(
            f"Inside: journalctl -u opskit-lab-cgroup-rw -u containerd -u docker "
            f"(opskit-lab shell {minion.spec.machine})."
        ),
    )
    if " overlay2 cgroupfs " not in f" {info} ":
        raise LabError(f"dockerd on {minion.minion_id} runs, but not as the lab expects: {info}")
    return info
