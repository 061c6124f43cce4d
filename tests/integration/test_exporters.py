"""The exporters formula and the exporter modules on the lab's real minions.

Real redis-server (plain and TLS with client certificates) and PostgreSQL 15 (sslmode=require,
password and client certificate) run on db-01 (lab scaffolding, tests/lab/salt/lab/database.sls);
real nginx runs on web-01. The exporters are real binaries: release-shaped archives the lab
mirror builds from Debian's packages (same names and sha256sums.txt as upstream's releases),
or Debian's packages themselves. Nothing here reaches beyond the lab.

What cannot exist here: an NVIDIA GPU, DCGM and NVIDIA's repository. The DCGM tests run
everything around them for real (version-pair refusal, no-GPU refusal, repository
configuration written and removed); the GPU path itself is NOT exercised in this lab.

The pillars below are the sample CMDB records of tests/lab/inventory.yaml, passed on the
command line, so the tests hold whether or not the lab master's CMDB ext_pillar serves them.
The minions end as they started: every exporter removed (the last test proves nothing is
left behind), the database servers still running.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re

import pytest
import requests

from tests.integration.lab_helpers import bcrypt_hash
from tests.integration.lab_helpers import changed
from tests.integration.lab_helpers import failures
from tests.integration.lab_helpers import sh
from tests.lab.lab import load_inventory

DB = "db-01.lab"
WEB = "web-01.lab"
THUMB = "thumb-01.lab"
SECRETS = ("lab-redis-password", "lab-postgres-password")
# Where a snapshot looks for files a removal could leave behind (package and Salt
# bookkeeping directories excluded: they change for reasons of their own).
SNAPSHOT = (
    "find /etc /opt /usr /var/lib /var/cache /srv -xdev "
    r"\( -path /var/lib/apt -o -path /var/lib/dpkg -o -path /var/cache/apt "
    r"-o -path /var/cache/salt -o -path /var/lib/systemd -o -path /var/cache/debconf "
    r"-o -path /var/lib/postgresql -o -path /var/lib/redis -o -path /etc/salt/pki "
    r"-o -path /var/cache/ldconfig -o -path /var/lib/ucf -o -path /etc/ld.so.cache \) "
    "-prune -o -print | sort; echo '--- users'; getent passwd | cut -d: -f1 | sort; "
    "echo '--- groups'; getent group | cut -d: -f1 | sort; echo '--- units'; "
    "systemctl list-unit-files --no-legend | awk '{print $1}' | sort"
)


def record(minion_id: str) -> dict:
    """The sample CMDB record of a minion (its pillar), as inventory.yaml has it."""
    return copy.deepcopy(load_inventory()[minion_id])


def apply(lab, minion_id: str, sls: str, pillar: dict, test: bool = False) -> dict:
    """state.apply on one minion; returns {state id: state result}."""
    args = [sls, f"pillar={json.dumps(pillar)}"]
    if test:
        args.append("test=True")
    result = lab.salt(minion_id, "state.apply", *args, timeout=600)
    ret = (result.data or {}).get(minion_id)
    assert isinstance(ret, dict), f"state.apply {sls} on {minion_id}: {result!r}"
    return {state["__id__"]: state for state in ret.values()}


def render_error(lab, minion_id: str, sls: str, pillar: dict, test: bool = False) -> str:
    """state.apply that must fail to render: the error text (nothing ran)."""
    args = [sls, f"pillar={json.dumps(pillar)}"] + (["test=True"] if test else [])
    result = lab.salt(minion_id, "state.apply", *args, timeout=600)
    ret = (result.data or {}).get(minion_id)
    assert isinstance(ret, list), f"expected a render error from {sls}, got {ret!r}"
    return "\n".join(ret)


def scrape(lab, minion_id: str, port: int) -> str:
    return sh(lab, minion_id, f"curl -sf http://127.0.0.1:{port}/metrics")


def mirror_requests(lab) -> list[dict]:
    return requests.get(f"{lab.cfg.mirror_url}/_lab/requests", timeout=10).json()


def clear_mirror_requests(lab) -> None:
    requests.delete(f"{lab.cfg.mirror_url}/_lab/requests", timeout=10).raise_for_status()


def main_pid(lab, minion_id: str, unit: str) -> str:
    return sh(lab, minion_id, f"systemctl show -p MainPID --value {unit}").strip()


@pytest.fixture(scope="module")
def synced(lab):
    result = lab.salt("*", "saltutil.sync_all", timeout=300)
    assert set(result.data or {}) == set(lab.minions), result
    return lab


def start_clean(lab, minion_id: str) -> None:
    """No exporter installed (a highstate earlier in the session may have installed some)."""
    states = apply(lab, minion_id, "exporters.clean", {})
    assert not failures(states), failures(states)


@pytest.fixture(scope="module")
def database(synced):
    """db-01 with its redis and PostgreSQL servers up, and a snapshot of the minion
    taken before any exporter was installed."""
    lab = synced
    start_clean(lab, DB)
    states = apply(lab, DB, "lab.database", record(DB))
    assert not failures(states), failures(states)
    return sh(lab, DB, SNAPSHOT)


@pytest.fixture(scope="module")
def web_baseline(synced):
    """web-01 with nginx installed (the formula would install it too; it stays after
    removal), and a snapshot taken before any exporter was installed."""
    lab = synced
    start_clean(lab, WEB)
    result = lab.salt(WEB, "pkg.install", "nginx", timeout=300)
    assert isinstance((result.data or {}).get(WEB), dict), result
    return sh(lab, WEB, SNAPSHOT)


def test_database_exporters_install_from_the_mirror_and_answer(synced, database):
    """node, redis (TLS, client certificate) and postgres (sslmode=require, client
    certificate) exporters from the mirror's release archives, scraped for real series."""
    lab = synced
    states = apply(lab, DB, "lab.database,exporters", record(DB))
    assert not failures(states), failures(states)
    for name in ("node_exporter", "redis_exporter", "postgres_exporter"):
        change = states[f"exporters-install-{name}-installed"]["changes"]
        assert change["binary"]["new"].endswith("(archive)"), change
        assert change["service"] == {"old": "absent", "new": "running"}, change

    node = scrape(lab, DB, 9100)
    assert len(re.findall(r"^node_", node, re.MULTILINE)) > 100
    assert "node_exporter_build_info{" in node
    assert 'version="1.5.0"' in node
    redis_metrics = scrape(lab, DB, 9121)
    assert re.search(r"^redis_up 1$", redis_metrics, re.MULTILINE), redis_metrics[-2000:]
    postgres = scrape(lab, DB, 9187)
    assert re.search(r"^pg_up 1$", postgres, re.MULTILINE), postgres[-2000:]
    assert re.search(r'^pg_static\{.*short_version="15\.', postgres, re.MULTILINE)
    # 0.11.1 (Debian's) against PostgreSQL 15: works, but upstream's CI lists 15 only
    # from 0.12.0 on (README at v0.11.1 vs v0.12.0), so opskit says it is untested.
    warnings = states["exporters-install-postgres_exporter-installed"]["changes"]["warnings"]
    assert "tested with postgres_exporter from 0.12.0 on" in warnings["new"][0], warnings

    # The redis exporter speaks TLS with the lab's client certificate: the TLS port
    # refuses clients without one (checked with redis-cli), and the exporter is up.
    unit = sh(lab, DB, "cat /etc/systemd/system/redis_exporter.service")
    assert 'Environment="REDIS_ADDR=rediss://db-01.lab:6380"' in unit
    assert "LoadCredential=redis-client.key:/etc/opskit-lab-pki/client.key" in unit
    no_cert = sh(
        lab,
        DB,
        "redis-cli --tls --cacert /etc/opskit-lab-pki/ca.crt -h db-01.lab -p 6380 "
        "--no-auth-warning -a lab-redis-password ping 2>&1",
        check=False,
    )
    assert "PONG" not in no_cert


