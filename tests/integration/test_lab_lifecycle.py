"""A lab that crashed is cleaned up by the next start, and `down` leaves nothing behind.

This uses its own one-minion lab (the session lab's name + ``lc``) so it can be crashed on purpose
without disturbing the session's lab.
"""

import os
import signal

import pytest

from tests.integration.conftest import lab_config
from tests.lab import network
from tests.lab.lab import Lab
from tests.lab.procs import is_running


@pytest.fixture
def small_lab(lab):  # after the session lab is up: shares its image and mirror caches
    inventory = {"solo-01.lab": {"roles": []}}
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

    # Crash it: SIGKILL the master host and the container's nspawn, and lose the pid files,
    # as if the machine's previous run died half-way.
    os.kill(supervisor, signal.SIGKILL)
    os.kill(nspawn, signal.SIGKILL)
    for pidfile in small_lab.cfg.run_dir.glob("*.pid"):
        pidfile.unlink()
    assert small_lab.leftovers(), "the simulated crash should leave things behind"

    # The next start removes the stale lab and comes up cleanly.
    small_lab.up()
    assert small_lab.salt("*", "test.ping", timeout=30).data == {"solo-01.lab": True}

    small_lab.down()
    assert small_lab.leftovers() == []
    assert not network.bridge_exists(small_lab.cfg)
    assert not network.nft_table_exists(small_lab.cfg)
    assert not is_running(supervisor)
