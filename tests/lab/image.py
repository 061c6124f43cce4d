"""Build and cache the Debian 12 root filesystem the lab's minions boot.

The image is ``debootstrap --variant=minbase`` bookworm with systemd, plus Salt installed
into ``/opt/saltstack/venv`` from a wheelhouse built once on the host (host and image are
both CPython 3.11 on the same Debian release, so the host-built wheels fit). Images are
cached under ``<cache>/images/<key>``; the key covers the Salt version, the package list
and this file's own source, so changing the recipe rebuilds the image by itself. Minions
never write to the image: each boots an overlay of it (see ``minion.py``).
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import time

from tests.lab.config import VENV
from tests.lab.config import LabConfig
from tests.lab.config import pinned_salt_version
from tests.lab.procs import LabError
from tests.lab.procs import file_lock
from tests.lab.procs import tail_lines

SUITE = "bookworm"
DEBIAN_MIRROR = os.environ.get("OPSKIT_LAB_DEBIAN_MIRROR", "http://deb.debian.org/debian")
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "iproute2",
    "procps",
    "python3",
    "python3-venv",
    "ca-certificates",
    "curl",
)
SALT_VENV = "/opt/saltstack/venv"

SOURCES_LIST = f"""\
deb http://deb.debian.org/debian {SUITE} main
deb http://deb.debian.org/debian {SUITE}-updates main
deb http://deb.debian.org/debian-security {SUITE}-security main
"""

SALT_MINION_UNIT = f"""\
[Unit]
Description=Salt minion (opskit lab image)
After=network-online.target
Wants=network-online.target

[Service]
ExecStart={SALT_VENV}/bin/salt-minion
KillMode=process
Restart=on-failure
RestartSec=2
LimitNOFILE=8192

[Install]
WantedBy=multi-user.target
"""


def _log(message: str) -> None:
    print(f"[lab image] {message}", flush=True)


def _run(argv: list[str], **kwargs) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if proc.returncode != 0:
        tail = tail_lines(proc.stdout + proc.stderr)
        raise LabError(f"{' '.join(argv[:4])} ... failed ({proc.returncode}):\n{tail}")


def image_key() -> str:
    recipe = pathlib.Path(__file__).read_bytes()
    material = b"\0".join(
        [
            recipe,
            pinned_salt_version().encode(),
            " ".join(PACKAGES).encode(),
            f"{sys.version_info.major}.{sys.version_info.minor}".encode(),
        ]
    )
    return hashlib.sha256(material).hexdigest()[:16]


def unmount_under(path: pathlib.Path) -> None:
    """Unmount every mount point at or below ``path``, deepest first."""
    prefix = str(path.resolve())
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        points = [line.split()[1] for line in mounts]
    points = [p for p in points if p == prefix or p.startswith(prefix + "/")]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "--lazy", point], check=False, capture_output=True)


def ensure_wheelhouse(cfg: LabConfig) -> pathlib.Path:
    """Wheels for the pinned Salt and its dependencies, built on the host once."""
    version = pinned_salt_version()
    wheelhouse = cfg.cache_dir / "wheelhouse" / f"salt-{version}"
    marker = wheelhouse / ".complete"
    with file_lock(cfg.cache_dir / "wheelhouse" / ".lock"):
        if marker.exists():
            return wheelhouse
        _log(f"building wheels for salt=={version} into {wheelhouse}")
        shutil.rmtree(wheelhouse, ignore_errors=True)
        wheelhouse.mkdir(parents=True)
        _run([str(VENV / "bin" / "pip"), "wheel", "-q", "-w", str(wheelhouse), f"salt=={version}"])
        marker.touch()
    return wheelhouse


def ensure_image(cfg: LabConfig) -> pathlib.Path:
    """Return the cached rootfs for the current recipe, building it if needed."""
    images = cfg.cache_dir / "images"
    target = images / image_key()
    if (target / ".complete").exists():
        (target / ".complete").touch()  # marks the image as recently used
        return target / "rootfs"
    wheelhouse = ensure_wheelhouse(cfg)
    with file_lock(images / ".lock"):
        if (target / ".complete").exists():
            return target / "rootfs"
        started = time.monotonic()
        building = images / f"{image_key()}.building"
        unmount_under(building)
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(parents=True)
        try:
            _build(building / "rootfs", wheelhouse)
        except BaseException:
            unmount_under(building)
            shutil.rmtree(building, ignore_errors=True)
            raise
        (building / ".complete").touch()
        shutil.rmtree(target, ignore_errors=True)
        building.rename(target)
        _log(f"image {target.name} ready in {time.monotonic() - started:.0f}s")
    prune_idle(images, keep=target, what="image")
    return target / "rootfs"


def _build(rootfs: pathlib.Path, wheelhouse: pathlib.Path) -> None:
    _log(f"debootstrap {SUITE} into {rootfs} (about a minute)")
    _run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(rootfs),
            DEBIAN_MIRROR,
        ]
    )
    unmount_under(rootfs)  # debootstrap can leave /proc mounted on failure paths
    (rootfs / "etc/apt/sources.list").write_text(SOURCES_LIST, encoding="utf-8")

    _log(f"installing Salt {pinned_salt_version()} into {SALT_VENV}")
    staged = rootfs / "tmp" / "wheelhouse"
    shutil.copytree(wheelhouse, staged)
    try:
        _run(["chroot", str(rootfs), "python3", "-m", "venv", SALT_VENV])
        _run(
            [
                "chroot",
                str(rootfs),
                f"{SALT_VENV}/bin/pip",
                "install",
                "-q",
                "--no-index",
                "--find-links",
                "/tmp/wheelhouse",
                f"salt=={pinned_salt_version()}",
            ],
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        )
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    for tool in ("salt-call", "salt-minion"):
        link = rootfs / "usr/local/bin" / tool
        link.unlink(missing_ok=True)
        link.symlink_to(f"{SALT_VENV}/bin/{tool}")

    unit = rootfs / "etc/systemd/system/salt-minion.service"
    unit.write_text(SALT_MINION_UNIT, encoding="utf-8")
    _run(["chroot", str(rootfs), "systemctl", "enable", "salt-minion.service", "systemd-networkd"])
    # No unattended apt runs: they would race the lab's own apt calls for apt's locks and
    # make package states depend on timing.
    _run(["chroot", str(rootfs), "systemctl", "mask", "apt-daily.timer", "apt-daily-upgrade.timer"])
    # Per-minion identity is written when a minion is created; the image carries none.
    (rootfs / "etc/machine-id").write_text("", encoding="utf-8")
    (rootfs / "etc/hostname").write_text("", encoding="utf-8")
    _run(["chroot", str(rootfs), "apt-get", "clean"])


def prune_idle(
    directory: pathlib.Path, keep: pathlib.Path, what: str, max_idle_days: int = 2
) -> None:
    """Delete other cache entries (images, Docker layers) under ``directory`` that nothing
    mounts and nothing used for a while.

    Labs of other checkouts (another recipe, so another key) may share the cache, so an
    entry is only removed once it has been idle for ``max_idle_days``.
    """
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        in_use = mounts.read()
    idle_after = time.time() - max_idle_days * 86400
    for candidate in directory.iterdir():
        if candidate == keep or not candidate.is_dir() or candidate.name.endswith(".building"):
            continue
        marker = candidate / ".complete"
        if str(candidate) in in_use or (marker.exists() and marker.stat().st_mtime > idle_after):
            continue
        _log(f"removing unused {what} {candidate.name}")
        shutil.rmtree(candidate, ignore_errors=True)
