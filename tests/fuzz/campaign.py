"""One fuzz campaign: enumerate the cases, render them on worker processes, run the
external validators on the files produced, and report."""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import multiprocessing
import pathlib
import re
import resource
import shutil
import subprocess
import tempfile
import time

from tests.fuzz import engine

FAILING = ("unclear-refusal", "changed-states", "leaked", "shell", "validator", "baseline-failed")
INJECTIONS = ("changed-states", "leaked", "shell", "validator")

# Messages of the external validators that mean the file is not what was meant (a
# line or directive too many, quoting broken), as opposed to what this host lacks
# (certificates, binaries, upstream hosts), which the baseline shares.
NGINX_SYNTAX = re.compile(
    r'unexpected "|unknown directive|invalid number of arguments|is not allowed here|'
    r"unterminated|unexpected end of file|invalid parameter|directive is duplicate|"
    r"invalid value|invalid variable name|unknown .* variable"
)
SYSTEMD_SYNTAX = re.compile(
    r"Unknown key name|Unknown section|Missing '='|Invalid section header|more than one "
    r"ExecStart|Failed to parse|Invalid escape|Unbalanced quot|Assignment outside of section|"
    r"Invalid syntax|bad unit file setting|Invalid environment assignment|Unknown lvalue"
)


@dataclasses.dataclass
class Report:
    tried: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    verdicts: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    failures: list = dataclasses.field(default_factory=list)  # (owner, case, verdict, detail)
    validated: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    baseline_problems: list = dataclasses.field(default_factory=list)

    def failures_by_owner(self) -> dict[str, int]:
        return dict(collections.Counter(owner for owner, *_ in self.failures))

    def injections(self) -> int:
        return sum(1 for _, _, verdict, _ in self.failures if verdict in INJECTIONS)

    def text(self, show: int = 5) -> str:
        lines = [
            f"fuzz: {self.tried} (key, value) pairs tried in {self.seconds:.0f}s "
            f"({self.cpu_seconds:.0f} CPU-s); "
            f"{self.injections()} injection(s) found; verdicts: "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.verdicts.items())),
            "fuzz: external checks on distinct generated files: "
            + (", ".join(f"{k} {v}" for k, v in sorted(self.validated.items())) or "none"),
        ]
        lines += [f"fuzz: BASELINE DOES NOT RENDER: {p}" for p in self.baseline_problems]
        by_owner = collections.defaultdict(list)
        for owner, case, verdict, detail in self.failures:
            by_owner[owner].append((case, verdict, detail))
        for owner, items in sorted(by_owner.items()):
            kinds = collections.Counter(v for _, v, _ in items)
            lines.append(
                f"fuzz: {owner}: {len(items)} failing pair(s) ("
                + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
                + ")"
            )
            for case, verdict, detail in items[:show]:
                path = ":".join(map(str, case.path))
                lines.append(
                    f"    {case.source} {path} [{case.kind} {case.label}] {verdict}: {detail}"
                )
        return "\n".join(lines)


def _batches(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def run(owners: set[str] | None = None, workers: int | None = None) -> Report:
    started = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_before = before.ru_utime + before.ru_stime
    reads = engine.pillar_reads()
    all_sources = engine.sources()
    cases = [c for s in all_sources for c in engine.cases(s, reads, owners)]
    # Group by source so each worker reuses its baselines; interleave sources so both
    # workers get a share of the expensive ones.
    by_source = collections.defaultdict(list)
    for case in cases:
        by_source[case.source].append(case)
    batches = []
    for source_cases in by_source.values():
        batches += _batches(source_cases, 60)
    workers = workers or engine.cpu_count()
    report = Report(tried=len(cases))
    files = {}  # (kind, text) -> list of (source, state id)
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=context, initializer=engine._worker_init
    ) as pool:
        names = sorted(by_source)
        report.baseline_problems = pool.submit(engine.baseline_problems, names).result()
        base_files = pool.submit(engine.baseline_files, names).result()
        for outcomes in pool.map(engine.run_batch, batches):
            for outcome in outcomes:
                report.verdicts[outcome.verdict] += 1
                owner = engine.root_owner(str(outcome.case.path[0]), reads)
                if outcome.verdict in FAILING:
                    report.failures.append((owner, outcome.case, outcome.verdict, outcome.detail))
                for state_id, kind_text in outcome.files.items():
                    files.setdefault(kind_text, []).append((owner, outcome.case, state_id))
    _validate_files(report, files, base_files)
    report.seconds = time.monotonic() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    report.cpu_seconds = usage.ru_utime + usage.ru_stime - cpu_before
    return report


# ---------------------------------------------------------------------------------------
# External validators
# ---------------------------------------------------------------------------------------
def _nginx(text: str, kind: str, tmp: pathlib.Path) -> str:
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    conf = tmp / f"{digest}.conf"
    conf.write_text(text)
    main = conf
    if kind == "nginx-site":
        main = tmp / f"{digest}-main.conf"
        main.write_text(
            f"pid {tmp}/{digest}.pid;\nerror_log stderr;\nevents {{}}\n"
            f"http {{\n    include {conf};\n}}\n"
        )
    done = subprocess.run(
        ["nginx", "-t", "-q", "-c", str(main), "-p", str(tmp)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return done.stderr if done.returncode else ""


def _systemd(text: str, kind: str, tmp: pathlib.Path) -> str:
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    unit = tmp / f"opskit-fuzz-{digest}.service"
    if kind == "systemd-unit":
        unit.write_text(text)
    else:
        unit.write_text("[Unit]\nDescription=opskit fuzz\n[Service]\nExecStart=/bin/true\n")
        dropins = tmp / f"{unit.name}.d"
        dropins.mkdir(exist_ok=True)
        (dropins / "fuzz.conf").write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return done.stderr


def _syntax_errors(kind: str, output: str) -> list[str]:
    pattern = NGINX_SYNTAX if kind.startswith("nginx") else SYSTEMD_SYNTAX
    return [line for line in output.splitlines() if pattern.search(line)]


def _validate_files(report: Report, files: dict, base_files: dict) -> None:
    for tool in ("nginx", "systemd-analyze"):
        if shutil.which(tool) is None:
            report.baseline_problems.append(
                f"{tool} is not installed: the generated files cannot be validated "
                "(tests/bootstrap installs it)"
            )
            return
    baseline_errors = {}
    with tempfile.TemporaryDirectory(prefix="opskit-fuzz-validate-") as name:
        tmp = pathlib.Path(name)
        checked = {}

        def check(kind_text):
            kind, text = kind_text
            if kind_text not in checked:
                run = _nginx if kind.startswith("nginx") else _systemd
                checked[kind_text] = _syntax_errors(kind, run(text, kind, tmp))
                report.validated[kind] += 1
            return checked[kind_text]

        for state_files in base_files.values():
            for state_id, kind_text in state_files.items():
                baseline_errors.setdefault(state_id, set()).update(check(kind_text))
        for kind_text, users in files.items():
            errors = check(kind_text)
            for owner, case, state_id in users:
                new = [e for e in errors if e not in baseline_errors.get(state_id, set())]
                if new:
                    report.failures.append((owner, case, "validator", "; ".join(new)[:300]))
                    report.verdicts["validator"] += 1
