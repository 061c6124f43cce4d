"""The `anubis` formula's runtime docker on the lab's Docker minion (dock-01.lab): the
instances run as containers of upstream's image from one compose project, with nginx on
the host in front exactly as in the systemd runtime (tests/integration/test_anubis.py).

STAND-IN NOTICE: `ghcr.io/techarohq/anubis:v1.27.0` in the lab is built locally from
opskit's Anubis stand-in (tests/lab/docker/anubis/Dockerfile, tests/lab/anubis_standin.py),
shaped like upstream's ko image (entrypoint /ko-app/anubis, user 1000); no registry is
contacted. dockerd, Compose v2, nginx, Salt and every socket here are real; the
decisions Anubis makes (challenge, pass cookie, deny, X-Forwarded-For) come from the
stand-in, which follows upstream's documented behaviour.

The pillar is web-01.lab's Anubis record (tests/lab/inventory.yaml) moved to dock-01.lab
and switched to `runtime: docker`; it is passed with `pillar=` so that the minion's CMDB
record (the Docker host's) stays as it is. The first apply runs once for the module.
"""

from __future__ import annotations

import json
import time
import urllib.parse

import pytest
import requests
import yaml

from tests.integration import anubis_client
from tests.lab.lab import INVENTORY
from tests.lab.summary import summarize

WEB = "web-01.lab"
DOCK = "dock-01.lab"
IMAGE = "ghcr.io/techarohq/anubis:v1.27.0"
PROJECT_DIR = "/opt/anubis-docker"
_record = yaml.safe_load(INVENTORY.read_text())["minions"][WEB]["anubis"]
ANUBIS = json.loads(json.dumps(_record).replace(WEB, DOCK))
ANUBIS["runtime"] = "docker"
ANUBIS["release"] = {"version": "1.27.0"}  # nothing is downloaded: the image is local
# dock-01 is shared with tests that put sites into Debian's /etc/nginx/sites-enabled
# (test_docker_lab.py): keep it included when the nginx formula writes nginx.conf here.
PILLAR = json.dumps({"anubis": ANUBIS, "nginx": {"include_sites_enabled": True}})


def _apply(lab, sls, test=False):
    args = [sls, f"pillar={PILLAR}"] + (["test=True"] if test else [])
    started = time.monotonic()
    result = lab.salt(DOCK, "state.apply", *args, timeout=600)
    return result, summarize(DOCK, (result.data or {}).get(DOCK)), time.monotonic() - started


def _changed(result):
    return [key for key, value in result.data[DOCK].items() if value["changes"]]


@pytest.fixture(scope="module")
def dock(lab):
    minion = lab.minions.get(DOCK)
    if minion is None or not minion.spec.docker:
        pytest.fail(f"the lab has no Docker minion {DOCK} (docs/lab.md, 'Docker in a minion')")
    assert lab.salt(DOCK, "saltutil.sync_all", timeout=120).returncode == 0
    result, summary, took = _apply(lab, "lab.anubis,anubis")
    assert summary.succeeded, (summary, result)
    print(f"\nfirst apply on {DOCK} (runtime docker): {summary.changed} changed, {took:.1f}s")
    return {"minion": minion, "ip": minion.spec.ip}


@pytest.fixture(scope="module")
def cafile(dock, tmp_path_factory):
    path = tmp_path_factory.mktemp("anubis-docker") / "dock-01.pem"
    path.write_text(dock["minion"].read_file(f"/etc/opskit-lab/tls/{DOCK}.pem"))
    return str(path)


def _inspect(minion, name):
    ids = minion.run(
        ["docker", "compose", "--project-name", "anubis", "ps", "--all", "--quiet", name]
    ).stdout.split()
    assert len(ids) == 1, ids
    return json.loads(minion.run(["docker", "inspect", ids[0]]).stdout)[0]


def _sidecar(dock, cafile, source=None):
    return anubis_client.Site(f"https://{dock['ip']}", DOCK, cafile, source)


def _proxy(dock, cafile):
    return anubis_client.Site(f"https://{dock['ip']}:8443", f"{DOCK}:8443", cafile)


def _echo(body: bytes) -> dict:
    data = json.loads(body)
    assert data["app"] == "opskit-lab-echo", data
    return {name.lower(): value for name, value in data["headers"]}


