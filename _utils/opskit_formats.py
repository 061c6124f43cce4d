"""One renderer and one quoting rule per file format opskit writes.

Every formula and module renders configuration through these functions, so each
format's quoting rule lives in one place: systemd units and drop-ins (``ExecStart=``
argv words, ``Key=value`` settings, ``Environment=`` assignments, whole files from
sections), env files read by systemd's ``EnvironmentFile=`` and by docker compose's
``env_file:`` (with parsers that read them back, for diffs), nginx directives, sysctl.d
lines and YAML documents.

Every function refuses text a reader could split into two lines or silently change:
CR, LF, NUL and every other control character (Unicode category Cc, TAB included, and
U+0085), the Unicode line and paragraph separators U+2028/U+2029, format and bidi
controls (category Cf, e.g. U+202E) and lone surrogates. It raises
:class:`UnsafeValue` naming the key path and a shortened ``repr`` of the value. Each
format's metacharacters are quoted where the reader has a quoting rule, and refused
where it has none.
"""

from __future__ import annotations

import posixpath
import re
import unicodedata

# ---------------------------------------------------------------------------------------
# The shared refusal
# ---------------------------------------------------------------------------------------
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_CHAR_NAMES = {
    "\n": "a line feed (LF)",
    "\r": "a carriage return (CR)",
    "\0": "a NUL byte",
    "\t": "a tab",
    "\x85": "a next-line character (U+0085)",
    "\u2028": "a line separator (U+2028)",
    "\u2029": "a paragraph separator (U+2029)",
}


def shorten(value, limit: int = 60) -> str:
    """``repr(value)`` cut to about ``limit`` characters, saying how long it was."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f", {len(value)} characters" if isinstance(value, (str, bytes)) else ""
    return f"{text[:limit]}…{text[-1]} (shortened{size})"


class UnsafeValue(ValueError):
    """A value a format cannot carry safely. ``path`` is the key path
    (``anubis:instances:app:upstream``), ``value`` the value, ``reason`` why."""

    def __init__(self, path: str, value, reason: str):
        self.path = path or "value"
        self.value = value
        self.reason = reason
        super().__init__(f"{self.path}: {shorten(value)} {reason}")


def char_name(char: str) -> str:
    """``'\\n'`` -> ``a line feed (LF)``; ``'\\u202e'`` -> ``U+202E (RIGHT-TO-LEFT OVERRIDE)``."""
    if char in _CHAR_NAMES:
        return _CHAR_NAMES[char]
    return f"U+{ord(char):04X} ({unicodedata.name(char, 'control character')})"


def unsafe_char(text: str, allow_tab: bool = False) -> str | None:
    """The first character of ``text`` no format may carry, or None."""
    for char in text:
        if char == "\t" and allow_tab:
            continue
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            return char
    return None


def check_text(value, path: str = "", *, allow_tab: bool = False) -> str:
    """``value`` as text, refused (:class:`UnsafeValue`) if it holds a control, format or
    line-separator character. Booleans and other non-scalars are refused: callers
    convert them on purpose."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise UnsafeValue(path, value, f"must be text or a number, not {type(value).__name__}")
    text = str(value)
    bad = unsafe_char(text, allow_tab)
    if bad is not None:
        raise UnsafeValue(
            path,
            value,
            f"contains {char_name(bad)}; control and line-separator characters "
            "are refused in every configuration file opskit writes",
        )
    return text


def _join(path: str, key) -> str:
    return f"{path}:{key}" if path else str(key)


def comment(text: str, path: str = "header", marker: str = "#") -> str:
    """Comment lines (``# ...``) for a file header; ``text`` may hold several lines
    (LF-separated), each line is checked like any other value."""
    lines = []
    for line in str(text).split("\n"):
        check_text(line, path)
        lines.append(f"{marker} {line}".rstrip())
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# systemd unit files and drop-ins
#
# Facts from systemd's source:
# * src/shared/conf-parser.c (config_parse, parse_line): a file is read line by line
#   (LF, and CR in read_line_full, end a line); a line whose last backslash is not
#   itself escaped continues on the next line; lines starting with # or ; are comments;
#   "Key=value" is split at the first "=" and both sides are stripped of whitespace.
# * Most settings resolve % specifiers (unit_full_printf & co. in load-fragment.c);
#   "%%" is a literal "%".
# * src/core/load-fragment.c (config_parse_exec): the command line is split with
#   extract_first_word(EXTRACT_UNQUOTE|EXTRACT_CUNESCAPE) (src/basic/extract-word.c):
#   double quotes group words, backslash escapes are C escapes (\\ \" \n ...); an
#   unquoted lone ";" separates commands; the first word's leading "-@:+!" characters
#   are prefixes (ignore failure, argv0, no env expansion, full privileges); at exec
#   time "$VAR"/"${VAR}" are expanded and "$$" is a literal "$".
# * config_parse_environ: Environment= is split the same way (quotes, C escapes), each
#   word is one VAR=value assignment; specifiers are resolved, "$" is not expanded.
# ---------------------------------------------------------------------------------------
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UNIT_KEY_RE = re.compile(r"[A-Z][A-Za-z0-9]*")
_SECTION_RE = re.compile(r"[A-Z][A-Za-z0-9-]*")
# Characters that need no quoting in an argv word (after % and $ are doubled).
_SYSTEMD_BARE_RE = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")
EXEC_PREFIXES = ("", "-", "+", "!", "@", ":", "-+", "+-", "-!", "!-")


