"""Release-shaped artifacts for the lab mirror, built from Debian's packages.

Upstream exporters ship as GitHub release downloads, which these machines cannot reach.
Debian packages the same programs, so the lab takes the binary out of the Debian
package and lays it out exactly as upstream does: the same asset names, the same
top-level directory inside the tarball, and a checksum file in upstream's format
(``<sha256>  <asset>``). opskit's real download → verify → install path runs against it.

The names below are written from upstream's release pages, independently of opskit's
own catalog, so a naming mistake in the catalog shows up as a failed download.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import pathlib
import re
import shutil
import subprocess
import tarfile
import tempfile

from tests.lab import anubis_artifacts
from tests.lab import thumbnail_artifacts
from tests.lab.config import LabConfig
from tests.lab.procs import LabError
from tests.lab.procs import file_lock

ARCH = "amd64"


@dataclasses.dataclass(frozen=True)
class ReleaseArtifact:
    """How one upstream project names its release, and where Debian keeps the binary."""

    project: str  # path under the mirror root, e.g. "prometheus/node_exporter"
    deb: str  # Debian package carrying the binary
    binary_in_deb: str  # path of the binary inside the package
    binary_name: str  # file name upstream uses inside the tarball
    asset: str  # upstream asset file name; {version} and {arch} are filled in
    tag: str = "v{version}"
    checksums: str = "sha256sums.txt"
    # Directory inside the tarball: None means the asset name minus .tar.gz (promu and
    # redis_exporter's packaging script); "" means no directory (goreleaser's default).
    top_dir: str | None = None


ARTIFACTS = (
    # promu (prometheus/promu cmd/tarball.go, cmd/checksum.go):
    # <name>-<version>.<os>-<arch>.tar.gz holding <name>-<version>.<os>-<arch>/<binary>,
    # and sha256sums.txt.
    ReleaseArtifact(
        project="prometheus/node_exporter",
        deb="prometheus-node-exporter",
        binary_in_deb="usr/bin/prometheus-node-exporter",
        binary_name="node_exporter",
        asset="node_exporter-{version}.linux-{arch}.tar.gz",
    ),
    ReleaseArtifact(
        project="prometheus-community/postgres_exporter",
        deb="prometheus-postgres-exporter",
        binary_in_deb="usr/bin/prometheus-postgres-exporter",
        binary_name="postgres_exporter",
        asset="postgres_exporter-{version}.linux-{arch}.tar.gz",
    ),
    # redis_exporter's package-github-binaries.sh tars .build/redis_exporter-<tag>.<os>-<arch>
    # (the tag keeps its "v") and writes sha256sums.txt.
    ReleaseArtifact(
        project="oliver006/redis_exporter",
        deb="prometheus-redis-exporter",
        binary_in_deb="usr/bin/prometheus-redis-exporter",
        binary_name="redis_exporter",
        asset="redis_exporter-v{version}.linux-{arch}.tar.gz",
    ),
    # goreleaser: <project>_<version>_<os>_<arch>.tar.gz with the files at the top level.
    # Debian ships 0.11.0, whose .goreleaser.yml names the checksum file sha256sums.txt
    # (from 1.0.0 on it is goreleaser's default, <project>_<version>_checksums.txt).
    ReleaseArtifact(
        project="nginx/nginx-prometheus-exporter",
        deb="prometheus-nginx-exporter",
        binary_in_deb="usr/bin/prometheus-nginx-exporter",
        binary_name="nginx-prometheus-exporter",
        asset="nginx-prometheus-exporter_{version}_linux_{arch}.tar.gz",
        top_dir="",
    ),
)


def upstream_version(deb_version: str) -> str:
    """'1.5.0-1+b6' -> '1.5.0' (drop the epoch and the Debian revision)."""
    without_epoch = deb_version.split(":", 1)[-1]
    return re.sub(r"[+~].*$", "", without_epoch.rsplit("-", 1)[0])


def _download_deb(name: str, into: pathlib.Path) -> pathlib.Path:
    proc = subprocess.run(
        ["apt-get", "download", "-q", name], cwd=into, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise LabError(f"apt-get download {name} failed on the host: {proc.stderr.strip()}")
    debs = sorted(into.glob(f"{name}_*.deb"))
    if not debs:
        raise LabError(f"apt-get download {name} produced no .deb in {into}")
    return debs[-1]


def _deb_version(deb: pathlib.Path) -> str:
    return subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True, check=True
    ).stdout.strip()


def _tar_gz(files: dict[str, tuple[bytes, int]]) -> bytes:
    """A reproducible .tar.gz: fixed owner and mtime, sorted members."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        dirs = sorted({str(pathlib.PurePosixPath(p).parent) for p in files} - {"."})
        for directory in dirs:
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for path in sorted(files):
            data, mode = files[path]
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def build_release(artifact: ReleaseArtifact, mirror_root: pathlib.Path) -> pathlib.Path:
    """Build one release directory on the mirror; return the tarball's path."""
    with tempfile.TemporaryDirectory(prefix="opskit-lab-deb-") as tmp:
        tmpdir = pathlib.Path(tmp)
        deb = _download_deb(artifact.deb, tmpdir)
        version = upstream_version(_deb_version(deb))
        extracted = tmpdir / "x"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(extracted)], check=True)
        binary = (extracted / artifact.binary_in_deb).read_bytes()
        copyright_file = extracted / "usr/share/doc" / artifact.deb / "copyright"
        license_text = copyright_file.read_bytes() if copyright_file.exists() else b""

    asset = artifact.asset.format(version=version, arch=ARCH)
    top = asset.removesuffix(".tar.gz") if artifact.top_dir is None else artifact.top_dir
    prefix = f"{top.format(version=version, arch=ARCH)}/" if top else ""
    members = {f"{prefix}{artifact.binary_name}": (binary, 0o755)}
    if license_text:
        members[f"{prefix}LICENSE"] = (license_text, 0o644)
    tarball = _tar_gz(members)

    release_dir = (
        mirror_root / artifact.project / "releases/download" / artifact.tag.format(version=version)
    )
    release_dir.mkdir(parents=True, exist_ok=True)
    (release_dir / asset).write_bytes(tarball)
    digest = hashlib.sha256(tarball).hexdigest()
    (release_dir / artifact.checksums.format(version=version)).write_text(
        f"{digest}  {asset}\n", encoding="utf-8"
    )
    return release_dir / asset


