"""The lab's thumbnail-server release archive (which carries the opskit STAND-IN, not
Seafile's thumbnail server): laid out as the formula's systemd mode expects, reproducible,
and pinned by the lab's CMDB record. The stand-in's limits, which the integration tests
rely on, are checked here against upstream's documented rules."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest
import yaml
from PIL import Image

from tests.lab import thumbnail_artifacts
from tests.lab import thumbnail_standin
from tests.lab.lab import INVENTORY


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
    assert set(members) == {
        "thumbnail-server",
        "thumbnail-server/main.py",
        "thumbnail-server/README.opskit-lab-stand-in",
        "VERSION",
    }
    assert main == thumbnail_artifacts.STANDIN.read_bytes()
    assert b"NOT Seafile's thumbnail server" in main


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
    target = tmp_path / "out" / "thumb"
    thumbnail_standin.make_thumbnail(_config(tmp_path), str(source), 128, str(target))
    with Image.open(target) as thumb:
        assert (thumb.format, thumb.size) == ("JPEG", (128, 64))
    # width * height * 4 bytes: 600 * 300 * 4 = 0.69 MiB > 0 MB allowed
    small = _config(tmp_path, THUMBNAIL_IMAGE_ORIGINAL_SIZE_LIMIT="0")
    with pytest.raises(thumbnail_standin.Refused, match="Image memory cost exceeds the limit"):
        thumbnail_standin.make_thumbnail(small, str(source), 128, str(target))
    tiny = _config(tmp_path, THUMBNAIL_IMAGE_SIZE_LIMIT="0")
    with pytest.raises(thumbnail_standin.Refused, match="The image size exceeds the limit"):
        thumbnail_standin.make_thumbnail(tiny, str(source), 128, str(target))