def _systemd_escape(text: str, specifiers: bool, dollars: bool) -> str:
    if not specifiers:
        text = text.replace("%", "%%")
    if dollars:
        text = text.replace("$", "$$")
    return text


def systemd_word(
    value, path: str = "", *, specifiers: bool = False, expand_env: bool = True
) -> str:
    """One word of a command line (``ExecStart=``) or of a space-separated list setting,
    quoted so systemd hands the program exactly ``value``.

    ``%`` becomes ``%%`` (no specifier) and, where systemd expands environment
    variables (``expand_env``, true for Exec lines), ``$`` becomes ``$$``. Words with
    anything but ``[A-Za-z0-9_@%+=:,./-]`` go in double quotes with ``\\`` and ``"``
    escaped, so ``;``, spaces and quotes stay part of the word. ``specifiers=True`` keeps
    ``%`` for values opskit builds itself (``%d/cred``), never for pillar data.
    """
    text = _systemd_escape(check_text(value, path), specifiers, expand_env)
    if _SYSTEMD_BARE_RE.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_exec(argv, path: str = "", *, prefix: str = "", specifiers: bool = False) -> str:
    """An ``ExecStart=`` (``ExecStartPre=``, ...) value from an argv list.

    The program must be an absolute path: systemd reads a leading ``-@:+!`` of the first
    word as prefixes even inside quotes, so a relative or prefixed program name from
    data could, for example, run a command with full privileges (``+``). ``prefix`` is
    opskit's own choice from :data:`EXEC_PREFIXES`.
    """
    if prefix not in EXEC_PREFIXES:
        raise UnsafeValue(path, prefix, f"is not an Exec prefix ({' '.join(EXEC_PREFIXES[1:])})")
    if isinstance(argv, (str, bytes)) or not argv:
        raise UnsafeValue(path, argv, "must be a non-empty list of arguments")
    program = check_text(argv[0], _join(path, 0))
    if not program.startswith("/") or posixpath.normpath(program) != program:
        raise UnsafeValue(_join(path, 0), program, "must be an absolute, normalised path")
    words = [systemd_word(program, _join(path, 0), specifiers=specifiers)]
    words += [
        systemd_word(arg, _join(path, i), specifiers=specifiers)
        for i, arg in enumerate(argv[1:], 1)
    ]
    return prefix + " ".join(words)


