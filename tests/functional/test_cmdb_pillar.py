"""The ``cmdb`` ext_pillar, loaded by Salt's real pillar loader, against real HTTP(S)
servers on 127.0.0.1 (see tests/cmdb_servers.py): the lab's sample CMDB where it can
produce the situation, a scripted server where it cannot (5xx, 403, redirects, slow or
compressed bodies, client certificates). Assertions look at what the server received.
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
import logging
import os
import stat
import subprocess
import sys
import textwrap
import time

import opskit_cmdb
import opskit_cmdb_client
import pytest
import requests
import salt.loader
import salt.pillar

from tests.cmdb_servers import PASSWORD
from tests.cmdb_servers import USERNAME
from tests.cmdb_servers import Reply
from tests.cmdb_servers import SampleCmdb
from tests.cmdb_servers import ScriptedServer
from tests.cmdb_servers import Tls
from tests.cmdb_servers import write_secret
from tests.conftest import REPO

WEB = {"roles": ["web", "anubis"], "common": {"motd": "web front end"}}
RECORD_PATH = "/assets/salt/web-01.lab/pillars/"
BASIC = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
TOKEN = "tok-3f9a8b7c6d5e"


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return Tls.create(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def password_file(tmp_path_factory):
    return write_secret(tmp_path_factory.mktemp("secret") / "cmdb.secret", PASSWORD)


@pytest.fixture
def cmdb(tmp_path, tls):
    server = SampleCmdb(tmp_path / "cmdb", tls)
    server.put("web-01.lab", WEB)
    yield server
    server.stop()


@pytest.fixture
def scripted(tls):
    server = ScriptedServer(tls.server_context())
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pillar_opts(master_opts):
    return copy.deepcopy(master_opts)


@pytest.fixture(scope="module")
def pillars(pillar_opts):
    """Salt's real ext_pillar loader (the same call a master worker makes)."""
    return salt.loader.pillars(pillar_opts, salt.loader.minion_mods(pillar_opts))


@pytest.fixture
def cachedir(pillar_opts, tmp_path):
    path = tmp_path / "master-cache"
    path.mkdir()
    pillar_opts["cachedir"] = str(path)
    return path


@pytest.fixture
def ext_pillar(pillars, cachedir):
    def call(config, minion_id="web-01.lab"):
        return pillars["cmdb"](minion_id, {}, **config)

    return call


@pytest.fixture
def conf(tls, password_file):
    def build(server, **overrides):
        base = {
            "url": server.url,
            "username": USERNAME,
            "password_file": str(password_file),
            "ca_bundle": str(tls.ca_file),
            "backoff": 0.05,
        }
        base.update(overrides)
        return {k: v for k, v in base.items() if v is not None}

    return build


def _raises(call, *args, **kwargs) -> str:
    with pytest.raises(Exception) as err:  # noqa: PT011 - the message is what is checked
        call(*args, **kwargs)
    return str(err.value)


# The happy path --------------------------------------------------------------------------
def test_returns_the_record_over_verified_tls_with_basic_auth(ext_pillar, conf, cmdb):
    assert ext_pillar(conf(cmdb)) == WEB
    [request] = cmdb.requests()
    assert request["method"] == "GET"
    assert request["target"] == RECORD_PATH
    assert request["user"] == USERNAME
    assert request["status"] == 200


def test_legacy_percent_s_url_keeps_working(ext_pillar, conf, cmdb):
    legacy = cmdb.url.replace("{minion_id}", "%s")
    assert ext_pillar(conf(cmdb, url=legacy)) == WEB
    assert [r["target"] for r in cmdb.requests()] == [RECORD_PATH]


def test_nesting_key_puts_the_record_under_one_key(ext_pillar, conf, cmdb):
    assert ext_pillar(conf(cmdb, nesting_key="cmdb")) == {"cmdb": WEB}


def test_password_from_sdb(ext_pillar, conf, cmdb, pillar_opts, monkeypatch):
    pillar_opts["cmdb_secrets"] = {"driver": "env"}
    monkeypatch.setenv("OPSKIT_TEST_CMDB_PASSWORD", PASSWORD)
    config = conf(cmdb, password_file=None, password="sdb://cmdb_secrets/OPSKIT_TEST_CMDB_PASSWORD")
    assert ext_pillar(config) == WEB
    assert cmdb.requests()[0]["user"] == USERNAME


