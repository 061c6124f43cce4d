"""The fuzz tier (issue 11): hostile values and keys for every key path of every
``salt/*/pillar.example`` and every lab inventory record, rendered with Salt's real
renderers; see tests/fuzz/engine.py for what passes. tests/run runs it as its own step
(marker ``fuzz``) and prints the number of (key, value) pairs tried.

Formulas whose area has not moved onto the foundation yet fail some pairs: they are
listed in PENDING with the number of failing pairs, which may only shrink. To fuzz one
formula while fixing it (and print its failures)::

    .venv/bin/python -m tests.fuzz --formula thumbnail-server --show 50
"""

from __future__ import annotations

import pytest

from tests.fuzz import campaign

pytestmark = pytest.mark.fuzz

# formula (whose schema owns the pillar root) -> (owner area, failing pairs allowed).
PENDING: dict[str, tuple[str, int]] = {}


def test_hostile_pillar_is_refused_or_inert():
    report = campaign.run()
    print("\n" + report.text(show=3))
    assert not report.baseline_problems, report.baseline_problems
    assert report.tried >= 5000, f"only {report.tried} (key, value) pairs were tried"
    problems = []
    failing = report.failures_by_owner()
    for owner, count in sorted(failing.items()):
        allowed = PENDING.get(owner, (None, 0))[1]
        if count > allowed:
            problems.append(f"{owner}: {count} failing pair(s), PENDING allows {allowed}")
    for owner, (area, allowed) in sorted(PENDING.items()):
        # Areas land in any order: a formula that improved is reported loudly, not
        # failed (its count only bounds what may fail).
        now = failing.get(owner, 0)
        if now < allowed:
            print(f"fuzz: PENDING {owner} (area {area}) allows {allowed}, {now} fail now: lower it")
    assert not problems, "\n".join(problems) + "\n\n" + report.text(show=10)
