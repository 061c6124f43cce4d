"""Pure helpers for opskit's ``vmtune`` module: parsing /proc, the kernel's watermark
arithmetic, value resolution with safety bounds, and the sysctl.d file format.

Nothing here touches the system; ``_modules/vmtune.py`` reads and writes, these
functions compute. Sizes are in kB (KiB, as the kernel's ``min_free_kbytes``), page
counts in pages of ``page_kb`` kB.

The watermark model follows ``__setup_per_zone_wmarks()`` in the kernel's
``mm/page_alloc.c`` (Linux 4.6 and later, still so in 6.x):

* ``pages_min = min_free_kbytes / page_kb`` is shared out over the zones that are
  neither HighMem nor Movable ("lowmem" zones) in proportion to their managed pages:
  ``min_z = pages_min * managed_z // lowmem_pages``;
* the distance between the watermarks is
  ``gap_z = max(min_z // 4, managed_z * watermark_scale_factor // 10000)``;
* ``low_z = min_z + gap_z``, ``high_z = low_z + gap_z``.

Allocations fall through the zones of their zonelist; when free memory in all of them
drops below ``low`` kswapd is woken, and below ``min`` the allocating task reclaims
itself (direct reclaim: the stalls of the PostgreSQL incident). The min→low gap summed
over the lowmem zones is the burst an allocator can take while kswapd catches up.
"""

from __future__ import annotations

import dataclasses
import math
import re

try:
    import opskit_formats  # synced from file_roots, or module_dirs
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_formats

# The knobs opskit manages, with the bounds it enforces before anything is written.
# ``hard_max`` is the most an explicit ``ceiling`` override may allow.
KNOBS = {
    "vm.min_free_kbytes": {
        "min": 1024,
        "why_min": "below 1 MiB the kernel cannot keep its emergency reserves (atomic "
        "allocations, network receive) and can deadlock in reclaim",
        "default_ceiling": "5%",
        "hard_max_share": 25,
    },
    "vm.watermark_scale_factor": {
        "min": 1,
        "max": 1000,
        "why_min": "the kernel refuses 0",
        "why_max": "1000 already keeps kswapd reclaiming until 20% of every zone is free; "
        "the kernel's own limit is 3000",
    },
    "vm.vfs_cache_pressure": {
        "min": 1,
        "max": 1000,
        "why_min": "0 tells the kernel never to reclaim dentries and inodes, which ends "
        "in out-of-memory conditions",
        "why_max": "far above 100 the kernel throws away dentry and inode caches it "
        "will need again at once; 200 ended the PostgreSQL incident",
    },
}

MARKER = "# Managed by Salt (opskit vmtune)"

# Matched with fullmatch: a value with a line break (or anything else around it) is
# refused, never cut short.
_SIZE_RE = re.compile(r"([0-9]{1,15}(?:\.[0-9]{1,6})?) ?([kmgt]?)(?:i?b)?", re.IGNORECASE)
_SHARE_RE = re.compile(r"([0-9]{1,3}(?:\.[0-9]{1,6})?) ?%")
_UNITS_KB = {"": 1, "k": 1, "m": 1024, "g": 1024**2, "t": 1024**3}


class VmtuneValueError(ValueError):
    """A value opskit refuses to write (the message says why and what to do)."""


@dataclasses.dataclass(frozen=True)
class Zone:
    """One memory zone as /proc/zoneinfo shows it (watermarks in pages)."""

    node: int
    name: str
    managed: int
    min: int
    low: int
    high: int

    @property
    def label(self) -> str:
        return f"Node {self.node} {self.name}"

    @property
    def lowmem(self) -> bool:
        """Zones the kernel shares ``min_free_kbytes`` over (not HighMem, not Movable)."""
        return self.name not in ("HighMem", "Movable")


