"""The `exporter` execution and state modules and the `exporters` formula in Salt's real
loaders, on this host. Nothing here installs anything: these are the parts that work
without systemd (rendering, validation, refusals); installs run in the lab
(tests/integration/test_exporters.py)."""

from __future__ import annotations

import opskit_settings_exporters as exporter_settings
import pytest
from salt.exceptions import SaltInvocationError

from tests.functional.sls import state_args

REDIS_PASSWORD = "functional-redis-secret"
BCRYPT = "$2y$10$" + "c" * 53


def test_list_names_the_catalog(modules):
    listed = modules.exporter.list()
    assert sorted(listed) == [
        "dcgm_exporter",
        "nginx_exporter",
        "node_exporter",
        "postgres_exporter",
        "redis_exporter",
    ]
    assert listed["node_exporter"]["default_port"] == 9100
    assert listed["redis_exporter"]["package"] == "prometheus-redis-exporter"
    assert "armv7" in listed["node_exporter"]["architectures"]


def test_render_shows_the_unit_and_hides_secrets(modules):
    rendered = modules.exporter.render(
        "redis_exporter",
        version="1.80.2",
        base_url="https://user:mirrorpass@mirror.example",
        redis={"addr": "redis://db:6379", "password": REDIS_PASSWORD},
        web={"basic_auth_users": {"prometheus": BCRYPT}},
    )
    text = str(rendered)
    assert REDIS_PASSWORD not in text
    assert BCRYPT not in text
    assert "mirrorpass" not in text
    env = rendered["files"]["/etc/opskit/exporters/redis_exporter/env"]
    assert env == {
        "mode": "0600",
        "owner": "redis_exporter",
        "group": "redis_exporter",
        "content": "<secret: hidden>",
    }
    assert rendered["release"]["asset_url"] == (
        "https://user:**********@mirror.example/oliver006/redis_exporter/releases/download/"
        "v1.80.2/redis_exporter-v1.80.2.linux-amd64.tar.gz"
    )
    assert (
        "ExecStart=/opt/opskit/exporters/redis_exporter/current/redis_exporter"
        in (rendered["unit_text"])
    )


def test_validate_reports_every_problem_at_once(modules):
    with pytest.raises(SaltInvocationError) as err:
        modules.exporter.validate(
            {
                "node_exporter": {"version": "latest"},
                "redis_exporter": {"version": "1.45.0", "flags": {"redis.password": "x"}},
                "gpu_exporter": {"ensure": "absent"},
                "postgres_exporter": "yes",
            }
        )
    message = str(err.value)
    assert "opskit-functional: invalid exporters pillar" in message
    assert "exporters:node_exporter:version = 'latest': must be an exact release" in message
    assert "exporters:redis_exporter: flag --redis.password would put a secret" in message
    # The schema's wording (exporter.validate goes through opskit.check, as map.jinja's
    # opskit.settings does); it was "unknown exporter 'gpu_exporter'" and
    # "postgres_exporter: options must be a mapping" from a hand-written pre-check.
    assert (
        "exporters:gpu_exporter = {'ensure': 'absent'}: unknown key: no exporter opskit "
        "knows (dcgm_exporter, nginx_exporter, node_exporter, postgres_exporter, "
        "redis_exporter) and no setting of the formula (defaults, versions, nginx_package, "
        "tofs)"
    ) in message
    assert (
        "exporters:postgres_exporter = 'yes': must be a mapping of postgres_exporter's options"
    ) in message
    assert len(message.splitlines()) == 5  # the heading and the four problems
    assert modules.exporter.validate({}) is True
    assert modules.exporter.validate({"dcgm_exporter": {"ensure": "absent"}}) is True


def test_validate_merges_defaults_and_versions_as_the_formula_does(modules):
    """exporter.validate checks a pillar as map.jinja does (one path): `defaults` merged
    under each exporter, the `versions` entry where an archive install names none."""
    pillar = {
        "defaults": {"listen_address": "127.0.0.1:9100"},
        "versions": {"node_exporter": "1.8.2"},
        "node_exporter": None,
    }
    assert modules.exporter.validate(pillar) is True
    with pytest.raises(SaltInvocationError, match="version is required with source: archive"):
        modules.exporter.validate({**pillar, "versions": {}})
    with pytest.raises(SaltInvocationError) as err:
        modules.exporter.validate({**pillar, "defaults": {"listen_address": "[::1%eth0]:9"}})
    assert "exporters:defaults:listen_address = '[::1%eth0]:9'" in str(err.value)


def test_validated_state(states, testmode):
    good = states.exporter.validated(
        name="check", exporters={"node_exporter": {"version": "1.8.2"}}, test=testmode
    )
    assert good.result is True
    assert good.changes == {}
    bad = states.exporter.validated(
        name="check", exporters={"node_exporter": {"version": "1.8"}}, test=testmode
    )
    assert bad.result is False
    assert "exporters:node_exporter:version = '1.8': must be an exact release version" in (
        bad.comment
    )


