"""The CMDB ext_pillar and the edit -> webhook -> apply pipeline on the lab.

Real salt-master (with the ``cmdb`` ext_pillar, the reactor and the ``cmdb`` runner),
real salt-api (rest_cherrypy, ``/hook``), the sample CMDB over HTTPS with basic auth,
and systemd minions. The ``common`` formula writes the CMDB's roles and motd into
/etc/opskit/roles.json and /etc/motd, which is what these tests look at. Every test
puts the records back and leaves the minions as highstate left them.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import secrets
import time

import pytest
import requests

from tests.lab.master import cmdb_webhook_secret_file
from tests.lab.procs import wait_for

MINION = "web-01.lab"
SIGNATURE = "X-CMDB-Signature"


def read_file(lab, minion_id, path) -> str:
    return lab.minions[minion_id].run(["cat", path]).stdout


def file_state(lab, minion_id, path) -> tuple[str, str]:
    """(inode/mtime/size, content): an unchanged file keeps both."""
    minion = lab.minions[minion_id]
    stamp = minion.run(["stat", "-c", "%i %.9Y %s", path]).stdout.strip()
    return stamp, minion.run(["cat", path]).stdout


def apply(lab, minion_id=MINION):
    result = lab.salt(minion_id, "state.apply", timeout=600)
    states = result.data.get(minion_id) if result.data else None
    assert isinstance(states, dict), result
    failed = [k for k, v in states.items() if not v.get("result")]
    assert not failed, (failed, result)
    return states


def record(lab, minion_id=MINION) -> dict:
    response = lab.cmdb_session().get(lab.cmdb_record_url(minion_id), timeout=10)
    response.raise_for_status()
    return response.json()


def put_record(lab, minion_id, data) -> None:
    lab.cmdb_session().put(lab.cmdb_record_url(minion_id), json=data, timeout=10).raise_for_status()


def patch_motd(lab, motd, minion_id=MINION) -> None:
    patch = {"common": {"motd": motd}}
    session = lab.cmdb_session()
    session.patch(lab.cmdb_record_url(minion_id), json=patch, timeout=10).raise_for_status()


def wait_idle(lab, minion_id=MINION, timeout=300) -> None:
    """Wait until no job runs on the minion (a reactor-started apply, say)."""

    def idle():
        running = lab.salt(minion_id, "saltutil.running", timeout=30).data or {}
        return running.get(minion_id) == []

    wait_for(f"jobs on {minion_id} to finish", idle, timeout=timeout, interval=2)


class MasterLog:
    """Lines the lab master logs from now on."""

    def __init__(self, lab):
        self.path = lab.cfg.master_root / "lab-master" / "logs" / "master.log"
        self.offset = self.path.stat().st_size

    def new(self) -> str:
        with open(self.path, encoding="utf-8", errors="replace") as handle:
            handle.seek(self.offset)
            return handle.read()


def test_cmdb_roles_reach_every_minion(lab, highstate_once):
    """top.sls turns the CMDB's roles into formulas; `common` shows them on the host."""
    for minion_id, data in lab.inventory.items():
        roles = json.loads(read_file(lab, minion_id, "/etc/opskit/roles.json"))
        assert roles == {"roles": data["roles"]}, minion_id
        motd = read_file(lab, minion_id, "/etc/motd")
        assert motd.startswith(data["common"]["motd"]), minion_id
        assert f"CMDB roles: {', '.join(data['roles'])}" in motd, minion_id


def test_runner_checks_and_fetches_the_lab_cmdb(lab):
    check = lab.salt_run("cmdb.check", "minion_id=db-01.lab")
    assert check.returncode == 0, check
    [report] = check.data.values()
    assert report["result"] == "ok", report
    assert report["tls"].startswith("ok: TLSv1"), report
    fetched = lab.salt_run("cmdb.fetch", MINION)
    assert fetched.returncode == 0, fetched
    [shown] = fetched.data.values()
    assert shown["pillar"]["roles"] == lab.inventory[MINION]["roles"]
    assert shown["url"] == lab.cmdb_record_url(MINION)


