"""Pure helpers for opskit's ``jemalloc`` module: where the library lives per OS and
architecture, the systemd drop-in and docker compose override opskit writes, and
reading ``/proc/<pid>/maps``.

Nothing here touches the system; ``_modules/jemalloc.py`` does.
"""

from __future__ import annotations

import re
import shlex

try:
    import opskit_formats  # synced from file_roots, or module_dirs
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_formats

DROPIN_NAME = "50-opskit-jemalloc.conf"
MARKER = "# Managed by Salt (opskit jemalloc)"
SONAME = "libjemalloc.so.2"
# Where the compose mode mounts the host's library inside containers: a path of its
# own, so it never shadows a jemalloc the image may ship.
CONTAINER_LIBRARY = "/usr/local/lib/opskit/libjemalloc.so.2"

# Debian architecture (grains osarch on Debian/Ubuntu) -> multiarch triplet.
DEBIAN_MULTIARCH = {
    "amd64": "x86_64-linux-gnu",
    "arm64": "aarch64-linux-gnu",
    "armhf": "arm-linux-gnueabihf",
    "armel": "arm-linux-gnueabi",
    "i386": "i386-linux-gnu",
    "ppc64el": "powerpc64le-linux-gnu",
    "s390x": "s390x-linux-gnu",
    "riscv64": "riscv64-linux-gnu",
    "mips64el": "mips64el-linux-gnuabi64",
    "loong64": "loongarch64-linux-gnu",
}
# Kernel machine names (grains cpuarch) -> Debian architecture, for when osarch is not
# a Debian architecture name.
MACHINE_TO_DEBIAN = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "armv7l": "armhf",
    "armv6l": "armel",
    "i686": "i386",
    "i386": "i386",
    "ppc64le": "ppc64el",
    "s390x": "s390x",
    "riscv64": "riscv64",
}
# RPM architectures whose libraries live in /usr/lib64 on the RHEL family.
RPM_LIB64 = {"x86_64", "aarch64", "ppc64le", "s390x", "riscv64"}

PACKAGES = {"Debian": "libjemalloc2", "RedHat": "jemalloc"}

_UNIT_RE = re.compile(r"[A-Za-z0-9:_.\\@-]+")
_UNIT_SUFFIXES = (".service", ".socket", ".target", ".timer", ".mount", ".path", ".scope")
# MALLOC_CONF: comma-separated key:value pairs. Values are kept to characters that are
# safe unquoted in a systemd Environment= line (no % specifiers, quotes, backslashes,
# whitespace) and in compose files ($ would be interpolated).
_CONF_PAIR_RE = re.compile(r"[a-z][a-z0-9_]*:[A-Za-z0-9_.:/|+-]+")
# Options jemalloc 5.x understands (opt.* in its manual); others are warned about.
KNOWN_CONF_KEYS = frozenset(
    {
        "abort",
        "abort_conf",
        "cache_oblivious",
        "confirm_conf",
        "background_thread",
        "max_background_threads",
        "dirty_decay_ms",
        "muzzy_decay_ms",
        "narenas",
        "percpu_arena",
        "oversize_threshold",
        "retain",
        "dss",
        "junk",
        "zero",
        "utrace",
        "xmalloc",
        "tcache",
        "tcache_max",
        "lg_tcache_max",
        "thp",
        "metadata_thp",
        "lg_extent_max_active_fit",
        "stats_print",
        "stats_print_opts",
        "stats_interval",
        "stats_interval_opts",
        "hpa",
        "hpa_slab_max_alloc",
        "bin_shards",
        "slab_sizes",
        "prof",
        "prof_prefix",
        "prof_active",
        "prof_thread_active_init",
        "lg_prof_sample",
        "lg_prof_interval",
        "prof_gdump",
        "prof_final",
        "prof_leak",
        "prof_accum",
        "experimental_infallible_new",
        "zero_realloc",
    }
)


class JemallocValueError(ValueError):
    """A setting opskit refuses (the message says why)."""


def package_name(os_family: str) -> str:
    """The OS package that ships ``libjemalloc.so.2`` on this OS family."""
    try:
        return PACKAGES[os_family]
    except KeyError:
        raise JemallocValueError(
            f"opskit does not know where jemalloc lives on os_family {os_family!r} "
            f"(supported: {', '.join(sorted(PACKAGES))}); pass `library` and `package` "
            "explicitly"
        ) from None


