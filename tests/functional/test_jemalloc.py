"""jemalloc in Salt's real loaders on this host: library paths, the drop-in, MALLOC_CONF
checks, the loader probe, and the docker compose mode.

This host has no systemd as PID 1 (the lab's minions do: the systemd states are tested
there, in tests/integration/test_jemalloc_lab.py). There is no Docker engine here
either: the compose override is rendered and written for real and then validated and
merged by docker compose itself (``docker-compose config``, v1 from Debian, which needs
no engine); running containers under it is left to a host that has Docker.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import opskit_jemalloc
import pytest
import yaml
from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError

MULTIARCH = subprocess.run(
    ["dpkg-architecture", "-qDEB_HOST_MULTIARCH"], capture_output=True, text=True, check=True
).stdout.strip()


def test_library_path_matches_dpkg_multiarch_on_this_host(modules):
    assert modules.jemalloc.library_path() == f"/usr/lib/{MULTIARCH}/libjemalloc.so.2"
    assert modules.jemalloc.package_name() == "libjemalloc2"


@pytest.mark.parametrize(
    ("grains", "path", "package"),
    [
        (
            {"os_family": "Debian", "osarch": "arm64", "cpuarch": "aarch64"},
            "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
            "libjemalloc2",
        ),
        (
            {"os_family": "Debian", "osarch": "armhf", "cpuarch": "armv7l"},
            "/usr/lib/arm-linux-gnueabihf/libjemalloc.so.2",
            "libjemalloc2",
        ),
        (
            {"os_family": "RedHat", "osarch": "x86_64", "cpuarch": "x86_64"},
            "/usr/lib64/libjemalloc.so.2",
            "jemalloc",
        ),
        (
            {"os_family": "RedHat", "osarch": "aarch64", "cpuarch": "aarch64"},
            "/usr/lib64/libjemalloc.so.2",
            "jemalloc",
        ),
    ],
)
def test_library_path_per_os_and_arch_grains(loaders, modules, grains, path, package):
    saved = {key: loaders.grains.get(key) for key in grains}
    loaders.grains.update(grains)
    try:
        assert modules.jemalloc.library_path() == path
        assert modules.jemalloc.package_name() == package
    finally:
        loaders.grains.update(saved)


def test_unsupported_os_family_names_the_minion_and_the_way_out(loaders, modules):
    saved = loaders.grains.get("os_family")
    loaders.grains["os_family"] = "Solaris"
    try:
        with pytest.raises(SaltInvocationError, match=r"opskit-functional: .*pass `library`"):
            modules.jemalloc.library_path()
    finally:
        loaders.grains["os_family"] = saved


def test_dropin_rendering(modules):
    text = modules.jemalloc.render_dropin(
        "thumbnail-server", malloc_conf="background_thread:true,dirty_decay_ms:1000"
    )
    assert text.splitlines()[2:] == [
        "[Service]",
        f'Environment="LD_PRELOAD=/usr/lib/{MULTIARCH}/libjemalloc.so.2"',
        'Environment="MALLOC_CONF=background_thread:true,dirty_decay_ms:1000"',
    ]
    assert modules.jemalloc.dropin_path("thumbnail-server") == (
        "/etc/systemd/system/thumbnail-server.service.d/50-opskit-jemalloc.conf"
    )
    with pytest.raises(SaltInvocationError, match="not a key:value pair"):
        modules.jemalloc.render_dropin("x", malloc_conf="narenas:%i")


def test_probe_fails_loudly_on_a_library_the_loader_cannot_preload(modules, tmp_path):
    with pytest.raises(CommandExecutionError, match=r"ld\.so.*cannot be preloaded"):
        modules.jemalloc.probe(str(tmp_path / "libjemalloc.so.2"))


def test_systemd_states_refuse_clearly_without_systemd(states):
    ret = states.jemalloc.enabled(name="thumbnail-server")
    assert ret.result is False
    assert "systemd is not running as init" in ret.comment
    assert ret.changes == {}


# A library that exists on every Debian host and preloads harmlessly stands in for
# the host's jemalloc (this host does not have libjemalloc2): enough for the probe
# and the file, which is all the compose mode does on the host.
STAND_IN = f"/usr/lib/{MULTIARCH}/libm.so.6"
BASE_COMPOSE = """\
services:
  thumbnail:
    image: seafileltd/thumbnail-server:latest
    environment:
      SEAFILE_SERVER: seafile
    volumes:
      - /opt/seafile-data:/shared
  other:
    image: nginx
