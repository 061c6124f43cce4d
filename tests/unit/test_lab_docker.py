"""The lab's cgroup placement and Docker minion recipe: parsing, keys, and the flag that
makes a minion a Docker host (the lab tier runs them for real: test_docker_lab.py)."""

import pathlib
import subprocess

import pytest

from tests.lab import cgroups
from tests.lab import docker_images
from tests.lab import docker_minion
from tests.lab.config import LabConfig
from tests.lab.lab import Lab
from tests.lab.lab import load_inventory

# /proc/self/mountinfo of a host like the lab's: cgroup v1 controllers (cpu and cpuacct
# co-mounted on one of them), the name=systemd hierarchy, cgroup2 at .../unified, and a
# bind mount of a subtree (root field not "/"), which must be ignored.
MOUNTINFO = """\
25 1 254:0 / / rw,relatime - ext4 /dev/vda rw
30 25 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
32 30 0:32 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
33 30 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
34 30 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
35 25 0:32 /lab /mnt/memory-lab rw,relatime - cgroup cgroup rw,memory
36 30 0:40 / /sys/fs/cgroup/net_cls rw,relatime - cgroup cgroup rw,net_cls
"""
PROC_CGROUP = """\
9:name=systemd:/
4:memory:/process_api/abc
3:cpuacct,cpu:/
0::/
"""


def test_hierarchies_are_found_once_each_with_their_proc_names():
    found = cgroups.parse_hierarchies(MOUNTINFO, {"cpu", "cpuacct", "memory"})
    by_key = {h.key: h for h in found}
    assert set(by_key) == {"cpu,cpuacct", "memory", "name=systemd", ""}
    assert by_key["memory"].mount == pathlib.Path("/sys/fs/cgroup/memory")
    assert by_key[""].version == 2
    assert [h.key for h in found if h.is_v1_controller] == ["cpu,cpuacct", "memory"]


def test_proc_cgroup_keys_match_hierarchy_keys():
    paths = cgroups.parse_proc_cgroup(PROC_CGROUP)
    assert paths == {
        "name=systemd": "/",
        "memory": "/process_api/abc",
        "cpu,cpuacct": "/",
        "": "/",
    }


def test_join_argv_execs_the_command_after_joining_each_cgroup(tmp_path):
    procs = [tmp_path / "a" / "cgroup.procs", tmp_path / "b" / "cgroup.procs"]
    for path in procs:
        path.parent.mkdir()
    argv = cgroups.join_argv(procs, ["sh", "-c", "echo $$ > pid; echo done"])
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, check=True)
    assert proc.stdout == "done\n"
    pid = (tmp_path / "pid").read_text()
    # One process throughout: it wrote its own PID into each file, then exec'd.
    assert [path.read_text() for path in procs] == [pid, pid]


def test_join_argv_stops_when_a_cgroup_cannot_be_joined(tmp_path):
    argv = cgroups.join_argv([tmp_path / "missing" / "cgroup.procs"], ["echo", "started"])
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert proc.returncode != 0
    assert "started" not in proc.stdout


def test_lab_cgroups_are_named_after_the_lab():
    assert cgroups.lab_dirname(LabConfig(name="ci")) == "opskit-lab-ci"


@pytest.mark.parametrize(
    ("record", "docker"),
    [
        ({"roles": [], "lab": {"docker": True}}, True),
        ({"roles": [], "lab": {"docker": "true"}}, False),  # only a real boolean
        ({"lab": {"redis_password": "x"}}, False),
        ({"roles": []}, False),
    ],
)
def test_the_record_decides_which_minions_run_docker(record, docker):
    lab = Lab(LabConfig(name="ut"), inventory={"m-01.lab": record})
    assert lab.specs[0].docker is docker


def test_the_sample_inventory_has_one_docker_minion():
    docker = [m for m, r in load_inventory().items() if (r.get("lab") or {}).get("docker")]
    assert docker == ["dock-01.lab"]


def test_docker_minions_get_only_the_documented_extra_privileges(tmp_path):
    args = docker_minion.nspawn_args(tmp_path / "docker")
    assert args == [
        "--system-call-filter=add_key keyctl",
        f"--bind={tmp_path / 'docker'}:/var/lib/docker",
    ]


def test_layer_key_follows_the_base_image_and_the_recipe(monkeypatch):
    key = docker_minion.layer_key("base1")
    assert docker_minion.layer_key("base1") == key
    assert docker_minion.layer_key("base2") != key
    monkeypatch.setattr(docker_minion, "PACKAGES", ("docker.io", "pigz"))
    assert docker_minion.layer_key("base1") != key


def test_images_are_tagged_like_upstream():
    assert docker_images.THUMBNAIL.tag.startswith("seafileltd/thumbnail-server:")
    assert docker_images.ANUBIS.tag == "ghcr.io/techarohq/anubis:v1.27.0"


def test_image_key_follows_every_context_file(monkeypatch, tmp_path):
    rootfs = tmp_path / "rootfs-abc.tar"
    key = docker_images.images_key(rootfs)
    assert docker_images.images_key(rootfs) == key
    assert docker_images.images_key(tmp_path / "rootfs-other.tar") != key
    standin = tmp_path / "anubis_standin.py"
    standin.write_text("changed\n")
    changed = docker_images.ImageRecipe(
        tag=docker_images.ANUBIS.tag, recipe="anubis", extra=(("anubis", standin, 0o755),)
    )
    monkeypatch.setattr(docker_images, "IMAGES", (docker_images.THUMBNAIL, changed))
    assert docker_images.images_key(rootfs) != key


def test_image_contexts_hold_the_stand_ins():
    thumbnail = docker_images.THUMBNAIL.context_files()
    assert set(thumbnail) == {
        "Dockerfile",
        "nginx.conf",
        "default.conf",
        "start.sh",
        "main.py",
        "seafobj.py",
    }
    assert thumbnail["start.sh"][1] == 0o755
    anubis = docker_images.ANUBIS.context_files()
    assert set(anubis) == {
        "Dockerfile",
        "anubis",
        "opskit_goregexp.py",
        "opskit_anubis_policy.py",
    }
    assert anubis["anubis"][1] == 0o755
    assert anubis["anubis"][0].startswith(b"#!/usr/bin/python3")
