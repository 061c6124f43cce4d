"""The exporter catalog and the pure logic around it (no I/O, no Salt).

One place holds what opskit knows about each Prometheus exporter it manages: how the
upstream project names its release assets and checksum files, which CPU architectures
it ships, its default port, binary, flag dialect and environment variables, the Debian
package that carries it, and which versions can serve a ``--web.config.file``. Every
fact carries a comment saying where it comes from (upstream build configuration read
at the tag or commit named), so a reviewer can check it and a maintainer can update it.

The execution module ``exporter`` (``_modules/exporter.py``) drives installs from this
catalog; the functions here render units, environment files and web configuration,
parse checksum files and decide compatibility, and are unit-tested without Salt.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import pathlib
import re
import urllib.parse

# ---------------------------------------------------------------------------------------
# Versions
# ---------------------------------------------------------------------------------------
SEMVER_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
# dcgm-exporter release tags pair the DCGM version it was built against with its own:
# "<DCGM>-<exporter>", e.g. 4.5.3-4.8.2 (NVIDIA/dcgm-exporter RELEASE.md "Versioning";
# the Makefile builds with -X main.BuildVersion=${DCGM_VERSION}-${VERSION}).
DCGM_PAIR_RE = re.compile(r"^(\d+\.\d+\.\d+)-(\d+\.\d+\.\d+)$")


def parse_version(version: str) -> tuple[int, int, int]:
    """'1.5.0' -> (1, 5, 0); anything else raises ValueError with the value named."""
    match = SEMVER_RE.match(str(version))
    if not match:
        raise ValueError(f"{version!r} is not a release version like 1.5.0")
    return tuple(int(part) for part in match.groups())


def version_at_least(version: str, minimum: str) -> bool:
    return parse_version(version) >= parse_version(minimum)


def upstream_version(package_version: str) -> str:
    """A Debian package version's upstream part: '1:4.5.3-1' -> '4.5.3',
    '1.5.0-1+b6' -> '1.5.0', '0.11.1-3+b5' -> '0.11.1'."""
    without_epoch = str(package_version).split(":", 1)[-1]
    upstream = without_epoch.rsplit("-", 1)[0] if "-" in without_epoch else without_epoch
    return re.sub(r"[+~].*$", "", upstream)


# ---------------------------------------------------------------------------------------
# The catalog
# ---------------------------------------------------------------------------------------
GITHUB = "https://github.com"

# How an exporter parses its command line; it decides how opskit writes boolean flags.
#   kingpin: --flag / --no-flag            (prometheus/common, used by promu projects)
#   goflag:  --flag / --flag=false         (Go's flag package: one or two dashes work)
#   urfave:  --flag / --flag=false         (urfave/cli, dcgm-exporter)
FLAG_STYLES = ("kingpin", "goflag", "urfave")


@dataclasses.dataclass(frozen=True)
class WebConfigSupport:
    """Which flag points the exporter at an exporter-toolkit web configuration file,
    from which version on (versions before the first entry have none)."""

    since: tuple[tuple[str, str], ...] = ()  # ((min_version, flag), ...) ascending

    def flag_for(self, version: str) -> str | None:
        flag = None
        for minimum, name in self.since:
            if version_at_least(version, minimum):
                flag = name
        return flag


@dataclasses.dataclass(frozen=True)
class Exporter:
    """Everything opskit needs to know about one exporter."""

    name: str  # catalog name, also the systemd unit and the system user
    project: str  # owner/repository on GitHub
    binary: str  # the executable inside the release archive
    port: int  # default listen port
    asset: str  # release asset; {version} and {arch} are filled in
    top_dir: str | None  # directory inside the archive; "" = none; None = asset minus .tar.gz
    checksums: tuple[tuple[str, str], ...]  # ((min_version, file name template), ...)
    arches: dict[str, str]  # machine (uname -m, grains cpuarch) -> upstream arch name
    flag_style: str
    listen_flag: str
    metric_prefix: str  # a series only this exporter exposes; proves the right one answers
    up_metric: str | None  # 1 when the exporter reaches what it watches (None: n/a)
    description: str
    tag: str = "v{version}"
    min_archive_version: str = "0.0.0"  # oldest release named by this scheme
    web_config: WebConfigSupport = WebConfigSupport()
    package: str | None = None  # Debian package carrying the binary
    package_binary: str | None = None
    package_unit: str | None = None  # the package's own unit, masked in favour of ours
    package_user: str | None = None  # system user the package's maintainer scripts create
    run_as_root: bool = False
    version_re: re.Pattern = SEMVER_RE
    default_base_url: str | None = GITHUB
    # Options opskit sets itself; refused in `flags` so there is one way to say each.
    managed_flags: tuple[str, ...] = ()
    # Flags whose value is a secret: refused in `flags` (they would land in argv).
    secret_flags: tuple[str, ...] = ()

    def checksum_file(self, version: str) -> str:
        name = None
        for minimum, template in self.checksums:
            if version_at_least(self.release_version(version), minimum):
                name = template
        if name is None:
            raise ValueError(f"{self.name} {version} predates every checksum scheme opskit knows")
        return name.format(version=version)

    def release_version(self, version: str) -> str:
        """The exporter's own version (for dcgm-exporter: the part after the DCGM one)."""
        if self.version_re is DCGM_PAIR_RE:
            match = DCGM_PAIR_RE.match(version)
            if not match:
                raise ValueError(f"{version!r} is not a dcgm-exporter release tag like 4.5.3-4.8.2")
            return match.group(2)
        parse_version(version)
        return version

    def web_config_flag(self, version: str) -> str | None:
        return self.web_config.flag_for(self.release_version(version))


