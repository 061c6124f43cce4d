"""The exporter catalog and the pure logic around it (_utils/opskit_exporter_catalog.py,
and the checksum, option, quoting and NVIDIA helpers of the other exporter modules).

Expected asset names are written out by hand from each upstream project's build
configuration (promu's tarball naming, redis_exporter's packaging script, goreleaser's
default archive template), not computed with the catalog's templates.
"""

from __future__ import annotations

import hashlib

import opskit_exporter_catalog as catalog
import opskit_exporter_dcgm as dcgm
import opskit_exporter_fetch as fetch
import opskit_exporter_options as opts
import opskit_exporter_plan as plan
import opskit_exporter_templates as templates
import pytest
import yaml
from opskit_schema import SettingsError

from tests.conftest import REPO

RENDERER = templates.Renderer(templates.file_loader(REPO / "salt/exporters/files/default"))

VERSIONS = {
    "node_exporter": "1.8.2",
    "redis_exporter": "1.67.0",
    "postgres_exporter": "0.17.1",
    "nginx_exporter": "1.4.0",
    "dcgm_exporter": "4.1.1-4.0.4",
}

# (exporter, machine) -> asset file name, or None where upstream publishes no build.
ASSETS = {
    ("node_exporter", "x86_64"): "node_exporter-1.8.2.linux-amd64.tar.gz",
    ("node_exporter", "aarch64"): "node_exporter-1.8.2.linux-arm64.tar.gz",
    ("node_exporter", "armv7l"): "node_exporter-1.8.2.linux-armv7.tar.gz",
    ("node_exporter", "armv6l"): "node_exporter-1.8.2.linux-armv6.tar.gz",
    ("node_exporter", "i686"): "node_exporter-1.8.2.linux-386.tar.gz",
    ("node_exporter", "ppc64le"): "node_exporter-1.8.2.linux-ppc64le.tar.gz",
    ("node_exporter", "s390x"): "node_exporter-1.8.2.linux-s390x.tar.gz",
    ("node_exporter", "riscv64"): "node_exporter-1.8.2.linux-riscv64.tar.gz",
    ("redis_exporter", "x86_64"): "redis_exporter-v1.67.0.linux-amd64.tar.gz",
    ("redis_exporter", "aarch64"): "redis_exporter-v1.67.0.linux-arm64.tar.gz",
    ("redis_exporter", "armv7l"): "redis_exporter-v1.67.0.linux-arm.tar.gz",
    ("redis_exporter", "armv6l"): None,
    ("redis_exporter", "i686"): "redis_exporter-v1.67.0.linux-386.tar.gz",
    ("redis_exporter", "ppc64le"): "redis_exporter-v1.67.0.linux-ppc64le.tar.gz",
    ("redis_exporter", "s390x"): "redis_exporter-v1.67.0.linux-s390x.tar.gz",
    ("redis_exporter", "riscv64"): None,
    ("postgres_exporter", "x86_64"): "postgres_exporter-0.17.1.linux-amd64.tar.gz",
    ("postgres_exporter", "aarch64"): "postgres_exporter-0.17.1.linux-arm64.tar.gz",
    ("postgres_exporter", "armv7l"): "postgres_exporter-0.17.1.linux-armv7.tar.gz",
    ("postgres_exporter", "armv6l"): "postgres_exporter-0.17.1.linux-armv6.tar.gz",
    ("postgres_exporter", "i686"): "postgres_exporter-0.17.1.linux-386.tar.gz",
    ("postgres_exporter", "ppc64le"): "postgres_exporter-0.17.1.linux-ppc64le.tar.gz",
    ("postgres_exporter", "s390x"): "postgres_exporter-0.17.1.linux-s390x.tar.gz",
    ("postgres_exporter", "riscv64"): "postgres_exporter-0.17.1.linux-riscv64.tar.gz",
    ("nginx_exporter", "x86_64"): "nginx-prometheus-exporter_1.4.0_linux_amd64.tar.gz",
    ("nginx_exporter", "aarch64"): "nginx-prometheus-exporter_1.4.0_linux_arm64.tar.gz",
    ("nginx_exporter", "armv7l"): "nginx-prometheus-exporter_1.4.0_linux_armv7.tar.gz",
    ("nginx_exporter", "armv6l"): "nginx-prometheus-exporter_1.4.0_linux_armv6.tar.gz",
    ("nginx_exporter", "i686"): "nginx-prometheus-exporter_1.4.0_linux_386.tar.gz",
    ("nginx_exporter", "ppc64le"): "nginx-prometheus-exporter_1.4.0_linux_ppc64le.tar.gz",
    ("nginx_exporter", "s390x"): "nginx-prometheus-exporter_1.4.0_linux_s390x.tar.gz",
    ("nginx_exporter", "riscv64"): "nginx-prometheus-exporter_1.4.0_linux_riscv64.tar.gz",
    # NVIDIA/dcgm-exporter Makefile, target package-build: the exporter's own version.
    ("dcgm_exporter", "x86_64"): "dcgm_exporter-linux-x86-64-4.0.4.tar.gz",
    ("dcgm_exporter", "aarch64"): "dcgm_exporter-linux-sbsa-4.0.4.tar.gz",
    ("dcgm_exporter", "armv7l"): None,
    ("dcgm_exporter", "armv6l"): None,
    ("dcgm_exporter", "i686"): None,
    ("dcgm_exporter", "ppc64le"): None,
    ("dcgm_exporter", "s390x"): None,
    ("dcgm_exporter", "riscv64"): None,
}