def test_installed_refuses_bad_options_before_touching_anything(states, testmode):
    ret = states.exporter.installed(
        name="postgres_exporter",
        version="0.11.1",
        postgres={"user": "exporter", "server_major": 17},
        test=testmode,
    )
    assert ret.result is False
    assert "Use postgres_exporter 0.17.0 or newer" in ret.comment
    assert ret.changes == {}


# The formula ---------------------------------------------------------------------------
def _states_of(rendered: dict) -> dict:
    assert isinstance(rendered, dict), rendered
    return rendered


def _own(rendered: dict) -> list[str]:
    """The exporters formula's own states (it includes common.mine, which publishes)."""
    assert "common-mine-targets-opskit-targets_published" in rendered
    return sorted(state_id for state_id in rendered if state_id.startswith("exporters-"))


def test_formula_with_no_exporters_in_pillar_renders_nothing_of_its_own(modules):
    assert _own(_states_of(modules.state.show_sls("exporters", pillar={}))) == []


def test_formula_maps_pillar_to_states_without_secrets(modules):
    pillar = {
        "exporters": {
            "defaults": {"base_url": "http://mirror.example", "env": {"TOKEN": "env-secret"}},
            "node_exporter": {},
            "redis_exporter": {"version": "1.45.0", "redis": {"password": REDIS_PASSWORD}},
            "nginx_exporter": {"source": "package"},
            "dcgm_exporter": {"ensure": "absent"},
            "versions": {"node_exporter": "1.5.0"},
        }
    }
    rendered = _states_of(modules.state.show_sls("exporters", pillar=pillar))
    assert _own(rendered) == [
        "exporters-install-dcgm_exporter-absent",
        "exporters-install-nginx-package-installed",
        "exporters-install-nginx_exporter-installed",
        "exporters-install-node_exporter-installed",
        "exporters-install-redis_exporter-installed",
    ]

    def args(state_id):
        return {
            k: v
            for item in rendered[state_id]["exporter"]
            if isinstance(item, dict)
            for k, v in item.items()
        }

    node = args("exporters-install-node_exporter-installed")
    assert node["version"] == "1.5.0"  # from exporters:versions
    # base_url may carry credentials: read on the minion from exporters:defaults
    assert "base_url" not in node
    assert node["secrets_from"] == ["exporters:defaults", "exporters:node_exporter"]
    nginx = args("exporters-install-nginx_exporter-installed")
    assert "version" not in nginx  # package installs take the repository's version
    assert {"pkg": "exporters-install-nginx-package-installed"} in nginx["require"]
    redis = args("exporters-install-redis_exporter-installed")
    assert redis["secrets_from"] == ["exporters:defaults", "exporters:redis_exporter"]
    assert redis["redis"] == {}
    assert "env" not in redis
    # No secret value is a state argument anywhere (they are read on the minion).
    assert REDIS_PASSWORD not in str(rendered)
    assert "env-secret" not in str(rendered)
    # The targets are published after the exporters (common.mine, order: last).
    assert {"order": "last"} in rendered["common-mine-targets-opskit-targets_published"]["opskit"]


def test_formula_refuses_a_bad_pillar_before_rendering_any_state(modules):
    """Values first (every one named by key path), then the rules across options."""
    pillar = {
        "exporters": {
            "node_exporter": {"version": "latest", "listen_address": ":0"},
            "postgres_exporter": {"version": "0.16.0", "postgres": {"user": "e"}},
        }
    }
    error = _render_error(modules, pillar)
    assert "exporters: 2 invalid settings, nothing was applied" in error
    assert "exporters:node_exporter:version = 'latest': must be an exact release" in error
    assert "exporters:node_exporter:listen_address = ':0'" in error
    pillar["exporters"] = {
        "postgres_exporter": {"version": "0.16.0", "postgres": {"user": "e", "server_major": 17}}
    }
    error = _render_error(modules, pillar)
    assert "exporters:postgres_exporter: postgres.server_major: postgres_exporter 0.16.0" in error
    assert "Use postgres_exporter 0.17.0 or newer" in error


def test_clean_removes_every_catalog_exporter_and_publishes_the_targets_again(modules):
    rendered = _states_of(modules.state.show_sls("exporters.clean", pillar={}))
    absent = sorted(
        state["exporter"][0]["name"] for state in rendered.values() if "exporter" in state
    )
    assert absent == sorted(modules.exporter.list())
    assert "common-mine-targets-opskit-targets_published" in rendered


# Hostile pillar (issue 11) ------------------------------------------------------------
def _render_error(modules, pillar) -> str:
    rendered = modules.state.show_sls("exporters", pillar=pillar)
    assert isinstance(rendered, list), f"expected a render error, got states: {rendered}"
    return "\n".join(rendered)