# Architecture names ----------------------------------------------------------------------
# promu (prometheus/promu cmd/crossbuild.go defaultPlatforms, read at HEAD 2026-08): linux
# builds for 386, amd64, arm64, armv5, armv6, armv7, mips*, ppc64, ppc64le, riscv64,
# s390x; cmd/tarball.go names them <name>-<version>.<os>-<arch>.
PROMU_ARCHES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "armv7",
    "armv6l": "armv6",
    "armv5tel": "armv5",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "ppc64": "ppc64",
    "s390x": "s390x",
    "riscv64": "riscv64",
}
# redis_exporter (Makefile build-all-binaries, gox -arch lists, read at v1.88.0): linux
# amd64, 386, arm, arm64, mips64, mips64le, ppc64, ppc64le, s390x. There is a single
# 32-bit ARM build named "arm" whose GOARM level upstream does not state; opskit maps
# only ARMv7 machines to it and refuses older ARM cores rather than guess.
REDIS_ARCHES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "ppc64": "ppc64",
    "s390x": "s390x",
}
# nginx-prometheus-exporter (.goreleaser.yml at v1.5.3 and v0.11.0): goarch 386, amd64,
# arm (goarm 5, 6, 7), arm64, mips64(le), ppc64(le), riscv64 (1.x), s390x; goreleaser's
# default archive name appends "v<goarm>" to "arm".
GORELEASER_ARCHES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "armv7",
    "armv6l": "armv6",
    "armv5tel": "armv5",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "ppc64": "ppc64",
    "s390x": "s390x",
    "riscv64": "riscv64",
}
# dcgm-exporter is built for linux/amd64 and linux/arm64 only (Makefile PLATFORMS).
DCGM_ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}

