"""The minion as the exporter modules see it: Salt's execution functions, the minion's
name for messages, systemd unit state, files and opskit's install manifest.

The execution module ``exporter`` builds one ``Host`` from its ``__salt__`` and hands it
to the helpers in ``_utils/opskit_exporter_*.py`` (utility modules get no ``__salt__``
of their own), so every error they raise names the minion.
"""

from __future__ import annotations

import grp
import json
import os
import pathlib
import pwd

from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError

try:
    import opskit_files  # synced from file_roots, or module_dirs
    import opskit_redact
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_files
    from saltext.opskit.utils import opskit_redact

MANIFEST_VERSION = 1


def redact(text: str, secrets=()) -> str:
    """``text`` with known secret values and password-looking fragments masked."""
    return opskit_redact.redact_text(text, secrets)


def write_file(path: str, content, mode: int, uid: int | str, gid: int | str) -> None:
    """The one atomic writer (opskit_files): mode and owner set before the rename, so a
    secret is never readable by others, and a crash never leaves half a file."""
    opskit_files.write_atomic(path, content, mode, uid, gid, makedirs=True)


def read(path: str) -> str | None:
    return opskit_files.read_text(path)


class Host:
    """Salt's execution functions and the minion's name, for the exporter helpers."""

    def __init__(self, salt, minion: str, state_root: str):
        self.salt = salt
        self.minion = minion
        self.state_root = state_root

    def error(self, message: str) -> CommandExecutionError:
        return CommandExecutionError(f"{self.minion}: {message}")

    def invocation_error(self, message: str) -> SaltInvocationError:
        return SaltInvocationError(f"{self.minion}: {message}")

    def run(self, argv: list[str], **kwargs) -> dict:
        return self.salt["cmd.run_all"](argv, python_shell=False, ignore_retcode=True, **kwargs)

    # systemd units ------------------------------------------------------------------
    def unit_props(self, unit: str) -> dict:
        try:
            return self.salt["service.show"](unit) or {}
        except CommandExecutionError:
            return {}

    def active(self, unit: str) -> str:
        props = self.unit_props(unit)
        if props.get("LoadState") in (None, "not-found"):
            return "absent"
        return props.get("ActiveState", "unknown")

    def journal(self, unit: str, since: float | None, secrets) -> str:
        argv = ["journalctl", "-u", unit, "-n", "25", "--no-pager", "-o", "cat"]
        if since:
            argv += ["--since", f"@{int(since) - 1}"]
        out = self.run(argv, output_loglevel="quiet")
        text = (out.get("stdout") or out.get("stderr") or "").strip() or "(no log lines)"
        return redact(text, secrets)

    # files --------------------------------------------------------------------------
    def ids(self, owner: str, group: str) -> tuple[int, int]:
        try:
            return pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid
        except KeyError as err:
            raise self.error(f"no such user or group {err}") from err

    def write(self, path: str, content, mode: int, owner="root", group="root") -> None:
        uid, gid = self.ids(owner, group)
        write_file(path, content, mode, uid, gid)

    def ensure_dir(self, path: str, mode: int, owner="root", group="root") -> list[str]:
        """Create ``path`` (parents root-owned 0755) if missing; set its mode and owner.
        Returns the directories created, outermost first."""
        directory = pathlib.Path(path)
        created = []
        for parent in [*reversed(directory.parents), directory]:
            if not parent.exists():
                parent.mkdir(mode=0o755)
                created.append(str(parent))
        uid, gid = self.ids(owner, group)
        stat = directory.stat()
        if stat.st_mode & 0o7777 != mode:
            directory.chmod(mode)
        if (stat.st_uid, stat.st_gid) != (uid, gid):
            os.chown(directory, uid, gid)
        return created

    @staticmethod
    def file_state(path: str) -> dict | None:
        """Content, mode and owner of a file (None if missing)."""
        target = pathlib.Path(path)
        try:
            stat = target.stat()
            content = target.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            owner = pwd.getpwuid(stat.st_uid).pw_name
            group = grp.getgrgid(stat.st_gid).gr_name
        except KeyError:
            owner, group = str(stat.st_uid), str(stat.st_gid)
        return {"content": content, "mode": stat.st_mode & 0o7777, "owner": owner, "group": group}

    def delete_user(self, user: str) -> None:
        self.salt["user.delete"](user)
        if self.salt["group.info"](user):
            self.salt["group.delete"](user)

    # the manifest: what opskit installed (no secrets) --------------------------------
    def manifest_path(self, name: str) -> pathlib.Path:
        return pathlib.Path(self.state_root) / f"{name}.json"

    def load_manifest(self, name: str) -> dict | None:
        path = self.manifest_path(name)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError as err:
            raise self.error(
                f"{path} is not valid JSON ({err}); remove it and re-run the install"
            ) from err

    def save_manifest(self, name: str, data: dict) -> None:
        data = {**data, "manifest": MANIFEST_VERSION, "name": name}
        text = json.dumps(data, indent=2, sort_keys=True) + "\n"
        self.write(str(self.manifest_path(name)), text, 0o644)

    def installed_names(self, known) -> list[str]:
        root = pathlib.Path(self.state_root)
        if not root.is_dir():
            return []
        return sorted(p.stem for p in root.glob("*.json") if p.stem in known)
