"""Copies of CMDB records on the master's disk, invalidation markers and the webhook
replay guard, for the ``cmdb`` ext_pillar and runner.

Every process of the master (and ``salt-run``) shares these files under
``<cachedir>/opskit-cmdb``; writes go through ``opskit_files.write_atomic``, so readers
see the old or the new file, never a torn one. Files are 0600 in 0700 directories.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import pathlib
import time

try:
    import opskit_cmdb  # synced from file_roots, or module_dirs
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_cmdb

try:
    import opskit_files  # synced from file_roots, or module_dirs
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_files

log = logging.getLogger(__name__)

CACHE_DIRNAME = "opskit-cmdb"


# Disk cache --------------------------------------------------------------------------
def _write(path: pathlib.Path, payload: bytes) -> None:
    """Atomic, mode 0600; not fsynced: a copy lost in a crash is fetched again, and the
    fsyncs would cost more than the fetch they save."""
    opskit_files.write_atomic(str(path), payload, 0o600, durable=False)


def _private_dir(path: pathlib.Path, top: pathlib.Path) -> pathlib.Path:
    """Create ``path`` and its parents up to ``top`` (included) with mode 0700."""
    for directory in (*reversed(path.relative_to(top).parents), path.relative_to(top)):
        current = top / directory
        current.mkdir(mode=0o700, parents=current == top, exist_ok=True)
        if current.stat().st_mode & 0o077:
            current.chmod(0o700)
    return path


def _key(minion_id: str) -> str:
    return hashlib.sha256(minion_id.encode("utf-8")).hexdigest()


class DiskCache:
    """Per-minion copies and invalidation markers under ``<cachedir>/opskit-cmdb``.

    Layout::

        opskit-cmdb/entries/<entry cache id>/<sha256(minion id)>.json   copies, 0600
        opskit-cmdb/invalidated/<sha256(minion id)>                      marker: time
        opskit-cmdb/invalidated/all                                      marker: time
        opskit-cmdb/webhooks/<sha256(signature)>[.lock]                   replay guard

    A copy records when the request that fetched (or revalidated) it was *sent*; it is
    fresh for ``cache_ttl`` seconds unless an invalidation marker is newer than that.
    Every process of the master (and ``salt-run``) shares these files; writes are atomic
    renames, so readers see the old or the new file, never a torn one.
    """

    def __init__(self, cachedir):
        self.root = pathlib.Path(cachedir) / CACHE_DIRNAME
        self._root = str(self.root)  # the hot paths (read, markers) use plain strings

    def _entry_dir(self, entry: opskit_cmdb.Entry) -> pathlib.Path:
        return self.root / "entries" / entry.cache_id

    def read(self, entry: opskit_cmdb.Entry, minion_id: str) -> dict | None:
        path = os.path.join(self._root, "entries", entry.cache_id, _key(minion_id) + ".json")
        try:
            with open(path, "rb") as handle:
                record = json.loads(handle.read())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            log.warning("cmdb: ignoring unreadable cache file %s: %s", path, err)
            return None
        if (
            not isinstance(record, dict)
            or record.get("minion_id") != minion_id
            or not isinstance(record.get("data"), dict)
            or not isinstance(record.get("requested_at"), (int, float))
        ):
            log.warning("cmdb: ignoring malformed cache file %s", path)
            return None
        return record

    def write(
        self, entry: opskit_cmdb.Entry, minion_id: str, data: dict, etag, requested_at
    ) -> None:
        record = {
            "minion_id": minion_id,
            "url": opskit_cmdb.safe_url(entry.record_url(minion_id)),
            "etag": etag,
            "requested_at": requested_at,
            "data": data,
        }
        directory = _private_dir(self._entry_dir(entry), self.root)
        path = directory / f"{_key(minion_id)}.json"
        _write(path, json.dumps(record, sort_keys=True).encode())

    def delete(self, entry: opskit_cmdb.Entry, minion_id: str) -> None:
        path = self._entry_dir(entry) / f"{_key(minion_id)}.json"
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    # Invalidation markers -----------------------------------------------------------
    def _marker(self, minion_id: str | None) -> str:
        name = "all" if minion_id is None else _key(minion_id)
        return os.path.join(self._root, "invalidated", name)

    def invalidate(self, minion_id: str | None, now: float | None = None) -> float:
        """Mark copies of ``minion_id`` (None: every minion) as not fresh from now on."""
        stamp = time.time() if now is None else now
        directory = _private_dir(self.root / "invalidated", self.root)
        name = os.path.basename(self._marker(minion_id))
        _write(directory / name, repr(stamp).encode())
        return stamp

    def invalidated_at(self, minion_id: str) -> float:
        latest = 0.0
        for path in (self._marker(None), self._marker(minion_id)):
            try:
                with open(path, "rb") as handle:
                    latest = max(latest, float(handle.read()))
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as err:
                # Cannot tell when it was invalidated: treat it as just now (fetch again).
                log.warning("cmdb: unreadable invalidation marker %s: %s", path, err)
                return time.time()
        return latest

    def is_fresh(self, entry: opskit_cmdb.Entry, record: dict, now: float) -> bool:
        requested_at = record["requested_at"]
        if entry.cache_ttl <= 0 or not requested_at <= now < requested_at + entry.cache_ttl:
            return False
        return requested_at > self.invalidated_at(record["minion_id"])

    # Webhook replay guard ----------------------------------------------------------------
    @contextlib.contextmanager
    def webhook_once(self, signature: str, max_age: float):
        """Act on the webhook with ``signature`` at most once; yields ``record()``.

        Inside the block the caller holds an exclusive lock for this signature (an
        ``flock``, released by the kernel even if the process dies), so a concurrent
        delivery of the same webhook is refused. A signature counts as processed only
        once the caller calls ``record()``, after the hook's effect was published: if
        acting on it fails, the CMDB's redelivery is acted on instead of being refused
        as a replay. Raises WebhookRejected for a recorded or concurrent signature.
        Records older than twice ``max_age`` are pruned: anything that old is refused
        by its timestamp anyway.
        """
        directory = _private_dir(self.root / "webhooks", self.root)
        now = time.time()
        for old in directory.iterdir():
            with contextlib.suppress(OSError):
                if now - old.stat().st_mtime > 2 * max_age:
                    old.unlink()
        done = directory / hashlib.sha256(signature.encode()).hexdigest()
        lock = os.open(f"{done}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise opskit_cmdb.WebhookRejected(
                    "this exact webhook is being processed by another delivery right now: "
                    "refused as a replay"
                ) from None
            if done.exists():
                raise opskit_cmdb.WebhookRejected(
                    "this exact webhook was already processed: refused as a replay"
                )

            def record() -> None:
                os.close(os.open(done, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))

            yield record
        finally:
            os.close(lock)