def test_a_hostile_key_under_exporters_compiles_no_state(modules, tmp_path):
    """Issue 11 item 1: a key with a newline and a quote was written raw into the SLS
    and compiled a cmd.run whose unless ran as root even under test=True. Now the key
    is refused by name when the formula renders: no state is compiled at all."""
    marker = tmp_path / "unless-ran"
    key = f'x":\n  cmd.run:\n    - name: "true"\n    - unless: touch {marker}\n"y'
    for test in (True, False):
        rendered = modules.state.show_sls("exporters", pillar={"exporters": {key: {}}}, test=test)
        assert isinstance(rendered, list), rendered
        error = "\n".join(rendered)
        assert "exporters:" in error
        assert "unknown key" in error
        assert not marker.exists()


@pytest.mark.parametrize(
    ("options", "path"),
    [
        ({"redis": {"user": "exporter\rExecStartPre=+/bin/sh -c id"}}, "redis:user"),
        ({"redis": {"addr": "redis://db:6379\rExecStartPre=+/bin/id"}}, "redis:addr"),
        (
            {"web": {"tls": {"cert": "/etc/ssl/c.pem\rExecStartPre=+/bin/id", "key": "/k"}}},
            "web:tls:cert",
        ),
    ],
)
def test_a_carriage_return_in_an_exporter_value_fails_the_render(modules, options, path):
    """Issue 11 item 6: a CR ended a line of the unit file for systemd, so an injected
    ExecStartPre=+... was parsed. Refused by key path when the formula renders."""
    pillar = {"exporters": {"redis_exporter": {"version": "1.45.0", **options}}}
    error = _render_error(modules, pillar)
    assert f"exporters:redis_exporter:{path}" in error
    assert "carriage return" in error


def test_scrape_uri_credentials_stay_out_of_state_arguments(modules):
    """Issue 11 item 8: nginx.scrape_uri with user:password@ was rendered into state
    arguments (and ended in ExecStart); now it is read on the minion from pillar."""
    pillar = {
        "exporters": {
            "nginx_exporter": {
                "version": "1.4.0",
                "nginx": {"scrape_uri": "http://scraper:scrape-pw@127.0.0.1:8080/stub_status"},
            }
        }
    }
    rendered = _states_of(modules.state.show_sls("exporters", pillar=pillar))
    assert "exporters-install-nginx_exporter-installed" in rendered
    assert "scrape-pw" not in str(rendered)


@pytest.mark.parametrize(
    "mine",
    [
        {"enabled": False},
        {"function": "exporter_targets\nmaster: attacker.example"},
        None,
    ],
)
def test_the_deprecated_mine_key_still_renders_and_reaches_no_state(modules, mine):
    """`exporters:mine` configured the exporters' own mine function (gone: opskit.targets,
    published by common.mine, is the one mechanism). A pillar written for the older
    opskit still renders: the key is ignored, a state that changes nothing carries the
    warning (key path and what replaced it) to the state.apply output, and nothing of
    the value reaches a state, hostile values included."""
    pillar = {"exporters": {"node_exporter": {"version": "1.5.0"}, "mine": mine}}
    rendered = _states_of(modules.state.show_sls("exporters", pillar=pillar))
    notice = "exporters-deprecated-keys-test-configurable_test_state"
    assert _own(rendered) == [notice, "exporters-install-node_exporter-installed"]
    _, arguments = state_args(rendered, notice)
    assert arguments["changes"] is False
    assert arguments["result"] is True
    assert arguments["warnings"] == [
        f"exporters:mine is deprecated and ignored: {exporter_settings.MINE_DEPRECATED}"
    ]
    assert "attacker.example" not in str(rendered)


def test_no_deprecated_keys_no_warning_state(modules):
    pillar = {"exporters": {"node_exporter": {"version": "1.5.0"}}}
    rendered = _states_of(modules.state.show_sls("exporters", pillar=pillar))
    assert _own(rendered) == ["exporters-install-node_exporter-installed"]


@pytest.mark.parametrize(
    ("pillar", "message"),
    [
        ({"defaults": "x\ny"}, "exporters:defaults = 'x\\ny': must be a mapping"),
        ({"versions": "1.8.2"}, "exporters:versions = '1.8.2': must be a mapping"),
        ({"lookup": ["x"]}, 'exporters:lookup = ["x"]: must be a mapping'),
    ],
)
def test_a_mapping_replaced_by_another_type_is_refused_by_name(modules, pillar, message):
    """The fuzz tier found these failing with Salt's "Cannot update using non-dict
    types" (no key named) when map.jinja merged them."""
    pillar = {"exporters": {"node_exporter": {"version": "1.5.0"}, **pillar}}
    assert message in _render_error(modules, pillar)