def test_the_table_covers_every_exporter_and_machine():
    machines = {machine for _, machine in ASSETS}
    assert {name for name, _ in ASSETS} == set(catalog.CATALOG)
    assert len(ASSETS) == len(catalog.CATALOG) * len(machines)


@pytest.mark.parametrize(("name", "machine"), sorted(ASSETS))
def test_asset_names_follow_upstream(name, machine):
    expected = ASSETS[(name, machine)]
    exporter = catalog.CATALOG[name]
    if expected is None:
        with pytest.raises(ValueError, match=f"no build for CPU architecture '{machine}'"):
            catalog.release(exporter, VERSIONS[name], machine, "https://mirror.example")
        return
    rel = catalog.release(exporter, VERSIONS[name], machine, "https://mirror.example")
    assert rel.asset == expected


# nginx-prometheus-exporter per release (nginx/nginx-prometheus-exporter at the tags
# named): the Makefile's `release` target up to v0.8.0 (amd64 and i386 only, named
# nginx-prometheus-exporter-<version>-linux-<arch>.tar.gz); .goreleaser.yml from v0.9.0
# (386, amd64, arm v5/v6/v7, arm64, ppc64le, mips64le, s390x); v1.4.0 added mips64,
# ppc64 and riscv64.
@pytest.mark.parametrize(
    ("version", "machine", "asset"),
    [
        ("0.8.0", "x86_64", "nginx-prometheus-exporter-0.8.0-linux-amd64.tar.gz"),
        ("0.8.0", "i686", "nginx-prometheus-exporter-0.8.0-linux-i386.tar.gz"),
        ("0.8.0", "aarch64", None),
        ("0.9.0", "aarch64", "nginx-prometheus-exporter_0.9.0_linux_arm64.tar.gz"),
        ("0.11.0", "armv7l", "nginx-prometheus-exporter_0.11.0_linux_armv7.tar.gz"),
        ("0.11.0", "riscv64", None),
        ("1.3.0", "riscv64", None),
        ("1.3.0", "ppc64", None),
        ("1.3.0", "s390x", "nginx-prometheus-exporter_1.3.0_linux_s390x.tar.gz"),
        ("1.4.0", "riscv64", "nginx-prometheus-exporter_1.4.0_linux_riscv64.tar.gz"),
        ("1.4.0", "ppc64", "nginx-prometheus-exporter_1.4.0_linux_ppc64.tar.gz"),
    ],
)
def test_nginx_exporter_architectures_per_release(version, machine, asset):
    exporter = catalog.CATALOG["nginx_exporter"]
    if asset is None:
        with pytest.raises(ValueError, match=f"{version} publishes no build for CPU architecture"):
            catalog.release(exporter, version, machine, None)
        return
    rel = catalog.release(exporter, version, machine, None)
    assert rel.asset == asset
    assert rel.member == "nginx-prometheus-exporter"
    assert rel.asset_url.endswith(f"/releases/download/v{version}/{asset}")


