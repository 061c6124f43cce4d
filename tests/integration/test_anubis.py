"""The `anubis` formula on the lab's web host (web-01.lab), with real nginx and systemd.

STAND-IN NOTICE: the Anubis binary cannot be obtained on these machines (upstream ships
it only as GitHub release downloads and Debian does not package it). The lab mirror
serves the opskit stand-in (tests/lab/anubis_standin.py, built into upstream-named
artifacts by tests/lab/anubis_artifacts.py) instead, and the formula installs and runs
it exactly as it would Anubis: download from the mirror, sha256 check, apt install,
upstream's anubis@.service template with DynamicUser, StateDirectory, the env file,
the policy file and the signing key as a systemd credential. The decisions Anubis makes
(challenge, pass cookie, deny, X-Forwarded-For handling) therefore come from the
stand-in, which implements Anubis's documented contract; nginx, systemd, Salt and the
formula are the real thing, and so is every socket these tests use.

The web host's pillar is its record in tests/lab/inventory.yaml, passed explicitly
(`pillar=`) so the tests do not depend on the CMDB ext_pillar; it is the same data the
CMDB serves. Clients are the lab host's bridge address (10.213.x.1, RFC 1918) and a
second RFC 1918 address the tests add to the bridge for their duration (10.213.x.2):
the lab's firewall keeps minions from reaching each other, so a second client inside
the lab has to live on the host.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import secrets
import subprocess
import time
import urllib.parse

import pytest
import requests
import yaml

from tests.integration import anubis_client
from tests.lab.lab import INVENTORY
from tests.lab.summary import summarize

WEB = "web-01.lab"
OTHER = "db-01.lab"
RECORD = yaml.safe_load(INVENTORY.read_text())["minions"][WEB]
PILLAR = json.dumps({"anubis": RECORD["anubis"]})


def _apply(lab, minion, sls, pillar=PILLAR, test=False):
    args = [sls, f"pillar={pillar}"] + (["test=True"] if test else [])
    started = time.monotonic()
    result = lab.salt(minion, "state.apply", *args, timeout=600)
    return result, summarize(minion, (result.data or {}).get(minion)), time.monotonic() - started


@pytest.fixture(scope="module")
def web(lab):
    """web-01.lab with the formula applied from its CMDB record (and the lab scaffolding:
    a self-signed certificate and the echo application behind the sites)."""
    sync = lab.salt(WEB, "saltutil.sync_all", timeout=120)
    assert sync.returncode == 0, sync
    result, summary, took = _apply(lab, WEB, "lab.anubis,anubis")
    assert summary.succeeded, (summary, result)
    print(f"\nfirst apply on {WEB}: {summary.changed} changed, {summary.ok} ok, {took:.1f}s")
    minion = lab.minions[WEB]
    return {"minion": minion, "ip": minion.spec.ip, "first": summary}


@pytest.fixture(scope="module")
def cafile(web, tmp_path_factory):
    """The web host's certificate (self-signed, lab scaffolding): clients verify TLS."""
    path = tmp_path_factory.mktemp("anubis") / "web-01.pem"
    path.write_text(web["minion"].read_file(f"/etc/opskit-lab/tls/{WEB}.pem"))
    return str(path)


@pytest.fixture(scope="module")
def second_address(lab):
    """A second RFC 1918 client address on the lab bridge (removed afterwards)."""
    address = str(ipaddress.ip_network(lab.cfg.subnet)[2])
    device = lab.cfg.bridge
    prefix = ipaddress.ip_network(lab.cfg.subnet).prefixlen
    subprocess.run(["ip", "addr", "add", f"{address}/{prefix}", "dev", device], check=True)
    yield address
    subprocess.run(["ip", "addr", "del", f"{address}/{prefix}", "dev", device], check=False)


@pytest.fixture(params=["bridge-address", "second-address"])
def client(request, lab):
    """Each client-address test runs from both of the lab host's private addresses."""
    if request.param == "bridge-address":
        return lab.cfg.host_ip
    return request.getfixturevalue("second_address")


def _sidecar(web, cafile, source=None):
    return anubis_client.Site(f"https://{web['ip']}", WEB, cafile, source)


def _proxy(web, cafile, source=None):
    return anubis_client.Site(f"https://{web['ip']}:8443", f"{WEB}:8443", cafile, source)


