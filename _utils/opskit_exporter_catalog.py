"""The exporter catalog: what opskit knows about each Prometheus exporter, and the pure
logic that reads it (versions, release names and URLs, which option needs which
release, PostgreSQL and DCGM compatibility). No I/O, no Salt.

The facts themselves are data: the YAML document in
``_utils/opskit_exporter_catalog_data.py`` (see there why it lives in a ``.py``
file), loaded here into frozen dataclasses with unknown keys refused.
"""

from __future__ import annotations

import dataclasses
import re
import string
import urllib.parse

import yaml

try:
    import opskit_redact  # synced from file_roots, or module_dirs
    from opskit_exporter_catalog_data import CATALOG_YAML
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_redact
    from saltext.opskit.utils.opskit_exporter_catalog_data import CATALOG_YAML


# ---------------------------------------------------------------------------------------
# Versions
# ---------------------------------------------------------------------------------------
SEMVER_RE = re.compile(r"([0-9]+)\.([0-9]+)\.([0-9]+)\Z")
DCGM_PAIR_RE = re.compile(r"([0-9]+\.[0-9]+\.[0-9]+)-([0-9]+\.[0-9]+\.[0-9]+)\Z")
FLAG_STYLES = ("kingpin", "goflag", "urfave")


def parse_version(version: str) -> tuple[int, int, int]:
    """'1.5.0' -> (1, 5, 0); anything else raises ValueError naming the value."""
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
    return re.sub(r"[+~].*\Z", "", upstream)


class CompatibilityError(ValueError):
    """A combination opskit refuses to install (the message says what to use instead)."""


# ---------------------------------------------------------------------------------------
# The catalog as objects
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Scheme:
    """How releases from ``since`` on name their archive and lay it out."""

    since: str
    asset: str  # {version}, {exporter_version} and {arch} are filled in
    top_dir: str  # "{stem}" = the asset name minus .tar.gz; "" = no directory
    checksums: str
    arches: dict
    binary_path: str = ""  # the binary below top_dir ("" = the exporter's binary name)
    files: tuple[str, ...] = ()  # more members installed next to the binary


@dataclasses.dataclass(frozen=True)
class Package:
    name: str
    binary: str
    unit: str | None
    user: str | None


@dataclasses.dataclass(frozen=True)
class Exporter:
    """Everything opskit knows about one exporter."""

    name: str  # catalog name, also the systemd unit and the system user
    description: str
    project: str  # owner/repository on GitHub
    binary: str
    port: int
    flag_styles: tuple[tuple[str, str], ...]
    listen_flag: str
    metric_prefix: str  # a series only this exporter exposes
    up_metric: str | None  # 1 when the exporter reaches what it watches
    releases: tuple[Scheme, ...]
    web_config: tuple[tuple[str, str], ...] = ()
    package: Package | None = None
    managed_flags: tuple[str, ...] = ()
    secret_flags: tuple[str, ...] = ()
    requires: dict = dataclasses.field(default_factory=dict)  # option -> (version, what)
    hardening: dict = dataclasses.field(default_factory=dict)
    run_as_root: bool = False
    version_kind: str = "semver"
    tag: str = "v{version}"
    default_base_url: str | None = "https://github.com"

    @property
    def version_re(self) -> re.Pattern:
        return DCGM_PAIR_RE if self.version_kind == "dcgm_pair" else SEMVER_RE

    @property
    def version_example(self) -> str:
        return "4.5.3-4.8.2" if self.version_kind == "dcgm_pair" else "1.5.0"

    @property
    def arches(self) -> dict:
        """Every machine any release scheme maps (for exporter.list)."""
        merged = {}
        for scheme in self.releases:
            merged.update(scheme.arches)
        return merged

    def release_version(self, version: str) -> str:
        """The exporter's own version (for dcgm-exporter: the part after DCGM's)."""
        if self.version_kind == "dcgm_pair":
            match = DCGM_PAIR_RE.match(str(version))
            if not match:
                raise ValueError(f"{version!r} is not a dcgm-exporter release tag like 4.5.3-4.8.2")
            return match.group(2)
        parse_version(version)
        return version

    def _by_version(self, pairs, version: str):
        found = None
        for minimum, value in pairs:
            if version_at_least(self.release_version(version), minimum):
                found = value
        return found

    def scheme(self, version: str) -> Scheme | None:
        return self._by_version(((s.since, s) for s in self.releases), version)

    def flag_style(self, version: str | None) -> str:
        if version is None:
            return self.flag_styles[-1][1]
        return self._by_version(self.flag_styles, version)

    def web_config_flag(self, version: str) -> str | None:
        return self._by_version(self.web_config, version)

    def checksum_file(self, version: str) -> str:
        scheme = self.scheme(version)
        if scheme is None:
            raise ValueError(f"{self.name} {version} predates every release scheme opskit knows")
        return scheme.checksums.format(version=version)