def test_cmdb_edit_is_applied_by_the_next_state_apply(lab, highstate_once):
    original = record(lab)
    motd = f"edited in the CMDB {secrets.token_hex(4)}"
    try:
        patch_motd(lab, motd)
        states = apply(lab)
        changed = [v for v in states.values() if v.get("changes")]
        assert any(v["name"] == "/etc/motd" for v in changed), states
        assert read_file(lab, MINION, "/etc/motd").startswith(motd + "\n")
    finally:
        put_record(lab, MINION, original)
        apply(lab)
    assert read_file(lab, MINION, "/etc/motd").startswith(original["common"]["motd"] + "\n")


def test_cmdb_outage_refuses_the_run_and_changes_nothing(lab, highstate_once):
    files = ("/etc/motd", "/etc/opskit/roles.json")
    before = {path: file_state(lab, MINION, path) for path in files}
    lab.stop_cmdb()
    try:
        result = lab.salt(MINION, "state.apply", timeout=300)
        messages = result.data[MINION]
        assert messages[0] == "Pillar failed to render with the following messages:", result
        assert (
            f"Failed to load ext_pillar cmdb: cannot read the pillar of minion '{MINION}' "
            f"from the CMDB at {lab.cmdb_record_url(MINION)}: connection refused"
        ) in messages[1]
        # The minion's own view of the same run: the highstate refuses with retcode 5.
        call = lab.minions[MINION].run(
            ["salt-call", "--retcode-passthrough", "--out=json", "state.apply"],
            check=False,
            timeout=300,
        )
        assert call.returncode == 5, call.stdout[-2000:] + call.stderr[-2000:]
        assert "Pillar failed to render" in call.stdout
        assert {path: file_state(lab, MINION, path) for path in files} == before
    finally:
        lab.start_cmdb()
    apply(lab)  # the CMDB is back: the minion applies normally (and nothing changed)


def test_signed_webhook_converges_the_minion_without_a_command(lab, highstate_once):
    original = record(lab)
    motd = f"edited, applied by webhook {secrets.token_hex(4)}"
    log = MasterLog(lab)
    lab.stop_cmdb()
    lab.start_cmdb(webhook=True)
    try:
        patch_motd(lab, motd)
        wait_for(
            f"{MINION} to apply the CMDB edit after the webhook",
            lambda: read_file(lab, MINION, "/etc/motd").startswith(motd + "\n"),
            timeout=180,
            interval=1,
        )
        assert (
            "verified CMDB webhook (salt/netapi/hook/cmdb, from 127.0.0.1): "
            f"asset.updated for minion {MINION}"
        ) in log.new()
        put_record(lab, MINION, original)  # the restore converges through the webhook too
        wait_for(
            f"{MINION} to apply the restored record after the webhook",
            lambda: read_file(lab, MINION, "/etc/motd").startswith(
                original["common"]["motd"] + "\n"
            ),
            timeout=180,
            interval=1,
        )
        wait_idle(lab)
    finally:
        lab.stop_cmdb()
        lab.start_cmdb()
        if record(lab) != original:
            put_record(lab, MINION, original)
            wait_idle(lab)
            apply(lab)