def test_nginx_exporter_before_its_first_release_archives_is_refused():
    with pytest.raises(ValueError, match=r"predates release archives .*from 0\.4\.0 on"):
        catalog.release(catalog.CATALOG["nginx_exporter"], "0.3.0", "x86_64", None)


@pytest.mark.parametrize(
    ("name", "url", "member"),
    [
        (
            "node_exporter",
            "https://github.com/prometheus/node_exporter/releases/download/v1.8.2/"
            "node_exporter-1.8.2.linux-amd64.tar.gz",
            "node_exporter-1.8.2.linux-amd64/node_exporter",
        ),
        (
            "redis_exporter",
            "https://github.com/oliver006/redis_exporter/releases/download/v1.67.0/"
            "redis_exporter-v1.67.0.linux-amd64.tar.gz",
            "redis_exporter-v1.67.0.linux-amd64/redis_exporter",
        ),
        (
            "postgres_exporter",
            "https://github.com/prometheus-community/postgres_exporter/releases/download/"
            "v0.17.1/postgres_exporter-0.17.1.linux-amd64.tar.gz",
            "postgres_exporter-0.17.1.linux-amd64/postgres_exporter",
        ),
        (
            "nginx_exporter",
            "https://github.com/nginx/nginx-prometheus-exporter/releases/download/v1.4.0/"
            "nginx-prometheus-exporter_1.4.0_linux_amd64.tar.gz",
            "nginx-prometheus-exporter",
        ),
    ],
)
def test_default_urls_are_github_releases_and_members_are_upstream_layout(name, url, member):
    rel = catalog.release(catalog.CATALOG[name], VERSIONS[name], "x86_64", None)
    assert rel.asset_url == url
    assert rel.member == member


@pytest.mark.parametrize(
    ("name", "version", "checksums"),
    [
        ("node_exporter", "1.8.2", "sha256sums.txt"),
        ("redis_exporter", "1.67.0", "sha256sums.txt"),
        ("postgres_exporter", "0.17.1", "sha256sums.txt"),
        ("nginx_exporter", "0.11.0", "sha256sums.txt"),
        ("nginx_exporter", "1.0.0", "nginx-prometheus-exporter_1.0.0_checksums.txt"),
        ("nginx_exporter", "1.4.0", "nginx-prometheus-exporter_1.4.0_checksums.txt"),
        ("dcgm_exporter", "4.1.1-4.0.4", "sha256sums.txt"),
    ],
)
def test_checksum_file_names(name, version, checksums):
    rel = catalog.release(catalog.CATALOG[name], version, "x86_64", "http://m")
    assert rel.checksums_file == checksums
    assert rel.checksums_url.endswith(f"/{checksums}")
    assert rel.checksums_url.rsplit("/", 1)[0] == rel.asset_url.rsplit("/", 1)[0]


def test_mirror_base_url_keeps_the_release_layout_and_dcgm_needs_one():
    rel = catalog.release(
        catalog.CATALOG["redis_exporter"], "1.45.0", "x86_64", "http://lab-host:18081/"
    )
    assert rel.asset_url == (
        "http://lab-host:18081/oliver006/redis_exporter/releases/download/v1.45.0/"
        "redis_exporter-v1.45.0.linux-amd64.tar.gz"
    )
    with pytest.raises(ValueError, match="no upstream release archives; set base_url"):
        catalog.release(catalog.CATALOG["dcgm_exporter"], "4.1.1-4.0.4", "x86_64", None)
    dcgm = catalog.release(catalog.CATALOG["dcgm_exporter"], "4.1.1-4.0.4", "x86_64", "http://m")
    assert "/NVIDIA/dcgm-exporter/releases/download/4.1.1-4.0.4/" in dcgm.asset_url


