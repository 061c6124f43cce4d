"""Kernel memory tuning with safety bounds: ``vm.min_free_kbytes`` and its siblings
``vm.watermark_scale_factor`` and ``vm.vfs_cache_pressure``.

Values are checked against opskit's bounds before anything is written (see
``opskit_vmtune.KNOBS``); ``vm.min_free_kbytes`` may be given in kB, as a share of RAM
(``"1%"``) or as ``auto`` (the smallest value whose min→low watermark gap, as the
kernel computes it, exceeds ``headroom`` x the largest expected allocation). Settings
are persisted in one file per knob that opskit owns, ``/etc/sysctl.d/60-opskit-<knob>.conf``,
and applied live through ``/proc/sys``, then read back.

Where ``/proc/sys`` is read-only (containers), the live value belongs to the host's
kernel: ``vmtune.live_writable`` says so, and the states report it instead of claiming
the value was applied.

Minion options (for tests; defaults are the real paths): ``vmtune.proc_root``
(``/proc``), ``vmtune.sys_root`` (``/sys``), ``vmtune.sysctl_dir`` (``/etc/sysctl.d``),
``vmtune.sysctl_search`` (the directories and files searched for conflicting settings).
"""

from __future__ import annotations

import errno
import glob
import os

import salt.utils.files
import salt.utils.platform
from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError

try:
    import opskit_files  # synced from file_roots, or module_dirs
    import opskit_formats
    import opskit_vmtune
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_files
    from saltext.opskit.utils import opskit_formats
    from saltext.opskit.utils import opskit_vmtune

__virtualname__ = "vmtune"

DEFAULT_SYSCTL_SEARCH = (
    "/etc/sysctl.d",
    "/run/sysctl.d",
    "/usr/local/lib/sysctl.d",
    "/usr/lib/sysctl.d",
    "/lib/sysctl.d",
    "/etc/sysctl.conf",
)
PAGE_KB = 4


def __virtual__():
    if not salt.utils.platform.is_linux():
        return (False, "vmtune: vm.* sysctls are Linux-only")
    return __virtualname__


def _minion() -> str:
    return __opts__.get("id", "this minion")


def _proc(*parts: str) -> str:
    return os.path.join(__opts__.get("vmtune.proc_root", "/proc"), *parts)


def _knob(name: str) -> str:
    key = str(name).replace("/", ".")
    if not key.startswith("vm."):
        key = "vm." + key
    if key not in opskit_vmtune.KNOBS:
        raise SaltInvocationError(
            f"{_minion()}: {name!r} is not a knob vmtune manages "
            f"({', '.join(sorted(opskit_vmtune.KNOBS))})"
        )
    return key


def _read(path: str) -> str:
    try:
        with salt.utils.files.fopen(path, "r") as handle:
            return handle.read()
    except OSError as err:
        raise CommandExecutionError(f"{_minion()}: cannot read {path}: {err}") from err


def _proc_sys_path(name: str) -> str:
    return _proc("sys", *_knob(name).split("."))


def get(name: str) -> int:
    """
    Return the live value of a vm knob from ``/proc/sys``.

    CLI Example:

    .. code-block:: bash

        salt '*' vmtune.get vm.min_free_kbytes
    """
    return int(_read(_proc_sys_path(name)).split()[0])


def live_writable(name: str = "vm.min_free_kbytes") -> bool:
    """
    Return True if this minion can set the knob live (``/proc/sys`` is writable), False
    where it is read-only, as in containers: there the value belongs to the host.

    CLI Example:

    .. code-block:: bash

        salt '*' vmtune.live_writable
    """
    path = _proc_sys_path(name)
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return False
    except OSError as err:
        raise CommandExecutionError(f"{_minion()}: cannot stat {path}: {err}") from err
    return os.access(path, os.W_OK)


def zones() -> list:
    """
    Return the memory zones from ``/proc/zoneinfo`` with their managed pages and
    min/low/high watermarks (pages).

    CLI Example:

    .. code-block:: bash

        salt '*' vmtune.zones
    """
    return [
        {
            "zone": z.label,
            "managed": z.managed,
            "min": z.min,
            "low": z.low,
            "high": z.high,
        }
        for z in _zones()
    ]


def _zones():
    found = opskit_vmtune.parse_zoneinfo(_read(_proc("zoneinfo")))
    if not found:
        raise CommandExecutionError(f"{_minion()}: no memory zones in {_proc('zoneinfo')}")
    return found


