"""jemalloc.enabled / jemalloc.disabled on a real systemd service inside a lab minion.

The service is a small Python unit this module installs on thumb-01 (and removes
again). Everything is asserted inside the minion: the drop-in on disk, the process's
/proc/<pid>/maps and environ, MainPID and ActiveEnterTimestamp (a restart changes
both). Whatever the module finds installed before (libjemalloc2, from a highstate) it
leaves installed; what it added, it removes.
"""

from __future__ import annotations

import pathlib

import pytest

MINION = "thumb-01.lab"
UNIT = "opskit-test-jemalloc.service"
DROPIN = f"/etc/systemd/system/{UNIT}.d/50-opskit-jemalloc.conf"
LIBRARY = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
CONF = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0"
UNIT_TEXT = """\
[Unit]
Description=opskit integration test: a Python service for jemalloc.enabled

[Service]
ExecStart={exec_start}
"""
PYTHON_LOOP = "/usr/bin/python3 -c 'import time\\nwhile True: time.sleep(1)'"


def _install_unit(minion, exec_start: str) -> None:
    minion.run(
        ["tee", f"/etc/systemd/system/{UNIT}"],
        input_text=UNIT_TEXT.format(exec_start=exec_start),
    )
    minion.run(["systemctl", "daemon-reload"])
    minion.run(["systemctl", "restart", UNIT])


@pytest.fixture(scope="module")
def minion(lab):
    minion = lab.minions[MINION]
    synced = lab.salt(MINION, "saltutil.sync_all", timeout=120)
    assert synced.returncode == 0, synced
    query = minion.run(["dpkg-query", "-W", "-f=${Status}", "libjemalloc2"], check=False)
    had_library = "install ok installed" in query.stdout
    _install_unit(minion, PYTHON_LOOP)
    yield minion
    minion.run(["systemctl", "stop", UNIT], check=False)
    minion.run(["rm", "-rf", f"/etc/systemd/system/{UNIT}", f"/etc/systemd/system/{UNIT}.d"])
    minion.run(["systemctl", "daemon-reload"])
    if not had_library:
        minion.run(["apt-get", "purge", "-y", "-q", "libjemalloc2"], timeout=300)


def _state(lab, fun: str, *args: str) -> dict:
    result = lab.salt(MINION, "state.single", fun, f"name={UNIT}", *args, timeout=300)
    assert isinstance(result.data, dict), result
    assert isinstance(result.data.get(MINION), dict), result
    (ret,) = result.data[MINION].values()
    return ret


def _process(minion) -> dict:
    show = minion.run(
        ["systemctl", "show", "-p", "MainPID", "-p", "ActiveEnterTimestamp", UNIT]
    ).stdout
    props = dict(line.split("=", 1) for line in show.splitlines() if "=" in line)
    pid = int(props["MainPID"])
    assert pid, f"{UNIT} is not running: {show}"
    maps = minion.run(["cat", f"/proc/{pid}/maps"]).stdout
    environ = minion.run(["cat", f"/proc/{pid}/environ"]).stdout.split("\0")
    return {
        "pid": pid,
        "since": props["ActiveEnterTimestamp"],
        "jemalloc": LIBRARY in maps,
        "python": "python3" in maps,
        "malloc_conf": next((e for e in environ if e.startswith("MALLOC_CONF=")), None),
    }


def _dropin(minion) -> str | None:
    proc = minion.run(["cat", DROPIN], check=False)
    return proc.stdout if proc.returncode == 0 else None


