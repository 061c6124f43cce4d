"""opskit lab STAND-IN for ``seafobj``, Seafile's storage library. It is NOT seafobj.

Seafile's thumbnail server reads the files it thumbnails through seafobj
(haiwen/seafile-thumbnail-server ``seafile_thumbnail/utils.py``:
``fs_mgr.load_seafile(repo_id, 1, obj_id).get_content()``). Upstream's image does not
install seafobj as a package: ``docker/Dockerfile`` copies it to
``/opt/seafile/seafile/lib/python3/site-packages`` and ``docker/scripts/thumbnail-runit.sh``
puts that directory on ``PYTHONPATH`` before ``exec python3 main.py``. A release built
for the formula's systemd mode has the same layout, so the service starts only when the
unit's environment carries that ``PYTHONPATH``: the lab release archive ships this module
as ``seafile/lib/python3/site-packages/seafobj/__init__.py`` and the stand-in imports it
the way upstream does, at start-up.

What it does instead of seafobj's content-addressed blocks (disk, S3, multiple backends):
a file of library ``<repo_id>`` is the plain file ``$SEAFILE_CONF_DIR/<repo_id>/<path>``
(seafobj also finds its storage through ``SEAFILE_CONF_DIR``), and the "object id" is
that path. Paths that leave the library's directory are not found.
"""

from __future__ import annotations

import os


class GetObjectError(Exception):
    """The object does not exist (seafobj raises ``seafobj.exceptions.GetObjectError``)."""


class SeafFile:
    def __init__(self, path: str):
        self.path = path
        self.size = os.path.getsize(path)
        self.mtime_ns = os.stat(path).st_mtime_ns

    def get_content(self) -> bytes:
        with open(self.path, "rb") as handle:
            return handle.read()


class SeafFSManager:
    def __init__(self, root: str | None = None):
        self.root = root

    def _root(self) -> str:
        return self.root or os.environ.get("SEAFILE_CONF_DIR") or "/opt/seafile/seafile-data"

    def load_seafile(self, repo_id: str, version: int, obj_id: str) -> SeafFile:
        del version  # upstream passes 1; the stand-in has one layout
        library = os.path.realpath(os.path.join(self._root(), repo_id))
        path = os.path.realpath(os.path.join(library, obj_id.lstrip("/")))
        if not path.startswith(library + os.sep) or not os.path.isfile(path):
            raise GetObjectError(f"object {obj_id} of library {repo_id} not found")
        return SeafFile(path)


fs_mgr = SeafFSManager()
