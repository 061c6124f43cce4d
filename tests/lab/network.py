"""The lab bridge and its firewall table.

Minions sit on a host bridge with static addresses and no default route. An nftables
table owned by the lab drops anything the host would route to or from the bridge, so
minions can reach only the host's lab services (master, CMDB, mirror, apt proxy) and each
other, even if IP forwarding is enabled on the host.
"""

from __future__ import annotations

import json
import subprocess

from tests.lab.config import LabConfig
from tests.lab.procs import LabError


def _run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def bridge_exists(cfg: LabConfig) -> bool:
    return _run(["ip", "link", "show", "dev", cfg.bridge], check=False).returncode == 0


def nft_table_exists(cfg: LabConfig) -> bool:
    return _run(["nft", "list", "table", "inet", cfg.nft_table], check=False).returncode == 0


def _subnet_in_use_elsewhere(cfg: LabConfig) -> str | None:
    routes = json.loads(_run(["ip", "-j", "-4", "route", "show"]).stdout or "[]")
    for route in routes:
        if route.get("dst") == str(cfg.subnet) and route.get("dev") != cfg.bridge:
            return route.get("dev")
    return None


def create(cfg: LabConfig) -> None:
    """Create the bridge with the host's lab address and the lab's nftables table."""
    other = _subnet_in_use_elsewhere(cfg)
    if other:
        raise LabError(
            f"subnet {cfg.subnet} is already routed via {other}; "
            "set OPSKIT_LAB_SUBNET to a free /24 for the lab"
        )
    _run(["ip", "link", "add", cfg.bridge, "type", "bridge"])
    _run(["ip", "addr", "add", f"{cfg.host_ip}/{cfg.subnet.prefixlen}", "dev", cfg.bridge])
    _run(["ip", "link", "set", cfg.bridge, "up"])
    # The host bridges with br_netfilter on (bridge-nf-call-iptables=1), so frames between
    # two minions also pass the forward hook, with the bridge as both in and out device:
    # accept those first, then drop whatever crosses the lab's boundary.
    ruleset = f"""
table inet {cfg.nft_table} {{
    chain forward {{
        type filter hook forward priority -10; policy accept;
        iifname "{cfg.bridge}" oifname "{cfg.bridge}" accept comment "minion to minion"
        iifname "{cfg.bridge}" counter drop comment "lab minions reach only this host"
        oifname "{cfg.bridge}" counter drop comment "nothing is routed into the lab"
    }}
}}
"""
    proc = subprocess.run(
        ["nft", "-f", "-"], input=ruleset, text=True, capture_output=True, check=False
    )
    if proc.returncode != 0:
        raise LabError(f"could not install nftables table {cfg.nft_table}: {proc.stderr.strip()}")


def remove(cfg: LabConfig) -> None:
    """Remove the table and the bridge if they exist (idempotent)."""
    if nft_table_exists(cfg):
        _run(["nft", "delete", "table", "inet", cfg.nft_table])
    if bridge_exists(cfg):
        _run(["ip", "link", "delete", cfg.bridge])


def leftover_veths(cfg: LabConfig) -> list[str]:
    """veth interfaces still enslaved to the lab bridge (should be none after down)."""
    if not bridge_exists(cfg):
        return []
    links = json.loads(_run(["ip", "-j", "link", "show", "master", cfg.bridge]).stdout or "[]")
    return [link["ifname"] for link in links]