# dcgm-exporter: NVIDIA/dcgm-exporter's Makefile, target package-build (read at tag
# 4.5.3-4.8.2; present since 4.0.0-4.0.1), runs `tar -czf dist/$DIST_NAME.tar.gz $(ls -A)`
# in a directory holding only dcgm_exporter/, with DIST_NAME
# dcgm_exporter-linux-<x86-64 for amd64, sbsa for arm64>-<exporter version> and in
# dcgm_exporter/: usr/bin/dcgm-exporter, etc/dcgm-exporter/ (copied from the image, which
# holds the repository's etc/*.csv), LICENSE and
# lib/systemd/system/nvidia-dcgm-exporter.service. NVIDIA writes no checksum file for it;
# a site mirror adds sha256sums.txt, as this one does.
# No DCGM binary exists here (no GPU, no NVIDIA package): the binary is an opskit
# STAND-IN that only answers --version, and the CSVs are short files in upstream's
# format. The lab never runs it: opskit refuses dcgm_exporter on a host without an
# NVIDIA GPU. What the lab checks is that the names and the layout match opskit's.
DCGM_TAG = "4.5.3-4.8.2"
DCGM_ARCHES = {"amd64": "x86-64", "arm64": "sbsa"}
DCGM_COLLECTORS = (
    "# Format\n"
    "# If line starts with a '#' it is considered a comment\n"
    "# DCGM FIELD, Prometheus metric type, help message\n"
    "DCGM_FI_DEV_GPU_TEMP, gauge, GPU temperature (in C).\n"
    "DCGM_FI_DEV_POWER_USAGE, gauge, Power draw (in W).\n"
)


