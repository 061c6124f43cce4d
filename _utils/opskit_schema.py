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
import ipaddress
import math
import posixpath
import re
import urllib.parse

from salt.exceptions import SaltInvocationError

try:
    import opskit_formats  # synced from file_roots, or module_dirs
    import opskit_net
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_formats
    from saltext.opskit.utils import opskit_net

MISSING = object()
_INVALID = object()


class SettingsError(SaltInvocationError):
    """Settings that failed validation; ``problems`` is a list of
    ``(path, shown_value, message)`` and the message lists them all."""

    def __init__(self, root: str, problems: list[tuple[str, str, str]]):
        self.root = root
        self.problems = problems
        count = len(problems)
        lines = [
            f"{root}: {count} invalid setting{'s' if count != 1 else ''}, nothing was applied "
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

    def __bool__(self):
        return bool(self.items)


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
    ``secret``: the value is masked in messages and flagged in the docs. ``doc``: one
    line for the option table. ``check``: a callable ``check(value)`` returning an
    error message (or None), or raising ValueError, run after the type's own checks.
    """

    name = "value"

    def __init__(self, *, default=MISSING, nullable=False, secret=False, doc="", check=None):
        self.default = default
        self.nullable = nullable
        self.secret = secret
        self.doc = doc
        self.extra_check = check

    @property
    def required(self) -> bool:
        return self.default is MISSING and not self.nullable

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
                return _INVALID
        before = len(problems.items)
        result = self.convert(value, path, problems, secret)
        if result is _INVALID or len(problems.items) > before:
            return _INVALID
        if self.extra_check is not None:
            try:
                message = self.extra_check(result)
            except ValueError as err:
                message = str(err)
            if message:
                problems.add(path, value, message, secret)
                return _INVALID
        return result

    def empty(self):
        """What null stands for when there is no default (containers: empty)."""
        return MISSING

    def convert(self, value, path, problems, secret):  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:
        return self.name

    def fail(self, problems, path, value, secret, why=""):
        problems.add(path, value, why or f"must be {self.describe()}", secret)
        return _INVALID


def _text(value, path, problems, secret, allow_tab=False):
    """A str without control/format/separator characters, or _INVALID."""
    if not isinstance(value, str):
        problems.add(path, value, f"must be a string, not {type(value).__name__}", secret)
        return _INVALID
    bad = opskit_formats.unsafe_char(value, allow_tab)
    if bad is not None:
        problems.add(
            path,
            value,
            f"contains {opskit_formats.char_name(bad)}; control and "
            "line-separator characters are refused",
            secret,
        )
        return _INVALID
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
        if text is _INVALID:
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

    def convert(self, value, path, problems, secret):
        if isinstance(value, bool):
            return value
        return self.fail(problems, path, value, secret)


# Directories a setting may never point at themselves (a formula would chmod, chown or
# empty them). Paths below them are fine (/etc/anubis, /var/lib/seafile).
SYSTEM_DIRS = frozenset(
    {
        "/",
        "/bin",
        "/boot",
        "/dev",
        "/etc",
        "/home",
        "/lib",
        "/lib32",
        "/lib64",
        "/libx32",
        "/media",
        "/mnt",
        "/opt",
        "/proc",
        "/root",
        "/run",
        "/sbin",
        "/srv",
        "/sys",
        "/tmp",  # noqa: S108 - refused as a setting, not used
        "/usr",
        "/var",
        "/usr/bin",
        "/usr/lib",
        "/usr/lib64",
        "/usr/libexec",
        "/usr/local",
        "/usr/local/bin",
        "/usr/local/lib",
        "/usr/local/sbin",
        "/usr/sbin",
        "/usr/share",
        "/var/cache",
        "/var/lib",
        "/var/log",
        "/var/spool",
        "/var/tmp",  # noqa: S108 - refused as a setting, not used
        "/etc/systemd",
        "/etc/systemd/system",
        "/etc/ssl",
        "/etc/nginx",
        "/lib/systemd",
        "/lib/systemd/system",
        "/usr/lib/systemd",
        "/usr/lib/systemd/system",
        "/run/systemd",
    }
)
_PATH_CHARS_RE = re.compile(r"/[A-Za-z0-9._@+,=:~/-]*")


class Path(Type):
    """An absolute path, normalised (``//`` and a trailing ``/`` removed), made of
    ``[A-Za-z0-9._@+,=:~-]`` components; ``..`` and ``.`` components, ``/`` itself and
    the system directories in :data:`SYSTEM_DIRS` are refused. ``under`` limits it to
    paths below given directories; ``suffixes`` to names with given endings."""

    name = "absolute path"

    def __init__(self, *, under=(), suffixes=(), max_len=4096, **kw):
        super().__init__(**kw)
        self.under = tuple(under)
        self.suffixes = tuple(suffixes)
        self.max_len = max_len

    def describe(self):
        text = "an absolute path"
        if self.under:
            text += " below " + " or ".join(self.under)
        if self.suffixes:
            text += " ending in " + "/".join(self.suffixes)
        return text

    def convert(self, value, path, problems, secret):  # noqa: PLR0911 - one return per refusal
        text = _text(value, path, problems, secret)
        if text is _INVALID:
            return text
        if len(text) > self.max_len:
            return self.fail(
                problems, path, value, secret, f"is longer than {self.max_len} characters"
            )
        if not text.startswith("/"):
            return self.fail(
                problems, path, value, secret, f"must be {self.describe()} (starting with /)"
            )
        if not _PATH_CHARS_RE.fullmatch(text):
            return self.fail(
                problems,
                path,
                value,
                secret,
                "may only use letters, digits and ._@+,=:~- in its components",
            )
        parts = [p for p in text.split("/") if p]
        if any(p in (".", "..") for p in parts):
            return self.fail(problems, path, value, secret, "must not contain . or .. components")
        normal = "/" + "/".join(parts)
        if normal in SYSTEM_DIRS:
            return self.fail(
                problems,
                path,
                value,
                secret,
                f"is a system directory ({normal}); choose a directory of "
                "this service's own below it",
            )
        if self.under and not any(
            posixpath.commonpath([normal, u]) == u and normal != u for u in self.under
        ):
            return self.fail(problems, path, value, secret)
        if self.suffixes and not normal.endswith(self.suffixes):
            return self.fail(problems, path, value, secret)
        return normal


# Characters RFC 3986 allows in a URL (unreserved, reserved and %), minus those opskit
# refuses by default because config formats treat them specially.
_URL_CHARS_RE = re.compile(r"[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]+")
_HOST_LABEL_RE = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def valid_hostname(host: str) -> bool:
    """A DNS name (RFC 1123 labels, at most 253 characters)."""
    if not host or len(host) > 253:
        return False
    return all(_HOST_LABEL_RE.fullmatch(label) for label in host.rstrip(".").split("."))


class Url(Type):
    """A URL with a scheme from ``schemes`` and a host (DNS name or IP without scope
    id). Credentials (``user:pass@``) are refused unless ``credentials=True``, which
    makes the value secret. ``forbid`` lists characters refused on top of what RFC 3986
    excludes (default: ``$;'()`` which nginx, systemd and shells treat specially)."""

    name = "URL"

    def __init__(
        self, schemes=("http", "https"), *, credentials=False, forbid="$;'()", max_len=2048, **kw
    ):
        if credentials:
            kw["secret"] = True
        super().__init__(**kw)
        self.schemes = tuple(schemes)
        self.credentials = credentials
        self.forbid = forbid
        self.max_len = max_len

    def describe(self):
        return f"a URL ({', '.join(self.schemes)})"

    def convert(self, value, path, problems, secret):  # noqa: PLR0911 - one return per refusal
        text = _text(value, path, problems, secret)
        if text is _INVALID:
            return text
        if len(text) > self.max_len:
            return self.fail(
                problems, path, value, secret, f"is longer than {self.max_len} characters"
            )
        if not _URL_CHARS_RE.fullmatch(text):
            return self.fail(
                problems,
                path,
                value,
                secret,
                "contains characters a URL cannot hold (percent-encode them)",
            )
        bad = [c for c in self.forbid if c in text]
        if bad:
            return self.fail(
                problems,
                path,
                value,
                secret,
                f"must not contain {' '.join(bad)} (percent-encode it)",
            )
        try:
            parts = urllib.parse.urlsplit(text)
            port = parts.port
        except ValueError as err:
            return self.fail(problems, path, value, secret, f"is not a valid URL: {err}")
        if parts.scheme not in self.schemes:
            return self.fail(
                problems,
                path,
                value,
                secret,
                f"must be {self.describe()} (scheme {parts.scheme or 'missing'})",
            )
        if (parts.username is not None or parts.password is not None) and not self.credentials:
            return self.fail(
                problems,
                path,
                value,
                True,
                "must not contain credentials (user:password@); set them in "
                "the option meant for secrets",
            )
        host = parts.hostname or ""
        if "[" in parts.netloc:
            try:
                addr = ipaddress.IPv6Address(host)
            except ValueError:
                return self.fail(problems, path, value, secret, f"{host!r} is not an IPv6 address")
            if addr.scope_id:
                return self.fail(
                    problems, path, value, secret, "must not carry an IPv6 scope id (%zone)"
                )
        elif not valid_hostname(host):
            return self.fail(problems, path, value, secret, "must name a host")
        if port == 0:
            return self.fail(problems, path, value, secret, "port must be 1-65535")
        return text


class Ip(Type):
    """An IPv4 or IPv6 address (``version`` 4 or 6 to limit), without scope id;
    normalised to its compressed form."""

    name = "IP address"

    def __init__(self, version=None, **kw):
        super().__init__(**kw)
        self.version = version

    def describe(self):
        return f"an IPv{self.version} address" if self.version else "an IP address"

    def convert(self, value, path, problems, secret):
        text = _text(value, path, problems, secret)
        if text is _INVALID:
            return text
        if "%" in text:
            return self.fail(
                problems, path, value, secret, "must not carry an IPv6 scope id (%zone)"
            )
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            return self.fail(problems, path, value, secret)
        if self.version and addr.version != self.version:
            return self.fail(problems, path, value, secret)
        return str(addr)


class Network(Type):
    """An IP network in CIDR notation (or a single address); host bits are allowed."""

    name = "IP network"

    def describe(self):
        return "an IP address or CIDR network (10.0.0.0/8)"

    def convert(self, value, path, problems, secret):
        text = _text(value, path, problems, secret)
        if text is _INVALID:
            return text
        if "%" in text:
            return self.fail(problems, path, value, secret, "must not carry a scope id")
        try:
            return str(ipaddress.ip_network(text, strict=False))
        except ValueError:
            return self.fail(problems, path, value, secret)


class Host(Type):
    """A DNS name or an IP address (no scope id)."""

    name = "host"

    def describe(self):
        return "a host name or IP address"

    def convert(self, value, path, problems, secret):
        text = _text(value, path, problems, secret)
        if text is _INVALID:
            return text
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            if valid_hostname(text):
                return text
            return self.fail(problems, path, value, secret)
        if "%" in text:
            return self.fail(problems, path, value, secret, "must not carry a scope id")
        return str(addr)


class Listen(Type):
    """A TCP listen address ``host:port`` (``:9100``, ``127.0.0.1:9100``,
    ``[::1]:9100``; a bare port when ``default_port`` is not set), normalised to
    ``opskit_net.format_listen`` form."""

    name = "listen address"

    def __init__(self, default_port=None, *, allow_hostname=False, **kw):
        super().__init__(**kw)
        self.default_port = default_port
        self.allow_hostname = allow_hostname

    def describe(self):
        return "a listen address HOST:PORT (127.0.0.1:9100, :9100, [::1]:9100)"

    def convert(self, value, path, problems, secret):
        if not isinstance(value, int) or isinstance(value, bool):
            value = _text(value, path, problems, secret)
            if value is _INVALID:
                return value
        try:
            host, port = opskit_net.parse_listen(
                value, self.default_port, allow_hostname=self.allow_hostname
            )
        except ValueError as err:
            message = str(err).removeprefix(f"{value!r}: ")
            return self.fail(problems, path, value, secret, message)
        return opskit_net.format_listen(host, port)


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
    the known ones) unless ``extra=True``, which passes them through unchecked; prefer
    :class:`DictOf` for open key sets."""

    name = "mapping"

    def __init__(self, fields: dict, *, extra=False, **kw):
        super().__init__(**kw)
        self.fields = fields
        self.extra = extra

    def describe(self):
        return "a mapping with keys " + ", ".join(self.fields)

    def empty(self):
        return {}

    def convert(self, value, path, problems, secret):
        if not isinstance(value, dict):
            return self.fail(problems, path, value, secret)
        out = {}
        for key, val in value.items():
            if key not in self.fields:
                if self.extra and isinstance(key, str) and _PLAIN_KEY_RE.fullmatch(key):
                    out[key] = val
                    continue
                problems.add(
                    key_path(path, key),
                    val,
                    f"unknown key (known: {', '.join(self.fields)})",
                    secret,
                )
        for name, kind in self.fields.items():
            where = key_path(path, name)
            if name in value:
                result = kind.validate(value[name], where, problems, secret)
            elif kind.default is not MISSING:
                result = copy.deepcopy(kind.default)
            elif kind.nullable:
                result = None
            elif kind.empty() is not MISSING:
                result = kind.validate(None, where, problems, secret)
            else:
                problems.items.append((where, "", f"is required: {kind.describe()}"))
                continue
            if result is not _INVALID:
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
            if good_key is not _INVALID and result is not _INVALID:
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

    def convert(self, value, path, problems, secret):
        reasons = []
        for alternative in self.alternatives:
            trial = Problems()
            result = alternative.validate(value, path, trial, secret)
            if result is not _INVALID and not trial:
                return result
            reasons += [f"{p}: {m}" if p != path else m for p, _, m in trial.items]
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
    if problems or result is _INVALID:
        raise SettingsError(root, problems.items)
    return result


def _default_text(kind: Type) -> str:
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
