"""Tune the kernel's memory reclaim safely: ``vm.min_free_kbytes`` and its siblings
``vm.watermark_scale_factor`` and ``vm.vfs_cache_pressure``.

Each state resolves and bounds-checks its value before anything is written (a refused
value fails the state and leaves the system untouched), fails if another sysctl file
sets the knob differently, applies the value live through ``/proc/sys`` and reads it
back, then persists it in the sysctl.d file opskit owns for that knob. The comment
shows the zone watermarks from ``/proc/zoneinfo`` before and after.

Where ``/proc/sys`` is read-only (a container) the live value belongs to the host's
kernel. The state still persists the file, never reports the live part as done, and
says so in its comment; its result then depends on ``live``:

``live: required`` (default)
    the state fails (result False) unless the host already runs the value: the
    operator asked for a kernel setting that is not in effect.
``live: optional``
    the state succeeds with ``changes`` only for the file; use it where the formula is
    applied to containers on purpose (the host's own Salt run sets the value).

.. code-block:: yaml

    postgres-min-free:
      vmtune.min_free_kbytes:
        - value: auto
        - largest_allocation: 25M
"""

from __future__ import annotations

from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError

__virtualname__ = "vmtune"

LIVE_MODES = ("required", "optional")
# Knobs that move the zone watermarks (the comment shows them before and after).
WATERMARK_KNOBS = ("vm.min_free_kbytes", "vm.watermark_scale_factor")


def __virtual__():
    if "vmtune.resolve" in __salt__:
        return __virtualname__
    return (False, "vmtune: the vmtune execution module is not available")


def _inspect(key: str, resolve_args: dict) -> dict:
    """Everything a vmtune state needs to decide, read before any change."""
    resolved = __salt__["vmtune.resolve"](key, **resolve_args)
    target = resolved["value"]
    path = __salt__["vmtune.config_path"](key)
    others = [c for c in __salt__["vmtune.conflicts"](key) if c["value"].strip() != str(target)]
    if others:
        listed = "; ".join(f"{c['file']} sets {c['value']}" for c in others)
        raise SaltInvocationError(
            f"refused, nothing was written: {key} = {target} would not survive a reboot on "
            f"{__opts__.get('id')}: {listed}. Remove those settings (opskit owns {key} in "
            f"{path})."
        )
    in_file = __salt__["vmtune.persisted"](key)
    return {
        "target": target,
        "request": resolved["request"],
        "detail": resolved["detail"],
        "path": path,
        "in_file": in_file,
        "file_change": in_file != target
        or not __salt__["vmtune.persist_current"](key, target, resolved["request"]),
        "live_now": __salt__["vmtune.get"](key),
        "writable": __salt__["vmtune.live_writable"](key),
        "before": __salt__["vmtune.watermarks_summary"]() if key in WATERMARK_KNOBS else "",
    }


def _describe(key: str, plan: dict, live: str) -> list:
    """The comment's first lines: the value, watermarks before, the live situation."""
    lines = [f"{key} = {plan['target']} ({plan['detail']})"]
    if plan["before"]:
        lines.append(f"zone watermarks before: {plan['before']}")
    if not plan["writable"] and plan["live_change"]:
        lines.append(
            f"NOT applied live: /proc/sys is read-only on {__opts__.get('id')} (a container), "
            f"so {key} belongs to the host's kernel, which runs {plan['live_now']}; set it on "
            "the host. The persisted file applies only where a kernel of its own boots with it"
        )
        if live == "required":
            lines.append("live: required, so this fails (live: optional accepts it)")
    elif not plan["live_change"]:
        lines.append(f"live value is {plan['live_now']} already")
    return lines


def _test_mode(key: str, plan: dict, live: str, ret: dict, lines: list) -> dict:
    if plan["file_change"]:
        ret["changes"][plan["path"]] = {"old": plan["in_file"], "new": plan["target"]}
    if plan["writable"] and plan["live_change"]:
        ret["changes"][key] = {"old": plan["live_now"], "new": plan["target"]}
        if plan["before"]:
            predicted = __salt__["vmtune.watermarks_summary"](
                **{key.split(".", 1)[1]: plan["target"]}
            )
            lines.append(f"zone watermarks after (predicted): {predicted}")
    failing = not plan["writable"] and plan["live_change"] and live == "required"
    ret["result"] = False if failing else None
    verb = "would persist in" if plan["file_change"] else "persisted in"
    ret["comment"] = "\n".join([*lines, f"{verb} {plan['path']}"])
    return ret


