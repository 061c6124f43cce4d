"""The `anubis` formula rendered by Salt's real state compiler (state.show_sls), its
templates rendered by Salt's file client, and the anubis state module run through
state.single -- on this host, touching nothing outside temporary directories.

Render tests cover both modes, several instances, the policy file, the env file, and
every refusal (collisions, bad pillar) with the message a person would read.
"""

from __future__ import annotations

import copy
import os
import re
import socket
import stat

import opskit_formats
import opskit_settings_anubis as settings_schema
import pytest
import salt.output
import yaml

from tests.conftest import REPO
from tests.functional.sls import state_args

EXAMPLE = yaml.safe_load((REPO / "salt" / "anubis" / "pillar.example").read_text())
KEY = "5f" * 32  # a test key: it must never show up in rendered states or returns
TLS = {"certificate": "/etc/ssl/certs/site.pem", "key": "/etc/ssl/private/site.key"}


def _server_name(bind, mode):
    host, _, port = bind.rpartition(":")
    return f"{mode}-{host.replace('.', '-') or 'any'}-{port}.example.org"


def _instance(bind, metrics, mode="sidecar", **extra):
    inst = {
        "mode": mode,
        "bind": bind,
        "metrics_bind": metrics,
        "upstream": "http://127.0.0.1:8080",
        "site": {"server_name": [_server_name(bind, mode)], "tls": TLS},
    }
    inst.update(extra)
    return inst


def _pillar(instances, check_listening_ports=False, **anubis):
    return {
        "anubis": {
            "release": {"sha256": "ab" * 32, "base_url": "https://mirror.example.org/anubis"},
            "check_listening_ports": check_listening_ports,
            "instances": instances,
            **anubis,
        }
    }


def _render(modules, pillar, sls="anubis"):
    return modules.state.show_sls(sls, pillar=pillar)


def _render_error(modules, pillar) -> str:
    rendered = _render(modules, pillar)
    assert isinstance(rendered, list), f"expected a render error, got states: {list(rendered)}"
    return "\n".join(rendered)


def _arg(state: dict, name: str):
    for function_args in state.values():
        if isinstance(function_args, list):
            for item in function_args:
                if isinstance(item, dict) and name in item:
                    return item[name]
    raise KeyError(name)


# Both modes, several instances -----------------------------------------------------------
def test_pillar_example_renders_both_modes(modules):
    rendered = _render(modules, EXAMPLE)
    assert isinstance(rendered, dict), rendered
    gitlab_env = _arg(rendered["anubis-config-env-gitlab-anubis-env_managed"], "variables")
    legacy_env = _arg(rendered["anubis-config-env-legacy-anubis-env_managed"], "variables")
    # sidecar: TARGET is a single space (subrequest mode; the env file quotes it)
    assert gitlab_env["TARGET"] == " "
    assert gitlab_env["CUSTOM_REAL_IP_HEADER"] == "X-Real-IP"
    # proxy: Anubis forwards to the app and keeps RFC 1918 clients in X-Forwarded-For
    assert legacy_env["TARGET"] == "http://10.0.0.20:8080"
    assert legacy_env["XFF_STRIP_PRIVATE"] == "false"
    # pillar env goes apart (its values are hidden in changes)
    extra = _arg(rendered["anubis-config-env-gitlab-anubis-env_managed"], "extra")
    assert extra == {"WEBMASTER_EMAIL": "webmaster@example.org"}
    sidecar_site = rendered["nginx-site-anubis-gitlab-file-managed"]
    proxy_site = rendered["nginx-site-anubis-legacy-file-managed"]
    assert _arg(sidecar_site, "source") == "salt://anubis/files/site-sidecar.conf.jinja"
    assert _arg(proxy_site, "source") == "salt://anubis/files/site-proxy.conf.jinja"
    # every site is tested with nginx -t before it replaces the live file
    assert _arg(sidecar_site, "check_cmd") == "/usr/local/sbin/opskit-nginx-test site anubis-gitlab"
    # a site goes live only after its instance is healthy
    assert {"anubis": "anubis-service-healthz-gitlab-anubis-healthy"} in _arg(
        sidecar_site, "require"
    )


def test_several_instances_get_their_own_unit_files_store_and_ports(modules):
    instances = {
        "alpha": _instance("127.0.0.1:8931", "0.0.0.0:9231"),
        "beta": _instance("127.0.0.1:8932", "0.0.0.0:9232", mode="proxy"),
        "gamma": _instance("127.0.0.2:8931", "127.0.0.1:9233"),
    }
    rendered = _render(modules, _pillar(instances))
    assert isinstance(rendered, dict), rendered
    for name in instances:
        service = rendered[f"anubis-service-running-{name}-service-running"]
        assert _arg(service, "name") == f"anubis@{name}.service"
        assert _arg(rendered[f"anubis-config-env-{name}-anubis-env_managed"], "name") == (
            f"/etc/anubis/{name}.env"
        )
        assert _arg(rendered[f"anubis-config-key-{name}-anubis-key_managed"], "name") == (
            f"/etc/anubis/keys/{name}.key"
        )
        policy = _arg(rendered[f"anubis-config-policy-{name}-file-serialize"], "dataset")
        assert policy["store"] == {
            "backend": "bbolt",
            "parameters": {"path": f"/var/lib/anubis/{name}/anubis.bdb"},
        }
    registry = _arg(rendered["anubis-config-registry-file-serialize"], "dataset")
    assert [t["targets"] for t in registry["targets"]] == [
        ["opskit-functional:9231"],
        ["opskit-functional:9232"],
        ["127.0.0.1:9233"],  # bound to one address: that address is the target
    ]
    # The targets reach the mine through opskit.targets, published by common.mine.
    mine = rendered["common-mine-targets-opskit-targets_published"]
    assert _arg(mine, "name") == "opskit_targets"


