"""Library paths, unit names, MALLOC_CONF checks, the drop-in and the compose override
opskit writes for jemalloc (pure functions)."""

from __future__ import annotations

import opskit_jemalloc as jm
import pytest
import yaml


@pytest.mark.parametrize(
    ("os_family", "osarch", "cpuarch", "path"),
    [
        ("Debian", "amd64", "x86_64", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"),
        ("Debian", "arm64", "aarch64", "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2"),
        ("Debian", "armhf", "armv7l", "/usr/lib/arm-linux-gnueabihf/libjemalloc.so.2"),
        ("Debian", "i386", "i686", "/usr/lib/i386-linux-gnu/libjemalloc.so.2"),
        ("Debian", "ppc64el", "ppc64le", "/usr/lib/powerpc64le-linux-gnu/libjemalloc.so.2"),
        ("Debian", "s390x", "s390x", "/usr/lib/s390x-linux-gnu/libjemalloc.so.2"),
        ("Debian", "x86_64", "x86_64", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"),
        ("RedHat", "x86_64", "x86_64", "/usr/lib64/libjemalloc.so.2"),
        ("RedHat", "aarch64", "aarch64", "/usr/lib64/libjemalloc.so.2"),
        ("RedHat", "i686", "i686", "/usr/lib/libjemalloc.so.2"),
    ],
)
def test_library_path_per_os_family_and_arch(os_family, osarch, cpuarch, path):
    assert jm.library_path(os_family, osarch, cpuarch) == path


def test_unknown_arch_and_family_are_refused_with_a_way_out():
    with pytest.raises(jm.JemallocValueError, match="pass `library` explicitly"):
        jm.library_path("Debian", "vax", "vax")
    with pytest.raises(jm.JemallocValueError, match="os_family 'Arch'"):
        jm.library_path("Arch", "x86_64", "x86_64")
    assert jm.package_name("Debian") == "libjemalloc2"
    assert jm.package_name("RedHat") == "jemalloc"


@pytest.mark.parametrize(
    ("name", "unit"),
    [("thumbnail", "thumbnail.service"), ("a@b.service", "a@b.service"), ("x.y", "x.y.service")],
)
def test_unit_names(name, unit):
    assert jm.canonical_unit(name) == unit


@pytest.mark.parametrize(
    "name",
    # A trailing newline passed the old `^...$` pattern under re.match (issue 11, item 10).
    ["", "a b", "../etc", "x.timer", "-x", None, "a.service\n", "a\n", "a\u2028", "a;b"],
)
def test_bad_unit_names_are_refused(name):
    with pytest.raises(jm.JemallocValueError):
        jm.canonical_unit(name)


def test_malloc_conf_validation():
    conf = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0"
    assert jm.validate_malloc_conf(conf) == (conf, [])
    assert jm.validate_malloc_conf("") == (None, [])
    _, warnings = jm.validate_malloc_conf("narenas:4,made_up:1")
    assert warnings == ["malloc_conf option 'made_up' is not one jemalloc 5.x documents"]
    for bad in (
        "narenas: 4",
        "narenas:4,",
        "prof_prefix:%h",
        "x:$HOME",
        'a:"b"',
        "narenas",
        "narenas:2\n",  # passed the old `$`-anchored pattern (issue 11, item 10)
        "narenas:2\nMALLOC_CONF=x",
    ):
        with pytest.raises(jm.JemallocValueError, match="not a key:value pair"):
            jm.validate_malloc_conf(bad)


def test_dropin_round_trip():
    library = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
    text = jm.render_dropin("svc.service", library, "background_thread:true")
    assert text.startswith(jm.MARKER)
    assert "[Service]\n" in text
    assert jm.parse_dropin(text) == {
        "LD_PRELOAD": library,
        "MALLOC_CONF": "background_thread:true",
    }
    assert jm.parse_dropin(jm.render_dropin("svc.service", library, None)) == {
        "LD_PRELOAD": library
    }
    assert jm.parse_dropin(None) is None


def test_systemd_environment_property():
    value = 'LD_PRELOAD=/usr/lib/x/libjemalloc.so.2 "GREETING=hello world"'
    assert jm.parse_environment_property(value) == {
        "LD_PRELOAD": "/usr/lib/x/libjemalloc.so.2",
        "GREETING": "hello world",
    }


def test_maps_parsing():
    maps = """\
55d0c0a00000-55d0c0a28000 r--p 00000000 00:1f 1234   /usr/bin/python3.11
7f1e4c000000-7f1e4c021000 rw-p 00000000 00:00 0
7f1e4d200000-7f1e4d23a000 r--p 00000000 00:1f 5678   /usr/lib/x86_64-linux-gnu/libjemalloc.so.2
7f1e4d23a000-7f1e4d2f0000 r-xp 0003a000 00:1f 5678   /usr/lib/x86_64-linux-gnu/libjemalloc.so.2
7f1e4d400000-7f1e4d428000 r--p 00000000 00:1f 91011  /usr/lib/x86_64-linux-gnu/libc.so.6
"""
    assert jm.mapped_jemalloc(maps) == ["/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"]
    assert jm.mapped_jemalloc(maps.replace("libjemalloc", "libjsonc")) == []


def test_compose_override_shape():
    override = jm.compose_override(
        ["thumbnail", "worker"], "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "narenas:2"
    )
    service = override["services"]["thumbnail"]
    assert service["environment"] == {
        "LD_PRELOAD": jm.CONTAINER_LIBRARY,
        "MALLOC_CONF": "narenas:2",
    }
    assert service["volumes"] == [
        {
            "type": "bind",
            "source": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
            "target": jm.CONTAINER_LIBRARY,
            "read_only": True,
        }
    ]
    assert yaml.safe_load(yaml.safe_dump(override)) == override
    with pytest.raises(jm.JemallocValueError, match="compose service name"):
        jm.compose_override(["bad name"], "/lib.so", None)
    with pytest.raises(jm.JemallocValueError, match="non-empty list"):
        jm.compose_override([], "/lib.so", None)
