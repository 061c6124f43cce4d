"""The `thumbnail-server` formula in docker mode on the lab's Docker minion (dock-01.lab),
applied for real: the compose project on Debian's docker.io 20.10 with Compose v2, the
minion's nginx in front of it on 127.0.0.1, jemalloc preloaded from the minion into the
container, the kernel's memory limit and the restart policy.

STAND-IN NOTICE: the image is opskit's stand-in for ``seafileltd/thumbnail-server``,
built in the lab under upstream's name and pinned to its tag (tests/lab/docker/README.md,
docs/lab.md "Images"): Seafile's image cannot be pulled here. Its layout, start script
and nginx follow upstream's docker/ directory; the service is the stand-in of
test_thumbnail_server.py. dockerd, containerd, runc, Compose, nginx, jemalloc, the
kernel's cgroups, Salt and every socket are real.

The formula reaches the minion through the lab's session highstate (dock-01.lab's CMDB
record in tests/lab/inventory.yaml gives it the thumbnail-server role in docker mode):
these tests read that highstate's result instead of applying again. Tests that apply
other values pass the record (``pillar=``) and apply it again afterwards, leaving the
minion converged as the CMDB says.
"""

from __future__ import annotations

import concurrent.futures
import copy
import json
import time

import pytest
import requests
import yaml

from tests.lab import docker_images
from tests.lab.lab import INVENTORY
from tests.lab.procs import wait_for
from tests.lab.summary import summarize

MINION = "dock-01.lab"
RECORD = yaml.safe_load(INVENTORY.read_text())["minions"][MINION]
TS = RECORD["thumbnail_server"]
SECRETS = TS["secrets"]
PROJECT_DIR = "/opt/seafile-thumbnail"
COMPOSE = [
    "docker",
    "compose",
    "-p",
    "seafile-thumbnail",
    "-f",
    f"{PROJECT_DIR}/thumbnail-server.yml",
    "-f",
    f"{PROJECT_DIR}/thumbnail-server.opskit-jemalloc.yml",
]
CONTAINER = "thumbnail-server"
ENV_FILE = "/etc/seafile-thumbnail/thumbnail-server.env"
SITE = "/etc/nginx/opskit-sites/thumbnail-server.conf"
# Where the formula's jemalloc override mounts the minion's library in the container
# (_utils/opskit_jemalloc.py CONTAINER_LIBRARY).
CONTAINER_LIBRARY = "/usr/local/lib/opskit/libjemalloc.so.2"
REPO_ID = "7c1e2d3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f"
# Seafile's data on the minion (docker:seafile_volume, mounted at /shared); the image's
# start script links /shared/seafile/* into /opt/seafile, where the stand-in's seafobj
# reads library files ($SEAFILE_CONF_DIR/<repo id>/<path>).
SOURCES = f"/opt/seafile-data/seafile/seafile-data/{REPO_ID}"
IN_CONTAINER = f"/opt/seafile/seafile-data/{REPO_ID}"


def _apply(lab, pillar=None, test=False, sls="thumbnail-server"):
    pillar = RECORD if pillar is None else pillar
    args = [sls, f"pillar={json.dumps(pillar)}"] + (["test=True"] if test else [])
    result = lab.salt(MINION, "state.apply", *args, timeout=600)
    return result, summarize(MINION, (result.data or {}).get(MINION))


def _changed(result) -> dict:
    states = (result.data or {}).get(MINION) or {}
    return {k.split("_|-")[1]: v["changes"] for k, v in states.items() if v["changes"]}


def _pending(result) -> list[str]:
    states = (result.data or {}).get(MINION) or {}
    return sorted(k.split("_|-")[1] for k, v in states.items() if v["result"] is None)


def _inspect(minion, name: str = CONTAINER) -> dict:
    return json.loads(minion.run(["docker", "inspect", "--format", "{{json .}}", name]).stdout)


def _service_pid(minion) -> int:
    """The stand-in service's PID (in the minion's PID namespace, where dockerd is)."""
    top = minion.run(["docker", "top", CONTAINER, "-eo", "pid,args"]).stdout.splitlines()[1:]
    pids = [int(line.split()[0]) for line in top if "main.py" in line]
    assert len(pids) == 1, top
    return pids[0]


def _get(ip: str, path: str, timeout: float = 30) -> requests.Response:
    return requests.get(f"http://{ip}{path}", headers={"Host": MINION}, timeout=timeout)