def _echo(body: bytes) -> dict:
    data = json.loads(body)
    assert data["app"] == "opskit-lab-echo", data
    data["header"] = {}
    for name, value in data["headers"]:
        data["header"].setdefault(name.lower(), []).append(value)
    return data


def test_instances_run_under_upstreams_unit_and_answer_healthz(lab, web):
    minion = web["minion"]
    for name, port in (("app", 9201), ("legacy", 9202)):
        unit = f"anubis@{name}.service"
        show = minion.run(
            [
                "systemctl",
                "show",
                unit,
                "-p",
                "ActiveState",
                "-p",
                "DynamicUser",
                "-p",
                "StateDirectory",
                "-p",
                "EnvironmentFiles",
                "-p",
                "FragmentPath",
                "-p",
                "Environment",
            ]
        ).stdout
        assert "ActiveState=active" in show
        assert "DynamicUser=yes" in show
        assert f"StateDirectory=anubis/{name}" in show
        assert f"EnvironmentFiles=/etc/anubis/{name}.env" in show
        # upstream's template from the package (/lib is /usr/lib on Debian 12)
        assert "FragmentPath=/lib/systemd/system/anubis@.service" in show.replace(
            "/usr/lib", "/lib"
        )
        assert f"ED25519_PRIVATE_KEY_HEX_FILE=/run/credentials/{unit}/ed25519-private-key" in show
        # /healthz and /metrics on the metrics listener, reached over the bridge
        health = requests.get(f"http://{web['ip']}:{port}/healthz", timeout=10)
        assert (health.status_code, health.text) == (200, "OK\n")
        metrics = requests.get(f"http://{web['ip']}:{port}/metrics", timeout=10).text
        assert "anubis_standin_info" in metrics  # says plainly what answers


def test_signing_keys_are_root_only_and_reach_the_service_as_credentials(web):
    minion = web["minion"]
    for name in ("app", "legacy"):
        key = f"/etc/anubis/keys/{name}.key"
        assert minion.run(["stat", "-c", "%a %U %G", key]).stdout.split() == ["400", "root", "root"]
        pid = minion.run(["systemctl", "show", "-p", "MainPID", "--value", f"anubis@{name}"]).stdout
        user = minion.run(["ps", "-o", "user=", "-p", pid.strip()]).stdout.strip()
        assert user != "root"  # DynamicUser
        environ = minion.run(["cat", f"/proc/{pid.strip()}/environ"]).stdout
        key_hex = minion.run(["cat", key]).stdout.strip()
        assert key_hex not in environ
        assert key_hex not in minion.run(["ps", "-eo", "args"]).stdout
        assert key_hex not in minion.run(["cat", f"/etc/anubis/{name}.env"]).stdout
    # legacy's key is the one from its CMDB record; app's was generated on the host
    legacy = minion.run(["cat", "/etc/anubis/keys/legacy.key"]).stdout.strip()
    assert legacy == RECORD["anubis"]["instances"]["legacy"]["ed25519_private_key_hex"]
    # the bbolt store lives in the instance's StateDirectory, owned by its dynamic user
    owner = minion.run(["stat", "-c", "%U", "/var/lib/private/anubis/app/anubis.bdb"]).stdout
    assert owner.strip() != "root"


def test_sidecar_unauthenticated_request_is_sent_to_the_challenge(web, cafile):
    status, headers, _ = _sidecar(web, cafile).request("GET", "/docs/page?x=1")
    assert status == 307
    location = urllib.parse.urlsplit(headers["location"])
    assert location.path == "/.within.website/"
    assert urllib.parse.parse_qs(location.query)["redir"] == [f"https://{WEB}/docs/page?x=1"]