def test_bearer_token_and_extra_headers_are_sent_and_basic_auth_is_not(
    ext_pillar, conf, scripted, tmp_path
):
    token_file = write_secret(tmp_path / "token", TOKEN)
    scripted.script(Reply(body=b'{"a": 1}'))
    config = conf(
        scripted,
        username=None,
        password_file=None,
        token_file=str(token_file),
        headers={"X-Tenant": "ops"},
    )
    assert ext_pillar(config) == {"a": 1}
    [request] = scripted.received
    assert request["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert request["headers"]["X-Tenant"] == "ops"
    assert request["headers"]["User-Agent"].startswith("opskit-cmdb/")


def test_one_pooled_connection_serves_many_compiles(ext_pillar, conf, scripted):
    scripted.script(Reply(body=b'{"a": 1}'))
    for _ in range(10):
        assert ext_pillar(conf(scripted)) == {"a": 1}
    assert len(scripted.received) == 10
    assert len({r["client"] for r in scripted.received}) == 1


# Minion ids and the path segment --------------------------------------------------------------
@pytest.mark.parametrize(
    "host_id",
    ["../../etc/passwd", "..", ".", "a/b", "a%2Fb", "%2e%2e", "a?admin=1", "a#x", "a\\b", "a b"],
)
def test_unsafe_ids_never_reach_the_server(ext_pillar, conf, cmdb, host_id):
    message = _raises(ext_pillar, conf(cmdb), host_id)
    assert repr(host_id) in message
    assert "cannot be used in a CMDB URL" in message or "relative path" in message
    assert cmdb.requests() == []


@pytest.mark.parametrize(
    ("host_id", "target_segment"),
    [("user@host", "user%40host"), ("hôte.lab", "h%C3%B4te.lab"), ("a;b=c", "a%3Bb%3Dc")],
)
def test_unusual_ids_stay_inside_their_segment(ext_pillar, conf, cmdb, host_id, target_segment):
    cmdb.put(host_id, {"who": host_id})
    assert ext_pillar(conf(cmdb), host_id) == {"who": host_id}
    assert [r["target"] for r in cmdb.requests()] == [f"/assets/salt/{target_segment}/pillars/"]


# Fail closed ---------------------------------------------------------------------------------
def test_missing_record_fails_closed_by_default(ext_pillar, conf, cmdb):
    message = _raises(ext_pillar, conf(cmdb), "new-01.lab")
    assert "no record for minion 'new-01.lab'" in message
    assert "/assets/salt/new-01.lab/pillars/" in message
    assert "missing: empty" in message


def test_missing_empty_returns_an_empty_pillar(ext_pillar, conf, cmdb):
    assert ext_pillar(conf(cmdb, missing="empty"), "new-01.lab") == {}
    assert ext_pillar(conf(cmdb, missing="empty", nesting_key="cmdb"), "new-01.lab") == {"cmdb": {}}


def test_wrong_password_is_401_and_names_the_options(ext_pillar, conf, cmdb, tmp_path):
    wrong = write_secret(tmp_path / "wrong", "not-the-password")
    message = _raises(ext_pillar, conf(cmdb, password_file=str(wrong)))
    assert "HTTP 401" in message
    assert "password_file" in message
    assert [r["status"] for r in cmdb.requests()] == [401]  # not retried


def test_403_is_not_retried(ext_pillar, conf, scripted):
    scripted.script(Reply(status=403, body=b"{}"))
    assert "HTTP 403" in _raises(ext_pillar, conf(scripted))
    assert len(scripted.received) == 1


def test_5xx_is_retried_with_backoff_then_succeeds(ext_pillar, conf, scripted):
    scripted.script(Reply(status=503), Reply(status=502), Reply(body=b'{"ok": true}'))
    assert ext_pillar(conf(scripted, retries=2)) == {"ok": True}
    assert len(scripted.received) == 3


def test_persistent_5xx_fails_after_bounded_retries(ext_pillar, conf, scripted):
    scripted.script(Reply(status=500))
    message = _raises(ext_pillar, conf(scripted, retries=2))
    assert "HTTP 500" in message
    assert "after 3 attempts" in message
    assert len(scripted.received) == 3


def test_429_retry_after_is_honoured(ext_pillar, conf, scripted):
    scripted.script(Reply(status=429, headers={"Retry-After": "1"}), Reply(body=b"{}"))
    assert ext_pillar(conf(scripted, retries=1)) == {}
    first, second = (r["time"] for r in scripted.received)
    assert second - first >= 0.9


def test_read_timeout_fails_closed(ext_pillar, conf, tmp_path, tls):
    slow = SampleCmdb(tmp_path / "slow", tls, latency_ms=1500)
    slow.put("web-01.lab", WEB)
    try:
        message = _raises(ext_pillar, conf(slow, timeout=[2, 0.3], retries=1))
    finally:
        slow.stop()
    assert "read timeout" in message
    assert "after 2 attempts" in message


def test_a_body_dripping_past_the_deadline_fails(ext_pillar, conf, scripted):
    scripted.script(Reply(body=b'{"a": "' + b"x" * 30 + b'"}', drip=0.05))
    message = _raises(ext_pillar, conf(scripted, timeout=[0.5, 0.5], retries=0))
    assert "read timeout" in message


# Wall-clock deadlines: a server that sends one byte a second never trips a read timeout,
# so without a deadline a fetch would last as many seconds as the answer has bytes, times
# the attempts. These servers drip far longer than the test's own timeout allows.
DRIP_SECONDS = 1.0


def _drip_case(ext_pillar, config, scripted, reply, *, attempts, dripped):
    scripted.script(*[reply] * attempts, Reply(body=b'{"after": "the drip"}'))
    started = time.monotonic()
    message = _raises(ext_pillar, config)
    elapsed = time.monotonic() - started
    connect, read = config["timeout"]
    bound = attempts * (connect + read) + sum(
        opskit_cmdb.backoff_delays(config["retries"], config["backoff"])
    )
    print(
        f"drip every {DRIP_SECONDS:g}s: the fetch failed after {elapsed:.1f}s; bound "
        f"{bound:.1f}s ({attempts} attempts x {connect + read:g}s + backoff); unbounded "
        f"it would take {attempts * dripped * DRIP_SECONDS:.0f}s+"
    )
    assert "cannot read the pillar of minion 'web-01.lab' from the CMDB at " in message
    assert f"{scripted.base}{RECORD_PATH}:" in message
    assert "the deadline passed while the CMDB was still sending" in message
    assert f"{connect + read:g}s, the deadline of one attempt" in message
    assert f"after {attempts} attempts" in message
    assert len(scripted.received) == attempts
    # The sockets the deadline cut do not poison the pool: the next fetch works.
    assert ext_pillar(config) == {"after": "the drip"}
    return message


@pytest.mark.timeout(90)
def test_a_dripping_body_is_cut_at_each_attempts_deadline(ext_pillar, conf, scripted):
    body = b'{"a": "' + b"x" * 600 + b'"}'
    config = conf(scripted, timeout=[1, 2], retries=2, backoff=0.2)
    reply = Reply(body=body, drip=DRIP_SECONDS)
    message = _drip_case(ext_pillar, config, scripted, reply, attempts=3, dripped=len(body))
    assert PASSWORD not in message


@pytest.mark.timeout(90)
def test_dripping_headers_are_cut_at_each_attempts_deadline(ext_pillar, conf, scripted):
    reply = Reply(body=b"{}", headers={"X-Padding": "x" * 300}, drip_head=DRIP_SECONDS)
    config = conf(scripted, timeout=[1, 2], retries=1, backoff=0.2)
    _drip_case(ext_pillar, config, scripted, reply, attempts=2, dripped=300)


@pytest.mark.timeout(60)
def test_retries_stop_when_the_overall_budget_would_be_passed(conf, scripted):
    """All attempts and pauses of one fetch end within the client's budget (55 s for
    the pillar; 6 s here, so that the test is short). A Retry-After longer than what is
    left ends the fetch at once instead of sleeping past the budget."""
    scripted.script(Reply(status=503, headers={"Retry-After": "5"}), Reply(body=b"{}"))
    entry = opskit_cmdb.Entry.from_config(conf(scripted, retries=3))
    client = opskit_cmdb_client.Client(entry, budget=6)
    started = time.monotonic()
    message = _raises(client.get, "web-01.lab")
    elapsed = time.monotonic() - started
    print(f"budget 6s, Retry-After 5s: failed after {elapsed:.1f}s")
    assert "HTTP 503" in message
    assert "no time is left for another attempt within the 6s deadline" in message
    assert len(scripted.received) == 1


@pytest.mark.timeout(60)
def test_the_last_attempt_gets_only_what_is_left_of_the_budget(conf, scripted):
    body = b'{"a": "' + b"x" * 600 + b'"}'
    scripted.script(Reply(body=body, drip=DRIP_SECONDS))
    entry = opskit_cmdb.Entry.from_config(conf(scripted, timeout=[1, 3], retries=2))
    client = opskit_cmdb_client.Client(entry, budget=6)
    started = time.monotonic()
    message = _raises(client.get, "web-01.lab")
    elapsed = time.monotonic() - started
    print(f"budget 6s, attempts of 4s: failed after {elapsed:.1f}s")
    assert "s left of the 6s deadline of one pillar fetch" in message
    assert "the deadline passed" in message
    assert len(scripted.received) == 2


def test_connection_refused_names_host_and_port(ext_pillar, conf, cmdb):
    cmdb.stop()
    message = _raises(ext_pillar, conf(cmdb, retries=1))
    assert f"connection refused by 127.0.0.1:{cmdb.port}" in message
    assert "after 2 attempts" in message


def test_unknown_ca_is_a_tls_failure_with_advice(ext_pillar, conf, cmdb):
    message = _raises(ext_pillar, conf(cmdb, ca_bundle=None))
    assert "TLS certificate verification failed" in message
    assert "ca_bundle" in message
    assert cmdb.requests() == []


def test_certificate_for_another_name_is_refused(ext_pillar, conf, tmp_path):
    other = Tls.create(tmp_path / "tls-other", names=("cmdb.example.net",))
    server = SampleCmdb(tmp_path / "other", other)
    try:
        message = _raises(ext_pillar, conf(server, ca_bundle=str(other.ca_file)))
    finally:
        server.stop()
    assert "does not name 127.0.0.1" in message


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_verify_false_accepts_any_certificate_and_warns(ext_pillar, conf, cmdb, caplog):
    caplog.set_level(logging.WARNING)
    assert ext_pillar(conf(cmdb, ca_bundle=None, verify=False, name="insecure")) == WEB
    assert "verification is off for insecure" in caplog.text


def test_client_certificate_is_presented(ext_pillar, conf, tls):
    server = ScriptedServer(tls.server_context(require_client_cert=True))
    server.script(Reply(body=b'{"mtls": true}'))
    try:
        with_cert = conf(server, cert=str(tls.client_cert_file), key=str(tls.client_key_file))
        assert ext_pillar(with_cert) == {"mtls": True}
        message = _raises(ext_pillar, conf(server, retries=0))
    finally:
        server.stop()
    assert "cannot read the pillar of minion 'web-01.lab'" in message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("{not json", "did not return valid JSON"),
        ("", "empty body"),
        ('["web"]', "a JSON array, not an object"),
        ('"web"', "a JSON string, not an object"),
        ("null", "a JSON null, not an object"),
        ('{"ratio": NaN}', "NaN is not valid JSON"),
    ],
)
def test_bodies_that_are_not_a_json_object_fail(ext_pillar, conf, cmdb, raw, expected):
    cmdb.put_raw("web-01.lab", raw)
    message = _raises(ext_pillar, conf(cmdb))
    assert expected in message
    assert f"https://127.0.0.1:{cmdb.port}{RECORD_PATH}" in message


