"""The declarative settings schema every opskit formula and module validates with.

A schema is a tree of types (:class:`Map` of fields, :class:`DictOf`, :class:`List`,
:class:`Str`, :class:`Int`, :class:`Path`, :class:`Url`, :class:`Listen`, ...).
:func:`validate` walks the data once, applies defaults, normalises values (paths,
addresses), collects every problem and raises one :class:`SettingsError` listing each
key path (``anubis:instances:app:upstream``), the value (secrets masked) and what to
do. :func:`markdown_table` renders the option table for the docs.

The CMDB is untrusted: strings refuse control, format and line-separator characters
(see ``opskit_formats``) unless a type says otherwise, patterns must match the whole
string (``re.fullmatch``: a trailing newline never slips through), paths must be
absolute, normalised and not ``/`` or a system directory, URLs carry no credentials
unless allowed (then they are secret), IP addresses carry no scope id.
"""

from __future__ import annotations

import copy
import logging
import math
import re

from salt.exceptions import SaltInvocationError

log = logging.getLogger(__name__)

try:
    import opskit_formats  # synced from file_roots, or module_dirs
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_formats

MISSING = object()
INVALID = object()


class SettingsError(SaltInvocationError):
    """Settings that failed validation; ``problems`` is a list of
    ``(path, shown_value, message)`` and the message lists them all."""

    def __init__(self, root: str, problems: list[tuple[str, str, str]]):
        self.root = root
        self.problems = problems
        count = len(problems)
        lines = [
            f"{root or 'pillar'}: {count} invalid setting{'s' if count != 1 else ''}, "
            "nothing was applied "
            "(fix the CMDB record or pillar):"
        ]
        lines += [
            f"  - {path}{' = ' + shown if shown else ''}: {message}"
            for path, shown, message in problems
        ]
        super().__init__("\n".join(lines))


class Problems:
    """Collects problems while validating; formula ``check()`` hooks add to it too."""

    def __init__(self):
        self.items: list[tuple[str, str, str]] = []

    def add(self, path: str, value, message: str, secret: bool = False) -> None:
        self.items.append((path, mask(value) if secret else opskit_formats.shorten(value), message))

    def deprecated(self, path: str, advice: str) -> None:
        """A key that is ignored now: logged with its key path and ``advice`` (what
        replaced it), never its value."""
        log.warning("%s", deprecation_note(path, advice))

    def __bool__(self):
        return bool(self.items)


def deprecation_note(path: str, advice: str) -> str:
    return f"{path} is deprecated and ignored: {advice}"


def mask(value) -> str:
    """How a secret value appears in messages."""
    if value is None:
        return "None"
    return f"<secret, {len(str(value))} characters>"


_PLAIN_KEY_RE = re.compile(r"[A-Za-z0-9_.@/+-]+")


def key_path(path: str, key) -> str:
    """``path:key`` with a key shown as is when it is plain, as a shortened repr otherwise
    (hostile keys must not bend the message itself)."""
    shown = key if isinstance(key, str) and _PLAIN_KEY_RE.fullmatch(key) else None
    if shown is None:
        shown = opskit_formats.shorten(key, 40)
    return f"{path}:{shown}" if path else shown


