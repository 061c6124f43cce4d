"""Plain functions of the opskit_cmdb helpers: ids and URLs, options, webhooks, the
replay guard."""

from __future__ import annotations

import json
import urllib.parse

import opskit_cmdb
import opskit_cmdb_cache
import opskit_cmdb_webhook
import pytest

URL = "https://cmdb.example.com/assets/salt/{minion_id}/pillars/"


def entry(**options):
    return opskit_cmdb.Entry.from_config({"url": URL, **options})


# Minion ids into one path segment -----------------------------------------------------
@pytest.mark.parametrize(
    ("minion_id", "segment"),
    [
        ("web-01.lab", "web-01.lab"),
        ("WEB_01", "WEB_01"),
        ("host:8080", "host%3A8080"),
        ("user@host", "user%40host"),
        ("a;b=c", "a%3Bb%3Dc"),
        ("hôte.example", "h%C3%B4te.example"),
        ("...", "..."),
        ("~x", "~x"),
    ],
)
def test_allowed_ids_fill_exactly_one_percent_encoded_segment(minion_id, segment):
    url = entry().record_url(minion_id)
    assert url == f"https://cmdb.example.com/assets/salt/{segment}/pillars/"
    path = urllib.parse.urlsplit(url).path
    assert path.split("/")[3] == segment
    assert len(path.split("/")) == 6
    assert urllib.parse.unquote(segment) == minion_id


@pytest.mark.parametrize(
    "minion_id",
    [
        "",
        ".",
        "..",
        "../etc",
        "a/b",
        "a\\b",
        "a%2Fb",
        "%2e%2e",
        "a?x=1",
        "a#frag",
        "web 01",
        "tab\there",
        "new\nline",
        "nul\x00",
        "zero\u200bwidth",
        "x" * 256,
        None,
        42,
    ],
)
def test_unsafe_ids_are_refused_with_the_id_named(minion_id):
    with pytest.raises(opskit_cmdb.CmdbConfigError) as err:
        entry().record_url(minion_id)
    message = str(err.value)
    assert "minion id" in message
    if isinstance(minion_id, str) and minion_id and len(minion_id) < 100:
        assert repr(minion_id) in message


def test_legacy_percent_s_placeholder_works_like_minion_id():
    legacy = opskit_cmdb.Entry.from_config(
        {"url": "https://cmdb.example.com/assets/salt/%s/pillars/"}
    )
    assert legacy.record_url("web-01.lab") == entry().record_url("web-01.lab")


def test_safe_url_drops_query_and_fragment():
    url = "https://cmdb.example.com:8443/assets/x/?api_key=SECRET#frag"
    assert opskit_cmdb.safe_url(url) == "https://cmdb.example.com:8443/assets/x/"


# Options ----------------------------------------------------------------------------------
def test_defaults_fail_closed_and_stay_under_salts_request_timeout():
    parsed = entry()
    assert parsed.verify is True
    assert parsed.missing == "error"
    assert parsed.on_error == "fail"
    assert parsed.cache_ttl == 0
    worst = (parsed.retries + 1) * (parsed.connect_timeout + parsed.read_timeout) + sum(
        opskit_cmdb.backoff_delays(parsed.retries, parsed.backoff)
    )
    assert worst < opskit_cmdb.WORST_CASE_BUDGET < 60


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"url": None}, "`url` is required"),
        ({"url": "https://cmdb.example.com/assets/"}, "exactly once"),
        ({"url": "https://c.example.com/{minion_id}/%s/"}, "exactly once"),
        ({"url": "ftp://cmdb.example.com/{minion_id}"}, "https://"),
        ({"url": "http://cmdb.example.com/{minion_id}/"}, "allow_insecure_http"),
        ({"url": "https://u:p@cmdb.example.com/{minion_id}/"}, "carries credentials"),
        ({"url": "https://cmdb.example.com/x?id={minion_id}"}, "must be in the path"),
        ({"url": "https://{minion_id}.example.com/x"}, "must be in the path"),
        ({"pasword": "x"}, "unknown cmdb ext_pillar option(s): pasword"),
        ({"username": "salt"}, "needs `password` or `password_file`"),
        ({"password": "x"}, "need a `username`"),
        ({"username": "u", "password": "p", "token": "t"}, "not both"),
        ({"headers": {"Authorization": "Basic x"}}, "may not set Authorization"),
        ({"headers": {"Bad Header": "x"}}, "not a valid header name"),
        ({"headers": ["X-A: b"]}, "mapping of header names"),
        ({"verify": "no"}, "`verify` must be true or false"),
        ({"ca_bundle": "/nonexistent/ca.pem"}, "does not exist"),
        ({"timeout": 0}, "`timeout` must be seconds"),
        ({"timeout": [1, 2, 3]}, "`timeout` must be seconds"),
        ({"retries": 9}, "`retries` must be between 0 and 5"),
        ({"retries": 1.5}, "`retries` must be a number"),
        ({"timeout": 20, "retries": 2}, "budget"),
        ({"max_bytes": 10}, "`max_bytes` must be between"),
        ({"missing": "ignore"}, "`missing` must be error or empty"),
        ({"on_error": "empty"}, "`on_error` must be fail or stale"),
        ({"cache_ttl": -1}, "`cache_ttl` must be between"),
        ({"nesting_key": ""}, "`nesting_key` must be a non-empty string"),
    ],
)
def test_bad_options_are_refused_naming_the_option(options, expected):
    with pytest.raises(opskit_cmdb.CmdbConfigError) as err:
        opskit_cmdb.Entry.from_config({"url": URL, **options})
    assert expected in str(err.value)


