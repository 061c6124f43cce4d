"""The thumbnail-server formula's settings check, environment, env file syntaxes and
compose file (pure functions), starting from the formula's own defaults.yaml."""

from __future__ import annotations

import copy
import re

import opskit_thumbnail as ts
import pytest
import salt.utils.dictupdate
import yaml

from tests.conftest import REPO

DEFAULTS = yaml.safe_load(
    (REPO / "salt" / "thumbnail-server" / "parameters" / "defaults.yaml").read_text()
)["thumbnail_server"]
JWT = "j" * 40
RELEASE = {
    "version": "13.0.7-site1",
    "source": "https://mirror.example.org/thumbnail-server.tar.gz",
    "sha256": "ab" * 32,
}


def _merge(base, override):
    return salt.utils.dictupdate.update(copy.deepcopy(base), copy.deepcopy(override))


def _config(**pillar):
    """Defaults merged with a minimal valid systemd-mode pillar and ``pillar``."""
    base = {
        "seafile": {"inner_seahub_service_url": "http://seafile.example.org"},
        "secrets": {"jwt_private_key": JWT, "db_password": "pw"},
        "systemd": {"release": RELEASE},
    }
    return _merge(_merge(DEFAULTS, base), pillar)


def _problems(config, tuning=None) -> list[str]:
    with pytest.raises(ts.InvalidSettings) as err:
        ts.validate(config, minion="thumb-01", tuning=tuning)
    return err.value.problems


def test_defaults_are_the_production_tuning():
    settings = ts.validate(_config(), minion="thumb-01")
    env = ts.environment(settings, {"jwt_private_key": JWT, "db_password": "pw"})
    # THUMBNAIL_MEMORY_LIMIT: upstream's own default (thumbnail_task_manager.py
    # MEMORY_LIMIT_MB = 4096); the same limit for the kernel (MemoryMax=).
    assert {k: v for k, v in env.items() if k.startswith("THUMBNAIL_")} == {
        "THUMBNAIL_TASK_WORKERS": "32",
        "THUMBNAIL_IMAGE_SIZE_LIMIT": "100",
        "THUMBNAIL_IMAGE_ORIGINAL_SIZE_LIMIT": "1024",
        "THUMBNAIL_MEMORY_LIMIT": "4096",
        "THUMBNAIL_ROOT": "/opt/seafile/seahub-data/thumbnail",
    }
    assert settings["backend"] == "http://127.0.0.1:8088"
    assert settings["health"]["url"] == "http://127.0.0.1:8088/ping"
    assert settings["systemd"]["memory_max"] == "4096M"
    assert settings["nginx"]["server_name"] == ["thumb-01"]
    assert settings["nginx"]["proxy_read_timeout"] == 300


def test_secrets_are_checked_but_not_returned():
    settings = ts.validate(_config(), minion="thumb-01")
    assert "secrets" not in settings
    assert JWT not in repr(settings)
    assert settings["secret_env"] == ["JWT_PRIVATE_KEY", "SEAFILE_MYSQL_DB_PASSWORD"]