def _pairs(value, what: str) -> tuple[tuple[str, str], ...]:
    pairs = tuple((str(a), str(b)) for a, b in value or ())
    for minimum, _ in pairs:
        parse_version(minimum)
    if [p[0] for p in pairs] != sorted((p[0] for p in pairs), key=parse_version):
        raise ValueError(f"catalog: {what} must be in ascending version order")
    return pairs


def _strict(data: dict, allowed: set, where: str) -> dict:
    unknown = set(data) - allowed
    if unknown:
        raise ValueError(f"catalog: {where} has unknown keys {sorted(unknown)}")
    return data


SCHEME_KEYS = {"since", "asset", "top_dir", "checksums", "arches", "binary_path", "files"}
EXPORTER_KEYS = {
    "description",
    "project",
    "binary",
    "port",
    "flag_styles",
    "listen_flag",
    "metric_prefix",
    "up_metric",
    "releases",
    "web_config",
    "package",
    "managed_flags",
    "secret_flags",
    "requires",
    "hardening",
    "run_as_root",
    "version_kind",
    "tag",
    "default_base_url",
}


def load(text: str) -> tuple[dict[str, Exporter], dict, dict]:
    """Parse the catalog YAML: (exporters by name, base hardening, postgres table)."""
    data = yaml.safe_load(text)
    _strict(data, {"hardening", "architectures", "exporters", "postgres"}, "the document")
    exporters = {}
    for name, raw in data["exporters"].items():
        _strict(raw, EXPORTER_KEYS, name)
        schemes = []
        for item in raw["releases"]:
            _strict(item, SCHEME_KEYS, f"{name} releases")
            schemes.append(
                Scheme(
                    since=str(item["since"]),
                    asset=item["asset"],
                    top_dir=item["top_dir"],
                    checksums=item["checksums"],
                    arches={str(k): str(v) for k, v in item["arches"].items()},
                    binary_path=item.get("binary_path", ""),
                    files=tuple(item.get("files", ())),
                )
            )
        _pairs(((s.since, "") for s in schemes), f"{name} releases")
        styles = _pairs(raw["flag_styles"], f"{name} flag_styles")
        if any(style not in FLAG_STYLES for _, style in styles):
            raise ValueError(f"catalog: {name} flag_styles must be one of {FLAG_STYLES}")
        package = raw.get("package")
        fields = {key: value for key, value in raw.items() if key not in ("releases",)}
        fields.update(
            name=name,
            releases=tuple(schemes),
            flag_styles=styles,
            web_config=_pairs(raw.get("web_config"), f"{name} web_config"),
            package=Package(**package) if package else None,
            managed_flags=tuple(raw.get("managed_flags", ())),
            secret_flags=tuple(raw.get("secret_flags", ())),
            requires={k: (str(v[0]), v[1]) for k, v in (raw.get("requires") or {}).items()},
        )
        exporters[name] = Exporter(**fields)
    return exporters, dict(data["hardening"]), data["postgres"]


CATALOG, BASE_HARDENING, POSTGRES = load(CATALOG_YAML)


def hardening(exporter: Exporter) -> dict:
    """The unit's sandboxing settings: the base set with the exporter's adaptations."""
    merged = dict(BASE_HARDENING)
    for key, value in exporter.hardening.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def require(exporter: Exporter, option: str, version: str | None) -> None:
    """Refuse ``option`` when ``version`` of ``exporter`` cannot serve it."""
    if option not in exporter.requires:
        return
    minimum, what = exporter.requires[option]
    if version is None:
        raise ValueError(
            f"{option} needs {exporter.name} {minimum} or newer ({what}); set version "
            "explicitly so that opskit can check it"
        )
    if not version_at_least(exporter.release_version(version), minimum):
        raise ValueError(
            f"{version} does not support {option}: {exporter.name} has it from {minimum} "
            f"on ({what}); upgrade the exporter or drop the option"
        )


