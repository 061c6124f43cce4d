"""A release archive of the thumbnail server for the lab mirror, carrying the opskit
STAND-IN (``tests/lab/thumbnail_standin.py``), not Seafile's thumbnail server.

Seafile publishes the thumbnail server only as a Docker image; a site that runs it
outside containers builds its own release archive (the image's
``/opt/seafile/thumbnail-server`` with its Python dependencies) and serves it from its
own mirror. The lab mirror serves such an archive laid out like upstream's image
(``docker/Dockerfile``: ``/opt/seafile/thumbnail-server`` and seafobj under
``/opt/seafile/seafile/lib/python3/site-packages``): the stand-in as
``thumbnail-server/main.py`` and the seafobj stand-in as
``seafile/lib/python3/site-packages/seafobj/__init__.py`` -- the layout the formula's
systemd mode expects by default (``workdir: thumbnail-server``, ``command:
[/usr/bin/python3, main.py]``, ``python_path: [seafile/lib/python3/site-packages]``) --
so the formula's real download -> sha256 check -> unpack -> systemd path runs against
it. The archive is byte-for-byte reproducible, so the sha256 pinned in the lab's CMDB
record (tests/lab/inventory.yaml) stays valid while the stand-in's source is unchanged
(tests/unit/test_thumbnail_lab_artifacts.py checks the pin).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pathlib
import tarfile

VERSION = "13.0.0-standin"
PROJECT = "opskit-lab/seafile-thumbnail-server"
ASSET = f"thumbnail-server-{VERSION}.tar.gz"
STANDIN = pathlib.Path(__file__).with_name("thumbnail_standin.py")
SEAFOBJ = pathlib.Path(__file__).with_name("thumbnail_seafobj.py")
# What the archive is built from (the lab mirror's cache key includes these).
SOURCES = (STANDIN, SEAFOBJ)
SEAFOBJ_DIR = "seafile/lib/python3/site-packages"
NOTICE = f"""\
This archive is the opskit lab STAND-IN for Seafile's thumbnail server (release
{VERSION}). It is NOT Seafile's thumbnail server: see thumbnail-server/main.py for
what it implements and what it does not. {SEAFOBJ_DIR}/seafobj is the stand-in for
Seafile's storage library (plain files instead of Seafile's storage).
"""


def build() -> bytes:
    """The release archive (reproducible: fixed owners, modes and mtimes)."""
    files = {
        "thumbnail-server/main.py": (STANDIN.read_bytes(), 0o644),
        f"{SEAFOBJ_DIR}/seafobj/__init__.py": (SEAFOBJ.read_bytes(), 0o644),
        "thumbnail-server/README.opskit-lab-stand-in": (NOTICE.encode(), 0o644),
        "VERSION": (f"{VERSION}\n".encode(), 0o644),
    }
    raw = io.BytesIO()
    dirs = sorted({str(d) for p in files for d in pathlib.PurePosixPath(p).parents})
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for directory in (d for d in dirs if d != "."):
            info = tarfile.TarInfo(f"{directory}/")
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            info.uname = info.gname = "root"
            tar.addfile(info)
        for path in sorted(files):
            data, mode = files[path]
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), mode, 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def sha256() -> str:
    return hashlib.sha256(build()).hexdigest()


def url_path() -> str:
    """The archive's path on the mirror."""
    return f"{PROJECT}/releases/download/v{VERSION}/{ASSET}"


def build_release(mirror_root: pathlib.Path) -> pathlib.Path:
    """Write the archive and a checksum file on the mirror; return the archive's path."""
    path = mirror_root / url_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = build()
    path.write_bytes(blob)
    (path.parent / "sha256sums.txt").write_text(
        f"{hashlib.sha256(blob).hexdigest()}  {ASSET}\n", encoding="utf-8"
    )
    return path
