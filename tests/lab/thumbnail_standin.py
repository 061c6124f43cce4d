"""opskit lab STAND-IN for Seafile's thumbnail server. It is NOT Seafile's thumbnail server.

The real service (``seafileltd/thumbnail-server``) cannot run on the machines that test
opskit: it ships only as a Docker image, there is no registry access here, and it needs
a Seafile installation (MySQL, Seahub, its storage). The lab packages this program as a
release of the thumbnail server laid out like upstream's image (``thumbnail-server/main.py``
next to ``seafile/lib/python3/site-packages/seafobj``; see thumbnail_artifacts.py), so that
the opskit formula installs, configures and runs it exactly as it would a site's build of
the real one. What it shares with upstream (haiwen/seafile-thumbnail-server, Seafile 13.0;
each behaviour names the upstream file it follows):

- it listens on 127.0.0.1:8088 (``main.py``: ``uvicorn.Config(app, port=8088)``, uvicorn's
  default host) and answers only GET (``app.py``: other methods get 405);
- routing happens on the request path with ``SITE_ROOT`` cut off the front
  (``seafile_thumbnail/http_request.py`` ``parse_url``: ``'/' + path[len(SITE_ROOT):]``,
  by length, without checking the prefix): ``<SITE_ROOT>ping`` answers ``pong`` and
  ``<SITE_ROOT>thumbnail/<repo id>/<size>/<path>`` returns a thumbnail; under a
  ``SITE_ROOT`` other than ``/``, a bare ``/ping`` is not found;
- it imports its storage layer ``seafobj`` at start-up and exits without it, as upstream
  does when ``PYTHONPATH`` lacks ``seafile/lib/python3/site-packages``
  (``docker/scripts/thumbnail-runit.sh``); files are read through
  ``fs_mgr.load_seafile(...).get_content()`` (``seafile_thumbnail/utils.py``);
- images: refused with 400 above ``THUMBNAIL_IMAGE_SIZE_LIMIT`` MB on disk (default 30) or
  ``THUMBNAIL_IMAGE_ORIGINAL_SIZE_LIMIT`` MB as width x height x 4 bytes (default 256),
  otherwise scaled to fit ``size`` x ``size`` with Pillow (LANCZOS), JPEG, or PNG for
  images with transparency or a palette (``seafile_thumbnail/thumbnail.py``
  ``_create_thumbnail_common``, ``settings.py``);
- PDF (``.pdf``, ``.ai``): the first page rendered by poppler's ``pdftoppm -png -r 150 -f 1
  -l 1 -scale-to 1024 -singlefile <file> -o <prefix>`` (``thumbnail.py`` ``pdf_to_images``);
  video (``.mp4``, ``.ogv``, ``.webm``, ``.mov``): ``ffprobe`` for the duration, then
  ``ffmpeg -i <file> -ss <t> -vframes 1 -nostdin <png>`` at t = 5 s, or half the duration
  for videos shorter than 5.1 s (``thumbnail.py`` ``create_video_thumbnails``,
  ``THUMBNAIL_VIDEO_FRAME_TIME``, ``SAFETY_MARGIN``). Without poppler-utils or ffmpeg on
  the host these fail, as upstream's do;
- image, PDF and video jobs run on separate thread pools of ``THUMBNAIL_TASK_WORKERS``
  threads each (default 3; ``seafile_thumbnail/thumbnail_task_manager.py``);
- it watches its own memory: once a minute (the first check at start-up) it reads its
  resident set size from ``/proc/self/statm`` and, above ``THUMBNAIL_MEMORY_LIMIT`` MB
  (default 4096), logs that and exits with status 1 so that its supervisor restarts it
  (``thumbnail_task_manager.py`` ``MEMORY_LIMIT_MB``, ``_check_memory_and_exit``; runit in
  upstream's image, systemd's ``Restart=`` here);
- ``JWT_PRIVATE_KEY`` and ``INNER_SEAHUB_SERVICE_URL`` must be set (upstream's compose
  file requires them), or it exits with an error naming them; ``LOG_DIR`` gets
  ``thumbnail.log``.

What it does not do: Seafile's storage (see thumbnail_seafobj.py: plain files instead of
content-addressed blocks, S3 or MySQL lookups), authentication against Seahub (no session
or JWT checks), share links, ``/create/`` task polling, SVG, PSD, XMind and SeaDoc
thumbnails, the large-PDF page-size check with ``pdfinfo`` above
``THUMBNAIL_PDF_SIZE_LIMIT``, caching headers, and uvicorn.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import http.server
import importlib
import io
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

from PIL import Image

HOST, PORT = "127.0.0.1", 8088
THUMB_RE = re.compile(r"^/thumbnail/(?P<repo>[-0-9a-f]{36})/(?P<size>[0-9]+)/(?P<path>.+)$")
MAX_SIZE = 1024
# seafile_thumbnail/utils.py PREVIEW_FILEEXT (the kinds the stand-in makes).
IMAGE_EXT = {"gif", "jpeg", "jpg", "png", "ico", "bmp", "tif", "tiff", "webp", "jfif"}
PDF_EXT = {"pdf", "ai"}
VIDEO_EXT = {"mp4", "ogv", "webm", "mov"}
VIDEO_FRAME_TIME = 5  # settings.py THUMBNAIL_VIDEO_FRAME_TIME
SAFETY_MARGIN = 0.1  # settings.py SAFETY_MARGIN
MEMORY_CHECK_INTERVAL = 60  # thumbnail_task_manager.py: check_and_restart_threads sleeps 60 s
PAGE_SIZE = 4096  # thumbnail_task_manager.py multiplies statm pages by 4096
TOOL_TIMEOUT = 60  # thumbnail.py: pdftoppm runs with timeout=60

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
        self.memory_limit_mb = int(env.get("THUMBNAIL_MEMORY_LIMIT", 4096))
        # settings.py: SITE_ROOT = os.getenv('SITE_ROOT') or '/'
        self.site_root = env.get("SITE_ROOT") or "/"
        self.thumbnail_root = env.get("THUMBNAIL_ROOT", "/opt/seafile/seahub-data/thumbnail")
        self.log_dir = env.get("LOG_DIR", "/opt/seafile/logs")


def route_path(path: str, site_root: str) -> str:
    """The path the app routes on (http_request.py ``parse_url``)."""
    if site_root == "/":
        return path
    return "/" + path[len(site_root) :].lstrip("/")


def kind_of(name: str) -> str | None:
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    for kind, exts in (("image", IMAGE_EXT), ("pdf", PDF_EXT), ("video", VIDEO_EXT)):
        if ext in exts:
            return kind
    return None


def save_thumbnail(config: Config, source, size: int, target: str) -> None:
    """Scale ``source`` (a path or a file object) into ``target`` (thumbnail.py
    ``_create_thumbnail_common``)."""
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
    partial = f"{target}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(partial, "wb") as handle:
        handle.write(out.getvalue())
    os.replace(partial, target)


def _tool(argv: list[str]) -> str:
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False
        )
    except FileNotFoundError as err:
        raise RuntimeError(f"{argv[0]} is not installed ({err})") from err
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {(proc.stderr or proc.stdout).strip()[-300:]}")
    return proc.stdout


def pdf_thumbnail(config: Config, content: bytes, size: int, target: str) -> None:
    with tempfile.TemporaryDirectory(prefix="pdf_") as tmp:
        source, prefix = os.path.join(tmp, "source.pdf"), os.path.join(tmp, "page")
        with open(source, "wb") as handle:
            handle.write(content)
        # As upstream: pdftoppm's -o means "odd pages only"; the prefix is its PPM-root.
        _tool(["pdftoppm", "-png", "-r", "150", "-f", "1", "-l", "1", "-scale-to", "1024",
               "-singlefile", source, "-o", prefix])  # fmt: skip
        if not os.path.isfile(prefix + ".png") or not os.path.getsize(prefix + ".png"):
            raise RuntimeError("The thumbnail image generated by pdftoppm is empty")
        save_thumbnail(config, prefix + ".png", size, target)


def video_thumbnail(config: Config, content: bytes, size: int, target: str) -> None:
    with tempfile.TemporaryDirectory(prefix="video_") as tmp:
        source, frame = os.path.join(tmp, "source.mp4"), os.path.join(tmp, "thumbnail.png")
        with open(source, "wb") as handle:
            handle.write(content)
        duration = float(
            _tool(["ffprobe", "-v", "error", "-show_entries", "format=duration",
                   "-of", "default=noprint_wrappers=1:nokey=1", source]).strip()
        )  # fmt: skip
        at = VIDEO_FRAME_TIME if duration - SAFETY_MARGIN >= VIDEO_FRAME_TIME else duration / 2
        _tool(["ffmpeg", "-i", source, "-ss", str(at), "-vframes", "1", "-nostdin", frame])
        if not os.path.isfile(frame) or not os.path.getsize(frame):
            raise RuntimeError("The thumbnail image generated by ffmpeg is empty")
        save_thumbnail(config, frame, size, target)


def make_thumbnail(config: Config, seafile, kind: str, size: int, target: str) -> None:
    """Write the thumbnail of ``seafile`` (a seafobj file) to ``target``."""
    if kind == "image":
        if seafile.size > config.size_limit_mb * 1024**2:
            raise Refused(400, "The image size exceeds the limit")
        save_thumbnail(config, io.BytesIO(seafile.get_content()), size, target)
    elif kind == "pdf":
        pdf_thumbnail(config, seafile.get_content(), size, target)
    else:
        video_thumbnail(config, seafile.get_content(), size, target)


def resident_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * PAGE_SIZE / 1024 / 1024


def over_memory_limit(limit_mb: int, rss_mb: float) -> bool:
    if rss_mb > limit_mb:
        log.warning("Memory usage %.0fMB exceeds limit %dMB, exiting for restart", rss_mb, limit_mb)
        return True
    return False


def watch_memory(limit_mb: int, interval: float = MEMORY_CHECK_INTERVAL) -> None:
    while True:
        try:
            if over_memory_limit(limit_mb, resident_mb()):
                logging.shutdown()
                os._exit(1)
        except OSError as err:
            log.error("Failed to check memory: %s", err)
        time.sleep(interval)


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
        raw = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        path = route_path(raw, self.server.config.site_root)
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
            log.exception("thumbnail %s failed", raw)
            self._send(500, b"Internal Server Error")

    def _not_allowed(self):
        self._send(405, f"Method {self.command} not allowed".encode())

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _not_allowed


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, config: Config, storage, address=(HOST, PORT)):
        super().__init__(address, Handler)
        self.config = config
        self.storage = storage
        self.pools = {
            kind: concurrent.futures.ThreadPoolExecutor(config.workers, f"{kind}-manager")
            for kind in ("image", "pdf", "video")
        }

    def thumbnail(self, repo: str, size: int, rel: str) -> tuple[int, bytes, str]:
        if not 1 <= size <= MAX_SIZE:
            raise Refused(400, f"size must be from 1 to {MAX_SIZE}")
        kind = kind_of(rel)
        if kind is None:
            raise Refused(400, "file type not supported")
        try:
            seafile = self.storage.load_seafile(repo, 1, rel)
        except Exception as err:
            raise Refused(404, "File not found") from err
        key = hashlib.sha1(  # noqa: S324 - a cache key, not security
            f"{repo}/{rel}:{seafile.mtime_ns}:{seafile.size}".encode()
        ).hexdigest()
        target = os.path.join(self.config.thumbnail_root, str(size), key)
        if not os.path.exists(target):
            job = self.pools[kind].submit(make_thumbnail, self.config, seafile, kind, size, target)
            job.result()
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
    try:
        seafobj = importlib.import_module("seafobj")
    except ImportError as err:
        log.error("cannot import seafobj (is its directory on PYTHONPATH?): %s", err)
        return 1
    # As upstream's main.py: the task manager (and its memory monitor) starts before the
    # HTTP server binds.
    threading.Thread(
        target=watch_memory, args=(config.memory_limit_mb,), name="ThreadMonitor", daemon=True
    ).start()
    server = Server(config, seafobj.fs_mgr)
    log.info(
        "opskit lab stand-in for Seafile's thumbnail server on %s:%d (%d workers per queue, "
        "SITE_ROOT %s, memory limit %d MB)",
        HOST,
        PORT,
        config.workers,
        config.site_root,
        config.memory_limit_mb,
    )
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
