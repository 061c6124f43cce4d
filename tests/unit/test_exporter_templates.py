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


def test_the_exec_line_quotes_each_word_and_keeps_specifiers_only_where_opskit_asks():
    line = templates.systemd_exec(
        [
            templates.Word("/opt/x/current/x"),
            templates.Word("--tls-ca-cert-file=%d/ca.crt", specifiers=True),
            templates.Word("--namespace=my $redis 50%"),
        ]
    )
    assert line == (
        "/opt/x/current/x \\\n    --tls-ca-cert-file=%d/ca.crt \\\n    "
        '"--namespace=my $$redis 50%%"'
    )
    for program in ("relative", "/opt/../bin/sh", "+/bin/sh"):
        with pytest.raises(templates.opskit_formats.UnsafeValue, match="absolute, normalised"):
            templates.systemd_exec([program])


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\x00b", "a\u2028b", "a\x85b", "a\tb"])
def test_every_filter_refuses_line_breaks_and_control_characters(bad):
    for render in (
        lambda v: templates.systemd_exec(["/bin/x", v]),
        lambda v: templates.systemd_environment(v, "NAME"),
        templates.systemd_value,
        lambda v: templates.yaml_document({"k": v}),
        templates.nginx_value,
    ):
        with pytest.raises(templates.opskit_formats.UnsafeValue, match="contains"):
            render(bad)


def test_nginx_values_are_quoted_or_refused_as_nginx_reads_them():
    assert templates.nginx_value("127.0.0.1:8080") == "127.0.0.1:8080"
    assert templates.nginx_value("unix:/run/x.sock") == "unix:/run/x.sock"
    assert templates.nginx_value("a;b") == '"a;b"'
    with pytest.raises(templates.opskit_formats.UnsafeValue, match="contains \\$"):
        templates.nginx_value("$host")


def test_a_value_a_template_prints_without_a_filter_is_still_checked():
    """A site template that forgets the quoting filter cannot let a value start a new
    line: every unfiltered value is checked for control characters."""
    naive = {"naive.jinja": ("naive.jinja", "[Service]\nUser={{ user }}\n")}
    renderer = templates.Renderer(naive.__getitem__)
    assert renderer.render("naive.jinja", user="exporter") == "[Service]\nUser=exporter\n"
    with pytest.raises(templates.TemplateError, match=r"rendering naive\.jinja: .*carriage return"):
        renderer.render("naive.jinja", user="x\rExecStartPre=+/bin/sh")
