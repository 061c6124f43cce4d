"""Benchmark: pillar compiles per second for 2,000 minions against the sample CMDB.

The sample CMDB (tests/lab/cmdb_server.py) runs as its own process on 127.0.0.1 with
HTTPS (a throwaway trustme CA), basic auth and 5 ms added latency per request. Each
row compiles the pillar of all 2,000 minion ids, split over W worker processes (W=1:
one master worker; W=5: Salt's default ``worker_threads``); every client gets the same
W. Rows:

- naive: one ``requests.get`` per minion (new TCP connection and TLS handshake each
  time), like the http_json ext_pillar that left Salt core;
- opskit cold: the ``cmdb`` ext_pillar through Salt's pillar loader, empty cache
  (one pooled keep-alive session per worker process);
- opskit revalidate: copies on disk, ``cache_ttl: 0``: a conditional GET, 304 each;
- opskit warm: ``cache_ttl: 300``, every copy fresh: no request at all.

Figures are printed side by side (requests/s and the ratio to naive at the same W);
nothing is asserted about them.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import pytest

from tests.cmdb_servers import PASSWORD
from tests.cmdb_servers import USERNAME
from tests.cmdb_servers import Tls
from tests.cmdb_servers import write_secret
from tests.conftest import REPO
from tests.lab.cmdb_server import Store

MINIONS = 2000
LATENCY_MS = 5
WORKER_COUNTS = (1, 5, 16)
REPEATS = int(os.environ.get("OPSKIT_BENCH_REPEATS", "2"))
LABELS = {
    "naive": "naive: new TLS connection per minion",
    "cold": "opskit cold: pooled session, empty cache",
    "revalidate": "opskit revalidate: ETag, 304 each",
    "warm": "opskit warm: cache_ttl, no request",
}
WORKER = REPO / "tests" / "benchmarks" / "cmdb_worker.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def cmdb(tmp_path_factory):
    """The sample CMDB as a separate process, seeded with 2,000 records."""
    root = tmp_path_factory.mktemp("bench-cmdb")
    tls = Tls.create(root / "tls")
    cert, key = root / "server.pem", root / "server.key"
    tls.server_cert.cert_chain_pems[0].write_to_path(str(cert))
    tls.server_cert.private_key_pem.write_to_path(str(key))
    credentials = root / "credentials.json"
    credentials.write_text(json.dumps({"username": USERNAME, "password": PASSWORD}))
    credentials.chmod(0o600)
    store = Store(root / "cmdb.sqlite")
    ids = [f"host-{n:04d}.bench.example" for n in range(MINIONS)]
    import sqlite3

    with sqlite3.connect(store.path) as db:
        db.executemany(
            "INSERT OR REPLACE INTO assets VALUES (?, ?, 1, ?)",
            [(i, json.dumps({"roles": ["web"], "common": {"motd": i}}), time.time()) for i in ids],
        )
    port = free_port()
    request_log = root / "requests.jsonl"
    request_log.touch()
    argv = [
        sys.executable,
        "-m",
        "tests.lab.cmdb_server",
        "--db",
        str(store.path),
        "--listen",
        f"127.0.0.1:{port}",
        "--credentials",
        str(credentials),
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        "--latency-ms",
        str(LATENCY_MS),
        "--request-log",
        str(request_log),
    ]
    server = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            pytest.fail("the sample CMDB did not start")
        time.sleep(0.1)
    yield {
        "root": root,
        "ids": ids,
        "request_log": request_log,
        "entry": {
            "url": f"https://127.0.0.1:{port}/assets/salt/{{minion_id}}/pillars/",
            "username": USERNAME,
            "password_file": str(write_secret(root / "cmdb.secret", PASSWORD)),
            "ca_bundle": str(tls.ca_file),
        },
    }
    server.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.wait(timeout=10)
    if server.poll() is None:
        server.kill()


class Workers:
    """``count`` worker processes (tests/benchmarks/cmdb_worker.py), started once."""

    def __init__(self, root: pathlib.Path, count: int):
        config = root / f"master-w{count}"
        config.mkdir(exist_ok=True)
        (config / "master").write_text(
            f"root_dir: {config}\ncachedir: {config / 'cache'}\nmodule_dirs: [{REPO}]\n"
        )
        self.procs = [
            subprocess.Popen(
                [sys.executable, str(WORKER), str(config / "master")],
                cwd=REPO,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(count)
        ]
        for proc in self.procs:
            assert proc.stdout.readline().strip() == "ready"

    def run(self, cmdb, client: str, entry: dict, cachedir=None) -> dict:
        """Compile every minion's pillar, the ids split over the workers."""
        before = len(cmdb["request_log"].read_text().splitlines())
        count = len(self.procs)
        for index, proc in enumerate(self.procs):
            command = {
                "client": client,
                "entry": entry,
                "cachedir": str(cachedir),
                "ids": cmdb["ids"][index::count],
            }
            proc.stdin.write(json.dumps(command) + "\n")
            proc.stdin.flush()
        results = [json.loads(proc.stdout.readline()) for proc in self.procs]
        time.sleep(0.2)  # the server logs a request after answering it
        seconds = max(r["end"] for r in results) - min(r["start"] for r in results)
        requests_seen = len(cmdb["request_log"].read_text().splitlines()) - before
        return {"seconds": seconds, "rate": MINIONS / seconds, "requests": requests_seen}

    def stop(self) -> None:
        for proc in self.procs:
            proc.stdin.close()
        for proc in self.procs:
            proc.wait(timeout=60)


@pytest.mark.benchmark
def test_cmdb_pillar_throughput(cmdb):
    load_before = os.getloadavg()[0]
    cached = {**cmdb["entry"], "cache_ttl": 300}
    rows = []
    for workers in WORKER_COUNTS:
        pool = Workers(cmdb["root"], workers)
        best = {}
        try:
            for repeat in range(REPEATS):
                cachedir = cmdb["root"] / f"cache-w{workers}-r{repeat}"
                cachedir.mkdir()
                runs = {
                    "naive": pool.run(cmdb, "naive", cmdb["entry"]),
                    "cold": pool.run(cmdb, "opskit", cached, cachedir),
                    "warm": pool.run(cmdb, "opskit", cached, cachedir),
                    "revalidate": pool.run(cmdb, "opskit", cmdb["entry"], cachedir),
                }
                for name, figures in runs.items():
                    if name not in best or figures["rate"] > best[name]["rate"]:
                        best[name] = figures
        finally:
            pool.stop()
        for name, label in LABELS.items():
            rows.append((workers, label, best[name], best[name]["rate"] / best["naive"]["rate"]))

    floor = 1000 / LATENCY_MS
    print()
    print(
        f"CMDB ext_pillar: {MINIONS} minions, sample CMDB over HTTPS (basic auth) with "
        f"{LATENCY_MS} ms added latency per request; best of {REPEATS} runs per row"
    )
    print(
        f"W = worker processes (Salt's default worker_threads is 5); one worker making one "
        f"request per minion cannot exceed {floor:.0f} minions/s"
    )
    print(f"host load average (1 min): {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(
        f"{'W':>2}  {'client':<42} {'requests':>8} {'seconds':>8} {'minions/s':>10} {'vs naive':>9}"
    )
    for workers, label, figures, ratio in rows:
        print(
            f"{workers:>2}  {label:<42} {figures['requests']:>8} {figures['seconds']:>8.2f} "
            f"{figures['rate']:>10.0f} {ratio:>8.1f}x"
        )
