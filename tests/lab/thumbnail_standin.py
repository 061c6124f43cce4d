"""opskit lab STAND-IN for Seafile's thumbnail server. It is NOT Seafile's thumbnail server.

The real service (``seafileltd/thumbnail-server``) cannot run on the machines that test
opskit: it ships only as a Docker image, there is no Docker engine here, and it needs
a Seafile installation (MySQL, Seahub, its storage). The lab packages this program as
a release of the thumbnail server (``thumbnail-server/main.py``, started the way the
image starts upstream's: ``cd thumbnail-server && exec python3 main.py``), so that the
opskit formula installs, configures and runs it exactly as it would a site's build of
the real one. What it shares with upstream (haiwen/seafile-thumbnail-server, 13.0):

- it listens on 127.0.0.1:8088 (upstream ``main.py``: ``uvicorn.Config(app,
  port=8088)``) and answers ``GET /ping`` with ``pong`` (``app.py``); other methods get
  405;
- ``GET /thumbnail/<repo id>/<size>/<path>`` returns a thumbnail of at most
  ``size`` x ``size`` pixels made with Pillow (``Image.thumbnail``, LANCZOS, JPEG, or
  PNG for images with transparency or a palette), cached under ``THUMBNAIL_ROOT/<size>/``;
- it reads ``THUMBNAIL_TASK_WORKERS`` (the thread pool that makes thumbnails),
  ``THUMBNAIL_IMAGE_SIZE_LIMIT`` (MB on disk) and ``THUMBNAIL_IMAGE_ORIGINAL_SIZE_LIMIT``
  (MB as width x height x 4 bytes) with upstream's defaults (3, 30, 256) and refuses
  images beyond them with 400 as upstream's ``thumbnail.py`` does; ``LOG_DIR`` gets
  ``thumbnail.log``; ``JWT_PRIVATE_KEY`` and ``INNER_SEAHUB_SERVICE_URL`` must be set
  (upstream's compose file requires them), or it exits with an error naming them.

What it does not do: Seafile's storage (source files are plain files under
``SEAFILE_CONF_DIR/<repo id>/<path>`` instead of Seafile's content-addressed blocks,
S3 or MySQL lookups), authentication against Seahub (no session or JWT checks), PDF,
video, SVG, PSD, XMind and SeaDoc thumbnails, share links, and uvicorn. It reads no
``THUMBNAIL_MEMORY_LIMIT`` -- neither does upstream.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import http.server
import io
import logging
import os
import re
import sys
import urllib.parse

from PIL import Image

HOST, PORT = "127.0.0.1", 8088
THUMB_RE = re.compile(r"^/thumbnail/(?P<repo>[-0-9a-f]{36})/(?P<size>[0-9]+)/(?P<path>.+)$")
MAX_SIZE = 1024

log = logging.getLogger("thumbnail-standin")


class Refused(Exception):
    """A request the service answers with 4xx."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Config:
    def __init__(self, env):
        missing = [k for k in ("JWT_PRIVATE_KEY", "INNER_SEAHUB_SERVICE_URL") if not env.get(k)]
        if missing:
            raise SystemExit(f"thumbnail server: {' and '.join(missing)} must be set")
        self.workers = int(env.get("THUMBNAIL_TASK_WORKERS", 3))
        self.size_limit_mb = int(env.get("THUMBNAIL_IMAGE_SIZE_LIMIT", 30))
        self.original_limit_mb = int(env.get("THUMBNAIL_IMAGE_ORIGINAL_SIZE_LIMIT", 256))
        self.source_root = env.get("SEAFILE_CONF_DIR", "/opt/seafile/seafile-data")
        self.thumbnail_root = env.get("THUMBNAIL_ROOT", "/opt/seafile/seahub-data/thumbnail")
        self.log_dir = env.get("LOG_DIR", "/opt/seafile/logs")


def make_thumbnail(config: Config, source: str, size: int, target: str) -> None:
    """Write the thumbnail of ``source`` to ``target`` (JPEG, or PNG with transparency)."""
    if os.path.getsize(source) > config.size_limit_mb * 1024**2:
        raise Refused(400, "The image size exceeds the limit")
    with Image.open(source) as original:
        width, height = original.size
        if width * height * 4 / 1024 / 1024 > config.original_limit_mb:
            raise Refused(400, "Image memory cost exceeds the limit")
        image = original
        if image.mode not in ("1", "L", "P", "RGB", "RGBA"):
            image = image.convert("RGB")
        image.thumbnail((size, size), Image.Resampling.LANCZOS)
        kind = "png" if image.mode in ("RGBA", "P") else "jpeg"
        out = io.BytesIO()
        image.save(out, kind.upper(), quality=85)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    partial = f"{target}.{os.getpid()}.tmp"
    with open(partial, "wb") as handle:
        handle.write(out.getvalue())
    os.replace(partial, target)


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "opskit-thumbnail-standin"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        log.info("%s %s", self.address_string(), fmt % args)

    def _send(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        if path in ("/ping", "/ping/"):
            self._send(200, b"pong")
            return
        match = THUMB_RE.match(path)
        if not match:
            self._send(404, b"Not Found")
            return
        try:
            self._send(*self.server.thumbnail(match["repo"], int(match["size"]), match["path"]))
        except Refused as err:
            self._send(err.status, str(err).encode())
        except Exception:
            log.exception("thumbnail %s failed", path)
            self._send(500, b"Internal Server Error")

    def _not_allowed(self):
        self._send(405, f"Method {self.command} not allowed".encode())

    do_POST = do_PUT = do_DELETE = do_PATCH = _not_allowed


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, config: Config):
        super().__init__((HOST, PORT), Handler)
        self.config = config
        self.pool = concurrent.futures.ThreadPoolExecutor(config.workers, "thumbnail")

    def thumbnail(self, repo: str, size: int, rel: str) -> tuple[int, bytes, str]:
        if not 1 <= size <= MAX_SIZE:
            raise Refused(400, f"size must be from 1 to {MAX_SIZE}")
        root = os.path.realpath(os.path.join(self.config.source_root, repo))
        source = os.path.realpath(os.path.join(root, rel.lstrip("/")))
        if not source.startswith(root + os.sep) or not os.path.isfile(source):
            raise Refused(404, "File not found")
        stat = os.stat(source)
        key = hashlib.sha1(  # noqa: S324 - a cache key, not security
            f"{repo}/{rel}:{stat.st_mtime_ns}:{stat.st_size}".encode()
        ).hexdigest()
        target = os.path.join(self.config.thumbnail_root, str(size), key)
        if not os.path.exists(target):
            self.pool.submit(make_thumbnail, self.config, source, size, target).result()
        with open(target, "rb") as handle:
            data = handle.read()
        return 200, data, "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"


def main() -> int:
    config = Config(os.environ)
    handlers = [logging.StreamHandler(sys.stderr)]
    try:
        os.makedirs(config.log_dir, exist_ok=True)
        handlers.append(logging.FileHandler(os.path.join(config.log_dir, "thumbnail.log")))
    except OSError as err:
        print(f"thumbnail server: cannot log to {config.log_dir}: {err}", file=sys.stderr)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", handlers=handlers)
    server = Server(config)
    log.info(
        "opskit lab stand-in for Seafile's thumbnail server on %s:%d (%d workers)",
        HOST,
        PORT,
        config.workers,
    )
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
