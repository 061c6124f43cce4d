"""The thumbnail_server compose states (``compose_running`` with its ``mod_watch``,
``healthy`` in docker mode) in Salt's real loaders, without a Docker engine.

STAND-IN NOTICE: the machines that run this tier have no Docker engine. ``docker`` here
is a small script put first on PATH that records each command line, fails as Compose
v2 does when a ``-f`` file is missing ("no such file or directory", exit 1), and answers
``compose ps`` and ``inspect`` from files the test writes. The same states against the
real engine (Debian's docker.io 20.10 and Compose v2 in the lab's Docker minion):
tests/integration/test_thumbnail_server_docker.py.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

from tests.functional.test_thumbnail_server_formula import _arg
from tests.functional.test_thumbnail_server_formula import _docker_pillar
from tests.functional.test_thumbnail_server_formula import _render

DOCKER = """#!{python}
import json, os, sys
state = {state!r}
with open(os.path.join(state, "calls.jsonl"), "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
args = sys.argv[1:]
for i, word in enumerate(args[:-1]):
    if word == "-f" and not os.path.isfile(args[i + 1]):
        print(f"open {{args[i + 1]}}: no such file or directory", file=sys.stderr)
        sys.exit(1)
answer = {{"ps": "ps.out", "inspect": "pid.out"}}
for verb, name in answer.items():
    if verb in args:
        path = os.path.join(state, name)
        if os.path.exists(path):
            print(open(path).read().strip())
sys.exit(0)
"""


@pytest.fixture
def docker(tmp_path, monkeypatch):
    """The recording ``docker`` (see the module docstring); returns its state directory."""
    state = tmp_path / "docker-state"
    state.mkdir()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "docker"
    script.write_text(DOCKER.format(python=sys.executable, state=str(state)))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return state


def _calls(state) -> list[list[str]]:
    path = state / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _settings(modules, tmp_path, **ts):
    rendered = _render(modules, _docker_pillar(tmp_path / "project", **ts))
    assert isinstance(rendered, dict), rendered
    return _arg(rendered["thumbnail-server-service-compose-running"], "settings")


def test_test_mode_on_a_new_host_says_started_without_running_compose(
    states, modules, tmp_path, docker
):
    """Before anything is written there is no project: test mode must not run compose on
    the missing file (it failed, and the watch's "would be recreated" hid that)."""
    settings = _settings(modules, tmp_path)
    name = settings["docker"]["project_dir"]
    ret = states.thumbnail_server.compose_running(name=name, settings=settings, test=True)
    assert ret.result is None, ret.comment
    assert ret.comment == "the thumbnail-server container would be started"
    assert ret.changes == {"container": {"old": "not running", "new": "running"}}
    ret = states.thumbnail_server.mod_watch(
        name=name, sfun="compose_running", settings=settings, test=True
    )
    assert ret.result is None, ret.comment
    assert ret.comment == "the thumbnail-server container would be started"
    assert _calls(docker) == []


def test_test_mode_asks_with_the_files_that_exist(states, modules, tmp_path, docker):
    """A host whose jemalloc override is not written yet: test mode asks compose with the
    compose file alone, and a running container would be recreated."""
    settings = _settings(modules, tmp_path)
    dk = settings["docker"]
    os.makedirs(dk["project_dir"])
    with open(dk["compose_file"], "w", encoding="utf-8") as handle:
        handle.write(dk["compose_contents"])
    (docker / "ps.out").write_text("0123abcd\n")
    ret = states.thumbnail_server.compose_running(
        name=dk["project_dir"], settings=settings, test=True
    )
    assert ret.result is True, ret.comment
    assert ret.comment == "the thumbnail-server container is running"
    ret = states.thumbnail_server.mod_watch(
        name=dk["project_dir"], sfun="compose_running", settings=settings, test=True
    )
    assert ret.result is None, ret.comment
    assert ret.comment == "the thumbnail-server container would be recreated"
    assert ret.changes == {"container": {"old": "outdated", "new": "recreated"}}
    project = ["compose", "-p", "seafile-thumbnail", "-f", dk["compose_file"]]
    assert (
        _calls(docker)
        == [[*project, "ps", "--status", "running", "--quiet", "thumbnail-server"]] * 2
    )
    assert not os.path.exists(dk["override_file"])


def test_a_watched_change_recreates_only_the_thumbnail_server_service(
    states, modules, tmp_path, docker
):
    settings = _settings(modules, tmp_path)
    dk = settings["docker"]
    os.makedirs(dk["project_dir"])
    for path, text in ((dk["compose_file"], dk["compose_contents"]), (dk["override_file"], "{}")):
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
    (docker / "ps.out").write_text("0123abcd\n")
    ret = states.thumbnail_server.mod_watch(
        name=dk["project_dir"], sfun="compose_running", settings=settings
    )
    assert ret.result is True, ret.comment
    assert ret.changes == {"container": {"old": "outdated", "new": "recreated"}}
    up = [call for call in _calls(docker) if "up" in call]
    assert up == [
        [
            *dk["compose_argv"][1:],
            "up",
            "--detach",
            "--remove-orphans",
            "--force-recreate",
            "thumbnail-server",
        ]
    ]


def test_docker_mode_health_checks_jemalloc_in_the_containers_main_process(
    states, modules, tmp_path, docker, health_endpoint
):
    """The container's main process as the host sees it (``docker inspect``): here this
    test's own process, which has no jemalloc mapped, so the check must fail."""
    rendered = _render(modules, _docker_pillar(tmp_path / "project"))
    health = rendered["thumbnail-server-service-health-thumbnail_server-healthy"]
    assert _arg(health, "jemalloc") is True
    assert _arg(health, "systemd") is False
    url = health_endpoint("/ping", b"pong") + "/ping"
    (docker / "pid.out").write_text(f"{os.getpid()}\n")
    ret = states.thumbnail_server.healthy(
        name="thumbnail-server", url=url, timeout=5, jemalloc=True, systemd=False
    )
    assert ret.result is False, ret.comment
    assert "jemalloc is not mapped into its main process" in ret.comment
    assert "docker inspect --format '{{.Config.Env}}' thumbnail-server" in ret.comment
    assert ["inspect", "--type", "container", "--format", "{{.State.Pid}}", "thumbnail-server"] in (
        _calls(docker)
    )