def parse_zoneinfo(text: str) -> list[Zone]:
    """Zones with managed pages > 0, from the text of /proc/zoneinfo."""
    zones = []
    current: dict | None = None

    def flush():
        if current and current.get("managed", 0) > 0:
            zones.append(
                Zone(
                    node=current["node"],
                    name=current["name"],
                    managed=current["managed"],
                    min=current.get("min", 0),
                    low=current.get("low", 0),
                    high=current.get("high", 0),
                )
            )

    for line in text.splitlines():
        header = re.match(r"^Node\s+(\d+),\s+zone\s+(\S+)", line)
        if header:
            flush()
            current = {"node": int(header.group(1)), "name": header.group(2)}
            continue
        if current is None:
            continue
        fields = line.split()
        if len(fields) == 2 and fields[0] in ("min", "low", "high", "managed"):
            # The first occurrence belongs to the zone; per-cpu sections come later.
            current.setdefault(fields[0], int(fields[1]))
    flush()
    return zones


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as {field: kB}."""
    result = {}
    for line in text.splitlines():
        match = re.match(r"^(\w+(?:\(\w+\))?):\s+(\d+)", line)
        if match:
            result[match.group(1)] = int(match.group(2))
    return result


def predict_watermarks(
    zones: list[Zone], min_free_kbytes: int, watermark_scale_factor: int, page_kb: int = 4
) -> list[Zone]:
    """The zone watermarks the kernel sets for these settings (see the module docstring)."""
    pages_min = min_free_kbytes // page_kb
    lowmem_pages = sum(z.managed for z in zones if z.lowmem) or 1
    predicted = []
    for zone in zones:
        share = pages_min * zone.managed // lowmem_pages
        # HighMem/Movable zones get a small fixed reserve instead of a share.
        wmin = share if zone.lowmem else min(max(zone.managed // 1024, 32), 128)
        gap = max(share // 4, zone.managed * watermark_scale_factor // 10000)
        predicted.append(dataclasses.replace(zone, min=wmin, low=wmin + gap, high=wmin + 2 * gap))
    return predicted


def min_low_gap_kb(zones: list[Zone], page_kb: int = 4) -> int:
    """The min→low distance summed over the lowmem zones, in kB."""
    return sum((z.low - z.min) for z in zones if z.lowmem) * page_kb


def kernel_default_min_free_kbytes(
    zones: list[Zone], thp_enabled: bool, pageblock_pages: int, page_kb: int = 4
) -> int:
    """What the kernel itself would choose for ``min_free_kbytes``.

    ``calculate_min_free_kbytes()``: ``int_sqrt(lowmem_kbytes * 16)`` clamped to
    [128, 262144]; when transparent hugepages are enabled, khugepaged raises it to
    ``pageblock_pages * zones * (2 + 3 * 3)`` pages (two free pageblocks per zone plus
    room for the three per-cpu migrate types), at most 5% of lowmem. ``lowmem_kbytes``
    is approximated by the lowmem zones' managed pages (the kernel uses the pages above
    the high watermark, a fraction of a percent less).
    """
    lowmem_kb = sum(z.managed for z in zones if z.lowmem) * page_kb
    value = min(max(math.isqrt(lowmem_kb * 16), 128), 262144)
    if thp_enabled:
        nr_zones = sum(1 for z in zones if z.lowmem)
        recommended = pageblock_pages * nr_zones * (2 + 3 * 3)
        recommended = min(recommended, lowmem_kb // page_kb // 20) * page_kb
        value = max(value, recommended)
    return value


def parse_size_kb(value, what: str) -> int:
    """A size in kB from an int (kB) or a string with an optional K/M/G/T suffix."""
    if isinstance(value, bool):
        raise VmtuneValueError(f"{what} must be a size such as 25M or 25600 (kB), not {value!r}")
    if isinstance(value, int):
        return value
    match = _SIZE_RE.fullmatch(str(value))
    if not match:
        raise VmtuneValueError(
            f"{what} must be a size such as 25M, 1G or 25600 (kB), not {value!r}"
        )
    return math.ceil(float(match.group(1)) * _UNITS_KB[match.group(2).lower()])


def parse_share(value, what: str) -> float | None:
    """``"5%"`` → 5.0; None if ``value`` is not a percentage."""
    if not isinstance(value, str):
        return None
    match = _SHARE_RE.fullmatch(value)
    if not match:
        return None
    share = float(match.group(1))
    if not 0 < share <= 100:
        raise VmtuneValueError(f"{what} {value!r} must be a share between 0% and 100%")
    return share


def ceiling_kb(ceiling, mem_total_kb: int) -> int:
    """The largest ``min_free_kbytes`` allowed; refuses ceilings above the hard limit."""
    hard_share = KNOBS["vm.min_free_kbytes"]["hard_max_share"]
    share = parse_share(ceiling, "ceiling")
    kb = int(mem_total_kb * share / 100) if share is not None else parse_size_kb(ceiling, "ceiling")
    if kb > mem_total_kb * hard_share // 100:
        raise VmtuneValueError(
            f"ceiling {ceiling!r} ({kb} kB) is above {hard_share}% of RAM "
            f"({mem_total_kb} kB): opskit never reserves that much for the kernel"
        )
    return kb


def auto_min_free_kbytes(
    zones: list[Zone],
    watermark_scale_factor: int,
    largest_allocation_kb: int,
    headroom: float,
    floor_kb: int,
    *,
    page_kb: int = 4,
    granularity_kb: int = 1024,
) -> int:
    """The ``auto`` rule: the smallest ``min_free_kbytes`` (a multiple of
    ``granularity_kb``, never below ``floor_kb``) whose min→low gap, summed over the
    lowmem zones, is at least ``headroom x largest_allocation_kb``."""
    target = largest_allocation_kb * headroom

    def gap(min_free):
        return min_low_gap_kb(
            predict_watermarks(zones, min_free, watermark_scale_factor, page_kb), page_kb
        )

    start = max(floor_kb, 1024)
    start = -(-start // granularity_kb) * granularity_kb
    if gap(start) >= target:
        return start
    # The gap grows monotonically (a quarter of min once that dominates): bisect.
    low, high = start, start
    while gap(high) < target:
        low, high = high, high * 2
        if high > 1 << 40:  # cannot happen with real zones; keeps a bad input finite
            raise VmtuneValueError("no min_free_kbytes gives that gap")
    while high - low > granularity_kb:
        mid = (low + high) // 2 // granularity_kb * granularity_kb
        if mid in (low, high):
            break
        if gap(mid) >= target:
            high = mid
        else:
            low = mid
    return high


def check_bounds(name: str, value: int, ceiling: int | None = None) -> None:
    """Raise VmtuneValueError if ``value`` is outside opskit's bounds for ``name``."""
    knob = KNOBS[name]
    if value < knob["min"]:
        raise VmtuneValueError(
            f"{name} = {value} is below the minimum {knob['min']}: {knob['why_min']}"
        )
    upper = ceiling if ceiling is not None else knob.get("max")
    if upper is not None and value > upper:
        if name == "vm.min_free_kbytes":
            raise VmtuneValueError(
                f"{name} = {value} kB is above the safety ceiling of {upper} kB: the kernel "
                "would keep that much memory free and start reclaiming (or OOM-killing) "
                "to get there. Give a smaller value, or raise `ceiling` (e.g. ceiling: 8%) "
                "if you really mean it"
            )
        raise VmtuneValueError(f"{name} = {value} is above the maximum {upper}: {knob['why_max']}")


