"""The one atomic file writer opskit's modules use.

:func:`write_atomic` writes a temporary file in the target's own directory, sets its
mode and owner on the open descriptor, fsyncs it, renames it over the target and
fsyncs the directory: readers see the old file or the new one, never a partial one,
and a secret file is never readable by others, not even for an instant. It does
nothing (and says so) when content, mode and owner are already right, so states stay
quiet on the second apply.
"""

from __future__ import annotations

import contextlib
import dataclasses
import grp
import os
import pwd
import stat
import tempfile


@dataclasses.dataclass(frozen=True)
class FileState:
    """What is on disk: content (None if the file does not exist), mode, uid, gid."""

    content: bytes | None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None


def _uid(user) -> int | None:
    if user is None:
        return None
    if isinstance(user, int):
        return user
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        raise LookupError(f"user {user!r} does not exist on this host") from None


def _gid(group) -> int | None:
    if group is None:
        return None
    if isinstance(group, int):
        return group
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise LookupError(f"group {group!r} does not exist on this host") from None


def current(path: str) -> FileState:
    """The file as it is (``content`` None when it does not exist). Symlinks are not
    followed: a link where opskit writes a file is replaced by the file."""
    try:
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            if os.path.islink(path) or not stat.S_ISREG(info.st_mode):
                return FileState(None)
            return FileState(handle.read(), stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)
    except FileNotFoundError:
        return FileState(None)


def read_text(path: str) -> str | None:
    """The file's text (UTF-8), or None when it does not exist."""
    content = current(path).content
    return None if content is None else content.decode("utf-8", errors="replace")


def needs_write(path: str, content, mode: int = 0o644, user=None, group=None) -> bool:
    """True when :func:`write_atomic` would change anything (content, mode or owner)."""
    data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
    now = current(path)
    uid, gid = _uid(user), _gid(group)
    return (
        now.content != data
        or now.mode != mode
        or (uid is not None and now.uid != uid)
        or (gid is not None and now.gid != gid)
    )


def write_atomic(
    path: str,
    content,
    mode: int = 0o644,
    user=None,
    group=None,
    *,
    makedirs: bool = False,
    dir_mode: int = 0o755,
    durable: bool = True,
) -> bool:
    """Write ``content`` (str as UTF-8, or bytes) to ``path`` atomically with ``mode``
    and, when given, ``user``/``group`` (names or ids). Returns False when the file
    was already exactly so, True when it was written. Raises OSError (naming the path)
    or LookupError (unknown user/group). ``durable=False`` skips the fsyncs (still
    atomic, but a crash may lose the write): for caches written on a hot path."""
    data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
    uid, gid = _uid(user), _gid(group)
    if not needs_write(path, data, mode, uid, gid):
        return False
    directory = os.path.dirname(os.path.abspath(path))
    if makedirs:
        os.makedirs(directory, mode=dir_mode, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        # mkstemp creates the file 0600; mode and owner are final before any data
        # lands and before the name is visible.
        if uid is not None or gid is not None:
            os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            fd = -1
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
        tmp = None
    finally:
        if fd >= 0:
            os.close(fd)
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    if not durable:
        return True
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return True


def remove(path: str) -> bool:
    """Remove ``path``; True if it existed."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True
