"""The `thumbnail-server` formula on the lab's thumbnail host (thumb-01.lab), systemd mode,
with real nginx, systemd and jemalloc.

STAND-IN NOTICE: Seafile's thumbnail server cannot run on these machines: it ships only
as a Docker image (``seafileltd/thumbnail-server``), there is no Docker engine or registry
access here, and it needs a whole Seafile installation. The lab mirror therefore serves a
release archive holding the opskit stand-in (tests/lab/thumbnail_standin.py, packaged by
tests/lab/thumbnail_artifacts.py): a real Python service that listens on 127.0.0.1:8088
as upstream's main.py does, answers /ping, and makes thumbnails with Pillow (Debian's
python3-pil) under upstream's THUMBNAIL_* limits. The formula downloads, verifies,
unpacks and runs it exactly as it would a site's build of the real thing; nginx,
systemd, jemalloc, Salt and every socket in these tests are real. Docker mode is
covered by render tests only (tests/functional/test_thumbnail_server_formula.py).

NOT EXERCISED HERE: the kernel enforcing MemoryMax=. The host's cgroup v1 memory
controller is not delegated to the nspawn minions (it is mounted read-only inside, and
every process sits in the root memory cgroup), so systemd records MemoryMax= on the unit
but nothing enforces it. The tests check the property for real, and check the restart
through the mechanism that does work here: the formula's memory guard, which kills the
service when its resident memory stays above the limit, after which the unit's Restart=
brings it back (a new MainPID, NRestarts + 1).

The host's pillar is its record in tests/lab/inventory.yaml, passed explicitly
(``pillar=``) so the tests do not depend on the CMDB ext_pillar; it is the same data the
CMDB serves. Tests that apply other values apply the record again afterwards, leaving
the host converged.
"""

from __future__ import annotations

import concurrent.futures
import copy
import io
import json
import time

import pytest
import requests
import yaml
from PIL import Image

from tests.lab.lab import INVENTORY
from tests.lab.summary import summarize

MINION = "thumb-01.lab"
RECORD = yaml.safe_load(INVENTORY.read_text())["minions"][MINION]
UNIT = "thumbnail-server.service"
GUARD = "thumbnail-server-memory-guard.service"
ENV_FILE = "/etc/seafile-thumbnail/thumbnail-server.env"
SITE = "/etc/nginx/opskit-sites/thumbnail-server.conf"
LIBRARY = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
REPO_ID = "5b2f0c9e-7d41-4f1e-9a52-0c3e8d6b1a77"
SOURCES = f"/opt/seafile/seafile-data/{REPO_ID}"
SECRETS = RECORD["thumbnail_server"]["secrets"]
MEMORY_LIMIT = RECORD["thumbnail_server"]["memory_limit"]
STANDIN_LOG = "/opt/seafile/logs/thumbnail.log"


def _apply(lab, pillar=None, test=False):
    pillar = RECORD if pillar is None else pillar
    args = ["thumbnail-server", f"pillar={json.dumps(pillar)}"] + (["test=True"] if test else [])
    result = lab.salt(MINION, "state.apply", *args, timeout=600)
    return result, summarize(MINION, (result.data or {}).get(MINION))


def _changed(result) -> dict:
    states = (result.data or {}).get(MINION) or {}
    return {k.split("_|-")[1]: v["changes"] for k, v in states.items() if v["changes"]}


def _no_secrets(text: str, where: str) -> None:
    leaked = [name for name, value in SECRETS.items() if value in text]
    assert not leaked, f"{where} contains the secret(s) {leaked}"


def _service(minion) -> dict:
    out = minion.run(
        ["systemctl", "show", "-p", "MainPID", "-p", "NRestarts", "-p", "MemoryMax", UNIT]
    ).stdout
    props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    pid = int(props["MainPID"])
    return {"pid": pid, "restarts": int(props["NRestarts"]), "memory_max": props["MemoryMax"]}


def _get(ip, path, timeout=30):
    return requests.get(f"http://{ip}{path}", headers={"Host": MINION}, timeout=timeout)