def test_policy_file_is_valid_yaml_with_upstreams_keys(modules, loaders):
    rendered = _render(modules, EXAMPLE)
    dataset = _arg(rendered["anubis-config-policy-gitlab-file-serialize"], "dataset")
    text = loaders.serializers["yaml.serialize"](dataset)  # what file.serialize writes
    policy = yaml.safe_load(text)
    assert [rule["name"] for rule in policy["bots"]] == [
        "deny-known-scrapers",
        "campus",
        "api",
        "generic-browser",
    ]
    assert policy["status_codes"] == {"CHALLENGE": 200, "DENY": 403}
    assert policy["store"]["parameters"]["path"] == "/var/lib/anubis/gitlab/anubis.bdb"


def test_dropin_is_rendered_with_the_systemd_rule(modules):
    rendered = _render(modules, EXAMPLE)
    dropin = _arg(rendered["anubis-config-dropin-gitlab-file-managed"], "contents")
    lines = [line for line in dropin.splitlines() if line and not line.startswith("#")]
    assert lines == [
        "[Service]",
        "LoadCredential=ed25519-private-key:/etc/anubis/keys/gitlab.key",
        'Environment="ED25519_PRIVATE_KEY_HEX_FILE=%d/ed25519-private-key"',
    ]


def _location(config: str, path: str) -> str:
    match = re.search(r"location " + re.escape(path) + r" \{(.*?)\n    \}", config, re.DOTALL)
    assert match, f"no location {path} in:\n{config}"
    return match.group(1)


def test_sidecar_site_template(modules, tmp_path):
    rendered = _render(modules, EXAMPLE)
    context = _arg(rendered["nginx-site-anubis-gitlab-file-managed"], "context")
    out = tmp_path / "site.conf"
    modules.cp.get_template("salt://anubis/files/site-sidecar.conf.jinja", str(out), **context)
    config = out.read_text()
    anubis = _location(config, "/.within.website/")
    assert "proxy_pass http://127.0.0.1:8923;" in anubis
    assert "proxy_pass_request_body off;" in anubis
    assert "client_max_body_size 0;" in anubis
    assert "proxy_set_header X-Real-IP $remote_addr;" in anubis
    assert "proxy_set_header X-Original-URI $request_uri;" in anubis
    redirect = _location(config, "@redirectToAnubis")
    assert "return 307 /.within.website/?redir=$scheme://$host$request_uri;" in redirect
    app = _location(config, "/")
    assert "auth_request /.within.website/x/cmd/anubis/api/check;" in app
    assert "error_page 401 = @redirectToAnubis;" in app
    assert "proxy_pass http://127.0.0.1:8080;" in app
    assert "proxy_set_header X-Real-IP $remote_addr;" in app
    assert "ssl_certificate /etc/ssl/certs/gitlab.example.org.pem;" in config
    assert "return 301 https://$host$request_uri;" in config  # http_redirect_port 80


# Issue 12 item 4: GitLab's proxy settings for `location /` (profile gitlab).
GITLAB_LINES = (
    "client_max_body_size 0;",
    "proxy_http_version 1.1;",
    "proxy_set_header Upgrade $http_upgrade;",
    "proxy_set_header Connection $opskit_connection_upgrade;",
    "proxy_set_header X-Forwarded-Proto $scheme;",
    "proxy_set_header X-Forwarded-Ssl on;",
    "proxy_connect_timeout 600s;",
    "proxy_send_timeout 600s;",
    "proxy_read_timeout 600s;",
    "proxy_buffering off;",
    "proxy_request_buffering off;",
    "proxy_redirect off;",
)


def _sidecar_config(modules, tmp_path, pillar, name):
    rendered = _render(modules, pillar)
    assert isinstance(rendered, dict), rendered
    context = _arg(rendered[f"nginx-site-anubis-{name}-file-managed"], "context")
    out = tmp_path / f"{name}.conf"
    modules.cp.get_template("salt://anubis/files/site-sidecar.conf.jinja", str(out), **context)
    return out.read_text()


def test_gitlab_profile_carries_gitlabs_proxy_settings(modules, tmp_path):
    app = _location(_sidecar_config(modules, tmp_path, EXAMPLE, "gitlab"), "/")
    for line in GITLAB_LINES:
        assert line in app, line
    # and the Connection map those lines use is in the nginx formula's nginx.conf
    conf = tmp_path / "nginx.conf"
    modules.cp.get_template(
        "salt://nginx/files/nginx.conf.jinja",
        str(conf),
        user="www-data",
        worker_processes="auto",
        worker_connections=768,
        server_tokens=False,
        include_sites_enabled=False,
        sites_dir="/etc/nginx/opskit-sites",
    )
    mapping = re.search(
        r"map \$http_upgrade \$opskit_connection_upgrade \{(.*?)\}", conf.read_text(), re.DOTALL
    )
    assert mapping, conf.read_text()
    assert mapping.group(1).split() == ["default", "upgrade;", "''", "close;"]


def test_default_profile_keeps_buffering_and_a_1m_body_limit(modules, tmp_path):
    pillar = _pillar({"a": _instance("127.0.0.1:8931", "0.0.0.0:9231")})
    app = _location(_sidecar_config(modules, tmp_path, pillar, "a"), "/")
    assert "client_max_body_size 1m;" in app
    assert not [line for line in GITLAB_LINES[1:] if line in app and "Proto" not in line]


