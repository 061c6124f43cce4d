"""From exporter options to units and files (_utils/opskit_exporter_plan.py): where each
secret goes, with which mode and owner, and how bad options are refused."""

from __future__ import annotations

import os
import re
import stat

import opskit_exporter_host as host
import opskit_exporter_plan as plan
import opskit_exporter_templates as templates
import pytest
import yaml
from opskit_schema import SettingsError

from tests.conftest import REPO

RENDERER = templates.Renderer(templates.file_loader(REPO / "salt/exporters/files/default"))

REDIS_PASSWORD = "r3dis-Pa$$word%"
PG_PASSWORD = "pg/pass@word"
BCRYPT = "$2y$10$" + "b" * 53


def build(name, **options):
    return plan.build(name, options, "x86_64", RENDERER)


def redis_tls():
    return build(
        "redis_exporter",
        version="1.80.2",
        redis={
            "addr": "rediss://db1.example.com:6380",
            "password": REDIS_PASSWORD,
            "tls": {"ca": "/etc/ssl/ca.pem", "cert": "/etc/ssl/c.pem", "key": "/etc/ssl/c.key"},
        },
        web={"basic_auth_users": {"prometheus": BCRYPT}},
    )


def postgres():
    return build(
        "postgres_exporter",
        version="0.17.1",
        postgres={
            "host": "db1.example.com",
            "user": "exporter",
            "password": PG_PASSWORD,
            "sslmode": "verify-full",
            "sslrootcert": "/etc/ssl/ca.pem",
            "sslcert": "/etc/ssl/c.pem",
            "sslkey": "/etc/ssl/c.key",
            "server_major": 17,
        },
        web={
            "basic_auth_users": {"prometheus": BCRYPT},
            "tls": {"cert": "/etc/ssl/w.pem", "key": "/etc/ssl/w.key"},
        },
    )


def files(desired):
    return {f.path: f for f in desired.files}


def test_redis_secrets_go_to_a_private_env_file_owned_by_the_exporter():
    desired = redis_tls()
    env = files(desired)["/etc/opskit/exporters/redis_exporter/env"]
    assert (env.mode, env.owner, env.group, env.secret) == (
        0o600,
        "redis_exporter",
        "redis_exporter",
        True,
    )
    assert 'REDIS_PASSWORD="r3dis-Pa\\$\\$word%"' in env.content
    assert "REDIS_EXPORTER_BASIC_AUTH_USERNAME=" in env.content
    assert BCRYPT.replace("$", "\\$") in env.content
    for secret in (REDIS_PASSWORD, BCRYPT, "r3dis-Pa"):
        assert secret not in desired.unit
    assert "EnvironmentFile=/etc/opskit/exporters/redis_exporter/env" in desired.unit
    assert 'Environment="REDIS_ADDR=rediss://db1.example.com:6380"' in desired.unit
    assert "LoadCredential=redis-client.key:/etc/ssl/c.key" in desired.unit
    assert "--tls-client-key-file=%d/redis-client.key" in desired.unit
    assert set(desired.secrets) >= {REDIS_PASSWORD, BCRYPT}


def test_postgres_dsn_and_web_config_are_private_and_tls_files_are_credentials():
    desired = postgres()
    env = files(desired)["/etc/opskit/exporters/postgres_exporter/env"]
    assert (env.mode, env.owner) == (0o600, "postgres_exporter")
    assert (
        'DATA_SOURCE_NAME="postgresql://exporter:pg%2Fpass%40word@db1.example.com:5432/'
        'postgres?sslmode=verify-full"'
    ) in env.content
    web = files(desired)["/etc/opskit/exporters/postgres_exporter/web-config.yml"]
    assert (web.mode, web.owner, web.secret) == (0o600, "postgres_exporter", True)
    credentials = "/run/credentials/postgres_exporter.service"
    config = yaml.safe_load(web.content)
    assert config["tls_server_config"]["cert_file"] == f"{credentials}/web-tls.crt"
    assert config["basic_auth_users"] == {"prometheus": BCRYPT}
    assert BCRYPT in web.content
    unit = desired.unit
    assert PG_PASSWORD not in unit
    assert "pg%2Fpass" not in unit
    assert BCRYPT not in unit
    assert '\nEnvironment="PGSSLKEY=%d/postgres-client.key"\n' in unit
    assert '\nEnvironment="PGSSLROOTCERT=%d/postgres-ca.crt"\n' in unit
    assert "\nLoadCredential=web-tls.key:/etc/ssl/w.key\n" in unit
    assert "--web.config.file=/etc/opskit/exporters/postgres_exporter/web-config.yml" in unit
    assert desired.scheme == "https"
    assert desired.basic_auth


