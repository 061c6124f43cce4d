"""Release-shaped Anubis artifacts for the lab mirror, carrying the opskit STAND-IN.

Anubis cannot be obtained on these machines (upstream ships it only as GitHub release
downloads; Debian does not package it). The lab mirror therefore serves
``tests/lab/anubis_standin.py`` -- a stand-in, not Anubis; its docstring says what it
implements -- packaged exactly the way upstream packages Anubis, so that the opskit
formula's real download -> verify -> install -> systemd path runs against it.

Upstream facts used here (TecharoHQ/anubis ``yeetfile.js``, ``run/``,
``docs/docs/admin/native-install.mdx``; TecharoHQ/yeet ``internal/mkdeb``,
``internal/mktarball``):

- assets live at ``<base>/TecharoHQ/anubis/releases/download/v<version>/``;
- the Debian package is ``anubis_<version>_<arch>.deb`` (nfpm's conventional name) with
  ``/usr/bin/anubis``, ``/usr/lib/systemd/system/anubis@.service`` and
  ``/etc/anubis/default.env``;
- the tarball is ``anubis-<version>-linux-<arch>.tar.gz`` with the top-level directory
  ``anubis-<version>-linux-<arch>/`` holding ``bin/anubis``, ``run/anubis@.service``,
  ``run/default.env`` and ``doc/``;
- the unit is a template: ``EnvironmentFile=/etc/anubis/%i.env``, ``DynamicUser=yes``,
  ``StateDirectory=anubis/%i`` (and Cache/Runtime directories), ``Restart=always``.

Upstream publishes no checksum file for these assets. The lab mirror adds
``sha256sums.txt`` (``<sha256>  <asset>``), as a site's own mirror would; the lab's CMDB
record pins the .deb's sha256 instead, which is what opskit recommends.

Both artifacts are byte-for-byte reproducible (fixed owners, modes and mtimes), so a
pinned sha256 stays valid as long as the stand-in's source does not change.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pathlib
import tarfile

VERSION = "1.27.0"
ARCH = "amd64"
PROJECT = "TecharoHQ/anubis"
STANDIN = pathlib.Path(__file__).with_name("anubis_standin.py")
# The opskit rule modules the stand-in imports (Go regexp syntax, upstream's policy rules),
# shipped beside it in lib/anubis-standin/ (the program looks there first).
RULE_MODULES = tuple(
    pathlib.Path(__file__).resolve().parents[2] / "_utils" / name
    for name in ("opskit_goregexp.py", "opskit_anubis_policy.py")
)

DEB_ASSET = f"anubis_{VERSION}_{ARCH}.deb"
TARBALL_ASSET = f"anubis-{VERSION}-linux-{ARCH}.tar.gz"
CHECKSUMS = "sha256sums.txt"

# Same directives as upstream's run/anubis@.service (written here, not copied).
UNIT = """\
[Unit]
Description="Anubis HTTP defense proxy (instance %i)"

[Service]
ExecStart=/usr/bin/anubis
Restart=always
RestartSec=30s
EnvironmentFile=/etc/anubis/%i.env
LimitNOFILE=infinity
DynamicUser=yes
CacheDirectory=anubis/%i
CacheDirectoryMode=0755
StateDirectory=anubis/%i
StateDirectoryMode=0755
RuntimeDirectory=anubis/%i
RuntimeDirectoryMode=0755
ReadWritePaths=/run

[Install]
WantedBy=multi-user.target
"""

DEFAULT_ENV = """\
BIND=:8923
DIFFICULTY=4
METRICS_BIND=:9090
SERVE_ROBOTS_TXT=0
TARGET=http://localhost:3000
"""

NOTICE = f"""\
This package is the opskit lab STAND-IN for Anubis {VERSION}. It is NOT Anubis.
It exists because the Anubis binary cannot be obtained on the machines that test
opskit; it implements the parts of Anubis's documented behaviour that the opskit
formula relies on. See /usr/bin/anubis (a Python program) for what it does and does
not implement.
"""

CONTROL = f"""\
Package: anubis
Version: {VERSION}
Architecture: {ARCH}
Maintainer: opskit lab <lab@opskit.invalid>
Depends: python3, python3-yaml
Section: httpd
Priority: optional
Homepage: https://anubis.techaro.lol
Description: opskit lab stand-in for Anubis (NOT Anubis)
 Implements the parts of Anubis's documented behaviour that the opskit anubis
 formula and its tests rely on. Built by tests/lab/anubis_artifacts.py.
