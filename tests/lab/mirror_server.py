"""The lab's artifact mirror: static files over HTTP, with a record of every request.

It serves a directory laid out like upstream release URLs
(``/<owner>/<project>/releases/download/<tag>/<asset>``). ``GET /_lab/requests`` returns
what was requested so far and ``DELETE /_lab/requests`` clears it, so tests can assert
that a second apply downloaded nothing.

Run: ``python -m tests.lab.mirror_server --root DIR --listen HOST:PORT``.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import threading

REQUESTS: list[dict] = []
LOCK = threading.Lock()


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
        super().do_GET()

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
