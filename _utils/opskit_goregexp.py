"""Go regular expressions (RE2 syntax) as Anubis compiles them: check, and translate.

Anubis compiles the regexes of a policy file (``user_agent_regex``, ``path_regex``,
``headers_regex``) with Go's ``regexp.Compile`` (upstream v1.27.0
``lib/config/config.go`` ``BotConfig.Valid`` and ``lib/policy/checker.go``), whose
syntax is RE2's (Go ``src/regexp/syntax/parse.go``, flags ``syntax.Perl``). Python's
``re`` accepts a different language: lookarounds, backreferences, atomic groups,
possessive quantifiers and ``(?x)`` are Python-only, while ``\\z``, ``\\Q...\\E``,
``\\x{...}``, ``[[:alpha:]]``, ``\\pL`` and ``(?U)`` are Go-only; ``a{01}`` is a
repetition in Python and the literal text ``a{01}`` in Go; ``$`` also matches before a
final newline in Python and only at the very end in Go. So ``re.compile`` cannot tell
whether Anubis will accept a pattern.

:py:func:`check` follows Go's parser (the same acceptance rules and error texts,
``error parsing regexp: <code>: `<expr>```), and :py:func:`to_python` turns an accepted
pattern into a Python pattern that matches the same strings (Go's ASCII ``\\d \\s \\w
\\b``, ``$`` as end of text, case folding scoped like Go's flags). Patterns Go accepts
but Python cannot express here (``\\p{...}`` classes) raise :py:class:`Unsupported`.
The opskit ``anubis`` formula uses :py:func:`check` at render time; the lab's Anubis
stand-in uses :py:func:`to_python` to match.

Pure Python (standard library only): the lab stand-in ships this file next to itself.
"""

from __future__ import annotations

import re

# Go's limits (src/regexp/syntax/parse.go): repeat counts, nesting height, compiled size.
MAX_REPEAT = 1000
MAX_HEIGHT = 1000
MAX_SIZE = (128 << 20) // 40
# opskit's own cap on a policy regex's length (upstream has none): with it, Go's limit on
# the runes held by character classes (128 MiB) cannot be reached, so it is not counted.
MAX_LENGTH = 8192

