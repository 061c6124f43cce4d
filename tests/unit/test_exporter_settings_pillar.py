"""Pillar ``exporters`` as a whole, checked the way ``opskit.settings`` (the formula's
``map.jinja``) and ``exporter.validate`` (through ``opskit.check``) both check it:
``prepare`` (defaults and versions merged into each exporter) then ``SCHEMA``, which
refuses unknown exporters, options that are not a mapping and a bad ``ensure``, runs
the rules across options per exporter, and reports every problem in one error."""

from __future__ import annotations

import opskit_schema as s
import opskit_settings_exporters as settings
import pytest

NOT_A_MAPPING = "must be a mapping of postgres_exporter's options"
UNKNOWN = (
    "unknown key: no exporter opskit knows (dcgm_exporter, nginx_exporter, node_exporter, "
    "postgres_exporter, redis_exporter) and no setting of the formula (defaults, versions, "
    "nginx_package, tofs)"
)


def check(pillar):
    """(validated settings, []) or (None, [(path, shown value, message), ...])."""
    try:
        return s.validate(settings.SCHEMA, settings.prepare(pillar), root="exporters"), []
    except s.SettingsError as err:
        return None, err.problems


@pytest.mark.parametrize("options", ["yes", "", 0, 1, False, True, ["version", "1.8.2"]])
def test_options_that_are_no_mapping_are_refused(options):
    _, problems = check({"postgres_exporter": options})
    assert [(p, m) for p, _, m in problems] == [("exporters:postgres_exporter", NOT_A_MAPPING)]


def test_null_options_mean_the_defaults():
    result, problems = check({"node_exporter": None, "versions": {"node_exporter": "1.8.2"}})
    assert problems == []
    assert result["node_exporter"]["ensure"] == "present"
    assert result["node_exporter"]["version"] == "1.8.2"


@pytest.mark.parametrize("ensure", ["gone", "Absent", "present\n", True, 1, ["absent"]])
def test_ensure_is_present_or_absent(ensure):
    _, problems = check({"node_exporter": {"version": "1.8.2", "ensure": ensure}})
    assert [(p, m) for p, _, m in problems] == [
        ("exporters:node_exporter:ensure", "must be one of present, absent")
    ]


@pytest.mark.parametrize("options", [{}, None, {"ensure": "absent"}, {"ensure": "present"}])
def test_an_unknown_exporter_is_refused_whatever_its_ensure(options):
    _, problems = check({"gpu_exporter": options, "node_exporter": {"ensure": "absent"}})
    assert [(p, m) for p, _, m in problems] == [("exporters:gpu_exporter", UNKNOWN)]


def test_an_absent_exporter_needs_no_version_and_skips_the_rules():
    result, problems = check({"dcgm_exporter": {"ensure": "absent"}})
    assert problems == []
    assert result["dcgm_exporter"]["ensure"] == "absent"
    _, problems = check({"dcgm_exporter": {"ensure": "present"}})
    assert [(p, m) for p, _, m in problems] == [
        (
            "exporters:dcgm_exporter",
            "version is required with source: archive (opskit installs pinned releases)",
        )
    ]


def test_every_problem_of_every_exporter_is_reported_together():
    _, problems = check(
        {
            "node_exporter": {"version": "latest"},
            "redis_exporter": {"version": "1.45.0", "flags": {"redis.password": "x"}},
            "gpu_exporter": {"ensure": "absent"},
            "postgres_exporter": "yes",
            "nginx_exporter": {"version": "1.4.0", "ensure": "removed"},
            "mine": {"enabled": True},  # deprecated: ignored, not one of the problems
        }
    )
    found = {path: message for path, _, message in problems}
    assert len(problems) == len(found) == 5
    assert found["exporters:node_exporter:version"].startswith("must be an exact release")
    assert found["exporters:redis_exporter"].startswith("flag --redis.password would put")
    assert found["exporters:gpu_exporter"] == UNKNOWN
    assert found["exporters:postgres_exporter"] == NOT_A_MAPPING
    assert found["exporters:nginx_exporter:ensure"] == "must be one of present, absent"


def test_the_rules_run_only_on_options_the_schema_accepted():
    """A value the schema refuses is reported once, by its own key path; the plan's
    rules would only repeat it in other words."""
    options = {"version": "1.8.2", "flags": {"web.listen-address": ":1"}}
    _, problems = check({"node_exporter": options})
    assert [p for p, _, _ in problems] == ["exporters:node_exporter"]  # a flag opskit sets
    _, problems = check({"node_exporter": {**options, "verify_timeout": 0}})
    assert [p for p, _, _ in problems] == ["exporters:node_exporter:verify_timeout"]


@pytest.mark.parametrize(
    "mine", [{}, None, {"enabled": False}, "exporter_targets", {"function": "x\nmaster: evil"}]
)
def test_the_deprecated_mine_key_is_ignored_with_a_warning_saying_what_to_do(mine, caplog):
    """`exporters:mine` configured the exporters' own mine function, gone since
    opskit.targets is the one mechanism. The pillar key stays accepted (a pillar written
    for the older opskit still renders), its value goes nowhere, and a warning names the
    key path and what replaced it, never the value."""
    pillar = {"node_exporter": {"version": "1.8.2"}, "mine": mine}
    with caplog.at_level("WARNING", logger="opskit_schema"):
        result, problems = check(pillar)
    assert problems == []
    assert "mine" not in result
    assert result["node_exporter"]["version"] == "1.8.2"
    (record,) = [r for r in caplog.records if r.name == "opskit_schema"]
    assert record.levelname == "WARNING"
    assert record.getMessage() == (
        f"exporters:mine is deprecated and ignored: {settings.MINE_DEPRECATED}"
    )
    assert "opskit.targets" in settings.MINE_DEPRECATED
    assert "common formula" in settings.MINE_DEPRECATED
    assert "delete this key" in settings.MINE_DEPRECATED
    assert "mine" not in settings.SCHEMA.fields
    assert "exporters:mine" not in s.markdown_table(settings.SCHEMA, "exporters")


def test_prepare_merges_defaults_and_versions_and_leaves_wrong_types_to_the_schema():
    pillar = {
        "defaults": {"web": {"tls": {"cert": "/etc/ssl/c.pem"}}, "source": "archive"},
        "versions": {"node_exporter": "1.8.2", "redis_exporter": "1.45.0"},
        "node_exporter": {"web": {"tls": {"key": "/etc/ssl/k.pem"}}},
        "redis_exporter": {"source": "package"},
        "postgres_exporter": "yes",
        "gpu_exporter": {},
    }
    merged = settings.prepare(pillar)
    assert merged["node_exporter"] == {
        "web": {"tls": {"cert": "/etc/ssl/c.pem", "key": "/etc/ssl/k.pem"}},
        "source": "archive",
        "version": "1.8.2",
    }
    assert "version" not in merged["redis_exporter"]  # a package install takes none
    assert merged["postgres_exporter"] == "yes"
    assert merged["gpu_exporter"] == {}  # unknown: refused as given, not merged
    assert pillar["defaults"]["web"]["tls"] == {"cert": "/etc/ssl/c.pem"}  # not mutated
    for shared in ("x", ["a"], None):
        merged = settings.prepare({"defaults": shared, "versions": shared, "node_exporter": {}})
        assert merged["node_exporter"] == {}
    assert settings.prepare("x") == "x"