# ---------------------------------------------------------------------------------------
# Types
# ---------------------------------------------------------------------------------------
class Type:
    """Base of all types. Options every type takes:

    ``default``: used when the key is absent (or null and not ``nullable``); absent and
    no default means required. ``nullable``: null is a valid value (kept as None).
    ``optional``: an absent key stays absent (no default, not required; the formula
    decides, e.g. inheriting a parent value). ``secret``: the value is masked in
    messages and flagged in the docs. ``doc``: one line for the option table.
    ``check``: a callable ``check(value)`` returning an error message (or None), or
    raising ValueError, run after the type's own checks.
    """

    name = "value"

    def __init__(
        self, *, default=MISSING, nullable=False, optional=False, secret=False, doc="", check=None
    ):
        self.default = default
        self.nullable = nullable
        self.optional = optional
        self.secret = secret
        self.doc = doc
        self.extra_check = check

    @property
    def required(self) -> bool:
        return self.default is MISSING and not self.nullable and not self.optional

    def validate(self, value, path: str, problems: Problems, secret: bool = False):
        secret = secret or self.secret
        if value is None:
            if self.nullable:
                return None
            if self.default is not MISSING:
                return copy.deepcopy(self.default)
            empty = self.empty()
            if empty is not MISSING:
                value = empty
            else:
                problems.add(path, value, f"is required: {self.describe()}", secret)
                return INVALID
        before = len(problems.items)
        result = self.convert(value, path, problems, secret)
        if result is INVALID or len(problems.items) > before:
            return INVALID
        if self.extra_check is not None:
            try:
                message = self.extra_check(result)
            except ValueError as err:
                message = str(err)
            if message:
                problems.add(path, value, message, secret)
                return INVALID
        return result

    def empty(self):
        """What null stands for when there is no default (containers: empty)."""
        return MISSING

    def takes(self, value) -> bool:
        """Whether ``value`` is of the kind this type reads (for OneOf's messages)."""
        return isinstance(value, str)

    def convert(self, value, path, problems, secret):  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:
        return self.name

    def fail(self, problems, path, value, secret, why=""):
        problems.add(path, value, why or f"must be {self.describe()}", secret)
        return INVALID


def _text(value, path, problems, secret, allow_tab=False):
    """A str without control/format/separator characters, or INVALID."""
    if not isinstance(value, str):
        problems.add(path, value, f"must be a string, not {type(value).__name__}", secret)
        return INVALID
    bad = opskit_formats.unsafe_char(value, allow_tab)
    if bad is not None:
        problems.add(
            path,
            value,
            f"contains {opskit_formats.char_name(bad)}; control and "
            "line-separator characters are refused",
            secret,
        )
        return INVALID
    return value


class Str(Type):
    """A one-line string. ``pattern`` must match the whole string (``re.fullmatch``);
    ``hint`` says in words what it allows (shown in messages and docs). ``choices``
    limits to fixed values. ``max_len`` defaults to 1024."""

    name = "string"

    def __init__(
        self, pattern=None, *, hint="", min_len=0, max_len=1024, choices=None, allow_tab=False, **kw
    ):
        super().__init__(**kw)
        self.pattern = re.compile(pattern) if isinstance(pattern, str) else pattern
        self.hint = hint
        self.min_len = min_len
        self.max_len = max_len
        self.choices = tuple(choices) if choices else None
        self.allow_tab = allow_tab

    def describe(self):
        if self.choices:
            return "one of " + ", ".join(str(c) for c in self.choices)
        if self.hint:
            return self.hint
        if self.pattern is not None:
            return f"a string matching {self.pattern.pattern}"
        return "a one-line string"

    def convert(self, value, path, problems, secret):
        text = _text(value, path, problems, secret, self.allow_tab)
        if text is INVALID:
            return text
        if len(text) > self.max_len:
            return self.fail(
                problems, path, value, secret, f"is longer than {self.max_len} characters"
            )
        if len(text) < self.min_len:
            return self.fail(
                problems,
                path,
                value,
                secret,
                "must not be empty"
                if self.min_len == 1
                else f"must be at least {self.min_len} characters",
            )
        if self.choices and text not in self.choices:
            return self.fail(problems, path, value, secret)
        if self.pattern is not None and not self.pattern.fullmatch(text):
            return self.fail(problems, path, value, secret)
        return text


