"""Real HTTP(S) servers on 127.0.0.1 for the CMDB ext_pillar's tests and benchmark.

- ``SampleCmdb`` runs the lab's sample CMDB (``tests/lab/cmdb_server.py``: SQLite
  records, basic auth, ETags, latency, a JSON-lines log of raw request targets) in this
  process, on an ephemeral port, with a certificate from a throwaway trustme CA.
- ``ScriptedServer`` answers from a script (status, headers, body, delays, redirects)
  and records every request it receives, headers included. It stands in for CMDB
  misbehaviour the sample CMDB cannot produce on demand (5xx, 403, redirects, lying
  Content-Length, slow bodies, client-certificate checks).

Both are real servers over real sockets; only what they answer is arranged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import json
import pathlib
import socket
import sqlite3
import ssl
import threading
import time

import trustme

from tests.lab import cmdb_server

USERNAME = "salt"
PASSWORD = "s3cr3t-Pa55word-for-tests"


@dataclasses.dataclass
class Tls:
    """A throwaway CA and certificates written to ``directory``."""

    directory: pathlib.Path
    ca: trustme.CA
    server_cert: trustme.LeafCert
    ca_file: pathlib.Path
    client_cert_file: pathlib.Path
    client_key_file: pathlib.Path

    @classmethod
    def create(cls, directory: pathlib.Path, names=("127.0.0.1", "localhost")) -> Tls:
        directory.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        server_cert = ca.issue_cert(*names)
        ca_file = directory / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        client = ca.issue_cert("salt-master.client")
        client_cert_file, client_key_file = directory / "client.pem", directory / "client.key"
        client.cert_chain_pems[0].write_to_path(str(client_cert_file))
        client.private_key_pem.write_to_path(str(client_key_file))
        client_key_file.chmod(0o600)
        return cls(directory, ca, server_cert, ca_file, client_cert_file, client_key_file)

    def server_context(self, require_client_cert: bool = False) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server_cert.configure_cert(context)
        if require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            self.ca.configure_trust(context)
        return context


def write_secret(path: pathlib.Path, secret: str, mode: int = 0o600) -> pathlib.Path:
    path.write_text(secret + "\n", encoding="utf-8")
    path.chmod(mode)
    return path


class _TrackingHTTPServer(http.server.ThreadingHTTPServer):
    """Remembers open client connections so that stop() can cut kept-alive ones, as a
    stopped CMDB process would (a pooled client would otherwise go on being served)."""

    daemon_threads = True

    def __init__(self, *args, **kwargs):
        self.connections = set()
        self.connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address):
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def cut_connections(self):
        with self.connections_lock:
            connections, self.connections = list(self.connections), set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                connection.close()


class _Server:
    """A ThreadingHTTPServer on 127.0.0.1:<ephemeral> in a daemon thread."""

    def __init__(self, handler, tls_context: ssl.SSLContext | None):
        self.httpd = _TrackingHTTPServer(("127.0.0.1", 0), handler)
        if tls_context is not None:
            self.httpd.socket = tls_context.wrap_socket(self.httpd.socket, server_side=True)
        self.scheme = "https" if tls_context is not None else "http"
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop listening and cut every open connection (idempotent)."""
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(timeout=5)
        self.httpd.cut_connections()


