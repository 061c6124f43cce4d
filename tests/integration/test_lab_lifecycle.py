"""A lab that crashed is cleaned up by the next start, and `down` leaves nothing behind.

This uses its own one-minion lab (the session lab's name + ``lc``) so it can be crashed on purpose
without disturbing the session's lab. Its minion is a Docker minion running a container
when the lab crashes, which leaves the most behind: the container's processes, dockerd,
their cgroups and the Docker data root.
"""

import os
import signal

import pytest

from tests.integration.conftest import lab_config
from tests.lab import cgroups
from tests.lab import docker_images
from tests.lab import network
from tests.lab.lab import Lab
from tests.lab.procs import is_running


@pytest.fixture
def small_lab(lab):  # after the session lab is up: shares its image and mirror caches
    inventory = {"solo-01.lab": {"roles": [], "lab": {"docker": True}}}
    instance = Lab(lab_config(suffix="lc"), inventory=inventory)
    yield instance
    instance.down(quiet=True)


def test_crashed_lab_is_cleaned_on_start_and_down_leaves_nothing(small_lab):
    small_lab.up()
    minion = small_lab.minions["solo-01.lab"]
    supervisor = small_lab.registry.pid_of("supervisor")
    nspawn = small_lab.registry.pid_of(minion.process_name)
    assert supervisor
    assert nspawn
    assert minion.leader_pid()
    container = minion.run(
        ["docker", "run", "-d", "--network=none", docker_images.THUMBNAIL.tag, "sleep", "600"]
    ).stdout.strip()
    in_container = _pids_in_cgroup(f"/docker/{container}")
    assert in_container, "the container's processes should be below the minion's cgroups"

    # Crash it: SIGKILL the master host and the container's nspawn, and lose the pid files,
    # as if the machine's previous run died half-way.
    os.kill(supervisor, signal.SIGKILL)
    os.kill(nspawn, signal.SIGKILL)
    for pidfile in small_lab.cfg.run_dir.glob("*.pid"):
        pidfile.unlink()
    left = small_lab.leftovers()
    assert any(item.startswith("cgroup ") for item in left), left
    assert any(item.startswith("process ") for item in left), left

    # The next start removes the stale lab and comes up cleanly.
    small_lab.up()
    assert small_lab.salt("*", "test.ping", timeout=30).data == {"solo-01.lab": True}
    assert not any(is_running(pid) for pid in in_container)
    assert minion.run(["docker", "ps", "-aq"]).stdout.strip() == ""  # a fresh data root

    small_lab.down()
    assert small_lab.leftovers() == []
    assert not network.bridge_exists(small_lab.cfg)
    assert not network.nft_table_exists(small_lab.cfg)
    assert not is_running(supervisor)
    assert cgroups.find(small_lab.cfg) == []
    assert not minion.data_root.exists()


def _pids_in_cgroup(suffix: str) -> list[int]:
    """Host PIDs in a cgroup whose path ends with ``suffix`` (in any hierarchy)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cgroup", encoding="utf-8") as handle:
                    paths = cgroups.parse_proc_cgroup(handle.read()).values()
            except OSError:
                continue
            if any(path.endswith(suffix) for path in paths):
                found.append(int(entry))
    return found
