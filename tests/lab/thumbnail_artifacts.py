"""A release archive of the thumbnail server for the lab mirror, carrying the opskit
STAND-IN (``tests/lab/thumbnail_standin.py``), not Seafile's thumbnail server.

Seafile publishes the thumbnail server only as a Docker image; a site that runs it
outside containers builds its own release archive (the image's
``/opt/seafile/thumbnail-server`` with its Python dependencies) and serves it from its
own mirror. The lab mirror serves such an archive, holding the stand-in as
``thumbnail-server/main.py`` -- the layout the formula's systemd mode expects by
default (``workdir: thumbnail-server``, ``command: [/usr/bin/python3, main.py]``) --
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
NOTICE = f"""\
This archive is the opskit lab STAND-IN for Seafile's thumbnail server (release
{VERSION}). It is NOT Seafile's thumbnail server: see thumbnail-server/main.py for
what it implements and what it does not.
"""


def build() -> bytes:
    """The release archive (reproducible: fixed owners, modes and mtimes)."""
    files = {
        "thumbnail-server/main.py": (STANDIN.read_bytes(), 0o644),
        "thumbnail-server/README.opskit-lab-stand-in": (NOTICE.encode(), 0o644),
        "VERSION": (f"{VERSION}\n".encode(), 0o644),
    }
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("thumbnail-server/")
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