@pytest.mark.parametrize("version", ["latest", "1.8", "v1.8.2", "1.8.2-rc1", "", "1.8.2 "])
def test_only_exact_release_versions(version):
    with pytest.raises(ValueError, match="exact release version"):
        catalog.release(catalog.CATALOG["node_exporter"], version, "x86_64", None)


def test_postgres_exporter_before_promu_naming_is_refused():
    with pytest.raises(ValueError, match="predates release archives"):
        catalog.release(catalog.CATALOG["postgres_exporter"], "0.8.0", "x86_64", None)


# Checksum files ------------------------------------------------------------------------
def test_parse_checksums_reads_sha256sum_output():
    a, b = hashlib.sha256(b"a").hexdigest(), hashlib.sha256(b"b").hexdigest()
    text = (
        f"# produced by sha256sum\n{a}  node_exporter-1.8.2.linux-amd64.tar.gz\n"
        f"\n{b.upper()} *./node_exporter-1.8.2.linux-arm64.tar.gz\n"
    )
    assert fetch.parse_checksums(text) == {
        "node_exporter-1.8.2.linux-amd64.tar.gz": a,
        "node_exporter-1.8.2.linux-arm64.tar.gz": b,
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "lists no files"),
        ("# nothing\n", "lists no files"),
        ("abc  file.tar.gz\n", "line 1 is not"),
        (f"{'a' * 64}\n", "line 1 is not"),
        (f"{'a' * 64}  x.tgz\n{'b' * 64}  x.tgz\n", "lists x.tgz twice"),
        ("<html>404 Not Found</html>\n", "line 1 is not"),
    ],
)
def test_parse_checksums_rejects_malformed_files(text, message):
    with pytest.raises(ValueError, match=message):
        fetch.parse_checksums(text, "http://m/sha256sums.txt")


def test_normalise_sha256():
    digest = hashlib.sha256(b"x").hexdigest()
    assert opts.normalise_sha256(f"sha256:{digest.upper()}", "pin") == digest
    with pytest.raises(ValueError, match="pin must be a sha256"):
        opts.normalise_sha256("md5:abc", "pin")


def test_sha256_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"exporter" * 100000)
    assert fetch.sha256_file(path) == hashlib.sha256(b"exporter" * 100000).hexdigest()


# Compatibility -------------------------------------------------------------------------
# Expected from postgres_exporter's README, "CI Tested PostgreSQL versions", read at each
# tag v0.9.0 .. v0.20.1 (written out here, not computed from the catalog): 9.4-9.6 up to
# v0.12.1; 10 up to v0.14.0; 11-12 up to v0.18.1; 14 from v0.11.0, 15 from v0.12.0,
# 16 from v0.15.0, 17 from v0.17.0, 18 from v0.19.0.
@pytest.mark.parametrize(
    ("exporter", "major", "warning"),
    [
        ("0.11.1", "9.6", None),
        ("0.11.1", 9.4, None),
        ("0.12.1", "9.5", None),
        ("0.13.0", "9.6", "tested with postgres_exporter up to 0.12.1"),
        ("0.17.1", "9.4", "tested with postgres_exporter up to 0.12.1"),
        ("0.14.0", 10, None),
        ("0.15.0", 10, "up to 0.14.0"),
        ("0.18.1", 11, None),
        ("0.18.1", 12, None),
        ("0.19.0", 11, "up to 0.18.1"),
        ("0.20.1", 12, "up to 0.18.1"),
        ("0.11.1", 14, None),
        ("0.10.1", 14, "from 0.11.0 on"),
        ("0.11.1", 15, "from 0.12.0 on"),
        ("0.14.0", 15, None),
        ("0.14.0", 16, "from 0.15.0 on"),
        ("0.15.0", 16, None),
        ("0.17.0", 17, None),
        ("0.18.1", 18, "from 0.19.0 on"),
        ("0.19.0", 18, None),
        ("0.19.0", 19, "newer than any major"),
    ],
)
def test_postgres_pairs_that_work(exporter, major, warning):
    warnings = catalog.postgres_compatibility(exporter, major)
    if warning is None:
        assert warnings == []
    else:
        assert len(warnings) == 1
        assert warning in warnings[0]
        assert "untested" in warnings[0] or "newer than any major" in warnings[0]


