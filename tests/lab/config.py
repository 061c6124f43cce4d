"""Names, addresses, directories and versions of one lab instance.

Everything the lab creates on the host is derived from the lab's name, so that a stale
lab can be found and removed by name alone, and so that two labs with different names
(``OPSKIT_LAB_NAME``) can run side by side on one machine.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import pathlib
import re
import zlib

REPO = pathlib.Path(__file__).resolve().parents[2]
VENV = REPO / ".venv"
DEFAULT_CACHE = pathlib.Path("/var/cache/opskit-lab")
DEFAULT_STATE_ROOT = pathlib.Path("/var/lib/opskit-lab")
NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,8}$")


def pinned_salt_version() -> str:
    """The Salt version the tests pin in tests/requirements.txt (one source of truth)."""
    text = (REPO / "tests" / "requirements.txt").read_text(encoding="utf-8")
    match = re.search(r"^salt==(\S+)$", text, re.MULTILINE)
    if not match:
        raise RuntimeError("tests/requirements.txt does not pin salt==<version>")
    return match.group(1)


@dataclasses.dataclass(frozen=True)
class Ports:
    """TCP ports the lab's host-side services listen on.

    All but salt-api listen on the lab's own bridge address, so labs with different
    names never collide. salt-api listens on loopback (salt-factories checks it there),
    on a port derived from the lab's subnet.
    """

    salt_api: int
    master_publish: int = 4505
    master_return: int = 4506
    cmdb: int = 18443  # HTTPS
    mirror: int = 18081  # HTTP
    apt_proxy: int = 13142  # apt-cacher-ng


@dataclasses.dataclass(frozen=True)
class LabConfig:
    """One lab: where its files live and which names and addresses it uses."""

    name: str = "lab"
    cache_dir: pathlib.Path = DEFAULT_CACHE
    state_root: pathlib.Path = DEFAULT_STATE_ROOT
    subnet: ipaddress.IPv4Network | None = None
    ports: Ports | None = None

    def __post_init__(self):
        if not NAME_RE.match(self.name):
            raise ValueError(
                f"lab name {self.name!r} is invalid: use 1-9 lowercase letters or digits, "
                "starting with a letter (it becomes part of interface names)"
            )
        if self.subnet is None:
            # A stable /24 per name inside 10.213.0.0/16, away from common defaults.
            third = 1 + zlib.crc32(self.name.encode()) % 250
            object.__setattr__(self, "subnet", ipaddress.ip_network(f"10.213.{third}.0/24"))
        if self.ports is None:
            octet = int(self.subnet.network_address) >> 8 & 0xFF
            object.__setattr__(self, "ports", Ports(salt_api=18000 + octet))

    @classmethod
    def from_env(cls) -> LabConfig:
        """Build the configuration from OPSKIT_LAB_* environment variables."""
        kwargs = {}
        if os.environ.get("OPSKIT_LAB_NAME"):
            kwargs["name"] = os.environ["OPSKIT_LAB_NAME"]
        if os.environ.get("OPSKIT_LAB_CACHE"):
            kwargs["cache_dir"] = pathlib.Path(os.environ["OPSKIT_LAB_CACHE"])
        if os.environ.get("OPSKIT_LAB_STATE"):
            kwargs["state_root"] = pathlib.Path(os.environ["OPSKIT_LAB_STATE"])
        if os.environ.get("OPSKIT_LAB_SUBNET"):
            kwargs["subnet"] = ipaddress.ip_network(os.environ["OPSKIT_LAB_SUBNET"])
        return cls(**kwargs)

    # Host-side names -------------------------------------------------------------
    @property
    def bridge(self) -> str:
        return f"oklab-{self.name}"

    @property
    def nft_table(self) -> str:
        return f"opskit_lab_{self.name}"

    @property
    def host_ip(self) -> str:
        return str(self.subnet.network_address + 1)

    def minion_ip(self, index: int) -> str:
        return str(self.subnet.network_address + 11 + index)

    # Directories -------------------------------------------------------------------
    @property
    def state_dir(self) -> pathlib.Path:
        return self.state_root / self.name

    @property
    def run_dir(self) -> pathlib.Path:
        return self.state_dir / "run"

    @property
    def logs_dir(self) -> pathlib.Path:
        return self.state_dir / "logs"

    @property
    def minions_dir(self) -> pathlib.Path:
        return self.state_dir / "minions"

    @property
    def master_root(self) -> pathlib.Path:
        return self.state_dir / "master"

    @property
    def master_conf_dir(self) -> pathlib.Path:
        # salt-factories puts the master's configuration in <root>/<id>/conf
        return self.master_root / "lab-master" / "conf"

    @property
    def cmdb_dir(self) -> pathlib.Path:
        return self.state_dir / "cmdb"

    @property
    def apt_cache_dir(self) -> pathlib.Path:
        return self.cache_dir / f"apt-cacher-ng-{self.name}"

    # URLs ----------------------------------------------------------------------------
    @property
    def cmdb_url(self) -> str:
        return f"https://{self.host_ip}:{self.ports.cmdb}/assets/salt/{{minion_id}}/pillars/"

    @property
    def cmdb_base(self) -> str:
        return f"https://{self.host_ip}:{self.ports.cmdb}"

    @property
    def mirror_url(self) -> str:
        return f"http://{self.host_ip}:{self.ports.mirror}"

    @property
    def salt_api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.salt_api}"