def _pong(ip: str) -> bool:
    try:
        return _get(ip, "/ping", timeout=5).text == "pong"
    except requests.RequestException:
        return False


def _make_images(minion, script: str, *args: str) -> None:
    """Run ``script`` in a throwaway container of the same image (it has Pillow; the
    minion has not), outside the service's memory limit, writing into Seafile's data."""
    minion.run(["mkdir", "-p", SOURCES])
    argv = ["docker", "run", "--rm", "--network=none", "--entrypoint=python3"]
    argv += [f"--volume={SOURCES}:/sources", TS["docker"]["image"], "-c", script, *args]
    minion.run(argv, timeout=300)
    # The image's start script links /shared/seafile/* into /opt/seafile when the
    # container starts; a directory made after that start is linked here the same way.
    link = "test -e /opt/seafile/seafile-data || ln -s /shared/seafile/seafile-data /opt/seafile/"
    minion.run(["docker", "exec", CONTAINER, "sh", "-c", link])


@pytest.fixture(scope="module")
def dock(lab, highstate_once):
    """dock-01.lab after the session's highstate, which applied the formula from its CMDB
    record; a photo where the stand-in reads library files."""
    summary = summarize(MINION, (highstate_once.data or {}).get(MINION))
    assert summary.succeeded, summary
    minion = lab.minions[MINION]
    photo = (
        "from PIL import Image\n"
        "Image.new('RGB', (3000, 2000), (200, 40, 90)).save('/sources/photo.jpg')\n"
    )
    _make_images(minion, photo)
    yield {"minion": minion, "ip": minion.spec.ip, "highstate": highstate_once}
    minion.run(["rm", "-rf", SOURCES])


def test_highstate_brought_the_compose_project_up_behind_the_minion_nginx(dock):
    minion, ip = dock["minion"], dock["ip"]
    states = dock["highstate"].data[MINION]
    ran = {k.split("_|-")[1]: v for k, v in states.items()}
    assert ran["thumbnail-server-service-compose-running"]["result"] is True
    assert ran["thumbnail-server-service-health-thumbnail_server-healthy"]["result"] is True
    # The formula's own "is it running" question, asked of the real engine.
    running = minion.run([*COMPOSE, "ps", "--status", "running", "--quiet", CONTAINER])
    assert running.stdout.strip()
    info = _inspect(minion)
    assert info["Config"]["Image"] == TS["docker"]["image"] == docker_images.THUMBNAIL.tag
    assert info["HostConfig"]["RestartPolicy"]["Name"] == "always"
    assert info["HostConfig"]["Memory"] == TS["memory_limit"] << 20
    assert info["HostConfig"]["MemorySwap"] == TS["memory_limit"] << 20
    assert info["HostConfig"]["PortBindings"] == {
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8088"}]
    }
    # From the lab host to the minion's nginx on :80, which proxies to 127.0.0.1:8088,
    # published by docker-proxy on the minion's loopback only, to the container's nginx,
    # which proxies to the service.
    assert _get(ip, "/ping").text == "pong"
    assert _get(ip, "/thumbnail/ping").text == "pong"
    listeners = minion.run(["ss", "-Htlnp", "sport = :8088"]).stdout
    assert [line.split()[3] for line in listeners.splitlines()] == ["127.0.0.1:8088"], listeners
    assert "docker-proxy" in listeners
    assert "proxy_pass http://127.0.0.1:8088;" in minion.read_file(SITE)
    # The container's nginx serves the formula's site (mounted over sites-enabled), not
    # the image's (which proxies to "localhost").
    conf = minion.run(["docker", "exec", CONTAINER, "nginx", "-T"]).stdout
    assert "Managed by Salt (opskit thumbnail-server formula)" in conf
    assert "proxy_pass http://127.0.0.1:8088;" in conf
    assert "localhost:8088" not in conf
    # A real thumbnail, made by the service from a library file on Seafile's volume.
    answer = _get(ip, f"/thumbnail/{REPO_ID}/128/photo.jpg")
    assert answer.status_code == 200, answer.text[:200]
    assert answer.headers["Content-Type"] == "image/jpeg"


