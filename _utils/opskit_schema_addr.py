"""Path and network value types of the settings schema: :class:`Path`, :class:`Url`,
:class:`Ip`, :class:`Network`, :class:`Host`, :class:`Listen`.

Part of ``opskit_schema`` (which re-exports them; import them from there): kept in
their own file so each module stays small. Import ``opskit_schema`` first.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
import urllib.parse

try:
    import opskit_net  # synced from file_roots, or module_dirs
    import opskit_schema
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_net
    from saltext.opskit.utils import opskit_schema

INVALID = opskit_schema.INVALID
Type = opskit_schema.Type
_text = opskit_schema._text

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
        if text is INVALID:
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
        if text is INVALID:
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
        if text is INVALID:
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
        if text is INVALID:
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
        if text is INVALID:
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

    def takes(self, value):
        return isinstance(value, (str, int)) and not isinstance(value, bool)

    def convert(self, value, path, problems, secret):
        if not isinstance(value, int) or isinstance(value, bool):
            value = _text(value, path, problems, secret)
            if value is INVALID:
                return value
        try:
            host, port = opskit_net.parse_listen(
                value, self.default_port, allow_hostname=self.allow_hostname
            )
        except ValueError as err:
            message = str(err).removeprefix(f"{value!r}: ")
            return self.fail(problems, path, value, secret, message)
        return opskit_net.format_listen(host, port)
