"""The lab's thumbnail-server release archive (which carries the opskit STAND-IN, not
Seafile's thumbnail server): laid out as the formula's systemd mode expects, reproducible,
and pinned by the lab's CMDB record. The stand-in's limits, which the integration tests
rely on, are checked here against upstream's documented rules."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
import tarfile
import threading

import pytest
import requests
import yaml
from PIL import Image

from tests.lab import thumbnail_artifacts
from tests.lab import thumbnail_seafobj
from tests.lab import thumbnail_standin
from tests.lab.lab import INVENTORY

REPO_ID = "5b2f0c9e-7d41-4f1e-9a52-0c3e8d6b1a77"


def test_lab_cmdb_pins_the_archive_the_mirror_serves():
    record = yaml.safe_load(INVENTORY.read_text())["minions"]["thumb-01.lab"]
    release = record["thumbnail_server"]["systemd"]["release"]
    built = thumbnail_artifacts.sha256()
    assert release["version"] == thumbnail_artifacts.VERSION
    assert release["source"].endswith("/" + thumbnail_artifacts.url_path())
    assert release["sha256"] == built, (
        "tests/lab/inventory.yaml pins a thumbnail-server stand-in archive that is no longer "
        "what tests/lab/thumbnail_artifacts.py builds; set thumb-01.lab "
        f"thumbnail_server:systemd:release:sha256 to {built}"
    )


def test_archive_is_reproducible_and_laid_out_like_a_release():
    blob = thumbnail_artifacts.build()
    assert blob == thumbnail_artifacts.build()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        members = {m.name: m for m in tar.getmembers()}
        main = tar.extractfile("thumbnail-server/main.py").read()
        seafobj = tar.extractfile(f"{SEAFOBJ}/__init__.py").read()
    # Upstream's image layout (docker/Dockerfile): the app in thumbnail-server/, seafobj
    # in seafile/lib/python3/site-packages/.
    assert {n for n, m in members.items() if m.isfile()} == {
        "thumbnail-server/main.py",
        "thumbnail-server/README.opskit-lab-stand-in",
        f"{SEAFOBJ}/__init__.py",
        "VERSION",
    }
    assert all(members[n].isdir() for n in ("thumbnail-server", SEAFOBJ, "seafile"))
    assert main == thumbnail_artifacts.STANDIN.read_bytes()
    assert seafobj == thumbnail_artifacts.SEAFOBJ.read_bytes()
    assert b"NOT Seafile's thumbnail server" in main
    assert b"It is NOT seafobj" in seafobj


SEAFOBJ = "seafile/lib/python3/site-packages/seafobj"


def _config(tmp_path, **env):
    base = {
        "JWT_PRIVATE_KEY": "k" * 40,
        "INNER_SEAHUB_SERVICE_URL": "http://seafile",
        "THUMBNAIL_ROOT": str(tmp_path / "thumbs"),
    }
    return thumbnail_standin.Config({**base, **env})


def test_standin_needs_what_upstreams_compose_file_requires(tmp_path):
    with pytest.raises(SystemExit, match="JWT_PRIVATE_KEY and INNER_SEAHUB_SERVICE_URL"):
        thumbnail_standin.Config({})
    config = _config(tmp_path)
    assert (config.workers, config.size_limit_mb, config.original_limit_mb) == (3, 30, 256)


def test_standin_thumbnails_and_refuses_beyond_upstreams_limits(tmp_path):
    source = tmp_path / "photo.png"
    Image.new("RGB", (600, 300), (10, 20, 30)).save(source)
    seafile = thumbnail_seafobj.SeafFile(str(source))
    target = tmp_path / "out" / "thumb"
    thumbnail_standin.make_thumbnail(_config(tmp_path), seafile, "image", 128, str(target))
    with Image.open(target) as thumb:
        assert (thumb.format, thumb.size) == ("JPEG", (128, 64))
    # width * height * 4 bytes: 600 * 300 * 4 = 0.69 MiB > 0 MB allowed
    small = _config(tmp_path, THUMBNAIL_IMAGE_ORIGINAL_SIZE_LIMIT="0")
    with pytest.raises(thumbnail_standin.Refused, match="Image memory cost exceeds the limit"):
        thumbnail_standin.make_thumbnail(small, seafile, "image", 128, str(target))
    tiny = _config(tmp_path, THUMBNAIL_IMAGE_SIZE_LIMIT="0")
    with pytest.raises(thumbnail_standin.Refused, match="The image size exceeds the limit"):
        thumbnail_standin.make_thumbnail(tiny, seafile, "image", 128, str(target))


def test_standin_routes_on_the_path_after_site_root_like_upstream():
    """http_request.py parse_url: '/' + path[len(SITE_ROOT):], by length."""
    route = thumbnail_standin.route_path
    assert route("/ping", "/") == "/ping"
    assert route("/seafile/ping", "/seafile/") == "/ping"
    assert route("/seafile/thumbnail/x/1/a.png", "/seafile/") == "/thumbnail/x/1/a.png"
    assert route("/ping", "/seafile/") == "/"  # a bare /ping is not found there
    assert route("/thumbnail/ping", "/seafile/") == "/l/ping"


@pytest.fixture
def standin(tmp_path):
    """The stand-in's HTTP server on an ephemeral loopback port, SITE_ROOT /seafile/,
    reading its sources through the seafobj stand-in."""
    library = tmp_path / "seafile-data" / REPO_ID
    library.mkdir(parents=True)
    Image.new("RGBA", (400, 200), (10, 20, 30, 128)).save(library / "logo.png")
    config = _config(tmp_path, SITE_ROOT="/seafile/")
    storage = thumbnail_seafobj.SeafFSManager(str(tmp_path / "seafile-data"))
    server = thumbnail_standin.Server(config, storage, address=("127.0.0.1", 0))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    for pool in server.pools.values():
        pool.shutdown()


def test_standin_answers_ping_and_thumbnails_under_its_site_root(standin):
    session = requests.Session()
    session.trust_env = False
    ping = session.get(f"{standin}/seafile/ping", timeout=5)
    assert (ping.status_code, ping.text) == (200, "pong")
    assert session.get(f"{standin}/ping", timeout=5).status_code == 404
    thumb = session.get(f"{standin}/seafile/thumbnail/{REPO_ID}/100/logo.png", timeout=10)
    assert thumb.status_code == 200, thumb.text
    assert thumb.headers["Content-Type"] == "image/png"  # transparency stays PNG
    with Image.open(io.BytesIO(thumb.content)) as image:
        assert image.size == (100, 50)
    missing = session.get(f"{standin}/seafile/thumbnail/{REPO_ID}/100/../../etc.png", timeout=5)
    assert missing.status_code == 404
    other = session.get(f"{standin}/seafile/thumbnail/{REPO_ID}/100/notes.txt", timeout=5)
    assert other.status_code == 400
    assert session.post(f"{standin}/seafile/ping", timeout=5).status_code == 405


def test_standin_checks_its_memory_against_upstreams_default_limit(tmp_path):
    """thumbnail_task_manager.py: THUMBNAIL_MEMORY_LIMIT, default 4096 MB, compared with
    the resident memory from /proc/self/statm."""
    assert _config(tmp_path).memory_limit_mb == 4096
    assert _config(tmp_path, THUMBNAIL_MEMORY_LIMIT="300").memory_limit_mb == 300
    assert thumbnail_standin.over_memory_limit(4096, 100.0) is False
    assert thumbnail_standin.over_memory_limit(4096, 4097.0) is True
    assert 1 < thumbnail_standin.resident_mb() < 4096


def _run_release(tmp_path, **env):
    """Unpack the lab's release archive and start its main.py as the unit would."""
    with tarfile.open(fileobj=io.BytesIO(thumbnail_artifacts.build())) as tar:
        tar.extractall(tmp_path / "release", filter="data")
    environment = {
        "PATH": os.environ["PATH"],
        "JWT_PRIVATE_KEY": "k" * 40,
        "INNER_SEAHUB_SERVICE_URL": "http://seafile",
        "LOG_DIR": str(tmp_path / "logs"),
        **env,
    }
    return subprocess.run(
        [sys.executable, "main.py"],
        cwd=tmp_path / "release" / "thumbnail-server",
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_release_needs_seafobj_on_pythonpath(tmp_path):
    proc = _run_release(tmp_path)
    assert proc.returncode == 1
    assert "cannot import seafobj (is its directory on PYTHONPATH?)" in proc.stderr


def test_release_exits_for_a_restart_above_its_memory_limit(tmp_path):
    """With seafobj on PYTHONPATH it starts; its first memory check (at start-up, as
    upstream's monitor thread) finds more than 1 MB resident and exits with status 1."""
    site_packages = tmp_path / "release" / "seafile" / "lib" / "python3" / "site-packages"
    proc = _run_release(tmp_path, PYTHONPATH=str(site_packages), THUMBNAIL_MEMORY_LIMIT="1")
    assert proc.returncode == 1, proc.stderr
    assert "exceeds limit 1MB, exiting for restart" in proc.stderr
    assert "cannot import seafobj" not in proc.stderr