def test_secrets_stay_in_private_files(synced, database):
    """Passwords and DSNs live only in 0600 files owned by the exporter's user: not in
    units, process arguments, the state's return, or the minion's log."""
    lab = synced
    for name, secret in (
        ("redis_exporter", "lab-redis-password"),
        ("postgres_exporter", "lab-postgres-password"),
    ):
        stat = sh(lab, DB, f"stat -c '%a %U %G' /etc/opskit/exporters/{name}/env").split()
        assert stat == ["600", name, name], (name, stat)
        directory = sh(lab, DB, f"stat -c '%a %U %G' /etc/opskit/exporters/{name}").split()
        assert directory == ["750", "root", name], (name, directory)
        assert secret in sh(lab, DB, f"cat /etc/opskit/exporters/{name}/env")
        unit = sh(lab, DB, f"cat /etc/systemd/system/{name}.service")
        assert secret not in unit
        args = sh(lab, DB, f"ps -o args= -C {name}")
        assert name in args
        assert secret not in args
        # Another user cannot read the file (kernel-enforced, checked as nobody).
        denied = sh(lab, DB, f"runuser -u nobody -- cat /etc/opskit/exporters/{name}/env", False)
        assert secret not in denied
    # The client key reaches the exporter as a systemd credential, readable by it alone.
    creds = sh(lab, DB, "ls -ln /run/credentials/postgres_exporter.service/")
    uid = sh(lab, DB, "id -u postgres_exporter").strip()
    assert re.search(rf"^-r-------- 1 {uid} .* postgres-client\.key$", creds, re.MULTILINE)

    # The formula renders no secret into state arguments: exporter.installed gets the
    # pillar keys to read them from on the minion.
    shown = lab.salt(DB, "state.show_sls", "exporters", f"pillar={json.dumps(record(DB))}")
    rendered = json.dumps(shown.data)
    assert "exporters-install-redis_exporter-installed" in rendered, shown
    assert '"secrets_from": ["exporters:defaults", "exporters:redis_exporter"]' in rendered
    assert all(secret not in rendered for secret in SECRETS)

    # test=True with a changed password reports the file by variable name only.
    pillar = record(DB)
    pillar["exporters"]["redis_exporter"]["redis"]["password"] = "a-new-Secret-value"
    states = apply(lab, DB, "exporters", pillar, test=True)
    pending = states["exporters-install-redis_exporter-installed"]
    assert pending["result"] is None
    env_change = pending["changes"]["/etc/opskit/exporters/redis_exporter/env"]
    assert env_change["old"] == ["REDIS_PASSWORD"]
    dumped = json.dumps(states)
    assert "a-new-Secret-value" not in dumped
    assert all(secret not in dumped for secret in SECRETS)
    minion_log = sh(lab, DB, "cat /var/log/salt/minion 2>/dev/null || true")
    assert all(secret not in minion_log for secret in [*SECRETS, "a-new-Secret-value"])


