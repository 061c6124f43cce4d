"""Settings schema of the ``tuning`` formula (pillar ``tuning``), checked at render time
by ``opskit.settings`` from ``salt/tuning/map.jinja``.

Unit names are canonicalised (``foo`` -> ``foo.service``); per-unit and per-file
``malloc_conf``/``restart``/``verify_timeout`` inherit the ``tuning:jemalloc`` values
when absent (an explicit null ``malloc_conf`` means jemalloc's own defaults). The
live vm values are checked against the minion's memory later, by ``vmtune.resolve``
(also at render time, in ``vm/init.sls``).
"""

from __future__ import annotations

import copy

try:
    import opskit_jemalloc  # synced from file_roots, or module_dirs
    import opskit_schema as s
    import opskit_vmtune
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_jemalloc
    from saltext.opskit.utils import opskit_schema as s
    from saltext.opskit.utils import opskit_vmtune


class UnitName(s.Str):
    """A systemd service name, canonicalised by ``opskit_jemalloc.canonical_unit``."""

    def __init__(self, **kw):
        super().__init__(hint="a systemd service name (foo or foo.service)", max_len=255, **kw)

    def convert(self, value, path, problems, secret):
        text = super().convert(value, path, problems, secret)
        if text is s.INVALID:
            return text
        try:
            return opskit_jemalloc.canonical_unit(text)
        except opskit_jemalloc.JemallocValueError as err:
            return self.fail(problems, path, value, secret, str(err))


def _malloc_conf(value):
    try:
        opskit_jemalloc.validate_malloc_conf(value)
    except opskit_jemalloc.JemallocValueError as err:
        return str(err)
    return None


MALLOC_CONF = s.Str(
    check=_malloc_conf,
    nullable=True,
    hint="MALLOC_CONF key:value pairs separated by commas",
    doc="MALLOC_CONF (jemalloc's options); null: jemalloc's defaults",
)
# What `require_sls` may name: SLS names as Salt writes them (dotted, no spaces).
SLS_NAME = s.SlsName()
SIZE = s.Str(r"[0-9]{1,12}(?:\.[0-9]{1,3})?[KMGTkmgt]?(?:i?B)?", hint="a size such as 25M or 1G")
SHARE = s.Str(r"[0-9]{1,3}(?:\.[0-9]{1,3})?%", hint="a share of RAM such as 5%")
LIVE = s.Enum("required", "optional", doc="whether the live value must be set here")


def _optional(kind: s.Type, inherits: str = "") -> s.Type:
    """A copy of ``kind`` that stays absent when the key is absent (inherited)."""
    kind = copy.copy(kind)
    kind.optional = True
    if inherits:
        kind.doc = f"{kind.doc} ({inherits})" if kind.doc else inherits
    return kind


UNIT = s.Map(
    {
        "enabled": s.Bool(default=True, doc="false takes the unit off jemalloc"),
        "malloc_conf": _optional(MALLOC_CONF, "default: tuning:jemalloc:malloc_conf"),
        "restart": _optional(
            s.Bool(doc="restart the unit when its settings changed"),
            "default: tuning:jemalloc:restart",
        ),
        "verify_timeout": _optional(
            s.Int(1, 600, doc="seconds to wait for jemalloc"),
            "default: tuning:jemalloc:verify_timeout",
        ),
        "require_sls": s.List(SLS_NAME, max_items=32, doc="SLS that install the unit"),
    }
)
COMPOSE = s.Map(
    {
        "services": s.List(
            s.Str(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", hint="a compose service name", max_len=128),
            min_items=1,
            max_items=64,
            doc="compose services to run under jemalloc",
        ),
        "malloc_conf": _optional(MALLOC_CONF, "default: tuning:jemalloc:malloc_conf"),
        "enabled": s.Bool(default=True, doc="false removes the override file"),
    }
)


def _bounds(name: str):
    """opskit_vmtune's fixed bounds for a knob (the RAM-dependent ceiling of
    min_free_kbytes is checked by vmtune.resolve on the minion)."""

    def check(value):
        ceiling = None if name != "vm.min_free_kbytes" else 1 << 40
        try:
            opskit_vmtune.check_bounds(name, value, ceiling=ceiling)
        except opskit_vmtune.VmtuneValueError as err:
            return str(err).split(" = ", 1)[-1]
        return None

    return check


def _knob(value: s.Type, extra: dict, doc: str) -> s.Type:
    """A vm knob: a plain value, or a mapping with ``value`` (and ``live``, ...)."""
    return s.OneOf(
        value,
        s.Map({"value": value, "live": _optional(LIVE, "default: tuning:vm:live"), **extra}),
        nullable=True,
        doc=doc,
    )


SCHEMA = s.Map(
    {
        "jemalloc": s.Map(
            {
                "malloc_conf": MALLOC_CONF,
                "restart": s.Bool(default=True, doc="restart units whose settings changed"),
                "verify_timeout": s.Int(1, 600, default=15, doc="seconds to wait for jemalloc"),
                "units": s.DictOf(
                    UnitName(),
                    UNIT,
                    max_items=256,
                    placeholder="<unit>",
                    doc="systemd units to run under jemalloc",
                ),
                "compose": s.DictOf(
                    s.Path(suffixes=(".yml", ".yaml")),
                    COMPOSE,
                    max_items=64,
                    placeholder="<override file>",
                    doc="docker compose override files",
                ),
            }
        ),
        "vm": s.Map(
            {
                "live": s.Enum(
                    "required",
                    "optional",
                    default="required",
                    doc="required: fail where /proc/sys is read-only",
                ),
                "min_free_kbytes": _knob(
                    s.OneOf(s.Int(check=_bounds("vm.min_free_kbytes")), SHARE, s.Enum("auto")),
                    {
                        "largest_allocation": _optional(
                            s.OneOf(s.Int(min=1), SIZE),
                            "kB or a size; required with value: auto",
                        ),
                        "headroom": _optional(s.Float(1, 100), "default 2"),
                        "ceiling": _optional(s.OneOf(SHARE, SIZE, s.Int(min=1)), "default 5%"),
                    },
                    "kB, a share of RAM, or {value: auto, largest_allocation: 25M}",
                ),
                "watermark_scale_factor": _knob(
                    s.Int(check=_bounds("vm.watermark_scale_factor")),
                    {},
                    "vm.watermark_scale_factor (1-1000)",
                ),
                "vfs_cache_pressure": _knob(
                    s.Int(check=_bounds("vm.vfs_cache_pressure")),
                    {},
                    "vm.vfs_cache_pressure (1-1000)",
                ),
            }
        ),
    }
)


def check(settings):
    """Fill in inherited per-unit values; cross-key rules."""
    jm = settings["jemalloc"]
    for conf in [*jm["units"].values(), *jm["compose"].values()]:
        conf.setdefault("malloc_conf", jm["malloc_conf"])
    for conf in jm["units"].values():
        conf.setdefault("restart", jm["restart"])
        conf.setdefault("verify_timeout", jm["verify_timeout"])
    knob = settings["vm"]["min_free_kbytes"]
    if isinstance(knob, dict):
        if knob["value"] == "auto" and "largest_allocation" not in knob:
            yield (
                "tuning:vm:min_free_kbytes:largest_allocation",
                "value: auto needs largest_allocation (e.g. 25M)",
            )
        if knob["value"] != "auto" and "largest_allocation" in knob:
            yield ("tuning:vm:min_free_kbytes:largest_allocation", "only applies to value: auto")
    elif knob == "auto":
        yield (
            "tuning:vm:min_free_kbytes",
            "auto needs a mapping: {value: auto, largest_allocation: 25M}",
        )