def dcgm_standin_archive(tag: str = DCGM_TAG, arch: str = ARCH) -> tuple[str, bytes]:
    """(asset name, tar.gz bytes) of a dcgm-exporter archive in upstream's layout."""
    exporter_version = tag.split("-", 1)[1]
    asset = f"dcgm_exporter-linux-{DCGM_ARCHES[arch]}-{exporter_version}.tar.gz"
    script = (
        f"#!/bin/sh\n# opskit lab STAND-IN for dcgm-exporter {tag}\n"
        f"echo 'dcgm-exporter version {tag}'\n"
    )
    unit = "[Unit]\nDescription=NVIDIA DCGM-exporter service (upstream's unit; opskit masks it)\n"
    members = {
        "dcgm_exporter/usr/bin/dcgm-exporter": (script.encode(), 0o755),
        "dcgm_exporter/etc/dcgm-exporter/default-counters.csv": (DCGM_COLLECTORS.encode(), 0o644),
        "dcgm_exporter/etc/dcgm-exporter/dcp-metrics-included.csv": (
            DCGM_COLLECTORS.encode(),
            0o644,
        ),
        "dcgm_exporter/LICENSE": (
            b"Apache License 2.0 (stand-in archive, see the lab docs)\n",
            0o644,
        ),
        "dcgm_exporter/lib/systemd/system/nvidia-dcgm-exporter.service": (unit.encode(), 0o644),
    }
    return asset, _tar_gz(members)


def build_dcgm_release(mirror_root: pathlib.Path) -> pathlib.Path:
    asset, tarball = dcgm_standin_archive()
    release_dir = mirror_root / "NVIDIA/dcgm-exporter/releases/download" / DCGM_TAG
    release_dir.mkdir(parents=True, exist_ok=True)
    (release_dir / asset).write_bytes(tarball)
    digest = hashlib.sha256(tarball).hexdigest()
    (release_dir / "sha256sums.txt").write_text(f"{digest}  {asset}\n", encoding="utf-8")
    return release_dir / asset


def mirror_sources() -> tuple[pathlib.Path, ...]:
    """The files whose content the mirror's artifacts are built from (its cache key)."""
    return (
        pathlib.Path(__file__),
        pathlib.Path(anubis_artifacts.__file__),
        anubis_artifacts.STANDIN,
        *anubis_artifacts.RULE_MODULES,  # shipped inside the stand-in's packages
        pathlib.Path(thumbnail_artifacts.__file__),
        *thumbnail_artifacts.SOURCES,
    )


def ensure_mirror(cfg: LabConfig) -> pathlib.Path:
    """Build every artifact once into the cache; return the mirror root.

    The directory is keyed by :func:`mirror_sources`, so a changed recipe builds a new
    tree and never rewrites one that another running lab may be serving.
    """
    recipe = hashlib.sha256(b"".join(p.read_bytes() for p in mirror_sources())).hexdigest()[:16]
    root = cfg.cache_dir / "mirror" / recipe
    with file_lock(cfg.cache_dir / "mirror" / ".lock"):
        if (root / ".complete").exists():
            return root
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        for artifact in ARTIFACTS:
            path = build_release(artifact, root)
            print(f"[lab mirror] built {path.relative_to(root)}", flush=True)
        # dcgm-exporter: a stand-in in upstream's archive layout (see build_dcgm_release).
        path = build_dcgm_release(root)
        print(f"[lab mirror] built {path.relative_to(root)} (stand-in)", flush=True)
        # Anubis: the opskit stand-in under upstream's asset names (see anubis_artifacts).
        for path in anubis_artifacts.build_release(root):
            print(f"[lab mirror] built {path.relative_to(root)} (stand-in)", flush=True)
        # Thumbnail server: the opskit stand-in as a release archive (thumbnail_artifacts).
        path = thumbnail_artifacts.build_release(root)
        print(f"[lab mirror] built {path.relative_to(root)} (stand-in)", flush=True)
        (root / ".complete").touch()
    return root
