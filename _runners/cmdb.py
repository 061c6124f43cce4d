"""Runner ``cmdb``: look at, diagnose and refresh what the ``cmdb`` ext_pillar reads.

- ``cmdb.fetch <minion_id>``: what each configured CMDB entry returns for a minion, with
  secrets masked.
- ``cmdb.check [minion_id=<probe>]``: DNS, TCP, TLS and HTTP/auth diagnosis of every
  configured entry, with what to do about each failure.
- ``cmdb.invalidate <minion_id|*>``: mark cached copies as stale for every master
  process; the next pillar compile asks the CMDB again.
- ``cmdb.hook``: the end of the CMDB edit -> webhook -> apply pipeline. The reactor SLS
  ``salt/reactor/cmdb-webhook.sls`` calls it with the raw body and headers salt-api
  received; it verifies the HMAC signature, invalidates that minion's cache, refreshes
  its pillar and starts ``state.apply``. Rejected hooks change nothing and are logged.

The entries come from the master's ``ext_pillar`` list; the webhook settings from the
master option ``cmdb_webhook`` (see README.md).
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import ssl
import time
import typing

from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError

try:
    import opskit_cmdb  # synced from file_roots, or module_dirs
    import opskit_cmdb_cache
    import opskit_cmdb_client
    import opskit_cmdb_webhook
    import opskit_redact
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_cmdb
    from saltext.opskit.utils import opskit_cmdb_cache
    from saltext.opskit.utils import opskit_cmdb_client
    from saltext.opskit.utils import opskit_cmdb_webhook
    from saltext.opskit.utils import opskit_redact

__virtualname__ = "cmdb"

log = logging.getLogger(__name__)

CERT_EXPIRY_WARNING_DAYS = 14


def __virtual__():
    if not opskit_cmdb.HAS_REQUESTS:
        return (False, "the cmdb runner needs the Python package requests")
    return __virtualname__


def _entries(entry=None) -> list[tuple[int, dict]]:
    found = opskit_cmdb.configured_entries(__opts__)
    if not found:
        raise SaltInvocationError(
            "no `cmdb` entry in the master's ext_pillar option; see README 'ext_pillar cmdb'"
        )
    if entry is None:
        return found
    chosen = [
        (position, config)
        for position, config in found
        if str(entry) == str(position)
        or (isinstance(config, dict) and str(entry) == str(config.get("name", "")))
    ]
    if not chosen:
        raise SaltInvocationError(
            f"no cmdb entry named or at position {entry!r}; positions: "
            f"{', '.join(str(p) for p, _ in found)}"
        )
    return chosen


def _label(position: int, config) -> str:
    try:
        return opskit_cmdb.entry_from_config(config).name
    except opskit_cmdb.CmdbConfigError:
        return f"ext_pillar[{position}]"


def _accepted_minions() -> list[str]:
    import salt.key

    return salt.key.get_key(__opts__).list_status("accepted").get("minions", [])


def fetch(minion_id, entry=None):
    """
    Show what each configured CMDB entry returns for ``minion_id``, secrets masked.

    The CMDB is asked directly (no cache, no conditional request, no retries beyond
    the entry's own). Masked with ``opskit_redact.redact_data``: values of keys named
    like a secret (password, passwd, passphrase, secret, token, api_key, private_key,
    access_key, credential, psk, key, or ending in ``_key``), private-key blocks
    anywhere, passwords inside URLs (also when they contain ``@``) and ``key=value``
    passwords in DSNs (``host=db password=...``). A failure raises with the same
    message the ext_pillar would record.

    minion_id
        The minion whose record to show.

    entry
        Only this entry: its ``name`` or its position in ``ext_pillar``.

    CLI Example:

    .. code-block:: bash

        salt-run cmdb.fetch web-01.example.com
        salt-run cmdb.fetch web-01.example.com entry=inventory
    """
    result = {}
    for position, config in _entries(entry):
        parsed = opskit_cmdb.entry_from_config(config)
        answer = opskit_cmdb_client.Client(parsed, __opts__).get(minion_id)
        url = opskit_cmdb.safe_url(parsed.record_url(minion_id))
        if answer.status == "missing":
            if parsed.missing == "error":
                raise opskit_cmdb.CmdbMissing(
                    f"the CMDB has no record for minion {minion_id!r} (HTTP 404 from {url}); "
                    "with `missing: error` its pillar fails to render"
                )
            data = {}
        else:
            data = opskit_redact.redact_data(answer.data)
        result[parsed.name] = {
            "position": position,
            "url": url,
            "etag": answer.etag,
            "missing": answer.status == "missing",
            "pillar": {parsed.nesting_key: data} if parsed.nesting_key else data,
        }
    return result


def invalidate(minion_id):
    """
    Make the next pillar compile of ``minion_id`` (or of every minion: ``*``) ask the
    CMDB again, in every master process.

    Writes an invalidation marker under the master's cachedir; cached copies fetched
    before it are no longer fresh. Copies are kept: they still serve ETag
    revalidation and, with ``on_error: stale``, as last-known-good copies.

    CLI Example:

    .. code-block:: bash

        salt-run cmdb.invalidate web-01.example.com
        salt-run cmdb.invalidate '*'
    """
    target = None if minion_id == "*" else opskit_cmdb.check_minion_id(str(minion_id))
    stamp = opskit_cmdb_cache.DiskCache(__opts__["cachedir"]).invalidate(target)
    log.info("cmdb: invalidated cached pillar of %s", minion_id)
    return {"invalidated": str(minion_id), "at": stamp}


def check(minion_id=None):
    """
    Diagnose every configured CMDB entry: configuration, DNS, TCP connect, TLS, then
    an authenticated GET of one minion's record. Each failing step says what to do.

    Returns one report per entry; the run fails (non-zero exit) if any entry fails.

    minion_id
        The minion whose record to request. Default: the first accepted minion key.

    CLI Example:

    .. code-block:: bash

        salt-run cmdb.check
        salt-run cmdb.check minion_id=web-01.example.com
    """
    probe = minion_id
    if probe is None:
        accepted = _accepted_minions()
        probe = accepted[0] if accepted else None
    reports = [_check_entry(position, config, probe) for position, config in _entries()]
    if not all(report["result"] == "ok" for report in reports):
        __context__["retcode"] = 1
    return {report.pop("name"): report for report in reports}


def _check_entry(position, config, probe) -> dict:
    report = {"name": _label(position, config), "position": position, "result": "failed"}
    try:
        entry = opskit_cmdb.entry_from_config(config)
    except opskit_cmdb.CmdbConfigError as err:
        report["config"] = f"FAILED: {err}"
        return report
    report["url"] = opskit_cmdb.safe_url(entry.url)
    report["config"] = "ok"
    scheme, host, port = opskit_cmdb.origin(entry.url.replace(opskit_cmdb.PLACEHOLDER, "x"))
    steps = (
        ("dns", lambda: _check_dns(host, port)),
        ("connect", lambda: _check_connect(entry, host, port)),
        ("tls", lambda: _check_tls(entry, host, port) if scheme == "https" else "plain http"),
        ("http", lambda: _check_http(entry, probe)),
    )
    for name, step in steps:
        try:
            report[name] = f"ok: {step()}"
        except _CheckFailed as err:
            report[name] = f"FAILED: {err}"
            return report
    report["result"] = "ok"
    return report


class _CheckFailed(Exception):
    pass


def _check_dns(host, port) -> str:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise _CheckFailed(
            f"cannot resolve {host!r} ({err.strerror}): check the host in `url` and the "
            "master's DNS (/etc/resolv.conf, /etc/hosts)"
        ) from None
    return ", ".join(sorted({info[4][0] for info in infos}))


def _check_connect(entry, host, port) -> str:
    started = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=entry.connect_timeout):
            pass
    except ConnectionRefusedError:
        raise _CheckFailed(
            f"connection refused by {host}:{port}: the CMDB is not listening there; is it "
            "running, and is the port in `url` right?"
        ) from None
    except TimeoutError:
        raise _CheckFailed(
            f"no TCP connection to {host}:{port} within {entry.connect_timeout:g}s: a "
            "firewall drops the traffic, or the host is down"
        ) from None
    except OSError as err:
        raise _CheckFailed(f"cannot connect to {host}:{port}: {err.strerror or err}") from None
    return f"{host}:{port} in {1000 * (time.monotonic() - started):.0f} ms"


def _tls_context(entry) -> ssl.SSLContext:
    import requests.utils

    if entry.verify:
        context = ssl.create_default_context(
            cafile=entry.ca_bundle or requests.utils.DEFAULT_CA_BUNDLE_PATH
        )
    else:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if entry.cert:
        try:
            context.load_cert_chain(entry.cert, entry.key)
        except (ssl.SSLError, OSError) as err:
            raise _CheckFailed(
                f"cannot load the client certificate `cert` {entry.cert}"
                f"{' / `key` ' + entry.key if entry.key else ''}: {err}"
            ) from None
    return context


def _check_tls(entry, host, port) -> str:
    context = _tls_context(entry)
    try:
        with (
            socket.create_connection((host, port), timeout=entry.connect_timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            version, cert = tls.version(), tls.getpeercert()
    except ssl.SSLCertVerificationError as err:
        message = err.verify_message or str(err)
        hint = (
            "the certificate does not name this host: use the name it was issued for in `url`"
            if "mismatch" in message.lower()
            else "set `ca_bundle` to the CA that signed the CMDB's certificate (the "
            "default is the certifi bundle, not the system store)"
        )
        raise _CheckFailed(f"certificate verification failed ({message}): {hint}") from None
    except ssl.SSLError as err:
        raise _CheckFailed(
            f"TLS handshake failed ({err.reason or err}): is this port serving HTTPS?"
        ) from None
    except OSError as err:
        raise _CheckFailed(f"TLS connection failed: {err.strerror or err}") from None
    if not entry.verify:
        return f"{version}; certificate NOT verified (`verify: false`)"
    expires = ssl.cert_time_to_seconds(cert["notAfter"])
    days = (expires - time.time()) / 86400
    note = f"{version}; certificate valid for {days:.0f} more days"
    if days < CERT_EXPIRY_WARNING_DAYS:
        note += " (renew it soon)"
    return note


def _check_http(entry, probe) -> str:
    if probe is None:
        raise _CheckFailed(
            "no accepted minion to request a record for: pass minion_id=<a minion in the CMDB>"
        )
    once = dataclasses.replace(entry, retries=0)
    started = time.monotonic()
    try:
        answer = opskit_cmdb_client.Client(once, __opts__).get(probe)
    except (opskit_cmdb.CmdbError, opskit_cmdb.CmdbConfigError) as err:
        raise _CheckFailed(str(err)) from None
    took = f"{1000 * (time.monotonic() - started):.0f} ms"
    if answer.status == "missing":
        raise _CheckFailed(
            f"HTTP 404 for minion {probe!r} at "
            f"{opskit_cmdb.safe_url(entry.record_url(probe))}: either the CMDB has no "
            "record for it (try minion_id=<a host it knows>) or the path in `url` is wrong"
        )
    etag = "sends ETags" if answer.etag else "no ETag (every compile transfers the record)"
    return (
        f"record of {probe!r}: {len(answer.data)} top-level keys in {took}; authenticated; {etag}"
    )


# Webhook --------------------------------------------------------------------------------
# A NamedTuple, not a dataclass: Salt's loader executes this module before it is in
# sys.modules, where dataclasses look up annotations.
class _WebhookConfig(typing.NamedTuple):
    secret: bytes
    max_age: float
    max_body_bytes: int
    apply: object
    test: bool
    queue: bool
    refresh_timeout: float


def _webhook_config() -> _WebhookConfig:
    conf = __opts__.get("cmdb_webhook")
    if not isinstance(conf, dict):
        raise opskit_cmdb.WebhookRejected(
            "the master has no `cmdb_webhook` configuration (secret_file, ...): every "
            "webhook is refused"
        )
    if conf.get("secret_file"):
        secret = opskit_cmdb.read_secret_file(conf["secret_file"], "cmdb_webhook:secret_file")
    elif isinstance(conf.get("secret"), str) and conf["secret"]:
        secret = opskit_cmdb.resolve_secret(conf["secret"], __opts__)
    else:
        raise opskit_cmdb.WebhookRejected(
            "`cmdb_webhook` sets neither `secret_file` nor `secret`: every webhook is refused"
        )
    apply = conf.get("apply", "highstate")
    if not (
        apply in ("highstate", False)
        or (isinstance(apply, list) and apply and all(isinstance(s, str) for s in apply))
    ):
        raise SaltInvocationError(
            "`cmdb_webhook:apply` must be highstate, false, or a list of SLS names"
        )
    max_age = conf.get("max_age", opskit_cmdb_webhook.DEFAULT_WEBHOOK_MAX_AGE)
    if isinstance(max_age, bool) or not isinstance(max_age, (int, float)) or max_age <= 0:
        raise SaltInvocationError("`cmdb_webhook:max_age` must be a positive number of seconds")
    max_body_bytes = conf.get("max_body_bytes", opskit_cmdb_webhook.DEFAULT_WEBHOOK_MAX_BYTES)
    if (
        isinstance(max_body_bytes, bool)
        or not isinstance(max_body_bytes, int)
        or not 1024 <= max_body_bytes <= opskit_cmdb_webhook.MAX_WEBHOOK_MAX_BYTES
    ):
        raise SaltInvocationError(
            "`cmdb_webhook:max_body_bytes` must be a whole number of bytes between 1024 "
            f"and {opskit_cmdb_webhook.MAX_WEBHOOK_MAX_BYTES}, got {max_body_bytes!r}"
        )
    return _WebhookConfig(
        secret=secret.encode("utf-8"),
        max_age=float(max_age),
        max_body_bytes=max_body_bytes,
        apply=apply,
        test=bool(conf.get("test", False)),
        queue=bool(conf.get("queue", True)),
        refresh_timeout=float(conf.get("refresh_timeout", 30)),
    )


def hook(body=None, headers=None, tag=None):
    """
    Act on a CMDB change notification (called by the reactor SLS, not by hand).

    Refuses bodies over ``cmdb_webhook:max_body_bytes`` before anything else, verifies
    the ``X-CMDB-Signature`` HMAC of the raw ``body`` with the secret from the master
    option ``cmdb_webhook``, refuses timestamps that are not finite or not within
    ``max_age`` of now, replays, and minions that are not accepted keys. Then it
    invalidates that minion's cached pillar, and, for ``asset.updated``, refreshes the
    minion's in-memory pillar and starts ``state.apply`` (highstate, or the SLS listed
    in ``cmdb_webhook:apply``) with ``queue=True``; it returns the job id without
    waiting for the run.

    A webhook counts as processed (and a second delivery as a replay) only once this
    succeeded: if publishing the apply fails, the runner raises and the CMDB's
    redelivery of the same webhook is acted on. A rejected hook changes nothing: it is
    logged as a warning on the master and the runner raises (the reactor's job return
    says why).

    CLI Example:

    .. code-block:: bash

        # what the reactor does with a hook event's data
        salt-run cmdb.hook body='{"event": ...}' headers='{"X-CMDB-Signature": "sha256=..."}'
    """
    sender = next((v for k, v in (headers or {}).items() if str(k).lower() == "remote-addr"), None)
    origin = [str(tag)] if tag else []
    origin += [f"from {sender}"] if sender else []
    source = f" ({', '.join(origin)})" if origin else ""
    try:
        conf = _webhook_config()
        payload, signature = opskit_cmdb_webhook.verify_webhook(
            body, headers, conf.secret, conf.max_age, max_bytes=conf.max_body_bytes
        )
        minion_id = payload["minion_id"]
        if minion_id not in _accepted_minions():
            raise opskit_cmdb.WebhookRejected(
                f"the webhook names minion {minion_id!r}, which is not an accepted key on "
                "this master"
            )
        cache = opskit_cmdb_cache.DiskCache(__opts__["cachedir"])
        with cache.webhook_once(signature, conf.max_age) as record:
            result = _act(cache, payload, conf, source)
            record()
    except (opskit_cmdb.WebhookRejected, opskit_cmdb.CmdbConfigError) as err:
        log.warning("cmdb: rejected a CMDB webhook%s; nothing changed: %s", source, err)
        raise
    return result


def _act(cache, payload, conf, source) -> dict:
    """Invalidate, refresh and apply for a verified webhook; raise if that fails."""
    minion_id = payload["minion_id"]
    try:
        cache.invalidate(minion_id)
        result = {
            "minion_id": minion_id,
            "event": payload["event"],
            "revision": payload.get("revision"),
            "invalidated": True,
        }
        log.info(
            "cmdb: verified CMDB webhook%s: %s for minion %s (revision %s); cache invalidated",
            source,
            payload["event"],
            minion_id,
            payload.get("revision"),
        )
        if payload["event"] == "asset.updated" and conf.apply is not False:
            result.update(_converge(minion_id, conf))
    except Exception as err:
        message = (
            f"the verified CMDB webhook{source} for minion {minion_id!r} (revision "
            f"{payload.get('revision')}) could not be acted on ({err}); it is not marked "
            "as processed, so a redelivery of the same webhook will be acted on"
        )
        log.error("cmdb: %s", message)
        raise CommandExecutionError(message) from err
    return result


def _converge(minion_id, conf) -> dict:
    import salt.client

    local = salt.client.get_local_client(mopts=__opts__)
    refreshed = local.cmd(
        [minion_id],
        "saltutil.refresh_pillar",
        kwarg={"wait": True, "timeout": conf.refresh_timeout},
        tgt_type="list",
        timeout=conf.refresh_timeout,
    )
    if refreshed.get(minion_id) is not True:
        log.warning(
            "cmdb: minion %s did not confirm the pillar refresh (%r); applying anyway",
            minion_id,
            refreshed.get(minion_id),
        )
    args = [] if conf.apply == "highstate" else [",".join(conf.apply)]
    kwarg = {"queue": conf.queue}
    if conf.test:
        kwarg["test"] = True
    jid = local.cmd_async([minion_id], "state.apply", arg=args, kwarg=kwarg, tgt_type="list")
    if not jid:
        raise CommandExecutionError(
            "its cache was invalidated, but publishing state.apply failed: is the minion connected?"
        )
    log.info(
        "cmdb: started state.apply %s on %s (job %s) after a CMDB webhook",
        args[0] if args else "(highstate)",
        minion_id,
        jid,
    )
    return {"pillar_refreshed": refreshed.get(minion_id) is True, "apply_jid": jid}
