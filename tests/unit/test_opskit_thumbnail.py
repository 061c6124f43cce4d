"""The thumbnail-server formula's settings schema (opskit_settings_thumbnail_server, as
opskit.settings applies it), its plan (paths, units, sites, compose file, command lines),
the environment and env file syntaxes (pure functions), starting from the formula's own
defaults.yaml."""

from __future__ import annotations

import copy
import re

import opskit_formats
import opskit_schema
import opskit_settings_thumbnail_server as schema
import opskit_thumbnail as ts
import pytest
import salt.utils.dictupdate
import yaml

from tests.conftest import REPO

DEFAULTS = yaml.safe_load(
    (REPO / "salt" / "thumbnail-server" / "parameters" / "defaults.yaml").read_text()
)["thumbnail_server"]
JWT = "j" * 40
SECRETS = {"jwt_private_key": JWT, "db_password": "pw"}
RELEASE = {
    "version": "13.0.7-site1",
    "source": "https://mirror.example.org/thumbnail-server.tar.gz",
    "sha256": "AB" * 32,
}


def _merge(base, override):
    return salt.utils.dictupdate.update(copy.deepcopy(base), copy.deepcopy(override))


def _config(**pillar):
    """Defaults merged with a minimal valid systemd-mode pillar and ``pillar``."""
    base = {
        "seafile": {"inner_seahub_service_url": "http://seafile.example.org"},
        "secrets": dict(SECRETS),
        "systemd": {"release": RELEASE},
    }
    return _merge(_merge(DEFAULTS, base), pillar)


def _settings(config):
    """What opskit.settings does: the schema, then the cross-field check."""
    settings = opskit_schema.validate(schema.SCHEMA, config, schema.ROOT)
    found = [(p[0], p[-1]) for p in schema.check(settings)]
    if found:
        raise AssertionError(found)
    return settings


def _plan(config, tuning=None, minion="thumb-01"):
    return ts.plan(_settings(config), minion, tuning=tuning)


def _problems(config) -> list[str]:
    try:
        settings = opskit_schema.validate(schema.SCHEMA, config, schema.ROOT)
    except opskit_schema.SettingsError as err:
        return [
            f"{path}{' = ' + shown if shown else ''}: {msg}" for path, shown, msg in err.problems
        ]
    return [f"{p[0]}: {p[-1]}" for p in schema.check(settings)]


def _env(plan, secrets=SECRETS, env=None):
    return ts.environment(plan, secrets, env or {})


def test_defaults_yaml_and_the_schemas_defaults_agree():
    """One set of defaults: the schema (which the docs' option table shows) applies the
    same values defaults.yaml gives map.jinja."""
    minimal = {"seafile": {"inner_seahub_service_url": "http://x"}}
    from_schema = opskit_schema.validate(schema.SCHEMA, minimal, "t")
    from_yaml = opskit_schema.validate(schema.SCHEMA, _merge(DEFAULTS, minimal), "t")
    assert from_schema == from_yaml


def test_defaults_are_the_production_tuning():
    plan = _plan(_config())
    env = _env(plan)
    # THUMBNAIL_MEMORY_LIMIT: upstream's own default (thumbnail_task_manager.py
    # MEMORY_LIMIT_MB = 4096); the same limit for the kernel (MemoryMax=).
    assert {k: v for k, v in env.items() if k.startswith("THUMBNAIL_")} == {
        "THUMBNAIL_TASK_WORKERS": "32",
        "THUMBNAIL_IMAGE_SIZE_LIMIT": "100",
        "THUMBNAIL_IMAGE_ORIGINAL_SIZE_LIMIT": "1024",
        "THUMBNAIL_MEMORY_LIMIT": "4096",
        "THUMBNAIL_ROOT": "/opt/seafile/seahub-data/thumbnail",
    }
    assert plan["backend"] == "http://127.0.0.1:8088"
    assert plan["health"]["url"] == "http://127.0.0.1:8088/ping"
    assert plan["systemd"]["memory_max"] == "4096M"
    assert "MemoryMax=4096M" in plan["systemd"]["unit_file"].splitlines()
    assert plan["nginx"]["server_name"] == ["thumb-01"]
    assert plan["nginx"]["proxy_read_timeout"] == 300


