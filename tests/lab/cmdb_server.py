"""The lab's sample CMDB: per-minion pillar records over HTTP(S) with basic auth.

Records live in SQLite. The API is the shape opskit's ext_pillar expects from a CMDB:

    GET    /assets/salt/<minion_id>/pillars/   the record (a JSON object), with an ETag;
                                                 If-None-Match answers 304
    PUT    /assets/salt/<minion_id>/pillars/   replace the record
    PATCH  /assets/salt/<minion_id>/pillars/   JSON merge patch (RFC 7386)
    DELETE /assets/salt/<minion_id>/pillars/   remove the record
    GET    /assets/salt/                       the list of minion ids
    GET    /healthz                            liveness, no auth

Every other path is 404. Edits can post a webhook whose body is signed with
HMAC-SHA256 (header ``X-CMDB-Signature: sha256=<hex>``). Each request is appended to a
JSON-lines log with the raw request target, so tests can assert what the server received.

Run: ``python -m tests.lab.cmdb_server --db FILE --listen HOST:PORT [--tls-cert --tls-key]
--credentials FILE [--latency-ms N] [--webhook-url URL --webhook-secret-file FILE]``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import http.server
import json
import pathlib
import sqlite3
import ssl
import sys
import threading
import time
import urllib.parse
import urllib.request

PREFIX = "/assets/salt/"


def merge_patch(target, patch):
    """Apply an RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class Store:
    """SQLite-backed records: minion id -> (JSON object, revision)."""

    def __init__(self, path: pathlib.Path):
        self.path = path
        self.lock = threading.Lock()
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS assets ("
                " minion_id TEXT PRIMARY KEY, pillar TEXT NOT NULL,"
                " revision INTEGER NOT NULL, updated REAL NOT NULL)"
            )

    def _connect(self):
        return sqlite3.connect(self.path, timeout=10)

    def get(self, minion_id: str) -> tuple[str, int] | None:
        with contextlib.closing(self._connect()) as db:
            row = db.execute(
                "SELECT pillar, revision FROM assets WHERE minion_id = ?", (minion_id,)
            ).fetchone()
        return (row[0], row[1]) if row else None

    def ids(self) -> list[str]:
        with contextlib.closing(self._connect()) as db:
            return [r[0] for r in db.execute("SELECT minion_id FROM assets ORDER BY minion_id")]

    def put(self, minion_id: str, record: dict) -> int:
        with self.lock, self._connect() as db:
            row = db.execute(
                "SELECT revision FROM assets WHERE minion_id = ?", (minion_id,)
            ).fetchone()
            revision = (row[0] if row else 0) + 1
            db.execute(
                "INSERT OR REPLACE INTO assets VALUES (?, ?, ?, ?)",
                (minion_id, json.dumps(record, sort_keys=True), revision, time.time()),
            )
        return revision

    def patch(self, minion_id: str, patch: dict) -> int:
        current = self.get(minion_id)
        record = json.loads(current[0]) if current else {}
        return self.put(minion_id, merge_patch(record, patch))

    def delete(self, minion_id: str) -> bool:
        with self.lock, self._connect() as db:
            return db.execute("DELETE FROM assets WHERE minion_id = ?", (minion_id,)).rowcount > 0