def systemd_value(value, path: str = "", *, specifiers: bool = False) -> str:
    """The right-hand side of a plain ``Key=value`` setting (``User=``, ``Description=``,
    ``MemoryMax=``). Booleans become ``yes``/``no``; ``%`` is doubled. systemd strips
    surrounding whitespace and continues a line ending in a backslash, so values with
    either are refused. Use :func:`systemd_word` for list settings whose words may hold
    spaces."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = check_text(value, path)
    if text != text.strip():
        raise UnsafeValue(path, value, "has leading or trailing whitespace, which systemd drops")
    if text.endswith("\\"):
        raise UnsafeValue(path, value, "ends in a backslash, which continues the line in systemd")
    return _systemd_escape(text, specifiers, dollars=False)


def systemd_environment(name, value, path: str = "", *, specifiers: bool = False) -> str:
    """One ``Environment=`` value: ``"NAME=value"`` in double quotes (``\\`` and ``"``
    escaped, ``%`` doubled; systemd does not expand ``$`` here)."""
    where = _join(path, name)
    if not isinstance(name, str) or not ENV_NAME_RE.fullmatch(name):
        raise UnsafeValue(
            where, name, "is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"
        )
    if isinstance(value, bool):
        value = "true" if value else "false"
    text = _systemd_escape(check_text(value, where), specifiers, dollars=False)
    return '"' + f"{name}={text}".replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unit_lines(key: str, value, path: str, specifiers: bool) -> list[str]:
    where = _join(path, key)
    if not _UNIT_KEY_RE.fullmatch(key):
        raise UnsafeValue(where, key, "is not a systemd setting name")
    if value is None:
        return []
    if key.startswith("Exec"):
        if isinstance(value, (list, tuple)) and not value:
            return [f"{key}="]  # an empty list resets the setting (drop-ins)
        commands = value if value and isinstance(value[0], (list, tuple)) else [value]
        return [
            f"{key}={systemd_exec(argv, _join(where, i), specifiers=specifiers)}"
            for i, argv in enumerate(commands)
        ]
    if key == "Environment" and isinstance(value, dict):
        return [
            f"Environment={systemd_environment(n, v, where, specifiers=specifiers)}"
            for n, v in value.items()
        ]
    if isinstance(value, (list, tuple)):
        return [
            f"{key}={systemd_value(v, _join(where, i), specifiers=specifiers)}"
            for i, v in enumerate(value)
        ]
    return [f"{key}={systemd_value(value, where, specifiers=specifiers)}"]


def systemd_unit(sections: dict, header: str = "", path: str = "", *, specifiers=False) -> str:
    """A unit file or drop-in from ``{section: {Key: value}}`` (or a list of
    ``(Key, value)`` pairs to repeat keys in order).

    Values: text/numbers -> :func:`systemd_value`; booleans -> yes/no; ``Exec*`` keys take
    an argv list (or a list of them) -> :func:`systemd_exec`, or ``[]`` for ``Key=``
    (a drop-in's reset of the unit's list); ``Environment`` takes a
    mapping -> :func:`systemd_environment`; other lists repeat the key; None omits it.
    """
    out = [comment(header).rstrip("\n")] if header else []
    for section, settings in sections.items():
        if not isinstance(section, str) or not _SECTION_RE.fullmatch(section):
            raise UnsafeValue(_join(path, section), section, "is not a systemd section name")
        out.append(f"[{section}]")
        items = settings.items() if isinstance(settings, dict) else settings
        for key, value in items:
            out += _unit_lines(key, value, _join(path, section), specifiers)
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


_CUNESCAPE = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}


def split_systemd_words(text: str) -> list[str]:
    """Split a setting's value as extract_first_word(EXTRACT_UNQUOTE|EXTRACT_CUNESCAPE)
    does (double and single quotes, C escapes), and undo ``%%``: the inverse of
    :func:`systemd_word`/:func:`systemd_environment` for reading files back."""
    words, word, quote, started = [], [], None, False
    chars = iter(text)
    for char in chars:
        if char == "\\":
            nxt = next(chars, "")
            word.append(_CUNESCAPE.get(nxt, nxt))
            started = True
        elif quote:
            if char == quote:
                quote = None
            else:
                word.append(char)
        elif char in "\"'":
            quote, started = char, True
        elif char in " \t":
            if started:
                words.append("".join(word))
                word, started = [], False
        else:
            word.append(char)
            started = True
    if started:
        words.append("".join(word))
    return [w.replace("%%", "%") for w in words]


def parse_systemd_environment_lines(text: str) -> dict[str, str]:
    """The variables a unit or drop-in sets with ``Environment=`` lines (later wins)."""
    env = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "Environment":
            for word in split_systemd_words(value.strip()):
                name, eq, val = word.partition("=")
                if eq:
                    env[name] = val
    return env


# ---------------------------------------------------------------------------------------
# Env files: systemd EnvironmentFile= and docker compose env_file:
#
# systemd, src/basic/env-file.c (parse_env_file_internal, used by load_env_file for
# EnvironmentFile=): lines end at LF or CR (NEWLINE is "\n\r"); # and ; start comments;
# inside double quotes a backslash before one of SHELL_NEED_ESCAPE ("\"\\`$") yields
# that character, before a newline joins lines, before anything else is kept; nothing
# is expanded. Single-quoted values are literal; unquoted values lose trailing space.
#
# docker compose v2 (compose-go dotenv/parser.go, docs.docker.com/compose/how-tos/
# environment-variables/variable-interpolation/#env-file-syntax): single-quoted values
# are taken literally, no escapes and no ${VAR} interpolation, but a quote preceded by
# a backslash does not end the value (and the backslash stays). Double-quoted and
# unquoted values are interpolated. So: single quotes, and values containing ' or
# ending in \ are refused: there is no way to write them literally.
# ---------------------------------------------------------------------------------------
_SYSTEMD_ENV_ESCAPE = str.maketrans({c: "\\" + c for c in '"\\`$'})


def _env_items(env: dict, path: str):
    if not isinstance(env, dict):
        raise UnsafeValue(path, env, "must be a mapping of variable names to values")
    for name, value in env.items():
        where = _join(path, name)
        if not isinstance(name, str) or not ENV_NAME_RE.fullmatch(name):
            raise UnsafeValue(
                where, name, "is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"
            )
        text = ("true" if value else "false") if isinstance(value, bool) else value
        yield name, check_text(text, where), where


def systemd_env_file(env: dict, header: str = "", path: str = "") -> str:
    """An ``EnvironmentFile=`` for systemd: ``NAME="value"`` with ``"``, ``\\``,
    ````` and ``$`` backslash-escaped (exactly what systemd unescapes again)."""
    lines = [comment(header).rstrip("\n")] if header else []
    for name, text, _ in _env_items(env, path):
        lines.append(f'{name}="{text.translate(_SYSTEMD_ENV_ESCAPE)}"')
    return "\n".join(lines) + "\n"


def compose_env_file(env: dict, header: str = "", path: str = "") -> str:
    """An ``env_file:`` for docker compose v2: ``NAME='value'``, taken literally."""
    lines = [comment(header).rstrip("\n")] if header else []
    for name, text, where in _env_items(env, path):
        if "'" in text:
            raise UnsafeValue(where, text, "contains ' which a compose env file cannot quote")
        if text.endswith("\\"):
            raise UnsafeValue(
                where,
                text,
                "ends in a backslash, which compose reads as escaping the closing quote",
            )
        lines.append(f"{name}='{text}'")
    return "\n".join(lines) + "\n"


def parse_systemd_env_file(text: str) -> dict[str, str]:  # noqa: PLR0912, PLR0915 - one piece, like env-file.c
    """Read an env file as systemd's parse_env_file_internal does (see above)."""
    env, i, n = {}, 0, len(text)
    while i < n:
        while i < n and text[i] in " \t\n\r":
            i += 1
        if i >= n:
            break
        if text[i] in "#;":
            while i < n and text[i] not in "\n\r":
                i += 1
            continue
        start = i
        while i < n and text[i] not in "=\n\r":
            i += 1
        if i >= n or text[i] != "=":
            continue  # a line without "=" is dropped
        key = text[start:i].strip()
        i += 1
        value, trailing = [], None
        while i < n and text[i] in " \t":
            i += 1
        while i < n and text[i] not in "\n\r":
            char = text[i]
            if char == "'":
                end = text.find("'", i + 1)
                end = n if end < 0 else end
                value.append(text[i + 1 : end])
                i, trailing = end + 1, None
                continue
            if char == '"':
                i += 1
                while i < n and text[i] != '"':
                    if text[i] == "\\" and i + 1 < n:
                        nxt = text[i + 1]
                        if nxt in '"\\`$':
                            value.append(nxt)
                        elif nxt != "\n":
                            value.append("\\" + nxt)
                        i += 2
                        continue
                    value.append(text[i])
                    i += 1
                i, trailing = i + 1, None
                continue
            if char == "\\" and i + 1 < n:
                if text[i + 1] not in "\n\r":
                    value.append(text[i + 1])
                i, trailing = i + 2, None
                continue
            if char in " \t":
                trailing = len("".join(value)) if trailing is None else trailing
            else:
                trailing = None
            value.append(char)
            i += 1
        joined = "".join(value)
        env[key] = joined[:trailing] if trailing is not None else joined
    return env