@pytest.fixture(scope="module")
def thumb(lab):
    """thumb-01.lab with the formula applied from its CMDB record, and some source images
    where the stand-in reads them (plain files under the seafile-data directory)."""
    sync = lab.salt(MINION, "saltutil.sync_all", timeout=120)
    assert sync.returncode == 0, sync
    started = time.monotonic()
    result, summary = _apply(lab)
    assert summary.succeeded, (summary, result.stderr)
    print(
        f"\nfirst apply on {MINION}: {summary.changed} changed, {summary.ok} ok, "
        f"{time.monotonic() - started:.1f}s"
    )
    minion = lab.minions[MINION]
    script = (
        "import sys\nfrom PIL import Image\n"
        "Image.new('RGB', (3000, 2000), (200, 40, 90)).save(sys.argv[1] + '/photo.jpg', "
        "quality=90)\n"
    )
    minion.run(["mkdir", "-p", SOURCES])
    minion.run(["python3", "-c", script, SOURCES])
    yield {"minion": minion, "ip": minion.spec.ip, "first": result}
    minion.run(["rm", "-rf", f"/opt/seafile/seafile-data/{REPO_ID}"])


def test_second_apply_changes_nothing_and_test_mode_agrees(lab, thumb):
    result, summary = _apply(lab)
    assert summary.succeeded, summary
    assert _changed(result) == {}
    result, summary = _apply(lab, test=True)
    assert summary.succeeded, summary
    assert summary.pending == 0, _changed(result)


def test_nginx_proxies_to_127_0_0_1_and_returns_a_real_thumbnail(lab, thumb):
    minion, ip = thumb["minion"], thumb["ip"]
    site = minion.read_file(SITE)
    assert "proxy_pass http://127.0.0.1:8088;" in site
    # The backend listens on loopback only: the host reaches it through nginx alone.
    listening = minion.run(["ss", "-Htln", "sport = :8088"]).stdout.split()
    assert "127.0.0.1:8088" in listening, listening
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://{ip}:8088/ping", timeout=5)

    resp = _get(ip, f"/thumbnail/{REPO_ID}/256/photo.jpg")
    assert resp.status_code == 200, resp.text[:200]
    assert resp.headers["Content-Type"] == "image/jpeg"
    with Image.open(io.BytesIO(resp.content)) as thumbnail:
        thumbnail.load()  # a complete, decodable image
        assert thumbnail.format == "JPEG"
        assert thumbnail.size == (256, 171)  # 3000x2000 scaled to fit 256x256
        assert thumbnail.getpixel((128, 85)) == pytest.approx((200, 40, 90), abs=3)
    assert len(resp.content) < 20_000
    assert _get(ip, "/thumbnail/ping").text == "pong"
    # nginx logged it to the site's own access log; the service saw nginx connect from
    # 127.0.0.1 (its log is in LOG_DIR from the environment).
    access = minion.read_file("/var/log/nginx/thumbnail-server.access.log")
    assert f'GET /thumbnail/{REPO_ID}/256/photo.jpg HTTP/1.1" 200' in access
    service_log = minion.read_file("/opt/seafile/logs/thumbnail.log")
    assert f'127.0.0.1 "GET /thumbnail/{REPO_ID}/256/photo.jpg HTTP/1.0" 200' in service_log


def _thumbnail(ip, path) -> Image.Image:
    resp = _get(ip, path, timeout=90)
    assert resp.status_code == 200, resp.text[:300]
    assert resp.headers["Content-Type"] == "image/jpeg"
    image = Image.open(io.BytesIO(resp.content))
    image.load()
    return image


def test_pdf_and_video_thumbnails_run_the_installed_poppler_and_ffmpeg(thumb):
    """The formula installs what upstream's image has for PDF and video thumbnails
    (poppler-utils, ffmpeg); the stand-in runs them as upstream's thumbnail.py does:
    pdftoppm for a PDF's first page, ffprobe and ffmpeg for the frame at 5 s."""
    minion, ip = thumb["minion"], thumb["ip"]
    installed = minion.run(
        ["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\n", "poppler-utils", "ffmpeg"]
    ).stdout.split("\n")
    assert sorted(installed) == ["", "ffmpeg installed", "poppler-utils installed"], installed
    pdf = (
        "import sys\nfrom PIL import Image\n"
        "pages = [Image.new('RGB', (595, 842), c) for c in ((20, 120, 200), (200, 30, 30))]\n"
        "pages[0].save(sys.argv[1], save_all=True, append_images=pages[1:], resolution=72)\n"
    )
    minion.run(["python3", "-c", pdf, f"{SOURCES}/report.pdf"])
    # 7 s: red, then green from 4 s on; the thumbnail is the frame at 5 s.
    video = "color=c=red:s=320x240:d=7,drawbox=c=0x28a050:t=fill:enable='gte(t,4)'"
    minion.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-f", "lavfi", "-i", video, "-pix_fmt", "yuv420p",
         "-y", f"{SOURCES}/clip.mp4"],
        timeout=120,
    )  # fmt: skip
    with _thumbnail(ip, f"/thumbnail/{REPO_ID}/256/report.pdf") as page:
        assert page.size == (181, 256)  # the A4 page, first page only
        assert page.getpixel((90, 128)) == pytest.approx((20, 120, 200), abs=6)
    with _thumbnail(ip, f"/thumbnail/{REPO_ID}/128/clip.mp4") as frame:
        assert frame.size == (128, 96)
        assert frame.getpixel((64, 48)) == pytest.approx((40, 160, 80), abs=12)


