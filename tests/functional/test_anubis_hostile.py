"""Issue 11 for the `anubis` formula: hostile CMDB values are refused while the formula
renders (Salt's real Jinja renderer and state compiler, ``state.show_sls``), with a
message naming the key path, or they reach the host only as data.

Each case here compiled extra states, put a directive into an nginx site or slipped
through a validator before the formula moved onto the shared schema
(``_utils/opskit_settings_anubis.py``).
"""

from __future__ import annotations

import copy

import pytest

from tests.functional.test_anubis_formula import _arg
from tests.functional.test_anubis_formula import _instance
from tests.functional.test_anubis_formula import _pillar
from tests.functional.test_anubis_formula import _render

INJECTED = "x:\n  cmd.run:\n    - name: touch /tmp/opskit-pwned"


def _base():
    return copy.deepcopy(_pillar({"a": _instance("127.0.0.1:8931", "0.0.0.0:9231")}))


def _set(pillar, path, value):
    node = pillar["anubis"]
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return pillar


def _refusal(modules, pillar) -> str:
    rendered = _render(modules, pillar)
    assert isinstance(rendered, list), (
        f"rendered states instead of refusing: {sorted(rendered)}"
        if isinstance(rendered, dict)
        else rendered
    )
    return "\n".join(rendered)


HOSTILE = {
    # item 3: health_timeout reached the SLS raw and compiled new states
    "health_timeout with a YAML state": (("health_timeout",), "30\n" + INJECTED),
    "health_timeout as text": (("health_timeout",), "soon"),
    "health_timeout of 0": (("health_timeout",), 0),
    # item 7: nginx directives through the site's certificate path and the upstream
    "certificate with a directive": (
        ("instances", "a", "site", "tls", "certificate"),
        "/etc/ssl/x.pem; include /etc/passwd",
    ),
    "certificate with a line break": (
        ("instances", "a", "site", "tls", "certificate"),
        "/etc/ssl/x.pem;\n    location /x { return 200; }",
    ),
    "key with a space": (("instances", "a", "site", "tls", "key"), "/etc/ssl/x.key off"),
    "upstream with ;internal": (("instances", "a", "upstream"), "http://x/;internal"),
    "upstream with a variable": (("instances", "a", "upstream"), "http://$http_header"),
    "upstream with a brace": (("instances", "a", "upstream"), "http://x/}"),
    "upstream with a quote": (("instances", "a", "upstream"), 'http://x/"'),
    "upstream with credentials": (("instances", "a", "upstream"), "http://u:p@x/"),
    "server_name with a directive": (
        ("instances", "a", "site", "server_name"),
        ["a.example.org; return 200"],
    ),
    "client_max_body_size with a directive": (
        ("instances", "a", "site", "client_max_body_size"),
        "1m; allow all",
    ),
    # item 10: scope ids, and names that `$` under re.match let through with a newline
    "bind with a scope id": (("instances", "a", "bind"), "[::1%x;}]:8931"),
    "metrics_bind with a scope id": (("instances", "a", "metrics_bind"), "[fe80::1%eth0]:9231"),
    "env value with a line break": (
        ("instances", "a", "env"),
        {"WEBMASTER_EMAIL": "a@example.org\nTARGET=http://evil"},
    ),
    "env value with CR": (("instances", "a", "env"), {"WEBMASTER_EMAIL": "a\rTARGET=x"}),
    "cookie_domain with a newline": (("instances", "a", "cookie_domain"), "example.org\n"),
    "custom_real_ip_header with a newline": (
        ("instances", "a", "custom_real_ip_header"),
        "X-Real-IP\n",
    ),
    "config_dir is /etc": (("config_dir",), "/etc"),
    "key_dir with ..": (("key_dir",), "/etc/anubis/../../root"),
    "release version with a newline": (("release", "version"), "1.27.0\n"),
    "base_url with a quote": (("release", "base_url"), "https://x/'; id; '"),
    # a value where the policy has a mapping once crashed the check (fuzz tier)
    "policy store as text": (("instances", "a", "policy"), {"store": "x;y"}),
    "policy rule name with a line break": (
        ("instances", "a", "policy"),
        {"bots": [{"name": "x\nINJECT", "user_agent_regex": "x", "action": "DENY"}]},
    ),
}


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_hostile_values_are_refused_with_the_key_path(modules, case):
    path, value = HOSTILE[case]
    error = _refusal(modules, _set(_base(), path, value))
    key = "anubis:" + ":".join(path)
    assert key in error, error
    assert "opskit-functional: anubis: " in error, error
    assert "nothing was applied" in error, error


@pytest.mark.parametrize(
    ("where", "name"),
    [("instances", "web\n"), ("instances", "a;b"), ("env", "WEBMASTER_EMAIL\n"), ("env", "A B")],
)
def test_names_with_a_trailing_newline_or_metacharacters_are_refused(modules, where, name):
    """Item 10: `^...$` under re.match accepted 'web\\n' and 'WEBMASTER_EMAIL\\n'."""
    pillar = _base()
    if where == "instances":
        instances = pillar["anubis"]["instances"]
        instances[name] = instances.pop("a")
        expected = "anubis:instances:" + repr(name)
    else:
        pillar["anubis"]["instances"]["a"]["env"] = {name: "x"}
        expected = "anubis:instances:a:env:" + repr(name)
    error = _refusal(modules, pillar)
    assert expected in error, error


def test_health_timeout_reaches_the_state_as_a_number(modules):
    pillar = _set(_base(), ("health_timeout",), "45")
    rendered = _render(modules, pillar)
    assert isinstance(rendered, dict), rendered
    assert _arg(rendered["anubis-service-healthz-a-anubis-healthy"], "timeout") == 45


def test_hostile_values_that_are_valid_data_stay_data(modules):
    """Values that are legal (quotes, `$`, `;` in an env value; a policy regex with
    braces) compile to the same states as a plain pillar: they never become SLS."""
    plain = _render(modules, _base())
    pillar = _base()
    pillar["anubis"]["instances"]["a"]["env"] = {"WEBMASTER_EMAIL": 'it\'s "$(id)"; `x` ${IFS}'}
    pillar["anubis"]["instances"]["a"]["policy"] = {
        "bots": [{"name": "q", "user_agent_regex": "a{2}|[{}]", "action": "DENY"}]
    }
    hostile = _render(modules, copy.deepcopy(pillar))
    assert isinstance(hostile, dict), hostile
    assert sorted(hostile) == sorted(plain)