def watermarks_summary(min_free_kbytes=None, watermark_scale_factor=None) -> str:
    """
    Return the zone watermarks as one line for people (what the states put in their
    comments): the current ones, or with ``min_free_kbytes`` and/or
    ``watermark_scale_factor`` given, the ones the kernel would set for them (computed
    the way mm/page_alloc.c does; nothing is changed).

    CLI Example:

    .. code-block:: bash

        salt '*' vmtune.watermarks_summary
        salt '*' vmtune.watermarks_summary min_free_kbytes=262144
    """
    current = _zones()
    if min_free_kbytes is not None or watermark_scale_factor is not None:
        current = opskit_vmtune.predict_watermarks(
            current,
            int(min_free_kbytes if min_free_kbytes is not None else get("vm.min_free_kbytes")),
            int(
                watermark_scale_factor
                if watermark_scale_factor is not None
                else get("vm.watermark_scale_factor")
            ),
            PAGE_KB,
        )
    gap = opskit_vmtune.min_low_gap_kb(current, PAGE_KB)
    return f"{opskit_vmtune.format_zones(current, PAGE_KB)}; total min→low gap {gap} kB"


def mem_total_kb() -> int:
    """
    Return MemTotal from ``/proc/meminfo`` in kB.

    CLI Example:

    .. code-block:: bash

        salt '*' vmtune.mem_total_kb
    """
    info = opskit_vmtune.parse_meminfo(_read(_proc("meminfo")))
    if "MemTotal" not in info:
        raise CommandExecutionError(f"{_minion()}: no MemTotal in {_proc('meminfo')}")
    return info["MemTotal"]


def _thp() -> tuple[bool, int]:
    """(transparent hugepages enabled, pageblock size in pages) from /sys."""
    thp = os.path.join(__opts__.get("vmtune.sys_root", "/sys"), "kernel/mm/transparent_hugepage")
    try:
        with salt.utils.files.fopen(os.path.join(thp, "enabled")) as handle:
            enabled = "[never]" not in handle.read()
        with salt.utils.files.fopen(os.path.join(thp, "hpage_pmd_size")) as handle:
            pageblock = int(handle.read()) // (PAGE_KB * 1024)
    except (OSError, ValueError):
        return False, 0  # no THP support in this kernel
    return enabled, pageblock


def kernel_default_min_free_kbytes() -> int:
    """
    Return the ``min_free_kbytes`` this kernel would choose by itself for this memory:
    ``sqrt(lowmem_kB x 16)`` (clamped to 128..262144), raised by khugepaged's
    recommendation when transparent hugepages are enabled. The ``auto`` rule never goes
    below it.

    CLI Example:

    .. code-block:: bash

        salt '*' vmtune.kernel_default_min_free_kbytes
    """
    enabled, pageblock = _thp()
    return opskit_vmtune.kernel_default_min_free_kbytes(_zones(), enabled, pageblock, PAGE_KB)


def resolve(
    name: str,
    value,
    largest_allocation=None,
    headroom=2,
    ceiling=None,
) -> dict:
    """
    Turn a requested value into the integer opskit would write, checked against the
    bounds; raise ``SaltInvocationError`` (saying why and what to do) if it is refused.
    Nothing is written.

    For ``vm.min_free_kbytes``, ``value`` is kB (``1081344``), a share of RAM (``"1%"``)
    or ``auto``; ``auto`` needs ``largest_allocation`` (kB or ``25M``) and uses
    ``headroom`` (default 2). ``ceiling`` (default ``5%`` of RAM, at most 25%) is the
    largest value accepted. Returns ``{"name", "value", "request", "detail"}``:
    ``request`` restates what was asked (it goes into the persisted file), ``detail``
    explains how the value was derived (for the state's comment).

    CLI Example:

    .. code-block:: bash

        salt '*' vmtune.resolve vm.min_free_kbytes auto largest_allocation=25M
        salt '*' vmtune.resolve vm.vfs_cache_pressure 200
    """
    key = _knob(name)
    try:
        if key != "vm.min_free_kbytes":
            if ceiling is not None or largest_allocation is not None:
                raise opskit_vmtune.VmtuneValueError(
                    f"{key} takes a plain integer; ceiling/largest_allocation only apply "
                    "to vm.min_free_kbytes"
                )
            number = opskit_vmtune.parse_int(value, key)
            opskit_vmtune.check_bounds(key, number)
            return {"name": key, "value": number, "request": str(number), "detail": str(number)}
        total = mem_total_kb()
        limit = opskit_vmtune.ceiling_kb(
            ceiling if ceiling is not None else opskit_vmtune.KNOBS[key]["default_ceiling"],
            total,
        )
        share = opskit_vmtune.parse_share(value, key)
        if value == "auto":
            number, detail = _auto(largest_allocation, headroom)
            request = f"auto (largest_allocation {largest_allocation}, headroom {headroom})"
        elif share is not None:
            number = int(total * share / 100)
            detail = f"{value} of MemTotal {total} kB"
            request = str(value)
        else:
            if largest_allocation is not None:
                raise opskit_vmtune.VmtuneValueError(
                    "largest_allocation only applies to value: auto"
                )
            number = opskit_vmtune.parse_int(value, key)
            detail = f"{number} kB as given"
            request = f"{number} kB"
        opskit_vmtune.check_bounds(key, number, ceiling=limit)
    except opskit_vmtune.VmtuneValueError as err:
        raise SaltInvocationError(f"{_minion()}: refused, nothing was written: {err}") from err
    return {"name": key, "value": number, "request": request, "detail": detail}


