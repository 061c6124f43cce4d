"""The exporters' settings schema works as ``opskit.settings`` loads it on a minion.

``_modules/opskit.py`` puts the synced ``_utils`` directory on ``sys.path`` only while
it imports ``opskit_settings_<formula>`` and takes it off again before it calls
``prepare()`` and validates against ``SCHEMA``, whose per-exporter rules build the
plan. An import made only then (it was in ``check()``) failed on every minion of the lab
("No module named 'saltext'", the pip fallback) although the unit and functional
tiers, which keep ``_utils`` on ``sys.path``, passed. This runs the same sequence in a
fresh interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.conftest import REPO

SCRIPT = textwrap.dedent(
    """
    import importlib, json, sys
    utils = sys.argv[1]
    sys.path.insert(0, utils)
    try:
        module = importlib.import_module("opskit_settings_exporters")
    finally:
        sys.path.remove(utils)
    pillar = module.prepare({
        "defaults": {"source": "archive"},
        "node_exporter": {"ensure": "present", "version": None},
        "redis_exporter": {"ensure": "absent"},
    })
    try:
        module.s.validate(module.SCHEMA, pillar, root="exporters")
    except module.s.SettingsError as err:
        print(json.dumps(err.problems))
    """
)


def test_the_rules_run_after_the_utils_directory_left_sys_path():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(REPO / "_utils")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        [
            "exporters:node_exporter",
            "",
            "version is required with source: archive (opskit installs pinned releases)",
        ]
    ]
