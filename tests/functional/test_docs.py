"""The docs build (tests/docs/build, MkDocs --strict with tests/docs/hooks.py) fails on
the mistakes it exists to catch: a README link into docs/ that leads nowhere (page or
anchor), a README link to a repository file that does not exist, a link between pages
to a missing anchor, a heading whose anchor differs between the site and a Git forge,
a page left out of the nav, and a settings schema whose generated option table is out
of date. Each case breaks a copy of the real docs in one place;
the unbroken copy must build."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

MKDOCS = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", "mkdocs.yml"]


@pytest.fixture
def docs_copy(tmp_path):
    for name in ("mkdocs.yml", "README.md", "LICENSE", "CHANGELOG.md"):
        shutil.copy2(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    shutil.copytree(REPO / "_utils", tmp_path / "_utils")
    (tmp_path / "tests" / "docs").mkdir(parents=True)
    for name in ("__init__.py", "docs/__init__.py", "docs/hooks.py", "docs/option_tables.py"):
        shutil.copy2(REPO / "tests" / name, tmp_path / "tests" / name)
    return tmp_path


def _build(root):
    return subprocess.run(
        [*MKDOCS, "-d", str(root / "site")],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def _append(path, text):
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


def test_the_unbroken_docs_build(docs_copy):
    proc = _build(docs_copy)
    assert proc.returncode == 0, proc.stderr
    assert (docs_copy / "site" / "index.html").exists()
    home = (docs_copy / "site" / "index.html").read_text(encoding="utf-8")
    # The README is the home page, its links into docs/ made relative to the site.
    assert 'href="install/"' in home


@pytest.mark.parametrize(
    ("where", "text", "expected"),
    [
        ("README.md", "\nSee [x](docs/no-such-page.md).\n", "no-such-page.md"),
        ("README.md", "\nSee [x](docs/tuning.md#no-such-anchor).\n", "#no-such-anchor"),
        ("README.md", "\nSee [x](NO-SUCH-FILE).\n", "NO-SUCH-FILE"),
        ("docs/anubis.md", "\nSee [x](nginx.md#no-such-anchor).\n", "#no-such-anchor"),
        ("docs/nginx.md", "\n## Sites / pillar\n", "Git forge"),
        ("docs/nginx.md", "\n## Settings\n", "share the anchor"),
        ("docs/not-in-nav.md", "# Orphan\n", "not-in-nav.md"),
        (
            "_utils/opskit_settings_nginx.py",
            "import opskit_schema as s\nSCHEMA = s.Map({'sites_dir': s.Str(doc='sites')})\n",
            "docs/nginx.md: the option table of _utils/opskit_settings_nginx.py is out of date",
        ),
    ],
)
def test_a_broken_link_or_anchor_fails_the_build(docs_copy, where, text, expected):
    target = docs_copy / where
    if target.exists():
        _append(target, text)
    else:
        target.write_text(text, encoding="utf-8")
    proc = _build(docs_copy)
    assert proc.returncode != 0, f"the build passed with {text!r} in {where}"
    assert expected in proc.stderr, proc.stderr
