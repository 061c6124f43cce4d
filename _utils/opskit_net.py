"""TCP endpoints for opskit's formulas: parse ``host:port``, tell whether two listeners
would collide, and list what is listening on this host and which systemd unit owns it.

Salt's ``network.active_tcp`` lists ESTABLISHED connections only, and ``ss`` output is
meant for people; the listening sockets are read here from ``/proc/net/tcp{,6}``
(state ``0A``) and matched to processes through the socket inodes in ``/proc/<pid>/fd``,
and to systemd units through ``/proc/<pid>/cgroup``. Reading other users' ``fd``
directories needs root; a socket whose owner cannot be found is reported with
``unit: None`` (and counts as foreign when checking for collisions).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import pathlib
import re

LISTEN = "0A"
_UNIT_RE = re.compile(r"/([^/]+\.(?:service|scope))(?:/|$)")


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """A TCP listen address. ``host`` is "" for every address (Go's ``:8923``)."""

    host: str
    port: int

    @classmethod
    def from_socket(cls, address: str, port: int) -> Endpoint:
        """The Endpoint of a listening socket (its wildcard address becomes "")."""
        return cls("" if address in ("0.0.0.0", "::") else address, port)  # noqa: S104

    @property
    def wildcard(self) -> bool:
        return self.host in ("", "0.0.0.0", "::")  # noqa: S104 - comparing, not binding

    @property
    def text(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    @property
    def local_host(self) -> str:
        """An address a client on this host can connect to (wildcards -> loopback)."""
        if self.host in ("", "0.0.0.0"):  # noqa: S104 - comparing, not binding
            return "127.0.0.1"
        if self.host == "::":
            return "::1"
        return self.host

    @property
    def local_url_host(self) -> str:
        host = self.local_host
        return f"[{host}]" if ":" in host else host

    def collides(self, other: Endpoint) -> bool:
        """Two listeners on one host cannot both bind when their ports are equal and
        one of them is a wildcard or both name the same address."""
        if self.port != other.port:
            return False
        if self.wildcard or other.wildcard:
            return True
        return ipaddress.ip_address(self.host) == ipaddress.ip_address(other.host)


def parse_endpoint(text) -> Endpoint:
    """``"127.0.0.1:8923"``, ``":8923"``, ``"[::1]:8923"``, ``"0.0.0.0:9090"`` -> Endpoint.

    Raises ValueError with a message meant for people.
    """
    if not isinstance(text, str) or ":" not in text:
        raise ValueError(f"{text!r} is not HOST:PORT (for example 127.0.0.1:8923)")
    host, _, port = text.rpartition(":")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ValueError(f"{text!r}: an IPv6 host must be written in brackets, [::1]:8923")
        host = host[1:-1]
        if ":" not in host:
            raise ValueError(f"{text!r}: brackets are for IPv6 addresses only")
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 host in brackets, for example [::1]:8923")
    if host:
        try:
            host = str(ipaddress.ip_address(host))
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} is not an IP address") from None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
    return Endpoint(host, int(port))


def _hex_to_ip(hexaddr: str) -> str:
    raw = bytes.fromhex(hexaddr)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    # /proc/net/tcp6: four 32-bit words, each in host (little-endian) order
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    addr = ipaddress.IPv6Address(words)
    return str(addr.ipv4_mapped or addr)


def _socket_owners(proc: pathlib.Path) -> dict[str, int]:
    """socket inode -> pid, for the processes whose fds we may read."""
    owners = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    owners.setdefault(target[8:-1], int(entry.name))
        except OSError:
            continue
    return owners


def _unit_of(proc: pathlib.Path, pid: int) -> str | None:
    try:
        cgroups = (proc / str(pid) / "cgroup").read_text(encoding="utf-8")
    except OSError:
        return None
    for line in cgroups.splitlines():
        match = _UNIT_RE.search(line.split(":", 2)[-1])
        if match:
            return match.group(1).replace("\\x40", "@")
    return None


def listening_sockets(proc: str | os.PathLike = "/proc") -> list[dict]:
    """Every listening TCP socket: address, port, and (when known) pid, command, unit."""
    proc = pathlib.Path(proc)
    rows = []
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text(encoding="utf-8").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != LISTEN:
                continue
            hexaddr, hexport = fields[1].split(":")
            rows.append(
                {"address": _hex_to_ip(hexaddr), "port": int(hexport, 16), "inode": fields[9]}
            )
    if not rows:
        return rows
    owners = _socket_owners(proc)
    for row in rows:
        pid = owners.get(row.pop("inode"))
        row["pid"] = pid
        row["unit"] = _unit_of(proc, pid) if pid else None
        try:
            row["command"] = (proc / str(pid) / "comm").read_text().strip() if pid else None
        except OSError:
            row["command"] = None
    return sorted(rows, key=lambda r: (r["port"], r["address"]))