def test_unsigned_or_badly_signed_webhooks_change_nothing(lab, highstate_once):
    original = record(lab)
    before = file_state(lab, MINION, "/etc/motd")
    log = MasterLog(lab)
    try:
        patch_motd(lab, "this edit must not be applied")  # the lab CMDB posts no webhook
        body = json.dumps(
            {
                "event": "asset.updated",
                "minion_id": MINION,
                "revision": 999,
                "timestamp": int(time.time()),
            }
        ).encode()
        forged = "sha256=" + hmac.new(b"guessed-secret", body, hashlib.sha256).hexdigest()
        attempts = [
            {},  # unsigned
            {SIGNATURE: forged},  # signed with the wrong secret
            {SIGNATURE: "sha256=" + "0" * 64},  # garbage signature
        ]
        for extra in attempts:
            response = requests.post(
                lab.cmdb_webhook_url,
                data=body,
                headers={"Content-Type": "application/json", **extra},
                timeout=10,
            )
            assert response.status_code == 200  # salt-api accepted the event...

        def all_rejected():
            return log.new().count("rejected a CMDB webhook") >= len(attempts)

        wait_for("the master to reject the three hooks", all_rejected, timeout=60)
        new = log.new()  # ...and the runner refused it, saying why and where from
        assert new.count("rejected a CMDB webhook (salt/netapi/hook/cmdb, from 127.0.0.1)") == 3
        assert "the webhook is not signed" in new
        assert new.count("signature does not match its body") == 2
        assert "started state.apply" not in new
        assert "cache invalidated" not in new
        time.sleep(3)  # nothing was started; give a wrongly started run time to show up
        running = lab.salt(MINION, "saltutil.running", timeout=30).data
        assert running == {MINION: []}
        assert file_state(lab, MINION, "/etc/motd") == before
    finally:
        with contextlib.suppress(requests.RequestException):
            put_record(lab, MINION, original)


def test_oversize_and_non_finite_webhooks_change_nothing(lab, highstate_once):
    """Correctly signed hooks that must still be refused: a NaN timestamp (NaN compares
    False with everything, so a naive age check passes it) and a body over
    ``cmdb_webhook:max_body_bytes`` (64 KiB by default), refused before its HMAC."""
    secret = cmdb_webhook_secret_file(lab.cfg).read_bytes().strip()
    before = file_state(lab, MINION, "/etc/motd")
    log = MasterLog(lab)
    nan = (
        f'{{"event": "asset.updated", "minion_id": "{MINION}", "revision": 1, "timestamp": NaN}}'
    ).encode()
    oversize = json.dumps(
        {
            "event": "asset.updated",
            "minion_id": MINION,
            "revision": 2,
            "timestamp": int(time.time()),
            "padding": "x" * 200_000,
        }
    ).encode()
    statuses = {}
    for name, body in (("nan", nan), ("oversize", oversize)):
        signature = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        response = requests.post(
            lab.cmdb_webhook_url,
            data=body,
            headers={"Content-Type": "application/json", SIGNATURE: signature},
            timeout=30,
        )
        statuses[name] = response.status_code
    # salt-api passes both on: Salt 3008 hands rest_cherrypy's `max_request_body_size`
    # to CherryPy without the `server.` namespace, so CherryPy's own 100 MiB default
    # applies. The runner's limit is what refuses the big body.
    print(f"salt-api answered: {statuses}")
    assert statuses["nan"] == 200
    expected = 1 + (statuses["oversize"] == 200)

    def all_rejected():
        return log.new().count("rejected a CMDB webhook") >= expected

    wait_for("the master to reject the hooks", all_rejected, timeout=60)
    new = log.new()
    assert "NaN is not valid JSON" in new
    if statuses["oversize"] == 200:
        assert f"the webhook body is {len(oversize)} " in new
        assert "more than `cmdb_webhook:max_body_bytes` (65536 bytes)" in new
    assert "started state.apply" not in new
    assert "cache invalidated" not in new
    time.sleep(3)  # nothing was started; give a wrongly started run time to show up
    assert lab.salt(MINION, "saltutil.running", timeout=30).data == {MINION: []}
    assert file_state(lab, MINION, "/etc/motd") == before


@pytest.fixture(autouse=True)
def _cmdb_back_up(lab):
    """Whatever a test did, the next one finds the CMDB running without webhooks."""
    yield
    if lab.registry.pid_of("cmdb") is None:
        lab.start_cmdb()