CATALOG: dict[str, Exporter] = {
    exporter.name: exporter
    for exporter in (
        Exporter(
            name="node_exporter",
            description="Prometheus node_exporter (machine metrics)",
            project="prometheus/node_exporter",
            binary="node_exporter",
            # Default port 9100: node_exporter --help (--web.listen-address=:9100).
            port=9100,
            # promu: asset and top directory <name>-<version>.linux-<arch>, checksum file
            # sha256sums.txt (promu cmd/checksum.go checksumsFilename).
            asset="node_exporter-{version}.linux-{arch}.tar.gz",
            top_dir=None,
            checksums=(("0.0.0", "sha256sums.txt"),),
            arches=PROMU_ARCHES,
            flag_style="kingpin",
            listen_flag="--web.listen-address",
            metric_prefix="node_",
            up_metric=None,
            # node_exporter CHANGELOG: 1.0.0 added experimental TLS (--web.config);
            # 1.5.0 renamed it to --web.config.file.
            web_config=WebConfigSupport(
                (("1.0.0", "--web.config"), ("1.5.0", "--web.config.file"))
            ),
            # Debian bookworm: prometheus-node-exporter ships /usr/bin/prometheus-node-exporter
            # and lib/systemd/system/prometheus-node-exporter.service (dpkg-deb -c).
            package="prometheus-node-exporter",
            package_binary="/usr/bin/prometheus-node-exporter",
            package_unit="prometheus-node-exporter.service",
            # Debian's prometheus-*-exporter postinst scripts add the system user
            # "prometheus", and purging the package leaves it (Debian policy).
            package_user="prometheus",
            managed_flags=(
                "web.listen-address",
                "web.config",
                "web.config.file",
                "collector.textfile.directory",
            ),
        ),
        Exporter(
            name="redis_exporter",
            description="Prometheus redis_exporter (oliver006)",
            project="oliver006/redis_exporter",
            binary="redis_exporter",
            # Default port 9121: main.go -web.listen-address default ":9121".
            port=9121,
            # package-github-binaries.sh tars .build/redis_exporter-${GITHUB_REF_NAME}.<os>-<arch>
            # where the ref name is the tag, "v" included, and writes sha256sums.txt.
            asset="redis_exporter-v{version}.linux-{arch}.tar.gz",
            top_dir=None,
            checksums=(("0.0.0", "sha256sums.txt"),),
            arches=REDIS_ARCHES,
            flag_style="goflag",
            listen_flag="--web.listen-address",
            metric_prefix="redis_",
            up_metric="redis_up",
            # No exporter-toolkit web config: TLS comes from -tls-server-* flags (since
            # v1.9.0) and basic auth from REDIS_EXPORTER_BASIC_AUTH_* (see REDIS_BASIC_AUTH).
            web_config=WebConfigSupport(),
            package="prometheus-redis-exporter",
            package_binary="/usr/bin/prometheus-redis-exporter",
            package_unit="prometheus-redis-exporter.service",
            package_user="prometheus",
            managed_flags=(
                "web.listen-address",
                "redis.addr",
                "redis.user",
                "tls-ca-cert-file",
                "tls-client-cert-file",
                "tls-client-key-file",
                "tls-server-cert-file",
                "tls-server-key-file",
                "tls-server-ca-cert-file",
                "skip-tls-verification",
            ),
            secret_flags=(
                "redis.password",
                "redis.password-file",
                "basic-auth-password",
                "basic-auth-hash-password",
            ),
        ),
        Exporter(
            name="postgres_exporter",
            description="Prometheus postgres_exporter (prometheus-community)",
            project="prometheus-community/postgres_exporter",
            binary="postgres_exporter",
            # Default port 9187: postgres_exporter --help (--web.listen-address=:9187).
            port=9187,
            # 0.9.0 is the first release under prometheus-community built with promu
            # (CHANGELOG 0.9.0: "Update build to use standard Prometheus promu/Dockerfile");
            # older releases used another naming scheme, which opskit does not download.
            asset="postgres_exporter-{version}.linux-{arch}.tar.gz",
            top_dir=None,
            checksums=(("0.9.0", "sha256sums.txt"),),
            arches=PROMU_ARCHES,
            min_archive_version="0.9.0",
            flag_style="kingpin",
            listen_flag="--web.listen-address",
            metric_prefix="pg_",
            up_metric="pg_up",
            # exporter-toolkit's kingpinflag defines --web.config.file in every release
            # (v0.5.0 .. v0.8.x); postgres_exporter uses it since 0.10.0 ("Switch to
            # go-kit log and enable TLS/basic auth", 2021-03-02, first tagged v0.10.0).
            web_config=WebConfigSupport((("0.10.0", "--web.config.file"),)),
            package="prometheus-postgres-exporter",
            package_binary="/usr/bin/prometheus-postgres-exporter",
            package_unit="prometheus-postgres-exporter.service",
            package_user="prometheus",
            managed_flags=("web.listen-address", "web.config.file"),
        ),
        Exporter(
            name="nginx_exporter",
            description="NGINX Prometheus exporter (nginx/nginx-prometheus-exporter)",
            # The repository moved from nginxinc/ to nginx/; GitHub redirects the old path.
            project="nginx/nginx-prometheus-exporter",
            binary="nginx-prometheus-exporter",
            # Default port 9113: exporter.go web.listen-address default ":9113".
            port=9113,
            # goreleaser's default archive name <project>_<version>_<os>_<arch>, files at
            # the archive's top level (no wrap_in_directory in .goreleaser.yml).
            asset="nginx-prometheus-exporter_{version}_linux_{arch}.tar.gz",
            top_dir="",
            # Checksum file: .goreleaser.yml up to 0.11.x sets name_template
            # 'sha256sums.txt'; 1.0.0 dropped it, so goreleaser's default
            # <project>_<version>_checksums.txt applies from then on.
            checksums=(
                ("0.0.0", "sha256sums.txt"),
                ("1.0.0", "nginx-prometheus-exporter_{version}_checksums.txt"),
            ),
            arches=GORELEASER_ARCHES,
            # 0.x used Go's flag package, 1.0.0 moved to kingpin (#420); both accept
            # --flag=value, and opskit writes booleans as --flag=true/false for 0.x.
            flag_style="kingpin",
            listen_flag="--web.listen-address",
            metric_prefix="nginx_",
            up_metric="nginx_up",
            # exporter-toolkit web config since 1.0.0 (#461 "Use web configuration from
            # exporter-toolkit", first tagged v1.0.0).
            web_config=WebConfigSupport((("1.0.0", "--web.config.file"),)),
            package="prometheus-nginx-exporter",
            package_binary="/usr/bin/prometheus-nginx-exporter",
            package_unit="prometheus-nginx-exporter.service",
            package_user="prometheus",
            managed_flags=("web.listen-address", "web.config.file", "nginx.scrape-uri"),
        ),
        Exporter(
            name="dcgm_exporter",
            description="NVIDIA DCGM exporter (GPU metrics)",
            project="NVIDIA/dcgm-exporter",
            binary="dcgm-exporter",
            # Default port 9400: pkg/cmd/app.go --address default ":9400".
            port=9400,
            # NVIDIA publishes dcgm-exporter as container images and packages, not as
            # release archives. opskit downloads it only from a site mirror, laid out
            # like the other exporters: <base>/NVIDIA/dcgm-exporter/releases/download/
            # <tag>/dcgm-exporter-<tag>.linux-<arch>.tar.gz with a sha256sums.txt.
            asset="dcgm-exporter-{version}.linux-{arch}.tar.gz",
            top_dir=None,
            tag="{version}",
            checksums=(("0.0.0", "sha256sums.txt"),),
            arches=DCGM_ARCHES,
            version_re=DCGM_PAIR_RE,
            default_base_url=None,
            flag_style="urfave",
            listen_flag="--address",
            metric_prefix="DCGM_",
            up_metric=None,
            # --web-config-file since tag 3.3.3-3.3.0 ("TLS and Basic Auth support", #209).
            web_config=WebConfigSupport((("3.3.0", "--web-config-file"),)),
            # Package name per the issue and NVIDIA's CUDA repository; the binary path
            # and unit follow the upstream Makefile (install -> /usr/bin/dcgm-exporter)
            # and packaging/config-files/systemd/nvidia-dcgm-exporter.service.
            package="datacenter-gpu-manager-exporter",
            package_binary="/usr/bin/dcgm-exporter",
            package_unit="nvidia-dcgm-exporter.service",
            # DCGM needs root (NVIDIA's own unit runs User=root; profiling metrics need
            # CAP_SYS_ADMIN per the upstream README's docker run --cap-add SYS_ADMIN).
            run_as_root=True,
            managed_flags=(
                "address",
                "a",
                "web-config-file",
                "collectors",
                "f",
                "remote-hostengine-info",
                "r",
            ),
        ),
    )
}

