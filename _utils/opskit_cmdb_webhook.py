"""Signing and verifying the CMDB's change notifications (webhooks).

The CMDB signs each notification's raw body with HMAC-SHA256 under a shared secret
(header ``X-CMDB-Signature: sha256=<hex>``). ``verify_webhook`` refuses over-size
bodies first (before the HMAC or the JSON parser sees them), then bad signatures, then
payloads that are not what opskit acts on: unknown events, timestamps that are not
finite or too far from the master's clock, unusable minion ids. The ``cmdb.hook``
runner calls it; the replay guard is ``opskit_cmdb_cache.DiskCache.webhook_once``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import time

try:
    import opskit_cmdb  # synced from file_roots, or module_dirs
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_cmdb


# Webhooks ---------------------------------------------------------------------------
SIGNATURE_HEADER = "X-CMDB-Signature"
WEBHOOK_EVENTS = ("asset.updated", "asset.deleted")
DEFAULT_WEBHOOK_MAX_AGE = 300
DEFAULT_WEBHOOK_MAX_BYTES = 64 * 1024
MAX_WEBHOOK_MAX_BYTES = 1024 * 1024


def sign_webhook(secret: bytes, body: bytes) -> str:
    """The ``X-CMDB-Signature`` value for ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def check_webhook_size(body, max_bytes: int = DEFAULT_WEBHOOK_MAX_BYTES) -> bytes:
    """``body`` as bytes if it is at most ``max_bytes`` long, else raise WebhookRejected.

    A str longer than ``max_bytes`` characters is refused before it is encoded: each
    character is at least one byte.
    """
    if isinstance(body, str):
        if len(body) > max_bytes:
            raise _oversize(len(body), max_bytes, "characters")
        body = body.encode("utf-8")
    if not isinstance(body, bytes) or not body:
        raise opskit_cmdb.WebhookRejected("the webhook has no body")
    if len(body) > max_bytes:
        raise _oversize(len(body), max_bytes, "bytes")
    return body


def _oversize(size: int, max_bytes: int, unit: str) -> opskit_cmdb.WebhookRejected:
    return opskit_cmdb.WebhookRejected(
        f"the webhook body is {size} {unit} long, more than `cmdb_webhook:max_body_bytes` "
        f"({max_bytes} bytes): refused before checking its signature. CMDB change "
        "notifications are small; raise the limit only if yours really are that large"
    )


def _no_json_constants(name):
    raise ValueError(f"{name} is not valid JSON")


def verify_webhook(
    body,
    headers,
    secret: bytes,
    max_age: float,
    *,
    now: float | None = None,
    max_bytes: int = DEFAULT_WEBHOOK_MAX_BYTES,
):
    """Check a CMDB webhook; return ``(payload, signature)`` or raise WebhookRejected.

    ``body`` is the raw request body as salt-api passed it on (``data['body']`` of the
    ``salt/netapi/hook/...`` event); the signature covers exactly those bytes. Bodies
    over ``max_bytes`` are refused first, before the HMAC or JSON parser sees them. The
    payload must be a JSON object (no NaN/Infinity) with ``event`` (asset.updated or
    asset.deleted), ``minion_id`` and ``timestamp`` (finite Unix seconds, within
    ``max_age`` of now).
    """
    now = time.time() if now is None else now
    body = check_webhook_size(body, max_bytes)
    signature = _check_signature(body, headers, secret)
    try:
        payload = json.loads(body, parse_constant=_no_json_constants)
    except ValueError as err:
        raise opskit_cmdb.WebhookRejected(f"the signed webhook body is not JSON: {err}") from None
    if not isinstance(payload, dict):
        raise opskit_cmdb.WebhookRejected("the signed webhook body is not a JSON object")
    if payload.get("event") not in WEBHOOK_EVENTS:
        raise opskit_cmdb.WebhookRejected(
            f"the webhook's event {payload.get('event')!r} is not one of "
            f"{', '.join(WEBHOOK_EVENTS)}"
        )
    skew = _timestamp_skew(payload.get("timestamp"), now)
    if abs(skew) > max_age:
        raise opskit_cmdb.WebhookRejected(
            f"the webhook's timestamp is {skew:.0f}s away from the master's clock, "
            f"more than {max_age:g}s: refused as a possible replay (check both clocks)"
        )
    try:
        opskit_cmdb.check_minion_id(payload.get("minion_id"))
    except opskit_cmdb.CmdbConfigError as err:
        raise opskit_cmdb.WebhookRejected(
            f"the webhook names an unusable minion id: {err}"
        ) from None
    return payload, signature


def _timestamp_skew(stamp, now: float) -> float:
    """``now - stamp`` for a finite numeric ``stamp``; raise WebhookRejected otherwise."""
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float)):
        raise opskit_cmdb.WebhookRejected("the webhook has no numeric `timestamp`")
    try:
        skew = now - float(stamp)
    except OverflowError:
        skew = math.inf
    if not math.isfinite(skew):
        raise opskit_cmdb.WebhookRejected(
            f"the webhook's `timestamp` {str(stamp)[:40]!r} is not a finite number of Unix "
            "seconds: refused as a possible replay"
        )
    return skew


def _check_signature(body: bytes, headers, secret: bytes) -> str:
    signature = None
    for name, value in (headers or {}).items():
        if isinstance(name, str) and name.lower() == SIGNATURE_HEADER.lower():
            signature = value
    if not signature:
        raise opskit_cmdb.WebhookRejected(
            f"the webhook is not signed (no {SIGNATURE_HEADER} header)"
        )
    if not isinstance(signature, str) or not re.fullmatch(r"sha256=[0-9a-fA-F]{64}", signature):
        raise opskit_cmdb.WebhookRejected(
            f"the webhook's {SIGNATURE_HEADER} header is malformed (expected sha256=<64 hex>)"
        )
    if not hmac.compare_digest(sign_webhook(secret, body), signature.lower()):
        raise opskit_cmdb.WebhookRejected(
            "the webhook's signature does not match its body (wrong secret, or the body "
            "was altered)"
        )
    return signature.lower()
