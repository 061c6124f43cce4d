"""Container images for the lab's Docker minions, built locally, never pulled.

The images hold opskit's STAND-INS (``tests/lab/docker/README.md``) under upstream's
names, so the formulas' image settings apply as they are:

1. a Debian 12 root file system (the lab's minion image without Salt, plus Pillow,
   PyYAML, nginx, the time zones and poppler-utils) is built on the host and cached as a tar file
   (``ensure_rootfs``);
2. in a Docker minion, ``docker import`` turns it into a base image, and
   ``docker build`` (``tests/lab/docker/<image>/Dockerfile``, the stand-in's source
   added to the context) makes each image; ``docker save`` caches the result;
3. every later lab ``docker load``s that file (``load``).

Both caches live under ``<cache>/docker-images`` with content keys: the root file
system's covers its recipe, the images' cover the root file system, every file of the
build contexts and the tags. A changed stand-in or Dockerfile builds new images by
itself; nothing else does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
import pathlib
import shutil
import subprocess
import time

from tests.lab import anubis_artifacts
from tests.lab import docker_minion
from tests.lab import thumbnail_artifacts
from tests.lab.config import LabConfig
from tests.lab.image import unmount_under
from tests.lab.procs import LabError
from tests.lab.procs import file_lock

HERE = pathlib.Path(__file__).parent
RECIPES = HERE / "docker"
# Added to the lab image (which has python3, ca-certificates and procps already).
ROOTFS_PACKAGES = ("python3-pil", "python3-yaml", "nginx-light", "tzdata", "poppler-utils")
# Left out of the containers' root file system: Salt, and what no container needs.
ROOTFS_EXCLUDE = (
    "opt/saltstack",
    "usr/local/bin/salt-call",
    "usr/local/bin/salt-minion",
    "etc/systemd/system/salt-minion.service",
    "etc/systemd/system/multi-user.target.wants/salt-minion.service",
    "var/lib/apt/lists/*",
    "usr/share/doc/*",
    "usr/share/man/*",
)
BUILD_DIR = "/var/tmp/opskit-lab-images"  # inside the minion


@dataclasses.dataclass(frozen=True)
class ImageRecipe:
    """One image: its tag, its recipe directory and what is added to the context."""

    tag: str
    recipe: str  # directory under tests/lab/docker
    extra: tuple[tuple[str, pathlib.Path, int], ...]  # (name in context, source, mode)

    def context_files(self) -> dict[str, tuple[bytes, int]]:
        files = {}
        for path in sorted((RECIPES / self.recipe).iterdir()):
            files[path.name] = (path.read_bytes(), 0o755 if os.access(path, os.X_OK) else 0o644)
        for name, source, mode in self.extra:
            files[name] = (source.read_bytes(), mode)
        return files


THUMBNAIL = ImageRecipe(
    tag=f"seafileltd/thumbnail-server:{thumbnail_artifacts.VERSION}",
    recipe="thumbnail-server",
    extra=(
        ("main.py", thumbnail_artifacts.STANDIN, 0o644),
        ("seafobj.py", thumbnail_artifacts.SEAFOBJ, 0o644),
    ),
)
ANUBIS = ImageRecipe(
    tag=f"ghcr.io/techarohq/anubis:v{anubis_artifacts.VERSION}",
    recipe="anubis",
    extra=(
        ("anubis", anubis_artifacts.STANDIN, 0o755),
        *((path.name, path, 0o644) for path in anubis_artifacts.RULE_MODULES),
    ),
)
IMAGES = (THUMBNAIL, ANUBIS)


def _log(message: str) -> None:
    print(f"[lab docker images] {message}", flush=True)


# Root file system ------------------------------------------------------------------------
def _build_rootfs(base_rootfs: pathlib.Path, building: pathlib.Path, tar: pathlib.Path) -> None:
    """The lab image plus the packages the stand-ins need, without Salt, as a tar file.

    Starting from the lab's cached image (not a fresh debootstrap) downloads only these
    few packages: a cold build takes seconds instead of minutes of package downloads.
    """
    with docker_minion.overlay_chroot(base_rootfs, building / "upper", building / "work") as root:
        docker_minion.chroot(root, ["apt-get", "update", "-q"])
        docker_minion.chroot(
            root, ["apt-get", "install", "-y", "-q", "--no-install-recommends", *ROOTFS_PACKAGES]
        )
        docker_minion.chroot(root, ["apt-get", "clean"])
        # Docker gives each container its own; the lab host's resolver means nothing there.
        (root / "etc/resolv.conf").write_text("", encoding="utf-8")
        excludes = [f"--exclude=./{path}" for path in ROOTFS_EXCLUDE]
        subprocess.run(
            ["tar", "-C", str(root), "--numeric-owner", *excludes, "-cf", str(tar), "."],
            check=True,
            capture_output=True,
        )


def rootfs_key(base_rootfs: pathlib.Path) -> str:
    material = json.dumps(
        [
            base_rootfs.parent.name,  # the lab image's key
            inspect.getsource(_build_rootfs),
            inspect.getsource(docker_minion.overlay_chroot),
            ROOTFS_PACKAGES,
            ROOTFS_EXCLUDE,
        ]
    ).encode()
    return hashlib.sha256(material).hexdigest()[:16]


def ensure_rootfs(cfg: LabConfig, base_rootfs: pathlib.Path) -> pathlib.Path:
    """The cached tar file of the containers' root file system (built on first use)."""
    cache = cfg.cache_dir / "docker-images"
    key = rootfs_key(base_rootfs)
    target = cache / f"rootfs-{key}.tar"
    if target.exists():
        os.utime(target)
        return target
    with file_lock(cache / ".lock"):
        if target.exists():
            return target
        started = time.monotonic()
        building = cache / f"rootfs-{key}.building"
        unmount_under(building)
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(parents=True)
        _log(f"container root file system {key} from lab image {base_rootfs.parent.name}")
        try:
            _build_rootfs(base_rootfs, building, building / "rootfs.tar")
            (building / "rootfs.tar").rename(target)
        finally:
            unmount_under(building)
            shutil.rmtree(building, ignore_errors=True)
        _log(f"container root file system {target.name} ready in {time.monotonic() - started:.0f}s")
    return target