def test_the_process_runs_under_jemalloc_with_the_environment_from_pillar(thumb):
    minion = thumb["minion"]
    service = _service(minion)
    assert service["pid"], "thumbnail-server.service is not running"
    assert service["memory_max"] == str(MEMORY_LIMIT * 1024 * 1024)
    assert LIBRARY in minion.read_file(f"/proc/{service['pid']}/maps")
    environ = dict(
        item.split("=", 1)
        for item in minion.run(["cat", f"/proc/{service['pid']}/environ"]).stdout.split("\0")
        if "=" in item
    )
    ts = RECORD["thumbnail_server"]
    expected = {
        "THUMBNAIL_TASK_WORKERS": str(ts["task_workers"]),
        "THUMBNAIL_IMAGE_SIZE_LIMIT": str(ts["image_size_limit"]),
        "THUMBNAIL_IMAGE_ORIGINAL_SIZE_LIMIT": str(ts["image_original_size_limit"]),
        "THUMBNAIL_MEMORY_LIMIT": str(ts["memory_limit"]),
        "INNER_SEAHUB_SERVICE_URL": ts["seafile"]["inner_seahub_service_url"],
        "SEAFILE_MYSQL_DB_HOST": ts["database"]["host"],
        "TIME_ZONE": "Europe/Berlin",
        "LD_PRELOAD": LIBRARY,
        "MALLOC_CONF": "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0",
        # The release's seafobj, which the stand-in (as upstream) imports at start-up.
        "PYTHONPATH": "/opt/seafile-thumbnail/current/seafile/lib/python3/site-packages",
    }
    assert {k: environ.get(k) for k in expected} == expected
    # Secrets: compared, never printed. The password holds ", $, \, `, ' and #.
    for var, key in (
        ("JWT_PRIVATE_KEY", "jwt_private_key"),
        ("SEAFILE_MYSQL_DB_PASSWORD", "db_password"),
    ):
        same = environ.get(var) == SECRETS[key]
        assert same, f"{var} in the process differs from pillar secrets:{key}"


def test_a_site_root_other_than_slash_moves_ping_and_thumbnails_under_it(lab, thumb):
    """With SITE_ROOT /seafile/ the service answers /seafile/ping only (upstream's
    http_request.py cuts the site root off the path): the apply's health check and the
    nginx site follow it, and the old paths stop answering."""
    minion, ip = thumb["minion"], thumb["ip"]
    rooted = copy.deepcopy(RECORD)
    rooted["thumbnail_server"]["seafile"]["site_root"] = "/seafile/"
    try:
        result, summary = _apply(lab, rooted)
        assert summary.succeeded, (summary, summary.failures)
        states = result.data[MINION]
        (health,) = [v for k, v in states.items() if "health-thumbnail_server-healthy" in k]
        assert "http://127.0.0.1:8088/seafile/ping answered 'pong'" in health["comment"]
        assert _get(ip, "/seafile/thumbnail/ping").text == "pong"
        assert _get(ip, f"/seafile/thumbnail/{REPO_ID}/256/photo.jpg").status_code == 200
        assert _get(ip, "/thumbnail/ping").status_code == 404
        assert minion.run(["curl", "-s", "http://127.0.0.1:8088/ping"]).stdout != "pong"
    finally:
        result, summary = _apply(lab)
        assert summary.succeeded, summary
    assert _get(ip, "/thumbnail/ping").text == "pong"


