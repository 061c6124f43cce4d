"""Settings schema of the shared ``nginx`` formula (pillar ``nginx``).

``salt["opskit.settings"]("nginx", merged)`` in ``salt/nginx/map.jinja`` validates the
merged settings with it before anything renders. Every value that reaches a command
(``binary``, ``test_script``: ``check_cmd`` runs them through a shell), the root script
``opskit-nginx-test`` or ``nginx.conf`` is a constrained type: paths are absolute and
made of ``[A-Za-z0-9._@+,=:~-]`` components (no space, quote, ``;``, ``$`` or
backtick can appear), names and numbers are what nginx and systemd accept.
"""

from __future__ import annotations

try:
    import opskit_schema as s  # synced from file_roots, or module_dirs
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_schema as s

SITE_NAME = s.Str(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", hint="a site name: letters, digits, . _ -")


class Text(s.Type):
    """Multi-line text (a site's nginx configuration from pillar): line breaks and tabs,
    no other control or line-separator characters. It is tested with ``nginx -t``
    before it replaces a live file."""

    name = "text"

    def convert(self, value, path, problems, secret):
        if not isinstance(value, str):
            return self.fail(problems, path, value, secret)
        bad = sorted(
            {c for c in value if (ord(c) < 32 and c not in "\n\t") or ord(c) == 127}
            | {c for c in value if c in "\u2028\u2029\u0085"}
        )
        if bad:
            return self.fail(problems, path, value, secret, f"holds control characters {bad!r}")
        return value


SITE = s.Map(
    {
        "source": s.Str(
            r"salt://[A-Za-z0-9._/-]+", nullable=True, hint="a salt:// template of your state tree"
        ),
        "contents": Text(nullable=True),
        "context": s.Map({}, extra=True, default={}),
        "absent": s.Bool(default=False),
    },
    doc="a site: source (salt:// template) with context, or contents; absent: true removes it",
)

SCHEMA = s.Map(
    {
        "packages": s.List(
            s.Str(r"[a-z0-9][a-z0-9.+-]*", hint="a Debian package name"), min_items=1
        ),
        "service": s.Str(r"[A-Za-z0-9_.@-]+", hint="a systemd unit name"),
        "user": s.Str(r"[a-z_][a-z0-9_-]{0,31}", hint="a user name"),
        "conf_file": s.Path(suffixes=(".conf",)),
        "sites_dir": s.Path(),
        "test_script": s.Path(doc="the candidate-testing script check_cmd runs (root)"),
        "binary": s.Path(doc="the nginx binary"),
        "worker_processes": s.OneOf(
            s.Str(choices=("auto",)), s.Int(min=1, max=1024), default="auto"
        ),
        "worker_connections": s.Int(min=1, max=1048576, default=768),
        "server_tokens": s.Bool(default=False),
        "include_sites_enabled": s.Bool(default=False),
        "sites": s.DictOf(SITE_NAME, SITE, default={}),
    }
)


def check(settings):
    """A site gives exactly one of source and contents (unless it is absent)."""
    for name, site in (settings.get("sites") or {}).items():
        if not site.get("absent") and (site.get("source") is None) == (
            site.get("contents") is None
        ):
            yield (
                f"nginx:sites:{name}",
                "give exactly one of source (a salt:// template) or contents",
            )