def test_second_apply_changes_nothing_and_downloads_nothing(synced, database):
    lab = synced
    clear_mirror_requests(lab)
    states = apply(lab, DB, "lab.database,exporters", record(DB))
    assert not failures(states), failures(states)
    assert changed(states) == []
    assert mirror_requests(lab) == []
    pending = apply(lab, DB, "exporters", record(DB), test=True)
    assert [sid for sid, s in pending.items() if s["result"] is None] == []


def test_redis_exporter_switches_between_plain_and_tls(synced, database):
    """The same exporter against redis' plain port, then back to TLS: each time a
    restart, a healthy redis_up 1, and no download (the version did not change)."""
    lab = synced
    plain = record(DB)
    plain["exporters"]["redis_exporter"]["redis"] = {
        "addr": "redis://db-01.lab:6379",
        "password": "lab-redis-password",
        "tls": None,
    }
    clear_mirror_requests(lab)
    states = apply(lab, DB, "exporters", plain)
    change = states["exporters-install-redis_exporter-installed"]["changes"]
    assert change["service"] == {"old": "running", "new": "restarted"}, change
    assert 'Environment="REDIS_ADDR=redis://db-01.lab:6379"' in change["unit"]["new"]
    assert re.search(r"^redis_up 1$", scrape(lab, DB, 9121), re.MULTILINE)

    states = apply(lab, DB, "exporters", record(DB))
    change = states["exporters-install-redis_exporter-installed"]["changes"]
    assert 'Environment="REDIS_ADDR=rediss://db-01.lab:6380"' in change["unit"]["new"]
    assert re.search(r"^redis_up 1$", scrape(lab, DB, 9121), re.MULTILINE)
    assert mirror_requests(lab) == []


def test_tampered_archive_is_refused_and_the_running_version_keeps_serving(synced, database):
    """The mirror serves a 1.5.1 whose archive does not match its sha256sums.txt: the
    install fails before anything changes; 1.5.0 keeps running, not even restarted."""
    lab = synced
    release = "/prometheus/node_exporter/releases/download/v1.5.1"
    asset = "node_exporter-1.5.1.linux-amd64.tar.gz"
    genuine = b"the archive the checksum file describes"
    tampered = b"an archive somebody replaced on the mirror"
    sums = f"{hashlib.sha256(genuine).hexdigest()}  {asset}\n".encode()
    files = f"{lab.cfg.mirror_url}/_lab/files"
    requests.put(f"{files}{release}/{asset}", data=tampered, timeout=10).raise_for_status()
    requests.put(f"{files}{release}/sha256sums.txt", data=sums, timeout=10).raise_for_status()
    pid_before = main_pid(lab, DB, "node_exporter")
    try:
        pillar = record(DB)
        pillar["exporters"]["node_exporter"]["version"] = "1.5.1"
        states = apply(lab, DB, "exporters", pillar)
    finally:
        requests.delete(files, timeout=10).raise_for_status()
    comment = failures(states)["exporters-install-node_exporter-installed"]
    assert "sha256 mismatch" in comment, comment
    assert asset in comment, comment
    assert hashlib.sha256(tampered).hexdigest() in comment
    assert "1.5.0 keeps running" in comment
    assert main_pid(lab, DB, "node_exporter") == pid_before
    assert 'version="1.5.0"' in scrape(lab, DB, 9100)
    assert sh(lab, DB, "readlink /opt/opskit/exporters/node_exporter/current").strip() == (
        "1.5.0.linux-amd64"
    )
    assert sh(lab, DB, "ls /opt/opskit/exporters/node_exporter").split() == [
        "1.5.0.linux-amd64",
        "current",
    ]

    # A pinned sha256 that the (cached, genuine) 1.5.0 archive does not have is refused
    # the same way: the pin wins over the cache and over the checksum file.
    pinned = record(DB)
    pinned["exporters"]["node_exporter"]["sha256"] = "0" * 64
    states = apply(lab, DB, "exporters", pinned)
    comment = failures(states)["exporters-install-node_exporter-installed"]
    assert "sha256 mismatch" in comment, comment
    assert "the pinned sha256" in comment, comment
    assert main_pid(lab, DB, "node_exporter") == pid_before