def test_public_view_hides_secret_contents():
    shown = postgres().public()
    assert "<secret: hidden>" in str(shown)
    assert PG_PASSWORD not in str(shown)
    assert "pg%2Fpass" not in str(shown)


def test_defaults_without_secrets_write_no_env_file():
    desired = build("node_exporter", version="1.8.2")
    assert desired.files == []
    assert "EnvironmentFile" not in desired.unit
    assert (
        "--collector.textfile.directory=/var/lib/node_exporter/textfile_collector" in desired.unit
    )
    assert "--web.listen-address=:9100" in desired.unit
    assert desired.exec_path == "/opt/opskit/exporters/node_exporter/current/node_exporter"
    off = build("node_exporter", version="1.8.2", textfile_directory=False)
    assert "textfile" not in off.unit


def test_package_source_runs_the_package_binary():
    desired = build("nginx_exporter", source="package")
    assert desired.release is None
    assert desired.exec_path == "/usr/bin/prometheus-nginx-exporter"
    assert "--nginx.scrape-uri=http://127.0.0.1:8080/stub_status" in desired.unit
    assert desired.stub_status.path == "/etc/nginx/conf.d/opskit-nginx-exporter-stub-status.conf"
    assert "After=network-online.target nginx.service" in desired.unit


def test_user_env_is_treated_as_secret():
    desired = build("node_exporter", version="1.8.2", env={"HTTPS_PROXY": "http://u:pw@proxy:3128"})
    env = files(desired)["/etc/opskit/exporters/node_exporter/env"]
    assert env.secret
    assert "u:pw" not in desired.unit


# Values the schema refuses (opskit_settings_exporters): SettingsError naming the key path.
@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("node_exporter", {"version": "1.8.2", "colour": "red"}, "colour = 'red': unknown key"),
        ("node_exporter", {"version": "1.8.2", "source": "git"}, "source = 'git': must be one of"),
        ("node_exporter", {"version": "1.8.2", "listen_address": ":99999"}, "listen_address"),
        ("node_exporter", {"version": "1.8.2", "base_url": "ftp://m"}, "base_url = <secret"),
        (
            "node_exporter",
            {"version": "1.8.2", "sha256": "abc"},
            "sha256 = 'abc': must be a sha256",
        ),
        ("node_exporter", {"version": "1.8.2", "verify_timeout": 0}, "verify_timeout = 0"),
        (
            "node_exporter",
            {"version": "1.8.2", "textfile_directory": "rel/dir"},
            "textfile_directory = 'rel/dir': must be an absolute path",
        ),
        (
            "node_exporter",
            {"version": "1.8.2", "textfile_directory": "/etc"},
            "textfile_directory = '/etc': is a system directory",
        ),
        (
            "node_exporter",
            {"version": "1.8.2", "web": {"basic_auth_users": {"a": "plain"}}},
            "web:basic_auth_users:a = <secret, 5 characters>: must be a bcrypt hash",
        ),
        (
            "redis_exporter",
            {"version": "1.67.0", "redis": {"addr": "redis://:pw@db:6379"}},
            "redis:addr = 'redis://:pw@db:6379': must be a URL (redis, rediss)",
        ),
        (
            "postgres_exporter",
            {"version": "0.17.1", "postgres": {"user": "e", "sslmode": "maybe"}},
            "postgres:sslmode = 'maybe': must be one of",
        ),
        (
            "dcgm_exporter",
            {"version": "4.1.1", "source": "package"},
            "version = '4.1.1': must be an exact release version like 4.5.3-4.8.2",
        ),
        (
            "dcgm_exporter",
            {
                "version": "4.1.1-4.0.4",
                "source": "package",
                "dcgm": {"repo": {"manage": False}, "packages": "all of them"},
            },
            "dcgm:packages = 'all of them': must be a list",
        ),
        ("redis_exporter", {"version": "1.67.0", "redis": "db:6379"}, "redis = 'db:6379'"),
        (
            "redis_exporter",
            {"version": "1.67.0", "redis": {"user": "exporter\rExecStartPre=+/bin/sh"}},
            "redis:user = 'exporter\\rExecStartPre=+/bin/sh': contains a carriage return",
        ),
    ],
)
def test_bad_values_are_refused_by_key_path(name, options, message):
    with pytest.raises(SettingsError) as err:
        plan.build(name, options, "x86_64")
    assert f"exporters:{name}:{message}" in str(err.value)


