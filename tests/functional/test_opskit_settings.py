"""``opskit.settings``: a formula's map.jinja validates its settings through the schema
module of the formula, and a bad value fails the real render (Salt's Jinja renderer and
state compiler, ``state.show_sls``) with a message naming the key.

The formula and its schema here are fixtures written into the test's own state tree and
module path; the real formulas' schemas are exercised by their own render tests."""

from __future__ import annotations

import sys

import pytest

SCHEMA_MODULE = """
import opskit_schema as s

SCHEMA = s.Map({
    "port": s.Int(1, 65535, default=8080, doc="TCP port"),
    "name": s.Str(r"[a-z][a-z0-9-]*", hint="a lower-case name"),
    "password": s.Secret(nullable=True),
    "files": s.DictOf(s.Path(), s.Map({"mode": s.Str(r"0[0-7]{3}", default="0644")})),
})


def check(settings):
    if settings["port"] == 9999 and settings["name"] == "clash":
        yield "fixture-formula:port", settings["port"], "collides with name clash"
"""

MAP_JINJA = """\
{%- set pillar_data = salt["pillar.get"]("fixture-formula", {}) %}
{%- set mapdata = salt["opskit.settings"]("fixture-formula", pillar_data) %}
"""

INIT_SLS = """\
{%- from tpldir ~ "/map.jinja" import mapdata with context %}
{%- for path, conf in mapdata.files | dictsort %}

{{ ("fixture-formula-" ~ path ~ "-file-managed") | json }}:
  file.managed:
    - name: {{ path | json }}
    - mode: {{ conf.mode | json }}
    - contents: {{ ("port " ~ mapdata.port) | json }}
{%- endfor %}
"""


@pytest.fixture(scope="module")
def schema_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("schemas")
    (directory / "opskit_settings_fixture_formula.py").write_text(SCHEMA_MODULE)
    sys.path.insert(0, str(directory))
    yield directory
    sys.path.remove(str(directory))
    sys.modules.pop("opskit_settings_fixture_formula", None)


@pytest.fixture(scope="module")
def state_tree(tmp_path_factory):
    tree = tmp_path_factory.mktemp("state-tree")
    formula = tree / "fixture-formula"
    formula.mkdir()
    (formula / "map.jinja").write_text(MAP_JINJA)
    (formula / "init.sls").write_text(INIT_SLS)
    return tree


def _render(modules, pillar):
    return modules.state.show_sls("fixture-formula", pillar={"fixture-formula": pillar})


def test_valid_settings_render_with_defaults(modules, schema_dir):
    rendered = _render(modules, {"name": "app", "files": {"/srv/app//conf": {}}})
    assert isinstance(rendered, dict), rendered
    state = rendered["fixture-formula-/srv/app/conf-file-managed"]["file"]
    assert {"name": "/srv/app/conf"} in state
    assert {"mode": "0644"} in state
    assert {"contents": "port 8080"} in state


@pytest.mark.parametrize(
    ("pillar", "key", "reason"),
    [
        ({"name": "app\n"}, "fixture-formula:name", "line feed"),
        ({"name": "app", "port": "80;"}, "fixture-formula:port", "an integer from 1 to 65535"),
        ({"name": "app", "files": {"/etc": {}}}, "fixture-formula:files:/etc", "system directory"),
        (
            {"name": "app", "files": {"/srv/x\n- y": {}}},
            "fixture-formula:files:'/srv/x\\n- y'",
            "line feed",
        ),
        (
            {"name": "app", "files": {"/srv/x": {"mode": "0644\n"}}},
            "fixture-formula:files:/srv/x:mode",
            "line feed",
        ),
        ({"name": "app", "extra": 1}, "fixture-formula:extra", "unknown key"),
        ({"name": "clash", "port": 9999}, "fixture-formula:port", "collides with name clash"),
    ],
)
def test_bad_settings_fail_the_render_naming_the_key(modules, schema_dir, pillar, key, reason):
    rendered = _render(modules, pillar)
    assert isinstance(rendered, list), rendered  # render errors come back as a list
    message = "\n".join(rendered)
    assert f"- {key}" in message, message
    assert reason in message
    assert "opskit-functional" in message  # names the minion
    assert "nothing was applied" in message


def test_secrets_are_masked_in_the_render_error(modules, schema_dir):
    rendered = _render(modules, {"name": "app", "password": "hunter2\n"})
    message = "\n".join(rendered)
    assert "fixture-formula:password = <secret, 8 characters>" in message
    assert "hunter2" not in message


def test_unknown_formula_says_what_to_do(modules, schema_dir):
    with pytest.raises(Exception, match="no settings schema for formula 'no-such-formula'"):
        modules.opskit.settings("no-such-formula", {})
    with pytest.raises(Exception, match="is not a formula name"):
        modules.opskit.settings("../x", {})


def test_deprecated_lists_ignored_keys_by_path_whether_the_rest_is_valid_or_not(modules):
    """The real formulas' deprecated keys, through Salt's loader: one line per key with
    what replaced it, never the value; other problems are opskit.settings' to report."""
    hostile = "exporter_targets\nmaster: attacker.example"
    notes = modules.opskit.deprecated(
        "exporters", {"node_exporter": {"version": "1.5.0"}, "mine": {"function": hostile}}
    )
    assert len(notes) == 1
    assert notes[0].startswith("exporters:mine is deprecated and ignored: since opskit 0.1.0")
    assert "attacker" not in notes[0]
    (anubis_note,) = modules.opskit.deprecated("anubis", {"mine_name": "y"})
    assert anubis_note.startswith("anubis:mine_name is deprecated and ignored: since opskit")
    invalid = {"mine_name": "x", "instances": "bad"}
    assert modules.opskit.deprecated("anubis", invalid) == [anubis_note]
    assert modules.opskit.deprecated("exporters", {"node_exporter": {}}) == []
    with pytest.raises(Exception, match="is not a formula name"):
        modules.opskit.deprecated("../x", {})