# Images ----------------------------------------------------------------------------------
def images_key(rootfs: pathlib.Path) -> str:
    material = hashlib.sha256(rootfs.name.encode())
    for image in IMAGES:
        material.update(b"\0image\0" + image.tag.encode())
        for name, (data, mode) in image.context_files().items():
            material.update(f"\0{name}\0{mode:o}\0".encode() + hashlib.sha256(data).digest())
    return material.hexdigest()[:16]


def _in_minion(minion, argv, stdin=None, stdout=None, timeout: float = 600):
    """Run ``argv`` in ``minion`` with file objects as stdin/stdout (for big streams)."""
    leader = minion.leader_pid()
    if leader is None:
        raise LabError(f"minion {minion.minion_id} is not running")
    proc = subprocess.run(
        ["nsenter", f"--target={leader}", "--all", "--", *argv],
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
        stdout=stdout if stdout is not None else subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"},
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise LabError(
            f"on {minion.minion_id}: {' '.join(argv)} exited {proc.returncode}: "
            f"{proc.stderr.decode(errors='replace').strip()[-2000:]}"
        )
    return proc


def _build(minion, rootfs: pathlib.Path, archive: pathlib.Path) -> None:
    """Build every image in ``minion`` and ``docker save`` them to ``archive``."""
    base = f"opskit-lab/debian-rootfs:{rootfs.name.removeprefix('rootfs-').removesuffix('.tar')}"
    with open(rootfs, "rb") as tar:
        _in_minion(minion, ["docker", "import", "-", base], stdin=tar)
    contexts = minion.root / BUILD_DIR.lstrip("/")
    try:
        for image in IMAGES:
            context = contexts / image.recipe
            context.mkdir(parents=True, exist_ok=True)
            for name, (data, mode) in image.context_files().items():
                (context / name).write_bytes(data)
                (context / name).chmod(mode)
            _log(f"docker build {image.tag} on {minion.minion_id}")
            _in_minion(
                minion,
                [
                    "docker",
                    "build",
                    "--quiet",
                    "--build-arg",
                    f"BASE={base}",
                    "--tag",
                    image.tag,
                    f"{BUILD_DIR}/{image.recipe}",
                ],
            )
    finally:
        shutil.rmtree(contexts, ignore_errors=True)
    _in_minion(minion, ["docker", "rmi", base])  # untags it; the layers stay as parents
    partial = archive.with_suffix(".partial")
    with open(partial, "wb") as out:
        _in_minion(minion, ["docker", "save", *(image.tag for image in IMAGES)], stdout=out)
    partial.rename(archive)


def load(cfg: LabConfig, minion, rootfs: pathlib.Path) -> dict[str, str]:
    """Make every lab image available in ``minion``'s dockerd: load the cached archive,
    building it there first (from the tar file ``rootfs``) if the cache has none.
    Returns {tag: image id}."""
    key = images_key(rootfs)
    cache_root = cfg.cache_dir / "docker-images"
    archive = cache_root / key / "images.tar"
    if archive.exists():
        os.utime(archive)
    else:
        with file_lock(cache_root / ".lock"):
            if not archive.exists():
                started = time.monotonic()
                archive.parent.mkdir(parents=True, exist_ok=True)
                _build(minion, rootfs, archive)
                _log(f"images {key} built in {time.monotonic() - started:.0f}s")
            _prune(cache_root, keep={archive.parent, rootfs})
    with open(archive, "rb") as tar:
        _in_minion(minion, ["docker", "load", "--quiet"], stdin=tar)
    ids = {}
    for image in IMAGES:
        proc = _in_minion(minion, ["docker", "image", "inspect", "--format", "{{.Id}}", image.tag])
        ids[image.tag] = proc.stdout.decode().strip()
    return ids


def _prune(cache: pathlib.Path, keep: set[pathlib.Path], max_idle_days: int = 2) -> None:
    """Delete cached root file systems and image archives not used for a while (called
    with the cache's lock held, so no build is under way)."""
    idle_after = time.time() - max_idle_days * 86400
    for candidate in cache.iterdir():
        if candidate in keep or candidate.name.startswith("."):
            continue
        used = candidate / "images.tar" if candidate.is_dir() else candidate
        if (used if used.exists() else candidate).stat().st_mtime > idle_after:
            continue
        _log(f"removing unused cache entry {candidate.name}")
        if candidate.is_dir():
            shutil.rmtree(candidate, ignore_errors=True)
        else:
            candidate.unlink(missing_ok=True)
