"""The `tuning` formula checks its pillar at render time, so a bad value stops the whole
run before any state (of this formula or another) is applied; and it renders the states
the pillar asks for, in the order the `auto` rule needs."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("pillar", "message"),
    [
        (
            {"vm": {"min_free_kbytes": 512}},
            "tuning:vm:min_free_kbytes = 512: 512 is below the minimum 1024",
        ),
        (
            {"vm": {"min_free_kbytes": {"value": "auto"}}},
            "tuning:vm:min_free_kbytes:largest_allocation: value: auto needs largest_allocation",
        ),
        (
            {"vm": {"min_free_kbytes": {"value": "5%", "largest_allocation": "25M"}}},
            "only applies to value: auto",
        ),
        ({"vm": {"min_free_kbytes": "90%"}}, "above the safety ceiling"),
        (
            {"vm": {"vfs_cache_pressure": 0}},
            "tuning:vm:vfs_cache_pressure = 0: 0 is below the minimum 1: 0 tells the kernel "
            "never to reclaim dentries",
        ),
        ({"vm": {"live": "maybe"}}, "tuning:vm:live = 'maybe': must be one of required, optional"),
        (
            {"jemalloc": {"units": ["a.service"]}},
            "tuning:jemalloc:units = ['a.service']: must be a mapping",
        ),
        (
            {"jemalloc": {"units": {"a": {"restrat": True}}}},
            "tuning:jemalloc:units:a:restrat = True: unknown key",
        ),
        (
            {"jemalloc": {"units": {"a b": {}}}},
            "tuning:jemalloc:units:'a b' = 'a b': 'a b' is not a systemd unit name",
        ),
        (
            {"jemalloc": {"malloc_conf": "narenas: 2", "units": {"a": {}}}},
            "tuning:jemalloc:malloc_conf = 'narenas: 2': malloc_conf 'narenas: 2': "
            "'narenas: 2' is not a key:value pair",
        ),
        (
            {"jemalloc": {"compose": {"/x.yml": {"services": ["a b"]}}}},
            "tuning:jemalloc:compose:/x.yml:services:0 = 'a b': must be a compose service name",
        ),
        (
            {"jemalloc": {"compose": {"/etc": {"services": ["a"]}}}},
            "tuning:jemalloc:compose:/etc = '/etc': is a system directory",
        ),
        (
            {"jemalloc": {"compose": {"x.yml": {"services": ["a"]}}}},
            "tuning:jemalloc:compose:x.yml = 'x.yml': "
            "must be an absolute path ending in .yml/.yaml",
        ),
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


# --- hostile pillar (issue 11, items 2 and 10) ---------------------------------------
INJECTED = "\ninjected-by-pillar:\n  cmd.run:\n    - name: touch /tmp/opskit-tuning-pwned\n"


@pytest.mark.parametrize(
    ("pillar", "key"),
    [
        (
            {"jemalloc": {"units": {"a": {"require_sls": ["lab" + INJECTED]}}}},
            "tuning:jemalloc:units:a:require_sls:0",
        ),
        (
            {"jemalloc": {"units": {"a": {"require_sls": ["lab }}{{ x"]}}}},
            "tuning:jemalloc:units:a:require_sls:0",
        ),
        (
            {
                "jemalloc": {
                    "compose": {
                        "/x.yml-jemalloc-compose_enabled:" + INJECTED + "y": {"services": ["a"]}
                    }
                }
            },
            "tuning:jemalloc:compose:'/x.yml",
        ),
        (
            {"jemalloc": {"units": {"a.service" + INJECTED: {}}}},
            "tuning:jemalloc:units:'a.service",
        ),
        (
            {"jemalloc": {"units": {"a.service\n": {}}}},
            "tuning:jemalloc:units:'a.service\\n'",
        ),
        (
            {"jemalloc": {"units": {"a": {"malloc_conf": "narenas:2\n"}}}},
            "tuning:jemalloc:units:a:malloc_conf",
        ),
        (
            {"jemalloc": {"compose": {"/x.yml": {"services": ["a" + INJECTED]}}}},
            "tuning:jemalloc:compose:/x.yml:services:0",
        ),
        (
            {"vm": {"min_free_kbytes": {"value": "auto", "largest_allocation": "25M\n"}}},
            "tuning:vm:min_free_kbytes",
        ),
        (
            {"vm": {"vfs_cache_pressure": "200\n"}},
            "tuning:vm:vfs_cache_pressure",
        ),
    ],
)
def test_hostile_pillar_is_refused_naming_the_key(modules, pillar, key):
    rendered = modules.state.show_sls("tuning", pillar={"tuning": pillar})
    assert isinstance(rendered, list), sorted(rendered)  # refused, nothing compiled
    message = "\n".join(rendered)
    assert key in message, message
    assert "injected-by-pillar" not in message.split("invalid setting")[0]