# Rules across options (the plan's own): ValueError naming the exporter and the option.
@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("node_exporter", {}, "version is required with source: archive"),
        ("node_exporter", {"version": "1.4.0", "web": {"basic_auth_users": {"a": BCRYPT}}}, None),
        (
            "node_exporter",
            {"version": "0.18.1", "web": {"basic_auth_users": {"a": BCRYPT}}},
            "cannot serve TLS or basic auth",
        ),
        (
            "redis_exporter",
            {"version": "1.45.0", "web": {"basic_auth_users": {"a": BCRYPT}}},
            "from 1.80.2",
        ),
        (
            "redis_exporter",
            {"version": "1.67.0", "redis": {"addr": "redis://db:6379", "tls": {"ca": "/c"}}},
            "needs redis.addr to use rediss://",
        ),
        (
            "redis_exporter",
            {"version": "1.67.0", "flags": {"redis.password": "x"}},
            "would put a secret into the process's arguments",
        ),
        (
            "postgres_exporter",
            {"version": "0.16.0", "postgres": {"user": "e", "server_major": 17}},
            "Use postgres_exporter 0.17.0 or newer",
        ),
        ("postgres_exporter", {"version": "0.17.1", "postgres": {}}, "postgres.user is required"),
        (
            "postgres_exporter",
            {"version": "0.17.1", "postgres": {"dsn": "postgresql://x", "host": "h"}},
            "either postgres.dsn or",
        ),
        (
            "nginx_exporter",
            {"version": "1.4.0", "nginx": {"stub_status": False}},
            "set nginx.scrape_uri",
        ),
        (
            "dcgm_exporter",
            {"version": "4.1.1-4.0.4", "source": "package", "dcgm": {"dcgm_version": "4.2.3"}},
            "built for DCGM 4.1.1",
        ),
        (
            "dcgm_exporter",
            {"version": "4.1.1-4.0.4", "source": "package"},
            "NVIDIA's repository needs dcgm.repo.keyring_source",
        ),
        (
            "dcgm_exporter",
            {"version": "4.1.1-4.0.4", "source": "package", "dcgm": {"repo": {"manage": False}}},
            None,
        ),
        ("gpu_exporter", {}, "unknown exporter 'gpu_exporter'; opskit knows"),
    ],
)
def test_bad_options_are_refused_with_the_exporter_and_option_named(name, options, message):
    if message is None:
        build(name, **options)  # accepted (e.g. node_exporter 1.4.0 has --web.config)
        return
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan.build(name, options, "x86_64")


def test_redis_exporter_on_an_arm_core_it_has_no_build_for():
    with pytest.raises(ValueError, match="no build for CPU architecture 'armv6l'"):
        plan.build("redis_exporter", {"version": "1.67.0"}, "armv6l")
    desired = plan.build(
        "redis_exporter", {"version": "1.67.0", "source": "package"}, "armv6l", RENDERER
    )
    assert desired.source == "package"