@pytest.mark.parametrize(
    ("pillar", "message"),
    [
        ({"task_workers": "32"}, "task_workers: must be a whole number from 1 to 256, not '32'"),
        ({"task_workers": 0}, "task_workers: must be from 1 to 256, not 0"),
        ({"task_workers": True}, "task_workers: must be a whole number from 1 to 256, not True"),
        ({"image_size_limit": 20000}, "image_size_limit: must be from 1 to 10240, not 20000"),
        ({"memory_limit": 64}, "memory_limit: must be from 256 to 1048576, not 64"),
        (
            {"image_original_size_limit": 4096},
            "image_original_size_limit: 4096 MB is not below memory_limit (4096 MB)",
        ),
        ({"mode": "kubernetes"}, "mode: must be systemd or docker, not 'kubernetes'"),
        ({"port": 9000}, "port: must be 8088 in systemd mode"),
        ({"taskworkers": 3}, "taskworkers: unknown key"),
        ({"seafile": {"inner_seahub_service_url": None}}, "inner_seahub_service_url: is required"),
        (
            {"seafile": {"inner_seahub_service_url": "seafile.example.org"}},
            "must be a http/https URL, not 'seafile.example.org'",
        ),
        ({"seafile": {"site_root": "seafile"}}, "site_root: must start and end with '/'"),
        ({"seafile": {"time_zone": "Europe Berlin"}}, "time_zone: 'Europe Berlin' is not valid"),
        ({"database": {"port": 70000}}, "database:port: must be from 1 to 65535, not 70000"),
        ({"storage": {"type": "nfs"}}, "storage:type: must be one of disk, s3, multiple"),
        ({"storage": {"type": "s3"}}, "storage:s3:commit_bucket: is required"),
        ({"env": {"JWT_PRIVATE_KEY": "x" * 40}}, "env:JWT_PRIVATE_KEY: is a secret"),
        ({"env": {"THUMBNAIL_TASK_WORKERS": 4}}, "env:THUMBNAIL_TASK_WORKERS: is set by the"),
        ({"env": {"lower": "x"}}, "env:lower: is not an environment variable name"),
        ({"env": {"A": "two\nlines"}}, "env:A: must be a single line"),
        ({"jemalloc": {"enabled": "yes"}}, "jemalloc:enabled: must be true or false, not 'yes'"),
        ({"health": {"timeout": 0}}, "health:timeout: must be from 1 to 600, not 0"),
        ({"nginx": {"listen": "localhost:80"}}, "nginx:listen: 'localhost:80': 'localhost'"),
        ({"nginx": {"proxy_read_timeout": 0}}, "nginx:proxy_read_timeout: must be from 1"),
        ({"systemd": {"release": {"sha256": None}}}, "systemd:release:sha256: is required"),
        ({"systemd": {"command": ["python3", "main.py"]}}, "systemd:command: must be a list"),
        ({"systemd": {"command": ["/usr/bin/env", "P=x y"]}}, "systemd:command: must be a list"),
        ({"systemd": {"workdir": "../etc"}}, "systemd:workdir: must be a path inside"),
        ({"systemd": {"unit": "thumbs"}}, "systemd:unit: 'thumbs' is not valid (NAME.service)"),
        ({"config_dir": "etc/thumbs"}, "config_dir: must be an absolute path"),
    ],
)
def test_bad_values_are_refused_naming_the_key_and_the_value(pillar, message):
    problems = _problems(_config(**pillar))
    assert any(message in p for p in problems), problems
    assert all(p.startswith("thumbnail_server:") for p in problems), problems


def test_every_problem_is_reported_at_once():
    problems = _problems(_config(task_workers=-1, image_size_limit="big", port=1))
    assert len(problems) == 3, problems


@pytest.mark.parametrize(
    ("secrets", "message"),
    [
        ({"db_password": "pw"}, "secrets:jwt_private_key: is required"),
        ({"jwt_private_key": JWT}, "secrets:db_password: is required"),
        (
            {"jwt_private_key": "short-key", "db_password": "pw"},
            "at least 32 characters (it has 9)",
        ),
        ({"jwt_private_key": JWT, "db_password": 1234}, "db_password: must be a string, not a int"),
        ({"jwt_private_key": JWT, "db_password": "a\nb"}, "db_password: must be a single line"),
        ({"jwt_private_key": JWT, "db_password": "pw", "token": "x"}, "secrets:token: unknown"),
    ],
)
def test_bad_secrets_are_refused_without_showing_them(secrets, message):
    config = _config()
    config["secrets"] = secrets
    problems = _problems(config)
    assert any(message in p for p in problems), problems
    for value in secrets.values():
        if isinstance(value, str) and len(value) > 2:
            assert value not in "\n".join(problems)