def test_the_plan_carries_no_secret_and_no_env_value():
    config = _config(env={"SEAFILE_ADMIN_PASSWORD": "admin-s3cret", "NON_ROOT": False})
    plan = _plan(config)
    assert "secrets" not in plan
    assert "env" not in plan
    assert JWT not in repr(plan)
    assert "admin-s3cret" not in repr(plan)
    assert plan["secret_env"] == ["JWT_PRIVATE_KEY", "SEAFILE_MYSQL_DB_PASSWORD"]
    assert plan["env_names"] == ["NON_ROOT", "SEAFILE_ADMIN_PASSWORD"]


@pytest.mark.parametrize(
    ("pillar", "message"),
    [
        ({"task_workers": "lots"}, "task_workers = 'lots': must be an integer from 1 to 256"),
        ({"task_workers": 0}, "task_workers = 0: must be an integer from 1 to 256"),
        ({"task_workers": True}, "task_workers = True: must be an integer from 1 to 256"),
        ({"image_size_limit": 20000}, "image_size_limit = 20000: must be an integer from 1"),
        ({"memory_limit": 64}, "memory_limit = 64: must be an integer from 256 to 1048576"),
        (
            {"image_original_size_limit": 4096},
            "image_original_size_limit: 4096 MB is not below memory_limit (4096 MB)",
        ),
        ({"mode": "kubernetes"}, "mode = 'kubernetes': must be one of systemd, docker"),
        ({"port": 9000}, "port: must be 8088 in systemd mode"),
        ({"taskworkers": 3}, "taskworkers = 3: unknown key"),
        (
            {"seafile": {"inner_seahub_service_url": None}},
            "inner_seahub_service_url = None: is required",
        ),
        ({"seafile": {"inner_seahub_service_url": "seafile.example.org"}}, "must be a URL"),
        (
            {"seafile": {"inner_seahub_service_url": "https://u:pw@seafile"}},
            "must not contain credentials",
        ),
        ({"seafile": {"site_root": "seafile"}}, "site_root = 'seafile': must be a URL path"),
        ({"seafile": {"time_zone": "Europe Berlin"}}, "time_zone = 'Europe Berlin': must be an"),
        ({"database": {"port": 70000}}, "database:port = 70000: must be an integer from 1"),
        ({"storage": {"type": "nfs"}}, "storage:type = 'nfs': must be one of , disk, s3"),
        ({"storage": {"type": "s3"}}, "storage:s3:commit_bucket: is required with storage"),
        ({"env": {"JWT_PRIVATE_KEY": "x" * 40}}, "env:JWT_PRIVATE_KEY: is a secret"),
        ({"env": {"THUMBNAIL_TASK_WORKERS": 4}}, "env:THUMBNAIL_TASK_WORKERS: is set by the"),
        ({"env": {"PYTHONPATH": "/x"}}, "env:PYTHONPATH: is set by the formula"),
        ({"env": {"lower": "x"}}, "env:lower = 'lower': must be an environment variable name"),
        ({"jemalloc": {"enabled": "yes"}}, "jemalloc:enabled = 'yes': must be true or false"),
        ({"health": {"timeout": 0}}, "health:timeout = 0: must be an integer from 1 to 600"),
        ({"nginx": {"listen": "localhost:80"}}, "nginx:listen = 'localhost:80'"),
        ({"nginx": {"proxy_read_timeout": 0}}, "nginx:proxy_read_timeout = 0: must be an"),
        ({"systemd": {"release": {"sha256": None}}}, "systemd:release:sha256: is required"),
        (
            {"systemd": {"command": ["python3", "main.py"]}},
            "systemd:command:0: must be an absolute",
        ),
        ({"systemd": {"command": ["/usr/bin/env", "P=x y"]}}, "systemd:command:1 = 'P=x y'"),
        ({"systemd": {"workdir": "../etc"}}, "systemd:workdir = '../etc': must be a path inside"),
        ({"systemd": {"unit": "thumbs"}}, "systemd:unit = 'thumbs': must be NAME.service"),
        ({"config_dir": "etc/thumbs"}, "config_dir = 'etc/thumbs': must be an absolute path"),
    ],
)
def test_bad_values_are_refused_naming_the_key_and_the_value(pillar, message):
    problems = _problems(_config(**pillar))
    assert any(message in p for p in problems), problems
    assert all(p.startswith("thumbnail_server:") for p in problems), problems


def test_every_problem_is_reported_at_once():
    problems = _problems(_config(task_workers=-1, image_size_limit="big", memory_limit=1))
    assert len(problems) == 3, problems