def test_postgres_exporter_refuses_a_known_bad_postgres_pair(synced, database):
    """postgres_exporter 0.11.1 against PostgreSQL 17 is refused when the formula renders,
    before any state runs, naming the first good version, in test mode too."""
    lab = synced
    pillar = record(DB)
    pillar["exporters"]["postgres_exporter"]["postgres"]["server_major"] = 17
    unit = sh(lab, DB, "cat /etc/systemd/system/postgres_exporter.service")
    for test in (True, False):
        error = render_error(lab, DB, "exporters", pillar, test=test)
        assert "exporters: 1 invalid setting, nothing was applied" in error, error
        assert "PostgreSQL 17" in error, error
        assert "0.17.0 or newer" in error, error
    assert sh(lab, DB, "cat /etc/systemd/system/postgres_exporter.service") == unit
    assert re.search(r"^pg_up 1$", scrape(lab, DB, 9187), re.MULTILINE)


def test_mine_publishes_scrape_targets_to_other_hosts(synced, database):
    """Another minion and the master read db-01's targets from the mine (opskit_targets,
    published by common.mine, which the exporters formula includes), and the lab host
    scrapes each of them the way Prometheus would (scheme and path from the labels)."""
    lab = synced
    result = lab.salt(THUMB, "mine.get", DB, "opskit_targets", timeout=60)
    groups = (result.data or {}).get(THUMB, {}).get(DB)
    assert groups, result
    targets = {g["labels"]["job"]: g for g in groups}
    assert {job: g["targets"] for job, g in targets.items()} == {
        "node_exporter": ["db-01.lab:9100"],
        "postgres_exporter": ["db-01.lab:9187"],
        "redis_exporter": ["db-01.lab:9121"],
    }
    assert {g["labels"]["minion"] for g in groups} == {DB}
    from_master = lab.salt_run("mine.get", DB, "opskit_targets")
    assert (from_master.data or {}).get(DB) == groups, from_master
    # The lab has no DNS server: the lab host connects to db-01.lab's address.
    address = lab.minions[DB].spec.ip
    for name, group in targets.items():
        labels = group["labels"]
        port = group["targets"][0].rsplit(":", 1)[1]
        url = f"{labels['__scheme__']}://{address}:{port}{labels['__metrics_path__']}"
        body = requests.get(url, timeout=10).text
        prefix = {"node_exporter": "node_", "redis_exporter": "redis_up 1"}.get(name, "pg_up 1")
        assert re.search(rf"^{prefix}", body, re.MULTILINE), (name, body[-500:])