def test_the_environment_arrives_literally_and_secrets_stay_out_of_files(dock):
    minion = dock["minion"]

    def printenv(name):
        return minion.run(["docker", "exec", CONTAINER, "printenv", name]).stdout[:-1]

    # $, ${...}, quotes, a backslash and # reach the service as the CMDB wrote them.
    assert printenv("SEAFILE_MYSQL_DB_PASSWORD") == SECRETS["db_password"]
    assert printenv("JWT_PRIVATE_KEY") == SECRETS["jwt_private_key"]
    assert printenv("THUMBNAIL_TASK_WORKERS") == str(TS["task_workers"])
    assert printenv("THUMBNAIL_MEMORY_LIMIT") == str(TS["memory_limit"])
    assert printenv("TIME_ZONE") == TS["seafile"]["time_zone"]
    mode = minion.run(["stat", "-c", "%a %U %G", ENV_FILE]).stdout.split()
    assert mode == ["600", "root", "root"]
    for path in (f"{PROJECT_DIR}/thumbnail-server.yml", SITE):
        text = minion.read_file(path)
        assert not [k for k, v in SECRETS.items() if v in text], path
    ps = minion.run(["ps", "-eo", "args"]).stdout
    assert not [k for k, v in SECRETS.items() if v in ps]


def test_jemalloc_is_mapped_into_the_container_service(dock):
    minion = dock["minion"]
    pid = _service_pid(minion)
    assert CONTAINER_LIBRARY in minion.read_file(f"/proc/{pid}/maps")
    environ = minion.read_file(f"/proc/{pid}/environ").split("\0")
    assert f"LD_PRELOAD={CONTAINER_LIBRARY}" in environ
    assert "MALLOC_CONF=background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0" in environ


def test_second_apply_changes_nothing_and_test_mode_agrees(lab, dock):
    started = time.monotonic()
    result, summary = _apply(lab)
    assert summary.succeeded, summary
    assert _changed(result) == {}
    result, summary = _apply(lab, test=True)
    assert summary.succeeded, summary
    assert _pending(result) == [], _changed(result)
    print(f"\n[docker thumbnail] apply + test=True: {time.monotonic() - started:.1f}s")


def test_a_changed_tuning_value_recreates_only_that_service(lab, dock):
    minion, ip = dock["minion"], dock["ip"]
    changed = copy.deepcopy(RECORD)
    changed["thumbnail_server"]["task_workers"] = TS["task_workers"] + 4
    bystander = "opskit-lab-bystander"
    minion.run(["docker", "rm", "-f", bystander], check=False)
    minion.run(
        [
            "docker",
            "run",
            "-d",
            f"--name={bystander}",
            "--network=none",
            "--entrypoint=sleep",
            TS["docker"]["image"],
            "600",
        ]
    )
    try:
        before, other = _inspect(minion), _inspect(minion, bystander)
        nginx_pid = minion.read_file("/run/nginx.pid").strip()
        site = minion.run(["stat", "-c", "%Y %i", SITE]).stdout

        result, summary = _apply(lab, changed, test=True)
        assert summary.succeeded, summary
        assert _pending(result) == [
            "thumbnail-server-config-env-thumbnail_server-env_file",
            "thumbnail-server-service-compose-running",
        ]
        assert _inspect(minion)["Id"] == before["Id"]

        result, summary = _apply(lab, changed)
        assert summary.succeeded, summary
        changes = _changed(result)
        assert sorted(changes) == [
            "thumbnail-server-config-env-thumbnail_server-env_file",
            "thumbnail-server-service-compose-running",
        ]
        assert changes["thumbnail-server-config-env-thumbnail_server-env_file"][ENV_FILE] == {
            "old": {"THUMBNAIL_TASK_WORKERS": str(TS["task_workers"])},
            "new": {"THUMBNAIL_TASK_WORKERS": str(TS["task_workers"] + 4)},
        }
        after = _inspect(minion)
        assert after["Id"] != before["Id"]
        assert f"THUMBNAIL_TASK_WORKERS={TS['task_workers'] + 4}" in after["Config"]["Env"]
        # Nothing else: the other container, the minion's nginx and its site are as before.
        now = _inspect(minion, bystander)
        assert (now["Id"], now["State"]["StartedAt"]) == (other["Id"], other["State"]["StartedAt"])
        assert minion.read_file("/run/nginx.pid").strip() == nginx_pid
        assert minion.run(["stat", "-c", "%Y %i", SITE]).stdout == site
        assert _pong(ip)
    finally:
        minion.run(["docker", "rm", "-f", bystander], check=False)
        result, summary = _apply(lab)
        assert summary.succeeded, summary
    assert f"THUMBNAIL_TASK_WORKERS={TS['task_workers']}" in _inspect(minion)["Config"]["Env"]