@pytest.mark.parametrize(
    ("secrets", "message"),
    [
        ({"db_password": "pw"}, "secrets:jwt_private_key: is required"),
        ({"jwt_private_key": JWT}, "secrets:db_password: is required"),
        (
            {"jwt_private_key": "short-key", "db_password": "pw"},
            "jwt_private_key = <secret, 9 characters>: must be at least 32",
        ),
        ({"jwt_private_key": JWT, "db_password": 1234}, "db_password = <secret, 4 characters>"),
        ({"jwt_private_key": JWT, "db_password": "a\nb"}, "db_password = <secret, 3 characters>"),
        ({"jwt_private_key": JWT, "db_password": "pw", "token": "xyz"}, "secrets:token = <secret"),
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
    s3 = {"commit_bucket": "c", "fs_bucket": "f", "block_bucket": "b", "host": "s3:9000"}
    secrets = {**SECRETS, "s3_key_id": "K", "s3_secret_key": "S"}
    config = _config(storage={"type": "s3", "s3": s3}, secrets=secrets)
    env = _env(_plan(config), secrets)
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
    plan = _plan(_config(mode="docker", docker={"image": image}))
    assert ts.compose(plan)["services"]["thumbnail-server"]["image"] == image


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ("seafileltd/thumbnail-server", "is not pinned: no tag moves"),
        ("seafileltd/thumbnail-server:latest", "is not pinned: tag 'latest'"),
        ("seafileltd/thumbnail-server:13.0-latest", "is not pinned: tag '13.0-latest'"),
        ("seafileltd/thumbnail-server@sha256:abc", "a digest is sha256:<64 hex digits>"),
        ("Seafile Thumbnails", "must be a pinned image reference"),
        (None, "docker:image: is required in docker mode"),
    ],
)
def test_moving_or_bad_images_are_refused(image, message):
    problems = _problems(_config(mode="docker", docker={"image": image}))
    assert any(message in p for p in problems), problems


def test_compose_file_has_limits_restart_policy_and_no_secrets():
    config = _config(
        mode="docker", port=18088, docker={"image": "s/t:1", "restart": "unless-stopped"}
    )
    plan = _plan(config)
    service = ts.compose(plan)["services"]["thumbnail-server"]
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
    text = plan["docker"]["compose_contents"]
    assert JWT not in text
    assert "thumbnail-server.opskit-jemalloc.yml up -d" in text
    assert yaml.safe_load(text) == ts.compose(plan)


def test_docker_commands_are_argv_lists_and_paths_cannot_carry_shell(tmp_path):
    """Issue 11 item 4: docker:project_dir with ; or ${IFS} ran commands through cmd.run
    and its unless. Now it is refused, and compose runs as an argv list."""
    for hostile in ("/opt/x;touch /tmp/p", "/opt/x${IFS}y", "/opt/$(id)", "/opt/x\ny"):
        problems = _problems(
            _config(mode="docker", docker={"image": "s/t:1", "project_dir": hostile})
        )
        assert any(p.startswith("thumbnail_server:docker:project_dir = ") for p in problems), (
            problems
        )
    for hostile in (["docker;id"], ["-v"], ["docker", "compose $(id)"]):
        problems = _problems(
            _config(mode="docker", docker={"image": "s/t:1", "compose_command": hostile})
        )
        assert any("thumbnail_server:docker:compose_command" in p for p in problems), problems
    plan = _plan(_config(mode="docker", docker={"image": "s/t:1"}))
    assert plan["docker"]["compose_argv"] == [
        "docker",
        "compose",
        "-p",
        "seafile-thumbnail",
        "-f",
        "/opt/seafile-thumbnail/thumbnail-server.yml",
        "-f",
        "/opt/seafile-thumbnail/thumbnail-server.opskit-jemalloc.yml",
    ]


@pytest.mark.parametrize("config_dir", ["/", "/etc", "/etc/", "/usr/local", "/var/lib", "/opt"])
def test_config_dir_may_not_be_root_or_a_system_directory(config_dir):
    """Issue 11 item 9: config_dir / or /etc was accepted and chmod'ed 0700 root."""
    problems = _problems(_config(config_dir=config_dir))
    assert any("config_dir = " in p and "is a system directory" in p for p in problems), problems


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("access_log", "/var/log/nginx/a\tb.log"),
        ("access_log", "/var/log/nginx/a.log;\n    internal"),
        ("error_log", "/var/log/nginx/e.log info; return 200 x"),
        ("listen", "80; internal"),
        ("server_name", ["a.example.org;internal"]),
        ("site_name", "a/../b"),
    ],
)
def test_nginx_values_cannot_inject_directives(key, value):
    """Issue 11 item 7 (thumbnail side): nginx:access_log with a tab and friends."""
    problems = _problems(_config(nginx={key: value}))
    assert any(f"thumbnail_server:nginx:{key}" in p for p in problems), problems