def parse_compose_env_file(text: str) -> dict[str, str]:
    """Read back an env file written by :func:`compose_env_file` (single-quoted values
    literally, unquoted ones as they stand; comments and blank lines skipped)."""
    env = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        env[name.strip()] = value
    return env


# ---------------------------------------------------------------------------------------
# nginx
#
# nginx, src/core/ngx_conf_file.c (ngx_conf_read_token): tokens are separated by
# space, tab, CR and LF; ";" ends a directive, "{" opens and "}" closes a block, "#"
# at the start of a token starts a comment; a token starting with " or ' runs to the
# matching quote, and in every token \" \' \\ stand for the character and \t \r \n for
# the control characters. "$" is not escapable: directives that support variables
# expand "$name" inside quotes too, so a value with "$" is refused unless the caller
# knows the directive takes it literally (variables=False).
# ---------------------------------------------------------------------------------------
_NGINX_BARE_RE = re.compile(r"[A-Za-z0-9_./:@,=+*~^-]+")
_NGINX_NAME_RE = re.compile(r"[a-z][a-z0-9_]*")


def nginx_param(value, path: str = "", *, variables: bool = True) -> str:
    """One directive parameter, quoted when it is not a plain word. ``$`` is refused
    when the directive expands variables (``variables=True``, the safe default)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    text = check_text(value, path)
    if variables and "$" in text:
        raise UnsafeValue(
            path,
            value,
            "contains $, which nginx would expand as a variable here (nginx has no escape for it)",
        )
    if _NGINX_BARE_RE.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def nginx_directive(name: str, *params, path: str = "", variables: bool = True) -> str:
    """``name param ...;`` with each parameter through :func:`nginx_param`."""
    if not _NGINX_NAME_RE.fullmatch(str(name)):
        raise UnsafeValue(path, name, "is not an nginx directive name")
    words = [
        nginx_param(p, _join(path, i) if len(params) > 1 else path, variables=variables)
        for i, p in enumerate(params)
    ]
    return " ".join([name, *words]) + ";"


# ---------------------------------------------------------------------------------------
# sysctl.d
#
# sysctl.d(5) and systemd src/sysctl/sysctl.c (parse_file): one "key = value" per line,
# both sides stripped of whitespace; lines starting with # or ; are comments; "/" and
# "." both separate key components; a leading "-" means "ignore failures"; there is no
# quoting, so a value may not start or end with whitespace or span lines.
# ---------------------------------------------------------------------------------------
_SYSCTL_KEY_RE = re.compile(r"[a-z0-9_][a-z0-9_.-]*(?:/[a-z0-9_.-]+)*", re.IGNORECASE)


def sysctl_line(key: str, value, path: str = "") -> str:
    """``key = value`` for a sysctl.d file."""
    where = path or str(key)
    if not isinstance(key, str) or not _SYSCTL_KEY_RE.fullmatch(key):
        raise UnsafeValue(where, key, "is not a sysctl key (e.g. vm.min_free_kbytes)")
    if isinstance(value, bool):
        value = int(value)
    text = check_text(value, where)
    if not text or text != text.strip():
        raise UnsafeValue(where, value, "must be non-empty without surrounding whitespace")
    return f"{key} = {text}"


def sysctl_file(settings: dict, header: str = "", path: str = "") -> str:
    """A sysctl.d file from ``{key: value}``."""
    lines = [comment(header).rstrip("\n")] if header else []
    lines += [sysctl_line(k, v, _join(path, k)) for k, v in settings.items()]
    return "\n".join(lines) + "\n"


def parse_sysctl(text: str) -> dict[str, str]:
    """sysctl.d syntax back to ``{key: value}`` (``/`` separators become ``.``)."""
    settings = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;" or "=" not in line:
            continue
        key, value = line.split("=", 1)
        settings[key.strip().lstrip("-").replace("/", ".")] = value.strip()
    return settings


# ---------------------------------------------------------------------------------------
# YAML
#
# yaml.safe_dump emits only standard tags, so a value cannot become an object on
# reading. Strings are checked like everywhere else. compose=True is for docker compose
# files, which interpolate ${VAR} in every value (compose spec, "Interpolation": "$$"
# is a literal "$"): "$" in values is doubled, and refused in keys.
# ---------------------------------------------------------------------------------------


def _yaml_clean(data, path: str, compose: bool):
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            where = _join(path, key)
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise UnsafeValue(where, key, "must be a text or integer key")
            check_text(key, where)
            if compose and "$" in str(key):
                raise UnsafeValue(where, key, "contains $, which compose would interpolate")
            out[key] = _yaml_clean(value, where, compose)
        return out
    if isinstance(data, (list, tuple)):
        return [_yaml_clean(v, _join(path, i), compose) for i, v in enumerate(data)]
    if data is None or isinstance(data, (bool, int, float)):
        return data
    if isinstance(data, str):
        text = check_text(data, path)
        return text.replace("$", "$$") if compose else text
    raise UnsafeValue(path, data, f"cannot go into YAML ({type(data).__name__})")


def yaml_document(data, header: str = "", path: str = "", *, compose: bool = False) -> str:
    """A YAML document (``yaml.safe_dump``, block style, keys in the given order)."""
    import yaml

    body = yaml.safe_dump(
        _yaml_clean(data, path, compose), default_flow_style=False, sort_keys=False, width=1 << 20
    )
    return (comment(header) if header else "") + body


def _undouble(data):
    if isinstance(data, dict):
        return {k: _undouble(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_undouble(v) for v in data]
    return data.replace("$$", "$") if isinstance(data, str) else data


def yaml_load(text: str, *, compose: bool = False):
    """Read back a document written by :func:`yaml_document` (``yaml.safe_load``)."""
    import yaml

    data = yaml.safe_load(text)
    return _undouble(data) if compose else data