def test_sidecar_pass_reaches_the_app_with_the_clients_real_address(web, cafile, client):
    """A private-range client passes the challenge; the app then sees that client's
    address in X-Real-IP and X-Forwarded-For, and not the values the client sent."""
    site = _sidecar(web, cafile, client)
    auth, steps = anubis_client.pass_challenge(site, "/docs/page?x=1", "sidecar")
    # 307 to the challenge page; pass-challenge 302 back to it (redir is the page's own
    # URL, as upstream's script sends it); Anubis 302 on to the original URL
    assert [s["status"] for s in steps] == [307, 200, 302, 302]
    assert steps[-1]["location"] == f"https://{WEB}/docs/page?x=1"
    spoofed = {"X-Real-IP": "203.0.113.7", "X-Forwarded-For": "203.0.113.7"}
    status, _, body = site.request("GET", "/docs/page?x=1", {"Cookie": auth, **spoofed})
    assert status == 200
    echo = _echo(body)
    assert echo["path"] == "/docs/page?x=1"
    assert echo["header"]["x-real-ip"] == [client]
    assert echo["header"]["x-forwarded-for"] == [client]
    assert echo["header"]["x-forwarded-ssl"] == ["on"]  # profile gitlab


def test_sidecar_pass_cookie_is_bound_to_the_clients_address(lab, web, cafile, second_address):
    """A cookie earned from one address is no pass from another (Anubis binds it to
    X-Real-IP, which nginx sets from the connection)."""
    auth, _ = anubis_client.pass_challenge(_sidecar(web, cafile), "/bound", "sidecar")
    assert _sidecar(web, cafile).request("GET", "/bound", {"Cookie": auth})[0] == 200
    other = _sidecar(web, cafile, second_address)
    assert other.request("GET", "/bound", {"Cookie": auth})[0] == 307


def test_denied_user_agent_gets_403_in_both_modes(web, cafile):
    for site in (_sidecar(web, cafile), _proxy(web, cafile)):
        status, _, _ = site.request("GET", "/", {"User-Agent": "BadBot/2.0 (+http://bad.example)"})
        assert status == 403, site.host


