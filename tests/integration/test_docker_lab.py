"""The lab's Docker minion (dock-01.lab): Debian's docker.io run by the minion's own
systemd inside ``systemd-nspawn``, Docker Compose v2, and the lab's images.

STAND-IN NOTICE: the images are built in the lab from a Debian 12 root file system and
opskit's stand-ins (tests/lab/docker/README.md), tagged like upstream's
(``seafileltd/thumbnail-server``, ``ghcr.io/techarohq/anubis``); no registry is
contacted, so they carry no registry digest. dockerd, containerd, runc, Compose, the
kernel's cgroups and every socket here are real.

These tests prove the arrangement the formulas' docker modes will run on (docs/lab.md,
"Docker in a minion"): dockerd runs inside the minion with overlay2 and cgroupfs; a
Compose project comes up from a local image; the minion's nginx on 127.0.0.1 reaches a
published container port; the kernel enforces a container's memory limit and the
restart policy restarts it; containers stay inside the minion (network namespace,
cgroups, data root). That a crashed Docker minion leaves nothing behind after the next
start and ``down`` is tested with the crashed lab in test_lab_lifecycle.py.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import time

import pytest

from tests.lab import cgroups
from tests.lab import docker_images
from tests.lab.procs import wait_for

PROJECT_DIR = "/opt/opskit-lab-docker-probe"
PROJECT = "opskit-probe"
PORT = 18180  # the container's port 80, published on the minion's 127.0.0.1
NGINX_PORT = 18181  # the minion's nginx site in front of it
PROBE_SITE = "/etc/nginx/conf.d/opskit-lab-docker-probe.conf"
THUMBNAIL = docker_images.THUMBNAIL.tag
ANUBIS = docker_images.ANUBIS.tag


@pytest.fixture(scope="module")
def dock(lab):
    minions = [m for m in lab.minions.values() if m.spec.docker]
    if not minions:
        pytest.fail("the lab inventory has no Docker minion (a record with lab: {docker: true})")
    return minions[0]


def _sh(minion, script: str, check: bool = True, timeout: float = 120):
    return minion.run(["bash", "-c", script], check=check, timeout=timeout)


def _compose(minion, *args: str, check: bool = True):
    argv = ["docker", "compose", "-p", PROJECT, "-f", f"{PROJECT_DIR}/compose.yml", *args]
    return minion.run(argv, check=check, timeout=180)


def _host_pids_in(cfg, container: str, below: str = "") -> list[int]:
    """Host PIDs in a cgroup at or below ``opskit-lab-<lab>/<container>/<below>``."""
    found = []
    marker = f"/{cgroups.lab_dirname(cfg)}/{container}/" + (f"{below}/" if below else "")
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cgroup", encoding="utf-8") as handle:
                    text = handle.read()
            except OSError:
                continue
            if any(marker in path + "/" for path in cgroups.parse_proc_cgroup(text).values()):
                found.append(int(entry))
    return found


def test_dockerd_runs_inside_the_minion_with_overlay2_and_cgroupfs(lab, dock):
    info = json.loads(dock.run(["docker", "info", "--format", "{{json .}}"]).stdout)
    assert info["ServerVersion"].startswith("20.10."), info["ServerVersion"]
    assert info["Driver"] == "overlay2"
    assert dict(info["DriverStatus"]).get("Backing Filesystem") == "tmpfs"
    assert info["CgroupDriver"] == "cgroupfs"
    assert info["CgroupVersion"] == "1"
    assert info["DockerRootDir"] == "/var/lib/docker"
    assert dock.run(["systemctl", "is-active", "docker", "containerd"]).stdout.split() == [
        "active",
        "active",
    ]
    # Run by the minion's systemd, in the minion's cgroups on the host.
    comms = {
        pid: pathlib.Path(f"/proc/{pid}/comm").read_text(encoding="ascii").strip()
        for pid in _host_pids_in(lab.cfg, dock.spec.container)
    }
    dockerd = [pid for pid, comm in comms.items() if comm == "dockerd"]
    assert len(dockerd) == 1, dockerd
    version = dock.run(["docker", "compose", "version", "--short"]).stdout.strip()
    assert version.startswith("2."), version


def test_lab_images_are_local_and_named_like_upstream(dock):
    for tag, standin in ((THUMBNAIL, "thumbnail-server"), (ANUBIS, "anubis")):
        image = json.loads(dock.run(["docker", "image", "inspect", tag]).stdout)[0]
        assert image["Config"]["Labels"]["org.opskit.lab.standin"] == standin
        assert image["RepoDigests"] == [], "a lab image came from a registry"
    anubis = json.loads(dock.run(["docker", "image", "inspect", ANUBIS]).stdout)[0]["Config"]
    assert anubis["Entrypoint"] == ["/ko-app/anubis"]
    assert anubis["User"] == "1000"
    version = dock.run(["docker", "run", "--rm", "--network=none", ANUBIS, "--version"])
    assert version.stdout.startswith("Anubis 1.27.0 ("), version.stdout
    who = dock.run(["docker", "run", "--rm", "--network=none", "--entrypoint=id", ANUBIS])
    assert who.stdout.strip().startswith("uid=1000 gid=0"), who.stdout


@pytest.fixture(scope="module")
def probe(dock):
    """A Compose project from the local thumbnail-server image, published on the minion's
    127.0.0.1, with values the env file must pass on literally; nginx on the minion in
    front of it. Removed afterwards."""
    env = (
        "JWT_PRIVATE_KEY='lab-only $HOME ${JWT} \"q\" #x'\n"
        "INNER_SEAHUB_SERVICE_URL='http://seahub.lab'\n"
    )
    compose = {
        "services": {
            "thumbnail-server": {
                "image": THUMBNAIL,
                "restart": "always",
                "env_file": [f"{PROJECT_DIR}/probe.env"],
                "volumes": [f"{PROJECT_DIR}/shared:/shared"],
                "ports": [f"127.0.0.1:{PORT}:80"],
                "mem_limit": "256m",
                "memswap_limit": "256m",
            }
        }
    }
    site = (
        f"server {{\n    listen 127.0.0.1:{NGINX_PORT};\n"
        f"    location / {{ proxy_pass http://127.0.0.1:{PORT}; }}\n}}\n"
    )
    _sh(dock, f"mkdir -p {PROJECT_DIR}/shared")
    dock.run(["tee", f"{PROJECT_DIR}/probe.env"], input_text=env)
    dock.run(["tee", f"{PROJECT_DIR}/compose.yml"], input_text=json.dumps(compose))
    try:
        started = time.monotonic()
        _compose(dock, "up", "-d", "--quiet-pull")
        print(f"\n[docker lab] compose up -d: {time.monotonic() - started:.1f}s")
        apt = "DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light"
        _sh(dock, apt, timeout=300)
        # conf.d/*.conf: Debian's nginx.conf and the nginx formula's both include it
        # (the formula leaves sites-enabled out unless include_sites_enabled is set, and
        # dock-01's session highstate applies the formula).
        dock.run(["tee", PROBE_SITE], input_text=site)
        dock.run(["systemctl", "reload-or-restart", "nginx"])
        yield env
    finally:
        _compose(dock, "down", "--volumes", check=False)
        _sh(dock, f"rm -rf {PROJECT_DIR} {PROBE_SITE}")
        dock.run(["systemctl", "reload-or-restart", "nginx"], check=False)


def _host(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def _get(minion, url: str) -> str:
    return minion.run(["curl", "-sS", "-m", "5", url], check=False).stdout


def test_minion_nginx_reaches_a_published_container_port(dock, probe):
    wait_for(
        "the probe container's /ping on the minion's 127.0.0.1",
        lambda: _get(dock, f"http://127.0.0.1:{PORT}/ping") == "pong",
        timeout=60,
    )
    # The path the thumbnail-server formula's docker mode uses: the host's nginx on
    # 127.0.0.1 -> the published port -> the container's nginx -> the service.
    assert _get(dock, f"http://127.0.0.1:{NGINX_PORT}/ping") == "pong"
    # The formula's "is it running" check finds it.
    running = _compose(dock, "ps", "--status", "running", "-q", "thumbnail-server")
    assert running.stdout.strip()
    # The port is published on the minion's loopback only, by docker-proxy.
    listeners = dock.run(["ss", "-Htlnp", f"sport = :{PORT}"]).stdout
    assert f"127.0.0.1:{PORT}" in listeners, listeners
    assert "docker-proxy" in listeners, listeners


def test_env_file_values_reach_the_container_literally(dock, probe):
    value = _compose(dock, "exec", "-T", "thumbnail-server", "printenv", "JWT_PRIVATE_KEY")
    assert value.stdout.rstrip("\n") == 'lab-only $HOME ${JWT} "q" #x'


def test_containers_stay_inside_the_minion(lab, dock, probe):
    container_id = _compose(dock, "ps", "-q", "thumbnail-server").stdout.strip()
    assert container_id
    # Its processes are in the minion's cgroups on the host, below the minion's dockerd.
    pids = _host_pids_in(lab.cfg, dock.spec.container, f"docker/{container_id}")
    assert pids, "the container's processes are not below the minion's own cgroups"
    # Docker's bridges and NAT rules exist in the minion's network namespace only.
    inside = dock.run(["ip", "-o", "link", "show"]).stdout
    assert "docker0:" in inside
    assert ": br-" in inside
    host_links = _host(["ip", "-o", "link", "show"])
    assert "docker0:" not in host_links
    assert ": br-" not in host_links
    assert "DOCKER" in dock.run(["iptables", "-t", "nat", "-S"]).stdout
    assert "DOCKER" not in _host(["nft", "list", "ruleset"])
    # Its file system is in the minion's data root, a tmpfs the lab mounted on the host.
    assert (dock.data_root / "containers" / container_id).is_dir()


def test_memory_limit_is_enforced_and_the_restart_policy_restarts(dock):
    name = "opskit-lab-oom-probe"
    dock.run(["docker", "rm", "-f", name], check=False)
    hog = "import time; b = bytearray(512 << 20); time.sleep(60)"
    dock.run(
        [
            "docker",
            "run",
            "-d",
            f"--name={name}",
            "--network=none",
            "--memory=64m",
            "--memory-swap=64m",
            "--restart=on-failure:2",
            THUMBNAIL,
            "python3",
            "-c",
            hog,
        ]
    )
    try:

        def restarted_after_oom():
            state = json.loads(
                dock.run(["docker", "inspect", "--format", "{{json .}}", name]).stdout
            )
            return state["RestartCount"] >= 1 and state["State"]["OOMKilled"] and state

        state = wait_for("the memory hog to be OOM-killed and restarted", restarted_after_oom, 60)
        assert state["HostConfig"]["Memory"] == 64 << 20
    finally:
        dock.run(["docker", "rm", "-f", name], check=False)


def test_host_network_containers_share_the_minion_loopback(dock):
    """``network_mode: host`` puts a container on the minion's own loopback (what an
    Anubis container needs to reach an application on 127.0.0.1); a container on a
    bridge network has a loopback of its own and does not reach the minion's."""
    name = "opskit-lab-hostnet-probe"
    port = 18182
    dock.run(["docker", "rm", "-f", name], check=False)
    serve = f"python3 -m http.server {port} --bind 127.0.0.1 --directory /etc"
    run = ["docker", "run", "-d", f"--name={name}", "--network=host", "--entrypoint=sh"]
    dock.run([*run, ANUBIS, "-c", serve])
    try:
        wait_for(
            "a host-network container's server on the minion's 127.0.0.1",
            lambda: _get(dock, f"http://127.0.0.1:{port}/hostname").strip() != "",
            timeout=30,
        )
        bridged = dock.run(
            [
                "docker",
                "run",
                "--rm",
                "--entrypoint=python3",
                ANUBIS,
                "-c",
                f"import urllib.request as u; u.urlopen('http://127.0.0.1:{port}/', timeout=3)",
            ],
            check=False,
        )
        assert bridged.returncode != 0, "a bridge-network container reached the minion's loopback"
    finally:
        dock.run(["docker", "rm", "-f", name], check=False)