# redis_exporter basic auth (main.go): REDIS_EXPORTER_BASIC_AUTH_USERNAME and
# ..._PASSWORD since v1.67.0 (#967), ..._HASH_PASSWORD (bcrypt) since v1.80.2 (#1066).
# opskit only ever writes the bcrypt hash, so it needs 1.80.2.
REDIS_BASIC_AUTH_SINCE = "1.80.2"
# redis_exporter -tls-server-cert-file/-key-file since v1.9.0.
REDIS_TLS_SERVER_SINCE = "1.9.0"

# postgres_exporter against PostgreSQL majors. "refuse": a pair upstream fixed a
# breaking incompatibility for; "untested": upstream CI does not cover that major yet.
#   PostgreSQL 17 moved the checkpoint columns from pg_stat_bgwriter to
#   pg_stat_checkpointer; postgres_exporter fixed the collector in 0.17.0 (#1072) and
#   added PostgreSQL 17 to CI then (#1105).
#   PostgreSQL 16 joined the CI matrix in 0.15.0, PostgreSQL 18 in 0.19.0 (#1239)
#   (README "CI Tested PostgreSQL versions", git history).
POSTGRES_COMPAT = (
    # (postgres major, minimum exporter, severity, reason)
    (16, "0.15.0", "untested", "PostgreSQL 16 is in postgres_exporter's CI from 0.15.0"),
    (
        17,
        "0.17.0",
        "refuse",
        "PostgreSQL 17 moved the checkpoint columns from pg_stat_bgwriter to "
        "pg_stat_checkpointer; postgres_exporter reads them there from 0.17.0 (#1072)",
    ),
    (18, "0.19.0", "untested", "PostgreSQL 18 is in postgres_exporter's CI from 0.19.0"),
)
POSTGRES_NEWEST_KNOWN = 18


class CompatibilityError(ValueError):
    """A combination opskit refuses to install (message says what to use instead)."""


def postgres_compatibility(exporter_version: str, postgres_major: int) -> list[str]:
    """Check postgres_exporter ``exporter_version`` against a PostgreSQL major.

    Raises CompatibilityError for a known-bad pair, naming the first good exporter
    version; returns warnings for pairs upstream does not test.
    """
    try:
        major = int(postgres_major)
    except (TypeError, ValueError):
        raise CompatibilityError(
            f"PostgreSQL major version {postgres_major!r} is not a number like 15"
        ) from None
    warnings = []
    for pg_major, minimum, severity, reason in POSTGRES_COMPAT:
        if major < pg_major or version_at_least(exporter_version, minimum):
            continue
        if severity == "refuse":
            raise CompatibilityError(
                f"postgres_exporter {exporter_version} does not work with PostgreSQL "
                f"{major}: {reason}. Use postgres_exporter {minimum} or newer."
            )
        if major == pg_major:
            warnings.append(f"{reason}; {exporter_version} is older (untested pair)")
    if major > POSTGRES_NEWEST_KNOWN:
        warnings.append(
            f"PostgreSQL {major} is newer than any major opskit's compatibility table "
            f"knows ({POSTGRES_NEWEST_KNOWN}); check postgres_exporter's release notes"
        )
    return warnings


def dcgm_pair(tag: str) -> tuple[str, str]:
    """'4.5.3-4.8.2' -> ('4.5.3', '4.8.2'): the DCGM version and the exporter version."""
    match = DCGM_PAIR_RE.match(str(tag))
    if not match:
        raise CompatibilityError(
            f"dcgm_exporter version {tag!r} is not a release tag of the form "
            "<DCGM version>-<exporter version>, e.g. 4.5.3-4.8.2"
        )
    return match.group(1), match.group(2)


def check_dcgm_pair(tag: str, dcgm_version: str, where: str) -> None:
    """Refuse a DCGM whose version differs from the one ``tag`` was built against.

    ``where`` says where ``dcgm_version`` comes from (pillar, installed package, ...).
    """
    wanted, exporter_version = dcgm_pair(tag)
    have = upstream_version(dcgm_version)
    if have != wanted:
        raise CompatibilityError(
            f"dcgm-exporter {tag} is built for DCGM {wanted}, but {where} is DCGM {have}. "
            f"Install DCGM {wanted}, or pick the dcgm-exporter release built for DCGM "
            f"{have} (its tag starts with {have}-)."
        )
    del exporter_version


