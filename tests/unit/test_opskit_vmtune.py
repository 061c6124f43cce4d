"""The watermark arithmetic, the `auto` rule and the bounds of vmtune (pure functions)."""

from __future__ import annotations

import opskit_vmtune as vm
import pytest

# /proc/zoneinfo of a CI host VM (trimmed to the lines vmtune reads), taken while
# vm.min_free_kbytes was 67584 and vm.watermark_scale_factor 10: the watermarks below
# are the kernel's own, so predicting them checks the model against the kernel.
ZONEINFO = """\
Node 0, zone      DMA
  per-node stats
      nr_inactive_anon 1
  pages free     3840
        boost    0
        min      33
        low      41
        high     49
        promo    57
        spanned  4095
        present  3998
        managed  3840
        cma      0
        protection: (0, 2974, 7454, 7454, 7454)
  pagesets
    cpu: 0
              count: 0
              high:  0
Node 0, zone    DMA32
  pages free     760000
        boost    0
        min      6788
        low      8485
        high     10182
        promo    11879
        present  782336
        managed  772808
Node 0, zone   Normal
  pages free     340000
        boost    0
        min      10074
        low      12592
        high     15110
        promo    17628
        present  5505024
        managed  1146880
Node 0, zone  Movable
  pages free     0
        min      32
        low      32
        high     32
        present  0
        managed  0
"""


@pytest.fixture
def zones():
    return vm.parse_zoneinfo(ZONEINFO)


def test_zoneinfo_parsing_skips_empty_zones_and_per_cpu_fields(zones):
    assert [(z.name, z.managed, z.min, z.low, z.high) for z in zones] == [
        ("DMA", 3840, 33, 41, 49),
        ("DMA32", 772808, 6788, 8485, 10182),
        ("Normal", 1146880, 10074, 12592, 15110),
    ]


def test_prediction_reproduces_the_kernels_watermarks(zones):
    predicted = vm.predict_watermarks(zones, 67584, 10)
    assert [(z.min, z.low, z.high) for z in predicted] == [(z.min, z.low, z.high) for z in zones]


def test_scale_factor_dominates_the_gap_when_larger_than_a_quarter_of_min(zones):
    predicted = vm.predict_watermarks(zones, 67584, 200)  # 2% of each zone
    normal = predicted[2]
    assert normal.low - normal.min == 1146880 * 200 // 10000
    assert normal.high - normal.low == normal.low - normal.min


def test_auto_is_the_smallest_whole_mib_whose_gap_covers_the_burst(zones):
    target_kb = 2 * 25 * 1024
    value = vm.auto_min_free_kbytes(zones, 10, 25 * 1024, 2, floor_kb=67584)
    assert value % 1024 == 0
    assert vm.min_low_gap_kb(vm.predict_watermarks(zones, value, 10)) >= target_kb
    assert vm.min_low_gap_kb(vm.predict_watermarks(zones, value - 1024, 10)) < target_kb
    # A quarter of min is the gap once it dominates: about four times the burst.
    assert 4 * target_kb <= value <= 4 * target_kb + 4 * 1024


def test_auto_never_goes_below_the_kernels_own_default(zones):
    assert vm.auto_min_free_kbytes(zones, 10, 1024, 1, floor_kb=67584) == 67584


def test_kernel_default_follows_the_sqrt_rule_and_the_thp_recommendation(zones):
    lowmem_kb = (3840 + 772808 + 1146880) * 4
    assert vm.kernel_default_min_free_kbytes(zones, False, 512) == int((lowmem_kb * 16) ** 0.5)
    # khugepaged: 512-page pageblocks x 3 zones x (2 + 9) = 16896 pages = 67584 kB,
    # which is what this host runs with.
    assert vm.kernel_default_min_free_kbytes(zones, True, 512) == 67584