def test_s3_storage_needs_its_buckets_and_keys():
    config = _config(storage={"type": "s3", "s3": {"commit_bucket": "c", "fs_bucket": "f"}})
    problems = _problems(config)
    assert any("storage:s3:block_bucket: is required" in p for p in problems)
    assert any("secrets:s3_key_id: is required with storage type s3" in p for p in problems)
    assert any("secrets:s3_secret_key: is required" in p for p in problems)


def test_s3_environment_follows_upstreams_variable_names():
    config = _config(
        storage={
            "type": "s3",
            "s3": {"commit_bucket": "c", "fs_bucket": "f", "block_bucket": "b", "host": "s3:9000"},
        }
    )
    secrets = {"jwt_private_key": JWT, "db_password": "pw", "s3_key_id": "K", "s3_secret_key": "S"}
    config["secrets"] = secrets
    env = ts.environment(ts.validate(config, minion="m"), secrets)
    assert {k: v for k, v in env.items() if k.startswith(("S3_", "SEAF_"))} == {
        "SEAF_SERVER_STORAGE_TYPE": "s3",
        "S3_COMMIT_BUCKET": "c",
        "S3_FS_BUCKET": "f",
        "S3_BLOCK_BUCKET": "b",
        "S3_KEY_ID": "K",
        "S3_SECRET_KEY": "S",
        "S3_AWS_REGION": "us-east-1",
        "S3_HOST": "s3:9000",
        "S3_USE_HTTPS": "true",
        "S3_USE_V4_SIGNATURE": "true",
        "S3_PATH_STYLE_REQUEST": "false",
        "S3_SSE_C_KEY": "",
    }


@pytest.mark.parametrize(
    "image",
    [
        "seafileltd/thumbnail-server:13.0.7",
        "registry.example.org:5000/seafile/thumbnail-server:13.0.7",
        "seafileltd/thumbnail-server@sha256:" + "0" * 64,
        "seafileltd/thumbnail-server:13.0-latest@sha256:" + "0" * 64,
    ],
)
def test_pinned_images_are_accepted(image):
    settings = ts.validate(_config(mode="docker", docker={"image": image}), minion="m")
    assert ts.compose(settings)["services"]["thumbnail-server"]["image"] == image


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ("seafileltd/thumbnail-server", "is not pinned: no tag moves"),
        ("seafileltd/thumbnail-server:latest", "is not pinned: tag 'latest'"),
        ("seafileltd/thumbnail-server:13.0-latest", "is not pinned: tag '13.0-latest'"),
        ("seafileltd/thumbnail-server@sha256:abc", "a digest is sha256:<64 hex digits>"),
        ("Seafile Thumbnails", "is not an image reference"),
        (None, "docker:image: is required"),
    ],
)
def test_moving_or_bad_images_are_refused(image, message):
    problems = _problems(_config(mode="docker", docker={"image": image}))
    assert any(message in p for p in problems), problems


def test_compose_file_has_limits_restart_policy_and_no_secrets():
    config = _config(
        mode="docker", port=18088, docker={"image": "s/t:1", "restart": "unless-stopped"}
    )
    settings = ts.validate(config, minion="m")
    service = ts.compose(settings)["services"]["thumbnail-server"]
    assert service == {
        "image": "s/t:1",
        "container_name": "thumbnail-server",
        "restart": "unless-stopped",
        "env_file": ["/etc/seafile-thumbnail/thumbnail-server.env"],
        "volumes": [
            "/opt/seafile-data:/shared",
            "/opt/seafile-thumbnail/nginx-sites:/etc/nginx/sites-enabled:ro",
        ],
        "ports": ["127.0.0.1:18088:80"],
        "mem_limit": "4096m",
        "memswap_limit": "4096m",
    }
    text = ts.render_compose(settings)
    assert JWT not in text
    assert "thumbnail-server.opskit-jemalloc.yml up -d" in text
    assert yaml.safe_load(text) == ts.compose(settings)