# ---------------------------------------------------------------------------------------
# Release assets and checksums
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Release:
    """Where one exporter release for one architecture lives."""

    exporter: str
    version: str
    arch: str  # upstream's architecture name
    asset: str
    asset_url: str
    checksums_url: str
    checksums_file: str
    member: str  # path of the binary inside the archive

    @property
    def key(self) -> str:
        """Directory name for this version and architecture (cache and install)."""
        return f"{self.version}.linux-{self.arch}"


def arch_for(exporter: Exporter, machine: str) -> str:
    """Upstream's architecture name for a machine type (grains cpuarch / uname -m)."""
    try:
        return exporter.arches[machine]
    except KeyError:
        known = ", ".join(sorted(exporter.arches))
        raise ValueError(
            f"{exporter.name} publishes no build for CPU architecture {machine!r} "
            f"(known: {known}); use source: package, or a site mirror with your own build"
        ) from None


def release(exporter: Exporter, version: str, machine: str, base_url: str | None) -> Release:
    """The asset and checksum file URLs of ``exporter`` ``version`` for ``machine``."""
    if not exporter.version_re.match(str(version)):
        example = "4.5.3-4.8.2" if exporter.version_re is DCGM_PAIR_RE else "1.5.0"
        raise ValueError(
            f"{exporter.name} version {version!r} is not an exact release version like "
            f"{example} (opskit installs pinned versions only)"
        )
    release_version = exporter.release_version(version)
    if not version_at_least(release_version, exporter.min_archive_version):
        raise ValueError(
            f"{exporter.name} {version} predates release archives named the way opskit "
            f"knows (from {exporter.min_archive_version} on); pick a newer version or "
            "use source: package"
        )
    base = base_url or exporter.default_base_url
    if not base:
        raise ValueError(
            f"{exporter.name} has no upstream release archives; set base_url to a site "
            "mirror that serves them, or use source: package"
        )
    arch = arch_for(exporter, machine)
    asset = exporter.asset.format(version=version, arch=arch)
    if exporter.top_dir is None:
        member = f"{asset.removesuffix('.tar.gz')}/{exporter.binary}"
    elif exporter.top_dir:
        member = f"{exporter.top_dir.format(version=version, arch=arch)}/{exporter.binary}"
    else:
        member = exporter.binary
    tag = exporter.tag.format(version=version)
    directory = f"{base.rstrip('/')}/{exporter.project}/releases/download/{tag}"
    checksums_file = exporter.checksum_file(version)
    return Release(
        exporter=exporter.name,
        version=version,
        arch=arch,
        asset=asset,
        asset_url=f"{directory}/{asset}",
        checksums_url=f"{directory}/{checksums_file}",
        checksums_file=checksums_file,
        member=member,
    )


SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def parse_checksums(text: str, source: str = "checksum file") -> dict[str, str]:
    """Parse sha256sum output: '<64 hex>  <file>' or '<64 hex> *<file>' per line.

    Blank lines and '#' comments are ignored; any other malformed line, or a file
    listed twice with different sums, raises ValueError naming ``source`` and the line.
    """
    sums: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        if len(parts) != 2 or not SHA256_RE.match(parts[0].lower()):
            raise ValueError(f"{source} line {number} is not '<sha256>  <file>': {raw[:120]!r}")
        digest, name = parts[0].lower(), parts[1].strip().lstrip("*")
        name = name.removeprefix("./")
        if name in sums and sums[name] != digest:
            raise ValueError(f"{source} lists {name} twice with different sums")
        sums[name] = digest
    if not sums:
        raise ValueError(f"{source} lists no files")
    return sums


def normalise_sha256(value: str, what: str) -> str:
    """Accept '<hex>' or 'sha256:<hex>' (any case); return lowercase hex."""
    text = str(value).strip().lower().removeprefix("sha256:").removeprefix("sha256=")
    if not SHA256_RE.match(text):
        raise ValueError(f"{what} must be a sha256 hex digest (64 hex characters), got {value!r}")
    return text


