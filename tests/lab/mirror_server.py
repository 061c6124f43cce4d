"""The lab's artifact mirror: static files over HTTP, with a record of every request.

It serves a directory laid out like upstream release URLs
(``/<owner>/<project>/releases/download/<tag>/<asset>``). ``GET /_lab/requests`` returns
what was requested so far and ``DELETE /_lab/requests`` clears it, so tests can assert
that a second apply downloaded nothing.

Tests can also serve a file that is not on disk, for example a tampered tarball next to
a genuine checksum file: ``PUT /_lab/files/<path>`` with the bytes as body serves them
at ``/<path>`` (in this mirror process only, so other labs are never affected) and
``DELETE /_lab/files`` forgets every such file.

Run: ``python -m tests.lab.mirror_server --root DIR --listen HOST:PORT``.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import threading

REQUESTS: list[dict] = []
OVERRIDES: dict[str, bytes] = {}  # URL path -> body served instead of the file tree
LOCK = threading.Lock()
FILES_PREFIX = "/_lab/files/"


class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "opskit-lab-mirror/1"

    def log_message(self, format, *args):
        pass

    def _json(self, status: int, payload) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/_lab/requests":
            with LOCK:
                self._json(200, list(REQUESTS))
            return
        with LOCK:
            REQUESTS.append({"method": "GET", "path": self.path, "client": self.client_address[0]})
            override = OVERRIDES.get(self.path.split("?", 1)[0])
        if override is not None:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(override)))
            self.end_headers()
            self.wfile.write(override)
            return
        super().do_GET()

    def do_PUT(self):
        if not self.path.startswith(FILES_PREFIX):
            self._json(405, {"error": "read-only mirror"})
            return
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        with LOCK:
            OVERRIDES["/" + self.path.removeprefix(FILES_PREFIX)] = body
        self._json(200, {"path": "/" + self.path.removeprefix(FILES_PREFIX), "size": len(body)})

    def do_HEAD(self):
        with LOCK:
            REQUESTS.append({"method": "HEAD", "path": self.path, "client": self.client_address[0]})
        super().do_HEAD()

    def do_DELETE(self):
        if self.path == "/_lab/requests":
            with LOCK:
                REQUESTS.clear()
            self._json(200, [])
            return
        if self.path == "/_lab/files":
            with LOCK:
                OVERRIDES.clear()
            self._json(200, [])
            return
        self._json(405, {"error": "read-only mirror"})

    def list_directory(self, path):
        self.send_error(403, "directory listing is disabled")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--listen", required=True, help="HOST:PORT")
    parser.add_argument("--lab-state", help="the lab's state directory (marks the process)")
    args = parser.parse_args(argv)
    host, port = args.listen.rsplit(":", 1)
    handler = functools.partial(Handler, directory=args.root)
    server = http.server.ThreadingHTTPServer((host, int(port)), handler)
    server.daemon_threads = True
    print(f"mirror serving {args.root} on {args.listen}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
