"""States for opskit as a whole: publishing this minion's scrape targets to the mine.

``opskit.targets_published`` keeps the Salt mine entry ``opskit_targets`` equal to what
``opskit.targets`` returns now (every exporter, Anubis instance, ... opskit runs on this
minion, in Prometheus ``file_sd`` shape). When it publishes something new it also sends
the event ``opskit/targets/published`` to the master, where a reactor
(``salt/reactor/opskit-targets.sls``) has the monitoring hosts rewrite their target
files at once instead of at their next highstate (a masterless minion, whose mine is
its own, sends nothing).
"""

from __future__ import annotations

from salt.exceptions import CommandExecutionError

try:  # synced from file_roots, or module_dirs
    import opskit_health
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_health

__virtualname__ = "opskit"

EVENT_TAG = "opskit/targets/published"


def __virtual__():
    if "opskit.targets" not in __salt__:
        return (False, "opskit: the opskit execution module is not available")
    return __virtualname__


def _mine_entry(minion, name):
    return (__salt__["mine.get"]([minion], name, tgt_type="list") or {}).get(minion)


def _mine_settled(minion, name, wanted, timeout):
    """Read the mine until it holds ``wanted`` for ``minion`` or ``timeout`` seconds pass;
    return what it held last. ``mine.send``/``mine.delete`` only fire an event that the
    minion's main process forwards to the master (salt/modules/mine.py, ``_mine_send``:
    fire_event, then a fixed ``time.sleep(0.5)``), so on a busy master the first read
    can still see the old entry."""

    def look(left):
        held = _mine_entry(minion, name)
        return held == wanted, held

    return opskit_health.wait_until(look, timeout=timeout, interval=0.5).value


def _notify(ret, minion, name):
    """Tell the master (and its reactor) that this minion's mine entry changed. A
    masterless minion (``file_client: local``, where Salt's mine module keeps the mine
    in the minion's own data store) has no master to tell."""
    if __opts__.get("file_client") == "local":
        ret["comment"] += f" Masterless: no master to send {EVENT_TAG} to."
        return ret
    if __salt__["event.send"](EVENT_TAG, {"minion": minion, "mine": name}):
        return ret
    ret["result"] = False
    ret["comment"] += (
        f" Sending the event {EVENT_TAG} to the master failed: monitoring hosts pick "
        "the change up at their next highstate."
    )
    return ret


def targets_published(name="opskit_targets", mine_function="opskit.targets", timeout=30, **kwargs):
    """
    Make the Salt mine hold the current result of ``mine_function`` under ``name``.

    name
        Mine key (default ``opskit_targets``, which the monitoring formula reads).

    mine_function
        The function whose result is published (default ``opskit.targets``).

    timeout
        Seconds to wait for the master's mine to hold the new entry (``mine.send`` is
        asynchronous) before the state fails (default 30).

    Compares the mine with the function's result, publishes with ``mine.send`` when
    they differ, reads the mine back to verify and sends the event
    ``opskit/targets/published`` (data: the minion id) to the master. ``test=True``
    reports what would be published; it sees the targets as they are when it runs,
    so states earlier in the same test run that would install an exporter are not
    reflected.

    .. code-block:: yaml

        common-mine-targets-opskit-targets_published:
          opskit.targets_published:
            - name: opskit_targets
            - order: last
    """
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    minion = __opts__["id"]
    try:
        wanted = __salt__[mine_function]()
    except CommandExecutionError as err:
        ret["result"] = False
        ret["comment"] = f"{mine_function} failed, nothing was published: {err}"
        return ret
    current = _mine_entry(minion, name)
    if current == wanted:
        ret["comment"] = f"The mine already holds {name} for {minion} ({len(wanted)} targets)."
        return ret
    if __opts__["test"]:
        ret["result"] = None
        ret["comment"] = f"{name} ({len(wanted)} targets) would be published to the mine."
        ret["changes"] = {name: {"old": current, "new": wanted}}
        return ret
    if not __salt__["mine.send"](name, mine_function=mine_function):
        ret["result"] = False
        ret["comment"] = (
            f"mine.send {name} (mine_function={mine_function}) failed on {minion}; "
            "see the minion log"
        )
        return ret
    published = _mine_settled(minion, name, wanted, float(timeout))
    ret["changes"] = {name: {"old": current, "new": published}}
    if published != wanted:
        ret["result"] = False
        ret["comment"] = (
            f"{timeout} s after mine.send, the mine holds {published!r} for {name} of "
            f"{minion}, not {wanted!r}; check the master's mine settings (mine_get, "
            "minion_data_cache) and load"
        )
        return ret
    ret["comment"] = f"Published {name} ({len(wanted)} targets) to the mine."
    return _notify(ret, minion, name)


def targets_absent(name="opskit_targets", timeout=30, **kwargs):
    """
    Make sure the Salt mine holds no entry ``name`` for this minion (``mine.delete``),
    and tell the master (event ``opskit/targets/published``) when it removed one.

    .. code-block:: yaml

        common-mine-clean-targets-opskit-targets_absent:
          opskit.targets_absent:
            - name: opskit_targets
    """
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    minion = __opts__["id"]
    current = _mine_entry(minion, name)
    if current is None:
        ret["comment"] = f"The mine holds no {name} for {minion}."
        return ret
    if __opts__["test"]:
        ret["result"] = None
        ret["comment"] = f"{name} would be removed from the mine."
        ret["changes"] = {name: {"old": current, "new": None}}
        return ret
    __salt__["mine.delete"](name)
    left = _mine_settled(minion, name, None, float(timeout))
    ret["changes"] = {name: {"old": current, "new": left}}
    if left is not None:
        ret["result"] = False
        ret["comment"] = f"mine.delete {name} on {minion} left {left!r} in the mine"
        return ret
    ret["comment"] = f"Removed {name} from the mine."
    return _notify(ret, minion, name)
