"""What the exporter module reads inside a state run, from the fileserver and from
pillar: the unit, web configuration and stub_status templates, which a site overrides
from its own file_roots in template-formula's TOFS order (files/<minion id>/,
files/<os_family>/, files/default/; pillar ``exporters:tofs:source_files`` names other
files to try first), and the secret options it reads from the pillar keys
``secrets_from`` names. Salt's real loaders and fileserver (file_client local) on this
host; nothing is installed."""

from __future__ import annotations

import pytest

DEFAULT = "salt://exporters/files/default/exporter.service.jinja"


@pytest.fixture(scope="module")
def minion_config_overrides():
    # Files a test adds to the state tree are seen at once (no 20 s file-list cache).
    return {"fileserver_list_cache_time": 0}


@pytest.fixture
def files_dir(state_tree):
    path = state_tree / "exporters" / "files"
    yield path
    import shutil

    shutil.rmtree(state_tree / "exporters", ignore_errors=True)


def _render(modules, state_tree, pillar, **options) -> dict:
    """exporter.render run from a state, so that ``pillar`` holds for the run."""
    import json

    args = "".join(f"\n      - {key}: {json.dumps(value)}" for key, value in options.items())
    (state_tree / "tofs_check.sls").write_text(
        f"check:\n  module.run:\n    - exporter.render:{args}\n"
    )
    ret = modules.state.sls("tofs_check", pillar=pillar)
    return ret["module_|-check_|-check_|-run"]


def _unit(ret) -> str:
    assert ret.result is True, ret.comment
    return ret.changes["exporter.render"]["unit_text"]


def _render_with_site_unit(modules, state_tree, files_dir, text: str, **options) -> dict:
    """exporter.render in a state run whose pillar names ``site.service.jinja`` (with
    ``text``, in files/default/) as the unit template to try first."""
    (files_dir / "default").mkdir(parents=True)
    (files_dir / "default" / "site.service.jinja").write_text(text)
    tofs = {"source_files": {"exporter.service.jinja": ["site.service.jinja"]}}
    return _render(modules, state_tree, {"exporters": {"tofs": tofs}}, **options)


def test_render_uses_the_formulas_default_templates(modules):
    rendered = modules.exporter.render("node_exporter", version="1.8.2")
    assert rendered["templates"] == {"exporter.service.jinja": DEFAULT}
    assert rendered["unit_text"].startswith("# Managed by opskit (exporter.install node_exporter)")


def test_site_templates_win_by_minion_id_then_os_family(modules, loaders, files_dir):
    os_family = modules.grains.get("os_family")
    (files_dir / os_family).mkdir(parents=True)
    (files_dir / os_family / "exporter.service.jinja").write_text(
        "# site unit for {{ exporter.name }} ({{ version }})\n"
        "[Service]\nExecStart={{ exec_start | systemd_exec }}\n"
    )
    rendered = modules.exporter.render("node_exporter", version="1.8.2")
    source = f"salt://exporters/files/{os_family}/exporter.service.jinja"
    assert rendered["templates"]["exporter.service.jinja"] == source
    assert rendered["unit_text"].startswith("# site unit for node_exporter (1.8.2)\n[Service]\n")
    assert "--web.listen-address=:9100" in rendered["unit_text"]

    (files_dir / "opskit-functional").mkdir()
    (files_dir / "opskit-functional" / "exporter.service.jinja").write_text("# this minion\n")
    loaders.context.clear()  # the file listing is kept for one job (__context__)
    rendered = modules.exporter.render("node_exporter", version="1.8.2")
    source = "salt://exporters/files/opskit-functional/exporter.service.jinja"
    assert rendered["templates"]["exporter.service.jinja"] == source
    assert rendered["unit_text"] == "# this minion\n"


