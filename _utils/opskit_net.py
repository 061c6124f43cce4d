"""TCP endpoints for opskit's formulas and modules: the one listen-address parser
(``parse_listen``/``format_listen``/``probe_host``), whether two listeners would
collide, and what is listening on this host and which systemd unit owns it.

Listening sockets come from ``psutil`` (a Salt dependency); the owning systemd unit is
read from ``/proc/<pid>/cgroup``. Reading other users' sockets' owners needs root; a
socket whose owner cannot be found is reported with ``pid``/``unit`` None (and counts
as foreign when checking for collisions).

IPv6 scope ids (``fe80::1%eth0``) are refused everywhere: a ``%`` would reach config
files (nginx, systemd specifiers) and link-local listeners are not what opskit manages.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import pathlib
import re

_UNIT_RE = re.compile(r"/([^/]+\.(?:service|scope))(?:/|\Z)")
# A Docker container's cgroup: /docker/<id> (cgroupfs driver) or docker-<id>.scope (systemd).
_CONTAINER_RE = re.compile(r"/docker[/-]([0-9a-f]{64})(?:\.scope)?(?=/|\s|\Z)")
_HOSTNAME_RE = re.compile(
    r"(?=.{1,253}\Z)(?:(?!-)[A-Za-z0-9-]{1,63}(?<!-)\.)*(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
)


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


def _is_port(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 5 and 1 <= int(text) <= 65535


def _ip_host(text, host: str) -> str:
    """``host`` as a normalised IP address; scope ids are refused."""
    if "%" in host:
        raise ValueError(f"{text!r}: IPv6 scope ids (%zone) are not supported")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        raise ValueError(f"{text!r}: {host!r} is not an IP address") from None


def parse_listen(  # noqa: PLR0912 - one branch per accepted spelling
    listen, default_port: int | None = None, *, allow_hostname: bool = False
):
    """The one listen-address parser: ``":9100"``, ``"0.0.0.0:9100"``, ``"[::1]:9100"``,
    ``"127.0.0.1"`` (with ``default_port``), ``9100`` or ``"9100"`` -> ``(host, port)``.

    An empty host means every address; None/"" means every address on
    ``default_port``. Hosts are IP addresses (normalised; IPv6 in brackets, no scope
    id), or DNS names when ``allow_hostname`` is set. Raises ValueError saying what is
    wrong and what a valid value looks like.
    """
    example = "for example 127.0.0.1:9100, :9100 or [::1]:9100"
    if listen is None or listen == "":
        if default_port is None:
            raise ValueError(f"a listen address is required ({example})")
        return "", default_port
    if isinstance(listen, bool) or not isinstance(listen, (str, int)):
        raise ValueError(f"{listen!r} is not a listen address ({example})")
    if isinstance(listen, int):
        host, port_text = "", str(listen)
    else:
        text = listen
        if text.startswith("["):
            inner, bracket, rest = text[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                raise ValueError(f"{listen!r} is not a listen address ({example})")
            host = _ip_host(listen, inner)
            if ":" not in host:
                raise ValueError(f"{listen!r}: brackets are for IPv6 addresses only")
            port_text = rest[1:] if rest else ""
        elif text.count(":") > 1:
            raise ValueError(f"{listen!r}: write IPv6 addresses in brackets, [::1]:9100")
        elif ":" in text:
            host, port_text = text.split(":")
        elif _is_port(text):
            host, port_text = "", text
        else:
            host, port_text = text, ""
        if not port_text:
            if default_port is None:
                raise ValueError(f"{listen!r}: a port is required ({example})")
            port_text = str(default_port)
        if host and not text.startswith("["):
            try:
                host = _ip_host(listen, host)
            except ValueError:
                if not (allow_hostname and _HOSTNAME_RE.fullmatch(host)):
                    what = "an IP address or host name" if allow_hostname else "an IP address"
                    raise ValueError(f"{listen!r}: {host!r} is not {what}") from None
    if not _is_port(port_text):
        raise ValueError(f"{listen!r}: the port must be a number from 1 to 65535")
    return host, int(port_text)


def format_listen(host: str, port: int) -> str:
    """``(host, port)`` -> ``host:port``, IPv6 hosts in brackets; "" -> ``:port``."""
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def probe_host(listen_host: str) -> str:
    """Where a client on this host reaches a listener: wildcards mean loopback
    (``::`` -> ``::1``)."""
    if listen_host in ("", "0.0.0.0"):  # noqa: S104 - a comparison, not a bind
        return "127.0.0.1"
    if listen_host == "::":
        return "::1"
    return listen_host


def _command(proc: pathlib.Path, pid: int) -> str | None:
    try:
        return (proc / str(pid) / "comm").read_text(encoding="utf-8").strip()
    except OSError:
        return None


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


def _container_of(proc: pathlib.Path, pid: int) -> str | None:
    try:
        cgroups = (proc / str(pid) / "cgroup").read_text(encoding="utf-8")
    except OSError:
        return None
    match = _CONTAINER_RE.search(cgroups)
    return match.group(1) if match else None


def listening_sockets(proc: str | os.PathLike = "/proc") -> list[dict]:
    """Every listening TCP socket: address, port, and (when known) pid, command, unit,
    and the id of the Docker container the process runs in.

    The socket table and the owning PIDs come from ``psutil.net_connections`` (which
    reads ``<proc>/net/tcp{,6}`` and matches socket inodes in ``<proc>/<pid>/fd``);
    ``proc`` points psutil at another procfs mount (tests build one). The command
    and the systemd unit come from ``<proc>/<pid>/comm`` and ``/cgroup``, which psutil
    does not parse. IPv4-mapped IPv6 addresses are shown as IPv4.
    """
    import psutil

    proc = pathlib.Path(proc)
    previous = psutil.PROCFS_PATH
    psutil.PROCFS_PATH = str(proc)
    try:
        connections = psutil.net_connections(kind="tcp")
    finally:
        psutil.PROCFS_PATH = previous
    rows = []
    for conn in connections:
        if conn.status != psutil.CONN_LISTEN or not conn.laddr:
            continue
        addr = ipaddress.ip_address(conn.laddr.ip)
        address = str(getattr(addr, "ipv4_mapped", None) or addr)
        pid = conn.pid
        rows.append(
            {
                "address": address,
                "port": conn.laddr.port,
                "pid": pid,
                "unit": _unit_of(proc, pid) if pid else None,
                "container": _container_of(proc, pid) if pid else None,
                "command": _command(proc, pid) if pid else None,
            }
        )
    return sorted(rows, key=lambda r: (r["port"], r["address"]))
