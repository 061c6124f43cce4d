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

Every option is described in README.md ("ext_pillar cmdb"); the HTTP client, cache and
validation live in ``_utils/opskit_cmdb.py``, shared with the ``cmdb`` runner.
"""

from __future__ import annotations

try:
    import opskit_cmdb  # synced from file_roots, or module_dirs
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_cmdb

__virtualname__ = "cmdb"


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
    return opskit_cmdb.pillar_for(entry, minion_id, __opts__.get("cachedir"), opts=__opts__)
