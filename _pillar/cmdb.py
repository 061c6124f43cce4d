"""ext_pillar ``cmdb``: each minion's pillar from a CMDB over HTTP(S), failing closed.

Configure one or more entries on the master (they merge in order, like any ext_pillar):

.. code-block:: yaml

    ext_pillar:
      - cmdb:
          url: https://cmdb.example.com/assets/salt/{minion_id}/pillars/   # or %s
          username: salt
          password_file: /etc/salt/cmdb.secret     # mode 0600; or password: sdb://...
          ca_bundle: /etc/salt/cmdb-ca.pem
          cache_ttl: 30
          on_error: fail                           # or stale (bounded by stale_max_age)

When the CMDB cannot be read (timeout, connection or TLS error, 401/403, 5xx, invalid
JSON, a JSON value that is not an object, an over-size body, or a 404 with the default
``missing: error``), this raises: Salt records the message in the pillar's ``_errors``
and ``state.apply``/``state.highstate`` refuse to run (retcode 5). It never returns an
empty pillar in place of one it could not read. The message names the minion, the
CMDB's host and path (never credentials) and the cause.

Every option is described in README.md ("ext_pillar cmdb"). The entries, the HTTP
client and the copies on disk live in ``_utils/opskit_cmdb*.py``, shared with the
``cmdb`` runner; this module holds the order in which the ext_pillar uses them.
"""

from __future__ import annotations

import logging
import time

try:
    import opskit_cmdb  # synced from file_roots, or module_dirs
    import opskit_cmdb_cache
    import opskit_cmdb_client
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_cmdb
    from saltext.opskit.utils import opskit_cmdb_cache
    from saltext.opskit.utils import opskit_cmdb_client

__virtualname__ = "cmdb"

log = logging.getLogger(__name__)


def __virtual__():
    if not opskit_cmdb.HAS_REQUESTS:
        return (False, "the cmdb ext_pillar needs the Python package requests")
    return __virtualname__


def ext_pillar(minion_id, pillar, **config):  # pylint: disable=unused-argument
    """
    Return the pillar the CMDB holds for ``minion_id`` (see the module docstring).

    ``pillar`` (what earlier pillar sources produced) is not used: the CMDB record is
    the whole contribution of this entry.
    """
    try:
        entry = opskit_cmdb.entry_from_config(config)
    except opskit_cmdb.CmdbConfigError as err:
        raise opskit_cmdb.CmdbConfigError(
            f"cannot read the pillar of minion {minion_id!r}: this cmdb ext_pillar entry "
            f"is misconfigured: {err}"
        ) from err
    return pillar_for(entry, minion_id, __opts__.get("cachedir"), opts=__opts__)


def pillar_for(entry, minion_id: str, cachedir, opts=None, client=None) -> dict:
    """The pillar ``entry`` contributes for ``minion_id``; raises instead of guessing.

    Order: a fresh copy (``cache_ttl``, not invalidated) is served as is; otherwise the
    CMDB is asked, conditionally (If-None-Match) when a copy with an ETag exists. A 404
    follows ``missing``. Any other failure raises CmdbError, unless ``on_error: stale``
    and a copy confirmed by the CMDB at most ``stale_max_age`` seconds ago exists: then
    that copy is served and a warning names its age and the cause.
    """
    opskit_cmdb.check_minion_id(minion_id)
    client = client or opskit_cmdb_client.Client(entry, opts)
    cache = opskit_cmdb_cache.DiskCache(cachedir) if cachedir else None
    cached = cache.read(entry, minion_id) if cache else None
    now = time.time()
    if cached is not None and cache.is_fresh(entry, cached, now):
        return _nest(entry, cached["data"])

    requested_at = time.time()
    try:
        answer = client.get(minion_id, etag=cached.get("etag") if cached else None)
    except opskit_cmdb.CmdbError as err:
        if entry.on_error != "stale" or not err.stale_ok:
            raise
        if cached is None:
            raise opskit_cmdb.CmdbError(
                f"{err}. No last-known-good copy of this minion's record exists on the "
                "master to serve instead (on_error: stale)"
            ) from err
        age = now - cached["requested_at"]
        if age > entry.stale_max_age:
            raise opskit_cmdb.CmdbError(
                f"{err}. The last-known-good copy is {age:.0f}s old, beyond `stale_max_age` "
                f"({entry.stale_max_age:g}s), so it is not served"
            ) from err
        log.warning(
            "cmdb: serving the last-known-good pillar of minion %s (%.0fs old, limit %gs) "
            "because the CMDB failed: %s",
            minion_id,
            age,
            entry.stale_max_age,
            err,
        )
        return _nest(entry, cached["data"])

    if answer.status == "missing":
        if cached is not None:
            cache.delete(entry, minion_id)  # the CMDB's answer: nothing to fall back on
        if entry.missing == "error":
            raise opskit_cmdb.CmdbMissing(
                f"the CMDB has no record for minion {minion_id!r} (HTTP 404 from "
                f"{opskit_cmdb.safe_url(entry.record_url(minion_id))}): add the host to the "
                "CMDB, or set `missing: empty` on this entry if hosts may exist before their "
                "record"
            )
        return _nest(entry, {})

    data = cached["data"] if answer.status == "not_modified" else answer.data
    keep = entry.persists() or (answer.etag is not None and answer.status == "ok")
    if cache is not None and keep:
        try:
            cache.write(entry, minion_id, data, answer.etag, requested_at)
        except OSError as err:
            log.warning(
                "cmdb: cannot keep a copy of minion %s's pillar under %s: %s",
                minion_id,
                cache.root,
                err,
            )
    return _nest(entry, data)


def _nest(entry, data: dict) -> dict:
    return {entry.nesting_key: data} if entry.nesting_key else data