def test_oversize_record_by_content_length(ext_pillar, conf, cmdb):
    cmdb.put("web-01.lab", {"blob": "x" * 5000})
    message = _raises(ext_pillar, conf(cmdb, max_bytes=4096))
    assert "more than `max_bytes` (4096)" in message


def test_oversize_after_decompression_stops_reading(ext_pillar, conf, scripted):
    bomb = gzip.compress(b'{"blob": "' + b"x" * 2_000_000 + b'"}')
    scripted.script(Reply(body=bomb, headers={"Content-Encoding": "gzip"}))
    message = _raises(ext_pillar, conf(scripted, max_bytes=65536))
    assert "stopped reading" in message
    assert len(bomb) < 65536


# Redirects ----------------------------------------------------------------------------------
def test_same_origin_redirect_is_followed_with_credentials(ext_pillar, conf, scripted):
    scripted.script(
        Reply(status=301, headers={"Location": "/v2/assets/web-01.lab/"}),
        Reply(body=b'{"moved": true}'),
    )
    assert ext_pillar(conf(scripted)) == {"moved": True}
    assert [r["target"] for r in scripted.received] == [RECORD_PATH, "/v2/assets/web-01.lab/"]
    assert all(r["headers"].get("Authorization") == BASIC for r in scripted.received)


