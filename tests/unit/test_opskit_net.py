"""_utils/opskit_net.py: listen addresses, collisions, and listening sockets read from a
/proc tree (a fake one built in a temporary directory, with real symlinks)."""

from __future__ import annotations

import os

import opskit_net
import pytest


@pytest.mark.parametrize(
    ("text", "host", "port", "wildcard"),
    [
        ("127.0.0.1:8923", "127.0.0.1", 8923, False),
        (":8923", "", 8923, True),
        ("0.0.0.0:9090", "0.0.0.0", 9090, True),  # noqa: S104 - parsing, not binding
        ("[::1]:80", "::1", 80, False),
        ("[::]:443", "::", 443, True),
    ],
)
def test_endpoint_of_a_parsed_listen_address(text, host, port, wildcard):
    endpoint = opskit_net.Endpoint(*opskit_net.parse_listen(text))
    assert (endpoint.host, endpoint.port, endpoint.wildcard) == (host, port, wildcard)
    assert endpoint.text == opskit_net.format_listen(host, port)
    assert opskit_net.Endpoint(*opskit_net.parse_listen(endpoint.text)) == endpoint


@pytest.mark.parametrize(
    ("a", "b", "collide"),
    [
        ("127.0.0.1:8923", "127.0.0.1:8923", True),
        ("127.0.0.1:8923", "127.0.0.2:8923", False),
        ("0.0.0.0:8923", "127.0.0.1:8923", True),
        (":8923", "[::1]:8923", True),
        ("127.0.0.1:8923", "127.0.0.1:8924", False),
        ("[::1]:80", "[0:0:0:0:0:0:0:1]:80", True),
    ],
)
def test_collides(a, b, collide):
    first = opskit_net.Endpoint(*opskit_net.parse_listen(a))
    second = opskit_net.Endpoint(*opskit_net.parse_listen(b))
    assert first.collides(second) is collide
    assert second.collides(first) is collide


TCP_HEADER = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"
    "   uid  timeout inode\n"
)


def _tcp_line(slot, local, remote, state, inode):
    return (
        f"   {slot}: {local} {remote} {state} 00000000:00000000 00:00000000 00000000"
        f"     0        0 {inode} 1 0000000000000000 100 0 0 10 0\n"
    )


def test_listening_sockets_from_a_proc_tree(tmp_path):
    proc = tmp_path
    (proc / "net").mkdir()
    # 127.0.0.1:8923 LISTEN (inode 1234), an ESTABLISHED connection, 0.0.0.0:9201 LISTEN
    (proc / "net" / "tcp").write_text(
        TCP_HEADER
        + _tcp_line(0, "0100007F:22DB", "00000000:0000", "0A", 1234)
        + _tcp_line(1, "0100007F:22DB", "0100007F:D431", "01", 5555)
        + _tcp_line(2, "00000000:23F1", "00000000:0000", "0A", 1235)
    )
    # [::]:443 LISTEN (inode 99), owned by a process whose fds we cannot map
    (proc / "net" / "tcp6").write_text(
        TCP_HEADER
        + _tcp_line(0, "00000000000000000000000000000000:01BB", "0" * 32 + ":0000", "0A", 99)
    )
    pid = proc / "42"
    (pid / "fd").mkdir(parents=True)
    os.symlink("socket:[1234]", pid / "fd" / "3")
    os.symlink("socket:[1235]", pid / "fd" / "4")
    os.symlink("/dev/null", pid / "fd" / "0")
    (pid / "cgroup").write_text(
        "9:name=systemd:/system.slice/system-anubis.slice/anubis@app.service\n"
        "0::/system.slice/system-anubis.slice/anubis@app.service\n"
    )
    (pid / "comm").write_text("anubis\n")

    rows = opskit_net.listening_sockets(proc)

    assert rows == [
        {
            "address": "::",
            "port": 443,
            "pid": None,
            "unit": None,
            "command": None,
            "container": None,
        },
        {
            "address": "127.0.0.1",
            "port": 8923,
            "pid": 42,
            "unit": "anubis@app.service",
            "command": "anubis",
            "container": None,
        },
        {
            "address": "0.0.0.0",  # noqa: S104 - an expected value, not a bind
            "port": 9201,
            "pid": 42,
            "unit": "anubis@app.service",
            "command": "anubis",
            "container": None,
        },
    ]


