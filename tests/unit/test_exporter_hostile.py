"""Hostile exporter options (issue 11 findings 6 and 10): every string an exporter's
options carry, key or value, is refused by its key path when it holds a character that
could end a line of a unit, env or YAML file (CR, LF, NUL, other control characters,
Unicode line separators, bidi controls); addresses with IPv6 scope ids and versions
spelt with non-ASCII digits are refused too. Before the schema, a CR in redis.user,
redis.addr or web.tls.cert reached the unit file, where systemd ends a line at it, and
scope ids passed as listen, stub_status and target addresses."""

from __future__ import annotations

import copy

import opskit_exporter_plan as plan
import pytest
from opskit_schema import SettingsError

BCRYPT = "$2y$10$" + "b" * 53
SHA = "a" * 64
WEB = {
    "basic_auth_users": {"prometheus": BCRYPT},
    "tls": {"cert": "/etc/ssl/w.pem", "key": "/etc/ssl/w.key", "client_ca": "/etc/ssl/ca.pem"},
}
COMMON = {
    "base_url": "https://mirror.example/releases",
    "proxy": "http://proxy.example:3128",
    "ca_bundle": "/etc/ssl/mirror.pem",
    "sha256": SHA,
    "listen_address": "127.0.0.1:9999",
    "flags": {"log.level": "info"},
    "env": {"EXTRA_VAR": "value"},
    "target_host": "host.example",
}
# One option set per exporter that holds every string option it takes.
FULL = {
    "node_exporter": {
        "version": "1.8.2",
        "textfile_directory": "/var/lib/node_exporter/textfile",
        "web": WEB,
    },
    "redis_exporter": {
        "version": "1.80.2",
        "redis": {
            "addr": "rediss://db.example:6380",
            "user": "exporter",
            "password": "pw",
            "tls": {"ca": "/etc/ssl/ca.pem", "cert": "/etc/ssl/c.pem", "key": "/etc/ssl/c.key"},
        },
        "web": WEB,
    },
    "postgres_exporter": {
        "version": "0.17.1",
        "postgres": {
            "host": "db.example",
            "port": 5432,
            "dbname": "postgres",
            "user": "exporter",
            "password": "pw",
            "sslmode": "verify-full",
            "sslrootcert": "/etc/ssl/ca.pem",
            "sslcert": "/etc/ssl/c.pem",
            "sslkey": "/etc/ssl/c.key",
        },
        "web": WEB,
    },
    "nginx_exporter": {
        "version": "1.4.0",
        "nginx": {
            "scrape_uri": "http://127.0.0.1:8080/stub_status",
            "stub_status": {"listen": "127.0.0.1:8080", "path": "/stub_status"},
        },
    },
    "dcgm_exporter": {
        "version": "4.1.1-4.0.4",
        "source": "package",
        "sha256": None,
        "base_url": None,
        "dcgm": {
            "dcgm_version": "4.1.1",
            "repo": {
                "manage": True,
                "base_url": "https://repo.example/cuda",
                "keyring_source": "https://repo.example/cuda/key.pub",
                "keyring_sha256": SHA,
            },
            "hostengine": "localhost:5555",
            "collectors": "/etc/dcgm-exporter/counters.csv",
            "packages": ["datacenter-gpu-manager-4-core"],
        },
    },
}
# Characters that end or hide a line somewhere: systemd splits unit lines at CR and LF,
# YAML and Python's splitlines() also at NEL/LS/PS; NUL ends a C string; a bidi
# override hides what a reviewer reads.
HOSTILE = ["\r", "\n", "\x00", "\x1b", "\x85", "\u2028", "\u2029", "\u202e", "\ufeff"]


def _options(name: str) -> dict:
    return {**COMMON, **copy.deepcopy(FULL[name])}


def _strings(data, path=()):
    """(path, is_key) of every string, key or value, in ``data``."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield (*path, key), True
            yield from _strings(value, (*path, key))
    elif isinstance(data, list):
        for i, item in enumerate(data):
            yield from _strings(item, (*path, i))
    elif isinstance(data, str):
        yield path, False


def _poisoned(options: dict, path: tuple, is_key: bool, char: str) -> dict:
    data = copy.deepcopy(options)
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if is_key:
        parent[f"{last[:2]}{char}{last[2:]}"] = parent.pop(last)
    else:
        value = parent[last]
        parent[last] = f"{value[:3]}{char}{value[3:]}"
    return data


CASES = [
    (name, path, is_key)
    for name in FULL
    for path, is_key in _strings(_options(name))
    # the option names themselves are the schema's: an unknown one is refused anyway
    if not (is_key and len(path) == 1)
]


def test_the_full_option_sets_are_valid():
    for name in FULL:
        plan.build(name, _options(name), "x86_64")
    assert len(CASES) > 60


@pytest.mark.parametrize(("name", "path", "is_key"), CASES, ids=str)
def test_a_line_breaking_character_anywhere_is_refused_by_key_path(name, path, is_key):
    top = path[0]
    for char in HOSTILE:
        options = _poisoned(_options(name), path, is_key, char)
        with pytest.raises(SettingsError) as err:
            plan.build(name, options, "x86_64")
        assert f"exporters:{name}:{top}" in str(err.value), (char, str(err.value))


@pytest.mark.parametrize(
    ("name", "options", "path"),
    [
        ("node_exporter", {"listen_address": "[::1%x;}]:9100"}, "listen_address"),
        ("node_exporter", {"listen_address": "[fe80::1%eth0]:9100"}, "listen_address"),
        ("node_exporter", {"target_host": "fe80::1%eth0"}, "target_host"),
        (
            "nginx_exporter",
            {"nginx": {"stub_status": {"allow": ["fe80::1%eth0"]}}},
            "nginx:stub_status:allow:0",
        ),
        (
            "nginx_exporter",
            {"nginx": {"stub_status": {"listen": "[fe80::1%eth0]:8080"}}},
            "nginx:stub_status:listen",
        ),
        ("redis_exporter", {"redis": {"addr": "redis://[fe80::1%25eth0]:6379"}}, "redis:addr"),
        ("postgres_exporter", {"postgres": {"user": "e", "host": "fe80::1%eth0"}}, "postgres:host"),
    ],
)
def test_ipv6_scope_ids_are_refused(name, options, path):
    options = {"version": FULL[name]["version"], **options}
    with pytest.raises(SettingsError) as err:
        plan.build(name, options, "x86_64")
    assert f"exporters:{name}:{path} = " in str(err.value)


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("node_exporter", "1.8.\u0662"),  # ARABIC-INDIC DIGIT TWO: \d matches it
        ("node_exporter", "1.8.2\n"),
        ("dcgm_exporter", "4.1.1-4.0.\u0664"),
    ],
)
def test_versions_are_ascii_release_numbers_to_the_end(name, version):
    with pytest.raises(SettingsError, match=f"exporters:{name}:version = "):
        plan.build(name, {"version": version}, "x86_64")
