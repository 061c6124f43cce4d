"""Integration tier: tests against the lab (real salt-master, real systemd minions).

One lab is brought up for the whole session, named ``test`` unless OPSKIT_LAB_NAME says
otherwise, so a test run never tears down the lab a person is using (``lab``). The lab
needs root. ``tests/run`` sets OPSKIT_REQUIRE_LAB=1: there a lab that cannot start fails
the run with the reason. Run by hand without root, the tier is skipped with a loud
reason instead.
"""

from __future__ import annotations

import os

import pytest

from tests.lab.config import LabConfig
from tests.lab.lab import Lab


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.lab)


def lab_config(suffix: str = "") -> LabConfig:
    """The session lab's configuration; ``suffix`` names an extra lab next to it."""
    base = LabConfig.from_env()
    name = (os.environ.get("OPSKIT_LAB_NAME") or "test") + suffix
    return LabConfig(name=name, cache_dir=base.cache_dir, state_root=base.state_root)


@pytest.fixture(scope="session")
def lab():
    if os.geteuid() != 0:
        reason = "the lab tier needs root (bridge, nftables, systemd-nspawn); run tests/run as root"
        if os.environ.get("OPSKIT_REQUIRE_LAB") == "1":
            pytest.fail(reason)
        pytest.skip(f"SKIPPED LAB TIER: {reason}")
    instance = Lab(lab_config())
    try:
        instance.up()
    except Exception as err:  # noqa: BLE001 - any bring-up failure fails the tier with its reason
        instance.down(quiet=True)
        pytest.fail(f"the lab did not come up: {err}")
    yield instance
    instance.down()


@pytest.fixture(scope="session")
def highstate_once(lab):
    """The first highstate of the session, shared by tests that only read its result."""
    return lab.salt("*", "state.highstate", timeout=1800)