def test_redirect_to_another_origin_is_refused_and_sends_nothing_there(
    ext_pillar, conf, scripted, tls
):
    elsewhere = ScriptedServer(tls.server_context())
    try:
        target = f"https://localhost:{elsewhere.port}/steal"
        scripted.script(Reply(status=302, headers={"Location": target}))
        message = _raises(ext_pillar, conf(scripted, headers={"X-Api-Key": "k3y"}))
        assert "redirected (HTTP 302) to another origin" in message
        assert f"https://localhost:{elsewhere.port}/steal" in message
        assert elsewhere.received == []
    finally:
        elsewhere.stop()


def test_why_redirects_are_not_left_to_requests(scripted, tls):
    """Evidence for the design: requests itself drops Authorization on a cross-host
    redirect but forwards every other header (here an API key) to the new host."""
    elsewhere = ScriptedServer(tls.server_context())
    try:
        scripted.script(
            Reply(status=302, headers={"Location": f"https://localhost:{elsewhere.port}/x"})
        )
        session = requests.Session()
        session.trust_env = False
        session.get(
            scripted.base + "/",
            auth=(USERNAME, PASSWORD),
            headers={"X-Api-Key": "k3y"},
            verify=str(tls.ca_file),
            timeout=5,
        )
        [leaked] = elsewhere.received
        assert "Authorization" not in leaked["headers"]
        assert leaked["headers"]["X-Api-Key"] == "k3y"
    finally:
        elsewhere.stop()


