"""The exporters' settings schema works as ``opskit.settings`` loads it on a minion.

``_modules/opskit.py`` puts the synced ``_utils`` directory on ``sys.path`` only while
it imports ``opskit_settings_<formula>`` and takes it off again before it calls
``check()``. An import made inside ``check()`` then failed on every minion of the lab
("No module named 'saltext'", the pip fallback) although the unit and functional
tiers, which keep ``_utils`` on ``sys.path``, passed. This runs the same sequence in a
fresh interpreter.
"""

from __future__ import annotations

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
    problems = list(module.check({
        "node_exporter": {"ensure": "present", "source": "archive", "version": None},
        "redis_exporter": {"ensure": "absent"},
    }))
    print(json.dumps(problems))
    """
)


def test_check_runs_after_the_utils_directory_left_sys_path():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(REPO / "_utils")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "version is required with source: archive" in result.stdout
