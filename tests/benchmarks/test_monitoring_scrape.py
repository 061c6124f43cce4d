"""Scrape duration per target and Prometheus's memory with the lab's targets.

After a highstate, mon-01's Prometheus scrapes every target the lab's minions publish
(node, redis, postgres and nginx exporters, the Anubis instances; 5 s interval, the
lab's pillar). Over a window (OPSKIT_BENCH_MON_SECONDS, default 30) the benchmark reads
Prometheus's own series through its HTTP API: ``scrape_duration_seconds`` and
``scrape_samples_scraped`` per target, ``process_resident_memory_bytes`` and
``prometheus_tsdb_head_series`` of Prometheus; and VmRSS of its main process from
/proc. Nothing is asserted: the table is the result. The lab's minions share the
host's CPU with each other (and with whatever else runs), so durations are upper bounds
of what a quiet host sees.
"""

from __future__ import annotations

import os
import time

import pytest
import requests

MON = "mon-01.lab"
THUMB = "thumb-01.lab"
SECONDS = int(os.environ.get("OPSKIT_BENCH_MON_SECONDS", "30"))


def _query(url: str, query: str) -> list[dict]:
    response = requests.get(f"{url}/api/v1/query", params={"query": query}, timeout=10)
    response.raise_for_status()
    return response.json()["data"]["result"]


def _by_target(url: str, query: str) -> dict[tuple[str, str], float]:
    return {
        (s["metric"]["job"], s["metric"]["instance"]): float(s["value"][1])
        for s in _query(url, query)
    }


def _apply(lab, target: str, fun: str, *args: str):
    """Run ``fun`` on the minions listed in ``target`` (comma-separated); fail on errors."""
    result = lab.salt(target, fun, *args, timeout=1800, extra=("-L",))
    data = result.data or {}
    failed = {
        minion: [s["__id__"] for s in ret.values() if s["result"] is False]
        for minion, ret in data.items()
        if isinstance(ret, dict)
    }
    if set(data) != set(target.split(",")) or any(failed.values()):
        pytest.fail(f"{fun} {' '.join(args)} on {target} failed: {failed or result!r}")


@pytest.fixture
def prometheus(lab):
    """Every host's exporters (and web-01's Anubis instances) running and published,
    Prometheus on mon-01 scraping them. thumb-01 gets its exporters only: its
    thumbnail server adds no target and is the slowest formula to apply."""
    others = [m for m in lab.minions if m != THUMB]
    _apply(lab, ",".join(others), "state.highstate")
    _apply(lab, THUMB, "state.apply", "exporters")
    url = f"http://{lab.minions[MON].spec.ip}:9090"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        up = _by_target(url, "up")
        if up and all(value == 1 for value in up.values()) and len(up) > 2:
            return url
        time.sleep(2)
    pytest.fail(f"not every target of mon-01's Prometheus was up within 120s: {up}")


@pytest.mark.benchmark
def test_scrape_duration_per_target_and_prometheus_rss(lab, prometheus):
    window = f"{SECONDS}s"
    time.sleep(SECONDS)
    median = _by_target(prometheus, f"quantile_over_time(0.5, scrape_duration_seconds[{window}])")
    worst = _by_target(prometheus, f"max_over_time(scrape_duration_seconds[{window}])")
    samples = _by_target(prometheus, "scrape_samples_scraped")
    scrapes = _by_target(prometheus, f"count_over_time(up[{window}])")
    rss = _query(prometheus, 'process_resident_memory_bytes{job="prometheus"}')
    series = _query(prometheus, "prometheus_tsdb_head_series")
    pid = lab.minions[MON].run(["systemctl", "show", "-p", "MainPID", "--value", "prometheus"])
    status = lab.minions[MON].read_file(f"/proc/{pid.stdout.strip()}/status")
    vmrss = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))

    print(f"\nmon-01 Prometheus 2.42 over {SECONDS}s, 5s scrape interval ({len(median)} targets)")
    print(f"  {'job':<18} {'instance':<22} {'scrapes':>7} {'samples':>7} {'median':>9} {'max':>9}")
    for key in sorted(median):
        job, instance = key
        print(
            f"  {job:<18} {instance:<22} {scrapes.get(key, 0):>7.0f} {samples.get(key, 0):>7.0f}"
            f" {median[key] * 1000:>7.1f}ms {worst[key] * 1000:>7.1f}ms"
        )
    total = sum(samples.values())
    print(f"  samples per scrape round, all targets: {total:.0f}")
    print(f"  head series: {float(series[0]['value'][1]):.0f}")
    print(
        f"  Prometheus RSS: {float(rss[0]['value'][1]) / 2**20:.1f} MiB "
        f"(process_resident_memory_bytes), {int(vmrss) / 1024:.1f} MiB (VmRSS)"
    )
