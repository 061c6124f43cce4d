"""vmtune's live path on the CI host VM itself, with `salt-call --local`.

The lab's minions are containers whose /proc/sys is read-only (vm.* is not namespaced:
it is the host's kernel), so the real write -> read-back -> watermark change is tested
here, on the host, where /proc/sys is writable. Other people's labs share this kernel:
every change is small (a few MiB of min_free_kbytes, a few 1/10000 of watermark scale),
lasts seconds, and the finalizer writes the original values back and checks them even
when a test fails. The persisted files go to a temporary sysctl.d directory (minion
option ``vmtune.sysctl_dir``); /etc/sysctl.d of the host is only read (conflict check).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import time

import opskit_vmtune
import pytest

from tests.conftest import REPO

KNOBS = ("min_free_kbytes", "watermark_scale_factor", "vfs_cache_pressure")
PROC_VM = pathlib.Path("/proc/sys/vm")


def _live(knob: str) -> int:
    return int((PROC_VM / knob).read_text())


@pytest.fixture(scope="module")
def originals():
    if os.geteuid() != 0:
        pytest.skip("SKIPPED: the live vmtune test writes /proc/sys/vm and needs root")
    saved = {knob: _live(knob) for knob in KNOBS}
    yield saved
    for knob, value in saved.items():
        if _live(knob) != value:
            (PROC_VM / knob).write_text(f"{value}\n")
    assert {knob: _live(knob) for knob in KNOBS} == saved, "could not restore vm.* values"


@pytest.fixture(scope="module")
def salt_call(tmp_path_factory, originals):
    root = tmp_path_factory.mktemp("vmtune-live")
    (root / "conf").mkdir()
    (root / "sysctl.d").mkdir()
    config = {
        "root_dir": str(root / "root"),
        "file_client": "local",
        "id": "ci-host",
        "module_dirs": [str(REPO)],
        "vmtune.sysctl_dir": str(root / "sysctl.d"),
        "log_level": "warning",
    }
    (root / "conf" / "minion").write_text(json.dumps(config))

    def call(*args: str) -> dict:
        proc = subprocess.run(
            [
                str(REPO / ".venv" / "bin" / "salt-call"),
                "--local",
                "-c",
                str(root / "conf"),
                "--out=json",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        data = json.loads(proc.stdout)["local"]
        return (
            next(iter(data.values()))
            if isinstance(data, dict) and args[0] == "state.single"
            else data
        )

    call.sysctl_dir = root / "sysctl.d"
    return call


def _zones_consistent_with(min_free: int, scale: int) -> list:
    """The kernel's zone watermarks, checked against the model (retries a few times in
    case memory hotplug on the VM moves the managed pages between the two reads)."""
    for _ in range(5):
        zones = opskit_vmtune.parse_zoneinfo(pathlib.Path("/proc/zoneinfo").read_text())
        predicted = opskit_vmtune.predict_watermarks(zones, min_free, scale)
        if [(z.min, z.low, z.high) for z in zones] == [(z.min, z.low, z.high) for z in predicted]:
            return zones
        time.sleep(0.2)
    pytest.fail(f"/proc/zoneinfo {zones} does not match the model's {predicted}")


def test_min_free_kbytes_is_applied_read_back_persisted_and_idempotent(salt_call, originals):
    target = originals["min_free_kbytes"] + 2048
    preview = salt_call(
        "state.single", "vmtune.min_free_kbytes", "name=t", f"value={target}", "test=True"
    )
    assert preview["result"] is None
    assert _live("min_free_kbytes") == originals["min_free_kbytes"]

    ret = salt_call("state.single", "vmtune.min_free_kbytes", "name=t", f"value={target}")
    assert ret["result"] is True, ret["comment"]
    conf = salt_call.sysctl_dir / "60-opskit-vm-min_free_kbytes.conf"
    assert ret["changes"] == {
        "vm.min_free_kbytes": {"old": originals["min_free_kbytes"], "new": target},
        str(conf): {"old": None, "new": target},
    }
    assert _live("min_free_kbytes") == target
    assert opskit_vmtune.parse_conf(conf.read_text()) == {"vm.min_free_kbytes": str(target)}
    # The kernel moved the watermarks exactly as the model (and the comment) says.
    zones = _zones_consistent_with(target, originals["watermark_scale_factor"])
    assert "zone watermarks before:" in ret["comment"]
    assert f"zone watermarks after: {opskit_vmtune.format_zones(zones)}" in ret["comment"]

    again = salt_call("state.single", "vmtune.min_free_kbytes", "name=t", f"value={target}")
    assert again["result"] is True
    assert again["changes"] == {}


def test_auto_gives_the_kernel_a_gap_that_covers_the_burst(salt_call, originals):
    """The rule checked against the kernel itself: after `auto`, the min->low gap the
    kernel set (read from /proc/zoneinfo) covers headroom x largest_allocation."""
    ret = salt_call(
        "state.single",
        "vmtune.min_free_kbytes",
        "name=t",
        "value=auto",
        "largest_allocation=20M",
        "headroom=1",
    )
    assert ret["result"] is True, ret["comment"]
    value = _live("min_free_kbytes")
    # Small on purpose (other labs share this kernel): tens of MiB at most.
    assert value - originals["min_free_kbytes"] < 64 * 1024
    zones = _zones_consistent_with(value, originals["watermark_scale_factor"])
    assert opskit_vmtune.min_low_gap_kb(zones) >= 20 * 1024
    (PROC_VM / "min_free_kbytes").write_text(f"{originals['min_free_kbytes']}\n")


def test_watermark_scale_factor_moves_the_gap(salt_call, originals):
    target = originals["watermark_scale_factor"] + 5
    ret = salt_call("state.single", "vmtune.watermark_scale_factor", "name=t", f"value={target}")
    assert ret["result"] is True, ret["comment"]
    assert ret["changes"]["vm.watermark_scale_factor"] == {
        "old": originals["watermark_scale_factor"],
        "new": target,
    }
    assert _live("watermark_scale_factor") == target
    _zones_consistent_with(_live("min_free_kbytes"), target)


def test_vfs_cache_pressure_and_a_refusal(salt_call, originals):
    target = originals["vfs_cache_pressure"] + 1
    ret = salt_call("state.single", "vmtune.vfs_cache_pressure", "name=t", f"value={target}")
    assert ret["result"] is True, ret["comment"]
    assert _live("vfs_cache_pressure") == target
    refused = salt_call("state.single", "vmtune.vfs_cache_pressure", "name=t", "value=0")
    assert refused["result"] is False
    assert "nothing was written" in refused["comment"]
    assert _live("vfs_cache_pressure") == target