def test_write_file_is_private_from_the_start_and_owned_as_asked(tmp_path):
    """The file exists with its final mode and owner before any secret byte is in it,
    and a re-write replaces it in one rename (no half-written file is ever visible)."""
    target = tmp_path / "etc" / "env"
    uid = 65534 if os.geteuid() == 0 else os.geteuid()  # nobody, when we may chown
    gid = 65534 if os.geteuid() == 0 else os.getegid()
    host.write_file(str(target), "SECRET=1\n", 0o600, uid, gid)
    info = target.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert (info.st_uid, info.st_gid) == (uid, gid)
    inode = info.st_ino
    host.write_file(str(target), "SECRET=2\n", 0o640, uid, gid)
    assert target.read_text() == "SECRET=2\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert target.stat().st_ino != inode
    assert sorted(p.name for p in target.parent.iterdir()) == ["env"]


def test_write_file_leaves_nothing_when_it_fails(tmp_path):
    target = tmp_path / "env"
    target.write_text("OLD=1\n")
    with pytest.raises(TypeError):
        host.write_file(str(target), object(), 0o600, os.geteuid(), os.getegid())
    assert target.read_text() == "OLD=1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["env"]


def test_old_postgres_majors_are_named_as_postgresql_names_them():
    options = {"user": "e", "server_major": "9.6"}
    desired = build("postgres_exporter", version="0.13.0", postgres=options)
    assert desired.postgres_major == "9.6"
    assert "up to 0.12.1" in desired.warnings[0]
    assert build("postgres_exporter", version="0.11.1", postgres=options).warnings == []
    yaml_float = {"user": "e", "server_major": 9.6}  # what YAML makes of 9.6
    assert build("postgres_exporter", version="0.11.1", postgres=yaml_float).postgres_major == "9.6"
    with pytest.raises(ValueError, match=r"postgres_exporter: .*PostgreSQL 9\.3.*needs 9\.4"):
        build("postgres_exporter", version="0.11.1", postgres={"user": "e", "server_major": "9.3"})


@pytest.mark.parametrize(
    ("short_version", "major"), [("9.6.24", "9.6"), ("15.4", "15"), ("10.23", "10")]
)
def test_the_running_servers_major_is_read_as_postgresql_names_it(short_version, major):
    import opskit_exporter_probe as probe

    body = f'pg_static{{server="db:5432",short_version="{short_version}",version="x"}} 1\n'
    assert probe.postgres_server_major(body) == major


# What each redis_exporter release understands (oliver006/redis_exporter main.go at the
# tags named; an older release exits on the unknown flag, or ignores REDIS_USER).
@pytest.mark.parametrize(
    ("options", "first"),
    [
        ({"redis": {"addr": "rediss://db:6380", "tls": {"ca": "/etc/ca.pem"}}}, "1.8.0"),
        ({"redis": {"addr": "redis://db:6379", "user": "exporter"}}, "1.7.0"),
        ({"web": {"tls": {"cert": "/c", "key": "/k"}}}, "1.9.0"),
        ({"web": {"tls": {"cert": "/c", "key": "/k", "client_ca": "/ca"}}}, "1.33.0"),
        ({"web": {"basic_auth_users": {"p": BCRYPT}}}, "1.80.2"),
    ],
)
def test_redis_exporter_options_need_the_release_that_has_them(options, first):
    major, minor, _patch = (int(p) for p in first.split("."))
    older = f"{major}.{minor - 1}.0" if minor else f"{major - 1}.99.0"
    with pytest.raises(ValueError, match=rf"{older} does not support .* from {first} on"):
        build("redis_exporter", version=older, **options)
    build("redis_exporter", version=first, **options)


# dcgm-exporter archives ----------------------------------------------------------------
DCGM_TAG = "4.5.3-4.8.2"


def dcgm_archive_build(**options):
    dcgm = {"repo": {"manage": False}, **options.pop("dcgm", {})}
    return build("dcgm_exporter", version=DCGM_TAG, base_url="http://m", dcgm=dcgm, **options)


def test_dcgm_exporter_archives_follow_upstreams_layout():
    """NVIDIA/dcgm-exporter Makefile, target package-build (read at 4.5.3-4.8.2)."""
    rel = dcgm_archive_build().release
    assert rel.asset == "dcgm_exporter-linux-x86-64-4.8.2.tar.gz"
    assert rel.asset_url == (
        "http://m/NVIDIA/dcgm-exporter/releases/download/4.5.3-4.8.2/"
        "dcgm_exporter-linux-x86-64-4.8.2.tar.gz"
    )
    assert rel.member == "dcgm_exporter/usr/bin/dcgm-exporter"
    arm = plan.build(
        "dcgm_exporter",
        {"version": DCGM_TAG, "base_url": "http://m", "dcgm": {"repo": {"manage": False}}},
        "aarch64",
    )
    assert arm.release.asset == "dcgm_exporter-linux-sbsa-4.8.2.tar.gz"


