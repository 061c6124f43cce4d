"""SLS lint: pillar data reaches SLS only as data.

Every ``{{ ... }}`` in SLS text (``salt/**/*.sls``, the lab's ``tests/lab/salt/**/*.sls``
and the Jinja files SLS import:
``map.jinja``, ``macros.jinja``; templates under ``files/`` render config files and
are covered by ``opskit_formats`` instead) must

* end in ``| json`` or ``| tojson`` and stand alone as the whole YAML scalar or key
  (``{{ ("x-" ~ name ~ "-y") | json }}:``, never ``x-{{ name | json }}-y:``, which YAML
  would read as a different structure); or
* call ``raise(...)`` (the render stops: nothing reaches SLS) or one of the
  allow-listed macros in :data:`MACROS` (whose own files are linted like any other).

Files not converted yet are listed in :data:`PENDING` with the area that owns them and
their offence count. The test fails for an offender that is not listed, when a listed
file's count grew, and when a listed file is clean (take it off the list: the list only
shrinks). ``python -m tests.unit.test_sls_lint [FILE...]`` prints the offences.
"""

from __future__ import annotations

import re
import sys

import pytest

from tests.conftest import REPO

# Macros whose calls may stand unfiltered in SLS text: name -> the file defining it.
MACROS = {
    "nginx_site": "salt/nginx/macros.jinja",
    "nginx_site_absent": "salt/nginx/macros.jinja",
    "_check_name": "salt/nginx/macros.jinja",
    "deprecated_keys": "salt/common/macros.jinja",
}

# Not yet converted: file -> (owner area, offences when listed). Shrinks only.
PENDING: dict[str, tuple[str, int]] = {}

_COMMENT_RE = re.compile(r"\{#.*?#\}", re.DOTALL)
_EXPR_RE = re.compile(r"\{\{(-?)(.*?)(-?)\}\}", re.DOTALL)
_DATA_RE = re.compile(r"\|\s*(?:json|tojson)\s*\Z")
_CALL_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(")
# What may stand right before "{{" and right after "}}" when the expression is a scalar.
_BEFORE_OK = set(" \t\n[{,:")
_AFTER_OK = set(" \t\n]},:")


def linted_files() -> list[str]:
    salt = REPO / "salt"
    files = [p for p in salt.rglob("*.sls")]
    files += [p for p in salt.rglob("*.jinja") if "files" not in p.relative_to(salt).parts]
    # The lab's own SLS (tests/lab/salt) read the lab hosts' CMDB records and grains too.
    files += [p for p in (REPO / "tests" / "lab" / "salt").rglob("*.sls")]
    return sorted(str(p.relative_to(REPO)) for p in files)


def _allowed_call(expr: str) -> bool:
    match = _CALL_RE.match(expr)
    if not match:
        return False
    name = match.group(1)
    # The call must be the whole expression: name(...) with balanced parentheses.
    depth, end = 0, None
    for i, char in enumerate(expr[match.end() - 1 :], match.end() - 1):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                end = i
                break
    if end is None or expr[end + 1 :].strip():
        return False
    return name == "raise" or name in MACROS


def offences(text: str) -> list[str]:
    """Human-readable offences in one file's text (line: expression: why)."""
    text = _COMMENT_RE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    found = []
    for match in _EXPR_RE.finditer(text):
        expr = match.group(2).strip()
        line = text.count("\n", 0, match.start()) + 1
        shown = " ".join(expr.split())[:80]
        if _allowed_call(expr):
            continue
        if not _DATA_RE.search(expr):
            found.append(f"{line}: {{{{ {shown} }}}}: does not end in | json")
            continue
        before = text[match.start() - 1] if match.start() else "\n"
        after = text[match.end()] if match.end() < len(text) else "\n"
        if before not in _BEFORE_OK or after not in _AFTER_OK:
            found.append(
                f"{line}: {{{{ {shown} }}}}: glued to other text; build the whole scalar "
                'inside the expression: {{ ("prefix-" ~ x) | json }}'
            )
    return found


def all_offences() -> dict[str, list[str]]:
    result = {}
    for name in linted_files():
        found = offences((REPO / name).read_text(encoding="utf-8"))
        if found:
            result[name] = found
    return result


# --- the lint itself ------------------------------------------------------------------
def test_no_new_offenders_and_pending_only_shrinks():
    current = all_offences()
    problems = []
    for name, found in sorted(current.items()):
        if name not in PENDING:
            problems.append(f"{name} (not on the PENDING list):\n    " + "\n    ".join(found))
        elif len(found) > PENDING[name][1]:
            problems.append(
                f"{name}: {len(found)} offences, the PENDING list allows {PENDING[name][1]}:"
                "\n    " + "\n    ".join(found)
            )
    for name, (owner, _count) in sorted(PENDING.items()):
        if name not in current:
            problems.append(
                f"{name} is clean now: take it off PENDING in tests/unit/test_sls_lint.py "
                f"(owner {owner})"
            )
    assert not problems, "SLS lint:\n" + "\n".join(problems)


def test_pending_list_names_existing_files_and_owners():
    files = set(linted_files())
    owners = {"anubis", "cmdb", "exporters", "foundation", "monitoring", "thumbnail"}
    for name, (owner, count) in PENDING.items():
        assert name in files, name
        assert owner in owners, (name, owner)
        assert count > 0, name


def test_allow_listed_macros_are_defined_where_listed_and_linted():
    for macro, path in MACROS.items():
        assert path in linted_files(), path
        text = (REPO / path).read_text(encoding="utf-8")
        assert re.search(rf"{{%-?\s*macro\s+{macro}\s*\(", text), (macro, path)


# --- the lint's rules, on fixed snippets ---------------------------------------------
@pytest.mark.parametrize(
    "snippet",
    [
        '{{ ("x-" ~ name ~ "-y") | json }}:\n  file.managed: []\n',
        "    - name: {{ path | json }}\n",
        "    - names: [{{ a | json }}, {{ b|tojson }}]\n",
        '{{- raise("bad " ~ value) }}\n',
        '{{ nginx_site("app", contents=x) }}\n',
        "{# {{ example }} in a comment #}\n",
        "{{- x | json -}}\n",
    ],
)
def test_lint_accepts(snippet):
    assert offences(snippet) == []


@pytest.mark.parametrize(
    ("snippet", "why"),
    [
        ("x-{{ name }}-y:\n", "does not end in | json"),
        ("    - name: {{ path }}\n", "does not end in | json"),
        ("x-{{ name | json }}-y:\n", "glued"),
        ("    - name: {{ dir | json }}/{{ name | json }}.conf\n", "glued"),
        ("    - source: salt://{{ tplroot | json }}/x\n", "glued"),
        ("{{ name | json | upper }}\n", "does not end in | json"),
        ('{{ raise("x") ~ name }}\n', "does not end in | json"),
        ("{{ other_macro(x) }}\n", "does not end in | json"),
        ("{{ x | json }}{{ y }}\n", "does not end in | json"),
        ("  '{{ grains[\"id\"] }}':\n", "does not end in | json"),
    ],
)
def test_lint_refuses(snippet, why):
    found = offences(snippet)
    assert found, snippet
    assert any(why in f for f in found), found


def main(argv: list[str]) -> int:
    names = argv or linted_files()
    total = 0
    for name in names:
        found = offences((REPO / name).read_text(encoding="utf-8"))
        total += len(found)
        for item in found:
            print(f"{name}:{item}")
    print(f"{total} offence(s) in {len(names)} file(s)")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