def test_the_release_known_good_with_old_postgres_is_named():
    (warning,) = catalog.postgres_compatibility("0.15.0", "9.6")
    assert "0.11.1 is known good with it" in warning


@pytest.mark.parametrize(("exporter", "major"), [("0.16.0", 17), ("0.11.1", 17), ("0.16.0", 18)])
def test_postgres_known_bad_pairs_are_refused_naming_a_good_version(exporter, major):
    with pytest.raises(catalog.CompatibilityError) as err:
        catalog.postgres_compatibility(exporter, major)
    assert f"postgres_exporter {exporter} does not work with PostgreSQL {major}" in str(err.value)
    assert "Use postgres_exporter 0.17.0 or newer" in str(err.value)


@pytest.mark.parametrize("major", ["9.3", 9.0, "8.4"])
def test_postgres_before_9_4_is_refused(major):
    with pytest.raises(catalog.CompatibilityError, match=r"needs 9\.4 or newer"):
        catalog.postgres_compatibility("0.11.1", major)


@pytest.mark.parametrize("major", ["9", 9, "9.7", "10.2", "15.0", True, "x", 100])
def test_postgres_majors_are_written_as_postgresql_names_them(major):
    with pytest.raises(catalog.CompatibilityError, match="major"):
        catalog.postgres_compatibility("0.11.1", major)


def test_dcgm_pairs():
    assert catalog.dcgm_pair("4.1.1-4.0.4") == ("4.1.1", "4.0.4")
    catalog.check_dcgm_pair("4.1.1-4.0.4", "1:4.1.1-1", "the installed package")
    with pytest.raises(catalog.CompatibilityError) as err:
        catalog.check_dcgm_pair("4.1.1-4.0.4", "1:4.2.3-1", "the installed package")
    message = str(err.value)
    assert "built for DCGM 4.1.1, but the installed package is DCGM 4.2.3" in message
    assert "tag starts with 4.2.3-" in message
    for bad in ("4.0.4", "latest", "4.1.1_4.0.4"):
        with pytest.raises(catalog.CompatibilityError, match="<DCGM version>-<exporter version>"):
            catalog.dcgm_pair(bad)


@pytest.mark.parametrize(
    ("package", "upstream"),
    [("1.5.0-1+b6", "1.5.0"), ("1:4.5.3-1", "4.5.3"), ("0.11.1-3+b5", "0.11.1"), ("2.0", "2.0")],
)
def test_upstream_version_of_debian_packages(package, upstream):
    assert catalog.upstream_version(package) == upstream


@pytest.mark.parametrize(
    ("name", "version", "flag"),
    [
        ("node_exporter", "0.18.1", None),
        ("node_exporter", "1.4.0", "--web.config"),
        ("node_exporter", "1.5.0", "--web.config.file"),
        ("postgres_exporter", "0.9.0", None),
        ("postgres_exporter", "0.10.0", "--web.config.file"),
        ("nginx_exporter", "0.11.0", None),
        ("nginx_exporter", "1.0.0", "--web.config.file"),
        ("dcgm_exporter", "3.3.0-3.2.0", None),
        ("dcgm_exporter", "3.3.3-3.3.0", "--web-config-file"),
        ("redis_exporter", "1.67.0", None),
    ],
)
def test_web_config_flag_by_version(name, version, flag):
    assert catalog.CATALOG[name].web_config_flag(version) == flag