def SlsName(**kw) -> Str:
    """An SLS name as Salt writes it: dotted components, no leading dot (relative) and
    no empty component."""
    kw.setdefault("hint", "an SLS name (e.g. nginx or postgres.server)")
    return Str(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*", max_len=255, **kw)


def Secret(pattern=None, **kw) -> Str:
    """A string that is masked in every message and flagged as secret in the docs."""
    kw.setdefault("hint", "a secret string")
    return Str(pattern, secret=True, **kw)


class Enum(Type):
    """One of fixed values (compared exactly: ``"1"`` is not ``1``)."""

    def __init__(self, *choices, **kw):
        super().__init__(**kw)
        self.choices = choices

    def describe(self):
        return "one of " + ", ".join(str(c) for c in self.choices)

    def takes(self, value):
        return any(type(value) is type(c) for c in self.choices)

    def convert(self, value, path, problems, secret):
        for choice in self.choices:
            if value == choice and type(value) is type(choice):
                return value
        return self.fail(problems, path, value, secret)


_INT_TEXT_RE = re.compile(r"[+-]?[0-9]{1,18}")


class Int(Type):
    """An integer (also written as a string of digits) within ``min``..``max``."""

    name = "integer"

    def __init__(self, min=None, max=None, **kw):
        super().__init__(**kw)
        self.min, self.max = min, max

    def describe(self):
        if self.min is not None and self.max is not None:
            return f"an integer from {self.min} to {self.max}"
        if self.min is not None:
            return f"an integer of at least {self.min}"
        if self.max is not None:
            return f"an integer of at most {self.max}"
        return "an integer"

    def takes(self, value):
        if isinstance(value, str):
            return bool(_INT_TEXT_RE.fullmatch(value))
        return isinstance(value, int) and not isinstance(value, bool)

    def convert(self, value, path, problems, secret):
        if isinstance(value, str) and _INT_TEXT_RE.fullmatch(value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            return self.fail(problems, path, value, secret)
        if (self.min is not None and value < self.min) or (
            self.max is not None and value > self.max
        ):
            return self.fail(problems, path, value, secret)
        return value


_FLOAT_TEXT_RE = re.compile(r"[+-]?(?:[0-9]{1,15}(?:\.[0-9]{0,9})?|\.[0-9]{1,9})")


class Float(Int):
    """A finite number within ``min``..``max`` (NaN and infinities are refused)."""

    name = "number"

    def describe(self):
        return super().describe().replace("an integer", "a number")

    def takes(self, value):
        if isinstance(value, str):
            return bool(_FLOAT_TEXT_RE.fullmatch(value))
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    def convert(self, value, path, problems, secret):
        if isinstance(value, str) and _FLOAT_TEXT_RE.fullmatch(value):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return self.fail(problems, path, value, secret)
        if not math.isfinite(value):
            return self.fail(problems, path, value, secret)
        if (self.min is not None and value < self.min) or (
            self.max is not None and value > self.max
        ):
            return self.fail(problems, path, value, secret)
        return value


class Bool(Type):
    """true or false (YAML booleans; strings are refused)."""

    name = "true or false"

    def takes(self, value):
        return isinstance(value, bool)

    def convert(self, value, path, problems, secret):
        if isinstance(value, bool):
            return value
        return self.fail(problems, path, value, secret)


class List(Type):
    """A list of ``item`` (``min_items``..``max_items``; ``unique`` refuses repeats)."""

    def __init__(self, item: Type, *, min_items=0, max_items=None, unique=False, **kw):
        super().__init__(**kw)
        self.item = item
        self.min_items, self.max_items, self.unique = min_items, max_items, unique

    def describe(self):
        return f"a list of {self.item.describe()}"

    def empty(self):
        return []

    def takes(self, value):
        return isinstance(value, (list, tuple))

    def convert(self, value, path, problems, secret):
        if not isinstance(value, (list, tuple)):
            return self.fail(problems, path, value, secret)
        if len(value) < self.min_items:
            return self.fail(
                problems, path, value, secret, f"needs at least {self.min_items} item(s)"
            )
        if self.max_items is not None and len(value) > self.max_items:
            return self.fail(problems, path, value, secret, f"takes at most {self.max_items} items")
        out = [self.item.validate(v, f"{path}:{i}", problems, secret) for i, v in enumerate(value)]
        if self.unique:
            seen = []
            for i, v in enumerate(out):
                if v in seen:
                    problems.add(f"{path}:{i}", value[i], "is listed twice", secret)
                seen.append(v)
        return out


class Map(Type):
    """A mapping with fixed fields ``{name: Type}``. Unknown keys are refused (listing
    the known ones; a subclass may say more in :meth:`unknown`) unless ``extra=True``,
    which passes them through unchecked; prefer :class:`DictOf` for open key sets.
    ``deprecated`` maps keys that were options once to what replaced them: such a key is
    accepted and ignored (left out of the result) with a warning naming its key path and
    that text, never its value, so a pillar written for an older opskit still renders;
    the warning is logged, and :func:`deprecations` lists such keys."""

    name = "mapping"

    def __init__(self, fields: dict, *, extra=False, deprecated=None, **kw):
        super().__init__(**kw)
        self.fields = fields
        self.extra = extra
        self.deprecated = dict(deprecated or {})

    def unknown(self, key) -> str:
        """The message for ``key``, which is no field."""
        return f"unknown key (known: {', '.join(self.fields)})"

    def describe(self):
        return "a mapping with keys " + ", ".join(self.fields)

    def _other_key(self, key, val, path, problems, *, secret, out):
        """A key that is no field: passed through (``extra``), ignored with a warning
        (``deprecated``) or refused."""
        if self.extra and isinstance(key, str) and _PLAIN_KEY_RE.fullmatch(key):
            out[key] = val
        elif isinstance(key, str) and key in self.deprecated:
            problems.deprecated(key_path(path, key), self.deprecated[key])
        else:
            problems.add(key_path(path, key), val, self.unknown(key), secret)

    def empty(self):
        return {}

    def takes(self, value):
        return isinstance(value, dict)

    def convert(self, value, path, problems, secret):
        if not isinstance(value, dict):
            return self.fail(problems, path, value, secret)
        out = {}
        for key, val in value.items():
            if key not in self.fields:
                self._other_key(key, val, path, problems, secret=secret, out=out)
        for name, kind in self.fields.items():
            where = key_path(path, name)
            if name in value:
                result = kind.validate(value[name], where, problems, secret)
            elif kind.optional:
                continue
            elif kind.default is not MISSING:
                result = copy.deepcopy(kind.default)
            elif kind.nullable:
                result = None
            elif kind.empty() is not MISSING:
                result = kind.validate(None, where, problems, secret)
            else:
                problems.items.append((where, "", f"is required: {kind.describe()}"))
                continue
            if result is not INVALID:
                out[name] = result
        return out


class DictOf(Type):
    """A mapping from keys of type ``key`` (a :class:`Str` with a pattern, usually) to
    values of type ``value``; hostile keys are refused by the key type."""

    name = "mapping"

    def __init__(self, key: Type, value: Type, *, max_items=None, placeholder="<name>", **kw):
        super().__init__(**kw)
        self.key, self.value = key, value
        self.max_items = max_items
        self.placeholder = placeholder

    def describe(self):
        return f"a mapping of {self.key.describe()} to {self.value.describe()}"

    def empty(self):
        return {}

    def takes(self, value):
        return isinstance(value, dict)

    def convert(self, value, path, problems, secret):
        if not isinstance(value, dict):
            return self.fail(problems, path, value, secret)
        if self.max_items is not None and len(value) > self.max_items:
            return self.fail(
                problems, path, value, secret, f"takes at most {self.max_items} entries"
            )
        out = {}
        for key, val in value.items():
            where = key_path(path, key)
            good_key = self.key.validate(key, where, problems, secret=False)
            result = self.value.validate(val, where, problems, secret)
            if good_key is not INVALID and result is not INVALID:
                if good_key in out:
                    problems.add(where, key, "names the same entry as another key", secret)
                out[good_key] = result
        return out


class OneOf(Type):
    """The first alternative that accepts the value wins; when none does, the message
    lists what each would have needed."""

    def __init__(self, *alternatives: Type, **kw):
        super().__init__(**kw)
        self.alternatives = alternatives

    def describe(self):
        return " or ".join(a.describe() for a in self.alternatives)

    def takes(self, value):
        return any(a.takes(value) for a in self.alternatives)

    def convert(self, value, path, problems, secret):
        trials = []
        for alternative in self.alternatives:
            trial = Problems()
            result = alternative.validate(value, path, trial, secret)
            if result is not INVALID and not trial:
                return result
            trials.append((alternative, trial))
        # Only alternatives that take values of this kind explain much.
        shaped = [(a, t) for a, t in trials if a.takes(value)] or trials
        if len(shaped) == 1:
            problems.items.extend(shaped[0][1].items)
            return INVALID
        reasons = [m for _, t in shaped for p, _, m in t.items]
        return self.fail(
            problems, path, value, secret, f"must be {self.describe()} ({'; '.join(reasons)})"
        )


# ---------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------
def validate(schema: Type, data, root: str):
    """Validate ``data`` against ``schema``; return it normalised with defaults applied,
    or raise :class:`SettingsError` listing every problem."""
    problems = Problems()
    result = schema.validate(data, root, problems)
    if problems or result is INVALID:
        raise SettingsError(root, problems.items)
    return result


def deprecations(schema: Type, data, root: str) -> list[str]:
    """The deprecated keys in ``data`` (see :class:`Map`), one line each with its key
    path and what replaced it, never its value. Only walks ``data`` along the schema:
    nothing is converted, checked or logged, so it costs far less than :func:`validate`;
    a part of ``data`` of the wrong type is not walked (validation refuses it)."""
    notes: list[str] = []

    def walk(kind, value, path):
        if isinstance(kind, Map) and isinstance(value, dict):
            for key, val in value.items():
                if key in kind.fields:
                    walk(kind.fields[key], val, key_path(path, key))
                elif isinstance(key, str) and key in kind.deprecated:
                    notes.append(deprecation_note(key_path(path, key), kind.deprecated[key]))
        elif isinstance(kind, DictOf) and isinstance(value, dict):
            for key, val in value.items():
                walk(kind.value, val, key_path(path, key))
        elif isinstance(kind, List) and isinstance(value, list):
            for index, item in enumerate(value):
                walk(kind.item, item, f"{path}:{index}")
        elif isinstance(kind, OneOf):
            taking = [a for a in kind.alternatives if a.takes(value)]
            if taking:
                walk(taking[0], value, path)

    walk(schema, data, root)
    return notes


def masked(kind: Type, value):
    """A copy of validated settings ``value`` in which every value the schema flags as
    secret is replaced by :func:`mask` (for showing merged settings, e.g. ``_mapdata``)."""
    if kind.secret and value is not None:
        return mask(value)
    if isinstance(kind, Map) and isinstance(value, dict):
        return {
            key: masked(kind.fields[key], val) if key in kind.fields else val
            for key, val in value.items()
        }
    if isinstance(kind, DictOf) and isinstance(value, dict):
        return {key: masked(kind.value, val) for key, val in value.items()}
    if isinstance(kind, List) and isinstance(value, list):
        return [masked(kind.item, val) for val in value]
    if isinstance(kind, OneOf):
        for alternative in kind.alternatives:
            if alternative.takes(value):
                return masked(alternative, value)
    return value


def _default_text(kind: Type) -> str:
    if kind.optional and kind.default is MISSING:
        return "(see description)"
    if kind.default is MISSING:
        empty = kind.empty()
        if empty is not MISSING:
            return f"`{empty}`"
        return "required" if kind.required else "`None`"
    if kind.secret:
        return "(secret)"
    return f"`{kind.default!r}`" if kind.default not in ({}, []) else f"`{kind.default}`"


def _rows(kind: Type, path: str):
    if isinstance(kind, Map):
        if kind.doc and path:
            yield path, kind
        for name, sub in kind.fields.items():
            yield from _rows(sub, f"{path}:{name}" if path else name)
    elif isinstance(kind, DictOf):
        yield path, kind
        yield from _rows(kind.value, f"{path}:{kind.placeholder}")
    elif isinstance(kind, List) and isinstance(kind.item, (Map, DictOf)):
        yield path, kind
        yield from _rows(kind.item, f"{path}:<n>")
    else:
        yield path, kind


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(schema: Type, root: str) -> str:
    """The option table for the docs: key path, type, default, description."""
    lines = ["| Key | Type | Default | Description |", "| --- | --- | --- | --- |"]
    for path, kind in _rows(schema, root):
        described = kind.describe() + (" (secret)" if kind.secret else "")
        lines.append(
            f"| `{_cell(path)}` | {_cell(described)} | {_cell(_default_text(kind))} "
            f"| {_cell(kind.doc)} |"
        )
    return "\n".join(lines) + "\n"


# Paths and network values live in opskit_schema_addr (module size); they are part of
# this vocabulary: ``opskit_schema.Path`` etc. load it on first use (PEP 562).
_ADDR_NAMES = frozenset(
    {"SYSTEM_DIRS", "Host", "Ip", "Listen", "Network", "Path", "Url", "valid_hostname"}
)


def __getattr__(name):
    if name not in _ADDR_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        import opskit_schema_addr  # synced from file_roots, or module_dirs
    except ImportError:  # installed with pip
        from saltext.opskit.utils import opskit_schema_addr
    return getattr(opskit_schema_addr, name)
