"""Taking an exporter away with everything opskit installed for it.

``steps(host, name)`` reads the install manifest and the host and returns what removal
would do as ``(what, {"old": ..., "new": ...}, action)`` triples: the caller shows the
changes (test mode) or runs the actions in order. Only what opskit itself installed or
created goes: its unit, binaries, configuration and secrets, download cache, the nginx
stub_status block, the OS package and the system user it created, NVIDIA's repository
and DCGM packages if it configured them. A textfile directory that other tools wrote
into stays, and says so.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil

from salt.exceptions import CommandExecutionError

try:
    import opskit_exporter_catalog as catalog  # synced from file_roots, or module_dirs
    import opskit_exporter_dcgm as dcgm
    import opskit_exporter_plan as plan
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_exporter_catalog as catalog
    from saltext.opskit.utils import opskit_exporter_dcgm as dcgm
    from saltext.opskit.utils import opskit_exporter_plan as plan

STUB_STATUS_PATH = os.path.join(plan.NGINX_CONF_DIR, plan.STUB_STATUS_CONF)


def nginx_test(host) -> None:
    out = host.run(["nginx", "-t"])
    if out["retcode"] != 0:
        raise host.error(f"nginx -t rejects the configuration: {out['stderr'].strip()[-800:]}")


def nginx_reload(host) -> None:
    if host.active("nginx.service") == "active":
        host.salt["service.reload"]("nginx.service")


def remove_stub_status(host) -> bool:
    if not os.path.exists(STUB_STATUS_PATH):
        return False
    os.unlink(STUB_STATUS_PATH)
    if shutil.which("nginx"):
        nginx_test(host)
        nginx_reload(host)
    return True


def binary_steps(host, name: str, manifest: dict) -> list:
    """Steps that take away the binaries: versioned directories or the OS package."""
    steps = []
    salt = host.salt
    install_dir = pathlib.Path(plan.INSTALL_ROOT) / name
    if install_dir.exists():
        change = {"old": str(install_dir), "new": None}
        steps.append(("binaries", change, lambda: shutil.rmtree(install_dir)))
    package = catalog.CATALOG[name].package
    if manifest.get("package"):
        change = {"old": f"{package.name} {manifest['package']}", "new": None}
        steps.append(("package", change, lambda: salt["pkg.purge"](package.name)))
    package_user = manifest.get("package_user_absent_before")
    if package_user and salt["user.info"](package_user):
        # The package's postinst made this user and purging leaves it: delete it unless
        # another installed package of the same family still needs it.
        family = [
            pkg
            for pkg in salt["pkg.list_pkgs"]()
            if pkg.startswith(f"{package_user}-") and pkg != package.name
        ]
        if not family:
            change = {"old": package_user, "new": None}
            steps.append(
                (f"package user {package_user}", change, lambda: host.delete_user(package_user))
            )
    masked = manifest.get("masked_unit")
    if masked and salt["service.masked"](masked):
        change = {"old": "masked", "new": None}
        steps.append((f"mask {masked}", change, lambda: salt["service.unmask"](masked)))
    return steps


def _rmdirs(directories: list[str]) -> None:
    """Remove directories opskit created, innermost first, as long as they are empty."""
    for directory in reversed(directories):
        with contextlib.suppress(OSError):
            os.rmdir(directory)


def remove_unit(host, unit: str) -> None:
    with contextlib.suppress(CommandExecutionError):
        host.salt["service.stop"](unit)
    with contextlib.suppress(CommandExecutionError):
        host.salt["service.disable"](unit)
    pathlib.Path(plan.UNIT_DIR, unit).unlink(missing_ok=True)
    host.salt["service.systemctl_reload"]()
    host.run(["systemctl", "reset-failed", unit])


def steps(host, name: str) -> list:
    """(what, {"old", "new"}, action) for everything opskit installed for ``name``."""
    manifest = host.load_manifest(name) or {}
    salt = host.salt
    unit = f"{name}.service"
    result = []
    state = host.active(unit)
    if os.path.exists(f"{plan.UNIT_DIR}/{unit}") or state not in ("absent", "inactive"):
        result.append(
            ("service", {"old": state, "new": "removed"}, lambda: remove_unit(host, unit))
        )
    result += binary_steps(host, name, manifest)
    for path in (f"{plan.CONFIG_ROOT}/{name}", f"{plan.CACHE_ROOT}/{name}"):
        if os.path.exists(path):
            result.append((path, {"old": "present", "new": None}, lambda p=path: shutil.rmtree(p)))
    if manifest.get("stub_status") and os.path.exists(manifest["stub_status"]):
        change = {"old": "present", "new": None}
        result.append(("stub_status", change, lambda: remove_stub_status(host)))
    textfile = manifest.get("created_textfile_directory")
    if textfile and os.path.isdir(textfile):
        if any(os.scandir(textfile)):
            kept = f"{textfile} kept: it holds files other tools wrote"
            result.append(("textfile_directory", {"old": textfile, "new": kept}, lambda: None))
        else:
            created = manifest.get("created_dirs") or [textfile]
            change = {"old": textfile, "new": None}
            result.append(("textfile_directory", change, lambda: _rmdirs(created)))
    if manifest.get("nvidia_repo"):
        change = {"old": "configured", "new": None}
        result.append(("nvidia_repo", change, lambda: dcgm.repo(host, {}, present=False)))
    if manifest.get("dcgm_packages"):
        packages = manifest["dcgm_packages"]
        change = {"old": packages, "new": None}
        result.append(("dcgm", change, lambda: salt["pkg.purge"](pkgs=packages)))
    user = manifest.get("created_user")
    if user and salt["user.info"](user):
        result.append(("user", {"old": user, "new": None}, lambda: host.delete_user(user)))
    manifest_path = host.manifest_path(name)
    if manifest_path.exists():
        change = {"old": str(manifest_path), "new": None}
        result.append(("manifest", change, manifest_path.unlink))
    return result


def remove_empty_roots() -> None:
    """rmdir opskit's own directories once empty (…/exporters, then …/opskit)."""
    for root in (plan.INSTALL_ROOT, plan.CONFIG_ROOT, plan.CACHE_ROOT, plan.STATE_ROOT):
        directory = pathlib.Path(root)
        for path in (directory, directory.parent):
            if path.name in ("exporters", "opskit") and path.is_dir() and not any(path.iterdir()):
                path.rmdir()