def test_userinfo_is_not_repeated_in_the_refusal():
    with pytest.raises(opskit_cmdb.CmdbConfigError) as err:
        opskit_cmdb.Entry.from_config({"url": "https://salt:hunter2@cmdb.example.com/{minion_id}"})
    assert "hunter2" not in str(err.value)


def test_ca_bundle_and_verify_false_conflict(tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("x")
    with pytest.raises(opskit_cmdb.CmdbConfigError, match="verify: false"):
        entry(ca_bundle=str(bundle), verify=False)


def test_world_readable_secret_file_is_refused(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("pw\n")
    secret.chmod(0o644)
    parsed = entry(username="salt", password_file=str(secret))
    with pytest.raises(opskit_cmdb.CmdbConfigError, match="chmod 600"):
        opskit_cmdb.request_auth(parsed)
    secret.chmod(0o600)
    assert opskit_cmdb.request_auth(parsed) == (("salt", "pw"), {})


def test_token_becomes_a_bearer_header_and_headers_are_kept(tmp_path):
    parsed = entry(token="t0k3n", headers={"X-Tenant": "ops"})
    auth, headers = opskit_cmdb.request_auth(parsed)
    assert auth is None
    assert headers == {"X-Tenant": "ops", "Authorization": "Bearer t0k3n"}
    assert "t0k3n" not in repr(parsed)


def test_cache_identity_changes_with_url_and_user():
    assert entry().cache_id != opskit_cmdb.Entry.from_config({"url": URL + "x/"}).cache_id
    assert entry().cache_id == entry().cache_id


def test_backoff_follows_urllib3_retry_doubling_and_is_capped():
    """urllib3's Retry retries the first failure at once, then doubles from 2x backoff."""
    assert opskit_cmdb.backoff_delays(5, 0.5) == [0, 1.0, 2.0, 4.0, opskit_cmdb.MAX_BACKOFF]
    assert opskit_cmdb.backoff_delays(0, 0.5) == []


# Webhooks ---------------------------------------------------------------------------------
SECRET = b"webhook-secret"
NOW = 1_800_000_000


def signed(payload: dict, secret: bytes = SECRET):
    body = json.dumps(payload).encode()
    return body, {"X-Cmdb-Signature": opskit_cmdb_webhook.sign_webhook(secret, body)}


def payload(**overrides):
    return {
        "event": "asset.updated",
        "minion_id": "web-01.lab",
        "revision": 3,
        "timestamp": NOW,
        **overrides,
    }


def test_a_correctly_signed_webhook_is_accepted_from_str_or_bytes():
    body, headers = signed(payload())
    for raw in (body, body.decode()):
        got, signature = opskit_cmdb_webhook.verify_webhook(raw, headers, SECRET, 300, now=NOW + 5)
        assert got["minion_id"] == "web-01.lab"
        assert signature == headers["X-Cmdb-Signature"]


@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [
        (b"", {}, "no body"),
        (json.dumps(payload()).encode(), {}, "not signed"),
        (json.dumps(payload()).encode(), {"X-CMDB-Signature": "md5=abc"}, "malformed"),
        (
            json.dumps(payload()).encode(),
            {"X-CMDB-Signature": "sha256=" + "0" * 64},
            "does not match",
        ),
        (*signed(payload(), secret=b"other-secret"), "does not match"),
        (*signed(payload(timestamp=NOW - 301)), "possible replay"),
        (*signed(payload(timestamp=NOW + 301)), "possible replay"),
        (*signed(payload(timestamp="now")), "numeric `timestamp`"),
        (*signed(payload(event="asset.exploded")), "is not one of"),
        (*signed(payload(minion_id="../../etc")), "unusable minion id"),
        (*signed(payload(minion_id=None)), "unusable minion id"),
    ],
)
def test_bad_webhooks_are_rejected_with_the_reason(body, headers, expected):
    with pytest.raises(opskit_cmdb.WebhookRejected, match=expected):
        opskit_cmdb_webhook.verify_webhook(body, headers, SECRET, 300, now=NOW)


def test_an_altered_body_no_longer_matches_its_signature():
    body, headers = signed(payload())
    altered = body.replace(b"web-01.lab", b"db-01.lab")
    with pytest.raises(opskit_cmdb.WebhookRejected, match="does not match"):
        opskit_cmdb_webhook.verify_webhook(altered, headers, SECRET, 300, now=NOW)


@pytest.mark.parametrize(
    "stamp", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" + "0" * 400]
)
def test_non_finite_timestamps_are_refused(stamp):
    """NaN compared with anything is False: `abs(now - nan) > max_age` let it through."""
    raw = json.dumps(payload(timestamp=0)).replace('"timestamp": 0', f'"timestamp": {stamp}')
    body = raw.encode()
    headers = {"X-Cmdb-Signature": opskit_cmdb_webhook.sign_webhook(SECRET, body)}
    with pytest.raises(opskit_cmdb.WebhookRejected) as err:
        opskit_cmdb_webhook.verify_webhook(body, headers, SECRET, 300, now=NOW)
    message = str(err.value)
    assert "not valid JSON" in message or "not a finite number" in message


def test_oversize_bodies_are_refused_before_the_signature_is_checked():
    body, headers = signed(payload(padding="x" * 2000))
    with pytest.raises(opskit_cmdb.WebhookRejected) as err:
        opskit_cmdb_webhook.verify_webhook(body, headers, SECRET, 300, now=NOW, max_bytes=1024)
    assert f"is {len(body)} bytes long" in str(err.value)
    assert "`cmdb_webhook:max_body_bytes` (1024 bytes)" in str(err.value)
    # ... the same for a str, refused on its length before it is even encoded,
    with pytest.raises(opskit_cmdb.WebhookRejected, match="characters long"):
        opskit_cmdb_webhook.verify_webhook("x" * 70_000, {}, SECRET, 300, now=NOW)
    # ... and unsigned garbage says "too large", not "not signed": size comes first.
    with pytest.raises(opskit_cmdb.WebhookRejected, match="max_body_bytes"):
        opskit_cmdb_webhook.verify_webhook(b"x" * 70_000, {}, SECRET, 300, now=NOW)
    # At the limit it is accepted.
    body, headers = signed(payload())
    got, _ = opskit_cmdb_webhook.verify_webhook(
        body, headers, SECRET, 300, now=NOW, max_bytes=len(body)
    )
    assert got["minion_id"] == "web-01.lab"


SIG_A, SIG_B = "sha256=" + "a" * 64, "sha256=" + "b" * 64


def test_replay_guard_counts_a_signature_only_once_recorded(tmp_path):
    cache = opskit_cmdb_cache.DiskCache(tmp_path)
    with cache.webhook_once(SIG_A, 300) as record:
        record()
    with (
        pytest.raises(opskit_cmdb.WebhookRejected, match="already processed"),
        cache.webhook_once(SIG_A, 300),
    ):
        pass
    # Acting on B fails: B is not recorded, its redelivery goes through.
    with pytest.raises(RuntimeError), cache.webhook_once(SIG_B, 300):
        raise RuntimeError("publish failed")
    with cache.webhook_once(SIG_B, 300) as record:
        record()
    guard = tmp_path / "opskit-cmdb" / "webhooks"
    assert {oct(p.stat().st_mode & 0o777) for p in guard.iterdir()} == {"0o600"}
    assert oct(guard.stat().st_mode & 0o777) == "0o700"


def test_replay_guard_refuses_a_concurrent_delivery(tmp_path):
    cache = opskit_cmdb_cache.DiskCache(tmp_path)
    # A second delivery (another open file description, as in another thread or
    # process of the master) while the first is being acted on.
    with (
        cache.webhook_once(SIG_A, 300),
        pytest.raises(opskit_cmdb.WebhookRejected, match="being processed"),
        cache.webhook_once(SIG_A, 300),
    ):
        pass
    with cache.webhook_once(SIG_A, 300) as record:  # the first one ended unrecorded
        record()
