"""Host-level pillar keys the example top file (``salt/top.sls``) reads: ``roles`` (the
top file matches formulas on them) and ``extra_sls`` (further SLS a host's CMDB record
asks for).

Salt logs a top file that fails to render and then reports only "No Top file ...
matches found", and it renders the top file before a highstate syncs custom modules,
so the top file cannot call opskit: it applies ``extra_sls`` only when the list passes
the same rule written in plain Jinja (``regex_match``; a functional test keeps the two
in agreement). The ``common`` formula (applied to every host) validates these keys
with ``opskit.settings("top", ...)``, which fails its render with the message naming
the key.
"""

from __future__ import annotations

try:
    import opskit_schema as s  # synced from file_roots, or module_dirs
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_schema as s

# The keys are top-level pillar keys: no formula prefix in messages. They are documented
# with the `common` formula (docs/common.md, "Host roles and salt/top.sls").
ROOT = ""
DOCS_PAGE = "common"

SCHEMA = s.Map(
    {
        "roles": s.List(
            s.Str(r"[a-z0-9][a-z0-9_.-]*", hint="a role name (e.g. database)", max_len=64),
            max_items=64,
            unique=True,
            doc="the roles the CMDB assigned; the top file applies formulas by role",
        ),
        "extra_sls": s.List(
            s.SlsName(),
            max_items=64,
            unique=True,
            doc="further SLS for this host (site-specific states)",
        ),
    }
)
