"""The ``cmdb`` runner, loaded by Salt's real runner loader with master options, against
the sample CMDB served over HTTPS on 127.0.0.1 (tests/cmdb_servers.py)."""

from __future__ import annotations

import copy
import json
import logging
import socket
import time

import opskit_cmdb
import opskit_cmdb_cache
import opskit_cmdb_webhook
import pytest
import salt.loader
from opskit_redact import MASK

from tests.cmdb_servers import PASSWORD
from tests.cmdb_servers import USERNAME
from tests.cmdb_servers import SampleCmdb
from tests.cmdb_servers import Tls
from tests.cmdb_servers import write_secret

RECORD = {
    "roles": ["database"],
    "postgres": {"password": "pg-pass-123", "port": 5432},
    "api_token": "tok-abc",
    "dsn": "postgres://app:dsn-pass-456@db/app",
    # What cmdb.fetch's first masking let through: libpq key=value DSNs and a URL
    # whose password contains '@'.
    "libpq": "host=db port=5432 user=app password=kv-pass-789 dbname=app",
    "jdbc": "jdbc:postgresql://db/app?user=app&password=q-pass-000",
    "replica": "postgres://app:at@pass-321@replica:5432/app",
}
WEBHOOK_SECRET = "hook-secret-for-tests"


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return Tls.create(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def cmdb(tmp_path, tls):
    server = SampleCmdb(tmp_path / "cmdb", tls)
    server.put("db-01.lab", RECORD)
    yield server
    server.stop()


@pytest.fixture
def entry_conf(cmdb, tls, tmp_path):
    return {
        "url": cmdb.url,
        "username": USERNAME,
        "password_file": str(write_secret(tmp_path / "cmdb.secret", PASSWORD)),
        "ca_bundle": str(tls.ca_file),
        "retries": 0,
        "name": "inventory",
    }


@pytest.fixture
def opts(master_opts, tmp_path, entry_conf):
    opts = copy.deepcopy(master_opts)
    opts["cachedir"] = str(tmp_path / "cache")
    opts["pki_dir"] = str(tmp_path / "pki")
    (tmp_path / "pki" / "minions").mkdir(parents=True)
    opts["ext_pillar"] = [{"cmdb": entry_conf}]
    opts["cmdb_webhook"] = {
        "secret_file": str(write_secret(tmp_path / "webhook.secret", WEBHOOK_SECRET)),
        "apply": False,
    }
    return opts


@pytest.fixture
def context():
    return {}


@pytest.fixture
def runners(opts, context):
    return salt.loader.runner(opts, utils=salt.loader.utils(opts), context=context)


def accept(opts, minion_id):
    """Make ``minion_id`` an accepted key, as `salt-key -a` would."""
    with open(f"{opts['pki_dir']}/minions/{minion_id}", "w", encoding="utf-8") as key:
        key.write("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n")


# cmdb.fetch ------------------------------------------------------------------------------
def test_fetch_masks_secrets(runners, cmdb):
    result = runners["cmdb.fetch"]("db-01.lab")
    shown = result["inventory"]
    assert shown["url"] == f"https://127.0.0.1:{cmdb.port}/assets/salt/db-01.lab/pillars/"
    assert shown["etag"]
    assert shown["pillar"] == {
        "roles": ["database"],
        "postgres": {"password": MASK, "port": 5432},
        "api_token": MASK,
        "dsn": f"postgres://app:{MASK}@db/app",
        "libpq": f"host=db port=5432 user=app password={MASK} dbname=app",
        "jdbc": f"jdbc:postgresql://db/app?user=app&password={MASK}",
        "replica": f"postgres://app:{MASK}@replica:5432/app",
    }
    text = json.dumps(result)
    for secret in ("pg-pass-123", "tok-abc", "dsn-pass-456", "kv-pass", "q-pass", "pass-321"):
        assert secret not in text


def test_fetch_of_a_missing_record_raises_like_the_pillar(runners):
    with pytest.raises(opskit_cmdb.CmdbMissing, match=r"no record for minion 'new-01\.lab'"):
        runners["cmdb.fetch"]("new-01.lab")


def test_fetch_selects_an_entry_by_name_or_position(runners):
    assert list(runners["cmdb.fetch"]("db-01.lab", entry="inventory")) == ["inventory"]
    assert list(runners["cmdb.fetch"]("db-01.lab", entry=0)) == ["inventory"]
    with pytest.raises(Exception, match="no cmdb entry named or at position 'other'"):
        runners["cmdb.fetch"]("db-01.lab", entry="other")


def test_fetch_without_configured_entries_says_so(opts, context):
    opts["ext_pillar"] = []
    runners = salt.loader.runner(opts, utils=salt.loader.utils(opts), context=context)
    with pytest.raises(Exception, match="no `cmdb` entry in the master's ext_pillar"):
        runners["cmdb.fetch"]("db-01.lab")


# cmdb.check ------------------------------------------------------------------------------
def test_check_reports_every_step_ok(runners, opts, context):
    accept(opts, "db-01.lab")
    report = runners["cmdb.check"]()["inventory"]
    assert report["result"] == "ok"
    assert report["dns"] == "ok: 127.0.0.1"
    assert report["connect"].startswith("ok: 127.0.0.1:")
    assert report["tls"].startswith("ok: TLSv1.")
    assert "record of 'db-01.lab': 7 top-level keys" in report["http"]
    assert "sends ETags" in report["http"]
    assert context.get("retcode", 0) == 0


def _failed(report):
    return {k: v for k, v in report.items() if isinstance(v, str) and v.startswith("FAILED")}


def test_check_diagnoses_a_stopped_cmdb(runners, cmdb, context):
    cmdb.stop()
    report = runners["cmdb.check"](minion_id="db-01.lab")["inventory"]
    assert report["result"] == "failed"
    assert _failed(report) == {
        "connect": f"FAILED: connection refused by 127.0.0.1:{cmdb.port}: the CMDB is not "
        "listening there; is it running, and is the port in `url` right?"
    }
    assert "tls" not in report
    assert context["retcode"] == 1


def test_check_diagnoses_an_unknown_ca(opts, entry_conf, context):
    entry_conf.pop("ca_bundle")
    runners = salt.loader.runner(opts, utils=salt.loader.utils(opts), context=context)
    report = runners["cmdb.check"](minion_id="db-01.lab")["inventory"]
    assert report["tls"].startswith("FAILED: certificate verification failed (")
    assert "set `ca_bundle`" in report["tls"]


def test_check_diagnoses_rejected_credentials(opts, entry_conf, tmp_path, context):
    entry_conf["password_file"] = str(write_secret(tmp_path / "wrong", "wrong"))
    runners = salt.loader.runner(opts, utils=salt.loader.utils(opts), context=context)
    report = runners["cmdb.check"](minion_id="db-01.lab")["inventory"]
    assert report["tls"].startswith("ok")
    assert report["http"].startswith("FAILED: ")
    assert "rejected the credentials (HTTP 401)" in report["http"]


def test_check_diagnoses_a_404_for_the_probe_minion(runners):
    report = runners["cmdb.check"](minion_id="unknown.lab")["inventory"]
    assert report["http"].startswith("FAILED: HTTP 404 for minion 'unknown.lab'")
    assert "path in `url` is wrong" in report["http"]


def test_check_without_any_accepted_minion_asks_for_one(runners):
    report = runners["cmdb.check"]()["inventory"]
    assert report["http"] == (
        "FAILED: no accepted minion to request a record for: pass minion_id=<a minion in the CMDB>"
    )


def test_check_diagnoses_dns(runners, monkeypatch):
    """DNS failure is simulated: a real failed lookup would query the resolver
    configured on this machine, which is not on the machine."""

    def no_such_host(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    report = runners["cmdb.check"](minion_id="db-01.lab")["inventory"]
    assert report["dns"] == (
        "FAILED: cannot resolve '127.0.0.1' (Name or service not known): check the host in "
        "`url` and the master's DNS (/etc/resolv.conf, /etc/hosts)"
    )


def test_check_reports_a_broken_entry_and_goes_on(opts, entry_conf, context):
    opts["ext_pillar"] = [{"cmdb": {"url": "http://x/{minion_id}"}}, {"cmdb": entry_conf}]
    runners = salt.loader.runner(opts, utils=salt.loader.utils(opts), context=context)
    reports = runners["cmdb.check"](minion_id="db-01.lab")
    assert reports["ext_pillar[0]"]["config"].startswith("FAILED: `url`")
    assert reports["inventory"]["result"] == "ok"
    assert context["retcode"] == 1


# cmdb.invalidate -------------------------------------------------------------------------
def test_invalidate_writes_markers_other_processes_read(runners, opts):
    cache = opskit_cmdb_cache.DiskCache(opts["cachedir"])
    before = time.time()
    assert runners["cmdb.invalidate"]("db-01.lab")["invalidated"] == "db-01.lab"
    assert cache.invalidated_at("db-01.lab") >= before
    assert cache.invalidated_at("web-01.lab") == 0
    runners["cmdb.invalidate"]("*")
    assert cache.invalidated_at("web-01.lab") >= before


def test_invalidate_refuses_unsafe_ids(runners):
    with pytest.raises(opskit_cmdb.CmdbConfigError, match="cannot be used in a CMDB URL"):
        runners["cmdb.invalidate"]("../x")


# cmdb.hook -------------------------------------------------------------------------------
def hook_event(minion_id="db-01.lab", secret=WEBHOOK_SECRET, **overrides):
    body = json.dumps(
        {
            "event": "asset.updated",
            "minion_id": minion_id,
            "revision": 7,
            "timestamp": int(time.time()),
            **overrides,
        }
    )
    # Header names as CherryPy hands them over (title-cased).
    headers = {
        "Content-Type": "application/json",
        "X-Cmdb-Signature": opskit_cmdb_webhook.sign_webhook(secret.encode(), body.encode()),
    }
    return body, headers


def nan_hook_event():
    """A correctly signed hook whose timestamp is NaN (which compares False with
    everything, so a plain `abs(now - ts) > max_age` check lets it through)."""
    body = json.dumps(
        {"event": "asset.updated", "minion_id": "db-01.lab", "timestamp": float("nan")}
    )
    assert '"timestamp": NaN' in body
    signature = opskit_cmdb_webhook.sign_webhook(WEBHOOK_SECRET.encode(), body.encode())
    return body, {"X-Cmdb-Signature": signature}


def test_a_verified_hook_invalidates_the_minions_cache(runners, opts):
    accept(opts, "db-01.lab")
    body, headers = hook_event()
    result = runners["cmdb.hook"](body=body, headers=headers, tag="salt/netapi/hook/cmdb")
    assert result == {
        "minion_id": "db-01.lab",
        "event": "asset.updated",
        "revision": 7,
        "invalidated": True,
    }
    assert opskit_cmdb_cache.DiskCache(opts["cachedir"]).invalidated_at("db-01.lab") > 0


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: (hook_event()[0], {}), "not signed"),
        (lambda: hook_event(secret="guessed"), "does not match"),
        (lambda: hook_event(timestamp=int(time.time()) - 3600), "possible replay"),
        (lambda: hook_event(minion_id="intruder.lab"), "not an accepted key"),
        (nan_hook_event, "not valid JSON"),
        (lambda: hook_event(padding="x" * 70_000), "more than `cmdb_webhook:max_body_bytes`"),
    ],
    ids=["unsigned", "bad-signature", "old", "unknown-minion", "nan-timestamp", "oversize"],
)
def test_rejected_hooks_change_nothing_and_are_logged(runners, opts, caplog, make, reason):
    accept(opts, "db-01.lab")
    body, headers = make()
    caplog.set_level(logging.WARNING)
    with pytest.raises(opskit_cmdb.WebhookRejected, match=reason):
        runners["cmdb.hook"](body=body, headers=headers, tag="salt/netapi/hook/cmdb")
    cache = opskit_cmdb_cache.DiskCache(opts["cachedir"])
    assert cache.invalidated_at("db-01.lab") == 0
    assert cache.invalidated_at("intruder.lab") == 0
    [record] = [r for r in caplog.records if "rejected a CMDB webhook" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert reason in record.getMessage()
    assert WEBHOOK_SECRET not in caplog.text


def test_a_replayed_hook_is_refused(runners, opts):
    accept(opts, "db-01.lab")
    body, headers = hook_event()
    runners["cmdb.hook"](body=body, headers=headers)
    with pytest.raises(opskit_cmdb.WebhookRejected, match="already processed"):
        runners["cmdb.hook"](body=body, headers=headers)


def test_a_failed_publish_leaves_the_hook_unprocessed_so_a_redelivery_works(opts, context, caplog):
    """No salt-master runs in this tier, so publishing the refresh/apply really fails
    (as it does when the master's publisher is down or overloaded). The CMDB redelivers
    the same webhook: it must be acted on again, not refused as a replay."""
    accept(opts, "db-01.lab")
    opts["cmdb_webhook"]["apply"] = "highstate"
    opts["cmdb_webhook"]["refresh_timeout"] = 2
    opts["timeout"] = 2
    runners = salt.loader.runner(opts, utils=salt.loader.utils(opts), context=context)
    body, headers = hook_event()
    caplog.set_level(logging.ERROR)
    for _ in range(2):
        with pytest.raises(Exception, match="could not be acted on") as err:
            runners["cmdb.hook"](body=body, headers=headers, tag="salt/netapi/hook/cmdb")
        assert "already processed" not in str(err.value)
        assert "a redelivery of the same webhook will be acted on" in str(err.value)
        assert "minion 'db-01.lab'" in str(err.value)
    assert caplog.text.count("could not be acted on") == 2
    # Once acting on it succeeds (here: apply switched off), it is recorded...
    opts["cmdb_webhook"]["apply"] = False
    runners = salt.loader.runner(opts, utils=salt.loader.utils(opts), context=context)
    assert runners["cmdb.hook"](body=body, headers=headers)["invalidated"] is True
    # ... and only now is a further delivery a replay.
    with pytest.raises(opskit_cmdb.WebhookRejected, match="already processed"):
        runners["cmdb.hook"](body=body, headers=headers)


def test_webhook_body_limit_is_configurable_and_checked(opts, context):
    accept(opts, "db-01.lab")
    opts["cmdb_webhook"]["max_body_bytes"] = 10
    runners = salt.loader.runner(opts, utils=salt.loader.utils(opts), context=context)
    body, headers = hook_event()
    with pytest.raises(Exception, match="`cmdb_webhook:max_body_bytes` must be a whole number"):
        runners["cmdb.hook"](body=body, headers=headers)
    opts["cmdb_webhook"]["max_body_bytes"] = 1024
    runners = salt.loader.runner(opts, utils=salt.loader.utils(opts), context=context)
    with pytest.raises(opskit_cmdb.WebhookRejected, match=r"\(1024 bytes\)"):
        runners["cmdb.hook"](body=body + " " * 1024, headers=headers)


def test_without_webhook_configuration_every_hook_is_refused(opts, context):
    del opts["cmdb_webhook"]
    runners = salt.loader.runner(opts, utils=salt.loader.utils(opts), context=context)
    body, headers = hook_event()
    with pytest.raises(opskit_cmdb.WebhookRejected, match="no `cmdb_webhook` configuration"):
        runners["cmdb.hook"](body=body, headers=headers)


# The reactor SLS -----------------------------------------------------------------------------
def test_reactor_hands_the_raw_body_to_the_runner_byte_for_byte(master_opts):
    """salt/reactor/cmdb-webhook.sls rendered by Salt's renderers, as the reactor does."""
    import salt.template

    from tests.conftest import REPO

    opts = copy.deepcopy(master_opts)
    renderers = salt.loader.render(opts, salt.loader.minion_mods(opts))
    body = '{"minion_id": "h\\u00f4te", "note": "caf\u00e9 \U0001f600 \u2028 <&>"}'
    data = {"body": body, "headers": {"X-Cmdb-Signature": "sha256=00"}, "post": {}}
    reaction = salt.template.compile_template(
        str(REPO / "salt" / "reactor" / "cmdb-webhook.sls"),
        renderers,
        opts["renderer"],
        opts["renderer_blacklist"],
        opts["renderer_whitelist"],
        tag="salt/netapi/hook/cmdb",
        data=data,
    )
    assert reaction == {
        "cmdb-webhook-verify-and-apply": {
            "runner.cmdb.hook": [
                {
                    "args": [
                        {"body": body},
                        {"headers": data["headers"]},
                        {"tag": "salt/netapi/hook/cmdb"},
                    ]
                }
            ]
        }
    }
    passed = reaction["cmdb-webhook-verify-and-apply"]["runner.cmdb.hook"][0]["args"][0]["body"]
    assert passed.encode() == body.encode()
