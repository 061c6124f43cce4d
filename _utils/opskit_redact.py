"""The one redaction helper of opskit: take secrets out of text, URLs and data before
they reach a log record, an error message, state ``changes`` or runner output.

Every module that shows something that may carry a secret uses these four functions
(and the ``MASK`` they put in place of a secret); none keeps its own patterns.

``redact_text(text, secrets=())``
    Free text (an error message, a command's output). Masks, in this order:

    - the known secret values in ``secrets`` (strings of 3 characters or more), also
      in their percent-encoded form, as they appear inside URLs;
    - PEM/OpenSSH/PGP private-key blocks (``-----BEGIN ... PRIVATE KEY-----`` to the
      matching END line, or to the end of the text if it is cut off);
    - the password of a URL with credentials: ``scheme://user:password@host`` becomes
      ``scheme://user:**********@host``. The userinfo runs to the *last* ``@`` before
      the next whitespace, so passwords containing ``@`` (or an unencoded ``/``) are
      masked whole. A userinfo without a colon (``https://<token>@host``) is masked
      whole, since tokens travel that way;
    - ``key=value`` and ``key: value`` pairs whose key names a secret: libpq DSNs
      (``host=db password=s3cret``, ``password = 'it''s'``), ODBC strings
      (``Pwd=...;``), URL queries (``?api_key=...``), env lines (``PGPASSWORD=...``),
      JSON/YAML fragments (``"token": "..."``) and ``Authorization: Bearer ...``
      headers. A quoted value is masked up to its closing quote (without one: to the
      end of the line); an unquoted value up to the next whitespace, so a separator
      and what follows it in the same word may be masked too (too much rather than
      too little).

``redact_url(url, *, query=True, secrets=())``
    One URL for a message: ``redact_text`` of it (password, secret query
    parameters), with the fragment dropped; ``query=False`` also drops the query:
    ``scheme://[user:**********@]host[:port]/path``.

``redact_data(value, *, secret_keys=(), secrets=())``
    A deep copy of a pillar-like structure (dicts, lists, tuples, scalars) in which
    the value of every key that names a secret (``is_secret_key``, plus the names in
    ``secret_keys``, case-insensitive) is ``MASK`` whatever its type, and every other
    string went through ``redact_text``. The input is not modified.

``is_secret_key(name, extra=())``
    True for mapping keys whose values are secrets: names containing password,
    passwd, passphrase, pass, pwd, secret, token, api_key/apikey, private_key,
    access_key, credential, authorization, psk, the names ``key``/``pwd`` and names
    ending in ``_key``/``-key``; plus ``extra``.

Redaction is a last line of defence for text opskit does not control (a library's
exception, a CMDB record); code that holds a secret keeps it out of messages in the
first place.
"""

from __future__ import annotations

import re
import urllib.parse

MASK = "**********"
MIN_SECRET_LENGTH = 3

_SECRET_KEY_RE = re.compile(
    r"pass|pwd|secret|token|api[_-]?key|private[_-]?key|access[_-]?key|credential"
    r"|authorization|psk|^key$|[_-]key$",
    re.IGNORECASE,
)

_PRIVATE_KEY_RE = re.compile(
    r"-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY( BLOCK)?-----"
    r".*?(-----END ([A-Z0-9]+ )*PRIVATE KEY( BLOCK)?-----|\Z)",
    re.DOTALL,
)

# scheme://user:password@ (the colon not starting a port) and scheme://token@.
_URL_PASSWORD_RE = re.compile(
    r"(?i)(\b[a-z][a-z0-9+.-]*://)([^\s/?#@:]*):(?!\d*(?:[/?#\s]|$))\S*@(?=[^\s@])"
)
_URL_TOKEN_RE = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://)[^\s/?#@:]+@(?=[^\s@])")

# key=value / key: value with a key naming a secret. The key ends the identifier
# (`password_file=` is not a password, `db_password=` is).
_PAIR_KEY_WORDS = (
    r"(?:pass(?:word|wd|phrase)?|pwd|secret|token|api[_-]?key|apikey|private[_-]?key"
    r"|access[_-]?key|credentials?|psk|[_-]key)"
)
_PAIR_RE = re.compile(
    r"(?i)(?<![\w.-])([\w.-]*" + _PAIR_KEY_WORDS + r")(?![\w-])"
    r"(['\"]?[ \t]*[=:][ \t]*)"
    r"('(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.)*\"|['\"][^\n]*|\S+)"
)
_AUTHORIZATION_RE = re.compile(
    r"(?i)(\b(?:proxy-)?authorization['\"]?[ \t]*[=:][ \t]*['\"]?"
    r"(?:(?:basic|bearer|token|digest)[ \t]+)?)"
    r"[^\s'\"]+"
)


def is_secret_key(name, extra=()) -> bool:
    """True if the value under mapping key ``name`` is a secret (see the module doc)."""
    if not isinstance(name, str):
        return False
    return bool(_SECRET_KEY_RE.search(name)) or name.lower() in {e.lower() for e in extra}


def _known(text: str, secrets) -> str:
    values = set()
    for secret in secrets or ():
        if secret is None:
            continue
        value = str(secret)
        if len(value) >= MIN_SECRET_LENGTH:
            values.add(value)
            values.add(urllib.parse.quote(value, safe=""))
            values.add(urllib.parse.quote_plus(value, safe=""))
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


def _mask_pair(match: re.Match) -> str:
    key, separator, value = match.groups()
    if value[0] in "'\"" and len(value) >= 2 and value[-1] == value[0]:
        return f"{key}{separator}{value[0]}{MASK}{value[0]}"
    return f"{key}{separator}{MASK}"


def redact_text(text, secrets=()) -> str:
    """``text`` with secrets masked (see the module docstring for what is masked)."""
    text = _known(str(text), secrets)
    text = _PRIVATE_KEY_RE.sub(MASK, text)
    text = _URL_PASSWORD_RE.sub(rf"\1\2:{MASK}@", text)
    text = _URL_TOKEN_RE.sub(rf"\1{MASK}@", text)
    text = _AUTHORIZATION_RE.sub(rf"\1{MASK}", text)
    return _PAIR_RE.sub(_mask_pair, text)


def redact_url(url, *, query: bool = True, secrets=()) -> str:
    """``url`` fit for a message: password and secret query values masked, no fragment;
    ``query=False``: no query either."""
    text = redact_text(url, secrets)
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError:
        return "<unparsable URL>"
    return urllib.parse.urlunsplit(
        (parts.scheme, parts.netloc, parts.path, parts.query if query else "", "")
    )


def redact_data(value, *, secret_keys=(), secrets=()):
    """A copy of ``value`` with secrets masked (see the module docstring)."""
    extra = tuple(secret_keys)

    def walk(item):
        if isinstance(item, dict):
            return {k: MASK if is_secret_key(k, extra) else walk(v) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return type(item)(walk(v) for v in item)
        if isinstance(item, str):
            return redact_text(item, secrets)
        return item

    return walk(value)
