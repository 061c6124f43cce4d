"""Generated option tables: one per formula settings schema, written into its docs page.

Every ``_utils/opskit_settings_<formula>.py`` (``-`` in the formula name written as
``_``) exposes ``SCHEMA``, the settings schema ``opskit.settings`` validates the
formula's pillar with. This script renders it with ``opskit_schema.markdown_table``
(key paths rooted at the formula name, as in the validation messages) and puts the
table into ``docs/<formula>.md`` between two markers::

    <!-- BEGIN generated option table: <formula> -->
    ...
    <!-- END generated option table: <formula> -->

A page without the markers gets an "Option reference" section appended with them; move
it where it reads best, the markers keep it in place from then on.

    .venv/bin/python -m tests.docs.option_tables --write   # regenerate the tables
    .venv/bin/python -m tests.docs.option_tables --check   # exit 1 if one is out of date

The docs build (tests/docs/hooks.py) and tests/unit/test_docs_option_tables.py run the
check, so a schema change without regenerated tables fails CI.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
PREFIX = "opskit_settings_"
BEGIN = "<!-- BEGIN generated option table: {formula} -->"
END = "<!-- END generated option table: {formula} -->"
REGENERATE = "python -m tests.docs.option_tables --write"


@dataclasses.dataclass
class Table:
    formula: str
    module: pathlib.Path
    page: pathlib.Path
    markdown: str


def _import_utils(repo: pathlib.Path, name: str):
    """Import a module of ``<repo>/_utils`` by its plain name, as Salt's loader puts it on
    ``sys.path``. Run this in a process of its own (the CLI, the docs build, a test's
    subprocess): the modules stay imported under their plain names."""
    utils = str(repo / "_utils")
    if utils not in sys.path:
        sys.path.insert(0, utils)
    module = importlib.import_module(name)
    origin = pathlib.Path(module.__file__).resolve()
    if origin.parent != (repo / "_utils").resolve():
        raise SystemExit(f"{name} was imported from {origin}, not from {utils}")
    return module


def tables(repo: pathlib.Path = REPO) -> list[Table]:
    """The option table of every formula schema in ``<repo>/_utils``."""
    found = []
    for path in sorted((repo / "_utils").glob(f"{PREFIX}*.py")):
        formula = path.stem[len(PREFIX) :].replace("_", "-")
        schema_lib = _import_utils(repo, "opskit_schema")
        module = _import_utils(repo, path.stem)
        if not hasattr(module, "SCHEMA"):
            raise SystemExit(f"{path}: has no SCHEMA, so no option table can be made from it")
        # ROOT: the key path prefix of the messages (top-level pillar keys have none);
        # DOCS_PAGE: the page, when the keys are documented with another formula's.
        markdown = schema_lib.markdown_table(module.SCHEMA, getattr(module, "ROOT", formula))
        page = getattr(module, "DOCS_PAGE", formula)
        found.append(Table(formula, path, repo / "docs" / f"{page}.md", markdown))
    return found


def _block(table: Table) -> str:
    return (
        f"{BEGIN.format(formula=table.formula)}\n"
        f"<!-- generated from {table.module.name}: edit the schema, then run {REGENERATE} -->\n\n"
        f"{table.markdown.rstrip()}\n\n"
        f"{END.format(formula=table.formula)}"
    )


def updated_page(text: str, table: Table) -> str:
    """The page's text with the table's block in place (appended if it has none)."""
    begin, end = BEGIN.format(formula=table.formula), END.format(formula=table.formula)
    start = text.find(begin)
    if start < 0:
        section = (
            f"## Option reference: `{table.formula}` settings\n\n"
            f"Generated from the settings schema `_utils/{table.module.name}`, which checks "
            f"pillar `{table.formula}` when the formula renders.\n\n"
        )
        return text.rstrip("\n") + "\n\n" + section + _block(table) + "\n"
    stop = text.find(end, start)
    if stop < 0:
        raise SystemExit(f"{table.page}: '{begin}' has no matching '{end}'")
    return text[:start] + _block(table) + text[stop + len(end) :]


def stale(repo: pathlib.Path = REPO) -> list[str]:
    """What is out of date, one message per page (empty: every table is current)."""
    problems = []
    for table in tables(repo):
        if not table.page.exists():
            problems.append(
                f"{table.module.relative_to(repo)} has no docs page "
                f"{table.page.relative_to(repo)} for its option table"
            )
        elif updated_page(table.page.read_text(encoding="utf-8"), table) != table.page.read_text(
            encoding="utf-8"
        ):
            problems.append(
                f"{table.page.relative_to(repo)}: the option table of "
                f"{table.module.relative_to(repo)} is out of date: run {REGENERATE}"
            )
    return problems


def write(repo: pathlib.Path = REPO) -> list[pathlib.Path]:
    """Bring every table up to date; return the pages that changed."""
    changed = []
    for table in tables(repo):
        if not table.page.exists():
            raise SystemExit(
                f"{table.module.relative_to(repo)}: create {table.page.relative_to(repo)} "
                "(and add it to the nav in mkdocs.yml) first"
            )
        text = table.page.read_text(encoding="utf-8")
        new = updated_page(text, table)
        if new != text:
            table.page.write_text(new, encoding="utf-8")
            changed.append(table.page)
    return changed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="regenerate the tables")
    mode.add_argument("--check", action="store_true", help="exit 1 if a table is stale")
    args = parser.parse_args(argv)
    if args.write:
        for page in write():
            print(f"updated {page.relative_to(REPO)}")
        return 0
    problems = stale()
    for problem in problems:
        print(problem, file=sys.stderr)
    count = len(tables())
    print(f"{count} option table(s) checked, {len(problems)} out of date")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