def sha256_file(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def redact_url(url: str) -> str:
    """Drop user:password from a URL before it goes into a message."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, ""))


SECRET_PATTERNS = (
    re.compile(r"(://[^/\s:@]*:)[^@\s/]+@"),  # scheme://user:password@
    re.compile(r"(?i)(password\s*[=:]\s*)('[^']*'|\"[^\"]*\"|\S+)"),
)


def redact(text: str, secrets=()) -> str:
    """Remove known secret values and password-looking fragments from ``text``."""
    for secret in sorted((s for s in secrets if s and len(str(s)) >= 3), key=len, reverse=True):
        text = text.replace(str(secret), "<redacted>")
    text = SECRET_PATTERNS[0].sub(r"\1<redacted>@", text)
    return SECRET_PATTERNS[1].sub(r"\1<redacted>", text)


# ---------------------------------------------------------------------------------------
# Listen addresses and scrape targets
# ---------------------------------------------------------------------------------------
def parse_listen(listen: str | int | None, default_port: int) -> tuple[str, int]:
    """':9100', '0.0.0.0:9100', '[::1]:9100', '127.0.0.1', 9100 -> (host, port).

    An empty host means all addresses.
    """
    if listen is None or listen == "":
        return "", default_port
    if isinstance(listen, int) and not isinstance(listen, bool):
        host, port_text = "", str(listen)
    else:
        text = str(listen).strip()
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port_text = rest.removeprefix(":") or str(default_port)
        elif text.count(":") == 1:
            host, port_text = text.split(":")
        elif text.count(":") > 1:
            raise ValueError(f"listen address {listen!r}: write IPv6 addresses as [addr]:port")
        elif text.isdigit():
            host, port_text = "", text
        else:
            host, port_text = text, str(default_port)
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"listen address {listen!r}: the port must be 1-65535")
    if host:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not re.match(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$", host):
                raise ValueError(f"listen address {listen!r}: {host!r} is not a host") from None
    return host, int(port_text)


def format_listen(host: str, port: int) -> str:
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def probe_host(listen_host: str) -> str:
    """Where to reach an exporter on this host: wildcards mean loopback."""
    if listen_host in ("", "0.0.0.0", "::"):  # noqa: S104 - a comparison, not a bind
        return "127.0.0.1"
    return listen_host


# ---------------------------------------------------------------------------------------
# Rendering: flags, environment files, web configuration, the systemd unit
# ---------------------------------------------------------------------------------------
FLAG_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def systemd_quote(value: str, specifiers: bool = False) -> str:
    """Quote one ExecStart= argument so the exporter receives ``value`` exactly.

    ``$`` is always escaped; ``%`` too unless ``specifiers`` is set, for arguments
    opskit builds itself that name systemd's credentials directory as ``%d``.
    """
    text = str(value)
    if "\n" in text or "\r" in text:
        raise ValueError(f"argument {text[:40]!r} contains a newline")
    if not specifiers:
        text = text.replace("%", "%%")
    text = text.replace("$", "$$")
    if re.match(r"^[A-Za-z0-9_@%+=:,./-]+$", text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def flag_args(exporter: Exporter, version: str, flags: dict | None) -> list[str]:
    """Turn a {flag: value} mapping into command-line arguments, validated.

    True -> --flag; False -> --no-flag (kingpin) or --flag=false; a list repeats the
    flag; None drops it. Flags opskit manages or that carry secrets are refused.
    """
    args = []
    style = exporter.flag_style
    if exporter.name == "nginx_exporter" and not version_at_least(version, "1.0.0"):
        style = "goflag"
    for raw_name, value in sorted((flags or {}).items()):
        name = str(raw_name).lstrip("-")
        if not FLAG_NAME_RE.match(name):
            raise ValueError(f"{exporter.name}: {raw_name!r} is not a flag name")
        if name in exporter.secret_flags or re.search(r"password|secret|token", name):
            raise ValueError(
                f"{exporter.name}: flag --{name} would put a secret into the process's "
                "arguments (visible to every user); use the exporter's secret options "
                "(password, dsn, web.basic_auth_users), which go to a 0600 file"
            )
        if name in exporter.managed_flags:
            raise ValueError(
                f"{exporter.name}: --{name} is set by opskit from its own options "
                "(listen, web, redis, postgres, nginx, dcgm, textfile_directory); set it there"
            )
        values = value if isinstance(value, list) else [value]
        for item in values:
            if item is None:
                continue
            if item is True:
                args.append(f"--{name}")
            elif item is False:
                args.append(f"--no-{name}" if style == "kingpin" else f"--{name}=false")
            elif isinstance(item, (str, int, float)):
                args.append(f"--{name}={item}")
            else:
                raise ValueError(
                    f"{exporter.name}: flag --{name} has a {type(item).__name__} value; "
                    "use a string, number, boolean or list of those"
                )
    return args


def env_file(env: dict[str, str]) -> str:
    """Render a systemd EnvironmentFile: KEY="value" with \\, ", $ and ` escaped."""
    lines = ["# Managed by opskit; holds secrets: keep it 0600."]
    for key in sorted(env):
        value = env[key]
        if not ENV_NAME_RE.match(key):
            raise ValueError(f"{key!r} is not an environment variable name")
        text = str(value)
        if "\n" in text or "\r" in text or "\0" in text:
            raise ValueError(f"environment variable {key} contains a newline or NUL byte")
        for char in ("\\", '"', "$", "`"):
            text = text.replace(char, "\\" + char)
        lines.append(f'{key}="{text}"')
    return "\n".join(lines) + "\n"


BCRYPT_RE = re.compile(r"^\$2[aby]?\$\d{2}\$[./A-Za-z0-9]{53}$")


def web_config_yaml(
    basic_auth_users: dict[str, str] | None,
    tls_cert: str | None,
    tls_key: str | None,
    tls_client_ca: str | None,
) -> str:
    """An exporter-toolkit web configuration (TLS and/or basic auth) as YAML text.

    Passwords must already be bcrypt hashes; plain passwords are refused.
    """
    lines = ["# Managed by opskit: exporter-toolkit web configuration."]
    if tls_cert or tls_key:
        if not (tls_cert and tls_key):
            raise ValueError("web TLS needs both cert and key")
        lines += ["tls_server_config:", f"  cert_file: {_yaml_str(tls_cert)}"]
        lines.append(f"  key_file: {_yaml_str(tls_key)}")
        if tls_client_ca:
            lines += [
                f"  client_ca_file: {_yaml_str(tls_client_ca)}",
                "  client_auth_type: RequireAndVerifyClientCert",
            ]
    if basic_auth_users:
        lines.append("basic_auth_users:")
        for user in sorted(basic_auth_users):
            digest = str(basic_auth_users[user])
            if not BCRYPT_RE.match(digest):
                raise ValueError(
                    f"web.basic_auth_users.{user} must be a bcrypt hash ($2y$...); "
                    "never a plain password (make one with: htpasswd -nBC 10 '' | tr -d ':')"
                )
            lines.append(f"  {_yaml_str(user)}: {_yaml_str(digest)}")
    return "\n".join(lines) + "\n"


def _yaml_str(value: str) -> str:
    text = str(value)
    if "\n" in text:
        raise ValueError(f"{text[:30]!r} contains a newline")
    return "'" + text.replace("'", "''") + "'"


# Hardening every exporter gets; the per-exporter adaptations follow in unit_text().
BASE_HARDENING = (
    ("NoNewPrivileges", "yes"),
    ("ProtectSystem", "strict"),
    ("ProtectHome", "yes"),
    ("PrivateTmp", "yes"),
    ("PrivateDevices", "yes"),
    ("ProtectKernelTunables", "yes"),
    ("ProtectKernelModules", "yes"),
    ("ProtectKernelLogs", "yes"),
    ("ProtectControlGroups", "yes"),
    ("ProtectClock", "yes"),
    ("ProtectHostname", "yes"),
    ("RestrictNamespaces", "yes"),
    ("RestrictRealtime", "yes"),
    ("RestrictSUIDSGID", "yes"),
    ("LockPersonality", "yes"),
    ("MemoryDenyWriteExecute", "yes"),
    ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
    ("CapabilityBoundingSet", ""),
    ("SystemCallArchitectures", "native"),
    ("SystemCallFilter", "@system-service"),
    ("SystemCallErrorNumber", "EPERM"),
    ("UMask", "0077"),
)


@dataclasses.dataclass
class UnitSpec:
    """What goes into one exporter's systemd unit (no secrets: those are in files)."""

    exporter: Exporter
    version: str
    exec_path: str
    args: list[str]
    user: str
    environment: dict[str, str] = dataclasses.field(default_factory=dict)  # non-secret
    environment_file: str | None = None
    credentials: dict[str, str] = dataclasses.field(default_factory=dict)  # id -> source path
    read_only_paths: list[str] = dataclasses.field(default_factory=list)
    after: list[str] = dataclasses.field(default_factory=list)
    requires: list[str] = dataclasses.field(default_factory=list)
    source: str = "archive"


def unit_text(spec: UnitSpec) -> str:
    """Render the hardened systemd unit for one exporter."""
    exporter = spec.exporter
    hardening = dict(BASE_HARDENING)
    if exporter.name == "node_exporter":
        # Machine metrics: filesystems under /home must stay visible (read-only), and
        # the netclass/netdev collectors may use netlink sockets.
        hardening["ProtectHome"] = "read-only"
        hardening["RestrictAddressFamilies"] = "AF_UNIX AF_INET AF_INET6 AF_NETLINK"
    if exporter.run_as_root:
        # DCGM talks to /dev/nvidia* and needs CAP_SYS_ADMIN for profiling metrics;
        # libdcgm loads code at run time.
        for key in ("PrivateDevices", "MemoryDenyWriteExecute", "ProtectKernelModules"):
            hardening.pop(key)
        hardening["CapabilityBoundingSet"] = "CAP_SYS_ADMIN"
        hardening["RestrictAddressFamilies"] = "AF_UNIX AF_INET AF_INET6 AF_NETLINK AF_VSOCK"
    after = ["network-online.target", *spec.after]
    lines = [
        f"# Managed by opskit (exporter.install {exporter.name}); local edits are overwritten.",
        "[Unit]",
        f"Description={exporter.description} {spec.version} ({spec.source}, opskit)",
        f"Documentation=https://github.com/{exporter.project}",
        "Wants=network-online.target",
        f"After={' '.join(after)}",
    ]
    lines += [f"Requires={unit}" for unit in spec.requires]
    lines += ["", "[Service]", "Type=simple"]
    lines += [f"User={spec.user}", f"Group={spec.user}"]
    if spec.environment_file:
        lines.append(f"EnvironmentFile={spec.environment_file}")
    for key in sorted(spec.environment):
        value = str(spec.environment[key])
        if not ENV_NAME_RE.match(key) or "\n" in value:
            raise ValueError(f"environment {key!r} cannot go into a unit file")
        # Values may use %d (the credentials directory); other % are escaped by callers.
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'Environment="{key}={escaped}"')
    for cred_id in sorted(spec.credentials):
        lines.append(f"LoadCredential={cred_id}:{spec.credentials[cred_id]}")
    command = [systemd_quote(spec.exec_path), *spec.args]
    lines.append("ExecStart=" + " \\\n    ".join(command))
    lines += ["Restart=always", "RestartSec=5", "TimeoutStopSec=20"]
    for key, value in hardening.items():
        lines.append(f"{key}={value}")
    lines += [f"ReadOnlyPaths={path}" for path in spec.read_only_paths]
    lines += ["", "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(lines)


def credential_arg(cred_id: str) -> str:
    """How a flag or Environment= names a LoadCredential= file: %d is systemd's
    credentials directory specifier."""
    return f"%d/{cred_id}"


# ---------------------------------------------------------------------------------------
# nginx stub_status
# ---------------------------------------------------------------------------------------
def stub_status_conf(listen_host: str, port: int, path: str, allow: list[str]) -> str:
    """The nginx server block that exposes stub_status for nginx_exporter."""
    if not re.match(r"^/[A-Za-z0-9._/-]*$", path):
        raise ValueError(f"nginx stub_status path {path!r} must look like /stub_status")
    lines = [
        "# Managed by opskit for nginx_exporter: stub_status on a private address.",
        "server {",
        f"    listen {format_listen(listen_host or '127.0.0.1', port)};",
        "    server_name _;",
        "    access_log off;",
        f"    location = {path} {{",
        "        stub_status;",
    ]
    for address in allow:
        ipaddress.ip_network(str(address), strict=False)  # raises ValueError if invalid
        lines.append(f"        allow {address};")
    lines += [
        "        deny all;",
        "    }",
        "    location / {",
        "        return 404;",
        "    }",
        "}",
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# NVIDIA GPUs and NVIDIA's package repository
# ---------------------------------------------------------------------------------------
NVIDIA_PCI_VENDOR = "0x10de"
# PCI class codes (sysfs "class" is 0xCCSSPP): 0x0300 VGA controller, 0x0302 3D controller
# (data-centre GPUs without display outputs report 3D controller).
GPU_PCI_CLASSES = ("0x0300", "0x0302")


def nvidia_gpus(sys_root: str = "/sys", proc_root: str = "/proc") -> dict:
    """Find NVIDIA GPUs without any NVIDIA tool: PCI devices with vendor 0x10de and a
    display/3D class in sysfs, and whether the NVIDIA kernel driver has claimed them
    (/proc/driver/nvidia/gpus/<pci address> exists once the driver is loaded)."""
    devices = pathlib.Path(sys_root) / "bus" / "pci" / "devices"
    found = []
    if devices.is_dir():
        for device in sorted(devices.iterdir()):
            try:
                vendor = (device / "vendor").read_text().strip().lower()
                pci_class = (device / "class").read_text().strip().lower()
            except OSError:
                continue
            if vendor == NVIDIA_PCI_VENDOR and pci_class[:6] in GPU_PCI_CLASSES:
                found.append(device.name)
    driver_dir = pathlib.Path(proc_root) / "driver" / "nvidia" / "gpus"
    driven = sorted(p.name for p in driver_dir.iterdir()) if driver_dir.is_dir() else []
    return {"pci": found, "driver": driven, "sysfs": str(devices), "proc": str(driver_dir)}


def nvidia_repo_path(os_name: str, os_major: str | int, machine: str) -> str:
    """NVIDIA's CUDA repository directory for a distribution: debian12/x86_64,
    ubuntu2204/sbsa, ... (developer.download.nvidia.com/compute/cuda/repos/<this>/)."""
    name = str(os_name).lower()
    arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "sbsa", "arm64": "sbsa"}.get(machine)
    if arch is None:
        raise ValueError(f"NVIDIA's CUDA repository has no packages for {machine!r}")
    if name == "debian":
        return f"debian{os_major}/{arch}"
    if name == "ubuntu":
        release = str(os_major).replace(".", "")
        return f"ubuntu{release}/{arch}"
    raise ValueError(f"opskit configures NVIDIA's repository on Debian and Ubuntu, not {os_name}")


def nvidia_apt_source(repo_url: str, keyring: str) -> str:
    return (
        "# Managed by opskit: NVIDIA's CUDA repository, for DCGM and dcgm-exporter.\n"
        f"deb [signed-by={keyring}] {repo_url.rstrip('/')}/ /\n"
    )


def nvidia_apt_pin(repo_url: str) -> str:
    """Keep NVIDIA's repository from upgrading anything but DCGM packages."""
    host = urllib.parse.urlsplit(repo_url).hostname or ""
    return (
        "# Managed by opskit: take only DCGM packages from NVIDIA's repository by default.\n"
        f"Package: *\nPin: origin {host}\nPin-Priority: 100\n\n"
        f"Package: datacenter-gpu-manager*\nPin: origin {host}\nPin-Priority: 600\n"
    )