# ---------------------------------------------------------------------------------------
# Release assets and their URLs
# ---------------------------------------------------------------------------------------
# Where release files live: GitHub's layout, or a mirror's (url_template).
DEFAULT_URL_TEMPLATE = "{base_url}/{project}/releases/download/{tag}/{file}"
URL_FIELDS = {
    "base_url",
    "name",
    "project",
    "owner",
    "repository",
    "tag",
    "version",
    "exporter_version",
    "arch",
    "file",
}


def check_url_template(template: str) -> set[str]:
    """The placeholders ``template`` uses; ValueError for anything but plain {field}s."""
    used = set()
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as err:
        raise ValueError(f"url_template {template!r}: {err}") from None
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in URL_FIELDS or spec or conversion:
            raise ValueError(
                f"url_template {template!r}: {{{field}}} is not a placeholder opskit fills "
                f"in (known: {', '.join('{' + f + '}' for f in sorted(URL_FIELDS))})"
            )
        used.add(field)
    if "file" not in used:
        raise ValueError(f"url_template {template!r} must contain {{file}}")
    return used


def _redact(url: str) -> str:
    """A URL for a message, its password masked (opskit_redact)."""
    return opskit_redact.redact_url(url)


@dataclasses.dataclass(frozen=True)
class Release:
    """Where one exporter release for one architecture lives, and its layout."""

    exporter: str
    version: str
    arch: str  # upstream's architecture name
    asset: str
    asset_url: str
    checksums_url: str
    checksums_file: str
    member: str  # path of the binary inside the archive
    files: tuple[tuple[str, str], ...] = ()  # (member, path below the install dir)

    @property
    def key(self) -> str:
        """Directory name for this version and architecture (cache and install)."""
        return f"{self.version}.linux-{self.arch}"


def arch_for(exporter: Exporter, scheme: Scheme, version: str, machine: str) -> str:
    try:
        return scheme.arches[machine]
    except KeyError:
        known = ", ".join(sorted(scheme.arches))
        raise ValueError(
            f"{exporter.name} {version} publishes no build for CPU architecture {machine!r} "
            f"(known for this release: {known}); use source: package, or a site mirror "
            "with your own build"
        ) from None


def check_release(
    exporter: Exporter, version: str, base_url: str | None, url_template: str | None = None
) -> tuple[Scheme, str, set[str]]:
    """What can be checked of a release without the host: (scheme, URL template,
    placeholders it uses). Raises ValueError."""
    if not exporter.version_re.match(str(version)):
        raise ValueError(
            f"{exporter.name} version {version!r} is not an exact release version like "
            f"{exporter.version_example} (opskit installs pinned versions only)"
        )
    scheme = exporter.scheme(version)
    if scheme is None:
        raise ValueError(
            f"{exporter.name} {version} predates release archives named the way opskit "
            f"knows (from {exporter.releases[0].since} on); pick a newer version or use "
            "source: package"
        )
    template = url_template or DEFAULT_URL_TEMPLATE
    used = check_url_template(template)
    base = base_url or exporter.default_base_url
    if "base_url" in used and not base:
        raise ValueError(
            f"{exporter.name} has no upstream release archives; set base_url (or "
            "url_template) to a site mirror that serves them, or use source: package"
        )
    return scheme, template, used


