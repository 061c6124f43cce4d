"""The anubis formula's runtime docker (_utils/opskit_anubis_docker.py and what
_utils/opskit_anubis_plan.py builds with it), run directly: the compose file, the
instance's compose env file, the container's paths, and the settings only that runtime
has. The lab applies it on a real Docker engine (tests/integration/test_anubis_docker.py).
"""

from __future__ import annotations

import copy

import opskit_anubis_docker as docker
import opskit_anubis_plan as plan
import opskit_formats
import opskit_schema
import opskit_settings_anubis as settings_schema
import pytest
import yaml

from tests.conftest import REPO

DEFAULTS = yaml.safe_load((REPO / "salt/anubis/parameters/defaults.yaml").read_text())["anubis"]
TLS = {"certificate": "/etc/ssl/certs/a.pem", "key": "/etc/ssl/private/a.key"}
CONTAINER = "c0ffee" * 10 + "abcd"


def _settings(mode="sidecar", env=None, **top):
    data = copy.deepcopy(DEFAULTS)
    data["runtime"] = "docker"
    data["instances"] = {
        "app": {
            "mode": mode,
            "bind": "127.0.0.1:8923",
            "metrics_bind": "0.0.0.0:9201",
            "upstream": "http://127.0.0.1:8080",
            "env": env or {},
            "site": {"server_name": ["a.example.org"], "tls": dict(TLS)},
        }
    }
    data.update(top)
    result = opskit_schema.validate(settings_schema.SCHEMA, data, root="anubis")
    problems = list(settings_schema.check(result))
    assert problems == []
    return result


def _plan(settings, live=(), containers=()):
    return plan.plan(
        settings, minion="dock-01", cpu="x86_64", pillar={}, live=list(live), containers=containers
    )


def test_runtime_docker_needs_no_release_pin_and_defaults_to_upstreams_image():
    # no release:sha256 / checksums_url: nothing is downloaded by the formula
    out = _plan(_settings())
    assert out["release"] == {}
    assert out["docker"]["image"] == "ghcr.io/techarohq/anubis:v1.27.0"
    assert out["docker"]["compose_argv"] == [
        "docker",
        "compose",
        "--project-name",
        "anubis",
        "--project-directory",
        "/opt/anubis-docker",
        "--file",
        "/opt/anubis-docker/compose.yaml",
    ]


def test_compose_service_as_production_runs_it():
    out = _plan(_settings())
    (inst,) = out["instances"]
    compose = opskit_formats.yaml_load(out["docker"]["compose"], compose=True)
    assert compose["name"] == "anubis"
    service = compose["services"]["app"]
    assert service["user"] == "1000:1000"
    assert service["network_mode"] == "host"  # bind/metrics_bind on the host, as with systemd
    assert service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]
    assert service["env_file"] == ["/opt/anubis-docker/app.env"]
    assert "environment" not in service  # everything from the env file; no key anywhere
    assert service["volumes"] == [
        {
            "type": "bind",
            "source": "/etc/anubis/app.botPolicies.yaml",
            "target": "/data/cfg/botPolicy.yaml",
            "read_only": True,
        },
        {
            "type": "bind",
            "source": "/etc/anubis/keys/app.key",
            "target": docker.KEY,
            "read_only": True,
        },
        {"type": "bind", "source": "/var/lib/anubis/app", "target": "/data/store"},
    ]
    assert inst["key_owner"] == [1000, 1000]
    assert inst["store_dir"] == "/var/lib/anubis/app"
    assert inst["dropin"] is None
    # the policy's default bbolt store is in the mounted store directory
    assert inst["policy"]["store"] == {
        "backend": "bbolt",
        "parameters": {"path": "/data/store/anubis.bdb"},
    }


def test_env_file_is_compose_syntax_with_target_space_and_key_from_a_file():
    out = _plan(_settings())
    (inst,) = out["instances"]
    assert inst["env_syntax"] == "compose"
    env = inst["env"]
    assert env["TARGET"] == " "  # sidecar: no proxying (subrequest-auth.mdx)
    assert env["POLICY_FNAME"] == "/data/cfg/botPolicy.yaml"
    assert env["ED25519_PRIVATE_KEY_HEX_FILE"] == docker.KEY
    assert "ED25519_PRIVATE_KEY_HEX" not in env
    text = opskit_formats.compose_env_file(env)
    assert "TARGET=' '\n" in text
    assert opskit_formats.parse_compose_env_file(text)["TARGET"] == " "


def test_a_pillar_env_value_the_compose_env_file_cannot_hold_fails_the_plan():
    settings = _settings(env={"WEBMASTER_EMAIL": "it's@example.org"})
    with pytest.raises(opskit_formats.UnsafeValue) as err:
        _plan(settings)
    assert "anubis:instances:app:env:WEBMASTER_EMAIL" in str(err.value)


def test_image_must_be_pinned():
    for image, message in (
        ("ghcr.io/techarohq/anubis", "needs a tag"),
        ("ghcr.io/techarohq/anubis:latest", "must not be :latest"),
        ("ghcr.io/techarohq/anubis:v1.27.0;rm", "must be an image reference"),
    ):
        data = copy.deepcopy(DEFAULTS)
        data.update(runtime="docker", instances={})
        data["docker"]["image"] = image
        with pytest.raises(opskit_schema.SettingsError) as err:
            opskit_schema.validate(settings_schema.SCHEMA, data, root="anubis")
        ((path, _, text),) = err.value.problems
        assert path == "anubis:docker:image"
        assert message in text, text
    data = copy.deepcopy(DEFAULTS)
    data.update(runtime="docker", instances={})
    data["docker"]["image"] = "registry.example.org:5000/anubis:v1.27.0@sha256:" + "a" * 64
    opskit_schema.validate(settings_schema.SCHEMA, data, root="anubis")


def test_bbolt_path_must_be_in_the_store_volume():
    data = copy.deepcopy(DEFAULTS)
    data["runtime"] = "docker"
    data["instances"] = {
        "app": {
            "bind": "127.0.0.1:8923",
            "metrics_bind": "0.0.0.0:9201",
            "upstream": "http://127.0.0.1:8080",
            "policy": {"store": {"backend": "bbolt", "parameters": {"path": "/var/lib/x.bdb"}}},
            "site": {"server_name": ["a.example.org"], "tls": dict(TLS)},
        }
    }
    result = opskit_schema.validate(settings_schema.SCHEMA, data, root="anubis")
    ((path, value, message),) = list(settings_schema.check(result))
    assert path == "anubis:instances:app:policy:store:parameters:path"
    assert value == "/var/lib/x.bdb"
    assert "directly in /data/store/" in message


def test_sockets_of_the_projects_containers_are_ours():
    settings = _settings()
    held = {"address": "127.0.0.1", "port": 8923, "pid": 7, "unit": None, "command": "anubis"}
    with pytest.raises(opskit_schema.SettingsError) as err:
        _plan(settings, live=[{**held, "container": "f" * 64}])
    assert "anubis:instances:app:bind" in str(err.value)
    _plan(settings, live=[{**held, "container": CONTAINER}], containers={CONTAINER})