def test_node_exporter_serves_tls_and_basic_auth_from_its_web_config(synced, database):
    """--web.config.file for real: TLS with the lab's server certificate (handed over as
    a systemd credential) and basic auth with a bcrypt hash. opskit's own check after the
    restart accepts the 401 it gets without credentials; a client with the password and
    the lab CA gets node_* series."""
    lab = synced
    password = "lab-web-password"
    digest = bcrypt_hash(password)
    assert digest.startswith("$2")
    pillar = record(DB)
    pillar["exporters"]["node_exporter"]["web"] = {
        "basic_auth_users": {"prometheus": digest},
        "tls": {"cert": "/etc/opskit-lab-pki/redis.crt", "key": "/etc/opskit-lab-pki/redis.key"},
    }
    web_config = "/etc/opskit/exporters/node_exporter/web-config.yml"
    try:
        states = apply(lab, DB, "exporters", pillar)
        assert not failures(states), failures(states)
        assert sh(lab, DB, f"stat -c '%a %U' {web_config}").split() == ["600", "node_exporter"]
        unit = sh(lab, DB, "cat /etc/systemd/system/node_exporter.service")
        assert digest not in unit
        assert f"--web.config.file={web_config}" in unit
        assert "LoadCredential=web-tls.key:/etc/opskit-lab-pki/redis.key" in unit
        curl = "curl -s --cacert /etc/opskit-lab-pki/ca.crt https://db-01.lab:9100/metrics"
        assert sh(lab, DB, f"{curl} -o /dev/null -w '%{{http_code}}'") == "401"
        body = sh(lab, DB, f"{curl} -u prometheus:{password}")
        assert len(re.findall(r"^node_", body, re.MULTILINE)) > 100
        plain = sh(lab, DB, "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9100/", False)
        assert plain != "200"
        status = lab.salt(DB, "exporter.status", "node_exporter").data[DB]["node_exporter"]
        assert status["metrics_ok"] is True, status
        assert status["metrics"] == "answers (basic auth required)"
        groups = lab.salt(DB, "exporter.targets").data[DB]
        node = next(g for g in groups if g["labels"]["job"] == "node_exporter")
        assert node["labels"]["__scheme__"] == "https"
        assert node["labels"]["__opskit_basic_auth__"] == "true"
    finally:
        states = apply(lab, DB, "exporters", record(DB))
    assert not failures(states), failures(states)
    assert sh(lab, DB, f"test -e {web_config} && echo present || echo gone").strip() == "gone"
    assert re.search(r"^node_", scrape(lab, DB, 9100), re.MULTILINE)


def test_nginx_exporter_and_package_sourced_node_exporter(synced, web_baseline):
    """web-01: nginx_exporter from the mirror with its stub_status block (nginx -t
    checked, nginx reloaded), node_exporter from Debian's package under opskit's
    hardened unit (the package's own unit masked)."""
    lab = synced
    states = apply(lab, WEB, "exporters", record(WEB))
    assert not failures(states), failures(states)
    nginx = scrape(lab, WEB, 9113)
    assert re.search(r"^nginx_up 1$", nginx, re.MULTILINE), nginx[-2000:]
    assert re.search(r"^nginx_connections_accepted \d+", nginx, re.MULTILINE)
    node = scrape(lab, WEB, 9100)
    assert len(re.findall(r"^node_", node, re.MULTILINE)) > 100
    args = sh(lab, WEB, "ps -o user=,args= -C prometheus-node-exporter")
    assert args.startswith("node_ex"), args  # ps truncates user names to 8 characters
    assert sh(lab, WEB, "systemctl is-enabled prometheus-node-exporter", False).strip() == "masked"
    stub_port = record(WEB)["exporters"]["nginx_exporter"]["nginx"]["stub_status"]["listen"]
    stub_port = stub_port.rsplit(":", 1)[1]
    assert sh(
        lab, WEB, f"curl -s -o /dev/null -w '%{{http_code}}' http://web-01.lab:{stub_port}/", False
    ) in (
        "000",
        "",
    ), "stub_status must listen on loopback only"

    clear_mirror_requests(lab)
    again = apply(lab, WEB, "exporters", record(WEB))
    assert changed(again) == []
    assert mirror_requests(lab) == []


def test_dcgm_refusals_without_a_gpu(synced):
    """No NVIDIA GPU, DCGM or NVIDIA repository exists in this lab, so the GPU path is
    NOT exercised. What runs for real: a dcgm-exporter release paired with another DCGM
    is refused before anything happens, and on this GPU-less minion (whose sysfs lists
    real, non-NVIDIA PCI devices) a valid pair is refused instead of installed."""
    lab = synced
    with lab.cmdb_record_edited(THUMB, {"exporters": None}):
        # Pillar given on the command line merges with the CMDB record: while this test
        # runs, thumb-01's record lists no exporters, so only the DCGM pillar counts.
        _dcgm_refusals(lab)


def _dcgm_refusals(lab):
    assert int(sh(lab, THUMB, "ls /sys/bus/pci/devices | wc -l")) > 0
    mismatched = {
        "exporters": {
            "dcgm_exporter": {
                "version": "4.1.1-4.0.4",
                "source": "package",
                "dcgm": {"dcgm_version": "4.2.3"},
            }
        }
    }
    start_clean(lab, THUMB)
    before = sh(lab, THUMB, SNAPSHOT)
    error = render_error(lab, THUMB, "exporters", mismatched)
    assert "built for DCGM 4.1.1" in error, error
    assert "DCGM 4.2.3" in error, error
    assert sh(lab, THUMB, SNAPSHOT) == before

    repo = {"keyring_source": "http://lab-host:18081/nvidia/cuda.pub", "keyring_sha256": "1" * 64}
    valid = {
        "exporters": {
            "dcgm_exporter": {"version": "4.1.1-4.0.4", "source": "package", "dcgm": {"repo": repo}}
        }
    }
    try:
        for test in (True, False):
            states = apply(lab, THUMB, "exporters", valid, test=test)
            comment = failures(states)["exporters-install-dcgm_exporter-installed"]
            assert "no NVIDIA GPU" in comment, comment
            assert "vendor 0x10de" in comment, comment
            assert not [sid for sid in changed(states) if "-install-" in sid]
    finally:
        start_clean(lab, THUMB)  # the mine configuration the formula wrote
    assert sh(lab, THUMB, SNAPSHOT) == before