# Go's unicode tables by name (categories, their long aliases, scripts), as far as the
# Unicode 15 data Debian ships (unicode-data: PropertyValueAliases.txt, Scripts.txt).
CATEGORIES = (  # noqa: SIM905 - a word list reads better as text
    "C Cc Cf Cn Co Cs L LC Ll Lm Lo Lt Lu M Mc Me Mn N Nd Nl No P Pc Pd Pe Pf Pi Po Ps "
    "S Sc Sk Sm So Z Zl Zp Zs Any Assigned ASCII"
).split()
CATEGORY_ALIASES = (  # noqa: SIM905 - a word list reads better as text
    "Other Control cntrl Format Unassigned Private_Use Surrogate Letter Cased_Letter "
    "Lowercase_Letter Modifier_Letter Other_Letter Titlecase_Letter Uppercase_Letter Mark "
    "Combining_Mark Spacing_Mark Enclosing_Mark Nonspacing_Mark Number Decimal_Number "
    "digit Letter_Number Other_Number Punctuation punct Connector_Punctuation "
    "Dash_Punctuation Close_Punctuation Final_Punctuation Initial_Punctuation "
    "Other_Punctuation Open_Punctuation Symbol Currency_Symbol Modifier_Symbol Math_Symbol "
    "Other_Symbol Separator Line_Separator Paragraph_Separator Space_Separator"
).split()
SCRIPTS = (  # noqa: SIM905 - a word list reads better as text
    "Adlam Ahom Anatolian_Hieroglyphs Arabic Armenian Avestan Balinese Bamum Bassa_Vah "
    "Batak Bengali Bhaiksuki Bopomofo Brahmi Braille Buginese Buhid Canadian_Aboriginal "
    "Carian Caucasian_Albanian Chakma Cham Cherokee Chorasmian Common Coptic Cuneiform "
    "Cypriot Cypro_Minoan Cyrillic Deseret Devanagari Dives_Akuru Dogra Duployan "
    "Egyptian_Hieroglyphs Elbasan Elymaic Ethiopic Georgian Glagolitic Gothic Grantha "
    "Greek Gujarati Gunjala_Gondi Gurmukhi Han Hangul Hanifi_Rohingya Hanunoo Hatran "
    "Hebrew Hiragana Imperial_Aramaic Inherited Inscriptional_Pahlavi "
    "Inscriptional_Parthian Javanese Kaithi Kannada Katakana Kawi Kayah_Li Kharoshthi "
    "Khitan_Small_Script Khmer Khojki Khudawadi Lao Latin Lepcha Limbu Linear_A Linear_B "
    "Lisu Lycian Lydian Mahajani Makasar Malayalam Mandaic Manichaean Marchen "
    "Masaram_Gondi Medefaidrin Meetei_Mayek Mende_Kikakui Meroitic_Cursive "
    "Meroitic_Hieroglyphs Miao Modi Mongolian Mro Multani Myanmar Nabataean Nag_Mundari "
    "Nandinagari New_Tai_Lue Newa Nko Nushu Nyiakeng_Puachue_Hmong Ogham Ol_Chiki "
    "Old_Hungarian Old_Italic Old_North_Arabian Old_Permic Old_Persian Old_Sogdian "
    "Old_South_Arabian Old_Turkic Old_Uyghur Oriya Osage Osmanya Pahawh_Hmong Palmyrene "
    "Pau_Cin_Hau Phags_Pa Phoenician Psalter_Pahlavi Rejang Runic Samaritan Saurashtra "
    "Sharada Shavian Siddham SignWriting Sinhala Sogdian Sora_Sompeng Soyombo Sundanese "
    "Syloti_Nagri Syriac Tagalog Tagbanwa Tai_Le Tai_Tham Tai_Viet Takri Tamil Tangsa "
    "Tangut Telugu Thaana Thai Tibetan Tifinagh Tirhuta Toto Ugaritic Vai Vithkuqi Wancho "
    "Warang_Citi Yezidi Yi Zanabazar_Square"
).split()

# Perl classes (Go: ASCII only) and POSIX classes, as Python class bodies.
PERL = {"d": "0-9", "s": "\\t\\n\\f\\r ", "w": "0-9A-Za-z_"}
POSIX = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": "\\x00-\\x7f",
    "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z",
    "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}
ESCAPES = {"a": 7, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11}
FOLD, DOTNL, ONELINE, NONGREEDY = 1, 2, 4, 8
# (?flags): the bit each letter changes, and whether the letter sets it (m clears OneLine)
FLAG_LETTERS = {
    "i": (FOLD, True),
    "m": (ONELINE, False),
    "s": (DOTNL, True),
    "U": (NONGREEDY, True),
}


class GoRegexpError(ValueError):
    """Go's regexp.Compile would refuse the pattern; the message is Go's."""

    def __init__(self, code: str, expr: str):
        super().__init__(f"error parsing regexp: {code}: `{expr}`")
        self.code, self.expr = code, expr


class Unsupported(ValueError):
    """Go accepts the pattern, but :py:func:`to_python` has no Python equivalent."""


def _canonical(name: str) -> str:
    """Go's canonicalName: first letter upper case, the rest lower, no '_', '-', ' '."""
    name = name.replace("_", "").replace("-", "").replace(" ", "")
    return name[:1].upper() + name[1:].lower()


_UNICODE_NAMES = {_canonical(n) for n in CATEGORIES + CATEGORY_ALIASES + SCRIPTS}
_UNICODE_NAMES |= set(CATEGORIES + SCRIPTS)


