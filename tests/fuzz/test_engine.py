"""The fuzz engine finds what it is meant to find: on a deliberately vulnerable fixture
formula (pillar written raw into SLS), hostile values are reported as injections; on
one that validates with opskit.settings, they are refusals naming the key; and the
external validators tell broken nginx/systemd syntax from what this host lacks."""

from __future__ import annotations

import shutil

import pytest

from tests.fuzz import campaign
from tests.fuzz import engine

pytestmark = pytest.mark.fuzz

RAW = """\
fixture-raw-{{ pillar.get("raw", {}).get("name", "x") }}:
  test.succeed_without_changes:
    - comment: {{ pillar.get("raw", {}).get("comment", "") }}

fixture-raw-file:
  file.managed:
    - name: /tmp/opskit-fuzz-fixture
    - contents: {{ pillar.get("raw", {}).get("comment", "") | json }}
"""
# Quoted as data (the SLS lint passes it), but the value lands in a shell command.
SHELL = """\
fixture-shell:
  file.managed:
    - name: /tmp/opskit-fuzz-fixture
    - unless: {{ ("test -e /srv/" ~ pillar.get("shell", {}).get("dir", "x")) | json }}
"""
SAFE = """\
{%- set settings = salt["opskit.settings"]("top", salt["pillar.get"]("safe", {})) %}
{%- for sls in settings.extra_sls %}
{{ ("fixture-safe-" ~ sls) | json }}:
  test.succeed_without_changes: []
{%- endfor %}
"""
TOP_READER = """\
{%- set extra = salt["pillar.get"]("extra_sls", []) %}
{%- set settings = salt["opskit.settings"]("top", {"extra_sls": extra}) %}
{%- for sls in settings.extra_sls %}
{{ ("fixture-top-" ~ sls) | json }}:
  test.succeed_without_changes: []
{%- endfor %}
"""


@pytest.fixture(scope="module")
def renderer(tmp_path_factory):
    tree = tmp_path_factory.mktemp("fuzz-tree")
    (tree / "raw.sls").write_text(RAW)
    (tree / "safe.sls").write_text(SAFE)
    (tree / "top_reader.sls").write_text(TOP_READER)
    (tree / "shell.sls").write_text(SHELL)
    return engine.Renderer(file_roots=[str(tree)])


def _judge(renderer, source, case_args, reads):
    path, kind, label = case_args
    case = engine.Case(source.name, path, kind, label)
    baseline = {}

    def chunks(wanted, without=None):
        renderer.set_pillar(source.pillar, source.minion_id)
        got, _ = renderer.render(list(wanted))
        baseline["chunks"] = got
        return got

    def chars(wanted, without=None):
        return set()

    return engine.judge(
        case, source, renderer, {"sls": list(source.sls), "chunks": chunks, "chars": chars}, reads
    )


def test_raw_interpolation_is_reported_as_injection(renderer):
    source = engine.Source("fixture:raw", "m", {"raw": {"name": "a", "comment": "ok"}}, ("raw",))
    reads = {"raw": {"raw"}}
    injected = _judge(renderer, source, (("raw", "comment"), "value", "yaml-injection"), reads)
    assert injected.verdict == "changed-states", injected
    renamed = _judge(renderer, source, (("raw", "name"), "value", "semicolon"), reads)
    assert renamed.verdict == "changed-states", renamed
    leaked = _judge(renderer, source, (("raw", "comment"), "value", "cr"), reads)
    assert leaked.verdict in ("leaked", "unclear-refusal"), leaked


def test_a_pillar_value_in_a_shell_string_is_reported(renderer):
    source = engine.Source("fixture:shell", "m", {"shell": {"dir": "a"}}, ("shell",))
    reads = {"shell": {"shell"}}
    for label in ("command-subst", "semicolon", "backtick"):
        outcome = _judge(renderer, source, (("shell", "dir"), "value", label), reads)
        assert outcome.verdict == "shell", outcome


def test_schema_refusals_name_the_key(renderer):
    source = engine.Source("fixture:safe", "m", {"safe": {"extra_sls": ["a", "b"]}}, ("safe",))
    reads = {"safe": {"safe"}}
    # opskit_settings_top has ROOT "": its message names extra_sls:1, and the fixture
    # reads it from pillar `safe`, so the engine (rightly) finds the key not named...
    outcome = _judge(renderer, source, (("safe", "extra_sls", 1), "value", "newline"), reads)
    assert outcome.verdict == "unclear-refusal", outcome
    # ...while a pillar whose path is what the schema names is a clear refusal.
    top = engine.Source("fixture:top", "m", {"extra_sls": ["a", "b"]}, ("top_reader",))
    renderer_reads = {"top_reader": {"extra_sls"}}
    refused = _judge(renderer, top, (("extra_sls", 1), "value", "newline"), renderer_reads)
    assert refused.verdict == "refused", refused
    inert = _judge(renderer, top, (("extra_sls", 0), "value", "single-quote"), renderer_reads)
    assert inert.verdict == "refused", inert  # "it's" is not an SLS name either


def test_expected_paths():
    case = engine.Case("s", ("thumbnail_server", "env", "A"), "value", "newline")
    assert "thumbnail-server:env:A" in engine.expected_paths(case)
    assert "thumbnail_server:env:A" in engine.expected_paths(case)
    key = engine.Case("s", ("tuning", "jemalloc", "units", "a"), "key", "newline")
    assert engine.expected_paths(key) == ["tuning:jemalloc:units:"]
    lookup = engine.Case("s", ("common", "lookup", "motd_file"), "value", "newline")
    assert "common:motd_file" in engine.expected_paths(lookup)


@pytest.mark.skipif(not shutil.which("nginx"), reason="nginx is not installed (tests/bootstrap)")
def test_nginx_validator_tells_syntax_from_environment(tmp_path):
    good = 'server {\n    listen 127.0.0.1:8080;\n    root "/srv/a b";\n}\n'
    assert (
        campaign._syntax_errors("nginx-site", campaign._nginx(good, "nginx-site", tmp_path)) == []
    )
    injected = "server {\n    listen 127.0.0.1:8080;\n    root /srv/x; internal;\n}\n"
    assert campaign._syntax_errors("nginx-site", campaign._nginx(injected, "nginx-site", tmp_path))


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is missing")
def test_systemd_validator_tells_syntax_from_environment(tmp_path):
    good = '[Service]\nType=simple\nExecStart=/bin/true "a;b"\n'
    assert (
        campaign._syntax_errors("systemd-unit", campaign._systemd(good, "systemd-unit", tmp_path))
        == []
    )
    injected = "[Service]\nType=simple\nExecStart=/bin/true ; /bin/false\n"
    assert campaign._syntax_errors(
        "systemd-unit", campaign._systemd(injected, "systemd-unit", tmp_path)
    )