def test_dcgm_repository_configuration_is_written_verified_and_removed(synced):
    """NVIDIA's apt repository configuration, for real on a minion: the key comes from
    the lab mirror and is checked against its pinned sha256; the source and the pin are
    written; then all of it is removed. apt-get update is never run against it (NVIDIA's
    repository is unreachable here). The key is a stand-in: opskit treats it as opaque
    bytes pinned by sha256, which is what is tested."""
    lab = synced
    key = (
        b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nstand-in key\n"
        b"-----END PGP PUBLIC KEY BLOCK-----\n"
    )
    files = f"{lab.cfg.mirror_url}/_lab/files"
    requests.put(f"{files}/nvidia/cuda.pub", data=key, timeout=10).raise_for_status()
    source = "http://lab-host:18081/nvidia/cuda.pub"
    try:
        wrong = lab.salt(
            THUMB, "exporter.dcgm_repo", f"keyring_source={source}", f"keyring_sha256={'1' * 64}"
        )
        assert "not the pinned" in wrong.stdout, wrong
        assert sh(lab, THUMB, "ls /etc/apt/sources.list.d/").strip() == ""

        result = lab.salt(
            THUMB,
            "exporter.dcgm_repo",
            f"keyring_source={source}",
            f"keyring_sha256={hashlib.sha256(key).hexdigest()}",
            "base_url=http://lab-host:18081/nvidia-repos",
        )
        changes = (result.data or {}).get(THUMB)
        assert sorted(changes) == [
            "/etc/apt/keyrings/opskit-nvidia-cuda.asc",
            "/etc/apt/preferences.d/opskit-nvidia-cuda",
            "/etc/apt/sources.list.d/opskit-nvidia-cuda.list",
        ], result
        listing = sh(lab, THUMB, "cat /etc/apt/sources.list.d/opskit-nvidia-cuda.list")
        assert (
            "deb [signed-by=/etc/apt/keyrings/opskit-nvidia-cuda.asc] "
            "http://lab-host:18081/nvidia-repos/debian12/x86_64/ /"
        ) in listing
        pin = sh(lab, THUMB, "cat /etc/apt/preferences.d/opskit-nvidia-cuda")
        assert "Package: datacenter-gpu-manager*\nPin: origin lab-host\nPin-Priority: 600" in pin
        assert sh(lab, THUMB, "sha256sum /etc/apt/keyrings/opskit-nvidia-cuda.asc").startswith(
            hashlib.sha256(key).hexdigest()
        )
        again = lab.salt(
            THUMB,
            "exporter.dcgm_repo",
            f"keyring_source={source}",
            f"keyring_sha256={hashlib.sha256(key).hexdigest()}",
            "base_url=http://lab-host:18081/nvidia-repos",
        )
        assert (again.data or {}).get(THUMB) == {}, again
    finally:
        removed = lab.salt(THUMB, "exporter.dcgm_repo", "present=False")
        requests.delete(files, timeout=10).raise_for_status()
    assert len((removed.data or {}).get(THUMB, {})) == 3, removed
    assert sh(lab, THUMB, "ls /etc/apt/sources.list.d/ /etc/apt/preferences.d/").split() == [
        "/etc/apt/preferences.d/:",
        "/etc/apt/sources.list.d/:",
    ]


def test_nginx_exporter_scrapes_stub_status_over_a_unix_socket(synced, web_baseline):
    """The stub_status block on a unix socket (nginx: listen unix:...; allow unix:) and
    nginx_exporter 0.11.0 scraping it with a unix:<socket>:<path> URI, as upstream's
    parseUnixSocketAddress reads it (exporter.go): for real, nginx_up 1. Then back."""
    lab = synced
    socket = "/run/opskit-nginx-stub-status.sock"
    pillar = record(WEB)
    pillar["exporters"]["nginx_exporter"]["nginx"] = {"stub_status": {"listen": f"unix:{socket}"}}
    try:
        states = apply(lab, WEB, "exporters", pillar)
        assert not failures(states), failures(states)
        unit = sh(lab, WEB, "cat /etc/systemd/system/nginx_exporter.service")
        assert f"--nginx.scrape-uri=unix:{socket}:/stub_status" in unit
        assert sh(lab, WEB, f"test -S {socket} && echo socket").strip() == "socket"
        nginx = scrape(lab, WEB, 9113)
        assert re.search(r"^nginx_up 1$", nginx, re.MULTILINE), nginx[-2000:]
        assert re.search(r"^nginx_connections_accepted \d+", nginx, re.MULTILINE)
    finally:
        states = apply(lab, WEB, "exporters", record(WEB))
    assert not failures(states), failures(states)
    assert re.search(r"^nginx_up 1$", scrape(lab, WEB, 9113), re.MULTILINE)