"""


def _tar(files: dict[str, tuple[bytes, int]], prefix: str = "") -> bytes:
    """A reproducible gzip'd tar: every ancestor directory, root owner, mtime 0."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        dirs = set()
        for path in files:
            parent = pathlib.PurePosixPath(path).parent
            while str(parent) not in (".", "/"):
                dirs.add(str(parent))
                parent = parent.parent
        entries = ([prefix] if prefix else []) + [prefix + d + "/" for d in sorted(dirs)]
        for directory in entries:
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            info.uname = info.gname = "root"
            tar.addfile(info)
        for path in sorted(files):
            data, mode = files[path]
            info = tarfile.TarInfo(prefix + path)
            info.size, info.mode, info.mtime = len(data), mode, 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def _ar(members: list[tuple[str, bytes]]) -> bytes:
    """A Unix ar archive (the .deb container), timestamps 0."""
    out = io.BytesIO()
    out.write(b"!<arch>\n")
    for name, data in members:
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n"
        out.write(header.encode("ascii"))
        out.write(data)
        if len(data) % 2:
            out.write(b"\n")
    return out.getvalue()


def _rule_modules(directory: str) -> dict[str, tuple[bytes, int]]:
    return {f"{directory}/{path.name}": (path.read_bytes(), 0o644) for path in RULE_MODULES}


def build_deb() -> bytes:
    files = {
        "usr/bin/anubis": (STANDIN.read_bytes(), 0o755),
        "usr/lib/systemd/system/anubis@.service": (UNIT.encode(), 0o644),
        "etc/anubis/default.env": (DEFAULT_ENV.encode(), 0o644),
        "usr/share/doc/anubis/README.opskit-lab-stand-in": (NOTICE.encode(), 0o644),
        **_rule_modules("usr/lib/anubis-standin"),
    }
    data = _tar(files, prefix="./")
    md5sums = "".join(
        f"{hashlib.md5(content, usedforsecurity=False).hexdigest()}  {path}\n"
        for path, (content, _) in sorted(files.items())
        if not path.startswith("etc/")
    )
    control = _tar(
        {
            "control": (CONTROL.encode(), 0o644),
            "conffiles": (b"/etc/anubis/default.env\n", 0o644),
            "md5sums": (md5sums.encode(), 0o644),
        },
        prefix="./",
    )
    return _ar([("debian-binary", b"2.0\n"), ("control.tar.gz", control), ("data.tar.gz", data)])


def build_tarball() -> bytes:
    top = TARBALL_ASSET.removesuffix(".tar.gz") + "/"
    return _tar(
        {
            "bin/anubis": (STANDIN.read_bytes(), 0o755),
            **_rule_modules("lib/anubis-standin"),
            "run/anubis@.service": (UNIT.encode(), 0o644),
            "run/default.env": (DEFAULT_ENV.encode(), 0o644),
            "doc/VERSION": (f"{VERSION}\n".encode(), 0o644),
            "README.md": (NOTICE.encode(), 0o644),
        },
        prefix=top,
    )


def release_dir(mirror_root: pathlib.Path) -> pathlib.Path:
    return mirror_root / PROJECT / "releases" / "download" / f"v{VERSION}"


def build_release(mirror_root: pathlib.Path) -> list[pathlib.Path]:
    """Write both assets and the mirror's checksum file; return the asset paths."""
    directory = release_dir(mirror_root)
    directory.mkdir(parents=True, exist_ok=True)
    assets = {DEB_ASSET: build_deb(), TARBALL_ASSET: build_tarball()}
    lines = []
    for name, blob in sorted(assets.items()):
        (directory / name).write_bytes(blob)
        lines.append(f"{hashlib.sha256(blob).hexdigest()}  {name}\n")
    (directory / CHECKSUMS).write_text("".join(lines), encoding="utf-8")
    return [directory / name for name in sorted(assets)]


def sha256_of(asset: str) -> str:
    """The sha256 of an asset as built from the current sources (for pins and tests)."""
    blob = build_deb() if asset == DEB_ASSET else build_tarball()
    return hashlib.sha256(blob).hexdigest()