def test_listening_sockets_name_the_docker_container_of_the_owner(tmp_path):
    """A process in a Docker container (cgroupfs driver: /docker/<id> in every v1
    hierarchy; systemd driver: docker-<id>.scope) is reported with the container id."""
    proc = tmp_path
    (proc / "net").mkdir()
    (proc / "net" / "tcp").write_text(
        TCP_HEADER
        + _tcp_line(0, "0100007F:22DB", "00000000:0000", "0A", 1234)
        + _tcp_line(1, "0100007F:22DC", "00000000:0000", "0A", 1235)
    )
    (proc / "net" / "tcp6").write_text(TCP_HEADER)
    first, second = "a" * 64, "0123456789abcdef" * 4
    cgroups = {
        "42": f"12:memory:/docker/{first}\n1:name=systemd:/docker/{first}\n",
        "43": f"0::/system.slice/docker-{second}.scope\n",
    }
    for inode, (pid, text) in zip((1234, 1235), cgroups.items(), strict=True):
        (proc / pid / "fd").mkdir(parents=True)
        os.symlink(f"socket:[{inode}]", proc / pid / "fd" / "3")
        (proc / pid / "cgroup").write_text(text)
        (proc / pid / "comm").write_text("anubis\n")

    rows = opskit_net.listening_sockets(proc)

    assert [(r["port"], r["container"], r["unit"]) for r in rows] == [
        (8923, first, None),
        (8924, second, f"docker-{second}.scope"),
    ]


def test_listening_sockets_sees_a_real_listener():
    """On this host: a socket we open ourselves shows up, owned by this process."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        rows = [r for r in opskit_net.listening_sockets() if r["port"] == port]
    assert len(rows) == 1, rows
    assert rows[0]["address"] == "127.0.0.1"
    assert rows[0]["pid"] == os.getpid()


@pytest.mark.parametrize(
    ("listen", "default", "expected"),
    [
        (":9100", None, ("", 9100)),
        ("0.0.0.0:9100", None, ("0.0.0.0", 9100)),  # noqa: S104 - parsing, not binding
        ("[::1]:9100", None, ("::1", 9100)),
        ("[0:0::1]:9100", None, ("::1", 9100)),
        ("[::1]", 9100, ("::1", 9100)),
        ("127.0.0.1", 9100, ("127.0.0.1", 9100)),
        (9100, None, ("", 9100)),
        ("9100", None, ("", 9100)),
        (None, 9100, ("", 9100)),
        ("", 9100, ("", 9100)),
    ],
)
def test_parse_listen(listen, default, expected):
    assert opskit_net.parse_listen(listen, default) == expected
    host, port = expected
    assert opskit_net.parse_listen(opskit_net.format_listen(host, port)) == expected


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        ("[::1%eth0]:80", "scope id"),
        ("[::1%x;}]:80", "scope id"),
        ("fe80::1%eth0", "brackets"),
        ("::1:80", "brackets"),
        ("[127.0.0.1]:80", "IPv6 addresses only"),
        ("[::1]x", "not a listen address"),
        ("host:80", "not an IP address"),
        ("1.2.3.4:0", "1 to 65535"),
        ("1.2.3.4:65536", "1 to 65535"),
        (":80\n", "1 to 65535"),
        (":\uff18\uff10", "1 to 65535"),  # fullwidth digits: str.isdigit() says yes
        ("1.2.3.4", "a port is required"),
        (None, "is required"),
        (True, "not a listen address"),
        ("1.2.3.4:80;", "1 to 65535"),
    ],
)
def test_parse_listen_refuses(listen, message):
    with pytest.raises(ValueError, match=message):
        opskit_net.parse_listen(listen)


def test_parse_listen_hostnames_only_when_allowed():
    assert opskit_net.parse_listen("localhost:80", allow_hostname=True) == ("localhost", 80)
    for bad in ["-x:80", "a..b:80", "a_b:80", "a;b:80"]:
        with pytest.raises(ValueError, match="IP address or host name"):
            opskit_net.parse_listen(bad, allow_hostname=True)


def test_probe_host_and_scope_ids():
    assert opskit_net.probe_host("") == "127.0.0.1"
    assert opskit_net.probe_host("0.0.0.0") == "127.0.0.1"  # noqa: S104
    assert opskit_net.probe_host("::") == "::1"
    assert opskit_net.probe_host("10.0.0.1") == "10.0.0.1"
    with pytest.raises(ValueError, match="scope id"):
        opskit_net.parse_listen("[::1%x;}]:80")
