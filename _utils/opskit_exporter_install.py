"""Installing an exporter: verify first, then switch, then check, else roll back.

``converge(host, grains, d, test)`` compares the desired exporter with the host; in test
mode it returns what would change. Otherwise it installs what differs in this order:
DCGM's surroundings (dcgm_exporter only), the system user, the textfile directory, the
binary (a verified archive unpacked into a new versioned directory and the ``current``
link switched to it, or the OS package with its own unit masked), the secret and
configuration files, the stub_status block (``nginx -t`` before nginx reloads), the
unit. It then (re)starts the service and waits for healthy ``/metrics``; on any
failure everything goes back to how it was and what ran before runs again. Finally it
compares once more with the same plan: what still differs is reported, not hidden.
"""

from __future__ import annotations

import datetime
import os
import pathlib
import shutil
import time

from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError

try:
    import opskit_exporter_catalog as catalog  # synced from file_roots, or module_dirs
    import opskit_exporter_dcgm as dcgm
    import opskit_exporter_diff as diff_mod
    import opskit_exporter_fetch as fetch
    import opskit_exporter_host as host_mod
    import opskit_exporter_options as opts
    import opskit_exporter_plan as plan
    import opskit_exporter_probe as probe
    import opskit_exporter_removal as removal
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_exporter_catalog as catalog
    from saltext.opskit.utils import opskit_exporter_dcgm as dcgm
    from saltext.opskit.utils import opskit_exporter_diff as diff_mod
    from saltext.opskit.utils import opskit_exporter_fetch as fetch
    from saltext.opskit.utils import opskit_exporter_host as host_mod
    from saltext.opskit.utils import opskit_exporter_options as opts
    from saltext.opskit.utils import opskit_exporter_plan as plan
    from saltext.opskit.utils import opskit_exporter_probe as probe
    from saltext.opskit.utils import opskit_exporter_removal as removal

KEEP_VERSIONS = 2  # versioned directories kept: the running one and the one before


def _ensure_user(host, d) -> bool:
    """Create the exporter's system user and group; True if created."""
    if d.user == "root" or host.salt["user.info"](d.user):
        return False
    if not host.salt["user.add"](  # noqa: S604 - the account's login shell, not a subprocess
        d.user,
        system=True,
        usergroup=True,
        home="/nonexistent",
        createhome=False,
        shell="/usr/sbin/nologin",
        fullname=f"opskit {d.name}",
    ):
        raise host.error(f"could not create system user {d.user}")
    return True


def _install_package(host, d, manifest: dict) -> str:
    salt = host.salt
    package = d.exporter.package
    # Mask the package's own unit before installing, so that it never starts.
    if package.unit and not salt["service.masked"](package.unit):
        salt["service.mask"](package.unit)
        if host.active(package.unit) == "active":
            salt["service.stop"](package.unit)
    if package.user and not salt["user.info"](package.user):
        manifest["package_user_absent_before"] = package.user
    # A package's version is the exporter's own (for dcgm-exporter: the tag's second part).
    wanted = d.exporter.release_version(d.version) if d.version else None
    kwargs = {"version": f"{wanted}*"} if wanted else {}
    try:
        salt["pkg.install"](package.name, refresh=False, **kwargs)
    except CommandExecutionError as err:
        raise host.error(f"installing package {package.name} failed: {err}") from err
    installed = salt["pkg.version"](package.name)
    if not installed:
        raise host.error(f"package {package.name} is not installed after pkg.install")
    if wanted and catalog.upstream_version(installed) != wanted:
        raise host.error(
            f"package {package.name} installed {installed}, not {wanted}; the repository "
            "has no such version"
        )
    return installed


def _install_binary(host, d, undo, manifest: dict) -> None:
    if d.source == "package":
        manifest["package"] = _install_package(host, d, manifest)
        manifest["masked_unit"] = d.exporter.package.unit
        fetch.check_version(host, d, d.exec_path)
        return
    archive, archive_sha = fetch.fetch_archive(host, d, plan.CACHE_ROOT)
    final, binary_sha, files_sha = fetch.unpack(host, d, archive)
    fetch.check_version(host, d, str(final / d.exporter.binary))
    undo.link(d.current_link)
    probe.switch_link(d.current_link, d.release.key)
    manifest.update(
        {
            "release_key": d.release.key,
            "arch": d.release.arch,
            "asset_url": opts.redact_url(d.release.asset_url),
            "archive_sha256": archive_sha,
            "binary_sha256": binary_sha,
            "files_sha256": files_sha,
        }
    )


def _apply_stub_status(host, d, undo) -> None:
    spec = d.stub_status
    if shutil.which("nginx") is None or not os.path.isdir(os.path.dirname(spec.path)):
        raise host.error(
            "nginx_exporter's stub_status needs nginx, which is not installed "
            f"({os.path.dirname(spec.path)} missing); install nginx first, or set "
            "nginx.stub_status: false and nginx.scrape_uri"
        )
    if host_mod.read(spec.path) == spec.content:
        return
    undo.file(spec.path)
    host.write(spec.path, spec.content, spec.mode)
    try:
        removal.nginx_test(host)
    except CommandExecutionError:
        undo.restore()
        raise
    removal.nginx_reload(host)