def test_containers_run_as_upstream_documents_it(dock):
    """User 1000:1000, the host's network, a read-only root, the policy and the key
    mounted read-only, the key named by ED25519_PRIVATE_KEY_HEX_FILE (never in the
    environment), the bbolt store in a host directory owned by 1000:1000."""
    minion = dock["minion"]
    for name, port, target in (("app", 9201, " "), ("legacy", 9202, "http://127.0.0.1:8080")):
        info = _inspect(minion, name)
        assert info["State"]["Running"] is True
        assert info["Config"]["Image"] == IMAGE
        assert info["Config"]["User"] == "1000:1000"
        assert info["HostConfig"]["NetworkMode"] == "host"
        assert info["HostConfig"]["ReadonlyRootfs"] is True
        env = dict(item.split("=", 1) for item in info["Config"]["Env"])
        assert env["TARGET"] == target  # sidecar: a single space (no proxying)
        assert env["ED25519_PRIVATE_KEY_HEX_FILE"] == "/run/secrets/anubis-ed25519-private-key"
        assert "ED25519_PRIVATE_KEY_HEX" not in env
        mounts = {m["Destination"]: (m["Source"], m["RW"]) for m in info["Mounts"]}
        assert mounts == {
            "/data/cfg/botPolicy.yaml": (f"/etc/anubis/{name}.botPolicies.yaml", False),
            "/run/secrets/anubis-ed25519-private-key": (f"/etc/anubis/keys/{name}.key", False),
            "/data/store": (f"/var/lib/anubis/{name}", True),
        }
        key = minion.run(["cat", f"/etc/anubis/keys/{name}.key"]).stdout.strip()
        assert key not in json.dumps(info)  # not in docker inspect, env, args or labels
        assert key not in minion.run(["cat", f"{PROJECT_DIR}/{name}.env"]).stdout
        stat = ["stat", "-c", "%a %u:%g"]
        assert minion.run([*stat, f"/etc/anubis/keys/{name}.key"]).stdout.split() == [
            "400",
            "1000:1000",
        ]
        assert minion.run([*stat, f"/var/lib/anubis/{name}"]).stdout.split() == [
            "700",
            "1000:1000",
        ]
        # the container's bbolt store, written by its user
        owner = minion.run(["stat", "-c", "%u", f"/var/lib/anubis/{name}/anubis.bdb"]).stdout
        assert owner.strip() == "1000"
        # the policy as the formula wrote it is what the container reads
        assert minion.run(["docker", "exec", info["Id"], "cat", "/data/cfg/botPolicy.yaml"]).stdout
        health = requests.get(f"http://{dock['ip']}:{port}/healthz", timeout=10)
        assert (health.status_code, health.text) == (200, "OK\n")
    legacy = minion.run(["cat", "/etc/anubis/keys/legacy.key"]).stdout.strip()
    assert legacy == ANUBIS["instances"]["legacy"]["ed25519_private_key_hex"]


def test_sidecar_challenge_and_denied_agent(dock, cafile):
    status, headers, _ = _sidecar(dock, cafile).request("GET", "/docs/page?x=1")
    assert status == 307
    location = urllib.parse.urlsplit(headers["location"])
    assert location.path == "/.within.website/"
    assert urllib.parse.parse_qs(location.query)["redir"] == [f"https://{DOCK}/docs/page?x=1"]
    for site in (_sidecar(dock, cafile), _proxy(dock, cafile)):
        status, _, _ = site.request("GET", "/", {"User-Agent": "BadBot/2.0 (+http://bad.example)"})
        assert status == 403, site.host


def test_the_clients_real_address_reaches_the_app_in_both_modes(lab, dock, cafile):
    """The lab host's bridge address (RFC 1918) passes the challenge; the application
    then sees that address, not the spoofed headers, through the sidecar site (nginx ->
    app) and through the proxy site (nginx -> Anubis container -> app)."""
    client = lab.cfg.host_ip
    spoofed = {"X-Real-IP": "203.0.113.7", "X-Forwarded-For": "203.0.113.7"}
    for site, mode, path in (
        (_sidecar(dock, cafile), "sidecar", "/docs/page?x=1"),
        (_proxy(dock, cafile), "proxy", "/legacy?id=7"),
    ):
        auth, _ = anubis_client.pass_challenge(site, path, mode)
        status, _, body = site.request("GET", path, {"Cookie": auth, **spoofed})
        assert status == 200, mode
        headers = _echo(body)
        assert headers["x-real-ip"] == client, mode
        assert headers["x-forwarded-for"] == client, mode


def test_reapply_changes_nothing_and_a_new_container_keeps_the_key(lab, dock, cafile):
    """A second apply changes nothing (test=True predicts nothing either). Then the app
    container is removed, as a host reboot with a lost container would: the next apply
    starts a new one, only that one, with the same key file, so a pass cookie issued
    before is still valid."""
    minion = dock["minion"]
    site = _sidecar(dock, cafile)
    auth, _ = anubis_client.pass_challenge(site, "/kept", "sidecar")
    keys = {
        name: minion.run(["sha256sum", f"/etc/anubis/keys/{name}.key"]).stdout
        for name in ("app", "legacy")
    }
    legacy_id = _inspect(minion, "legacy")["Id"]

    result, summary, took = _apply(lab, "lab.anubis,anubis")
    assert summary.succeeded, result
    assert summary.changed == 0, _changed(result)
    print(f"\nsecond apply on {DOCK}: {summary.ok} states, 0 changed, {took:.1f}s")
    result, summary, _ = _apply(lab, "lab.anubis,anubis", test=True)
    assert (summary.changed, summary.pending) == (0, 0), _changed(result)

    minion.run(["docker", "rm", "--force", _inspect(minion, "app")["Id"]])
    result, summary, _ = _apply(lab, "anubis")
    assert summary.succeeded, result
    assert _changed(result) == [
        "anubis_|-anubis-service-container-app-anubis-container_running_|-app_|-container_running"
    ]
    assert _inspect(minion, "legacy")["Id"] == legacy_id  # the other instance stayed up
    for name, digest in keys.items():
        assert minion.run(["sha256sum", f"/etc/anubis/keys/{name}.key"]).stdout == digest
    assert site.request("GET", "/kept", {"Cookie": auth})[0] == 200


def test_clean_takes_the_project_down_and_leaves_nothing(lab, dock):
    minion = dock["minion"]
    result, summary, _ = _apply(lab, "anubis.clean")
    assert summary.succeeded, result
    left = minion.run(
        ["docker", "ps", "--all", "--quiet", "--filter", "label=com.docker.compose.project=anubis"]
    ).stdout
    assert left.strip() == ""
    files = minion.run(
        ["sh", "-c", f"ls -d /etc/anubis {PROJECT_DIR} /var/lib/anubis 2>/dev/null"], check=False
    ).stdout
    assert files.strip() == ""
    # the image stays: it is the host's, not the formula's
    assert minion.run(["docker", "image", "inspect", IMAGE]).returncode == 0
