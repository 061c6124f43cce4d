"""The `thumbnail-server` formula rendered by Salt's real state compiler (state.show_sls)
and the thumbnail_server state module run through state.single -- on this host, touching
nothing outside temporary directories.

Docker mode is tested by rendering only: there is no Docker engine on these machines.
The compose file, the jemalloc override the `jemalloc` state writes, and the env file
are handed to docker compose (v1, which needs no engine) to validate and merge; that
also checks the env file's quoting with compose's own parser.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import stat
import subprocess

import opskit_redact
import pytest
import yaml

from tests.conftest import REPO

EXAMPLE = yaml.safe_load((REPO / "salt" / "thumbnail-server" / "pillar.example").read_text())
JWT = "functional-test-jwt-key-0123456789abcdef"
# Quotes, dollar signs, backslash, backtick, hash: what env file parsers interpret.
PASSWORD = 'p4$$ "w0rd" ${HOME} \\x `y` #z'
SECRETS = {"jwt_private_key": JWT, "db_password": PASSWORD}
COMPOSE_PASSWORD = 'p4$$ "w0rd" $HOME \\x `y` #z'


def _pillar(**ts):
    pillar = {
        "thumbnail_server": {
            "seafile": {"inner_seahub_service_url": "http://seafile.example.org"},
            "secrets": dict(SECRETS),
            "systemd": {
                "release": {
                    "version": "13.0.7-site1",
                    "source": "https://mirror.example.org/thumbnail-server.tar.gz",
                    "sha256": "ab" * 32,
                }
            },
        }
    }
    for key, value in ts.items():
        current = pillar["thumbnail_server"].get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            current.update(value)
        else:
            pillar["thumbnail_server"][key] = value
    return pillar


def _docker_pillar(tmp_path, **ts):
    # Compose v1 (the only compose here) expands ${VAR} even in single quotes; v2, which
    # the formula targets, does not. The docker-mode password avoids ${ for that reason.
    ts.setdefault("secrets", {"db_password": COMPOSE_PASSWORD})
    return _pillar(
        mode="docker",
        config_dir=str(tmp_path / "etc"),
        docker={"image": "seafileltd/thumbnail-server:13.0.7", "project_dir": str(tmp_path)},
        **ts,
    )


def _render(modules, pillar, sls="thumbnail-server"):
    return modules.state.show_sls(sls, pillar=pillar)


def _render_error(modules, pillar) -> str:
    rendered = _render(modules, pillar)
    assert isinstance(rendered, list), "the render should have failed"
    return "\n".join(rendered)


def _arg(state: dict, name: str):
    for module, body in state.items():
        if module.startswith("__"):
            continue
        for item in body:
            if isinstance(item, dict) and name in item:
                return item[name]
    raise KeyError(name)


def _single(modules, fun, **kwargs):
    ret = modules.state.single(fun, **kwargs)
    raw = getattr(ret, "raw", ret)  # salt-factories wraps state returns in StateResult
    assert isinstance(raw, dict), raw
    (result,) = raw.values()
    return result


MASK = opskit_redact.MASK


def _contents(rendered: dict, state_id: str) -> list[str]:
    return _arg(rendered[state_id], "contents").splitlines()


def test_pillar_example_renders_systemd_mode_without_secrets(modules):
    rendered = _render(modules, EXAMPLE)
    assert isinstance(rendered, dict), rendered
    text = json.dumps(rendered)
    for secret in EXAMPLE["thumbnail_server"]["secrets"].values():
        assert secret not in text
    jemalloc = rendered["thumbnail-server-service-jemalloc"]
    assert "jemalloc" in jemalloc
    assert _arg(jemalloc, "name") == "thumbnail-server.service"
    assert _arg(jemalloc, "malloc_conf") == (
        "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0"
    )
    health = rendered["thumbnail-server-service-health-thumbnail_server-healthy"]
    assert _arg(health, "url") == "http://127.0.0.1:8088/ping"
    assert _arg(health, "jemalloc") is True
    site = rendered["nginx-site-thumbnail-server-file-managed"]
    assert {"thumbnail_server": "thumbnail-server-service-health-thumbnail_server-healthy"} in (
        _arg(site, "require")
    )
    release = rendered["thumbnail-server-package-release-archive-extracted"]
    assert _arg(release, "source_hash") == "sha256=" + "0123456789abcdef" * 4


def test_empty_pillar_is_harmless(modules):
    rendered = _render(modules, {})
    assert list(rendered) == ["thumbnail-server-pillar-none-test-succeed_without_changes"]
    assert list(_render(modules, {}, "thumbnail-server.clean")) == [
        "thumbnail-server-clean-pillar-none-test-succeed_without_changes"
    ]


def test_unit_file_has_the_limits_and_no_secrets(modules):
    rendered = _render(modules, EXAMPLE)
    unit = _arg(rendered["thumbnail-server-config-unit-file-managed"], "contents")
    assert {
        "EnvironmentFile=/etc/seafile-thumbnail/thumbnail-server.env",
        "ExecStart=/opt/seafile-thumbnail/current/venv/bin/python3 main.py",
        "WorkingDirectory=/opt/seafile-thumbnail/current/thumbnail-server",
        "MemoryMax=4096M",
        "Restart=always",
        "User=seafile",
    } <= set(unit.splitlines())
    for secret in EXAMPLE["thumbnail_server"]["secrets"].values():
        assert secret not in unit


def test_memory_guard_unit_follows_the_memory_limit(modules):
    pillar = _pillar(memory_limit=4096, systemd={"memory_guard": {"interval": 2, "samples": 5}})
    rendered = _render(modules, pillar)
    assert (
        "ExecStart=/usr/bin/python3 /usr/local/lib/opskit/thumbnail-server-memory-guard "
        "--unit thumbnail-server.service --limit-mb 4096 --interval 2 --samples 5 "
        "--textfile /var/lib/node_exporter/textfile_collector/"
        "opskit-memory-guard-thumbnail-server.service.prom"
    ) in _contents(rendered, "thumbnail-server-config-memory-guard-unit-file-managed")
    off = _render(modules, _pillar(systemd={"memory_guard": {"enabled": False}}))
    assert "thumbnail-server-service-memory-guard-service-dead" in off
    assert "thumbnail-server-config-memory-guard-unit-file-managed" not in off


def test_site_proxies_to_127_0_0_1_with_slow_job_timeouts_and_logs(modules):
    rendered = _render(modules, EXAMPLE)
    site = [
        line.strip() for line in _contents(rendered, "nginx-site-thumbnail-server-file-managed")
    ]
    assert "proxy_pass http://127.0.0.1:8088;" in site
    assert "proxy_pass http://127.0.0.1:8088/ping;" in site
    assert not [line for line in site if "localhost" in line and not line.startswith("#")]
    assert {
        "listen 80;",
        "server_name thumbnails.example.org;",
        "proxy_read_timeout 300s;",
        "proxy_send_timeout 300s;",
        "proxy_connect_timeout 5s;",
        "access_log /var/log/nginx/thumbnail-server.access.log;",
        "error_log /var/log/nginx/thumbnail-server.error.log;",
    } <= set(site)


@pytest.mark.parametrize(
    ("pillar", "messages"),
    [
        (
            _pillar(task_workers="many", image_original_size_limit=4096),
            ["thumbnail_server:task_workers = 'many': must be an integer from 1 to 256"],
        ),
        (
            _pillar(image_original_size_limit=4096),
            ["thumbnail_server:image_original_size_limit = 4096: 4096 MB is not below"],
        ),
        (
            _pillar(secrets={"jwt_private_key": "tooshort"}),
            [
                "thumbnail_server:secrets:jwt_private_key = <secret, 8 characters>: must be at "
                "least 32 characters"
            ],
        ),
        (
            _pillar(mode="docker", docker={"image": "seafileltd/thumbnail-server:13.0-latest"}),
            ["thumbnail_server:docker:image = 'seafileltd/thumbnail-server:13.0-latest': is not"],
        ),
        (
            {**_pillar(), "tuning": {"jemalloc": {"units": {"thumbnail-server.service": {}}}}},
            ["pillar tuning:jemalloc:units also lists thumbnail-server.service"],
        ),
    ],
)
def test_bad_pillar_is_refused_before_anything_is_applied(modules, pillar, messages):
    error = _render_error(modules, pillar)
    assert "nothing was" in error
    for message in messages:
        assert message in error


def test_bad_malloc_conf_is_refused_by_jemallocs_own_check(modules):
    error = _render_error(modules, _pillar(jemalloc={"malloc_conf": "background_thread"}))
    assert "is not a key:value pair jemalloc understands" in error


def test_bad_secret_value_never_appears_in_the_error(modules):
    error = _render_error(modules, _pillar(secrets={"jwt_private_key": "sh0rt-s3cret"}))
    assert "jwt_private_key = <secret, 12 characters>: must be at least 32 characters" in error
    assert "sh0rt-s3cret" not in error


def _settings(modules, pillar) -> dict:
    rendered = _render(modules, pillar)
    assert isinstance(rendered, dict), rendered
    return _arg(rendered["thumbnail-server-config-env-thumbnail_server-env_file"], "settings")


def _env_lines(path) -> dict:
    return dict(
        line.split("=", 1)
        for line in path.read_text().splitlines()
        if line and not line.startswith("#")
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="SKIPPED: the env file is chowned to root")
def test_env_file_is_written_0600_and_its_changes_hide_secrets(modules, tmp_path, testmode):
    pillar = _pillar(config_dir=str(tmp_path))
    settings = _settings(modules, pillar)
    path = tmp_path / "thumbnail-server.env"
    ret = _single(
        modules,
        "thumbnail_server.env_file",
        name=str(path),
        settings=settings,
        test=testmode,
        pillar=pillar,
    )
    assert JWT not in json.dumps(ret)
    assert PASSWORD not in json.dumps(ret)
    new = ret["changes"][str(path)]["new"]
    assert new["JWT_PRIVATE_KEY"] == new["SEAFILE_MYSQL_DB_PASSWORD"] == MASK
    assert new["THUMBNAIL_TASK_WORKERS"] == "32"
    if testmode:
        assert ret["result"] is None
        assert not path.exists()
        return
    assert ret["result"] is True, ret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    env = _env_lines(path)
    # systemd's EnvironmentFile= syntax: double quotes, \ before " \ ` $
    assert env["SEAFILE_MYSQL_DB_PASSWORD"] == r'"p4\$\$ \"w0rd\" \${HOME} \\x \`y\` #z"'
    assert env["JWT_PRIVATE_KEY"] == f'"{JWT}"'
    assert env["THUMBNAIL_IMAGE_ORIGINAL_SIZE_LIMIT"] == '"1024"'

    again = _single(
        modules, "thumbnail_server.env_file", name=str(path), settings=settings, pillar=pillar
    )
    assert again["result"] is True
    assert again["changes"] == {}

    changed = copy.deepcopy(pillar)
    changed["thumbnail_server"]["secrets"]["db_password"] = "another-password"
    path.chmod(0o644)
    ret = _single(
        modules, "thumbnail_server.env_file", name=str(path), settings=settings, pillar=changed
    )
    assert ret["result"] is True, ret
    assert ret["changes"] == {
        str(path): {
            "old": {"SEAFILE_MYSQL_DB_PASSWORD": MASK},
            "new": {"SEAFILE_MYSQL_DB_PASSWORD": f"{MASK} (changed)"},
        },
        "mode": {"old": "0644", "new": "0600"},
    }
    assert "another-password" not in json.dumps(ret)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_env_file_state_refuses_bad_secrets_from_pillar(modules, tmp_path):
    pillar = _pillar(config_dir=str(tmp_path))
    settings = _settings(modules, pillar)
    bad = copy.deepcopy(pillar)
    bad["thumbnail_server"]["secrets"]["db_password"] = "two\nlines"
    path = tmp_path / "thumbnail-server.env"
    ret = _single(
        modules, "thumbnail_server.env_file", name=str(path), settings=settings, pillar=bad
    )
    assert ret["result"] is False
    assert (
        "thumbnail_server:secrets:db_password = <secret, 9 characters>: contains a line feed"
        in ret["comment"]
    )
    assert "two\nlines" not in ret["comment"]
    assert not path.exists()


@pytest.mark.skipif(not shutil.which("docker-compose"), reason="SKIPPED: docker-compose missing")
@pytest.mark.skipif(os.geteuid() != 0, reason="SKIPPED: the env file is chowned to root")
def test_docker_mode_compose_files_are_valid_for_compose(modules, tmp_path):
    """docker compose v1 (Debian's, no engine needed) validates and merges the compose
    file, the jemalloc override and the env file. The lab cannot run the image."""
    pillar = _docker_pillar(tmp_path)
    rendered = _render(modules, pillar)
    assert isinstance(rendered, dict), rendered
    assert JWT not in json.dumps(rendered)
    assert COMPOSE_PASSWORD not in json.dumps(rendered)
    compose_state = rendered["thumbnail-server-config-compose-file-managed"]
    compose_file = tmp_path / "thumbnail-server.yml"
    assert _arg(compose_state, "name") == str(compose_file)
    compose_file.write_text(_arg(compose_state, "contents"))
    (tmp_path / "nginx-sites").mkdir()

    jemalloc = rendered["thumbnail-server-config-jemalloc-compose_enabled"]
    override_file = tmp_path / "thumbnail-server.opskit-jemalloc.yml"
    assert _arg(jemalloc, "name") == str(override_file)
    assert _arg(jemalloc, "services") == ["thumbnail-server"]
    override = modules.jemalloc.compose_override(
        _arg(jemalloc, "services"), _arg(jemalloc, "malloc_conf")
    )
    override_file.write_text(yaml.safe_dump(override))

    (tmp_path / "etc").mkdir()
    settings = _arg(rendered["thumbnail-server-config-env-thumbnail_server-env_file"], "settings")
    env_file = tmp_path / "etc" / "thumbnail-server.env"
    ret = _single(
        modules, "thumbnail_server.env_file", name=str(env_file), settings=settings, pillar=pillar
    )
    assert ret["result"] is True, ret
    assert _env_lines(env_file)["SEAFILE_MYSQL_DB_PASSWORD"] == f"'{COMPOSE_PASSWORD}'"

    proc = subprocess.run(
        ["docker-compose", "-f", str(compose_file), "-f", str(override_file), "config"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr
    service = yaml.safe_load(proc.stdout)["services"]["thumbnail-server"]
    env = service["environment"]
    # compose's own parser reads the secrets back exactly (no interpolation, no escapes);
    # `config` prints a literal $ as $$.
    assert env["SEAFILE_MYSQL_DB_PASSWORD"].replace("$$", "$") == COMPOSE_PASSWORD
    assert env["JWT_PRIVATE_KEY"] == JWT
    assert env["THUMBNAIL_TASK_WORKERS"] == "32"
    assert env["THUMBNAIL_MEMORY_LIMIT"] == "4096"
    assert env["LD_PRELOAD"] == "/usr/local/lib/opskit/libjemalloc.so.2"
    assert env["MALLOC_CONF"] == "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0"
    assert service["image"] == "seafileltd/thumbnail-server:13.0.7"
    assert service["restart"] == "always"
    assert service["mem_limit"] == service["memswap_limit"] == "4096m"
    assert service["ports"] == ["127.0.0.1:8088:80/tcp"]
    assert "/opt/seafile-data:/shared:rw" in service["volumes"]
    assert f"{tmp_path}/nginx-sites:/etc/nginx/sites-enabled:ro" in service["volumes"]
    (library,) = [v for v in service["volumes"] if isinstance(v, dict)]
    assert library["target"] == "/usr/local/lib/opskit/libjemalloc.so.2"
    assert library["read_only"] is True
    assert library["type"] == "bind"


def test_systemd_mode_installs_pdf_and_video_tools_and_sets_pythonpath(modules, tmp_path):
    """poppler-utils and ffmpeg as upstream's image installs them (docker/Dockerfile);
    PYTHONPATH to the release's seafobj (docker/scripts/thumbnail-runit.sh)."""
    pillar = _pillar(config_dir=str(tmp_path), systemd={"packages": ["python3", "python3-pil"]})
    rendered = _render(modules, pillar)
    pkgs = _arg(rendered["thumbnail-server-package-pkgs-pkg-installed"], "pkgs")
    assert pkgs == ["python3", "python3-pil", "poppler-utils", "ffmpeg"]
    if os.geteuid() != 0:
        return  # the env file is chowned to root (the part above still ran)
    settings = _settings(modules, pillar)
    path = tmp_path / "thumbnail-server.env"
    ret = _single(
        modules, "thumbnail_server.env_file", name=str(path), settings=settings, pillar=pillar
    )
    assert ret["result"] is True, ret
    assert _env_lines(path)["PYTHONPATH"] == (
        '"/opt/seafile-thumbnail/current/seafile/lib/python3/site-packages"'
    )


def test_non_root_site_root_reaches_the_health_check_and_the_nginx_site(modules):
    """Under SITE_ROOT /seafile/ upstream answers /seafile/ping (http_request.py
    parse_url); the health state and the site's ping location follow it."""
    rendered = _render(modules, _pillar(seafile={"site_root": "/seafile/"}))
    health = rendered["thumbnail-server-service-health-thumbnail_server-healthy"]
    assert _arg(health, "url") == "http://127.0.0.1:8088/seafile/ping"
    site = [
        line.strip() for line in _contents(rendered, "nginx-site-thumbnail-server-file-managed")
    ]
    at = site.index("location = /seafile/thumbnail/ping {")
    assert site[at + 1] == "proxy_pass http://127.0.0.1:8088/seafile/ping;"
    assert "location = /thumbnail/ping {" not in site


def test_docker_mode_gives_the_containers_nginx_an_ipv4_backend(modules, tmp_path):
    """The image's own nginx site (docker/scripts/default) proxies to localhost:8088 in
    some revisions and keeps nginx's 60 s timeouts; the formula mounts its own."""
    rendered = _render(modules, _docker_pillar(tmp_path, nginx={"proxy_read_timeout": 600}))
    state = rendered["thumbnail-server-config-container-site-file-managed"]
    assert _arg(state, "name") == f"{tmp_path}/nginx-sites/default"
    site = [line.strip() for line in _arg(state, "contents").splitlines()]
    assert "proxy_pass http://127.0.0.1:8088;" in site
    assert "listen 80 default_server;" in site
    assert {"proxy_read_timeout 600s;", "proxy_send_timeout 300s;"} <= set(site)
    assert not [line for line in site if "localhost" in line and not line.startswith("#")]
    # A changed site recreates the container (its nginx reads the site when it starts).
    up = rendered["thumbnail-server-service-compose-running"]
    assert "thumbnail_server" in up
    assert {"file": "thumbnail-server-config-container-site-file-managed"} in _arg(up, "watch")


def test_docker_mode_without_jemalloc_removes_the_override(modules, tmp_path):
    rendered = _render(modules, _docker_pillar(tmp_path, jemalloc={"enabled": False}))
    assert "thumbnail-server-config-jemalloc-compose_disabled" in rendered
    settings = _arg(rendered["thumbnail-server-service-compose-running"], "settings")
    assert settings["docker"]["compose_argv"] == [
        "docker", "compose", "-p", "seafile-thumbnail", "-f", f"{tmp_path}/thumbnail-server.yml"
    ]  # fmt: skip


@pytest.fixture
def ping_server(health_endpoint):
    return health_endpoint("/ping", b"pong")


def test_healthy_passes_on_pong(modules, ping_server, testmode):
    ret = _single(
        modules,
        "thumbnail_server.healthy",
        name="thumbs",
        url=f"{ping_server}/ping",
        systemd=False,
        test=testmode,
    )
    assert ret["result"] is True, ret
    assert ret["changes"] == {}
    assert "answered 'pong'" in ret["comment"]


def test_healthy_fails_with_the_url_when_the_answer_is_wrong(modules, ping_server, testmode):
    url = f"{ping_server}/other"
    ret = _single(
        modules,
        "thumbnail_server.healthy",
        name="thumbs",
        url=url,
        timeout=1,
        systemd=False,
        test=testmode,
    )
    if testmode:
        assert ret["result"] is None
        assert "an apply would wait 1s" in ret["comment"]
    else:
        assert ret["result"] is False
        assert f"{url} did not answer 'pong' within 1s (last: status 404" in ret["comment"]
        assert "See docker logs thumbs" in ret["comment"]


def test_test_mode_on_a_host_without_the_unit_still_uses_jemalloc_enabled(modules):
    """On a new host (no thumbnail-server.service yet; this test host has none) test=True
    renders the same jemalloc.enabled state as a real run: predicting the drop-in for a
    unit that an earlier state would install is the state's job (tested on a real
    minion in tests/integration/test_jemalloc_lab.py)."""
    assert not os.path.exists("/etc/systemd/system/thumbnail-server.service")
    for test in (True, False):
        rendered = modules.state.show_sls("thumbnail-server", pillar=EXAMPLE, test=test)
        state = rendered["thumbnail-server-service-jemalloc"]
        assert "jemalloc" in state, state
        running = rendered["thumbnail-server-service-running-service-running"]
        assert {"jemalloc": "thumbnail-server-service-jemalloc"} in _arg(running, "require")


# --- issue 11: CMDB data is data --------------------------------------------------------
def _all_states(rendered: dict):
    for state_id, body in rendered.items():
        for module, args in body.items():
            if not module.startswith("__"):
                yield state_id, module, args


@pytest.mark.parametrize("value", ["/opt/x;touch /tmp/pwned", "/opt/x${IFS}y", "/opt/`id`"])
def test_hostile_docker_project_dir_is_refused_at_render(modules, tmp_path, value):
    """Item 4: docker:project_dir with ; or ${IFS} ran commands through cmd.run and its
    unless (also under test=True)."""
    pillar = _docker_pillar(tmp_path)
    pillar["thumbnail_server"]["docker"]["project_dir"] = value
    error = _render_error(modules, pillar)
    assert "thumbnail_server:docker:project_dir = " in error
    assert "may only use letters, digits and ._@+,=:~-" in error


@pytest.mark.parametrize("sls", ["thumbnail-server", "thumbnail-server.clean"])
@pytest.mark.parametrize("mode", ["systemd", "docker"])
def test_no_state_hands_a_shell_a_command_or_a_condition(modules, tmp_path, sls, mode):
    """Commands are argv lists or module calls; unless/onlyif are module calls, never
    shell strings."""
    pillar = _docker_pillar(tmp_path) if mode == "docker" else _pillar()
    rendered = _render(modules, pillar, sls)
    assert isinstance(rendered, dict), rendered
    for state_id, module, args in _all_states(rendered):
        assert module != "cmd", state_id
        for arg in args:
            if not isinstance(arg, dict):
                continue
            for key in ("unless", "onlyif"):
                for condition in arg.get(key, []):
                    assert isinstance(condition, dict), (state_id, key)
                    assert "fun" in condition, (state_id, key)
            if "cmd.run_all" in arg:
                call = {k: v for item in arg["cmd.run_all"] for k, v in item.items()}
                assert isinstance(call["cmd"], list), state_id
                assert call["python_shell"] is False, state_id


@pytest.mark.parametrize(
    ("nginx", "key"),
    [
        ({"access_log": "/var/log/nginx/x.log\tinfo;\treturn\t200"}, "access_log"),
        ({"error_log": "/var/log/nginx/x.log;internal"}, "error_log"),
        ({"server_name": ["x.example.org;internal"]}, "server_name:0"),
    ],
)
def test_nginx_values_cannot_add_directives(modules, nginx, key):
    """Item 7 (thumbnail side): nginx:access_log with tabs became extra directives."""
    error = _render_error(modules, _pillar(nginx=nginx))
    assert f"thumbnail_server:nginx:{key} = " in error


@pytest.mark.skipif(os.geteuid() != 0, reason="SKIPPED: the env file is chowned to root")
def test_env_values_from_pillar_never_show_in_clear(modules, tmp_path, testmode):
    """Item 8: thumbnail env values (SEAFILE_ADMIN_PASSWORD) showed in clear in changes.
    Every pillar env value is treated as a secret: masked in changes, absent from the
    rendered states (the state reads it from pillar on the minion)."""
    admin = "adm1n-pa55-from-cmdb"
    pillar = _pillar(
        config_dir=str(tmp_path), env={"SEAFILE_ADMIN_PASSWORD": admin, "NON_ROOT": True}
    )
    rendered = _render(modules, pillar)
    assert admin not in json.dumps(rendered)
    settings = _arg(rendered["thumbnail-server-config-env-thumbnail_server-env_file"], "settings")
    assert settings["env_names"] == ["NON_ROOT", "SEAFILE_ADMIN_PASSWORD"]
    path = tmp_path / "thumbnail-server.env"
    ret = _single(
        modules,
        "thumbnail_server.env_file",
        name=str(path),
        settings=settings,
        test=testmode,
        pillar=pillar,
    )
    assert admin not in json.dumps(ret)
    new = ret["changes"][str(path)]["new"]
    assert new["SEAFILE_ADMIN_PASSWORD"] == new["NON_ROOT"] == MASK
    assert new["THUMBNAIL_TASK_WORKERS"] == "32"  # the formula's own values stay readable
    if testmode:
        assert not path.exists()
        return
    assert _env_lines(path)["SEAFILE_ADMIN_PASSWORD"] == f'"{admin}"'
    changed = copy.deepcopy(pillar)
    changed["thumbnail_server"]["env"]["SEAFILE_ADMIN_PASSWORD"] = "an0ther-pa55"
    ret = _single(
        modules, "thumbnail_server.env_file", name=str(path), settings=settings, pillar=changed
    )
    assert ret["result"] is True, ret
    assert ret["changes"][str(path)] == {
        "old": {"SEAFILE_ADMIN_PASSWORD": MASK},
        "new": {"SEAFILE_ADMIN_PASSWORD": f"{MASK} (changed)"},
    }
    assert "an0ther-pa55" not in json.dumps(ret)
    # A hostile value in pillar is refused by the state too, masked.
    bad = copy.deepcopy(pillar)
    bad["thumbnail_server"]["env"]["SEAFILE_ADMIN_PASSWORD"] = "x\nINJECTED=1"
    ret = _single(
        modules, "thumbnail_server.env_file", name=str(path), settings=settings, pillar=bad
    )
    assert ret["result"] is False
    assert "thumbnail_server:env:SEAFILE_ADMIN_PASSWORD = <secret, 12 characters>" in ret["comment"]
    assert "INJECTED" not in ret["comment"]


@pytest.mark.skipif(os.geteuid() != 0, reason="SKIPPED: the directory is chowned to root")
def test_config_dir_is_a_directory_of_its_own(modules, tmp_path, testmode):
    """Item 9: config_dir / or /etc was accepted and chmod'ed 0700 root. The schema
    refuses system directories at render; the state refuses any directory that already
    holds other files instead of locking it away from its users."""
    error = _render_error(modules, _pillar(config_dir="/etc"))
    assert "thumbnail_server:config_dir = '/etc': is a system directory" in error
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    (shared / "ssh_config").write_text("Host *\n")
    ret = _single(modules, "thumbnail_server.config_dir", name=str(shared), test=testmode)
    assert ret["result"] is False
    assert "already holds other files (ssh_config)" in ret["comment"]
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755
    fresh = tmp_path / "etc" / "seafile-thumbnail"
    ret = _single(modules, "thumbnail_server.config_dir", name=str(fresh), test=testmode)
    if testmode:
        assert ret["result"] is None
        assert not fresh.exists()
        return
    assert ret["result"] is True, ret
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    (fresh / "thumbnail-server.env").write_text("")
    again = _single(modules, "thumbnail_server.config_dir", name=str(fresh))
    assert (again["result"], again["changes"]) == (True, {})