def test_secrets_stay_in_the_0600_env_file(lab, thumb):
    minion = thumb["minion"]
    pid = _service(minion)["pid"]
    assert minion.run(["stat", "-c", "%a %U %G", ENV_FILE]).stdout.split() == [
        "600",
        "root",
        "root",
    ]
    assert minion.run(["stat", "-c", "%a", "/etc/seafile-thumbnail"]).stdout.strip() == "700"
    _no_secrets(minion.read_file(f"/etc/systemd/system/{UNIT}"), "the unit file")
    _no_secrets(minion.run(["systemctl", "cat", UNIT]).stdout, "systemctl cat")
    _no_secrets(minion.run(["systemctl", "show", UNIT]).stdout, "systemctl show")
    _no_secrets(minion.run(["ps", "-eo", "args"]).stdout, "the process list")
    _no_secrets(minion.read_file(f"/proc/{pid}/cmdline"), "the service's argv")
    _no_secrets(minion.run(["journalctl", "--no-pager", "-q"]).stdout, "the journal")
    _no_secrets(minion.run(["cat", "/var/log/salt/minion"], check=False).stdout, "minion log")
    # The state returns (what the master's job cache keeps) show names, not values.
    first = json.dumps(thumb["first"].data)
    _no_secrets(first, "the apply's return")
    assert '"SEAFILE_MYSQL_DB_PASSWORD": "**********"' in first or "up to date" in first


def _image_batch(minion, tag: str, count: int) -> list[str]:
    """PNGs of 7000x7000 (no JPEG draft mode: each decodes to 140 MiB of RGB)."""
    script = (
        "import sys\nfrom PIL import Image\n"
        "for i in range(int(sys.argv[3])):\n"
        "    Image.new('RGB', (7000, 7000), (i * 30, 60, 120)).save("
        "f'{sys.argv[1]}/{sys.argv[2]}-{i}.png')\n"
    )
    minion.run(["python3", "-c", script, SOURCES, tag, str(count)], timeout=300)
    return [f"/thumbnail/{REPO_ID}/256/{tag}-{i}.png" for i in range(count)]


def _window_before_own_memory_check(minion, pid) -> float:
    """The service's own memory check runs at start-up and every 60 s after (as
    upstream's thumbnail_task_manager.py). Wait, if need be, until at least 30 s remain
    before the next one; return the time.monotonic() 5 s before it."""
    age = int(minion.run(["ps", "-o", "etimes=", "-p", str(pid)]).stdout)
    left = 60 - age % 60
    if left < 30:
        time.sleep(left + 1)
        left = 59
    return time.monotonic() + left - 5


def _get_quietly(ip):
    def get(path):
        try:
            return _get(ip, path, timeout=60).status_code
        except requests.RequestException:  # the guard killed the service mid-request
            return None

    return get


