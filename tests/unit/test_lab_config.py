"""Lab names derive every host-side name and address, so labs can run side by side."""

import ipaddress

import pytest

from tests.lab.artifacts import upstream_version
from tests.lab.cmdb_server import merge_patch
from tests.lab.config import LabConfig


def test_names_and_addresses_derive_from_the_lab_name():
    cfg = LabConfig(name="ci")
    assert cfg.bridge == "oklab-ci"
    assert len(cfg.bridge) <= 15  # Linux interface name limit
    assert cfg.subnet.subnet_of(ipaddress.ip_network("10.213.0.0/16"))
    assert cfg.host_ip == str(cfg.subnet.network_address + 1)
    assert cfg.minion_ip(0) != cfg.host_ip
    assert LabConfig(name="ci").subnet == cfg.subnet  # stable


def test_two_lab_names_get_different_subnets_and_api_ports():
    a, b = LabConfig(name="test"), LabConfig(name="lifecycle")
    assert a.subnet != b.subnet
    assert a.ports.salt_api != b.ports.salt_api


@pytest.mark.parametrize("name", ["", "Lab", "has-dash", "toolongname", "9lab"])
def test_invalid_names_are_refused(name):
    with pytest.raises(ValueError, match="lab name"):
        LabConfig(name=name)


@pytest.mark.parametrize(
    ("deb", "upstream"),
    [
        ("1.5.0-1+b6", "1.5.0"),
        ("1:0.11.1-2", "0.11.1"),
        ("1.4.0+ds-1", "1.4.0"),
        ("0.15.0-2~bpo12+1", "0.15.0"),
    ],
)
def test_upstream_version_from_debian_version(deb, upstream):
    assert upstream_version(deb) == upstream


def test_merge_patch_follows_rfc7386():
    target = {"a": 1, "b": {"c": 2, "d": 3}, "e": [1]}
    patch = {"a": None, "b": {"c": 4}, "e": [2], "f": {"g": 5}}
    assert merge_patch(target, patch) == {"b": {"c": 4, "d": 3}, "e": [2], "f": {"g": 5}}