def _auto(largest_allocation, headroom) -> tuple[int, str]:
    if largest_allocation is None:
        raise opskit_vmtune.VmtuneValueError(
            "value: auto needs largest_allocation (the largest single allocation burst "
            "expected, e.g. 25M for queries that each sort 25 MB in memory)"
        )
    alloc_kb = opskit_vmtune.parse_size_kb(largest_allocation, "largest_allocation")
    if alloc_kb <= 0:
        raise opskit_vmtune.VmtuneValueError("largest_allocation must be positive")
    try:
        factor = float(headroom)
    except (TypeError, ValueError):
        raise opskit_vmtune.VmtuneValueError(
            f"headroom must be a number, not {headroom!r}"
        ) from None
    if not 1 <= factor <= 100:
        raise opskit_vmtune.VmtuneValueError(f"headroom {headroom!r} must be between 1 and 100")
    current = _zones()
    scale = get("vm.watermark_scale_factor")
    floor = kernel_default_min_free_kbytes()
    number = opskit_vmtune.auto_min_free_kbytes(
        current, scale, alloc_kb, factor, floor, page_kb=PAGE_KB
    )
    gap = opskit_vmtune.min_low_gap_kb(
        opskit_vmtune.predict_watermarks(current, number, scale, PAGE_KB), PAGE_KB
    )
    detail = (
        f"auto: min→low gap {gap} kB ≥ headroom {factor:g} x largest allocation {alloc_kb} kB "
        f"(watermark_scale_factor {scale}, kernel default {floor} kB)"
    )
    return number, detail


def config_path(name: str) -> str:
    """
    Return the sysctl.d file opskit owns for a knob.

    CLI Example:

    .. code-block:: bash

        salt '*' vmtune.config_path vm.min_free_kbytes
    """
    key = _knob(name)
    directory = __opts__.get("vmtune.sysctl_dir", "/etc/sysctl.d")
    return os.path.join(directory, f"60-opskit-{key.replace('.', '-')}.conf")


def persisted(name: str) -> int | None:
    """
    Return the value in opskit's sysctl.d file for a knob, or None if there is no file.

    CLI Example:

    .. code-block:: bash

        salt '*' vmtune.persisted vm.min_free_kbytes
    """
    key = _knob(name)
    path = config_path(key)
    try:
        with salt.utils.files.fopen(path, "r") as handle:
            settings = opskit_vmtune.parse_conf(handle.read())
    except FileNotFoundError:
        return None
    except OSError as err:
        raise CommandExecutionError(f"{_minion()}: cannot read {path}: {err}") from err
    try:
        return int(settings[key])
    except (KeyError, ValueError):
        return -1  # a file of ours without a valid setting: rewrite it


def conflicts(name: str) -> list:
    """
    Return the other sysctl configuration files that set the knob (``[{"file",
    "value"}]``): at boot the one sorting last wins, so any that disagrees with opskit's
    file makes the persisted value a gamble.

    CLI Example:

    .. code-block:: bash

        salt '*' vmtune.conflicts vm.min_free_kbytes
    """
    key = _knob(name)
    ours = os.path.realpath(config_path(key))
    found = []
    search = __opts__.get("vmtune.sysctl_search", DEFAULT_SYSCTL_SEARCH)
    for entry in search:
        paths = (
            sorted(glob.glob(os.path.join(entry, "*.conf"))) if os.path.isdir(entry) else [entry]
        )
        for path in paths:
            if os.path.realpath(path) == ours or not os.path.isfile(path):
                continue
            try:
                with salt.utils.files.fopen(path, "r") as handle:
                    settings = opskit_vmtune.parse_conf(handle.read())
            except OSError:
                continue
            if key in settings:
                found.append({"file": path, "value": settings[key]})
    return found