class _Node:
    """Just enough of Go's parse tree for its limits: repeat counts, compiled size and
    height, each computed once from the children (no recursion over deep trees)."""

    __slots__ = ("height", "hi", "kind", "lo", "size", "subs")

    def __init__(self, kind, subs=(), lo=0, hi=0, runes=0):
        self.kind, self.subs, self.lo, self.hi = kind, list(subs), lo, hi
        self.height = 1 + max((s.height for s in self.subs), default=0)
        self.size = max(1, self._size(runes, [s.size for s in self.subs]))

    def _size(self, runes, subs) -> int:
        """calcSize in parse.go."""
        wrapper = {"cap": 2, "star": 2, "plus": 1, "quest": 1}
        if self.kind in wrapper:
            size = wrapper[self.kind] + subs[0]
        elif self.kind == "repeat" and self.hi == -1:
            size = 2 + subs[0] if self.lo == 0 else 1 + self.lo * subs[0]
        elif self.kind == "repeat":
            size = self.hi * subs[0] + (self.hi - self.lo)
        elif self.kind == "alt":
            size = sum(subs) + max(len(subs) - 1, 0)
        else:  # concat adds its parts; a literal counts its runes; the rest count 0
            size = sum(subs) + (runes if self.kind == "lit" else 0)
        return size


def _repeat_is_valid(node: _Node, n: int) -> bool:
    """repeatIsValid in parse.go (iterative)."""
    todo = [(node, n)]
    while todo:
        node, n = todo.pop()
        if node.kind == "repeat":
            m = node.hi if node.hi >= 0 else node.lo
            if m == 0:
                continue
            if m > n:
                return False
            n //= m
        todo.extend((sub, n) for sub in node.subs)
    return True


class _Frame:
    """One open group: its alternatives (each a list of (python text, node)) and the
    flags to restore at its ')'."""

    def __init__(self, saved_flags: int, capture: bool):
        self.saved_flags, self.capture = saved_flags, capture
        self.alternatives: list[list[tuple[str, _Node]]] = [[]]

    def close(self) -> tuple[str, _Node]:
        texts = ["".join(t for t, _ in alt) for alt in self.alternatives]
        nodes = [
            _Node("concat", [n for _, n in alt]) if len(alt) != 1 else alt[0][1]
            for alt in self.alternatives
        ]
        node = nodes[0] if len(nodes) == 1 else _Node("alt", nodes)
        return "(?:" + "|".join(texts) + ")", _Node("cap", [node]) if self.capture else node