def test_plain_http_needs_an_explicit_opt_in(ext_pillar, conf):
    server = ScriptedServer(None)
    server.script(Reply(body=b'{"plain": true}'))
    try:
        message = _raises(ext_pillar, conf(server, ca_bundle=None))
        assert "allow_insecure_http" in message
        assert server.received == []
        config = conf(server, ca_bundle=None, allow_insecure_http=True)
        assert ext_pillar(config) == {"plain": True}
    finally:
        server.stop()


def test_a_misconfigured_entry_names_the_minion_and_option(ext_pillar, conf, cmdb):
    message = _raises(ext_pillar, conf(cmdb, pasword_file="/etc/x"))
    assert "minion 'web-01.lab'" in message
    assert "unknown cmdb ext_pillar option(s): pasword_file" in message


def test_a_world_readable_password_file_is_refused_before_any_request(ext_pillar, conf, cmdb):
    loose = write_secret(cmdb.directory / "loose.secret", PASSWORD, mode=0o644)
    message = _raises(ext_pillar, conf(cmdb, password_file=str(loose)))
    assert message.startswith("cannot read the pillar of minion 'web-01.lab' from the CMDB at")
    assert f"`password_file` {loose} is accessible to every user (mode 0644)" in message
    assert cmdb.requests() == []


def test_url_with_credentials_is_refused_without_repeating_them(ext_pillar, conf, cmdb):
    url = cmdb.url.replace("https://", f"https://{USERNAME}:{PASSWORD}@")
    message = _raises(ext_pillar, conf(cmdb, url=url, username=None, password_file=None))
    assert "carries credentials" in message
    assert PASSWORD not in message
    assert cmdb.requests() == []