class Webhook:
    """Posts signed change notifications; failures are logged, never fatal to an edit."""

    def __init__(self, url: str | None, secret: bytes | None, log):
        self.url, self.secret, self.log = url, secret, log

    def notify(self, event: str, minion_id: str, revision: int | None) -> None:
        if not self.url:
            return
        body = json.dumps(
            {
                "event": event,
                "minion_id": minion_id,
                "revision": revision,
                "timestamp": int(time.time()),
            },
            sort_keys=True,
        ).encode()
        threading.Thread(target=self._post, args=(body,), daemon=True).start()

    def _post(self, body: bytes) -> None:
        headers = {"Content-Type": "application/json"}
        if self.secret:
            digest = hmac.new(self.secret, body, hashlib.sha256).hexdigest()
            headers["X-CMDB-Signature"] = f"sha256={digest}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                self.log({"webhook": self.url, "status": response.status})
        except OSError as err:
            self.log({"webhook": self.url, "error": str(err)})


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so clients can reuse connections
    # TCP_NODELAY, as production HTTP servers set it: headers and body go out in separate
    # writes, and with Nagle's algorithm the body waits for the client's delayed ACK
    # (~40 ms per request on Linux), which would dwarf everything a client does.
    disable_nagle_algorithm = True

    def setup(self):
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(30)  # a client that never completes the handshake
            self.request.do_handshake()
            self.request.settimeout(None)  # idle keep-alive connections stay open
        super().setup()

    server_version = "opskit-lab-cmdb/1"

    # Set on the class by serve().
    store: Store
    username: str
    password: str
    latency: float = 0.0
    webhook: Webhook
    request_log: pathlib.Path | None = None
    log_lock = threading.Lock()

    def log_message(self, format, *args):
        pass  # requests go to the JSON-lines log instead

    def _record(self, entry: dict) -> None:
        if self.request_log is None:
            return
        line = json.dumps({"time": time.time(), **entry}) + "\n"
        with self.log_lock, open(self.request_log, "a", encoding="utf-8") as handle:
            handle.write(line)

    def _send(self, status: int, payload=None, headers: dict | None = None, raw=None) -> None:
        """Send a JSON response (``payload`` serialised, or ``raw`` JSON bytes as stored)."""
        body = raw if raw is not None else b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if body:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)
        self._record(
            {
                "method": self.command,
                "target": self.path,
                "status": status,
                "user": self._user(),
                "if_none_match": self.headers.get("If-None-Match"),
            }
        )

    def _user(self) -> str | None:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            return base64.b64decode(header[6:]).decode().split(":", 1)[0]
        except (ValueError, UnicodeDecodeError):
            return None

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return hmac.compare_digest(header.encode(), f"Basic {expected}".encode())

    def _minion_id(self) -> str | None:
        """The minion id if the path is /assets/salt/<one segment>/pillars/, else None."""
        path = urllib.parse.urlsplit(self.path).path
        if not path.startswith(PREFIX) or not path.endswith("/pillars/"):
            return None
        segment = path[len(PREFIX) : -len("/pillars/")]
        if not segment or "/" in segment:
            return None
        return urllib.parse.unquote(segment)

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        value = json.loads(raw or b"null")
        if not isinstance(value, dict):
            raise ValueError("the body must be a JSON object")
        return value

    def _dispatch(self) -> None:
        if self.latency:
            time.sleep(self.latency)
        path = urllib.parse.urlsplit(self.path).path
        if path == "/healthz" and self.command == "GET":
            self._send(200, {"status": "ok"})
            return
        if not self._authorized():
            challenge = {"WWW-Authenticate": 'Basic realm="cmdb"'}
            self._send(401, {"error": "authentication required"}, challenge)
            return
        if path == PREFIX and self.command == "GET":
            self._send(200, self.store.ids())
            return
        minion_id = self._minion_id()
        if minion_id is None:
            self._send(404, {"error": "no such resource"})
            return
        handler = getattr(self, f"_{self.command.lower()}_record", None)
        if handler is None:
            allowed = {"Allow": "GET, PUT, PATCH, DELETE"}
            self._send(405, {"error": f"{self.command} not allowed"}, allowed)
            return
        handler(minion_id)

    def _get_record(self, minion_id: str) -> None:
        found = self.store.get(minion_id)
        if found is None:
            self._send(404, {"error": f"no asset {minion_id!r}"})
            return
        text, revision = found
        etag = '"' + hashlib.sha256(f"{revision}:{text}".encode()).hexdigest()[:20] + '"'
        if self.headers.get("If-None-Match") == etag:
            self._send(304, None, {"ETag": etag})
            return
        self._send(200, headers={"ETag": etag}, raw=text.encode())

    def _put_record(self, minion_id: str) -> None:
        revision = self.store.put(minion_id, self._body())
        self._send(200, {"minion_id": minion_id, "revision": revision})
        self.webhook.notify("asset.updated", minion_id, revision)

    def _patch_record(self, minion_id: str) -> None:
        revision = self.store.patch(minion_id, self._body())
        self._send(200, {"minion_id": minion_id, "revision": revision})
        self.webhook.notify("asset.updated", minion_id, revision)

    def _delete_record(self, minion_id: str) -> None:
        if not self.store.delete(minion_id):
            self._send(404, {"error": f"no asset {minion_id!r}"})
            return
        self._send(200, {"minion_id": minion_id, "deleted": True})
        self.webhook.notify("asset.deleted", minion_id, None)

    def _guarded(self) -> None:
        try:
            self._dispatch()
        except ValueError as err:
            self._send(400, {"error": str(err)})

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST = do_HEAD = _guarded


class QuietServer(http.server.ThreadingHTTPServer):
    """Threading server that does not print a traceback when a client hangs up during
    the TLS handshake (port probes do); other errors are reported as usual."""

    daemon_threads = True

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError)):
            return
        super().handle_error(request, client_address)


def serve(args) -> None:
    credentials = json.loads(pathlib.Path(args.credentials).read_text(encoding="utf-8"))
    Handler.store = Store(pathlib.Path(args.db))
    Handler.username = credentials["username"]
    Handler.password = credentials["password"]
    Handler.latency = args.latency_ms / 1000.0
    Handler.request_log = pathlib.Path(args.request_log) if args.request_log else None
    secret = None
    if args.webhook_secret_file:
        secret = pathlib.Path(args.webhook_secret_file).read_bytes().strip()
    Handler.webhook = Webhook(args.webhook_url, secret, _stderr)

    context = None
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
    servers = []
    for listen in args.listen:
        host, port = listen.rsplit(":", 1)
        server = QuietServer((host, int(port)), Handler)
        if context is not None:
            # Handshake in the request's thread (Handler.setup), not in accept(): a real
            # CMDB handshakes many clients at once, and a serial handshake would make
            # clients that open a new TLS connection per request look worse than they are.
            server.socket = context.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        servers.append(server)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    print(f"cmdb listening on {', '.join(args.listen)} tls={context is not None}", flush=True)
    try:
        for thread in threads:
            thread.join()
    except KeyboardInterrupt:
        pass


def _stderr(entry: dict) -> None:
    print(json.dumps(entry), flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--listen", action="append", required=True, help="HOST:PORT, repeatable")
    parser.add_argument("--credentials", required=True, help='JSON file {"username", "password"}')
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--request-log")
    parser.add_argument("--webhook-url")
    parser.add_argument("--webhook-secret-file")
    serve(parser.parse_args(argv))


if __name__ == "__main__":
    main()