def test_gitlab_site_streams_a_100_mib_upload_unbuffered(web, cafile):
    """Issue 12 item 4: through the sidecar site with profile gitlab, a 100 MiB upload
    reaches the application while the client is still sending (proxy_request_buffering
    off): after the first MiB the application has seen bytes, with 99 MiB unsent. With
    nginx's default buffering the application sees nothing until the last byte is in,
    and the bounded wait below fails. Then every byte arrives intact."""
    site = _sidecar(web, cafile)
    auth, _ = anubis_client.pass_challenge(site, "/api/v4/projects/1/uploads", "sidecar")
    mib = hashlib.sha256(b"seed").digest() * (1024 * 1024 // 32)
    total, digest, upload = 100 * len(mib), hashlib.sha256(), secrets.token_hex(8)
    conn = site.connect(timeout=120)
    try:
        conn.putrequest("POST", "/api/v4/projects/1/uploads", skip_host=True)
        for name, value in (
            ("Host", WEB),
            ("User-Agent", anubis_client.BROWSER),
            ("Cookie", auth),
            ("Content-Length", str(total)),
            ("X-Upload-Id", upload),
        ):
            conn.putheader(name, value)
        conn.endheaders()
        conn.send(mib)
        digest.update(mib)
        deadline, received = time.monotonic() + 30, 0
        while not received:
            assert time.monotonic() < deadline, (
                "the application has seen no byte of the upload 30 s after the first MiB "
                "was sent: nginx is buffering the request body"
            )
            time.sleep(0.05)
            _, _, body = site.request("GET", f"/_progress/{upload}", {"Cookie": auth})
            received = json.loads(body)["received"]
        assert 0 < received <= len(mib)  # seen before the other 99 MiB were sent
        for _ in range(99):
            conn.send(mib)
            digest.update(mib)
        resp = conn.getresponse()
        echo = _echo(resp.read())
    finally:
        conn.close()
    assert resp.status == 200
    assert echo["body_length"] == total
    assert echo["body_sha256"] == digest.hexdigest()
    print(f"\napplication saw {received} bytes after 1 MiB of {total} was sent")


def test_gitlab_site_passes_a_websocket_upgrade(web, cafile):
    """Issue 12 item 4: a websocket upgrade passes the sidecar site (HTTP/1.1 to the
    application, Upgrade and Connection via the nginx formula's map), once the client
    has passed the challenge; without the pass there is no upgrade."""
    site = _sidecar(web, cafile)
    refused = anubis_client.WebSocket(site, "/-/cable")
    refused.close()
    assert refused.status == 307
    auth, _ = anubis_client.pass_challenge(site, "/-/cable", "sidecar")
    ws = anubis_client.WebSocket(site, "/-/cable", {"Cookie": auth})
    try:
        assert ws.accepted(), (ws.status, ws.headers)
        for text in ("ping", "x" * 300):
            ws.send(text)
            assert ws.receive() == f"echo: {text}"
    finally:
        ws.close()


def test_proxy_mode_keeps_the_private_clients_address(web, cafile, client):
    """nginx -> Anubis -> app: with XFF_STRIP_PRIVATE=false, the RFC 1918 client's
    address survives Anubis's X-Forwarded-For rewriting; spoofed headers do not."""
    site = _proxy(web, cafile, client)
    auth, steps = anubis_client.pass_challenge(site, "/legacy?id=7", "proxy")
    # Issue 12 item 1: redir is https://web-01.lab:8443/legacy?id=7 (the page's URL);
    # upstream compares host:port with REDIRECT_DOMAINS, which must carry :8443
    assert [s["status"] for s in steps] == [200, 302]
    assert steps[-1]["location"] == f"https://{WEB}:8443/legacy?id=7"
    spoofed = {"X-Real-IP": "203.0.113.7", "X-Forwarded-For": "203.0.113.7"}
    status, _, body = site.request("GET", "/legacy?id=7", {"Cookie": auth, **spoofed})
    assert status == 200
    echo = _echo(body)
    assert echo["header"]["x-real-ip"] == [client]
    assert echo["header"]["x-forwarded-for"] == [client]
    assert echo["header"]["x-anubis-status"] == ["PASS"]


def _anubis_targets(lab, reader, minion):
    """The Anubis groups in ``minion``'s opskit_targets, as ``reader`` gets the mine."""
    got = lab.salt(reader, "mine.get", minion, "opskit_targets", timeout=60).data[reader]
    return [g for g in got.get(minion, []) if g["labels"]["job"] == "anubis"]


def test_metrics_targets_are_in_the_mine(lab, web):
    got = _anubis_targets(lab, OTHER, WEB)
    assert sorted((t["labels"]["anubis_instance"], t["targets"]) for t in got) == [
        ("app", [f"{WEB}:9201"]),
        ("legacy", [f"{WEB}:9202"]),
    ]


def test_a_listener_collision_on_the_host_is_refused_before_anything_changes(lab, web):
    """Port 8080 is held by the lab's echo application: a pillar that puts an Anubis
    instance there is refused at render time, naming the unit that holds the port."""
    record = json.loads(PILLAR)
    record["anubis"]["instances"]["app"]["metrics_bind"] = "127.0.0.1:8080"
    result = lab.salt(WEB, "state.apply", "anubis", f"pillar={json.dumps(record)}", timeout=120)
    errors = "\n".join(result.data[WEB]) if isinstance(result.data[WEB], list) else ""
    assert (
        "anubis:instances:app:metrics_bind = '127.0.0.1:8080': is already in use on this host by "
        in errors
    )
    assert "opskit-lab-echo.service" in errors
    assert "9201" in web["minion"].run(["cat", "/etc/anubis/app.env"]).stdout  # unchanged


def test_hostile_cmdb_values_change_nothing_and_fail_with_the_key(lab, web):
    """Issue 11 items 3, 7 and 10 on a real minion: a record whose health_timeout carries
    a YAML state, whose upstream carries an nginx directive and whose bind carries a
    scope id is refused at render time, naming each key; no file, unit or marker
    changes (Salt would have run an injected state as root)."""
    minion = web["minion"]
    files = ["/etc/anubis/app.env", "/etc/nginx/opskit-sites/anubis-app.conf"]
    before = {path: minion.run(["sha256sum", path]).stdout for path in files}
    record = json.loads(PILLAR)
    record["anubis"]["health_timeout"] = "30\nx:\n  cmd.run:\n    - name: touch /opskit-pwned"
    record["anubis"]["instances"]["app"]["upstream"] = "http://127.0.0.1:8080/;internal"
    record["anubis"]["instances"]["legacy"]["bind"] = "[::1%x;}]:8924"
    result = lab.salt(WEB, "state.apply", "anubis", f"pillar={json.dumps(record)}", timeout=120)
    errors = "\n".join(result.data[WEB]) if isinstance(result.data[WEB], list) else ""
    for key in ("health_timeout", "instances:app:upstream", "instances:legacy:bind"):
        assert f"anubis:{key} = " in errors, errors
    assert minion.run(["test", "-e", "/opskit-pwned"], check=False).returncode == 1
    assert {path: minion.run(["sha256sum", path]).stdout for path in files} == before


def test_bad_nginx_site_is_refused_and_nginx_keeps_serving(lab, web, cafile):
    """The nginx formula's validated reload: a broken replacement for a live site is
    tested (nginx -t) where it cannot do harm and refused; the live file, nginx and the
    Anubis sites keep working. The site comes from pillar as the formula allows it: a
    template of the state tree with its values in context (quoted for nginx)."""
    minion = web["minion"]
    good = {
        "listen": "127.0.0.1:8998",
        "server_name": ["probe.lab"],
        "proxy_pass": "http://127.0.0.1:8080",
    }
    bad = {**good, "proxy_pass": "probe-backend"}  # one quoted parameter, not a URL

    def sites(context=None, absent=False):
        source = "salt://nginx/files/site-proxy.conf.jinja"
        entry = {"absent": True} if absent else {"source": source, "context": context}
        return json.dumps({"nginx": {"sites": {"probe": entry}}})

    def probe():
        return minion.run(["curl", "-s", "127.0.0.1:8998/probe"]).stdout

    live = "/etc/nginx/opskit-sites/probe.conf"
    try:
        result, summary, _ = _apply(lab, WEB, "nginx", pillar=sites(good))
        assert summary.succeeded, result
        assert json.loads(probe())["path"] == "/probe"  # the echo application, via the site
        before = minion.read_file(live)
        pid = minion.run(["systemctl", "show", "-p", "MainPID", "--value", "nginx"]).stdout

        result, summary, _ = _apply(lab, WEB, "nginx", pillar=sites(bad))
        assert not summary.succeeded
        failure = result.data[WEB][
            "file_|-nginx-site-probe-file-managed_|-/etc/nginx/opskit-sites/probe.conf_|-managed"
        ]
        assert "[emerg]" in failure["comment"]
        assert "invalid URL prefix in" in failure["comment"]
        assert "the live file is unchanged" in failure["comment"]
        assert minion.read_file(live) == before
        assert json.loads(probe())["path"] == "/probe"
        assert minion.run(["systemctl", "show", "-p", "MainPID", "--value", "nginx"]).stdout == pid
        status, _, _ = _sidecar(web, cafile).request("GET", "/")
        assert status == 307
    finally:
        result, summary, _ = _apply(lab, WEB, "nginx", pillar=sites(absent=True))
        assert summary.succeeded, result
    assert minion.run(["test", "-e", live], check=False).returncode


def _single(lab, minion, *args):
    result = lab.salt(minion, "state.single", *args, timeout=120)
    assert isinstance(result.data[minion], dict), result
    (ret,) = result.data[minion].values()
    return ret


def test_clean_reloads_nginx_only_after_nginx_accepts_the_configuration(lab, web):
    """anubis.clean's reload (the anubis.nginx_reloaded state): `nginx -t -q` as an argv
    list, then a reload that keeps nginx's master process; a configuration nginx -t
    rejects stops it with nginx's message while nginx keeps serving; on a host without a
    running nginx it does nothing."""
    minion = web["minion"]

    def master():
        return minion.run(["systemctl", "show", "-p", "MainPID", "--value", "nginx"]).stdout

    pid = master()
    ret = _single(lab, WEB, "anubis.nginx_reloaded", "name=nginx")
    assert ret["result"] is True, ret
    assert ret["changes"] == {"nginx": {"old": "running", "new": "reloaded"}}
    assert master() == pid
    bogus = "/etc/nginx/opskit-sites/zz-bogus.conf"
    minion.run(["sh", "-c", f"echo 'bogus_directive on;' > {bogus}"])
    try:
        ret = _single(lab, WEB, "anubis.nginx_reloaded", "name=nginx")
    finally:
        minion.run(["rm", "-f", bogus])
    assert ret["result"] is False
    assert 'unknown directive "bogus_directive"' in ret["comment"]
    assert "was not reloaded (it keeps serving the old one)" in ret["comment"]
    assert master() == pid
    assert lab.salt(OTHER, "saltutil.sync_all", timeout=120).returncode == 0
    ret = _single(lab, OTHER, "anubis.nginx_reloaded", "name=nginx")
    assert (ret["result"], ret["changes"]) == (True, {})
    assert "is not running; nothing to reload" in ret["comment"]


def test_second_apply_changes_nothing_downloads_nothing_and_keeps_the_keys(lab, web):
    minion = web["minion"]
    keys = {
        n: minion.run(["sha256sum", f"/etc/anubis/keys/{n}.key"]).stdout for n in ("app", "legacy")
    }
    requests.delete(f"{lab.cfg.mirror_url}/_lab/requests", timeout=10)

    result, summary, took = _apply(lab, WEB, "lab.anubis,anubis")
    assert summary.succeeded, result
    assert summary.changed == 0, [k for k, v in result.data[WEB].items() if v["changes"]]
    print(f"\nsecond apply on {WEB}: {summary.ok} states, 0 changed, {took:.1f}s")
    assert requests.get(f"{lab.cfg.mirror_url}/_lab/requests", timeout=10).json() == []
    for name, digest in keys.items():
        assert minion.run(["sha256sum", f"/etc/anubis/keys/{name}.key"]).stdout == digest

    result, summary, _ = _apply(lab, WEB, "lab.anubis,anubis", test=True)
    assert summary.succeeded, result
    assert (summary.changed, summary.pending) == (0, 0), result.data[WEB]


def test_tarball_install_and_clean_on_another_host(lab):
    """The tarball route on db-01.lab (metrics and health only, no site; test=True
    first), then anubis.clean, which must leave nothing of Anubis behind. The stand-in is a Python
    program and needs python3-yaml, which real Anubis (a static binary) does not; the
    test installs and removes it around the run."""
    minion = lab.minions[OTHER]
    base = RECORD["anubis"]["release"]["base_url"]
    version = RECORD["anubis"]["release"]["version"]
    pillar = json.dumps(
        {
            "anubis": {
                "release": {
                    "version": version,
                    "method": "tarball",
                    "base_url": base,
                    "checksums_url": f"{base}/v{version}/sha256sums.txt",
                },
                "instances": {
                    "tb": {
                        "mode": "proxy",
                        "bind": "127.0.0.1:8930",
                        "metrics_bind": "0.0.0.0:9230",
                        "upstream": "http://127.0.0.1:8080",
                        "site": {
                            "server_name": [OTHER],
                            "tls": {"certificate": "/x.pem", "key": "/x.key"},
                        },
                    }
                },
            }
        }
    )
    assert lab.salt(OTHER, "saltutil.sync_all", timeout=120).returncode == 0
    assert lab.salt(OTHER, "pkg.install", "python3-yaml", timeout=300).returncode == 0
    try:
        # test=True first: it says what would change and changes nothing
        result, summary, _ = _apply(lab, OTHER, "anubis.service", pillar=pillar, test=True)
        assert summary.succeeded, result
        assert summary.pending > 0
        assert minion.run(["test", "-e", "/etc/anubis"], check=False).returncode == 1

        result, summary, _ = _apply(lab, OTHER, "anubis.service", pillar=pillar)
        assert summary.succeeded, result
        exec_start = minion.run(["systemctl", "show", "-p", "ExecStart", "anubis@tb"]).stdout
        assert "/opt/anubis/anubis-1.27.0-linux-amd64/bin/anubis" in exec_start
        health = requests.get(f"http://{minion.spec.ip}:9230/healthz", timeout=10)
        assert health.status_code == 200
        mine = _anubis_targets(lab, WEB, OTHER)
        assert [g["targets"] for g in mine] == [[f"{OTHER}:9230"]]
    finally:
        result, summary, _ = _apply(lab, OTHER, "anubis.clean", pillar=pillar)
        lab.salt(OTHER, "pkg.remove", "python3-yaml,libyaml-0-2", timeout=300)
    assert summary.succeeded, result
    leftovers = minion.run(
        [
            "sh",
            "-c",
            "ls -d /etc/anubis /opt/anubis /var/lib/private/anubis /etc/systemd/system/anubis@* "
            "2>/dev/null; systemctl list-units --all --no-legend 'anubis@*'",
        ],
        check=False,
    ).stdout
    assert leftovers.strip() == ""
    assert _anubis_targets(lab, WEB, OTHER) == []