def release(
    exporter: Exporter,
    version: str,
    machine: str,
    base_url: str | None,
    url_template: str | None = None,
) -> Release:
    """The archive, checksum file and layout of ``exporter`` ``version`` for ``machine``."""
    scheme, template, _used = check_release(exporter, version, base_url, url_template)
    base = base_url or exporter.default_base_url
    arch = arch_for(exporter, scheme, version, machine)
    own = exporter.release_version(version)
    asset = scheme.asset.format(version=version, exporter_version=own, arch=arch)
    top = scheme.top_dir.format(stem=asset.removesuffix(".tar.gz"))
    prefix = f"{top}/" if top else ""
    owner, _, repository = exporter.project.partition("/")
    fields = {
        "base_url": (base or "").rstrip("/"),
        "name": exporter.name,
        "project": exporter.project,
        "owner": owner,
        "repository": repository,
        "tag": exporter.tag.format(version=version),
        "version": version,
        "exporter_version": own,
        "arch": arch,
    }
    checksums_file = exporter.checksum_file(version)
    asset_url = template.format(**fields, file=urllib.parse.quote(asset))
    parsed = urllib.parse.urlsplit(asset_url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(
            f"url_template must give http or https URLs, got {_redact(asset_url)!r} from "
            f"{_redact(template)!r}"
        )
    return Release(
        exporter=exporter.name,
        version=version,
        arch=arch,
        asset=asset,
        asset_url=asset_url,
        checksums_url=template.format(**fields, file=urllib.parse.quote(checksums_file)),
        checksums_file=checksums_file,
        member=prefix + (scheme.binary_path or exporter.binary),
        files=tuple((prefix + path, path) for path in scheme.files),
    )


# ---------------------------------------------------------------------------------------
# Compatibility: postgres_exporter and PostgreSQL, dcgm-exporter and DCGM
# ---------------------------------------------------------------------------------------
PG_MAJOR_RE = re.compile(r"(9\.[0-6]|8\.[0-4]|7\.[0-4]|6\.[0-5]|[1-9][0-9])\Z")


def postgres_major(value) -> str:
    """A PostgreSQL major as PostgreSQL names it: 15 -> "15"; 9.6 or "9.6" -> "9.6"
    (before PostgreSQL 10 the major had two parts). Anything else raises."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise CompatibilityError(f"PostgreSQL major {value!r} is not like 15 or 9.6")
    text = str(value)
    if not PG_MAJOR_RE.match(text):
        raise CompatibilityError(
            f"PostgreSQL major {value!r} is not a PostgreSQL major version (like 15, or "
            "9.6 before PostgreSQL 10)"
        )
    return text


def _major_key(major: str) -> tuple[int, ...]:
    return tuple(int(part) for part in major.split("."))


def postgres_compatibility(exporter_version: str, server_major) -> list[str]:
    """Check postgres_exporter ``exporter_version`` against a PostgreSQL major.

    Raises CompatibilityError for a known-bad pair, naming a good exporter version;
    returns warnings for pairs upstream does not test (too old or too new for it).
    """
    major = postgres_major(server_major)
    if _major_key(major) < _major_key(POSTGRES["oldest"]):
        raise CompatibilityError(
            f"postgres_exporter does not work with PostgreSQL {major}: it needs "
            f"{POSTGRES['oldest']} or newer (lib/pq 1.2.0, postgres_exporter CHANGELOG 0.6.0)"
        )
    for rule in POSTGRES["refuse"]:
        below = str(rule["below"])
        if _major_key(major) >= _major_key(str(rule["from_major"])) and not version_at_least(
            exporter_version, below
        ):
            raise CompatibilityError(
                f"postgres_exporter {exporter_version} does not work with PostgreSQL {major}: "
                f"{rule['reason']}. Use postgres_exporter {below} or newer."
            )
    table = POSTGRES["majors"]
    newest = max(table, key=_major_key)
    if _major_key(major) > _major_key(newest):
        return [
            f"PostgreSQL {major} is newer than any major opskit's compatibility table "
            f"knows ({newest}); check postgres_exporter's release notes"
        ]
    first, last = (None if v is None else str(v) for v in table[major]["tested"])
    where = "postgres_exporter's README, CI Tested PostgreSQL versions"
    if not version_at_least(exporter_version, first):
        return [
            f"PostgreSQL {major} is tested with postgres_exporter from {first} on ({where}); "
            f"{exporter_version} is older: an untested pair"
        ]
    if last is not None and parse_version(exporter_version) > parse_version(last):
        good = table[major].get("known_good")
        known = f"; {good} is known good with it" if good else ""
        return [
            f"PostgreSQL {major} is tested with postgres_exporter up to {last} ({where}); "
            f"{exporter_version} is newer: an untested pair{known}"
        ]
    return []


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
    """Refuse a DCGM whose version differs from the one ``tag`` was built against."""
    wanted, _exporter_version = dcgm_pair(tag)
    have = upstream_version(dcgm_version)
    if have != wanted:
        raise CompatibilityError(
            f"dcgm-exporter {tag} is built for DCGM {wanted}, but {where} is DCGM {have}. "
            f"Install DCGM {wanted}, or pick the dcgm-exporter release built for DCGM "
            f"{have} (its tag starts with {have}-)."
        )