def test_restart_policy_must_be_one_composes_knows():
    problems = _problems(_config(mode="docker", docker={"image": "s/t:1", "restart": "sometimes"}))
    assert any("docker:restart: must be one of no, always" in p for p in problems)


TRICKY = 'a "quoted" $HOME `cmd` \\back\\slash #hash it\'s  spaced '


def test_systemd_env_file_escapes_what_systemd_would_interpret():
    text = ts.render_env({"DB": TRICKY, "PLAIN": "x"}, "systemd")
    assert 'DB="a \\"quoted\\" \\$HOME \\`cmd\\` \\\\back\\\\slash #hash it\'s  spaced "' in text
    assert ts.parse_env(text, "systemd") == {"DB": TRICKY, "PLAIN": "x"}
    assert all(line.startswith("#") or "=" in line for line in text.splitlines())


def test_compose_env_file_single_quotes_values_and_refuses_single_quotes():
    text = ts.render_env({"DB": 'a "q" $H #h'}, "compose")
    assert "DB='a \"q\" $H #h'" in text
    assert ts.parse_env(text, "compose") == {"DB": 'a "q" $H #h'}
    with pytest.raises(ValueError, match="single quote"):
        ts.render_env({"DB": "it's"}, "compose")
    config = _config(mode="docker", docker={"image": "s/t:1"})
    config["secrets"]["db_password"] = "it's"
    assert any("db_password: must not contain a single quote" in p for p in _problems(config))
    config["secrets"]["db_password"] = "ends\\"
    assert any("db_password: must not end with a backslash" in p for p in _problems(config))
    # systemd mode takes both
    ts.validate(_config(secrets={"db_password": "it's \\"}), minion="m")


def test_systemd_mode_points_upstreams_directories_at_seafile_dir():
    settings = ts.validate(_config(systemd={"seafile_dir": "/srv/seafile"}), minion="m")
    env = ts.environment(settings, {"jwt_private_key": JWT, "db_password": "pw"})
    assert env["CONF_DIR"] == env["SEAFILE_CENTRAL_CONF_DIR"] == "/srv/seafile/conf"
    assert env["SEAFILE_CONF_DIR"] == "/srv/seafile/seafile-data"
    assert env["LOG_DIR"] == "/srv/seafile/logs"
    assert env["TZ"] == env["TIME_ZONE"] == "Etc/UTC"
    sd = settings["systemd"]
    assert sd["working_directory"] == "/opt/seafile-thumbnail/current/thumbnail-server"
    assert sd["release_dir"] == "/opt/seafile-thumbnail/releases/13.0.7-site1"
    assert sd["exec_start"] == "/usr/bin/python3 main.py"
    assert sd["release"]["source_hash"] == "sha256=" + "ab" * 32


def test_systemd_mode_puts_the_releases_seafobj_on_pythonpath():
    """Upstream's image runs main.py with PYTHONPATH=<release>/seafile/lib/python3/
    site-packages, where seafobj lives (docker/Dockerfile, thumbnail-runit.sh)."""
    env = ts.environment(ts.validate(_config(), "m"), {"jwt_private_key": JWT, "db_password": "p"})
    assert env["PYTHONPATH"] == "/opt/seafile-thumbnail/current/seafile/lib/python3/site-packages"
    two = _config(systemd={"python_path": ["seafile/lib/python3/site-packages", "venv/lib"]})
    env = ts.environment(ts.validate(two, "m"), {"jwt_private_key": JWT, "db_password": "p"})
    assert env["PYTHONPATH"].split(":") == [
        "/opt/seafile-thumbnail/current/seafile/lib/python3/site-packages",
        "/opt/seafile-thumbnail/current/venv/lib",
    ]
    # The formula owns PYTHONPATH; paths outside the release are refused.
    assert any(
        "env:PYTHONPATH: is set by the formula" in p
        for p in _problems(_config(env={"PYTHONPATH": "/x"}))
    )
    for bad in (["../lib"], ["/usr/lib/python3"], ["a b"], "seafile/lib", [""]):
        problems = _problems(_config(systemd={"python_path": bad}))
        assert any(
            "systemd:python_path: must be a list of directories inside" in p for p in problems
        )