def test_the_site_is_rendered_with_nginx_quoting():
    plan = _plan(_config(nginx={"listen": "[::1]:8080", "server_name": ["a.example.org", "_"]}))
    lines = [line.strip() for line in plan["site"].splitlines()]
    assert 'listen "[::1]:8080";' in lines
    assert "server_name a.example.org _;" in lines
    assert "proxy_pass http://127.0.0.1:8088;" in lines
    assert not [line for line in lines if "localhost" in line and not line.startswith("#")]


def test_env_values_are_checked_for_their_readers_quoting():
    config = _config(mode="docker", docker={"image": "s/t:1"})
    config["secrets"]["db_password"] = "it's"
    assert any("db_password: cannot be written to the env file" in p for p in _problems(config))
    config["secrets"]["db_password"] = "ends\\"
    assert any("db_password: cannot be written to the env file" in p for p in _problems(config))
    config["secrets"]["db_password"] = "fine"
    config["env"] = {"SEAFILE_ADMIN_PASSWORD": "it's"}
    problems = _problems(config)
    assert any("env:SEAFILE_ADMIN_PASSWORD: cannot be written" in p for p in problems)
    assert "it's" not in "\n".join(problems)
    # systemd mode takes both
    _settings(_config(secrets={"db_password": "it's \\"}, env={"X_Y": "it's"}))


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
    with pytest.raises(opskit_formats.UnsafeValue, match="cannot quote"):
        ts.render_env({"DB": "it's"}, "compose")


def test_systemd_mode_points_upstreams_directories_at_seafile_dir():
    plan = _plan(_config(systemd={"seafile_dir": "/srv/seafile"}))
    env = _env(plan)
    assert env["CONF_DIR"] == env["SEAFILE_CENTRAL_CONF_DIR"] == "/srv/seafile/conf"
    assert env["SEAFILE_CONF_DIR"] == "/srv/seafile/seafile-data"
    assert env["LOG_DIR"] == "/srv/seafile/logs"
    assert env["TZ"] == env["TIME_ZONE"] == "Etc/UTC"
    sd = plan["systemd"]
    assert sd["working_directory"] == "/opt/seafile-thumbnail/current/thumbnail-server"
    assert sd["release_dir"] == "/opt/seafile-thumbnail/releases/13.0.7-site1"
    assert sd["release"]["source_hash"] == "sha256=" + "ab" * 32
    unit = sd["unit_file"].splitlines()
    assert "ExecStart=/usr/bin/python3 main.py" in unit
    assert "EnvironmentFile=/etc/seafile-thumbnail/thumbnail-server.env" in unit


def test_unit_files_quote_what_systemd_would_interpret():
    """The command and the version reach the unit through opskit_formats' systemd rules."""
    config = _config(
        systemd={"command": ["/opt/venv/bin/python3", "main.py", "--opt=a,b"]},
    )
    config["systemd"]["release"]["version"] = "13.0.7%n"
    problems = _problems(config)
    assert any("systemd:release:version = '13.0.7%n'" in p for p in problems), problems
    config["systemd"]["release"]["version"] = "13.0.7+site~1"
    unit = _plan(config)["systemd"]["unit_file"].splitlines()
    assert "ExecStart=/opt/venv/bin/python3 main.py --opt=a,b" in unit
    assert "Description=Seafile thumbnail server (release 13.0.7+site~1)" in unit
    guard = _plan(_config(memory_limit=8192))["systemd"]["guard_unit_file"].splitlines()
    assert (
        "ExecStart=/usr/bin/python3 /usr/local/lib/opskit/thumbnail-server-memory-guard "
        "--unit thumbnail-server.service --limit-mb 8192 --interval 10 --samples 3 "
        "--textfile /var/lib/node_exporter/textfile_collector/"
        "opskit-memory-guard-thumbnail-server.service.prom"
    ) in guard
    assert "ReadWritePaths=-/var/lib/node_exporter/textfile_collector" in guard


