"""The `tuning` formula on the lab's sample hosts, driven by their CMDB records.

The records in tests/lab/inventory.yaml are passed as the pillar of `state.apply`
(the same data the CMDB serves each host), so this holds whether or not the session's
ext_pillar already delivers them. db-01 is a container: its vm.* values are persisted
and reported as the host's; on thumb-01 the tuning formula runs the lab's probe service
under jemalloc (its record does not list the probe: there the thumbnail-server formula
runs the real service under jemalloc itself, so the test adds the probe to the pillar).
Both are applied twice: the second apply must change nothing and restart nothing.
Whatever this module adds that a highstate had not put there, it removes again.
"""

from __future__ import annotations

import json
import pathlib

import pytest

from tests.lab.lab import load_inventory

PROBE = "opskit-lab-malloc-probe.service"
LIBRARY = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
PROBE_TUNING = {"jemalloc": {"units": {PROBE: {"require_sls": ["lab.malloc_probe"]}}}}


def _apply(lab, minion_id: str, sls: str, **pillar) -> dict:
    pillar = json.dumps({**load_inventory()[minion_id], **pillar})
    # state.apply <sls> does not sync custom modules (highstate does): sync_mods=all.
    result = lab.salt(
        minion_id, "state.apply", sls, f"pillar={pillar}", "sync_mods=all", timeout=600
    )
    assert isinstance(result.data, dict), result
    states = result.data.get(minion_id)
    assert isinstance(states, dict), result
    failed = {k: v["comment"] for k, v in states.items() if v["result"] is not True}
    assert not failed, failed
    return states


def _by_function(states: dict, function: str) -> list[dict]:
    """State returns of one function; keys are ``module_|-id_|-name_|-function``."""
    module, fun = function.split(".", 1)
    return [
        v for k, v in states.items() if k.startswith(f"{module}_|-") and k.endswith(f"_|-{fun}")
    ]


@pytest.fixture
def db(lab):
    minion = lab.minions["db-01.lab"]
    assert lab.salt("db-01.lab", "saltutil.sync_all", timeout=120).returncode == 0
    listing = minion.run(["sh", "-c", "ls /etc/sysctl.d/60-opskit-* 2>/dev/null || true"]).stdout
    saved = {path: minion.read_file(path) for path in listing.split()}
    yield minion
    listing = minion.run(["sh", "-c", "ls /etc/sysctl.d/60-opskit-* 2>/dev/null || true"]).stdout
    for path in listing.split():
        if path not in saved:
            minion.run(["rm", "-f", path])
    for path, text in saved.items():
        minion.run(["tee", path], input_text=text)


def test_database_host_persists_vm_tuning_and_says_the_host_owns_it(lab, db):
    host_before = {
        k: pathlib.Path(f"/proc/sys/vm/{k}").read_text()
        for k in ("min_free_kbytes", "vfs_cache_pressure")
    }
    states = _apply(lab, "db-01.lab", "tuning")
    vm_states = _by_function(states, "vmtune.min_free_kbytes") + _by_function(
        states, "vmtune.vfs_cache_pressure"
    )
    assert len(vm_states) == 2
    for ret in vm_states:
        # Only the file may be reported as changed: the live part was not done.
        assert all(key.startswith("/etc/sysctl.d/60-opskit-") for key in ret["changes"]), ret
        assert "NOT applied live: /proc/sys is read-only on db-01.lab" in ret["comment"]
    resolved = lab.salt(
        "db-01.lab", "vmtune.resolve", "vm.min_free_kbytes", "auto", "largest_allocation=25M"
    ).data["db-01.lab"]["value"]
    persisted = db.read_file("/etc/sysctl.d/60-opskit-vm-min_free_kbytes.conf")
    assert f"vm.min_free_kbytes = {resolved}\n" in persisted
    assert "vm.vfs_cache_pressure = 200\n" in db.read_file(
        "/etc/sysctl.d/60-opskit-vm-vfs_cache_pressure.conf"
    )
    again = _apply(lab, "db-01.lab", "tuning")
    assert {k: v["changes"] for k, v in again.items() if v["changes"]} == {}
    # The host's kernel was not touched (it could not be, from a container).
    assert host_before == {k: pathlib.Path(f"/proc/sys/vm/{k}").read_text() for k in host_before}


def test_live_required_fails_in_a_container_and_refusals_write_nothing(lab, db):
    result = lab.salt(
        "db-01.lab", "state.single", "vmtune.vfs_cache_pressure", "name=t", "value=300"
    )
    (ret,) = result.data["db-01.lab"].values()
    assert ret["result"] is False
    assert "belongs to the host's kernel" in ret["comment"]
    assert "live: required, so this fails" in ret["comment"]
    assert "vm.vfs_cache_pressure = 300\n" in db.read_file(
        "/etc/sysctl.d/60-opskit-vm-vfs_cache_pressure.conf"
    )
    conf = "/etc/sysctl.d/60-opskit-vm-min_free_kbytes.conf"
    before = db.run(["cat", conf], check=False).stdout
    result = lab.salt("db-01.lab", "state.single", "vmtune.min_free_kbytes", "name=t", "value=512")
    (ret,) = result.data["db-01.lab"].values()
    assert ret["result"] is False
    assert "refused, nothing was written" in ret["comment"]
    assert db.run(["cat", conf], check=False).stdout == before


@pytest.fixture
def thumb(lab):
    minion = lab.minions["thumb-01.lab"]
    had_probe = (
        minion.run(["test", "-e", f"/etc/systemd/system/{PROBE}"], check=False).returncode == 0
    )
    query = minion.run(["dpkg-query", "-W", "-f=${Status}", "libjemalloc2"], check=False)
    had_library = "install ok installed" in query.stdout
    yield minion
    if not had_probe:
        minion.run(["systemctl", "disable", "--now", PROBE], check=False)
        minion.run(
            [
                "rm",
                "-rf",
                f"/etc/systemd/system/{PROBE}",
                f"/etc/systemd/system/{PROBE}.d",
                "/usr/local/lib/opskit-lab",
            ]
        )
        minion.run(["systemctl", "daemon-reload"])
    if not had_library:
        minion.run(["apt-get", "purge", "-y", "-q", "libjemalloc2"], timeout=300)


def _probe(minion) -> tuple[int, str, bool]:
    props = minion.run(
        ["systemctl", "show", "-p", "MainPID", "-p", "ActiveEnterTimestamp", "--value", PROBE]
    ).stdout.split("\n")
    pid = int(props[0])
    assert pid, f"{PROBE} is not running"
    return pid, props[1], LIBRARY in minion.read_file(f"/proc/{pid}/maps")


def test_thumbnail_host_runs_its_service_under_jemalloc_and_a_second_apply_is_quiet(lab, thumb):
    states = _apply(lab, "thumb-01.lab", "lab.malloc_probe,tuning", tuning=PROBE_TUNING)
    (enabled,) = _by_function(states, "jemalloc.enabled")
    pid, since, loaded = _probe(thumb)
    assert loaded, enabled
    again = _apply(lab, "thumb-01.lab", "lab.malloc_probe,tuning", tuning=PROBE_TUNING)
    assert {k: v["changes"] for k, v in again.items() if v["changes"]} == {}
    assert _probe(thumb) == (pid, since, True)