def test_systemd_mode_installs_what_pdf_and_video_thumbnails_run():
    """pdftoppm/pdfinfo (poppler-utils) and ffprobe/ffmpeg, as upstream's image has them
    (docker/Dockerfile), also when pillar lists its own packages."""
    settings = ts.validate(_config(systemd={"packages": ["python3", "python3-pil"]}), "m")
    assert settings["systemd"]["packages"] == ["python3", "python3-pil", "poppler-utils", "ffmpeg"]
    settings = ts.validate(_config(systemd={"packages": ["ffmpeg"]}), "m")
    assert settings["systemd"]["packages"] == ["ffmpeg", "poppler-utils"]
    problems = _problems(_config(systemd={"media_packages": ["ffmpeg; rm -rf /"]}))
    assert any("systemd:media_packages: must be a list of package names" in p for p in problems)


@pytest.mark.parametrize("mode", ["systemd", "docker"])
def test_health_url_follows_the_site_root(mode):
    """The app routes on the path after SITE_ROOT (http_request.py parse_url): under
    /seafile/ it answers /seafile/ping, and /ping is not found."""
    config = _config(mode=mode, seafile={"site_root": "/seafile/"}, docker={"image": "s/t:1"})
    settings = ts.validate(config, "m")
    assert settings["health"]["url"] == "http://127.0.0.1:8088/seafile/ping"
    config["health"] = {"path": "/ping/", "timeout": 5}
    assert ts.validate(config, "m")["health"]["url"] == "http://127.0.0.1:8088/seafile/ping/"


def test_docker_mode_sets_no_host_paths():
    settings = ts.validate(_config(mode="docker", docker={"image": "s/t:1"}), minion="m")
    env = ts.environment(settings, {"jwt_private_key": JWT, "db_password": "pw"})
    assert not {"CONF_DIR", "LOG_DIR", "THUMBNAIL_ROOT", "TZ"} & set(env)
    assert "systemd" not in settings


def test_extra_env_is_added_as_strings():
    settings = ts.validate(_config(env={"SEAFILE_LOG_TO_STDOUT": True, "NON_ROOT": "false"}), "m")
    env = ts.environment(settings, {"jwt_private_key": JWT, "db_password": "pw"})
    assert env["SEAFILE_LOG_TO_STDOUT"] == "true"
    assert env["NON_ROOT"] == "false"


@pytest.mark.parametrize("units", [{"thumbnail-server.service": {}}, {"thumbnail-server": None}])
def test_tuning_may_not_manage_the_same_units_jemalloc(units):
    problems = _problems(_config(), tuning={"jemalloc": {"units": units}})
    assert any(
        re.search(r"tuning:jemalloc:units also lists thumbnail-server\.service", p)
        for p in problems
    ), problems
    # Another unit, or this formula's jemalloc switched off, is fine.
    ts.validate(_config(), "m", tuning={"jemalloc": {"units": {"other.service": {}}}})
    ts.validate(_config(jemalloc={"enabled": False}), "m", tuning={"jemalloc": {"units": units}})


def test_tuning_may_not_write_the_same_compose_override():
    override = "/opt/seafile-thumbnail/thumbnail-server.opskit-jemalloc.yml"
    tuning = {"jemalloc": {"compose": {override: {"services": ["thumbnail-server"]}}}}
    problems = _problems(_config(mode="docker", docker={"image": "s/t:1"}), tuning=tuning)
    assert any("tuning:jemalloc:compose also lists" in p for p in problems), problems
