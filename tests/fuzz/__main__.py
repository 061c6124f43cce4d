"""Run the hostile-pillar fuzz campaign and print what it found.

    .venv/bin/python -m tests.fuzz                   # everything (what tests/run does)
    .venv/bin/python -m tests.fuzz --formula anubis  # the keys one formula's schema owns
    .venv/bin/python -m tests.fuzz --formula tuning --show 20

Exit status 0 when nothing failed in the selected formulas, 1 otherwise (the PENDING
list in tests/fuzz/test_fuzz_pillar.py is not consulted here).
"""

from __future__ import annotations

import argparse
import sys

from tests.fuzz import campaign


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fuzz", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--formula", action="append", help="only keys this formula owns (repeatable)"
    )
    parser.add_argument("--workers", type=int, default=None, help="processes (default: CPUs)")
    parser.add_argument("--show", type=int, default=5, help="failures to print per formula")
    args = parser.parse_args(argv)
    report = campaign.run(owners=set(args.formula or ()) or None, workers=args.workers)
    print(report.text(show=args.show))
    return 1 if report.failures_by_owner() or report.baseline_problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