def test_memory_above_the_limit_restarts_the_service(lab, thumb):
    """MemoryMax= is set on the unit for real; the restart comes from the memory guard
    here, because the kernel cannot enforce MemoryMax= in the lab's minions (see the
    module docstring)."""
    minion, ip = thumb["minion"], thumb["ip"]
    low = copy.deepcopy(RECORD)
    ts = low["thumbnail_server"]
    ts.update(memory_limit=256, image_original_size_limit=200, task_workers=8)
    ts["systemd"]["memory_guard"] = {"interval": 1, "samples": 1}
    unit_before = minion.read_file(f"/etc/systemd/system/{UNIT}")

    # test=True first: it tells what would change and changes nothing.
    result, summary = _apply(lab, low, test=True)
    assert summary.succeeded, summary
    pending = _changed(result)
    assert "MemoryMax=256M" in json.dumps(pending)
    assert pending["thumbnail-server-config-env-thumbnail_server-env_file"][ENV_FILE]["new"] == {
        "THUMBNAIL_IMAGE_ORIGINAL_SIZE_LIMIT": "200",
        "THUMBNAIL_MEMORY_LIMIT": "256",
        "THUMBNAIL_TASK_WORKERS": "8",
    }
    assert minion.read_file(f"/etc/systemd/system/{UNIT}") == unit_before

    try:
        # Each image is within the per-image limit (7000 x 7000 x 4 B = 187 MB < 200 MB);
        # together they exceed the 256 MiB the service may use. Made before the apply, so
        # that the load can start while the restarted service is young (see below).
        batches = [_image_batch(minion, f"round{n}", 4) for n in range(2)]
        result, summary = _apply(lab, low)
        assert summary.succeeded, summary
        before = _service(minion)
        assert before["memory_max"] == str(256 * 1024 * 1024)
        # Why the kernel does not act here: the service is in the root memory cgroup.
        cgroups = minion.read_file(f"/proc/{before['pid']}/cgroup").splitlines()
        assert "4:memory:/" in cgroups or any(c.endswith(":memory:/") for c in cgroups), cgroups

        # The stand-in also checks its own memory, once a minute from its start, as
        # upstream's app does (THUMBNAIL_MEMORY_LIMIT); the guard samples every second.
        # The load runs between two of the stand-in's checks, so that what restarts the
        # service is the guard.
        deadline = _window_before_own_memory_check(minion, before["pid"])
        own_exits = minion.read_file(STANDIN_LOG).count("exiting for restart")
        rounds = 0
        while _service(minion)["restarts"] == before["restarts"] and time.monotonic() < deadline:
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                list(pool.map(_get_quietly(ip), batches[rounds % 2]))
            rounds += 1
            time.sleep(1)
        assert _service(minion)["restarts"] > before["restarts"], f"no restart in {rounds} rounds"
        while _service(minion)["pid"] == 0 and time.monotonic() < deadline + 30:
            time.sleep(0.5)  # RestartSec
        after = _service(minion)
        assert after["pid"] not in (before["pid"], 0)
        assert after["restarts"] == before["restarts"] + 1
        guard_log = minion.run(["journalctl", "-u", GUARD, "--no-pager", "-o", "cat"]).stdout
        assert f"main PID {before['pid']} use" in guard_log
        assert "above the limit of 256 MiB" in guard_log
        assert minion.read_file(STANDIN_LOG).count("exiting for restart") == own_exits
        # Restart= brought it back, under jemalloc, serving again.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if _get(ip, "/thumbnail/ping", timeout=5).text == "pong":
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        assert _get(ip, f"/thumbnail/{REPO_ID}/128/photo.jpg").status_code == 200
        assert LIBRARY in minion.read_file(f"/proc/{_service(minion)['pid']}/maps")
        print(f"\nrestarted by the memory guard after {rounds} round(s) of 4 large images")
    finally:
        minion.run(["sh", "-c", f"rm -f {SOURCES}/round*.png"])
        result, summary = _apply(lab)
        assert summary.succeeded, summary
    assert _service(minion)["memory_max"] == str(MEMORY_LIMIT * 1024 * 1024)


def _snapshot(minion) -> dict:
    files = [SITE, ENV_FILE, f"/etc/systemd/system/{UNIT}"]
    stat = minion.run(["stat", "-c", "%n %Y %s", *files]).stdout
    nginx = minion.run(["sh", "-c", "pgrep -x nginx | sort"]).stdout
    return {"files": stat, "nginx": nginx, "service": _service(minion)["pid"]}


def test_bad_pillar_fails_before_nginx_is_touched_and_the_site_keeps_serving(lab, thumb):
    """A CMDB record with one hostile value per class (issue 11: a shell metacharacter in
    a path that reached cmd.run, a tab that added nginx directives, a line break in an
    env value, config_dir /etc) and plain bad values: the render fails naming each key,
    nothing on the host changes, no command ran, and the site keeps serving."""
    minion, ip = thumb["minion"], thumb["ip"]
    before = _snapshot(minion)
    etc_mode = minion.run(["stat", "-c", "%a %U", "/etc"]).stdout
    bad = copy.deepcopy(RECORD)
    ts = bad["thumbnail_server"]
    ts["task_workers"] = "lots"
    ts["secrets"]["jwt_private_key"] = "too-short-jwt-key"
    ts["docker"] = {"project_dir": "/opt/x;touch /tmp/opskit-pwned"}
    ts["nginx"]["access_log"] = "/var/log/nginx/t.log\treturn\t200;"
    ts["env"] = {"SEAFILE_ADMIN_PASSWORD": "x\nLD_PRELOAD=/tmp/evil.so"}
    ts["config_dir"] = "/etc"
    result, summary = _apply(lab, bad)
    # A render error: the minion returns the error list instead of state results.
    assert isinstance(result.data[MINION], list), result
    assert not summary.succeeded
    error = json.dumps(result.data)
    for expected in (
        "thumbnail_server:task_workers = 'lots': must be an integer from 1 to 256",
        "thumbnail_server:secrets:jwt_private_key = <secret, 17 characters>: must be at least",
        "thumbnail_server:docker:project_dir = '/opt/x;touch /tmp/opskit-pwned'",
        "thumbnail_server:nginx:access_log = ",
        "thumbnail_server:env:SEAFILE_ADMIN_PASSWORD = <secret, 25 characters>",
        "thumbnail_server:config_dir = '/etc': is a system directory",
    ):
        assert expected in error, expected
    assert "too-short-jwt-key" not in error
    assert "evil.so" not in error
    assert _snapshot(minion) == before
    assert minion.run(["stat", "-c", "%a %U", "/etc"]).stdout == etc_mode
    assert minion.run(["ls", "/tmp/opskit-pwned"], check=False).returncode != 0
    assert _get(ip, f"/thumbnail/{REPO_ID}/256/photo.jpg").status_code == 200


