"""AttemptDeadline: a wall-clock limit that ends a blocked read, on real sockets."""

from __future__ import annotations

import os
import socket
import time

import opskit_cmdb_client


def _blocked_read(seconds: float) -> tuple[bytes, bool, float]:
    """Read from a socket nobody writes to, under a deadline of ``seconds``."""
    reader, writer = socket.socketpair()
    with reader, writer:
        reader.settimeout(30)  # a socket timeout far beyond the deadline
        started = time.monotonic()
        with opskit_cmdb_client.AttemptDeadline(seconds) as deadline:
            opskit_cmdb_client._watch(reader)
            data = reader.recv(1)
        return data, deadline.expired, time.monotonic() - started


def test_the_deadline_ends_a_read_that_a_socket_timeout_would_not():
    data, expired, elapsed = _blocked_read(0.5)
    assert data == b""  # the connection was shut down under the reader
    assert expired
    assert elapsed < 10


def test_a_deadline_that_ended_in_time_leaves_the_connection_alone():
    reader, writer = socket.socketpair()
    with reader, writer:
        with opskit_cmdb_client.AttemptDeadline(0.3) as deadline:
            opskit_cmdb_client._watch(reader)
        time.sleep(0.6)  # past the deadline: the watchdog skips it
        assert not deadline.expired
        writer.sendall(b"x")
        assert reader.recv(1) == b"x"


def test_a_forked_child_gets_its_own_watchdog():
    """The master forks worker processes; a watchdog thread of the parent does not
    exist in the child, whose deadlines must still fire."""
    _blocked_read(0.1)  # the parent's watchdog thread is running now
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        code = 2  # an exception (a socket timeout: no watchdog cut the read)
        try:
            data, expired, elapsed = _blocked_read(0.5)
            code = 0 if data == b"" and expired and elapsed < 10 else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