def _write_files(host, d, new_manifest: dict, undo) -> None:
    """Configuration and secret files, the stub_status block, then the unit."""
    undo.dirs += host.ensure_dir(d.config_dir, 0o750, "root", d.user)
    wanted = {spec.path for spec in d.files}
    for spec in d.files:
        undo.file(spec.path)
        host.write(spec.path, spec.content, spec.mode, spec.owner, spec.group)
    for stale in diff_mod.STALE_FILES:
        path = f"{d.config_dir}/{stale}"
        if path not in wanted and os.path.exists(path):
            undo.file(path)
            os.unlink(path)
    if d.stub_status is not None:
        _apply_stub_status(host, d, undo)
        new_manifest["stub_status"] = d.stub_status.path
    elif new_manifest.pop("stub_status", None):
        removal.remove_stub_status(host)
    undo.file(d.unit_path)
    if host_mod.read(d.unit_path) != d.unit:
        host.write(d.unit_path, d.unit, 0o644)
        host.salt["service.systemctl_reload"]()


def _apply(host, grains, d, changes, *, manifest, new_manifest, undo) -> dict:
    """Everything but the (re)start: binary, user, files, unit. Records how to undo."""
    extra = {}
    if manifest.get("source") and manifest["source"] != d.source:
        for _key, _change, action in removal.binary_steps(host, d.name, manifest):
            action()
        for key in ("release_key", "package", "masked_unit"):
            new_manifest.pop(key, None)
    if d.dcgm is not None:
        extra.update(dcgm.prepare(host, grains, d, new_manifest))
    if _ensure_user(host, d):
        new_manifest["created_user"] = undo.user = d.user
    if d.textfile_directory and not os.path.isdir(d.textfile_directory):
        created = host.ensure_dir(d.textfile_directory, 0o755)
        undo.dirs += created
        new_manifest["created_textfile_directory"] = d.textfile_directory
        new_manifest["created_dirs"] = created
    if "binary" in changes:
        _install_binary(host, d, undo, new_manifest)
    _write_files(host, d, new_manifest, undo)
    if "enabled" in changes:
        host.salt["service.enable"](d.unit_name)
    return extra


def _prune_versions(d) -> None:
    root = pathlib.Path(d.install_dir)
    keep = d.release.key
    dirs = sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and p.name != keep),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in dirs[KEEP_VERSIONS - 1 :]:
        shutil.rmtree(old, ignore_errors=True)


def converge(host, grains: dict, d, test: bool = False) -> dict:
    """Bring the exporter to ``d``; returns {"changes", "remaining"} (see the module)."""
    dcgm.prechecks(host, d)
    manifest = host.load_manifest(d.name) or {}
    changes = diff_mod.diff(host, d, manifest or None)
    if test or not changes:
        return {"changes": changes, "remaining": changes}
    unit = d.unit_name
    was_active = host.active(unit) == "active"
    undo = probe.Undo(host)
    new_manifest = dict(manifest)
    started = time.time()
    try:
        extra = _apply(
            host, grains, d, changes, manifest=manifest, new_manifest=new_manifest, undo=undo
        )
        started = time.time()
        undo.restarted = True
        host.salt["service.restart" if was_active else "service.start"](unit)
        probe.verify(host, d)
    except probe.NotHealthy as err:
        logs = host.journal(unit, started, d.secrets)
        rolled = probe.roll_back(host, d, undo, was_active, manifest)
        raise host.error(
            f"{d.name} {d.version or ''} did not come up healthy {err}; {rolled}. "
            f"Last log lines of {unit}:\n{logs}"
        ) from None
    except Exception as err:
        rolled = probe.roll_back(host, d, undo, was_active, manifest)
        message = host_mod.redact(str(err), d.secrets)
        if isinstance(err, (CommandExecutionError, SaltInvocationError)):
            raise CommandExecutionError(f"{message} ({rolled})") from err
        raise host.error(f"installing {d.name} failed: {message} ({rolled})") from err
    new_manifest.update(
        {
            "version": d.version,
            "source": d.source,
            "listen": d.listen,
            "scheme": d.scheme,
            "basic_auth": d.basic_auth,
            "client_auth": d.client_auth,
            "target_host": d.target_host,
            "unit": d.unit_path,
            "exec_path": d.exec_path,
            "updated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
    )
    host.save_manifest(d.name, new_manifest)
    if d.source == "archive":
        _prune_versions(d)
    remaining = diff_mod.diff(host, d, new_manifest)
    changes.update(extra)
    if d.warnings:
        changes["warnings"] = {"old": None, "new": d.warnings}
    return {"changes": changes, "remaining": remaining}