def test_pillar_source_files_come_first(modules, state_tree, files_dir):
    ret = _render_with_site_unit(
        modules,
        state_tree,
        files_dir,
        "# {{ exporter.name }}\n"
        "Environment={{ environment.REDIS_ADDR | systemd_environment('REDIS_ADDR') }}\n",
        name="redis_exporter",
        version="1.45.0",
        redis={"addr": "redis://db:6379"},
    )
    assert _unit(ret) == '# redis_exporter\nEnvironment="REDIS_ADDR=redis://db:6379"\n'
    source = "salt://exporters/files/default/site.service.jinja"
    assert ret.changes["exporter.render"]["templates"] == {"exporter.service.jinja": source}


@pytest.mark.parametrize(
    "tofs",
    [
        {"path_prefix": "../../etc"},
        {"dirs": {"files": "files/../../x"}},
        {"source_files": {"exporter.service.jinja": ["../../top.sls"]}},
    ],
)
def test_tofs_settings_from_pillar_cannot_leave_the_formulas_directory(modules, state_tree, tofs):
    ret = _render(
        modules,
        state_tree,
        {"exporters": {"tofs": tofs}},
        name="node_exporter",
        version="1.8.2",
    )
    assert ret.result is False
    assert "is not a relative path of plain names" in ret.comment


def test_a_hostile_value_is_refused_before_any_template_sees_it(modules, state_tree, files_dir):
    """Whatever a site template does with a value, a hostile one never reaches it: the
    options are validated first (a CR ended a unit line for systemd, issue 11)."""
    ret = _render_with_site_unit(
        modules,
        state_tree,
        files_dir,
        "[Service]\nEnvironment=REDIS_USER={{ environment.REDIS_USER.text }}\n",
        name="redis_exporter",
        version="1.45.0",
        redis={"addr": "redis://db:6379", "user": "ok\rExecStartPre=+/bin/sh"},
    )
    assert ret.result is False
    assert "exporters:redis_exporter:redis:user = " in ret.comment
    assert "contains a carriage return" in ret.comment


def test_secret_options_are_read_from_the_pillar_keys_named(modules, state_tree):
    """The formula passes no secret as a state argument; the module reads them on the
    minion from pillar (Salt 3008 masks pillar.get's values for modules: it must read
    the real ones)."""
    pillar = {
        "exporters": {
            "defaults": {"env": {"HTTPS_PROXY": "http://u:proxy-secret@proxy:3128"}},
            "redis_exporter": {"redis": {"password": "pillar-redis-secret"}},
        }
    }
    keys = ["exporters:defaults", "exporters:redis_exporter"]
    ret = _render(
        modules, state_tree, pillar, name="redis_exporter", version="1.45.0", secrets_from=keys
    )
    assert ret.result is True, ret.comment
    env = ret.changes["exporter.render"]["files"]["/etc/opskit/exporters/redis_exporter/env"]
    assert env["content"] == "<secret: hidden>"
    assert "pillar-redis-secret" not in str(ret.changes)
    without = _render(modules, state_tree, pillar, name="redis_exporter", version="1.45.0")
    assert without.changes["exporter.render"]["files"] == {}

    # The real values, not masked ones: a bcrypt hash from pillar passes the check a
    # mask ("**********") would fail, and a plain password is refused.
    bcrypt = "$2y$10$" + "d" * 53
    pillar["exporters"]["redis_exporter"]["web"] = {"basic_auth_users": {"p": bcrypt}}
    ret = _render(
        modules, state_tree, pillar, name="redis_exporter", version="1.80.2", secrets_from=keys
    )
    assert ret.result is True, ret.comment
    assert bcrypt not in str(ret.changes)
    pillar["exporters"]["redis_exporter"]["web"] = {"basic_auth_users": {"p": "plain"}}
    ret = _render(
        modules, state_tree, pillar, name="redis_exporter", version="1.80.2", secrets_from=keys
    )
    assert ret.result is False
    assert "web:basic_auth_users:p = <secret, 5 characters>: must be a bcrypt hash" in ret.comment