class _Parser:
    def __init__(self, pattern: str, translate: bool):
        self.whole = pattern
        self.translate = translate
        self.flags = ONELINE  # syntax.Perl: OneLine set, the rest off
        self.stack = [_Frame(self.flags, capture=False)]
        self.nodes = 0

    # Output ---------------------------------------------------------------------
    def push(self, text: str, node: _Node) -> None:
        if self.translate and self.flags & FOLD and node.kind in ("lit", "class"):
            text = f"(?i:{text})"
        self.stack[-1].alternatives[-1].append((text, node))
        self.nodes += 1
        if self.nodes >= MAX_HEIGHT and node.height > MAX_HEIGHT:
            raise GoRegexpError("expression nests too deeply", self.whole)

    def unsupported(self, what: str):
        if self.translate:
            raise Unsupported(
                f"{what} in {self.whole!r}: valid Go syntax that has no Python rendering here"
            )

    # Main loop (parse() in parse.go) ------------------------------------------------
    def parse(self) -> str:
        t = self.whole
        if len(t) > MAX_LENGTH:
            raise GoRegexpError(f"longer than opskit's {MAX_LENGTH} characters", t[:40] + "…")
        if any(0xD800 <= ord(c) <= 0xDFFF for c in t):
            raise GoRegexpError("invalid UTF-8", t)
        handlers = {
            "(": self.open_paren,
            "|": self.vertical_bar,
            ")": self.close_paren,
            "^": self.caret,
            "$": self.dollar,
            ".": self.dot,
            "[": self.parse_class,
            "\\": self.backslash,
        }
        last_repeat = ""
        while t:
            c = t[0]
            if c in "*+?{":
                t, repeat = self.repeat_op(t, last_repeat)
            else:
                t, repeat = handlers.get(c, self.plain)(t), ""
            last_repeat = repeat
        if len(self.stack) != 1:
            raise GoRegexpError("missing closing )", self.whole)
        text, node = self.stack[0].close()
        if node.size > MAX_SIZE:
            raise GoRegexpError("expression too large", self.whole)
        return text

    def plain(self, t: str) -> str:
        self.literal(t[0])
        return t[1:]

    def open_paren(self, t: str) -> str:
        if len(t) >= 2 and t[1] == "?":
            return self.perl_flags(t)
        self.stack.append(_Frame(self.flags, capture=True))
        return t[1:]

    def vertical_bar(self, t: str) -> str:
        self.stack[-1].alternatives.append([])
        return t[1:]

    def close_paren(self, t: str) -> str:
        if len(self.stack) < 2:
            raise GoRegexpError("unexpected )", self.whole)
        frame = self.stack.pop()
        self.flags = frame.saved_flags
        self.push(*frame.close())
        return t[1:]

    def caret(self, t: str) -> str:
        self.push("\\A" if self.flags & ONELINE else "(?m:^)", _Node("empty"))
        return t[1:]

    def dollar(self, t: str) -> str:
        self.push("\\Z" if self.flags & ONELINE else "(?m:$)", _Node("empty"))
        return t[1:]

    def dot(self, t: str) -> str:
        self.push("(?s:.)" if self.flags & DOTNL else "[^\\n]", _Node("class"))
        return t[1:]

    def repeat_op(self, t: str, last_repeat: str) -> tuple[str, str]:
        """*, +, ? and {n,m}; returns (rest, the repeat's text for the next round)."""
        if t[0] != "{":
            return self.repeat(t[0], (0, 0), t, t[1:], last_repeat), t
        parsed = self.parse_repeat(t)
        if parsed is None:  # not a repeat: '{' is a literal
            return self.plain(t), ""
        lo, hi, after = parsed
        if lo < 0 or lo > MAX_REPEAT or hi > MAX_REPEAT or (hi >= 0 and lo > hi):
            raise GoRegexpError("invalid repeat count", t[: len(t) - len(after)])
        return self.repeat("{", (lo, hi), t, after, last_repeat), t

    def literal(self, char: str) -> None:
        self.push(re.escape(char), _Node("lit", runes=1))

    def backslash(self, t: str) -> str:
        c = t[1] if len(t) >= 2 else ""
        simple = {"A": "\\A", "b": "(?a:\\b)", "B": "(?a:\\B)", "z": "\\Z"}  # Go's \\b is ASCII
        if c in simple:
            self.push(simple[c], _Node("empty"))
            rest = t[2:]
        elif c == "C":
            raise GoRegexpError("invalid escape sequence", t[:2])
        elif c == "Q":
            lit, _, rest = t[2:].partition("\\E")
            for char in lit:
                self.literal(char)
        elif c and c in "pP":
            body, rest = self.unicode_class(t)
            self.push(f"[{body}]", _Node("class"))
        elif c and c.lower() in PERL:
            self.push(f"[{'^' if c.isupper() else ''}{PERL[c.lower()]}]", _Node("class"))
            rest = t[2:]
        else:
            value, rest = self.escape(t)
            self.literal(chr(value))
        return rest

    # Escapes and classes ------------------------------------------------------------
    def escape(self, s: str) -> tuple[int, str]:
        """parseEscape: the code point of an escape at the start of s, and the rest."""
        t = s[1:]
        if not t:
            raise GoRegexpError("trailing backslash at end of expression", "")
        c, t = t[0], t[1:]
        value = None
        if c < "\x80" and not c.isalnum():
            value = ord(c)
        elif c == "0" or (c in "1234567" and t and "0" <= t[0] <= "7"):
            # octal; a single non-zero digit would be a backreference: not supported
            value, t = _octal(c, t)
        elif c == "x" and t:
            value, t = _hex(t)
        elif c in ESCAPES:
            value = ESCAPES[c]
        if value is None:
            raise GoRegexpError("invalid escape sequence", s[: len(s) - len(t)])
        return value, t

    def unicode_class(self, s: str) -> tuple[str, str]:
        """parseUnicodeClass: \\pN, \\p{Name}, \\P{^Name}; checks the name."""
        t = s[2:]
        if not t:
            raise GoRegexpError("invalid escape sequence", s)
        if t[0] != "{":
            seq, name, rest = s[:3], t[0], t[1:]
        else:
            end = s.find("}")
            if end < 0:
                raise GoRegexpError("invalid character class range", s)
            seq, name, rest = s[: end + 1], s[3:end], s[end + 1 :]
        if name.startswith("^"):
            name = name[1:]
        if name not in _UNICODE_NAMES and _canonical(name) not in _UNICODE_NAMES:
            raise GoRegexpError("invalid character class range", seq)
        self.unsupported(f"the Unicode class {seq}")
        return "", rest

    def parse_class(self, s: str) -> str:
        """parseClass: a bracketed class at the start of s; returns the rest."""
        t = s[1:]
        negate = bool(t) and t[0] == "^"
        if negate:
            t = t[1:]
        items, first = [], True
        while not t or t[0] != "]" or first:
            first = False
            if len(t) > 2 and t[0] == "[" and t[1] == ":":
                end = t.find(":]", 2)
                if end >= 0:
                    name = t[: end + 2]
                    inner = name[2:-2]
                    key = inner[1:] if inner.startswith("^") else inner
                    if key not in POSIX:
                        raise GoRegexpError("invalid character class range", name)
                    if inner.startswith("^"):
                        self.unsupported(f"the negated POSIX class {name} inside [...]")
                    items.append(POSIX[key])
                    t = t[end + 2 :]
                    continue
            if len(t) >= 2 and t[0] == "\\" and t[1] in "pP":
                body, t = self.unicode_class(t)
                items.append(body)
                continue
            if len(t) >= 2 and t[0] == "\\" and t[1].lower() in PERL:
                if t[1].isupper():
                    self.unsupported(f"the negated class \\{t[1]} inside [...]")
                items.append(PERL[t[1].lower()])
                t = t[2:]
                continue
            lo, t = self.class_char(t, s)
            hi = lo
            if len(t) >= 2 and t[0] == "-" and t[1] != "]":
                start = t
                hi, t = self.class_char(t[1:], s)
                if hi < lo:
                    rng = chr(lo) + start[: len(start) - len(t)]
                    raise GoRegexpError("invalid character class range", rng)
            items.append(_class_range(lo, hi))
        self.push(f"[{'^' if negate else ''}{''.join(items)}]", _Node("class"))
        return t[1:]

    def class_char(self, s: str, whole: str) -> tuple[int, str]:
        if not s:
            raise GoRegexpError("missing closing ]", whole)
        if s[0] == "\\":
            return self.escape(s)
        return ord(s[0]), s[1:]

    # Groups, flags, repetition ------------------------------------------------------
    def perl_flags(self, s: str) -> str:
        """parsePerlFlags: (?P<name>, (?<name>, (?flags), (?flags: ."""
        t = s
        starts_p = len(t) > 4 and t[2] == "P" and t[3] == "<"
        starts_name = len(t) > 3 and t[2] == "<"
        if starts_p or starts_name:
            begin = 4 if starts_p else 3
            end = t.find(">")
            if end < 0:
                raise GoRegexpError("invalid named capture", s)
            name = t[begin:end]
            if not name or not all(ch == "_" or (ch < "\x80" and ch.isalnum()) for ch in name):
                raise GoRegexpError("invalid named capture", t[: end + 1])
            self.stack.append(_Frame(self.flags, capture=True))
            return t[end + 1 :]
        t = t[2:]
        flags, sign, saw = self.flags, 1, False
        while t:
            c, t = t[0], t[1:]
            if c in FLAG_LETTERS:
                bit, sets = FLAG_LETTERS[c]
                flags, saw = (flags | bit) if sets == (sign > 0) else (flags & ~bit), True
            elif c == "-" and sign > 0:
                sign, saw = -1, False
            elif c in ":)" and (sign > 0 or saw):
                if c == ":":
                    self.stack.append(_Frame(self.flags, capture=False))
                self.flags = flags
                return t
            else:
                break
        raise GoRegexpError("invalid or unsupported Perl syntax", s[: len(s) - len(t)])

    @staticmethod
    def parse_repeat(s: str):
        """parseRepeat: (min, max, rest) for {n}, {n,}, {n,m}; None if s is not one."""
        match = re.match(r"\{(0|[1-9][0-9]*)(,(0|[1-9][0-9]*)?)?\}", s)
        if not match:
            return None

        def number(text):
            return -1 if len(text) > 8 else int(text)  # parseInt stops at 1e8

        lo = number(match.group(1))
        if match.group(2) is None:
            hi = lo
        elif match.group(3) is None:
            hi = -1
        else:
            hi = number(match.group(3))
            if hi < 0:
                lo = -1
        return lo, hi, s[match.end() :]

    def repeat(self, op, bounds, before, after, last_repeat) -> str:
        lo, hi = bounds
        greedy = not self.flags & NONGREEDY
        if after.startswith("?"):
            after, greedy = after[1:], not greedy
        if last_repeat:
            raise GoRegexpError(
                "invalid nested repetition operator", last_repeat[: len(last_repeat) - len(after)]
            )
        current = self.stack[-1].alternatives[-1]
        if not current:
            raise GoRegexpError(
                "missing argument to repetition operator", before[: len(before) - len(after)]
            )
        text, node = current.pop()
        kind = {"*": "star", "+": "plus", "?": "quest", "{": "repeat"}[op]
        new = _Node(kind, [node], lo, hi)
        if op == "{" and (lo >= 2 or hi >= 2) and not _repeat_is_valid(new, MAX_REPEAT):
            raise GoRegexpError("invalid repeat count", before[: len(before) - len(after)])
        if op == "{":
            quant = f"{{{lo}}}" if lo == hi else f"{{{lo},{'' if hi < 0 else hi}}}"
        else:
            quant = op
        current.append((f"(?:{text}){quant}{'' if greedy else '?'}", new))
        return after


