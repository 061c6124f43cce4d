"""The template lookup (TOFS order) and the quoting filters of
_utils/opskit_exporter_templates.py, without Salt: configuration comes from a dict,
templates from the formula's directory."""

from __future__ import annotations

import opskit_exporter_templates as templates
import pytest

from tests.conftest import REPO


def config(values: dict):
    """config.get over a flat mapping of colon-separated keys."""
    return lambda key, default=None: values.get(key, default)


def test_candidates_follow_template_formulas_order():
    get = config({"id": "web-01.lab", "os_family": "Debian"})
    assert templates.candidates(get, "exporter.service.jinja") == [
        "salt://exporters/files/web-01.lab/exporter.service.jinja",
        "salt://exporters/files/Debian/exporter.service.jinja",
        "salt://exporters/files/default/exporter.service.jinja",
    ]


def test_candidates_honour_the_tofs_settings():
    get = config(
        {
            "id": "web-01.lab",
            "os_family": "Debian",
            "roles": ["web", "edge"],
            "exporters:tofs:path_prefix": "site/exporters",
            "exporters:tofs:dirs:files": "tofs",
            "exporters:tofs:dirs:default": "base",
            "exporters:tofs:files_switch": ["roles", "missing_grain"],
            "exporters:tofs:source_files:unit.jinja": ["ours.jinja"],
        }
    )
    assert templates.candidates(get, "unit.jinja") == [
        "salt://site/exporters/tofs/web/ours.jinja",
        "salt://site/exporters/tofs/edge/ours.jinja",
        "salt://site/exporters/tofs/web/unit.jinja",
        "salt://site/exporters/tofs/edge/unit.jinja",
        "salt://site/exporters/tofs/base/ours.jinja",
        "salt://site/exporters/tofs/base/unit.jinja",
    ]


def test_a_switch_value_that_is_no_plain_name_selects_no_directory():
    get = config({"id": "../../evil", "os_family": "Debian"})
    assert templates.candidates(get, "t.jinja") == [
        "salt://exporters/files/Debian/t.jinja",
        "salt://exporters/files/default/t.jinja",
    ]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("exporters:tofs:path_prefix", "../x"),
        ("exporters:tofs:dirs:files", "a/../../b"),
        ("exporters:tofs:dirs:default", "de fault"),
        ("exporters:tofs:source_files:t.jinja", ["ok.jinja", "../../top.sls"]),
    ],
)
def test_tofs_settings_that_leave_the_formula_are_refused(key, value):
    with pytest.raises(templates.TemplateError, match="not a relative path of plain names"):
        templates.candidates(config({key: value}), "t.jinja")


def test_the_formula_ships_every_template_it_looks_up():
    default = REPO / "salt" / "exporters" / "files" / "default"
    assert sorted(p.name for p in default.iterdir()) == sorted(templates.SOURCE_FILES)


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("--web.listen-address=:9100", "--web.listen-address=:9100"),
        ("--namespace=my redis", '"--namespace=my redis"'),
        ("--x=50%", "--x=50%%"),
        ("--x=$HOME", '"--x=$$HOME"'),
        ('--x=a"b', '"--x=a\\"b"'),
    ],
)
def test_systemd_word(value, quoted):
    assert templates.systemd_word(value) == quoted


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\x00b", "a\u2028b", "a\x85b", "a\tb"])
def test_every_filter_refuses_line_breaks_and_control_characters(bad):
    for render in (
        templates.systemd_word,
        lambda v: templates.systemd_environment(v, "NAME"),
        templates.systemd_value,
        templates.yaml_str,
        templates.nginx_value,
    ):
        with pytest.raises(templates.TemplateError, match="control or line-break"):
            render(bad)


def test_nginx_values_refuse_what_nginx_would_interpret():
    for bad in ("a;b", "a b", "{", "$x", "'", "#c", ""):
        with pytest.raises(templates.TemplateError, match="cannot be an nginx parameter"):
            templates.nginx_value(bad)
    assert templates.nginx_value("[::1]:8080") == "[::1]:8080"


def test_systemd_word_keeps_credential_specifiers_only_when_asked():
    assert templates.systemd_word("--key=%d/k", specifiers=True) == "--key=%d/k"
    assert templates.systemd_word("--key=%d/k") == "--key=%%d/k"
