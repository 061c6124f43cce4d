"""The option-table generator (tests/docs/option_tables.py): the committed tables are
current, and the check notices a missing or stale table. The generator imports the
schema modules under their plain names, so each run is a subprocess of its own."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO

DEMO_SCHEMA = '''
"""Settings schema of a demo formula, for the generator's test."""
import opskit_schema as s

SCHEMA = s.Map({
    "port": s.Int(1, 65535, default=8080, doc="DOC"),
    "password": s.Secret(doc="the admin password"),
})
'''


def _run(root, *args):
    return subprocess.run(
        [sys.executable, "-m", "tests.docs.option_tables", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_the_committed_option_tables_are_current():
    proc = _run(REPO, "--check")
    assert proc.returncode == 0, proc.stderr
    count = len(list((REPO / "_utils").glob("opskit_settings_*.py")))
    assert f"{count} option table(s) checked, 0 out of date" in proc.stdout


@pytest.fixture
def demo_repo(tmp_path):
    shutil.copytree(REPO / "_utils", tmp_path / "_utils")
    for stale in (tmp_path / "_utils").glob("opskit_settings_*.py"):
        stale.unlink()
    (tmp_path / "tests" / "docs").mkdir(parents=True)
    for name in ("tests/__init__.py", "tests/docs/__init__.py", "tests/docs/option_tables.py"):
        shutil.copy2(REPO / name, tmp_path / name)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "demo.md").write_text("# demo formula\n\nProse.\n")
    return tmp_path


def _schema(root, doc):
    source = textwrap.dedent(DEMO_SCHEMA).replace("DOC", doc)
    (root / "_utils" / "opskit_settings_demo.py").write_text(source)


def test_a_missing_table_is_found_then_written(demo_repo):
    _schema(demo_repo, "TCP port")
    proc = _run(demo_repo, "--check")
    assert proc.returncode == 1
    assert "docs/demo.md: the option table of _utils/opskit_settings_demo.py is out of date" in (
        proc.stderr
    )
    assert _run(demo_repo, "--write").returncode == 0
    page = (demo_repo / "docs" / "demo.md").read_text()
    assert page.startswith("# demo formula\n\nProse.\n")
    assert "| `demo:port` | an integer from 1 to 65535 | `8080` | TCP port |" in page
    assert "| `demo:password` | a secret string (secret)" in page
    assert _run(demo_repo, "--check").returncode == 0


def test_a_schema_change_makes_the_table_stale_and_write_replaces_it(demo_repo):
    _schema(demo_repo, "TCP port")
    _run(demo_repo, "--write")
    # Prose after the table stays where it is when the table is regenerated.
    page = demo_repo / "docs" / "demo.md"
    page.write_text(page.read_text() + "\nMore prose.\n")
    _schema(demo_repo, "the port clients connect to")
    assert _run(demo_repo, "--check").returncode == 1
    assert _run(demo_repo, "--write").returncode == 0
    text = page.read_text()
    assert "the port clients connect to" in text
    assert "| TCP port |" not in text
    assert text.count("<!-- BEGIN generated option table: demo -->") == 1
    assert text.endswith("\nMore prose.\n")
    assert _run(demo_repo, "--check").returncode == 0


def test_a_schema_without_a_docs_page_is_reported(demo_repo):
    _schema(demo_repo, "TCP port")
    (demo_repo / "docs" / "demo.md").unlink()
    proc = _run(demo_repo, "--check")
    assert proc.returncode == 1
    assert "_utils/opskit_settings_demo.py has no docs page docs/demo.md" in proc.stderr
