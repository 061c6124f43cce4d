"""A Pillow thumbnailing service, the shape of the one that grew to 3 GB under glibc.

Many threads decode JPEGs of varied sizes in full, make thumbnails of varied sizes,
encode them as JPEG, PNG or WebP, and keep results in a bounded LRU cache (long-lived
small objects interleaved with large short-lived image buffers: what fragments glibc's
per-thread arenas). Runs until stopped; every few seconds it writes the number of
thumbnails made so far to STATUS_FILE. Runs inside a lab minion with Debian's
python3-pil; it has no dependency on opskit.
"""

import collections
import io
import os
import random
import threading
import time

from PIL import Image

THREADS = int(os.environ.get("THREADS", "12"))
SOURCES = int(os.environ.get("SOURCES", "24"))
MAX_SIDE = int(os.environ.get("MAX_SIDE", "3000"))
CACHE_ENTRIES = int(os.environ.get("CACHE_ENTRIES", "400"))
STATUS_FILE = os.environ["STATUS_FILE"]
SEED = int(os.environ.get("SEED", "1"))


def make_source(rng: random.Random) -> bytes:
    width = rng.randint(MAX_SIDE // 8, MAX_SIDE)
    height = rng.randint(MAX_SIDE // 8, MAX_SIDE)
    noise = Image.effect_noise((width, height), rng.randint(20, 90))
    image = Image.merge("RGB", (noise, noise.rotate(90, expand=False), noise.transpose(0)))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=rng.randint(70, 95))
    return out.getvalue()


class Cache:
    """A bounded LRU of encoded thumbnails, shared by all threads."""

    def __init__(self, entries: int):
        self.entries = entries
        self.data = collections.OrderedDict()
        self.lock = threading.Lock()

    def put(self, key, value) -> None:
        with self.lock:
            self.data[key] = value
            self.data.move_to_end(key)
            while len(self.data) > self.entries:
                self.data.popitem(last=False)


def worker(index: int, sources: list, cache: Cache, counts: list) -> None:
    rng = random.Random(SEED * 1000 + index)
    formats = ("JPEG", "PNG", "WEBP")
    while True:
        image = Image.open(io.BytesIO(rng.choice(sources)))
        image.load()  # full decode: the big allocation a thumbnail server makes
        side = rng.choice((64, 128, 256, 400, 640, 1024))
        thumb = image.copy()
        thumb.thumbnail((side, side))
        out = io.BytesIO()
        thumb.save(out, rng.choice(formats))
        cache.put((index, counts[index] % 997, side), out.getvalue())
        counts[index] += 1


def main() -> None:
    rng = random.Random(SEED)
    sources = [make_source(rng) for _ in range(SOURCES)]
    cache = Cache(CACHE_ENTRIES)
    counts = [0] * THREADS
    for index in range(THREADS):
        threading.Thread(target=worker, args=(index, sources, cache, counts), daemon=True).start()
    started = time.monotonic()
    while True:
        time.sleep(2)
        with open(STATUS_FILE + ".tmp", "w", encoding="utf-8") as handle:
            handle.write(f"{sum(counts)} {time.monotonic() - started:.1f}\n")
        os.replace(STATUS_FILE + ".tmp", STATUS_FILE)


if __name__ == "__main__":
    main()
