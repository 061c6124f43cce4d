"""MkDocs hooks for opskit's documentation build (see mkdocs.yml).

- README.md becomes the site's home page (``index.md``), its links into ``docs/``
  rewritten relative to the docs directory, so that MkDocs checks them (pages and
  anchors) like any other link. Links from the README to other files of the repository
  (``LICENSE``, ``CHANGELOG.md``) must name a file that exists; they become plain text
  on the site.
- The generated option tables (tests/docs/option_tables.py) must be current: a
  settings schema changed without regenerating its table fails the build.
- Every heading must get the same anchor on the site and on a Git forge's Markdown view
  (GitHub-style slugs), so that a link such as ``docs/tuning.md#the-auto-rule`` works in
  both; duplicate headings in one page are refused for the same reason.

Problems are logged as warnings, which ``mkdocs build --strict`` turns into a failure.
"""

from __future__ import annotations

import pathlib
import re
import sys

from markdown.extensions.toc import slugify as mkdocs_slugify
from mkdocs.plugins import get_plugin_logger
from mkdocs.structure.files import File
from mkdocs.structure.files import InclusionLevel

log = get_plugin_logger("opskit-docs")

# [text](target) not preceded by "!" (images are not used); target without spaces.
LINK_RE = re.compile(r"(?<!!)\[(?P<text>[^\]]+)\]\((?P<target>[^)\s]+)\)")
FENCE_RE = re.compile(r"^\s*(```|~~~)")
HEADING_RE = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _repo_root(config) -> pathlib.Path:
    return pathlib.Path(config.config_file_path).resolve().parent


def _readme_for_site(text: str, repo: pathlib.Path) -> str:
    """README.md with its links made relative to docs/; other local links checked."""

    def replace(match: re.Match) -> str:
        text, target = match.group("text"), match.group("target")
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            return match.group(0)
        if target.startswith("docs/"):
            return f"[{text}]({target[len('docs/') :]})"
        path = target.split("#", 1)[0]
        if not (repo / path).exists():
            log.warning("README.md links to '%s', which does not exist in the repository", target)
        return text

    return LINK_RE.sub(replace, text)


def github_slug(heading: str) -> str:
    """The anchor a GitHub-style Markdown view gives a heading (for plain text)."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _heading_text(raw: str) -> str:
    """A heading's visible text: links reduced to their text, code and emphasis marks gone."""
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", raw)
    return text.replace("`", "").replace("**", "")


def on_pre_build(config):
    repo = _repo_root(config)
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    from tests.docs import option_tables

    for problem in option_tables.stale(repo):
        log.warning("%s", problem)


def on_files(files, config):
    repo = _repo_root(config)
    readme = (repo / "README.md").read_text(encoding="utf-8")
    if files.get_file_from_path("index.md") is not None:
        log.warning("docs/index.md exists: the site's home page is generated from README.md")
        return files
    files.append(
        File.generated(
            config,
            "index.md",
            content=_readme_for_site(readme, repo),
            inclusion=InclusionLevel.INCLUDED,
        )
    )
    return files


def on_page_markdown(markdown, page, config, files):
    seen: dict[str, str] = {}
    fenced = False
    for line in markdown.splitlines():
        if FENCE_RE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else HEADING_RE.match(line)
        if not match:
            continue
        text = _heading_text(match.group(2))
        ours, forge = mkdocs_slugify(text, "-"), github_slug(text)
        where = page.file.src_uri if page.file.src_uri != "index.md" else "README.md"
        if ours != forge:
            log.warning(
                "%s: heading '%s' gets anchor '#%s' on the site but '#%s' on a Git forge; "
                "reword it (no runs of spaces or hyphens, no non-ASCII letters)",
                where,
                match.group(2),
                ours,
                forge,
            )
        if ours in seen:
            log.warning(
                "%s: headings '%s' and '%s' share the anchor '#%s'",
                where,
                seen[ours],
                match.group(2),
                ours,
            )
        seen[ours] = match.group(2)
    return markdown
