"""vmtune in Salt's real loaders: value resolution, bounds, refusal before any write,
the persisted file, and test=True.

Functional tests must not change this host, so the module's ``/proc`` is a copy in a
temporary directory: ``zoneinfo`` and ``meminfo`` are this host's real ones (the auto
rule and the ceiling are computed from real kernel data), ``sys/vm/*`` are plain files
holding this host's real values. Writing there exercises the state logic only; the real
kernel write, read-back and watermark change are tested on the host VM in
tests/integration/test_vmtune_live.py, the read-only /proc/sys of a container in
tests/integration/test_vmtune_lab.py.
"""

from __future__ import annotations

import pathlib
import shutil

import opskit_vmtune
import pytest

KNOBS = ("min_free_kbytes", "watermark_scale_factor", "vfs_cache_pressure")


@pytest.fixture(scope="module")
def vm_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("vmtune")
    proc = root / "proc"
    (proc / "sys" / "vm").mkdir(parents=True)
    for name in ("zoneinfo", "meminfo"):
        shutil.copyfile(f"/proc/{name}", proc / name)
    (root / "sysctl.d").mkdir()
    (root / "other.d").mkdir()
    return root


@pytest.fixture(scope="module")
def minion_config_overrides(vm_root):
    return {
        "vmtune.proc_root": str(vm_root / "proc"),
        "vmtune.sysctl_dir": str(vm_root / "sysctl.d"),
        "vmtune.sysctl_search": [str(vm_root / "sysctl.d"), str(vm_root / "other.d")],
    }


@pytest.fixture(autouse=True)
def fresh(vm_root):
    """Every test starts from this host's live values and no persisted files."""
    for knob in KNOBS:
        live = pathlib.Path(f"/proc/sys/vm/{knob}").read_text()
        (vm_root / "proc" / "sys" / "vm" / knob).write_text(live)
    for directory in ("sysctl.d", "other.d"):
        for path in (vm_root / directory).iterdir():
            path.unlink()
    return vm_root


def _live(vm_root, knob):
    return int((vm_root / "proc" / "sys" / "vm" / knob).read_text())


def _files(vm_root):
    return sorted(p.name for p in (vm_root / "sysctl.d").iterdir())


def test_auto_follows_the_rule_on_this_hosts_zones(modules, vm_root):
    resolved = modules.vmtune.resolve("vm.min_free_kbytes", "auto", largest_allocation="25M")
    zones = opskit_vmtune.parse_zoneinfo((vm_root / "proc" / "zoneinfo").read_text())
    scale = _live(vm_root, "watermark_scale_factor")
    gap = opskit_vmtune.min_low_gap_kb(
        opskit_vmtune.predict_watermarks(zones, resolved["value"], scale)
    )
    assert gap >= 2 * 25 * 1024
    assert resolved["value"] >= modules.vmtune.kernel_default_min_free_kbytes()
    assert "auto" in resolved["request"]


def test_share_of_ram(modules):
    total = modules.vmtune.mem_total_kb()
    assert modules.vmtune.resolve("vm.min_free_kbytes", "1%")["value"] == int(total / 100)


@pytest.mark.parametrize(
    "case",
    [
        ("min_free_kbytes", {"value": 512}, "below the minimum 1024"),
        ("min_free_kbytes", {"value": "6%"}, "above the safety ceiling"),
        ("min_free_kbytes", {"value": "6%", "ceiling": "30%"}, "above 25% of RAM"),
        ("min_free_kbytes", {"value": "auto"}, "needs largest_allocation"),
        ("min_free_kbytes", {"value": "auto", "largest_allocation": "lots"}, "must be a size"),
        ("min_free_kbytes", {"value": "auto", "largest_allocation": "2G"}, "safety ceiling"),
        ("vfs_cache_pressure", {"value": 0}, "never to reclaim dentries"),
        ("watermark_scale_factor", {"value": 3000}, "above the maximum 1000"),
        ("vfs_cache_pressure", {"value": "two hundred"}, "must be an integer"),
    ],
)
def test_refusal_happens_before_any_write(states, fresh, testmode, case):
    knob, kwargs, message = case
    before = {k: _live(fresh, k) for k in KNOBS}
    ret = getattr(states.vmtune, knob)(name="t", test=testmode, **kwargs)
    assert ret.result is False
    assert message in ret.comment
    assert "nothing was written" in ret.comment
    assert ret.changes == {}
    assert _files(fresh) == []
    assert {k: _live(fresh, k) for k in KNOBS} == before


def test_a_conflicting_sysctl_file_is_refused(states, fresh):
    (fresh / "other.d" / "99-local.conf").write_text("vm.vfs_cache_pressure = 50\n")
    ret = states.vmtune.vfs_cache_pressure(name="t", value=200)
    assert ret.result is False
    assert "99-local.conf sets 50" in ret.comment
    assert _files(fresh) == []
    # The same value elsewhere is no conflict.
    (fresh / "other.d" / "99-local.conf").write_text("vm.vfs_cache_pressure = 200\n")
    assert states.vmtune.vfs_cache_pressure(name="t", value=200).result is True


def test_min_free_kbytes_applies_persists_and_is_idempotent(states, fresh, testmode):
    old = _live(fresh, "min_free_kbytes")
    target = old + 2048
    ret = states.vmtune.min_free_kbytes(name="t", value=target, test=testmode)
    conf = fresh / "sysctl.d" / "60-opskit-vm-min_free_kbytes.conf"
    assert ret.changes == {
        "vm.min_free_kbytes": {"old": old, "new": target},
        str(conf): {"old": None, "new": target},
    }
    assert "zone watermarks before: Node 0" in ret.comment
    if testmode:
        assert ret.result is None
        assert "zone watermarks after (predicted)" in ret.comment
        assert _files(fresh) == []
        assert _live(fresh, "min_free_kbytes") == old
        return
    assert ret.result is True
    assert _live(fresh, "min_free_kbytes") == target
    assert opskit_vmtune.parse_conf(conf.read_text()) == {"vm.min_free_kbytes": str(target)}
    assert conf.read_text().startswith(opskit_vmtune.MARKER)
    again = states.vmtune.min_free_kbytes(name="t", value=target)
    assert again.result is True
    assert again.changes == {}
    assert states.vmtune.min_free_kbytes(name="t", value=target, test=True).result is True


def test_siblings_apply_within_bounds(states, fresh):
    ret = states.vmtune.vfs_cache_pressure(name="t", value=200)
    assert ret.result is True
    assert ret.changes["vm.vfs_cache_pressure"]["new"] == 200
    assert "zone watermarks" not in ret.comment  # it does not move them
    ret = states.vmtune.watermark_scale_factor(name="t", value=25)
    assert ret.result is True
    assert "zone watermarks before" in ret.comment
    assert _files(fresh) == [
        "60-opskit-vm-vfs_cache_pressure.conf",
        "60-opskit-vm-watermark_scale_factor.conf",
    ]


def test_live_mode_must_be_known(states, fresh):
    ret = states.vmtune.vfs_cache_pressure(name="t", value=200, live="sometimes")
    assert ret.result is False
    assert "required, optional" in ret.comment
    assert _files(fresh) == []