def test_gitlab_profile_needs_sidecar_mode(modules):
    instance = _instance("127.0.0.1:8931", "0.0.0.0:9231", mode="proxy")
    instance["site"]["profile"] = "gitlab"
    error = _render_error(modules, _pillar({"a": instance}))
    assert "anubis:instances:a:site:profile = 'gitlab': needs sidecar mode" in error


# Issue 12 item 1: REDIRECT_DOMAINS carries the port of sites not on 443 -------------------
def _env(modules, pillar, name):
    rendered = _render(modules, pillar)
    assert isinstance(rendered, dict), rendered
    return _arg(rendered[f"anubis-config-env-{name}-anubis-env_managed"], "variables")


def test_redirect_domains_carry_the_port_when_not_443(modules):
    on_443 = _instance("127.0.0.1:8931", "0.0.0.0:9231")
    on_8443 = _instance("127.0.0.1:8932", "0.0.0.0:9232", mode="proxy")
    on_8443["site"].update(listen=8443, server_name=["a.example.org", "b.example.org"])
    pillar = _pillar({"one": on_443, "two": on_8443})
    assert _env(modules, pillar, "one")["REDIRECT_DOMAINS"] == "sidecar-127-0-0-1-8931.example.org"
    assert _env(modules, pillar, "two")["REDIRECT_DOMAINS"] == (
        "a.example.org:8443,b.example.org:8443"
    )


def test_explicit_redirect_domains_must_cover_the_site(modules):
    instance = _instance("127.0.0.1:8931", "0.0.0.0:9231", redirect_domains=["a.example.org"])
    instance["site"].update(listen=8443, server_name=["a.example.org"])
    error = _render_error(modules, _pillar({"a": instance}))
    assert (
        "anubis:instances:a:redirect_domains = ['a.example.org']: does not allow a.example.org:8443"
        in error
    )
    assert "Redirect domain not allowed" in error
    instance["redirect_domains"] = ["*.example.org:8443"]
    error = _render_error(modules, _pillar({"a": instance}))
    # Go's url.Parse refuses a glob with a port: Anubis would not start
    assert "first path segment in URL cannot contain colon" in error
    instance["redirect_domains"] = []  # unset: any domain
    assert "REDIRECT_DOMAINS" not in _env(modules, _pillar({"a": instance}), "a")


def test_proxy_site_template(modules, tmp_path):
    rendered = _render(modules, EXAMPLE)
    context = _arg(rendered["nginx-site-anubis-legacy-file-managed"], "context")
    out = tmp_path / "site.conf"
    modules.cp.get_template("salt://anubis/files/site-proxy.conf.jinja", str(out), **context)
    app = _location(out.read_text(), "/")
    assert "proxy_pass http://127.0.0.1:8924;" in app  # to Anubis, which forwards
    assert "proxy_set_header X-Real-IP $remote_addr;" in app
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in app
    assert "auth_request" not in out.read_text()


def test_empty_pillar_is_harmless(modules):
    for sls in ("anubis", "anubis.clean"):
        rendered = _render(modules, {}, sls)
        assert isinstance(rendered, dict), rendered
    rendered = _render(modules, {})
    assert list(rendered) == ["anubis-instances-none-test-succeed_without_changes"]


@pytest.mark.parametrize("instances", [{}, {"app": _instance("127.0.0.1:8931", "0.0.0.0:9231")}])
def test_the_deprecated_mine_name_is_a_warning_in_the_state_output(modules, instances):
    """`anubis:mine_name` named the formula's own mine entry (gone: opskit.targets is the
    one mechanism). The key is ignored, and a state that changes nothing carries the
    warning to `state.apply` output, with or without instances; the value never shows."""
    rendered = _render(modules, _pillar(instances, mine_name="legacy_targets\nmaster: x"))
    notice = "anubis-deprecated-keys-test-configurable_test_state"
    module, arguments = state_args(rendered, notice)
    assert module == "test"
    assert "configurable_test_state" in rendered[notice]["test"]
    assert arguments["changes"] is False
    assert arguments["result"] is True
    assert arguments["warnings"] == [
        f"anubis:mine_name is deprecated and ignored: {settings_schema.MINE_NAME_DEPRECATED}"
    ]
    assert "legacy_targets" not in str(rendered)
    assert notice not in _render(modules, _pillar(instances))


def test_the_deprecation_warning_is_printed_by_the_highstate_outputter(modules, minion_opts):
    """Run the warning state itself (state.sls_id) and print its return the way
    `salt '*' state.apply` does (Salt's highstate outputter)."""
    ret = modules.state.sls_id(
        "anubis-deprecated-keys-test-configurable_test_state",
        "anubis",
        pillar=_pillar({}, mine_name="x"),
    )
    assert ret.result is True
    assert ret.changes == {}
    printed = salt.output.out_format(
        {"minion": ret.raw}, "highstate", {**minion_opts, "color": False}
    )
    assert "Warnings: anubis:mine_name is deprecated and ignored" in printed
    assert re.search(r"^Warnings: +1$", printed, re.MULTILINE), printed


def test_signing_key_from_pillar_is_never_rendered(modules):
    pillar = copy.deepcopy(EXAMPLE)
    pillar["anubis"]["instances"]["gitlab"]["ed25519_private_key_hex"] = KEY
    rendered = _render(modules, pillar)
    assert isinstance(rendered, dict), rendered
    assert KEY not in repr(rendered)
    key_state = rendered["anubis-config-key-gitlab-anubis-key_managed"]
    assert _arg(key_state, "pillar_path") == "anubis:instances:gitlab:ed25519_private_key_hex"