def test_enabled_then_disabled_on_a_real_service(lab, minion):
    before = _process(minion)
    assert not before["jemalloc"]

    preview = _state(lab, "jemalloc.enabled", f"malloc_conf={CONF}", "test=True")
    assert preview["result"] is None, preview
    assert preview["changes"][DROPIN] == {
        "old": None,
        "new": {"LD_PRELOAD": LIBRARY, "MALLOC_CONF": CONF},
    }
    assert preview["changes"][UNIT]["new"] == "restarted with jemalloc"
    assert _dropin(minion) is None
    assert _process(minion) == before  # test=True touched nothing

    ret = _state(lab, "jemalloc.enabled", f"malloc_conf={CONF}")
    assert ret["result"] is True, ret["comment"]
    after = _process(minion)
    assert after["python"]
    assert after["jemalloc"], "jemalloc is not in the new main process's maps"
    assert after["malloc_conf"] == f"MALLOC_CONF={CONF}"
    assert after["pid"] != before["pid"]
    assert ret["changes"][UNIT] == {
        "old": {"main_pid": before["pid"], "jemalloc": False},
        "new": {"main_pid": after["pid"], "jemalloc": True},
    }
    assert f'Environment="LD_PRELOAD={LIBRARY}"' in _dropin(minion)

    # A second apply changes nothing and restarts nothing.
    again = _state(lab, "jemalloc.enabled", f"malloc_conf={CONF}")
    assert again["result"] is True
    assert again["changes"] == {}
    assert _process(minion) == after
    assert _state(lab, "jemalloc.enabled", f"malloc_conf={CONF}", "test=True")["result"] is True

    off = _state(lab, "jemalloc.disabled")
    assert off["result"] is True, off["comment"]
    gone = _process(minion)
    assert gone["python"]
    assert not gone["jemalloc"], "jemalloc is still mapped after jemalloc.disabled"
    assert gone["malloc_conf"] is None
    assert off["changes"][DROPIN] == {
        "old": {"LD_PRELOAD": LIBRARY, "MALLOC_CONF": CONF},
        "new": None,
    }
    assert _dropin(minion) is None

    still = _state(lab, "jemalloc.disabled")
    assert still["result"] is True
    assert still["changes"] == {}
    assert _process(minion) == gone


def test_restart_false_leaves_the_process_alone_until_a_restart(lab, minion):
    before = _process(minion)
    ret = _state(lab, "jemalloc.enabled", "restart=False")
    assert ret["result"] is True, ret["comment"]
    assert list(ret["changes"]) == [DROPIN]
    assert "next restart" in ret["comment"]
    assert _process(minion) == before
    # The drop-in is in place but the process lacks jemalloc: with restart (default
    # true) the next apply restarts it, and only then is it converged.
    ret = _state(lab, "jemalloc.enabled")
    assert ret["result"] is True
    assert list(ret["changes"]) == [UNIT]
    assert _process(minion)["jemalloc"]
    ret = _state(lab, "jemalloc.disabled", "restart=False")
    assert ret["result"] is True
    assert "keeps jemalloc until its next restart" in ret["comment"]
    assert _process(minion)["jemalloc"]
    assert _state(lab, "jemalloc.disabled")["changes"][UNIT]["new"]["jemalloc"] is False


def test_a_library_the_loader_rejects_fails_before_anything_is_written(lab, minion):
    before = _process(minion)
    ret = _state(lab, "jemalloc.enabled", "library=/etc/hostname")
    assert ret["result"] is False
    assert "cannot be preloaded" in ret["comment"]
    assert "/etc/hostname" in ret["comment"]
    assert _dropin(minion) is None
    assert _process(minion) == before
    bad_conf = _state(lab, "jemalloc.enabled", "malloc_conf=narenas:lots")
    assert bad_conf["result"] is False
    assert "<jemalloc>" in bad_conf["comment"]
    assert _dropin(minion) is None


def test_a_service_that_drops_ld_preload_fails_verification(lab, minion):
    """The loader starts such a service happily; only /proc/<pid>/maps tells."""
    _install_unit(minion, f"/usr/bin/env -i {PYTHON_LOOP}")
    try:
        ret = _state(lab, "jemalloc.enabled", "verify_timeout=3")
        assert ret["result"] is False
        assert "jemalloc is not mapped into" in ret["comment"]
        assert f"journalctl -u {UNIT}" in ret["comment"]
    finally:
        _state(lab, "jemalloc.disabled")
        _install_unit(minion, PYTHON_LOOP)


def test_unknown_unit_is_refused(lab, minion):
    result = lab.salt(MINION, "state.single", "jemalloc.enabled", "name=no-such-thing", timeout=120)
    (ret,) = result.data[MINION].values()
    assert ret["result"] is False
    assert "no-such-thing.service is not a unit systemd knows on thumb-01.lab" in ret["comment"]


def test_unknown_unit_in_test_mode_predicts_and_writes_nothing(lab, minion):
    """With test=True an earlier state of the same run may be what installs the unit:
    the state predicts the drop-in (result None) instead of failing, and writes nothing."""
    result = lab.salt(
        MINION, "state.single", "jemalloc.enabled", "name=no-such-thing", "test=True", timeout=120
    )
    (ret,) = result.data[MINION].values()
    assert ret["result"] is None, ret
    dropin = "/etc/systemd/system/no-such-thing.service.d/50-opskit-jemalloc.conf"
    assert list(ret["changes"]) == [dropin]
    assert "does not exist yet" in ret["comment"]
    assert (
        minion.run(
            ["test", "-e", str(pathlib.PurePosixPath(dropin).parent)], check=False
        ).returncode
        == 1
    )