def test_an_archive_install_points_dcgm_exporter_at_its_own_collectors_file():
    unit = dcgm_archive_build().unit
    csv = "/opt/opskit/exporters/dcgm_exporter/current/etc/dcgm-exporter/default-counters.csv"
    assert f"--collectors={csv}" in unit
    own = dcgm_archive_build(dcgm={"collectors": "/etc/site/counters.csv"}).unit
    assert "--collectors=/etc/site/counters.csv" in own
    assert csv not in own
    package = build(
        "dcgm_exporter", version=DCGM_TAG, source="package", dcgm={"repo": {"manage": False}}
    )
    assert "--collectors" not in package.unit  # the package installs /etc/dcgm-exporter/


def test_unpacking_upstreams_dcgm_archive_installs_binary_and_collectors(tmp_path, monkeypatch):
    """The lab mirror's dcgm-exporter stand-in is built in upstream's layout
    (tests/lab/artifacts.py); opskit's unpack takes the binary and the default
    collectors CSV out of it into the versioned directory."""
    import opskit_exporter_fetch as fetch

    from tests.lab import artifacts

    monkeypatch.setattr(plan, "INSTALL_ROOT", str(tmp_path / "opt"))
    asset, tarball = artifacts.dcgm_standin_archive(DCGM_TAG)
    desired = dcgm_archive_build()
    assert asset == desired.release.asset
    archive = tmp_path / asset
    archive.write_bytes(tarball)
    minion = host.Host({}, "unit-test", str(tmp_path / "state"))
    final, binary_sha, files_sha = fetch.unpack(minion, desired, archive)
    assert final == tmp_path / "opt" / "dcgm_exporter" / "4.5.3-4.8.2.linux-x86-64"
    binary = final / "dcgm-exporter"
    assert stat.S_IMODE(binary.stat().st_mode) == 0o755
    assert binary_sha == fetch.sha256_file(binary)
    collectors = final / "etc" / "dcgm-exporter" / "default-counters.csv"
    assert collectors.read_text().startswith("# Format\n")
    assert stat.S_IMODE(collectors.stat().st_mode) == 0o644
    assert files_sha == {"etc/dcgm-exporter/default-counters.csv": fetch.sha256_file(collectors)}


# A mirror with another URL layout -----------------------------------------------------
def test_a_mirror_with_another_url_layout():
    artifactory = "https://repo.example/artifactory/exporters/{name}/{version}/{file}"
    rel = build("node_exporter", version="1.8.2", url_template=artifactory).release
    assert rel.asset_url == (
        "https://repo.example/artifactory/exporters/node_exporter/1.8.2/"
        "node_exporter-1.8.2.linux-amd64.tar.gz"
    )
    assert rel.checksums_url == (
        "https://repo.example/artifactory/exporters/node_exporter/1.8.2/sha256sums.txt"
    )
    flat = "{base_url}/{owner}/{repository}/{tag}/{file}"
    rel = build("redis_exporter", version="1.45.0", base_url="http://m/", url_template=flat).release
    assert rel.asset_url == (
        "http://m/oliver006/redis_exporter/v1.45.0/redis_exporter-v1.45.0.linux-amd64.tar.gz"
    )
    dcgm = dcgm_archive_build(
        url_template="http://nv.example/dcgm/{exporter_version}/{arch}/{file}"
    )
    assert dcgm.release.asset_url == (
        "http://nv.example/dcgm/4.8.2/x86-64/dcgm_exporter-linux-x86-64-4.8.2.tar.gz"
    )


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("https://m/{name}/{version}", "must contain {file}"),
        ("https://m/{name}/{colour}/{file}", "{colour} is not a placeholder"),
        ("https://m/{file.__class__}", "is not a placeholder"),
        ("https://m/{file!r}", "is not a placeholder"),
        ("https://m/{file:>10}", "is not a placeholder"),
        ("https://m/{file", "url_template"),
        ("ftp://m/{file}", "url_template = <secret, 14 characters>: must be an http(s) URL"),
        ("{base_url}/{file}", "set base_url"),
        ("https://m/{file}\n", "contains a line feed"),
    ],
)
def test_url_templates_are_checked(template, message):
    options = {"version": DCGM_TAG, "dcgm": {"repo": {"manage": False}}, "url_template": template}
    with pytest.raises((ValueError, SettingsError), match=re.escape(message)):
        plan.build("dcgm_exporter", options, "x86_64")