# Refusals ----------------------------------------------------------------------------
COLLISIONS = {
    "between instances": (
        {
            "a": _instance("127.0.0.1:8931", "0.0.0.0:9231"),
            "b": _instance("0.0.0.0:8931", "0.0.0.0:9232"),
        },
        {},
        "anubis:instances:a:bind = '127.0.0.1:8931': collides with anubis:instances:b:bind "
        "(0.0.0.0:8931)",
    ),
    "metrics and bind of one instance": (
        {"a": _instance("127.0.0.1:9231", "0.0.0.0:9231")},
        {},
        "anubis:instances:a:bind = '127.0.0.1:9231': collides with "
        "anubis:instances:a:metrics_bind (0.0.0.0:9231)",
    ),
    "upstream's metrics default, Prometheus": (
        {"a": _instance("127.0.0.1:8931", ":9090")},
        {},
        "anubis:instances:a:metrics_bind = ':9090': collides with port 9090 reserved for "
        "Prometheus",
    ),
    "an nginx site port": (
        {"a": _instance("127.0.0.1:443", "0.0.0.0:9231")},
        {},
        "anubis:instances:a:bind = '127.0.0.1:443': collides with the nginx site port "
        "anubis:instances:a:site:listen (443)",
    ),
    "an exporter's listen address in pillar": (
        {"a": _instance("127.0.0.1:8931", "0.0.0.0:9555")},
        {"exporters": {"node_exporter": {"listen_address": "10.0.0.5:9555"}}},
        "collides with pillar exporters:node_exporter:listen_address (10.0.0.5:9555)",
    ),
}


@pytest.mark.parametrize("case", COLLISIONS, ids=list(COLLISIONS))
def test_port_collisions_are_refused(modules, case):
    instances, extra_pillar, message = COLLISIONS[case]
    error = _render_error(modules, {**_pillar(instances), **extra_pillar})
    assert "opskit-functional: anubis: 1 invalid setting, nothing was applied" in error
    assert message in error