def library_path(os_family: str, osarch: str, cpuarch: str = "") -> str:
    """Where the OS package installs ``libjemalloc.so.2`` for this OS family and arch.

    Debian/Ubuntu: ``/usr/lib/<multiarch triplet>/libjemalloc.so.2`` (package
    ``libjemalloc2``). RHEL family (EPEL's ``jemalloc``): ``/usr/lib64/libjemalloc.so.2``
    on 64-bit architectures, ``/usr/lib/libjemalloc.so.2`` on 32-bit ones.
    """
    if os_family == "Debian":
        debian_arch = osarch if osarch in DEBIAN_MULTIARCH else MACHINE_TO_DEBIAN.get(osarch)
        if debian_arch is None:
            debian_arch = MACHINE_TO_DEBIAN.get(cpuarch)
        if debian_arch is None:
            raise JemallocValueError(
                f"no multiarch triplet known for architecture {osarch!r} "
                f"(cpuarch {cpuarch!r}); pass `library` explicitly "
                "(dpkg -L libjemalloc2 shows where it is)"
            )
        return f"/usr/lib/{DEBIAN_MULTIARCH[debian_arch]}/{SONAME}"
    if os_family == "RedHat":
        arch = cpuarch or osarch
        libdir = "/usr/lib64" if arch in RPM_LIB64 or osarch in RPM_LIB64 else "/usr/lib"
        return f"{libdir}/{SONAME}"
    raise JemallocValueError(
        f"opskit does not know where jemalloc lives on os_family {os_family!r} "
        f"(supported: {', '.join(sorted(PACKAGES))}); pass `library` and `package` explicitly"
    )


def canonical_unit(name) -> str:
    """``foo`` → ``foo.service``; refuses names systemd would not accept."""
    if not isinstance(name, str) or not _UNIT_RE.fullmatch(name) or name.startswith("-"):
        raise JemallocValueError(
            f"{name!r} is not a systemd unit name (letters, digits and :_.\\@- only)"
        )
    if not name.endswith(_UNIT_SUFFIXES):
        name += ".service"
    if not name.endswith(".service"):
        raise JemallocValueError(f"{name}: jemalloc can only be preloaded into services")
    if name.startswith("."):
        raise JemallocValueError(f"{name!r} is not a systemd unit name")
    return name


def validate_malloc_conf(value) -> tuple[str | None, list[str]]:
    """Check a MALLOC_CONF string; return it (None if empty) and warnings.

    Raises JemallocValueError for syntax that is invalid or unsafe to write.
    """
    if value is None or value == "":
        return None, []
    if not isinstance(value, str):
        raise JemallocValueError(f"malloc_conf must be a string, not {value!r}")
    warnings = []
    for pair in value.split(","):
        if not _CONF_PAIR_RE.fullmatch(pair):
            raise JemallocValueError(
                f"malloc_conf {value!r}: {pair!r} is not a key:value pair jemalloc "
                "understands (e.g. background_thread:true,dirty_decay_ms:1000); "
                "whitespace, quotes, % and $ are not allowed"
            )
        key = pair.split(":", 1)[0]
        if key not in KNOWN_CONF_KEYS:
            warnings.append(f"malloc_conf option {key!r} is not one jemalloc 5.x documents")
    return value, warnings


def environment(library: str, malloc_conf: str | None) -> dict[str, str]:
    """The environment that makes a process preload jemalloc."""
    env = {"LD_PRELOAD": library}
    if malloc_conf:
        env["MALLOC_CONF"] = malloc_conf
    return env


def render_dropin(unit: str, library: str, malloc_conf: str | None) -> str:
    """The systemd drop-in opskit writes for ``unit`` (``opskit_formats.systemd_unit``)."""
    header = (
        f"{MARKER.removeprefix('# ')}; local edits are overwritten.\n"
        f"Preloads jemalloc into {unit}. Remove with the jemalloc.disabled state."
    )
    return opskit_formats.systemd_unit(
        {"Service": {"Environment": environment(library, malloc_conf)}}, header=header
    )


def parse_dropin(text: str | None) -> dict[str, str] | None:
    """The environment an opskit drop-in sets (None if there is no drop-in)."""
    if text is None:
        return None
    return opskit_formats.parse_systemd_environment_lines(text)


def parse_environment_property(value: str) -> dict[str, str]:
    """``systemctl show -p Environment`` value (space-separated, shell-quoted) → dict."""
    env = {}
    for item in shlex.split(value or ""):
        if "=" in item:
            key, val = item.split("=", 1)
            env[key] = val
    return env


def mapped_jemalloc(maps_text: str) -> list[str]:
    """Paths of jemalloc shared objects mapped in a process (from /proc/<pid>/maps)."""
    found = []
    for line in maps_text.splitlines():
        fields = line.split(None, 5)
        if len(fields) == 6:
            path = fields[5].strip()
            if "libjemalloc" in path.rsplit("/", 1)[-1] and path not in found:
                found.append(path)
    return found


def compose_override(
    services: list[str], library: str, malloc_conf: str | None, target: str = CONTAINER_LIBRARY
) -> dict:
    """A docker compose override that runs ``services`` under the host's jemalloc.

    Each service gets ``LD_PRELOAD`` (pointing at ``target`` inside the container),
    ``MALLOC_CONF`` if given, and a read-only bind mount of the host's ``library`` at
    ``target``. Compose merges this over the main file: environment entries by key,
    volumes by target path.
    """
    if not isinstance(services, list) or not services:
        raise JemallocValueError("services must be a non-empty list of compose service names")
    body = {}
    for service in services:
        if not isinstance(service, str) or not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", service):
            raise JemallocValueError(f"{service!r} is not a docker compose service name")
        body[service] = {
            "environment": environment(target, malloc_conf),
            "volumes": [{"type": "bind", "source": library, "target": target, "read_only": True}],
        }
    return {"services": body}