def test_incident_host_gap_explains_the_stalls():
    """32 GiB, THP default min_free_kbytes: a ~16 MiB min->low gap (the incident saw
    ~15 MB), far below a 25 MB query; the fix's 1081344 kB gives 264 MiB."""
    zones = [
        vm.Zone(0, "DMA", 3840, 0, 0, 0),
        vm.Zone(0, "DMA32", 750000, 0, 0, 0),
        vm.Zone(0, "Normal", 7500000, 0, 0, 0),
    ]
    old_kernel = 0  # before Linux 4.6 there was no watermark_scale_factor
    assert vm.min_low_gap_kb(vm.predict_watermarks(zones, 67584, old_kernel)) // 1024 == 16
    assert vm.min_low_gap_kb(vm.predict_watermarks(zones, 1081344, 10)) // 1024 == 263
    auto = vm.auto_min_free_kbytes(zones, 10, 25 * 1024, 2, floor_kb=67584)
    assert 200 * 1024 <= auto <= 210 * 1024


@pytest.mark.parametrize(
    ("value", "kb"),
    [(25600, 25600), ("25M", 25600), ("1G", 1048576), ("512k", 512), ("2MiB", 2048)],
)
def test_sizes(value, kb):
    assert vm.parse_size_kb(value, "size") == kb


@pytest.mark.parametrize(
    # "25M\n" passed the old `$`-anchored pattern (issue 11, item 10) and the newline
    # reached the sysctl.d file's comment line.
    "value",
    ["25 furlongs", True, "-1M", "", "25M\n", "25M\nvm.swappiness = 100", "\n25M"],
)
def test_bad_sizes_are_refused(value):
    with pytest.raises(vm.VmtuneValueError, match="must be a size"):
        vm.parse_size_kb(value, "size")


def test_bounds():
    vm.check_bounds("vm.min_free_kbytes", 1024, ceiling=2048)
    with pytest.raises(vm.VmtuneValueError, match="below the minimum 1024"):
        vm.check_bounds("vm.min_free_kbytes", 1023, ceiling=2048)
    with pytest.raises(vm.VmtuneValueError, match="raise `ceiling`"):
        vm.check_bounds("vm.min_free_kbytes", 2049, ceiling=2048)
    with pytest.raises(vm.VmtuneValueError, match="never to reclaim dentries"):
        vm.check_bounds("vm.vfs_cache_pressure", 0)
    with pytest.raises(vm.VmtuneValueError, match="above the maximum 1000"):
        vm.check_bounds("vm.watermark_scale_factor", 1001)


def test_ceiling_defaults_to_a_share_and_has_a_hard_limit():
    assert vm.ceiling_kb("5%", 1_000_000) == 50_000
    assert vm.ceiling_kb("100M", 1_000_000) == 102_400
    with pytest.raises(vm.VmtuneValueError, match="above 25% of RAM"):
        vm.ceiling_kb("30%", 1_000_000)


def test_conf_round_trip():
    text = vm.render_conf("vm.min_free_kbytes", 205824, "auto (largest_allocation 25M)")
    assert text.startswith(vm.MARKER)
    assert vm.parse_conf(text) == {"vm.min_free_kbytes": "205824"}
    assert vm.parse_conf("-vm/vfs_cache_pressure=200\n; comment\n") == {
        "vm.vfs_cache_pressure": "200"
    }


@pytest.mark.parametrize("value", ["200\n", " 200", "2\u0660"])
def test_integers_are_digits_only(value):
    with pytest.raises(vm.VmtuneValueError, match="must be an integer"):
        vm.parse_int(value, "vm.vfs_cache_pressure")


def test_shares_are_whole_strings():
    assert vm.parse_share("5%", "x") == 5.0
    assert vm.parse_share("5%\n", "x") is None


def test_conf_refuses_a_request_with_a_line_break():
    import opskit_formats

    with pytest.raises(opskit_formats.UnsafeValue, match="line feed"):
        vm.render_conf("vm.min_free_kbytes", 205824, "auto (largest_allocation 25M\n)")