def test_port_held_by_another_process_is_refused(modules):
    """A socket listening on this host right now (opened by this test) is in the way."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        pillar = _pillar(
            {"a": _instance(f"127.0.0.1:{port}", "0.0.0.0:9231")}, check_listening_ports=True
        )
        error = _render_error(modules, pillar)
    assert (
        f"anubis:instances:a:bind = '127.0.0.1:{port}': is already in use on this host by" in error
    )
    assert f"pid {os.getpid()}" in error


BAD = {
    "bind missing": (
        {
            "a": {
                k: v for k, v in _instance("127.0.0.1:8931", "0.0.0.0:9231").items() if k != "bind"
            }
        },
        "anubis:instances:a:bind: is required: a listen address HOST:PORT",
    ),
    "bind not host:port": (
        {"a": _instance("localhost:8931", "0.0.0.0:9231")},
        "anubis:instances:a:bind = 'localhost:8931': 'localhost' is not an IP address",
    ),
    "unknown mode": (
        {"a": _instance("127.0.0.1:8931", "0.0.0.0:9231", mode="inline")},
        "anubis:instances:a:mode = 'inline': must be one of sidecar, proxy",
    ),
    "upstream not a URL": (
        {"a": _instance("127.0.0.1:8931", "0.0.0.0:9231", upstream="127.0.0.1:8080")},
        "anubis:instances:a:upstream = '127.0.0.1:8080': must be a URL (http, https)",
    ),
    "instance name": (
        {"Bad Name": _instance("127.0.0.1:8931", "0.0.0.0:9231")},
        "anubis:instances:'Bad Name' = 'Bad Name': must be an instance name: 1-32 of a-z 0-9",
    ),
    "bbolt outside the state directory": (
        {
            "a": _instance(
                "127.0.0.1:8931",
                "0.0.0.0:9231",
                policy={"store": {"backend": "bbolt", "parameters": {"path": "/tmp/a.bdb"}}},
            )
        },
        "anubis:instances:a:policy:store:parameters:path = '/tmp/a.bdb': must be a file "
        "directly in the instance's StateDirectory /var/lib/anubis/a/",
    ),
    "sidecar with a 2xx denial": (
        {
            "a": _instance(
                "127.0.0.1:8931",
                "0.0.0.0:9231",
                policy={"status_codes": {"CHALLENGE": 200, "DENY": 200}},
            )
        },
        "anubis:instances:a:policy:status_codes:DENY = 200: must be 403 in sidecar mode",
    ),
    "store with credentials": (
        {"a": _instance("127.0.0.1:8931", "0.0.0.0:9231", policy={"store": {"backend": "valkey"}})},
        "anubis:instances:a:policy:store:backend = 'valkey': must be one of bbolt, memory",
    ),
    "bad rule": (
        {
            "a": _instance(
                "127.0.0.1:8931",
                "0.0.0.0:9231",
                policy={"bots": [{"name": "x", "user_agent_regex": "(", "action": "DENY"}]},
            )
        },
        "anubis:instances:a:policy:bots:0:user_agent_regex = '(': error parsing regexp: "
        "missing closing ): `(`",
    ),
    "rule without a matcher": (
        {
            "a": _instance(
                "127.0.0.1:8931",
                "0.0.0.0:9231",
                policy={"bots": [{"name": "x", "action": "ALLOW"}]},
            )
        },
        "anubis:instances:a:policy:bots:0: config.Bot: must set one of user_agent_regex, "
        "path_regex",
    ),
    "policy metrics block": (
        {"a": _instance("127.0.0.1:8931", "0.0.0.0:9231", policy={"metrics": {"bind": ":9999"}})},
        "anubis:instances:a:policy:metrics = {'bind': ':9999'}: set the instance's metrics_bind "
        "instead",
    ),
    "secret in env": (
        {"a": _instance("127.0.0.1:8931", "0.0.0.0:9231", env={"ED25519_PRIVATE_KEY_HEX": KEY})},
        "anubis:instances:a:env:ED25519_PRIVATE_KEY_HEX: secrets do not go into env files",
    ),
    "formula's own variable in env": (
        {"a": _instance("127.0.0.1:8931", "0.0.0.0:9231", env={"TARGET": "http://x"})},
        "anubis:instances:a:env:TARGET: is set by the formula; use the instance setting",
    ),
    "site without TLS": (
        {"a": {**_instance("127.0.0.1:8931", "0.0.0.0:9231"), "site": {"server_name": ["a.org"]}}},
        "anubis:instances:a:site:tls:certificate: is required: an absolute path",
    ),
    "same site twice": (
        {
            "a": _instance("127.0.0.1:8931", "0.0.0.0:9231"),
            "b": {
                **_instance("127.0.0.1:8932", "0.0.0.0:9232"),
                "site": {"server_name": [_server_name("127.0.0.1:8931", "sidecar")], "tls": TLS},
            },
        },
        "anubis:instances:b:site:server_name:0 = 'sidecar-127-0-0-1-8931.example.org': port "
        "443 of this name is already served by instance a",
    ),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_pillar_is_refused_with_a_clear_message(modules, case):
    instances, message = BAD[case]
    error = _render_error(modules, _pillar(instances))
    assert "opskit-functional: anubis: " in error
    assert "nothing was applied" in error
    assert message in error
    assert KEY not in error


def test_bad_key_is_refused_without_showing_it(modules):
    short = KEY[:-2]
    instances = {"a": _instance("127.0.0.1:8931", "0.0.0.0:9231", ed25519_private_key_hex=short)}
    error = _render_error(modules, _pillar(instances))
    assert (
        "anubis:instances:a:ed25519_private_key_hex = <secret, 62 characters>: must be 64 hex "
        "characters" in error
    )
    assert short not in error


def test_release_must_be_verifiable(modules):
    pillar = _pillar({"a": _instance("127.0.0.1:8931", "0.0.0.0:9231")})
    del pillar["anubis"]["release"]["sha256"]
    error = _render_error(modules, pillar)
    assert "anubis:release: needs sha256" in error
    assert "upstream publishes no checksum file" in error


def test_every_problem_is_reported_at_once(modules):
    instances = {
        "a": _instance("127.0.0.1:8931", "[::1%lo]:9231", mode="inline", upstream="nope"),
    }
    error = _render_error(modules, _pillar(instances))
    assert "anubis: 3 invalid settings" in error
    for part in ("mode", "upstream", "metrics_bind"):
        assert f"anubis:instances:a:{part} = " in error
    # rules across keys (collisions, policy) are checked once every value is valid
    instances = {
        "a": _instance("127.0.0.1:8931", ":9090", policy={"bots": [{"name": "x", "action": "X"}]})
    }
    error = _render_error(modules, _pillar(instances))
    assert "anubis: 3 invalid settings" in error
    for part in ("metrics_bind = ':9090'", "policy:bots:0:action", "policy:bots:0: config.Bot"):
        assert f"anubis:instances:a:{part}" in error


# The anubis state module, run through Salt's state machinery -------------------------
needs_root = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="SKIPPED: key files are owned by root (chown 0:0); run the functional tier as root",
)


def _single(modules, fun, **kwargs):
    ret = modules.state.single(fun, **kwargs)
    raw = getattr(ret, "raw", ret)  # salt-factories wraps state returns in StateResult
    assert isinstance(raw, dict), raw
    (result,) = raw.values()
    return result


@needs_root
def test_key_is_generated_once_with_mode_0400(modules, tmp_path, testmode):
    path = tmp_path / "keys" / "a.key"
    first = _single(modules, "anubis.key_managed", name=str(path), test=testmode)
    if testmode:
        assert first["result"] is None
        assert not path.exists()
        return
    assert first["result"] is True, first
    content = path.read_bytes()
    assert re.fullmatch(rb"[0-9a-f]{64}\n", content)
    assert stat.S_IMODE(path.stat().st_mode) == 0o400
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert (path.stat().st_uid, path.stat().st_gid) == (0, 0)
    assert first["changes"]["key"]["new"].startswith("ed25519:")
    assert content.strip().decode() not in repr(first)

    second = _single(modules, "anubis.key_managed", name=str(path))
    assert second["result"] is True
    assert second["changes"] == {}
    assert path.read_bytes() == content


@needs_root
def test_key_from_pillar_replaces_a_generated_one(modules, tmp_path):
    path = tmp_path / "a.key"
    _single(modules, "anubis.key_managed", name=str(path))
    pillar = {"anubis": {"instances": {"a": {"ed25519_private_key_hex": KEY}}}}
    pillar_path = "anubis:instances:a:ed25519_private_key_hex"

    would = _single(
        modules,
        "anubis.key_managed",
        name=str(path),
        pillar_path=pillar_path,
        pillar=pillar,
        test=True,
    )
    assert would["result"] is None
    assert KEY not in path.read_text()

    ret = _single(
        modules, "anubis.key_managed", name=str(path), pillar_path=pillar_path, pillar=pillar
    )
    assert ret["result"] is True, ret
    assert path.read_text() == KEY + "\n"
    assert "replaced with the key from pillar" in ret["comment"]
    assert KEY not in repr(ret)
    again = _single(
        modules, "anubis.key_managed", name=str(path), pillar_path=pillar_path, pillar=pillar
    )
    assert again["changes"] == {}


@needs_root
def test_key_mode_drift_is_repaired_without_touching_the_key(modules, tmp_path):
    path = tmp_path / "a.key"
    _single(modules, "anubis.key_managed", name=str(path))
    content = path.read_bytes()
    path.chmod(0o644)
    ret = _single(modules, "anubis.key_managed", name=str(path))
    assert ret["result"] is True
    assert ret["changes"] == {"mode": {"old": "0644", "new": "0400"}}
    assert path.read_bytes() == content
    assert stat.S_IMODE(path.stat().st_mode) == 0o400


def test_a_malformed_key_file_is_not_replaced(modules, tmp_path):
    path = tmp_path / "a.key"
    path.write_text("not-a-key-but-maybe-important\n")
    ret = _single(modules, "anubis.key_managed", name=str(path))
    assert ret["result"] is False
    assert "is not replaced automatically: a new key re-challenges every visitor" in ret["comment"]
    assert path.read_text() == "not-a-key-but-maybe-important\n"


@pytest.fixture
def health_server(health_endpoint):
    return health_endpoint("/healthz", b"OK\n")


def test_healthy_passes_on_200(modules, health_server, testmode):
    ret = _single(
        modules,
        "anubis.healthy",
        name="anubis@a.service",
        url=health_server + "/healthz",
        test=testmode,
    )
    assert ret["result"] is True, ret
    assert ret["changes"] == {}


def test_healthy_fails_with_the_url_when_nothing_answers(modules, health_server):
    ret = _single(
        modules, "anubis.healthy", name="anubis@a.service", url=health_server + "/nope", timeout=1
    )
    assert ret["result"] is False
    assert f"{health_server}/nope did not answer 200 within 1s (last: status 404" in ret["comment"]


# The env file: the shared EnvironmentFile= rule, changes that hide pillar `env` values.
ENV = {"BIND": "127.0.0.1:8931", "TARGET": " ", "POLICY_FNAME": "/etc/anubis/a.yaml"}
EXTRA = {"WEBMASTER_EMAIL": 'it\'s "$HOME" `x` \\ %n'}


@needs_root
def test_env_file_is_written_quoted_and_read_back_by_systemds_rules(modules, tmp_path, testmode):
    path = tmp_path / "a.env"
    ret = _single(
        modules, "anubis.env_managed", name=str(path), variables=ENV, extra=EXTRA, test=testmode
    )
    assert set(ret["changes"]) == {*ENV, *EXTRA}
    assert ret["changes"]["TARGET"] == {"old": None, "new": " "}
    # pillar env values never show in changes
    assert ret["changes"]["WEBMASTER_EMAIL"] == {"old": None, "new": "<hidden>"}
    assert EXTRA["WEBMASTER_EMAIL"] not in repr(ret)
    if testmode:
        assert ret["result"] is None
        assert not path.exists()
        return
    assert ret["result"] is True, ret
    text = path.read_text()
    assert 'TARGET=" "\n' in text
    assert 'WEBMASTER_EMAIL="it\'s \\"\\$HOME\\" \\`x\\` \\\\ %n"\n' in text
    assert opskit_formats.parse_systemd_env_file(text) == {**ENV, **EXTRA}
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    again = _single(modules, "anubis.env_managed", name=str(path), variables=ENV, extra=EXTRA)
    assert (again["result"], again["changes"]) == (True, {})
    changed = _single(
        modules,
        "anubis.env_managed",
        name=str(path),
        variables={**ENV, "BIND": "127.0.0.1:8932"},
        extra={"WEBMASTER_EMAIL": "other"},
    )
    assert changed["changes"] == {
        "BIND": {"old": "127.0.0.1:8931", "new": "127.0.0.1:8932"},
        "WEBMASTER_EMAIL": {"old": "<hidden>", "new": "<hidden, changed>"},
    }


def test_env_file_refuses_a_line_break_before_writing(modules, tmp_path):
    path = tmp_path / "a.env"
    ret = _single(
        modules,
        "anubis.env_managed",
        name=str(path),
        variables=ENV,
        extra={"WEBMASTER_EMAIL": "a\nTARGET=http://evil"},
    )
    assert ret["result"] is False
    assert "env:WEBMASTER_EMAIL" in ret["comment"]
    assert "line feed" in ret["comment"]
    assert not path.exists()


def test_tarball_method_renders_a_verified_download_and_a_linked_unit(modules):
    pillar = _pillar({"a": _instance("127.0.0.1:8931", "0.0.0.0:9231")})
    pillar["anubis"]["release"].update({"method": "tarball", "version": "1.27.0"})
    rendered = _render(modules, pillar)
    assert isinstance(rendered, dict), rendered
    archive = rendered["anubis-package-install-archive-extracted"]
    assert _arg(archive, "source") == (
        "https://mirror.example.org/anubis/v1.27.0/anubis-1.27.0-linux-amd64.tar.gz"
    )
    assert _arg(archive, "source_hash") == "sha256=" + "ab" * 32
    link = rendered["anubis-package-unit-file-symlink"]
    assert _arg(link, "target") == "/opt/anubis/anubis-1.27.0-linux-amd64/run/anubis@.service"
    dropin = _arg(rendered["anubis-config-dropin-a-file-managed"], "contents")
    assert "\nExecStart=\nExecStart=/opt/anubis/anubis-1.27.0-linux-amd64/bin/anubis\n" in dropin
    assert "anubis-package-install-pkg-installed" not in rendered


# Issue 12 item 2: the policy is checked as upstream v1.27.0 checks it ---------------------
def _policy_error(modules, policy):
    instance = _instance("127.0.0.1:8931", "0.0.0.0:9231", policy=policy)
    return _render_error(modules, _pillar({"a": instance}))


BROWSER = {"name": "browser", "user_agent_regex": "Mozilla", "action": "CHALLENGE"}
POLICY_BAD = {
    "CHALLENGE threshold without a challenge block": (
        {"thresholds": [{"name": "t", "expression": "weight > 0", "action": "CHALLENGE"}]},
        "anubis:instances:a:policy:thresholds:0: config.Threshold: a threshold with the "
        "CHALLENGE action must have challenge set",
    ),
    "WEIGH threshold": (
        {"thresholds": [{"name": "t", "expression": "weight > 0", "action": "WEIGH"}]},
        "anubis:instances:a:policy:thresholds:0:action = 'WEIGH': config.Threshold: a threshold "
        "cannot have the WEIGH action (rule t)",
    ),
    "bare IP in remote_addresses": (
        {"bots": [{"name": "ip", "remote_addresses": ["10.0.0.1"], "action": "ALLOW"}]},
        "anubis:instances:a:policy:bots:0:remote_addresses:0 = '10.0.0.1': config.Bot: "
        "invalid CIDR",
    ),
    "prefix length with a leading zero": (
        {"bots": [{"name": "ip", "remote_addresses": ["10.0.0.0/08"], "action": "ALLOW"}]},
        'bad bits after slash: "08"',
    ),
    "challenge without an algorithm": (
        {"bots": [{**BROWSER, "challenge": {"difficulty": 4}}]},
        "anubis:instances:a:policy:bots:0:challenge: config.ChallengeRules: must have "
        "algorithm name set (rule browser)",
    ),
    "difficulty above 64": (
        {"bots": [{**BROWSER, "challenge": {"algorithm": "fast", "difficulty": 65}}]},
        "difficulty is too high (must be <= 64), got: 65",
    ),
    "difficulty below 0": (
        {"bots": [{**BROWSER, "challenge": {"algorithm": "fast", "difficulty": -1}}]},
        "difficulty is too low (must be >= 0), got: -1",
    ),
    "unknown algorithm": (
        {"bots": [{**BROWSER, "challenge": {"algorithm": "sha3", "difficulty": 4}}]},
        "challenge:algorithm = 'sha3': is not a challenge upstream registers",
    ),
    "lookahead": (
        {"bots": [{"name": "r", "path_regex": "^/(?!api)", "action": "DENY"}]},
        "error parsing regexp: invalid or unsupported Perl syntax: `(?!`",
    ),
    "lookbehind": (
        {"bots": [{"name": "r", "path_regex": "(?<=/)x", "action": "DENY"}]},
        "error parsing regexp: invalid named capture",
    ),
    "backreference": (
        {"bots": [{"name": "r", "user_agent_regex": "(a)\\1", "action": "DENY"}]},
        "error parsing regexp: invalid escape sequence: `\\1`",
    ),
    "possessive quantifier (Python 3.11 accepts it)": (
        {"bots": [{"name": "r", "user_agent_regex": "a++", "action": "DENY"}]},
        "error parsing regexp: invalid nested repetition operator: `++`",
    ),
    "\\Z (Python's end of text)": (
        {"bots": [{"name": "r", "path_regex": "^/x\\Z", "action": "DENY"}]},
        "error parsing regexp: invalid escape sequence: `\\Z`",
    ),
    "repeat count over 1000": (
        {"bots": [{"name": "r", "user_agent_regex": "a{1001}", "action": "DENY"}]},
        "error parsing regexp: invalid repeat count: `{1001}`",
    ),
    "header regex": (
        {"bots": [{"name": "h", "headers_regex": {"Accept": "(?i)x(?#c)"}, "action": "DENY"}]},
        "anubis:instances:a:policy:bots:0:headers_regex:Accept = '(?i)x(?#c)': error parsing "
        "regexp",
    ),
    "empty CEL expression": (
        {"bots": [{"name": "cel", "expression": {"all": []}, "action": "DENY"}]},
        "config: this expression is empty (rule cel) (CEL expressions are not checked by "
        "opskit: only the Anubis binary compiles them",
    ),
}


@pytest.mark.parametrize("case", POLICY_BAD, ids=list(POLICY_BAD))
def test_policy_is_refused_where_upstream_refuses_it(modules, case):
    policy, message = POLICY_BAD[case]
    policy = {"bots": [BROWSER], **policy}
    error = _policy_error(modules, policy)
    assert "opskit-functional: anubis: 1 invalid setting, nothing was applied" in error
    assert message in error


def test_policy_upstream_accepts_renders(modules):
    """Go-only regex syntax, CIDRs with host bits, thresholds with a challenge, a CEL
    expression (not checked here) and WEIGH rules render."""
    policy = {
        "bots": [
            {"name": "z", "path_regex": "^/api/\\z", "action": "ALLOW"},
            {"name": "q", "user_agent_regex": "\\Qcurl/\\E[[:digit:]]+", "action": "DENY"},
            {"name": "u", "user_agent_regex": "(?i)\\p{Greek}+bot", "action": "DENY"},
            {"name": "net", "remote_addresses": ["10.1.2.3/8", "2001:db8::/32"], "action": "ALLOW"},
            {"name": "cel", "expression": 'userAgent.startsWith("x")', "action": "WEIGH"},
            {**BROWSER, "challenge": {"algorithm": "fast", "difficulty": 0}},
        ],
        "thresholds": [
            {
                "name": "t",
                "expression": {"all": ["weight > 5", "weight < 10"]},
                "action": "CHALLENGE",
                "challenge": {"algorithm": "metarefresh", "difficulty": 1},
            }
        ],
    }
    instance = _instance("127.0.0.1:8931", "0.0.0.0:9231", policy=policy)
    rendered = _render(modules, _pillar({"a": instance}))
    assert isinstance(rendered, dict), rendered
    written = _arg(rendered["anubis-config-policy-a-file-serialize"], "dataset")
    assert written["bots"] == policy["bots"]


# Runtime docker ----------------------------------------------------------------------------
def test_runtime_docker_renders_containers_instead_of_units(modules):
    """runtime docker: no package, unit or drop-in; a compose file, per instance a
    compose env file, a store directory and a key owned by the container's user, and a
    container state watching what compose does not hash. The lab applies it for real
    (tests/integration/test_anubis_docker.py)."""
    pillar = _pillar(
        {
            "app": _instance("127.0.0.1:8931", "0.0.0.0:9231", ed25519_private_key_hex=KEY),
            "old": _instance("127.0.0.1:8932", "0.0.0.0:9232", mode="proxy"),
        },
        runtime="docker",
        release={"version": "1.27.0"},
    )
    rendered = _render(modules, pillar)
    assert isinstance(rendered, dict), rendered
    assert KEY not in repr(rendered)
    functions = {
        f"{module}.{next(arg for arg in args if isinstance(arg, str))}"
        for state_id, state in rendered.items()
        for module, args in state.items()
        if state_id.startswith("anubis-") and not module.startswith("__")
    }
    assert "anubis.container_running" in functions
    assert not any(f.startswith(("pkg.", "archive.", "service.")) for f in functions), functions
    assert not [
        i for i in rendered if i.startswith("anubis-") and ("dropin" in i or "package" in i)
    ]
    compose = _arg(rendered["anubis-config-compose-file-managed"], "contents")
    services = opskit_formats.yaml_load(compose, compose=True)["services"]
    assert sorted(services) == ["app", "old"]
    env = rendered["anubis-config-env-app-anubis-env_managed"]
    assert _arg(env, "syntax") == "compose"
    assert _arg(env, "name") == "/opt/anubis-docker/app.env"
    assert _arg(env, "variables")["TARGET"] == " "
    key = rendered["anubis-config-key-app-anubis-key_managed"]
    assert _arg(key, "owner") == [1000, 1000]
    store = rendered["anubis-config-store-app-anubis-store_dir_managed"]
    assert (_arg(store, "name"), _arg(store, "owner")) == ("/var/lib/anubis/app", [1000, 1000])
    running = rendered["anubis-service-container-app-anubis-container_running"]
    assert _arg(running, "name") == "app"
    assert _arg(running, "compose_argv")[:2] == ["docker", "compose"]
    watched = _arg(running, "watch")
    assert {"file": "anubis-config-policy-app-file-serialize"} in watched
    assert {"anubis": "anubis-config-key-app-anubis-key_managed"} in watched
    health = rendered["anubis-service-healthz-app-anubis-healthy"]
    assert _arg(health, "logs_argv")[-5:] == ["logs", "--no-color", "--tail", "15", "app"]
    clean = _render(modules, pillar, sls="anubis.clean")
    assert "anubis-clean-compose-anubis-compose_absent" in clean
    assert not [i for i in clean if i.startswith("anubis-clean-service-")]


@needs_root
def test_key_and_store_for_the_container_belong_to_its_user(modules, tmp_path, testmode):
    key, store = tmp_path / "keys" / "a.key", tmp_path / "store" / "a"
    ret = _single(modules, "anubis.key_managed", name=str(key), owner=[1000, 1000], test=testmode)
    made = _single(
        modules, "anubis.store_dir_managed", name=str(store), owner=[1000, 1000], test=testmode
    )
    if testmode:
        assert (ret["result"], made["result"]) == (None, None)
        assert not key.exists()
        assert not store.exists()
        return
    assert ret["result"] is True, ret
    assert (stat.S_IMODE(key.stat().st_mode), key.stat().st_uid, key.stat().st_gid) == (
        0o400,
        1000,
        1000,
    )
    assert made["result"] is True, made
    assert (stat.S_IMODE(store.stat().st_mode), store.stat().st_uid) == (0o700, 1000)
    # drift back to root is repaired without a new key; a second run changes nothing
    content = key.read_bytes()
    os.chown(key, 0, 0)
    os.chown(store, 0, 0)
    fixed = _single(modules, "anubis.key_managed", name=str(key), owner=[1000, 1000])
    assert fixed["changes"] == {"owner": {"old": "0:0", "new": "1000:1000"}}
    assert key.read_bytes() == content
    again = _single(modules, "anubis.store_dir_managed", name=str(store), owner=[1000, 1000])
    assert again["changes"]["directory"] == {"old": "0700 0:0", "new": "0700 1000:1000"}
    for fun, name in (("anubis.key_managed", key), ("anubis.store_dir_managed", store)):
        assert _single(modules, fun, name=str(name), owner=[1000, 1000])["changes"] == {}