def test_a_mirror_with_another_url_layout(synced):
    """A site mirror that lays releases out its own way (Artifactory-style
    <repository>/<name>/<version>/<file>) is reached through url_template: the lab
    mirror serves node_exporter's release files under such paths only, and opskit
    downloads the checksum file and the archive from there and verifies them."""
    lab = synced
    upstream = f"{lab.cfg.mirror_url}/prometheus/node_exporter/releases/download/v1.5.0"
    flat = "/artifactory/exporters/node_exporter/1.5.0"
    asset = "node_exporter-1.5.0.linux-amd64.tar.gz"
    files = f"{lab.cfg.mirror_url}/_lab/files"
    for name in (asset, "sha256sums.txt"):
        body = requests.get(f"{upstream}/{name}", timeout=30)
        body.raise_for_status()
        requests.put(f"{files}{flat}/{name}", data=body.content, timeout=30).raise_for_status()
    template = "http://lab-host:18081/artifactory/exporters/{name}/{version}/{file}"
    pillar = {"exporters": {"node_exporter": {"version": "1.5.0", "url_template": template}}}
    with lab.cmdb_record_edited(THUMB, {"exporters": None}):
        try:
            start_clean(lab, THUMB)
            clear_mirror_requests(lab)
            states = apply(lab, THUMB, "exporters", pillar)
            assert not failures(states), failures(states)
            fetched = [r["path"] for r in mirror_requests(lab)]
            assert fetched == [f"{flat}/sha256sums.txt", f"{flat}/{asset}"], fetched
            assert re.search(r"^node_exporter_build_info\{", scrape(lab, THUMB, 9100), re.MULTILINE)
        finally:
            start_clean(lab, THUMB)
            requests.delete(files, timeout=10).raise_for_status()


def test_the_mirror_serves_dcgm_exporter_where_opskit_looks_for_it(synced):
    """No GPU here, so dcgm-exporter is never installed in the lab; what is checked for
    real: the archive opskit would download for 4.5.3-4.8.2 (upstream's name,
    dcgm_exporter-linux-x86-64-4.8.2.tar.gz) is on the mirror where opskit looks for it,
    its sha256sums.txt lists it, and it holds the binary and the collectors CSV where
    upstream's Makefile puts them (the mirror builds it independently of opskit's
    catalog: tests/lab/artifacts.py)."""
    lab = synced
    rendered = lab.salt(
        THUMB,
        "exporter.render",
        "dcgm_exporter",
        "version=4.5.3-4.8.2",
        "base_url=http://lab-host:18081",
        'dcgm={"repo": {"manage": false}}',
    ).data[THUMB]
    release = rendered["release"]
    assert release["asset_url"].endswith("/dcgm_exporter-linux-x86-64-4.8.2.tar.gz"), release
    collectors = (
        "--collectors=/opt/opskit/exporters/dcgm_exporter/current/etc/dcgm-exporter/"
        "default-counters.csv"
    )
    assert collectors in rendered["unit_text"]
    listing = sh(
        lab,
        THUMB,
        f"cd /tmp && curl -sf -O {release['asset_url']} -O {release['checksums_url']} && "
        "sha256sum -c sha256sums.txt && tar -tzf dcgm_exporter-linux-x86-64-4.8.2.tar.gz; "
        "rm -f /tmp/dcgm_exporter-linux-x86-64-4.8.2.tar.gz /tmp/sha256sums.txt",
    )
    assert "dcgm_exporter-linux-x86-64-4.8.2.tar.gz: OK" in listing
    assert release["member"] in listing.split()
    assert "dcgm_exporter/etc/dcgm-exporter/default-counters.csv" in listing.split()