def test_systemd_mode_puts_the_releases_seafobj_on_pythonpath():
    """Upstream's image runs main.py with PYTHONPATH=<release>/seafile/lib/python3/
    site-packages, where seafobj lives (docker/Dockerfile, thumbnail-runit.sh)."""
    env = _env(_plan(_config()))
    assert env["PYTHONPATH"] == "/opt/seafile-thumbnail/current/seafile/lib/python3/site-packages"
    two = _config(systemd={"python_path": ["seafile/lib/python3/site-packages", "venv/lib"]})
    assert _env(_plan(two))["PYTHONPATH"].split(":") == [
        "/opt/seafile-thumbnail/current/seafile/lib/python3/site-packages",
        "/opt/seafile-thumbnail/current/venv/lib",
    ]
    for bad in (["../lib"], ["/usr/lib/python3"], ["a b"], "seafile/lib", [""]):
        problems = _problems(_config(systemd={"python_path": bad}))
        assert any("thumbnail_server:systemd:python_path" in p for p in problems), (bad, problems)


def test_systemd_mode_installs_what_pdf_and_video_thumbnails_run():
    """pdftoppm/pdfinfo (poppler-utils) and ffprobe/ffmpeg, as upstream's image has them
    (docker/Dockerfile), also when pillar lists its own packages."""
    plan = _plan(_config(systemd={"packages": ["python3", "python3-pil"]}))
    assert plan["systemd"]["packages"] == ["python3", "python3-pil", "poppler-utils", "ffmpeg"]
    plan = _plan(_config(systemd={"packages": ["ffmpeg"]}))
    assert plan["systemd"]["packages"] == ["ffmpeg", "poppler-utils"]
    problems = _problems(_config(systemd={"media_packages": ["ffmpeg; rm -rf /"]}))
    assert any("systemd:media_packages:0" in p for p in problems), problems


@pytest.mark.parametrize("mode", ["systemd", "docker"])
def test_health_url_follows_the_site_root(mode):
    """The app routes on the path after SITE_ROOT (http_request.py parse_url): under
    /seafile/ it answers /seafile/ping, and /ping is not found."""
    config = _config(mode=mode, seafile={"site_root": "/seafile/"}, docker={"image": "s/t:1"})
    plan = _plan(config)
    assert plan["health"]["url"] == "http://127.0.0.1:8088/seafile/ping"
    assert "location = /seafile/thumbnail/ping {" in plan["site"]
    assert "proxy_pass http://127.0.0.1:8088/seafile/ping;" in plan["site"]
    config["health"] = {"path": "/ping/", "timeout": 5}
    assert _plan(config)["health"]["url"] == "http://127.0.0.1:8088/seafile/ping/"


def test_docker_mode_sets_no_host_paths():
    plan = _plan(_config(mode="docker", docker={"image": "s/t:1"}))
    env = _env(plan)
    assert not {"CONF_DIR", "LOG_DIR", "THUMBNAIL_ROOT", "TZ", "PYTHONPATH"} & set(env)
    assert "systemd" not in plan


def test_extra_env_is_added_as_strings():
    plan = _plan(_config(env={"SEAFILE_LOG_TO_STDOUT": True, "NON_ROOT": "false"}))
    env = _env(plan, env={"SEAFILE_LOG_TO_STDOUT": True, "NON_ROOT": "false"})
    assert env["SEAFILE_LOG_TO_STDOUT"] == "true"
    assert env["NON_ROOT"] == "false"


@pytest.mark.parametrize("units", [{"thumbnail-server.service": {}}, {"thumbnail-server": None}])
def test_tuning_may_not_manage_the_same_units_jemalloc(units):
    with pytest.raises(ts.PlanError) as err:
        _plan(_config(), tuning={"jemalloc": {"units": units}})
    assert any(
        re.search(r"tuning:jemalloc:units also lists thumbnail-server\.service", p)
        for p in err.value.problems
    ), err.value.problems
    # Another unit, or this formula's jemalloc switched off, is fine.
    _plan(_config(), tuning={"jemalloc": {"units": {"other.service": {}}}})
    _plan(_config(jemalloc={"enabled": False}), tuning={"jemalloc": {"units": units}})


def test_tuning_may_not_write_the_same_compose_override():
    override = "/opt/seafile-thumbnail/thumbnail-server.opskit-jemalloc.yml"
    tuning = {"jemalloc": {"compose": {override: {"services": ["thumbnail-server"]}}}}
    with pytest.raises(ts.PlanError, match="tuning:jemalloc:compose also lists"):
        _plan(_config(mode="docker", docker={"image": "s/t:1"}), tuning=tuning)