"""


def _compose_config(tmp_path, override: pathlib.Path) -> dict:
    base = tmp_path / "compose.yml"
    base.write_text(BASE_COMPOSE)
    proc = subprocess.run(
        ["docker-compose", "-f", str(base), "-f", str(override), "config"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)


@pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="SKIPPED: docker-compose is missing; tests/bootstrap installs it",
)
def test_compose_override_is_written_and_docker_compose_merges_it(states, tmp_path, testmode):
    override = tmp_path / "docker-compose.opskit-jemalloc.yml"
    ret = states.jemalloc.compose_enabled(
        name=str(override),
        services=["thumbnail"],
        malloc_conf="background_thread:true",
        library=STAND_IN,
        test=testmode,
    )
    assert list(ret.changes) == [str(override)]
    assert ret.changes[str(override)]["old"] is None
    if testmode:
        assert ret.result is None
        assert not override.exists()
        return
    assert ret.result is True, ret.comment
    assert override.read_text().startswith(opskit_jemalloc.MARKER)
    merged = _compose_config(tmp_path, override)["services"]
    assert merged["thumbnail"]["environment"] == {
        "SEAFILE_SERVER": "seafile",
        "LD_PRELOAD": opskit_jemalloc.CONTAINER_LIBRARY,
        "MALLOC_CONF": "background_thread:true",
    }
    mount = {
        "type": "bind",
        "source": STAND_IN,
        "target": opskit_jemalloc.CONTAINER_LIBRARY,
        "read_only": True,
    }
    assert mount in merged["thumbnail"]["volumes"]
    assert "/opt/seafile-data:/shared:rw" in merged["thumbnail"]["volumes"]
    assert "environment" not in merged["other"]

    again = states.jemalloc.compose_enabled(
        name=str(override),
        services=["thumbnail"],
        malloc_conf="background_thread:true",
        library=STAND_IN,
    )
    assert again.result is True
    assert again.changes == {}

    gone = states.jemalloc.compose_disabled(name=str(override))
    assert gone.result is True
    assert gone.changes[str(override)]["new"] is None
    assert not override.exists()
    assert states.jemalloc.compose_disabled(name=str(override)).changes == {}


def test_compose_mode_never_touches_a_file_it_did_not_write(states, tmp_path):
    override = tmp_path / "docker-compose.override.yml"
    override.write_text("services: {thumbnail: {environment: {A: b}}}\n")
    for ret in (
        states.jemalloc.compose_enabled(
            name=str(override), services=["thumbnail"], library=STAND_IN
        ),
        states.jemalloc.compose_disabled(name=str(override)),
    ):
        assert ret.result is False
        assert "was not written by opskit" in ret.comment
    assert override.read_text() == "services: {thumbnail: {environment: {A: b}}}\n"


def test_compose_mode_refuses_bad_input_before_writing(states, tmp_path):
    override = tmp_path / "o.yml"
    ret = states.jemalloc.compose_enabled(
        name=str(override), services=["thumb nail"], library=STAND_IN
    )
    assert ret.result is False
    assert "not a docker compose service name" in ret.comment
    ret = states.jemalloc.compose_enabled(
        name=str(override), services=["thumbnail"], library=STAND_IN, malloc_conf="a:$B"
    )
    assert ret.result is False
    assert not override.exists()