def _octal(first: str, t: str) -> tuple[int, str]:
    """Up to three octal digits, the first already read."""
    value = ord(first) - 48
    for _ in range(2):
        if not t or not "0" <= t[0] <= "7":
            break
        value, t = value * 8 + ord(t[0]) - 48, t[1:]
    return value, t


def _hex(t: str) -> tuple[int | None, str]:
    """\\xHH or \\x{H...} after the x; (None, rest) when malformed."""
    hexdigits = "0123456789abcdefABCDEF"
    if t[0] == "{":
        digits, _, rest = t[1:].partition("}")
        if "}" in t and digits and all(d in hexdigits for d in digits):
            value = int(digits, 16)
            if value <= 0x10FFFF:
                return value, rest
        return None, rest
    pair = t[:2]
    if len(pair) == 2 and all(d in hexdigits for d in pair):
        return int(pair, 16), t[2:]
    return None, t[2:]


def _class_range(lo: int, hi: int) -> str:
    def one(code):
        return f"\\U{code:08x}"

    return one(lo) if lo == hi else f"{one(lo)}-{one(hi)}"


def check(pattern: str) -> None:
    """Raise :py:class:`GoRegexpError` (Go's message) if Go would refuse ``pattern``."""
    if not isinstance(pattern, str):
        raise GoRegexpError("not a string", repr(pattern))
    _Parser(pattern, translate=False).parse()


def to_python(pattern: str) -> str:
    """A Python ``re`` pattern matching what the Go pattern matches (``re.search``
    semantics, like Go's ``MatchString``). Raises :py:class:`GoRegexpError` for what
    Go refuses and :py:class:`Unsupported` for what has no rendering here."""
    return _Parser(pattern, translate=True).parse()
