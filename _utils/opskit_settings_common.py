"""Settings schema of the ``common`` formula (pillar ``common``), checked at render
time by ``opskit.settings`` from ``salt/common/map.jinja`` (which checks the host's
``roles`` and ``extra_sls`` with ``opskit_settings_top``)."""

from __future__ import annotations

try:
    import opskit_schema as s  # synced from file_roots, or module_dirs
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_schema as s

# Debian package names (policy 5.6.1), optionally with an architecture qualifier.
PACKAGE = s.Str(r"[a-z0-9][a-z0-9+.-]+(?::[a-z0-9-]+)?", hint="a package name", max_len=128)

SCHEMA = s.Map(
    {
        "packages": s.List(PACKAGE, max_items=500, unique=True, doc="packages every host gets"),
        "motd": s.Str(max_len=2048, doc="shown at login, followed by the host's roles"),
        "motd_file": s.Path(doc="where the message of the day goes"),
        "roles_file": s.Path(suffixes=(".json",), doc="JSON file listing the host's roles"),
    }
)
