"""The alert rules shipped with the monitoring formula, under promtool.

``promtool`` comes from Debian's ``prometheus`` package, which tests/bootstrap installs
on the host: the same version (2.42) the formula installs on monitoring hosts.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests.conftest import REPO

RULES = REPO / "salt" / "monitoring" / "files" / "opskit.rules.yml"
RULE_TESTS = REPO / "tests" / "unit" / "promtool" / "opskit.rules.test.yml"


@pytest.fixture(scope="module")
def promtool():
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: run tests/bootstrap (installs Debian's prometheus)")
    return path


def _alerts() -> list[str]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule]


def test_rules_pass_promtool_check(promtool):
    proc = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in proc.stdout


def test_rule_unit_tests_pass(promtool):
    proc = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_every_alert_has_a_firing_and_a_quiet_case():
    cases = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
    fires, quiet = set(), set()
    for case in cases:
        for check in case["alert_rule_test"]:
            (fires if check["exp_alerts"] else quiet).add(check["alertname"])
    alerts = set(_alerts())
    assert sorted(alerts - fires) == [], "alerts without a test in which they fire"
    assert sorted(alerts - quiet) == [], "alerts without a test in which they stay quiet"
    assert sorted((fires | quiet) - alerts) == [], "tests of alerts that do not exist"


def test_a_broken_rule_fails_promtool(promtool, tmp_path):
    """The check the formula runs before a rule file goes live refuses a bad rule."""
    bad = tmp_path / "site.yml"
    bad.write_text(
        "groups:\n  - name: site\n    rules:\n      - alert: Bad\n        expr: up ===\n"
    )
    proc = subprocess.run(
        [promtool, "check", "rules", str(bad)], capture_output=True, text=True, check=False
    )
    assert proc.returncode != 0
    assert "parse error" in (proc.stdout + proc.stderr)