def _manage(name: str, key: str, live: str, resolve_args: dict) -> dict:
    ret = {"name": name, "result": False, "changes": {}, "comment": ""}
    try:
        if live not in LIVE_MODES:
            raise SaltInvocationError(f"live must be one of {', '.join(LIVE_MODES)}, not {live!r}")
        plan = _inspect(key, resolve_args)
    except (CommandExecutionError, SaltInvocationError) as err:
        ret["comment"] = str(err)
        return ret
    plan["live_change"] = plan["live_now"] != plan["target"]
    apply_live = plan["writable"] and plan["live_change"]
    # Success: the value is live (set here, or already the host's), or the caller
    # accepts that the host owns it.
    succeeded = plan["writable"] or not plan["live_change"] or live == "optional"
    lines = _describe(key, plan, live)
    if not plan["file_change"] and not apply_live:
        ret["result"] = succeeded
        ret["comment"] = "\n".join([*lines, f"persisted in {plan['path']}"])
        return ret
    if __opts__.get("test"):
        return _test_mode(key, plan, live, ret, lines)
    try:
        if apply_live:
            applied = __salt__["vmtune.apply"](key, plan["target"])
            ret["changes"][key] = {"old": plan["live_now"], "new": applied}
            if plan["before"]:
                after = __salt__["vmtune.watermarks_summary"]()
                lines.append(f"zone watermarks after: {after}")
        if __salt__["vmtune.persist"](key, plan["target"], plan["request"]):
            ret["changes"][plan["path"]] = {"old": plan["in_file"], "new": plan["target"]}
    except (CommandExecutionError, SaltInvocationError) as err:
        ret["comment"] = "\n".join([*lines, str(err)])
        return ret
    ret["result"] = succeeded
    ret["comment"] = "\n".join([*lines, f"persisted in {plan['path']}"])
    return ret


def min_free_kbytes(  # noqa: PLR0917 - Salt passes state arguments by keyword
    name: str,
    value,
    largest_allocation=None,
    headroom=2,
    ceiling=None,
    live: str = "required",
) -> dict:
    """
    Set ``vm.min_free_kbytes``: the free memory the kernel keeps for itself, shared
    over the zones as their ``min`` watermarks (``low``/``high`` follow from it and
    ``vm.watermark_scale_factor``).

    name
        A label (the state ID).
    value
        kB (``1081344``), a share of RAM (``"1%"``), or ``auto``: the smallest value
        (whole MiB, never below the kernel's own default) whose min→low watermark gap,
        summed over the zones, is at least ``headroom`` x ``largest_allocation``.
    largest_allocation
        For ``auto``: the largest allocation burst expected (``25M``, or kB).
    headroom
        For ``auto``: the factor over ``largest_allocation`` (default 2).
    ceiling
        The largest value accepted (default ``5%`` of RAM). Raising it is the explicit
        override for larger values; opskit refuses anything above 25% of RAM.
    live
        ``required`` (default) or ``optional``: the result where ``/proc/sys`` is
        read-only (see the module documentation).
    """
    args = {
        "value": value,
        "largest_allocation": largest_allocation,
        "headroom": headroom,
        "ceiling": ceiling,
    }
    return _manage(name, "vm.min_free_kbytes", live, args)


def watermark_scale_factor(name: str, value, live: str = "required") -> dict:
    """
    Set ``vm.watermark_scale_factor`` (1-1000, in 1/10000 of a zone's memory): the
    distance between the min, low and high watermarks when it exceeds a quarter of
    ``min`` (the kernel default is 10).
    """
    return _manage(name, "vm.watermark_scale_factor", live, {"value": value})


def vfs_cache_pressure(name: str, value, live: str = "required") -> dict:
    """
    Set ``vm.vfs_cache_pressure`` (1-1000; kernel default 100): how eagerly the kernel
    reclaims dentry and inode caches relative to the page cache.
    """
    return _manage(name, "vm.vfs_cache_pressure", live, {"value": value})
