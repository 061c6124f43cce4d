"""Settings schema of the shared ``nginx`` formula (pillar ``nginx``).

``salt["opskit.settings"]("nginx", merged)`` in ``salt/nginx/map.jinja`` validates the
merged settings with it before anything renders. Every value that reaches a command
(``binary``, ``test_script``: ``check_cmd`` runs them through a shell), the root script
``opskit-nginx-test`` or ``nginx.conf`` is a constrained type: paths are absolute and
made of ``[A-Za-z0-9._@+,=:~-]`` components (no space, quote, ``;``, ``$`` or
backtick can appear), names and numbers are what nginx and systemd accept.

Sites from pillar (``nginx:sites``) are templates of the state tree (``source``) with a
``context`` whose strings arrive quoted, each as one nginx parameter: pillar (the CMDB)
never supplies nginx syntax. Raw text (``contents``) is refused with a message saying
what to do instead; formulas keep the ``nginx_site`` macro's ``contents=`` for text they
build themselves.
"""

from __future__ import annotations

import math

try:  # synced from file_roots, or module_dirs
    import opskit_formats
    import opskit_schema as s
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_formats
    from saltext.opskit.utils import opskit_schema as s

SITE_NAME = s.Str(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", hint="a site name: letters, digits, . _ -")


class RawText(s.Type):
    """``contents``: raw nginx text, refused from pillar (see the module docstring)."""

    name = "refused"

    def describe(self):
        return "refused: raw nginx text from pillar (use source and context)"

    def convert(self, value, path, problems, secret):
        return self.fail(
            problems,
            path,
            value,
            secret,
            "raw nginx configuration from pillar is refused: a pillar value never reaches "
            "nginx's configuration unquoted. Put the site into a template of your state tree "
            "and set `source: salt://<path>.conf.jinja` with its values in `context` (each "
            "string reaches the template quoted as one nginx parameter), or add the site "
            "from a formula with the nginx_site macro (nginx/macros.jinja)",
        )


_CONTEXT_KEY = s.Str(
    r"[A-Za-z_][A-Za-z0-9_]{0,63}", hint="a template variable name (letters, digits, _)"
)
MAX_CONTEXT_DEPTH = 6
MAX_PARAM = 4096


class Context(s.Type):
    """A pillar site's template context, as data the template can only use as nginx
    parameters: every string becomes one parameter quoted with nginx's rule
    (``opskit_formats.nginx_param``: control characters and ``$`` refused, anything but
    a plain word in double quotes); numbers and booleans stay what they are; lists and
    mappings (keys are variable names) are converted item by item."""

    name = "template context"

    def describe(self):
        return "a mapping of variable names to strings (quoted for nginx), numbers, lists"

    def empty(self):
        return {}

    def convert(self, value, path, problems, secret):
        if not isinstance(value, dict):
            return self.fail(problems, path, value, secret)
        return self._convert(value, path, problems, 0)

    def _convert(self, value, path, problems, depth):
        if depth > MAX_CONTEXT_DEPTH:
            problems.add(path, value, f"is nested more than {MAX_CONTEXT_DEPTH} levels deep")
            return None
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                where = s.key_path(path, key)
                good = _CONTEXT_KEY.validate(key, where, problems)
                converted = self._convert(item, where, problems, depth + 1)
                if isinstance(good, str) and good == key:
                    out[key] = converted
            return out
        if isinstance(value, list):
            return [
                self._convert(item, f"{path}:{i}", problems, depth + 1)
                for i, item in enumerate(value)
            ]
        return self._scalar(value, path, problems)

    def _scalar(self, value, path, problems):
        if value is None or isinstance(value, (bool, int)):
            return value
        if isinstance(value, float) and math.isfinite(value):
            return value
        if not isinstance(value, str):
            return self.fail(problems, path, value, False, f"must be {self.describe()}")
        if len(value) > MAX_PARAM:
            return self.fail(problems, path, value, False, f"is longer than {MAX_PARAM} characters")
        try:
            return opskit_formats.nginx_param(value, path)
        except opskit_formats.UnsafeValue as err:
            return self.fail(problems, path, value, False, err.reason)


SITE = s.Map(
    {
        "source": s.Str(
            r"salt://[A-Za-z0-9._/-]+",
            nullable=True,
            hint="a salt:// template of your state tree",
            doc="the site's Jinja template (your state tree, or salt://nginx/files/)",
        ),
        "contents": RawText(nullable=True, doc="refused: raw text from pillar"),
        "context": Context(
            default={}, doc="the template's variables; strings arrive quoted for nginx"
        ),
        "absent": s.Bool(default=False, doc="true removes the site"),
    },
    doc="a site: a salt:// template with its context; absent: true removes it",
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
    """A site that is not absent needs a template (``source``)."""
    for name, site in (settings.get("sites") or {}).items():
        if not site.get("absent") and site.get("source") is None:
            yield (
                s.key_path("nginx:sites", name),
                "needs source: salt://<path>.conf.jinja (a template of your state tree, "
                "with its values in context), or absent: true",
            )