def _events(minion, since: str) -> list[str]:
    until = minion.run(["date", "+%s.%N"]).stdout.strip()
    out = minion.run(
        [
            "docker",
            "events",
            "--since",
            since,
            "--until",
            until,
            "--format",
            "{{.Action}}",
            "--filter",
            f"container={CONTAINER}",
        ]
    ).stdout
    return out.split()


def test_memory_above_the_limit_restarts_the_container(dock):
    """The kernel enforces mem_limit (the cgroup v1 memory controller under the minion's
    dockerd): a burst of large images takes the service over it, the kernel kills it,
    the image's start script ends the container and ``restart: always`` starts it again."""
    minion, ip = dock["minion"], dock["ip"]
    # 7000 x 7000 x 4 B = 187 MiB decoded each, under the per-image limit (400 MB);
    # four at once exceed the 512 MiB the container may use.
    count = 4
    script = (
        "import sys\nfrom PIL import Image\n"
        "for i in range(int(sys.argv[1])):\n"
        "    Image.new('RGB', (7000, 7000), (i * 30, 60, 120)).save(\n"
        "        f'/sources/big-{i}.png', compress_level=1)\n"
    )
    _make_images(minion, script, str(count))

    def get_quietly(path):
        try:
            return _get(ip, path, timeout=60).status_code
        except requests.RequestException:  # killed mid-request
            return None

    before = _inspect(minion)
    old_pid = _service_pid(minion)
    since = minion.run(["date", "+%s.%N"]).stdout.strip()
    started = time.monotonic()
    rounds = 0
    while _inspect(minion)["RestartCount"] == before["RestartCount"] and rounds < 5:
        # Another size each round: the service decodes again instead of serving its cache.
        paths = [f"/thumbnail/{REPO_ID}/{256 - rounds}/big-{i}.png" for i in range(count)]
        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            list(pool.map(get_quietly, paths))
        rounds += 1
    after = _inspect(minion)
    assert after["RestartCount"] == before["RestartCount"] + 1, f"no restart in {rounds} rounds"
    events = _events(minion, since)
    assert "oom" in events, events
    assert events.index("oom") < events.index("die") < events.index("start"), events
    assert after["State"]["OOMKilled"] is True
    assert after["Id"] == before["Id"]  # restarted, not recreated
    wait_for("the restarted container's /ping through the minion's nginx", lambda: _pong(ip), 30)
    pid = _service_pid(minion)
    assert pid != old_pid
    assert CONTAINER_LIBRARY in minion.read_file(f"/proc/{pid}/maps")
    print(
        f"\n[docker thumbnail] OOM-killed and restarted after {rounds} round(s) of {count} "
        f"large images, {time.monotonic() - started:.1f}s"
    )


def test_clean_takes_the_project_down_and_apply_brings_it_back(lab, dock):
    minion, ip = dock["minion"], dock["ip"]
    result, summary = _apply(lab, sls="thumbnail-server.clean")
    assert summary.succeeded, summary
    assert "thumbnail-server-clean-compose-absent" in _changed(result)
    gone = minion.run(["docker", "ps", "-aq", "--filter", f"name=^{CONTAINER}$"]).stdout
    assert gone.strip() == ""
    left = minion.run(["ls", "-A", PROJECT_DIR], check=False)
    assert left.returncode != 0 or left.stdout.strip() == "", left.stdout
    # test=True on the bare host: truthful, and nothing started.
    result, summary = _apply(lab, test=True)
    assert summary.succeeded, summary
    assert "thumbnail-server-service-compose-running" in _pending(result)
    up = result.data[MINION]
    (compose,) = [v for k, v in up.items() if "-service-compose-running_|" in k]
    assert compose["comment"] == "the thumbnail-server container would be started"
    gone = minion.run(["docker", "ps", "-aq", "--filter", f"name=^{CONTAINER}$"]).stdout
    assert gone.strip() == ""
    # And back, as the CMDB says.
    result, summary = _apply(lab)
    assert summary.succeeded, summary
    assert _pong(ip)
    assert CONTAINER_LIBRARY in minion.read_file(f"/proc/{_service_pid(minion)}/maps")