def persist(name: str, value: int, request: str = "") -> bool:
    """
    Write opskit's sysctl.d file for a knob (after checking the bounds). Returns True if
    the file changed. The value is not applied live (see ``vmtune.apply``).

    CLI Example:

    .. code-block:: bash

        salt '*' vmtune.persist vm.vfs_cache_pressure 200
    """
    key = _knob(name)
    number = int(value)
    _check_plain_bounds(key, number)
    path = config_path(key)
    try:
        content = opskit_vmtune.render_conf(key, number, request)
    except opskit_formats.UnsafeValue as err:
        raise SaltInvocationError(f"{_minion()}: refused, nothing was written: {err}") from err
    try:
        return opskit_files.write_atomic(path, content, 0o644, makedirs=True)
    except OSError as err:
        raise CommandExecutionError(f"{_minion()}: cannot write {path}: {err}") from err


def persist_current(name: str, value: int, request: str = "") -> bool:
    """
    Return True if opskit's sysctl.d file for a knob holds exactly what
    ``vmtune.persist`` would write for ``value`` and ``request``.

    CLI Example:

    .. code-block:: bash

        salt '*' vmtune.persist_current vm.vfs_cache_pressure 200 200
    """
    key = _knob(name)
    path = config_path(key)
    try:
        with salt.utils.files.fopen(path, "r") as handle:
            have = handle.read()
    except FileNotFoundError:
        return False
    except OSError as err:
        raise CommandExecutionError(f"{_minion()}: cannot read {path}: {err}") from err
    try:
        return have == opskit_vmtune.render_conf(key, int(value), request)
    except opskit_formats.UnsafeValue as err:
        raise SaltInvocationError(f"{_minion()}: {err}") from err


def unpersist(name: str) -> bool:
    """
    Remove opskit's sysctl.d file for a knob (the live value stays until reboot).
    Returns True if there was one.

    CLI Example:

    .. code-block:: bash

        salt '*' vmtune.unpersist vm.min_free_kbytes
    """
    path = config_path(name)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as err:
        raise CommandExecutionError(f"{_minion()}: cannot remove {path}: {err}") from err
    return True


def _check_plain_bounds(key: str, number: int) -> None:
    """Bounds that hold whatever the caller's ceiling: opskit's minimum and hard maximum."""
    try:
        if key == "vm.min_free_kbytes":
            hard = mem_total_kb() * opskit_vmtune.KNOBS[key]["hard_max_share"] // 100
            opskit_vmtune.check_bounds(key, number, ceiling=hard)
        else:
            opskit_vmtune.check_bounds(key, number)
    except opskit_vmtune.VmtuneValueError as err:
        raise SaltInvocationError(f"{_minion()}: refused, nothing was written: {err}") from err


def apply(name: str, value: int) -> int:
    """
    Set a knob live through ``/proc/sys`` and read it back; return the value read.
    Raises ``CommandExecutionError`` if ``/proc/sys`` is read-only (a container: the
    value belongs to the host), if the kernel refuses the value, or if it reads back
    differently. Bounds are checked first (opskit's minimum and hard maximum).

    CLI Example:

    .. code-block:: bash

        salt '*' vmtune.apply vm.vfs_cache_pressure 200
    """
    key = _knob(name)
    number = int(value)
    _check_plain_bounds(key, number)
    path = _proc_sys_path(key)
    try:
        with salt.utils.files.fopen(path, "w") as handle:
            handle.write(f"{number}\n")
    except OSError as err:
        if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise CommandExecutionError(
                f"{_minion()}: {path} is read-only here ({err.strerror}): {key} belongs "
                "to the host's kernel (this is a container); set it on the host"
            ) from err
        raise CommandExecutionError(
            f"{_minion()}: the kernel refused {key} = {number} ({err.strerror})"
        ) from err
    now = get(key)
    if now != number:
        raise CommandExecutionError(
            f"{_minion()}: wrote {key} = {number} but {path} reads {now}; something else "
            "manages this knob (tuned, another agent?)"
        )
    return now