# nginx_exporter and unix sockets ---------------------------------------------------------
# nginx-prometheus-exporter's parseUnixSocketAddress (exporter.go, read at v0.11.0 and
# v1.5.3): "unix:<socket path>:<request path>", first in v0.5.0.
def test_nginx_exporter_scrapes_a_unix_socket():
    nginx = {"stub_status": False, "scrape_uri": "unix:/run/nginx/status.sock:/basic_status"}
    desired = build("nginx_exporter", version="1.4.0", nginx=nginx)
    assert "--nginx.scrape-uri=unix:/run/nginx/status.sock:/basic_status" in desired.unit
    old = build("nginx_exporter", version="0.5.0", nginx=nginx)
    assert "--nginx.scrape-uri=unix:/run/nginx/status.sock:/basic_status" in old.unit
    with pytest.raises(ValueError, match=r"0\.4\.0 does not support nginx\.scrape_uri\.unix"):
        build("nginx_exporter", version="0.4.0", nginx=nginx)


def test_a_stub_status_block_on_a_unix_socket_is_scraped_through_it():
    nginx = {"stub_status": {"listen": "unix:/run/opskit-nginx-status.sock"}}
    desired = build("nginx_exporter", version="0.11.0", nginx=nginx)
    assert "--nginx.scrape-uri=unix:/run/opskit-nginx-status.sock:/stub_status" in desired.unit
    conf = desired.stub_status.content
    assert "    listen unix:/run/opskit-nginx-status.sock;\n" in conf
    # nginx's access module matches a unix socket's clients with "unix:" only
    assert "        allow unix:;\n        deny all;\n" in conf


@pytest.mark.parametrize(
    "uri",
    [
        "unix:/run/nginx.sock",  # no request path: upstream would fetch http://unix
        "unix:relative.sock:/stub_status",
        "unix:/run/a:b.sock:/stub_status",
        "unix:/run/nginx.sock:stub_status",
        "unix:/run/nginx.sock:/stub status",
        "unix:/run/../etc/x.sock:/stub_status",
    ],
)
def test_unix_scrape_uris_upstream_would_misread_are_refused(uri):
    with pytest.raises(SettingsError, match=r"exporters:nginx_exporter:nginx:scrape_uri = "):
        build("nginx_exporter", version="1.4.0", nginx={"stub_status": False, "scrape_uri": uri})


def test_scrape_uri_credentials_go_to_the_private_environment_file():
    """Issue 11 item 8: nginx-prometheus-exporter reads SCRAPE_URI from its environment
    (exporter.go: getEnv("SCRAPE_URI") at v0.11.0, kingpin .Envar("SCRAPE_URI") at
    v1.5.3), so a URI with credentials goes to the 0600 file, not into ExecStart."""
    uri = "http://scraper:scrape-pw@127.0.0.1:8080/stub_status"
    desired = build("nginx_exporter", version="1.4.0", nginx={"scrape_uri": uri})
    assert "scrape-pw" not in desired.unit
    assert "--nginx.scrape-uri" not in desired.unit
    env = files(desired)["/etc/opskit/exporters/nginx_exporter/env"]
    assert (env.mode, env.secret) == (0o600, True)
    assert f'SCRAPE_URI="{uri}"' in env.content
    assert uri in desired.secrets
    plain = build("nginx_exporter", version="1.4.0", nginx={"scrape_uri": "http://h/stub"})
    assert "--nginx.scrape-uri=http://h/stub" in plain.unit