def parse_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise VmtuneValueError(f"{name} must be an integer, not {value!r}")
    if isinstance(value, str) and not re.fullmatch(r"[0-9]{1,18}", value):
        raise VmtuneValueError(f"{name} must be an integer, not {value!r}")
    return int(value)


def render_conf(name: str, value: int, request: str = "") -> str:
    """The content of opskit's sysctl.d file for one knob (``opskit_formats``: the
    request restated in the comment may not hold line breaks either)."""
    requested = opskit_formats.check_text(str(request or value), f"{name} request")
    header = f"{MARKER.removeprefix('# ')}; local edits are overwritten.\nrequested: {requested}"
    return opskit_formats.sysctl_file({name: int(value)}, header=header, path=name)


def parse_conf(text: str) -> dict[str, str]:
    """sysctl.d syntax: ``key = value`` lines; ``#``/``;`` comments; ``-`` prefix ignored."""
    return opskit_formats.parse_sysctl(text)


def format_zones(zones: list[Zone], page_kb: int = 4) -> str:
    """One line per zone: ``Node 0 Normal min 9575 low 11968 high 14361 (gap 9.3 MiB)``."""
    parts = []
    for z in zones:
        gap_mib = (z.low - z.min) * page_kb / 1024
        parts.append(
            f"{z.label}: min {z.min} low {z.low} high {z.high} pages (min→low {gap_mib:.1f} MiB)"
        )
    return "; ".join(parts)
