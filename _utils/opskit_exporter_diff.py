"""What differs between a desired exporter (``opskit_exporter_plan.Desired``) and this
host, as state ``changes``: keyed by thing, ``{"old": ..., "new": ...}`` each, secret
file contents never shown (only variable names, modes and owners). Reads only; the
network is never asked.
"""

from __future__ import annotations

import difflib
import os
import pathlib

try:
    import opskit_exporter_catalog as catalog  # synced from file_roots, or module_dirs
    import opskit_exporter_fetch as fetch
    import opskit_exporter_host as host_mod
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_exporter_catalog as catalog
    from saltext.opskit.utils import opskit_exporter_fetch as fetch
    from saltext.opskit.utils import opskit_exporter_host as host_mod

STALE_FILES = ("env", "web-config.yml")  # files opskit may have written before


def line_changes(old: str | None, new: str | None) -> dict:
    """{"old": removed lines, "new": added lines} of a text file without secrets."""
    if old is None:
        return {"old": None, "new": "created"}
    if new is None:
        return {"old": "present", "new": None}
    removed, added = [], []
    for line in difflib.ndiff(old.splitlines(), new.splitlines()):
        if line.startswith("- "):
            removed.append(line[2:])
        elif line.startswith("+ "):
            added.append(line[2:])
    return {"old": removed, "new": added}


def _env_names(content: str | None) -> list[str]:
    if content is None:
        return []
    return sorted(
        line.split("=", 1)[0] for line in content.splitlines() if "=" in line and line[0] != "#"
    )


def secret_changes(old: dict | None, spec) -> dict:
    """What changed in a secret file, without its content: variable names only."""
    is_env = spec.path.endswith("/env")
    new_names = _env_names(spec.content) if is_env else ["(hidden)"]
    if old is None:
        return {"old": None, "new": f"written {spec.mode:04o} {spec.owner}: {new_names}"}
    old_names = _env_names(old["content"]) if is_env else ["(hidden)"]
    what = []
    if old["content"] != spec.content:
        what.append("content changed (hidden)")
    if old["mode"] != spec.mode:
        what.append(f"mode {old['mode']:04o} -> {spec.mode:04o}")
    if (old["owner"], old["group"]) != (spec.owner, spec.group):
        what.append(f"owner {old['owner']}:{old['group']} -> {spec.owner}:{spec.group}")
    return {"old": old_names, "new": f"{new_names}: {', '.join(what)}"}


def binary_state(host, d, manifest: dict | None) -> dict:
    """Is the desired binary in place and intact? (no network)"""
    if manifest is None:
        return {"ok": False, "was": None}
    was = f"{manifest.get('version') or 'package'} ({manifest.get('source')})"
    if d.source == "package":
        installed = host.salt["pkg.version"](d.exporter.package.name)
        wanted = d.exporter.release_version(d.version) if d.version else None
        ok = manifest.get("source") == "package" and bool(installed)
        ok = ok and (wanted is None or catalog.upstream_version(installed) == wanted)
        return {"ok": ok, "was": f"{installed or 'absent'} (package)"}
    rel = d.release
    binary = pathlib.Path(d.install_dir) / rel.key / d.exporter.binary
    link = pathlib.Path(d.current_link)
    if manifest.get("source") != d.source or manifest.get("release_key") != rel.key:
        problem = ""
    elif d.sha256 and manifest.get("archive_sha256") != d.sha256:
        problem = ", archive sha256 differs from the pin"
    elif not binary.exists():
        problem = ", binary missing"
    elif fetch.sha256_file(binary) != manifest.get("binary_sha256"):
        problem = ", binary modified on disk"
    elif _files_problem(d, rel, manifest):
        problem = _files_problem(d, rel, manifest)
    elif not link.is_symlink() or os.readlink(link) != rel.key:
        problem = f", current link not on {rel.key}"
    else:
        return {"ok": True, "was": was}
    return {"ok": False, "was": was + problem}


def _files_problem(d, rel, manifest: dict) -> str:
    """Why the files installed next to the binary are not as unpacked ("" if they are)."""
    recorded = manifest.get("files_sha256") or {}
    for _, relative in rel.files:
        path = pathlib.Path(d.install_dir) / rel.key / relative
        if not path.exists():
            return f", {relative} missing"
        if fetch.sha256_file(path) != recorded.get(relative):
            return f", {relative} modified on disk"
    return ""


def file_changes(host, d, manifest: dict | None) -> dict:
    """Secret and configuration files, and the stub_status block (contents hidden)."""
    changes = {}
    for spec in d.files:
        old = host.file_state(spec.path)
        wanted = (spec.content, spec.mode, spec.owner, spec.group)
        if old is None or (old["content"], old["mode"], old["owner"], old["group"]) != wanted:
            changes[spec.path] = secret_changes(old, spec)
    for stale in STALE_FILES:
        path = f"{d.config_dir}/{stale}"
        if path not in {spec.path for spec in d.files} and os.path.exists(path):
            changes[path] = {"old": "present", "new": None}
    if d.stub_status is not None:
        old = host_mod.read(d.stub_status.path)
        if old != d.stub_status.content:
            changes["stub_status"] = line_changes(old, d.stub_status.content)
    elif manifest and manifest.get("stub_status"):
        changes["stub_status"] = {"old": "present", "new": None}
    return changes


def diff(host, d, manifest: dict | None) -> dict:
    """Everything that differs from ``d`` on this host, as changes (no secrets)."""
    changes = {}
    if manifest and manifest.get("source") != d.source:
        changes["source"] = {"old": manifest.get("source"), "new": d.source}
    binary = binary_state(host, d, manifest)
    if not binary["ok"]:
        new = f"{d.version or 'repository version'} ({d.source})"
        changes["binary"] = {"old": binary["was"], "new": new}
    if d.user != "root" and not host.salt["user.info"](d.user):
        changes["user"] = {"old": None, "new": d.user}
    if d.textfile_directory and not os.path.isdir(d.textfile_directory):
        changes["textfile_directory"] = {"old": None, "new": d.textfile_directory}
    changes.update(file_changes(host, d, manifest))
    old_unit = host_mod.read(d.unit_path)
    if old_unit != d.unit:
        changes["unit"] = line_changes(old_unit, d.unit)
    props = host.unit_props(d.unit_name) if old_unit is not None else {}
    state = props.get("ActiveState") or "absent"
    if state != "active":
        changes["service"] = {"old": state, "new": "running"}
    elif set(changes) - {"user", "textfile_directory"}:
        changes["service"] = {"old": "running", "new": "restarted"}
    if props.get("UnitFileState") != "enabled":
        changes["enabled"] = {"old": props.get("UnitFileState") or None, "new": "enabled"}
    return changes