def test_scrape_uri_credentials_stay_out_of_units_arguments_and_changes(synced, web_baseline):
    """Issue 11 item 8: nginx.scrape_uri with user:password@ used to land in ExecStart,
    a 0644 unit and the state's changes. Now nginx_exporter reads it from SCRAPE_URI in
    its 0600 environment file (exporter.go: getEnv("SCRAPE_URI") at v0.11.0), and the
    formula renders it into no state argument. For real: nginx ignores the credentials
    where no auth is configured, so the exporter scrapes stub_status with them."""
    lab = synced
    password = "scrape-Pass-1234"
    uri = f"http://scraper:{password}@127.0.0.1:8079/stub_status"
    pillar = record(WEB)
    pillar["exporters"]["nginx_exporter"]["nginx"]["scrape_uri"] = uri
    try:
        shown = lab.salt(WEB, "state.show_sls", "exporters", f"pillar={json.dumps(pillar)}")
        assert "exporters-install-nginx_exporter-installed" in json.dumps(shown.data), shown
        assert password not in json.dumps(shown.data)
        states = apply(lab, WEB, "exporters", pillar)
        assert not failures(states), failures(states)
        change = states["exporters-install-nginx_exporter-installed"]["changes"]
        assert change["/etc/opskit/exporters/nginx_exporter/env"]["new"].startswith(
            "written 0600 nginx_exporter: ['SCRAPE_URI']"
        ), change
        assert password not in json.dumps(states)
        unit = sh(lab, WEB, "cat /etc/systemd/system/nginx_exporter.service")
        assert password not in unit
        assert "--nginx.scrape-uri" not in unit
        assert password not in sh(lab, WEB, "ps -eo args")
        env = "/etc/opskit/exporters/nginx_exporter/env"
        assert sh(lab, WEB, f"stat -c '%a %U' {env}").split() == ["600", "nginx_exporter"]
        assert re.search(r"^nginx_up 1$", scrape(lab, WEB, 9113), re.MULTILINE)
    finally:
        states = apply(lab, WEB, "exporters", record(WEB))
    assert not failures(states), failures(states)
    assert "--nginx.scrape-uri=http://127.0.0.1:8079/stub_status" in sh(
        lab, WEB, "cat /etc/systemd/system/nginx_exporter.service"
    )


def test_a_hostile_cmdb_record_changes_nothing_and_fails_with_the_message(synced):
    """Issue 11 items 1 and 6 through the real CMDB: a key under `exporters` carrying a
    newline, a quote and a cmd.run whose `unless` would touch a marker file as root
    (it did, even under test=True), and a carriage return in redis.user. The run fails
    when the formula renders, naming each key; no state runs, no marker file appears,
    the minion's files, users and units are as before."""
    lab = synced
    marker = "/root/opskit-exporters-injected"
    key = f'x":\n  cmd.run:\n    - name: touch {marker}\n    - unless: touch {marker}\n"y'
    hostile = {
        "exporters": {
            key: {},
            "redis_exporter": {"version": "1.45.0", "redis": {"user": "e\rExecStartPre=+/bin/id"}},
        }
    }
    start_clean(lab, THUMB)
    before = sh(lab, THUMB, SNAPSHOT)
    with lab.cmdb_record_edited(THUMB, {"exporters": None}), lab.cmdb_record_edited(THUMB, hostile):
        assert lab.salt(THUMB, "saltutil.refresh_pillar", timeout=60).returncode == 0
        for test in (True, False):
            args = ["exporters"] + (["test=True"] if test else [])
            result = lab.salt(THUMB, "state.apply", *args, timeout=600)
            ret = (result.data or {}).get(THUMB)
            assert isinstance(ret, list), ret
            error = "\n".join(ret)
            assert "exporters: 2 invalid settings, nothing was applied" in error, error
            assert "unknown key" in error
            assert "exporters:redis_exporter:redis:user = " in error
            assert "contains a carriage return" in error
            assert sh(lab, THUMB, f"test -e {marker} && echo injected || echo clean").strip() == (
                "clean"
            )
    assert lab.salt(THUMB, "saltutil.refresh_pillar", timeout=60).returncode == 0
    assert sh(lab, THUMB, SNAPSHOT) == before


def test_removal_leaves_nothing_behind(synced, database, web_baseline):
    """exporters.clean removes every exporter with its unit, user, binaries, package,
    configuration, secrets, cache and stub_status block, and publishes the host's
    targets again without them: the minions' files, users, groups and units are as
    before the first install."""
    lab = synced
    for minion_id in (DB, WEB):
        states = apply(lab, minion_id, "exporters.clean", {})
        assert not failures(states), failures(states)
        assert changed(states), f"{minion_id}: nothing was removed"
        again = apply(lab, minion_id, "exporters.clean", {})
        assert changed(again) == []
    assert sh(lab, DB, SNAPSHOT) == database
    assert sh(lab, WEB, SNAPSHOT) == web_baseline
    assert sh(lab, WEB, "nginx -t 2>&1")  # nginx still valid without the stub_status block
    assert lab.salt(DB, "exporter.targets").data == {DB: []}
    mine = lab.salt_run("mine.get", DB, "opskit_targets").data or {}
    assert [g for g in mine.get(DB, []) if g["labels"]["job"].endswith("_exporter")] == []
