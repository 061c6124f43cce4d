"""Steady-state RSS of a multi-threaded Pillow thumbnailing service under glibc malloc,
under jemalloc (``jemalloc.enabled``), and under jemalloc with the MALLOC_CONF the
tuning formula recommends, side by side in one run. Goal: jemalloc <= 0.7 x glibc.

The three copies of tests/benchmarks/thumbnail_workload.py run at the same time as
systemd services on the lab's thumbnail host, with Debian's python3-pil, so they share
the CPU equally; the jemalloc ones get their drop-ins from the real ``jemalloc.enabled``
state. RSS (VmRSS of each MainPID) is sampled every few seconds; "steady" is the median
of the samples in the last 40% of the run, after the arenas had time to fill. Nothing
is asserted: the table is the result. Settings: OPSKIT_BENCH_SECONDS (default 150),
OPSKIT_BENCH_THREADS (default 12 per service).
"""

from __future__ import annotations

import os
import pathlib
import statistics
import time

import pytest

MINION = "thumb-01.lab"
WORKLOAD = pathlib.Path(__file__).with_name("thumbnail_workload.py")
SCRIPT = "/usr/local/lib/opskit-bench/thumbnail_workload.py"
RECOMMENDED = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0"
VARIANTS = {
    "glibc malloc": {"unit": "opskit-bench-glibc.service", "jemalloc": None},
    "jemalloc": {"unit": "opskit-bench-jemalloc.service", "jemalloc": ""},
    "jemalloc + recommended": {
        "unit": "opskit-bench-jemalloc-tuned.service",
        "jemalloc": RECOMMENDED,
    },
}
UNIT = """\
[Unit]
Description=opskit benchmark: Pillow thumbnailing ({name})

[Service]
ExecStart=/usr/bin/python3 {script}
Environment=THREADS={threads} STATUS_FILE=/run/{unit}.status SEED=7
"""


def _installed(minion) -> set[str]:
    out = minion.run(["dpkg-query", "-W", "-f=${Package} ${Status}\\n"]).stdout
    return {line.split()[0] for line in out.splitlines() if line.endswith("install ok installed")}


@pytest.fixture
def bench_minion(lab):
    minion = lab.minions[MINION]
    assert lab.salt(MINION, "saltutil.sync_all", timeout=120).returncode == 0
    before = _installed(minion)
    minion.run(
        [
            "apt-get",
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "python3-pil",
            "libjemalloc2",
        ],
        timeout=600,
    )
    minion.run(["mkdir", "-p", os.path.dirname(SCRIPT)])
    minion.run(["tee", SCRIPT], input_text=WORKLOAD.read_text())
    yield minion
    units = [v["unit"] for v in VARIANTS.values()]
    minion.run(["systemctl", "stop", *units], check=False)
    paths = [f"/etc/systemd/system/{u}" for u in units] + [
        f"/etc/systemd/system/{u}.d" for u in units
    ]
    minion.run(["rm", "-rf", os.path.dirname(SCRIPT), *paths])
    minion.run(["systemctl", "daemon-reload"])
    added = sorted(_installed(minion) - before)
    if added:
        minion.run(["apt-get", "purge", "-y", "-q", *added], timeout=600)


def _rss_kb(minion, unit: str) -> int:
    pid = minion.run(["systemctl", "show", "-p", "MainPID", "--value", unit]).stdout.strip()
    assert pid != "0", f"{unit} is not running: see journalctl -u {unit} in {MINION}"
    status = minion.read_file(f"/proc/{pid}/status")
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))


@pytest.mark.benchmark
def test_steady_state_rss_glibc_vs_jemalloc(lab, bench_minion):
    seconds = float(os.environ.get("OPSKIT_BENCH_SECONDS", "150"))
    threads = int(os.environ.get("OPSKIT_BENCH_THREADS", "12"))
    minion = bench_minion
    for name, variant in VARIANTS.items():
        unit = variant["unit"]
        text = UNIT.format(name=name, script=SCRIPT, threads=threads, unit=unit)
        minion.run(["tee", f"/etc/systemd/system/{unit}"], input_text=text)
    minion.run(["systemctl", "daemon-reload"])
    for variant in VARIANTS.values():
        if variant["jemalloc"] is not None:
            args = [f"malloc_conf={variant['jemalloc']}"] if variant["jemalloc"] else []
            result = lab.salt(
                MINION, "state.single", "jemalloc.enabled", f"name={variant['unit']}", *args
            )
            (ret,) = result.data[MINION].values()
            assert ret["result"] is True, ret["comment"]
    minion.run(["systemctl", "start", *[v["unit"] for v in VARIANTS.values()]])
    for variant in VARIANTS.values():
        loaded = lab.salt(MINION, "jemalloc.is_loaded", variant["unit"]).data[MINION]
        assert loaded is (variant["jemalloc"] is not None), variant

    samples = {name: [] for name in VARIANTS}
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        for name, variant in VARIANTS.items():
            samples[name].append((elapsed, _rss_kb(minion, variant["unit"])))
        time.sleep(3)
    done = {}
    for name, variant in VARIANTS.items():
        count, ran = minion.read_file(f"/run/{variant['unit']}.status").split()
        done[name] = int(count) / float(ran)

    def steady(name):
        tail = [rss for t, rss in samples[name] if t >= 0.6 * seconds]
        return statistics.median(tail)

    base = steady("glibc malloc")
    lines = [
        "",
        f"Pillow thumbnailing, {threads} threads per service, {seconds:.0f}s, 3 services side by "
        f"side on {MINION} (2 shared cores)",
        f"{'allocator':<26}{'steady RSS':>12}{'peak RSS':>12}{'vs glibc':>10}{'thumbs/s':>10}",
    ]
    for name in VARIANTS:
        peak = max(rss for _, rss in samples[name])
        lines.append(
            f"{name:<26}{steady(name) / 1024:>9.0f} MiB{peak / 1024:>8.0f} MiB"
            f"{steady(name) / base:>9.2f}x{done[name]:>10.1f}"
        )
    lines.append(
        f"goal: jemalloc steady RSS <= 0.70x glibc; recommended MALLOC_CONF: {RECOMMENDED}"
    )
    lines.append("RSS over time (MiB) at 20/40/60/80/100% of the run:")
    for name in VARIANTS:
        points = []
        for share in (0.2, 0.4, 0.6, 0.8, 1.0):
            seen = [rss for t, rss in samples[name] if t <= share * seconds]
            points.append(f"{seen[-1] / 1024:7.0f}" if seen else "      -")
        lines.append(f"  {name:<24}{''.join(points)}")
    print("\n".join(lines))
