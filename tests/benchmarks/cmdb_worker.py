"""One benchmark worker process: compiles the CMDB pillar of the minion ids it is given.

Started by tests/benchmarks/test_cmdb_throughput.py, one process per simulated master
worker (Salt compiles pillars in its MWorker processes, each with its own loaders and,
for opskit, its own pooled session). It builds Salt's pillar loader once, prints
``ready``, then runs one JSON command per stdin line and answers each with
``{"start", "end", "count"}``:

    {"client": "opskit" | "naive", "entry": {...}, "cachedir": DIR, "ids": [...]}

Clients:
- ``opskit``: the ``cmdb`` ext_pillar called through Salt's real pillar loader.
- ``naive``: what http_json-style ext_pillars do: one ``requests.get`` per minion, so a
  new TCP connection and TLS handshake every time.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.parse

import requests
import salt.config
import salt.loader


def naive(entry: dict, password: str, minion_id: str) -> dict:
    url = entry["url"].replace("{minion_id}", urllib.parse.quote(minion_id, safe=""))
    response = requests.get(
        url, auth=(entry["username"], password), verify=entry["ca_bundle"], timeout=30
    )
    response.raise_for_status()
    return response.json()


def main() -> int:
    opts = salt.config.master_config(sys.argv[1])
    ext_pillar = salt.loader.pillars(opts, salt.loader.minion_mods(opts))["cmdb"]
    print("ready", flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        entry = command["entry"]
        if command["client"] == "opskit":
            opts["cachedir"] = command["cachedir"]

            def compile_one(minion_id, entry=entry):
                return ext_pillar(minion_id, {}, **entry)

        else:
            with open(entry["password_file"], encoding="utf-8") as handle:
                password = handle.read().strip()

            def compile_one(minion_id, entry=entry, password=password):
                return naive(entry, password, minion_id)

        start = time.time()
        for minion_id in command["ids"]:
            if not compile_one(minion_id).get("roles"):
                raise RuntimeError(f"no roles in the pillar of {minion_id}")
        end = time.time()
        print(json.dumps({"start": start, "end": end, "count": len(command["ids"])}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