class SampleCmdb(_Server):
    """The lab's sample CMDB, served in-process (its own Handler subclass and store)."""

    def __init__(self, directory: pathlib.Path, tls: Tls | None, latency_ms: float = 0.0):
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.store = cmdb_server.Store(directory / "cmdb.sqlite")
        self.request_log = directory / "requests.jsonl"
        self.request_log.touch()
        self.in_flight = 0
        self.in_flight_lock = threading.Condition()
        outer = self

        def counted(handler):
            with outer.in_flight_lock:
                outer.in_flight += 1
            try:
                cmdb_server.Handler._guarded(handler)
            finally:
                with outer.in_flight_lock:
                    outer.in_flight -= 1
                    outer.in_flight_lock.notify_all()

        attrs = {
            "do_GET": counted,
            "do_PUT": counted,
            "do_PATCH": counted,
            "do_DELETE": counted,
            "store": self.store,
            "username": USERNAME,
            "password": PASSWORD,
            "latency": latency_ms / 1000.0,
            "webhook": cmdb_server.Webhook(None, None, lambda entry: None),
            "request_log": self.request_log,
            "log_lock": threading.Lock(),
        }
        handler = type("SampleCmdbHandler", (cmdb_server.Handler,), attrs)
        super().__init__(handler, tls.server_context() if tls else None)

    @property
    def url(self) -> str:
        return f"{self.base}/assets/salt/{{minion_id}}/pillars/"

    def put(self, minion_id: str, record) -> None:
        self.store.put(minion_id, record)

    def put_many(self, records: dict) -> None:
        """Load many records in one transaction (the benchmark's 2,000 hosts)."""
        with sqlite3.connect(self.store.path) as db:
            db.executemany(
                "INSERT OR REPLACE INTO assets VALUES (?, ?, 1, ?)",
                [(k, json.dumps(v, sort_keys=True), time.time()) for k, v in records.items()],
            )

    def put_raw(self, minion_id: str, text: str) -> None:
        """Store a record's body verbatim (for invalid-JSON answers)."""
        with sqlite3.connect(self.store.path) as db:
            db.execute(
                "INSERT OR REPLACE INTO assets VALUES (?, ?, 1, ?)", (minion_id, text, time.time())
            )

    def requests(self) -> list[dict]:
        """The request log, once requests being answered have been logged too (the
        server logs after sending, so a client can see the answer first)."""
        with self.in_flight_lock:
            self.in_flight_lock.wait_for(lambda: self.in_flight == 0, timeout=5)
        lines = self.request_log.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def clear_log(self) -> None:
        self.request_log.write_text("", encoding="utf-8")


@dataclasses.dataclass
class Reply:
    """One scripted answer."""

    status: int = 200
    body: bytes = b"{}"
    headers: dict = dataclasses.field(default_factory=dict)
    delay: float = 0.0  # before the status line
    drip: float = 0.0  # between body bytes (a slow body)
    drip_head: float = 0.0  # between bytes of the status line and headers
    content_length: int | None = None  # None: the real length


class ScriptedServer(_Server):
    """Answers each request with the next scripted Reply (the last one repeats)."""

    def __init__(self, tls_context: ssl.SSLContext | None = None):
        self.replies: list[Reply] = [Reply()]
        self.received: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):
                pass

            def do_GET(self):
                with outer.lock:
                    outer.received.append(
                        {
                            "method": "GET",
                            "target": self.path,
                            "headers": dict(self.headers),
                            "client": self.client_address,
                            "time": time.time(),
                        }
                    )
                    reply = outer.replies.pop(0) if len(outer.replies) > 1 else outer.replies[0]
                time.sleep(reply.delay)
                length = len(reply.body) if reply.content_length is None else reply.content_length
                try:
                    if reply.drip_head:
                        self._drip_head(reply, length)
                    else:
                        self.send_response(reply.status)
                        for key, value in reply.headers.items():
                            self.send_header(key, value)
                        self.send_header("Content-Length", str(length))
                        self.end_headers()
                    if reply.drip:
                        for index in range(len(reply.body)):
                            self.wfile.write(reply.body[index : index + 1])
                            self.wfile.flush()
                            time.sleep(reply.drip)
                    else:
                        self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    self.close_connection = True

            def _drip_head(self, reply, length):
                lines = [f"HTTP/1.1 {reply.status} {self.responses[reply.status][0]}"]
                lines += [f"{k}: {v}" for k, v in reply.headers.items()]
                lines += [f"Content-Length: {length}", "", ""]
                for byte in "\r\n".join(lines).encode("latin-1"):
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(reply.drip_head)

        super().__init__(Handler, tls_context)

    @property
    def url(self) -> str:
        return f"{self.base}/assets/salt/{{minion_id}}/pillars/"

    def script(self, *replies: Reply) -> None:
        with self.lock:
            self.replies = list(replies)
            self.received = []