# No secret in logs or errors -------------------------------------------------------------------
def test_no_credentials_in_logs_or_errors_at_debug(ext_pillar, conf, cmdb, scripted, caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("urllib3", "requests", "salt"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    token_file = write_secret(cmdb.directory / "token", TOKEN)
    messages = []
    assert ext_pillar(conf(cmdb)) == WEB
    scripted.script(Reply(status=500), Reply(status=302, headers={"Location": "https://x.test/"}))
    messages.append(_raises(ext_pillar, conf(scripted, retries=1)))
    bearer = conf(scripted, username=None, password_file=None, token_file=str(token_file))
    messages.append(_raises(ext_pillar, bearer))
    messages.append(_raises(ext_pillar, conf(cmdb, password_file=str(token_file))))  # 401
    cmdb.stop()
    messages.append(_raises(ext_pillar, conf(cmdb, retries=1)))
    everything = caplog.text + "\n".join(messages)
    assert "urllib3.connectionpool" in caplog.text  # DEBUG records were captured
    for secret in (PASSWORD, BASIC.split()[1], TOKEN):
        assert secret not in everything


# Cache, ETags and invalidation -----------------------------------------------------------------
def _cache_files(cachedir):
    return sorted((cachedir / "opskit-cmdb" / "entries").glob("*/*.json"))


def test_etag_revalidation_sends_if_none_match_and_uses_the_copy(ext_pillar, conf, cmdb, cachedir):
    assert ext_pillar(conf(cmdb)) == WEB
    assert ext_pillar(conf(cmdb)) == WEB
    first, second = cmdb.requests()
    assert first["status"] == 200
    assert first["if_none_match"] is None
    assert second["status"] == 304
    assert second["if_none_match"]
    [copy_file] = _cache_files(cachedir)
    assert stat.S_IMODE(copy_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(copy_file.parent.stat().st_mode) == 0o700
    cmdb.put("web-01.lab", {"roles": ["edited"]})
    assert ext_pillar(conf(cmdb)) == {"roles": ["edited"]}
    assert cmdb.requests()[-1]["status"] == 200


def test_without_etag_ttl_or_stale_nothing_is_kept_on_disk(ext_pillar, conf, scripted, cachedir):
    scripted.script(Reply(body=b'{"secret_ish": "x"}'))
    assert ext_pillar(conf(scripted)) == {"secret_ish": "x"}
    assert _cache_files(cachedir) == []


def _invalidate_in_another_process(cachedir, target):
    """Run the cmdb.invalidate runner through Salt's runner loader in a new process."""
    conf_dir = cachedir.parent / "runner-conf"
    conf_dir.mkdir(exist_ok=True)
    # root_dir above cachedir: Salt prefixes paths outside root_dir with it.
    (conf_dir / "master").write_text(
        f"root_dir: {cachedir.parent}\ncachedir: {cachedir}\nmodule_dirs: [{REPO}]\n"
    )
    code = textwrap.dedent(
        f"""
        import json, salt.config, salt.loader
        opts = salt.config.master_config("{conf_dir / "master"}")
        runners = salt.loader.runner(opts, utils=salt.loader.utils(opts))
        print(json.dumps(runners["cmdb.invalidate"]({target!r})))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("target", ["web-01.lab", "*"])
def test_ttl_cache_serves_copies_until_another_process_invalidates(
    ext_pillar, conf, cmdb, cachedir, target
):
    config = conf(cmdb, cache_ttl=300)
    assert ext_pillar(config) == WEB
    cmdb.put("web-01.lab", {"roles": ["edited"]})
    assert ext_pillar(config) == WEB  # fresh copy, the CMDB is not asked
    assert len(cmdb.requests()) == 1

    result = _invalidate_in_another_process(cachedir, target)
    assert result["invalidated"] == target

    assert ext_pillar(config) == {"roles": ["edited"]}
    assert [r["status"] for r in cmdb.requests()] == [200, 200]
    assert cmdb.requests()[1]["if_none_match"]  # asked conditionally, got the edit
    assert ext_pillar(config) == {"roles": ["edited"]}
    assert len(cmdb.requests()) == 2


def test_ttl_expiry_revalidates(ext_pillar, conf, cmdb):
    config = conf(cmdb, cache_ttl=0.5)
    ext_pillar(config)
    time.sleep(0.6)
    ext_pillar(config)
    assert [r["status"] for r in cmdb.requests()] == [200, 304]


# on_error: stale ------------------------------------------------------------------------------
def test_stale_copy_within_its_bound_is_served_with_a_warning(ext_pillar, conf, cmdb, caplog):
    config = conf(cmdb, on_error="stale", stale_max_age=600, retries=0)
    assert ext_pillar(config) == WEB
    cmdb.stop()
    caplog.set_level(logging.WARNING)
    assert ext_pillar(config) == WEB
    warning = next(r for r in caplog.records if "last-known-good" in r.getMessage())
    assert warning.levelno == logging.WARNING
    text = warning.getMessage()
    assert "minion web-01.lab" in text
    assert "s old, limit 600s" in text
    assert "connection refused" in text


def test_stale_copy_beyond_its_bound_fails_closed(ext_pillar, conf, cmdb):
    config = conf(cmdb, on_error="stale", stale_max_age=1, retries=0)
    assert ext_pillar(config) == WEB
    cmdb.stop()
    time.sleep(1.2)
    message = _raises(ext_pillar, config)
    assert "connection refused" in message
    assert "beyond `stale_max_age` (1s)" in message


def test_stale_without_a_copy_fails_closed(ext_pillar, conf, cmdb):
    cmdb.stop()
    message = _raises(ext_pillar, conf(cmdb, on_error="stale", retries=0))
    assert "No last-known-good copy" in message


def test_stale_does_not_paper_over_a_deleted_record(ext_pillar, conf, cmdb, cachedir):
    config = conf(cmdb, on_error="stale")
    assert ext_pillar(config) == WEB
    cmdb.store.delete("web-01.lab")
    assert "no record for minion 'web-01.lab'" in _raises(ext_pillar, config)
    assert _cache_files(cachedir) == []  # the CMDB said so: the copy is dropped


# Through Salt's pillar compiler ------------------------------------------------------------
def _compile(pillar_opts, ext, minion_id="web-01.lab"):
    opts = copy.deepcopy(pillar_opts)
    opts["ext_pillar"] = ext
    opts["id"] = minion_id
    return salt.pillar.Pillar(opts, {}, minion_id, "base").compile_pillar()


@pytest.mark.usefixtures("cachedir")
def test_salt_records_errors_naming_minion_url_and_cause(conf, cmdb, pillar_opts):
    cmdb.stop()
    pillar = _compile(pillar_opts, [{"cmdb": conf(cmdb, retries=0)}])
    assert pillar["_errors"] == [
        "Failed to load ext_pillar cmdb: cannot read the pillar of minion 'web-01.lab' from "
        f"the CMDB at https://127.0.0.1:{cmdb.port}{RECORD_PATH}: connection refused by "
        f"127.0.0.1:{cmdb.port}: is the CMDB running, and is the port in `url` right?"
    ]
    assert "roles" not in pillar


@pytest.mark.usefixtures("cachedir")
def test_entries_merge_in_order_and_one_failure_still_fails(conf, cmdb, pillar_opts, tmp_path, tls):
    second = SampleCmdb(tmp_path / "second", tls)
    second.put("web-01.lab", {"common": {"motd": "from the second CMDB"}, "site": "ams"})
    try:
        pillar = _compile(pillar_opts, [{"cmdb": conf(cmdb)}, {"cmdb": conf(second)}])
        assert "_errors" not in pillar
        assert pillar["roles"] == WEB["roles"]
        assert pillar["common"] == {"motd": "from the second CMDB"}
        assert pillar["site"] == "ams"
        reverse = _compile(pillar_opts, [{"cmdb": conf(second)}, {"cmdb": conf(cmdb)}])
        assert reverse["common"] == {"motd": "web front end"}
        second.stop()
        broken = _compile(pillar_opts, [{"cmdb": conf(cmdb)}, {"cmdb": conf(second, retries=0)}])
        assert len(broken["_errors"]) == 1
        assert f"127.0.0.1:{second.port}" in broken["_errors"][0]
    finally:
        second.stop()


def test_files_are_written_atomically_and_privately(ext_pillar, conf, cmdb, cachedir):
    config = conf(cmdb, cache_ttl=60, on_error="stale")
    ext_pillar(config)
    leftovers = [p for p in cachedir.rglob("*") if p.name.startswith(".")]  # temp files
    assert leftovers == []
    for path in cachedir.joinpath("opskit-cmdb").rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    assert os.stat(cachedir / "opskit-cmdb").st_mode & 0o077 == 0