def test_a_site_nginx_rejects_leaves_the_live_site_and_nginx_alone(lab, thumb):
    """A value that passes the formula's checks but not `nginx -t` (a log directory that
    does not exist): the nginx formula tests the candidate before it replaces the live
    file, so the run fails on that state and nginx keeps serving the old site."""
    minion, ip = thumb["minion"], thumb["ip"]
    before = _snapshot(minion)
    bad = copy.deepcopy(RECORD)
    bad["thumbnail_server"]["nginx"]["access_log"] = "/nonexistent/thumbnail.access.log"
    try:
        result, summary = _apply(lab, bad)
        assert not summary.succeeded
        failed = [f for f in summary.failures if f.startswith("nginx-site-thumbnail-server")]
        assert failed, summary.failures
        assert _snapshot(minion) == before
        assert _get(ip, f"/thumbnail/{REPO_ID}/256/photo.jpg").status_code == 200
    finally:
        result, summary = _apply(lab)
        assert summary.succeeded, summary
    assert _changed(result) == {}


def test_clean_then_test_mode_on_the_bare_host_then_apply_again(lab, thumb):
    """thumbnail-server.clean removes the service, its files and the site (nginx keeps
    running); test=True on the bare host reports what it would do and creates nothing;
    the next apply brings everything back."""
    minion, ip = thumb["minion"], thumb["ip"]
    gone = [
        f"/etc/systemd/system/{UNIT}",
        f"/etc/systemd/system/{GUARD}",
        ENV_FILE,
        SITE,
        f"/etc/systemd/system/{UNIT}.d",
        "/opt/seafile-thumbnail",
    ]
    result = lab.salt(
        MINION,
        "state.apply",
        "thumbnail-server.clean",
        f"pillar={json.dumps(RECORD)}",
        timeout=600,
    )
    summary = summarize(MINION, (result.data or {}).get(MINION))
    try:
        assert summary.succeeded, summary
        present = minion.run(["sh", "-c", f"ls -d {' '.join(gone)} 2>/dev/null || true"]).stdout
        assert present.split() == []
        assert minion.run(["systemctl", "is-active", UNIT], check=False).stdout.strip() in (
            "inactive",
            "unknown",
        )
        assert minion.run(["systemctl", "is-active", "nginx"]).stdout.strip() == "active"
        try:  # no site answers it now (with no site left, nginx may not listen on 80)
            answer = _get(ip, "/thumbnail/ping", timeout=5).text
        except requests.ConnectionError:
            answer = None
        assert answer != "pong"

        result, summary = _apply(lab, test=True)
        assert summary.succeeded, summary
        pending = _changed(result)
        assert "thumbnail-server-service-jemalloc" in pending
        assert "thumbnail-server-config-unit-file-managed" in pending
        present = minion.run(["sh", "-c", f"ls -d {' '.join(gone)} 2>/dev/null || true"]).stdout
        assert present.split() == []
    finally:
        result, summary = _apply(lab)
        assert summary.succeeded, summary
    assert _get(ip, f"/thumbnail/{REPO_ID}/256/photo.jpg").status_code == 200
    assert LIBRARY in minion.read_file(f"/proc/{_service(minion)['pid']}/maps")
    result, summary = _apply(lab)
    assert _changed(result) == {}