# Rendering -----------------------------------------------------------------------------
def test_flag_args_styles_and_refusals():
    node = catalog.CATALOG["node_exporter"]
    args = opts.flag_args(
        node,
        "1.8.2",
        {"collector.systemd": True, "collector.wifi": False, "collector.x": ["a", "b"], "y": None},
    )
    assert args == [
        "--collector.systemd",
        "--no-collector.wifi",
        "--collector.x=a",
        "--collector.x=b",
    ]
    redis = catalog.CATALOG["redis_exporter"]
    assert opts.flag_args(redis, "1.67.0", {"is-cluster": False}) == ["--is-cluster=false"]
    nginx = catalog.CATALOG["nginx_exporter"]
    assert opts.flag_args(nginx, "0.11.0", {"nginx.plus": False}) == ["--nginx.plus=false"]
    assert opts.flag_args(nginx, "1.4.0", {"nginx.plus": False}) == ["--no-nginx.plus"]
    with pytest.raises(ValueError, match="would put a secret into the process's arguments"):
        opts.flag_args(redis, "1.67.0", {"redis.password": "x"})
    with pytest.raises(ValueError, match="set by opskit"):
        opts.flag_args(node, "1.8.2", {"web.listen-address": ":1"})
    with pytest.raises(SettingsError, match="exporters:node_exporter:flags:'a b'"):
        plan.build("node_exporter", {"version": "1.8.2", "flags": {"a b": 1}}, "x86_64")


def test_web_config_accepts_bcrypt_hashes_only():
    digest = "$2y$10$" + "a" * 53
    context = {
        "tls": {"cert_file": "/run/c/crt", "key_file": "/run/c/key", "client_ca_file": "/run/c/ca"},
        "basic_auth_users": {"prom": digest},
    }
    text = RENDERER.render("web-config.yml.jinja", **context)
    assert text.startswith("# Managed by opskit: exporter-toolkit web configuration.\n")
    assert yaml.safe_load(text) == {
        "tls_server_config": {
            "cert_file": "/run/c/crt",
            "key_file": "/run/c/key",
            "client_ca_file": "/run/c/ca",
            "client_auth_type": "RequireAndVerifyClientCert",
        },
        "basic_auth_users": {"prom": digest},
    }
    web = {"basic_auth_users": {"prom": "plain-password"}}
    with pytest.raises(SettingsError, match="must be a bcrypt hash") as err:
        plan.build("node_exporter", {"version": "1.8.2", "web": web}, "x86_64")
    assert "plain-password" not in str(err.value)  # a secret: masked in the message
    web = {"tls": {"cert": "/c"}}
    with pytest.raises(ValueError, match="needs both cert and key"):
        plan.build("node_exporter", {"version": "1.8.2", "web": web}, "x86_64")


def _unit(name, **options):
    source = {"source": "package"} if name == "dcgm_exporter" else {}
    extra = {
        "redis_exporter": {},
        "postgres_exporter": {"postgres": {"user": "e"}},
        "dcgm_exporter": {"dcgm": {"repo": {"manage": False}}},
    }.get(name, {})
    options = {"version": VERSIONS[name], **source, **extra, **options}
    return plan.build(name, options, "x86_64", RENDERER).unit


@pytest.mark.parametrize("name", sorted(catalog.CATALOG))
def test_units_are_hardened(name):
    unit = _unit(name)
    for line in (
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectKernelTunables=yes",
        "ProtectControlGroups=yes",
        "Restart=always",
        "UMask=0077",
        "WantedBy=multi-user.target",
    ):
        assert f"\n{line}\n" in unit, (name, line)
    assert unit.count("\nProtectHome=") == 1
    assert unit.startswith("# Managed by opskit")


def test_unit_adaptations_per_exporter():
    node = _unit("node_exporter")
    assert "\nProtectHome=read-only\n" in node
    assert "AF_NETLINK" in node
    redis = _unit("redis_exporter")
    assert "\nProtectHome=yes\n" in redis
    assert "\nUser=redis_exporter\n" in redis
    assert "\nPrivateDevices=yes\n" in redis
    assert "\nCapabilityBoundingSet=\n" in redis
    dcgm_unit = _unit("dcgm_exporter")
    assert "\nUser=root\n" in dcgm_unit
    assert "PrivateDevices" not in dcgm_unit
    assert "\nCapabilityBoundingSet=CAP_SYS_ADMIN\n" in dcgm_unit
    assert "\nRequires=nvidia-dcgm.service\n" in dcgm_unit
    assert "After=network-online.target nvidia-dcgm.service" in dcgm_unit


