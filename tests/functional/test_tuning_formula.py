"""The `tuning` formula checks its pillar at render time, so a bad value stops the whole
run before any state (of this formula or another) is applied; and it renders the states
the pillar asks for, in the order the `auto` rule needs."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("pillar", "message"),
    [
        ({"vm": {"min_free_kbytes": 512}}, "below the minimum 1024"),
        ({"vm": {"min_free_kbytes": {"value": "auto"}}}, "needs largest_allocation"),
        ({"vm": {"vfs_cache_pressure": 0}}, "never to reclaim dentries"),
        ({"vm": {"live": "maybe"}}, "tuning:vm:live must be required or optional"),
        ({"jemalloc": {"units": ["a.service"]}}, "tuning:jemalloc:units must be a mapping"),
        ({"jemalloc": {"units": {"a": {"restrat": True}}}}, "unknown key restrat"),
        ({"jemalloc": {"units": {"a b": {}}}}, "is not a systemd unit name"),
        ({"jemalloc": {"malloc_conf": "narenas: 2", "units": {"a": {}}}}, "key:value pair"),
        ({"jemalloc": {"compose": {"/x.yml": {"services": ["a b"]}}}}, "compose service name"),
    ],
)
def test_bad_pillar_stops_the_render(modules, pillar, message):
    rendered = modules.state.show_sls("tuning", pillar={"tuning": pillar})
    assert isinstance(rendered, list), rendered  # render errors come back as a list
    assert message in "\n".join(rendered)


def test_states_follow_the_pillar(modules):
    pillar = {
        "tuning": {
            "vm": {
                "min_free_kbytes": {"value": "auto", "largest_allocation": "25M"},
                "watermark_scale_factor": 20,
                "live": "optional",
            },
            "jemalloc": {
                "units": {
                    "a": {},
                    "b.service": {"enabled": False},
                    "c": {"malloc_conf": "narenas:2", "require_sls": ["lab"]},
                }
            },
        }
    }
    rendered = modules.state.show_sls("tuning", pillar=pillar)
    assert isinstance(rendered, dict), rendered
    min_free = rendered["tuning-vm-min_free_kbytes-vmtune-min_free_kbytes"]
    assert {
        "require": [{"vmtune": "tuning-vm-watermark_scale_factor-vmtune-watermark_scale_factor"}]
    } in min_free["vmtune"]
    assert {"live": "optional"} in min_free["vmtune"]
    assert "tuning-vm-vfs_cache_pressure-vmtune-vfs_cache_pressure" not in rendered
    enabled = rendered["tuning-jemalloc-a.service-jemalloc-enabled"]["jemalloc"]
    assert {"malloc_conf": "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0"} in enabled
    assert "tuning-jemalloc-b.service-jemalloc-disabled" in rendered
    custom = rendered["tuning-jemalloc-c.service-jemalloc-enabled"]["jemalloc"]
    assert {"malloc_conf": "narenas:2"} in custom
    assert {"require": [{"sls": "lab"}]} in custom
