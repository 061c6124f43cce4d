"""_utils/opskit_goregexp.py accepts and refuses what Go's regexp.Compile does (Go
src/regexp/syntax/parse.go, syntax.Perl flags), with Go's error texts, and its Python
translation matches what the Go pattern matches."""

from __future__ import annotations

import re

import opskit_goregexp
import pytest

# (pattern, Go's error or None when Go compiles it)
CASES = [
    ("^/\\.well-known/.*$", None),
    ("(?i)(GPTBot|CCBot)", None),
    ("\\Qa.b\\E\\z", None),
    ("\\x{41}[[:alpha:]]\\pL\\p{Greek}(?U)a+", None),
    ("(?P<n>a)(?<m>b)(?s:.)(?m)^x$", None),
    ("a{01}", None),  # not a repeat in Go: literal text
    ("(?=x)", "invalid or unsupported Perl syntax: `(?=`"),
    ("(?!x)", "invalid or unsupported Perl syntax: `(?!`"),
    ("(?<=a)b", "invalid named capture: `(?<=a)b`"),
    ("(?<!a)b", "invalid named capture: `(?<!a)b`"),
    ("(a)\\1", "invalid escape sequence: `\\1`"),
    ("(?P=n)", "invalid or unsupported Perl syntax: `(?P`"),
    ("(?>a)", "invalid or unsupported Perl syntax: `(?>`"),
    ("a++", "invalid nested repetition operator: `++`"),
    ("a{2}{3}", "invalid nested repetition operator: `{2}{3}`"),
    ("(?x)a", "invalid or unsupported Perl syntax: `(?x`"),
    ("(?#c)", "invalid or unsupported Perl syntax: `(?#`"),
    ("\\Z", "invalid escape sequence: `\\Z`"),
    ("[\\b]", "invalid escape sequence: `\\b`"),
    ("\\C", "invalid escape sequence: `\\C`"),
    ("a{1001}", "invalid repeat count: `{1001}`"),
    ("(a{100}){100}", "invalid repeat count: `{100}`"),
    ("\\p{Klingon}", "invalid character class range: `\\p{Klingon}`"),
    ("[[:word:][:nope:]]", "invalid character class range: `[:nope:]`"),
    ("[z-a]", "invalid character class range: `z-a`"),
    ("*", "missing argument to repetition operator: `*`"),
    ("(a", "missing closing ): `(a`"),
    ("a)", "unexpected ): `a)`"),
    ("[a", "missing closing ]: `[a`"),
    ("(" * 1001 + ")" * 1001, "expression nests too deeply"),
    ("(" + "a" * 4000 + "){1000}", "expression too large"),
]


@pytest.mark.parametrize(("pattern", "error"), CASES, ids=[c[0][:30] for c in CASES])
def test_check_follows_go(pattern, error):
    if error is None:
        opskit_goregexp.check(pattern)
    else:
        with pytest.raises(opskit_goregexp.GoRegexpError) as caught:
            opskit_goregexp.check(pattern)
        assert f"error parsing regexp: {error}" in str(caught.value)


@pytest.mark.parametrize(
    ("pattern", "subject", "matches"),
    [
        ("^/api$", "/api", True),
        ("^/api$", "/api\n", False),  # Go's $ is the end of the text
        ("(?m)^b$", "a\nb\nc", True),
        ("a{01}", "a{01}", True),
        ("a{01}", "a", False),
        ("\\d", "\u0663", False),  # Go's \d is ASCII
        ("\\w+\\b", "caf\u00e9", True),
        ("(?i)bot", "xBOTx", True),
        ("(?i:B)ot", "bOt", False),  # the flag is scoped to its group
        ("[[:upper:]]", "Q", True),
        ("\\Q.*\\E", "a", False),
        ("(?U)a+", "aaa", True),
        ("(?s).", "\n", True),
        (".", "\n", False),
    ],
)
def test_translation_matches_like_go(pattern, subject, matches):
    assert bool(re.search(opskit_goregexp.to_python(pattern), subject)) is matches


def test_unicode_classes_are_valid_go_but_not_translated():
    opskit_goregexp.check("\\p{Latin}")
    with pytest.raises(opskit_goregexp.Unsupported):
        opskit_goregexp.to_python("\\p{Latin}")