def test_unit_carries_credentials_and_environment_file_not_secrets():
    unit = _unit(
        "postgres_exporter",
        postgres={"user": "e", "password": "pg-secret", "sslcert": "/c", "sslkey": "/etc/pg.key"},
    )
    assert '\nEnvironment="PGSSLKEY=%d/postgres-client.key"\n' in unit
    assert "\nEnvironmentFile=/etc/opskit/exporters/postgres_exporter/env\n" in unit
    assert "\nLoadCredential=postgres-client.key:/etc/pg.key\n" in unit
    assert "pg-secret" not in unit


def test_stub_status_block():
    nginx = {"stub_status": {"listen": "127.0.0.1:8080", "allow": ["127.0.0.1", "::1"]}}
    conf = plan.build("nginx_exporter", {"version": "1.4.0", "nginx": nginx}, "x86_64", RENDERER)
    conf = conf.stub_status.content
    assert "listen 127.0.0.1:8080;" in conf
    assert "location = /stub_status {" in conf
    assert "allow ::1/128;" in conf
    assert conf.index("allow 127.0.0.1/32;") < conf.index("deny all;")
    bad = {"stub_status": {"allow": ["everyone"]}}
    with pytest.raises(SettingsError, match="exporters:nginx_exporter:nginx:stub_status:allow:0"):
        plan.build("nginx_exporter", {"version": "1.4.0", "nginx": bad}, "x86_64")
    bad = {"stub_status": {"path": "/s;evil"}}
    with pytest.raises(SettingsError, match="exporters:nginx_exporter:nginx:stub_status:path"):
        plan.build("nginx_exporter", {"version": "1.4.0", "nginx": bad}, "x86_64")


# NVIDIA --------------------------------------------------------------------------------
def _pci(root, address, vendor, pci_class):
    device = root / "sys" / "bus" / "pci" / "devices" / address
    device.mkdir(parents=True)
    (device / "vendor").write_text(vendor + "\n")
    (device / "class").write_text(pci_class + "\n")


def test_nvidia_gpus_from_sysfs_and_proc(tmp_path):
    sys_root, proc_root = str(tmp_path / "sys"), str(tmp_path / "proc")
    _pci(tmp_path, "0000:00:02.0", "0x1af4", "0x020000")  # virtio network
    _pci(tmp_path, "0000:00:05.0", "0x10de", "0x040300")  # NVIDIA audio function
    assert dcgm.nvidia_gpus(sys_root, proc_root)["pci"] == []
    _pci(tmp_path, "0000:3b:00.0", "0x10de", "0x030200")  # NVIDIA 3D controller
    found = dcgm.nvidia_gpus(sys_root, proc_root)
    assert found["pci"] == ["0000:3b:00.0"]
    assert found["driver"] == []
    (tmp_path / "proc" / "driver" / "nvidia" / "gpus" / "0000:3b:00.0").mkdir(parents=True)
    assert dcgm.nvidia_gpus(sys_root, proc_root)["driver"] == ["0000:3b:00.0"]


def test_nvidia_repository_files():
    assert dcgm.nvidia_repo_path("Debian", 12, "x86_64") == "debian12/x86_64"
    assert dcgm.nvidia_repo_path("Ubuntu", "22.04", "aarch64") == "ubuntu2204/sbsa"
    with pytest.raises(ValueError, match="no packages for 'armv7l'"):
        dcgm.nvidia_repo_path("Debian", 12, "armv7l")
    url = "https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64"
    source = dcgm.nvidia_apt_source(url, "/etc/apt/keyrings/k.gpg")
    assert f"deb [signed-by=/etc/apt/keyrings/k.gpg] {url}/ /\n" in source
    pin = dcgm.nvidia_apt_pin(url)
    assert "Package: *\nPin: origin developer.download.nvidia.com\nPin-Priority: 100" in pin
    assert "Package: datacenter-gpu-manager*\n" in pin
