"""How often the exporter stack builds its plan per state call, on a real lab minion.

Building a plan means validating an exporter's options and rendering its unit and
files (templates fetched from the fileserver). Issue 14 asks for one build per
``exporter.installed`` call. This benchmark runs ``state.apply exporters`` inside
db-01 with Salt's own ``Caller`` (the minion's real configuration, master and
fileserver) after wrapping ``opskit_exporter_plan.build`` (and ``render``, where the
module has it) in counters, and prints the figures: a first apply that installs
node, redis and postgres exporters, and a second one that finds nothing to do. It
asserts nothing about the figures; it fails only if a run fails.
"""

from __future__ import annotations

import json

import pytest

from tests.integration.test_exporters import DB
from tests.integration.test_exporters import SNAPSHOT  # noqa: F401 - same minion state rules
from tests.integration.test_exporters import record
from tests.integration.test_exporters import start_clean

pytestmark = pytest.mark.benchmark

# Runs inside the minion with Salt's Python: count plan builds around one state.apply.
COUNTER = r"""
import json, sys
import salt.client, salt.config

opts = salt.config.minion_config("/etc/salt/minion")
sys.path.insert(0, opts["extension_modules"] + "/utils")
import opskit_exporter_plan as plan

counts = {"build": 0, "render": 0}
for name in ("build", "render"):
    original = getattr(plan, name, None)
    if original is None:
        counts[name] = None
        continue
    def counting(*args, _original=original, _name=name, **kwargs):
        counts[_name] += 1
        return _original(*args, **kwargs)
    setattr(plan, name, counting)

caller = salt.client.Caller(mopts=opts)
ret = caller.cmd("state.apply", "exporters", pillar=json.loads(sys.argv[1]))
if not isinstance(ret, dict):
    print(json.dumps({"error": ret}))
    sys.exit(1)
installed = [s for s in ret.values() if s["__id__"].endswith("-installed")]
failed = {s["__id__"]: s["comment"] for s in ret.values() if s["result"] is False}
print(json.dumps({"counts": counts, "installed_states": len(installed), "failed": failed}))
"""


def _apply_counting(lab, pillar: dict) -> dict:
    minion = lab.minions[DB]
    out = minion.run(
        ["/opt/saltstack/venv/bin/python3", "-c", COUNTER, json.dumps(pillar)], timeout=900
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert not result.get("failed"), result
    return result


def test_plan_builds_per_state_call(lab):
    assert lab.salt("*", "saltutil.sync_all", timeout=300).returncode == 0
    start_clean(lab, DB)
    database = lab.salt(DB, "state.apply", "lab.database", f"pillar={json.dumps(record(DB))}")
    assert database.returncode == 0, database
    try:
        for title in ("first apply (installs)", "second apply (nothing to do)"):
            result = _apply_counting(lab, record(DB))
            states = result["installed_states"]
            counts = result["counts"]
            builds = counts["render"] if counts["render"] is not None else counts["build"]
            print(
                f"\n[exporter plan builds] {title}: {states} exporter.installed state calls, "
                f"{builds} full plan builds ({builds / states:.1f} per state call); "
                f"plan.build calls in all (render-time validation included): {counts['build']}",
                flush=True,
            )
    finally:
        start_clean(lab, DB)
