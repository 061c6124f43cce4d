"""Command line for the lab: ``python -m tests.lab <command>`` (see ``--help``).

``tests/lab/opskit-lab`` wraps this after making sure the host has what it needs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from tests.lab.lab import Lab
from tests.lab.procs import LabError
from tests.lab.summary import render
from tests.lab.summary import summarize_all


def _require_up(lab: Lab) -> None:
    if not lab.is_up():
        raise LabError(f"lab {lab.cfg.name!r} is not up; run `opskit-lab up` first")


def apply(lab: Lab, target: str = "*", title: str = "highstate") -> bool:
    """Apply highstate to ``target``, print the per-minion summary, return success."""
    _require_up(lab)
    started = time.monotonic()
    result = lab.salt(target, "state.highstate", timeout=1800)
    expected = list(lab.minions) if target == "*" else [target]
    rows = summarize_all(expected, result.data)
    print(render(rows, f"{title} ({time.monotonic() - started:.0f}s wall clock)"), flush=True)
    if result.data is None:
        print(result.stdout[-3000:], result.stderr[-3000:], file=sys.stderr)
    return all(row.succeeded for row in rows)


def cmd_run(lab: Lab, _args) -> int:
    """The main job: up, highstate, highstate again (must change nothing), summary."""
    lab.up()
    first = apply(lab, title="highstate from the sample CMDB")
    second = apply(lab, title="second highstate (idempotency check)")
    rows = summarize_all(
        list(lab.minions), lab.salt("*", "state.highstate", "test=True", timeout=900).data
    )
    would_change = sum(r.changed + r.pending for r in rows)
    print(f"test=True after the second apply: {would_change} state(s) would change")
    ok = first and second and would_change == 0
    print(
        ("LAB OK" if ok else "LAB FAILED")
        + f": {len(lab.minions)} minions; the lab keeps running until `opskit-lab down`",
        flush=True,
    )
    return 0 if ok else 1


def cmd_up(lab: Lab, _args) -> int:
    lab.up()
    return 0


def cmd_apply(lab: Lab, args) -> int:
    return 0 if apply(lab, args.target) else 1


def cmd_status(lab: Lab, _args) -> int:
    cfg = lab.cfg
    print(f"lab {cfg.name!r}: bridge {cfg.bridge} {cfg.subnet}, state in {cfg.state_dir}")
    for name in ("supervisor", "cmdb", "mirror", "apt-proxy"):
        pid = lab.registry.pid_of(name)
        print(f"  {name:<11} {f'running (pid {pid})' if pid else 'stopped'}")
    for minion in lab.minions.values():
        pid = minion.leader_pid()
        print(f"  {minion.minion_id:<20} {minion.spec.ip:<15} {'running' if pid else 'stopped'}")
    if lab.is_up():
        pings = lab.salt("*", "test.ping", timeout=10).data or {}
        answered = sorted(m for m, ok in pings.items() if ok is True)
        print(f"  answering test.ping: {', '.join(answered) or 'none'}")
        print(f"  salt CLI: .venv/bin/salt -c {lab.master_conf_dir} '*' test.ping")
        print(f"  CMDB: {cfg.cmdb_base} (credentials {cfg.cmdb_dir}/credentials.json)")
        return 0
    return 1


def cmd_down(lab: Lab, _args) -> int:
    lab.down()
    return 0


def cmd_check_clean(lab: Lab, _args) -> int:
    remaining = lab.leftovers()
    for item in remaining:
        print(f"left behind: {item}")
    print("clean" if not remaining else f"{len(remaining)} thing(s) left behind")
    return 1 if remaining else 0


def cmd_salt(lab: Lab, args) -> int:
    _require_up(lab)
    tool = "salt-run" if args.command == "salt-run" else "salt"
    binary = os.path.join(sys.prefix, "bin", tool)
    os.execv(binary, [binary, "-c", str(lab.master_conf_dir), *args.rest])  # noqa: S606
    return 1  # not reached


def cmd_shell(lab: Lab, args) -> int:
    _require_up(lab)
    minion = lab.minions.get(args.minion) or next(
        (m for m in lab.minions.values() if m.spec.machine == args.minion), None
    )
    if minion is None:
        raise LabError(f"no minion {args.minion!r}; minions: {', '.join(lab.minions)}")
    argv = args.rest or ["/bin/bash", "-l"]
    nsenter = ["nsenter", f"--target={minion.leader_pid()}", "--all", "--", *argv]
    os.execvp("nsenter", nsenter)  # noqa: S606
    return 1  # not reached


COMMANDS = {
    "run": (cmd_run, "the main job: up, highstate twice, summary; leaves the lab running"),
    "up": (cmd_up, "start the lab (removes a stale one first)"),
    "apply": (cmd_apply, "apply highstate and print the per-minion summary"),
    "status": (cmd_status, "what is running and answering"),
    "down": (cmd_down, "stop and remove everything the lab started"),
    "check-clean": (cmd_check_clean, "exit 1 if any lab process, mount, bridge or rule remains"),
    "salt": (cmd_salt, "run the salt CLI against the lab master: salt '*' test.ping"),
    "salt-run": (cmd_salt, "run salt-run against the lab master"),
    "shell": (cmd_shell, "a shell (or a command) inside a minion: shell web-01 [cmd ...]"),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="opskit-lab", description="The opskit test lab.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text)
        if name == "apply":
            command.add_argument("--target", default="*")
        if name == "shell":
            command.add_argument("minion")
        if name in ("salt", "salt-run", "shell"):
            command.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    lab = Lab()
    try:
        return COMMANDS[args.command][0](lab, args)
    except LabError as err:
        print(f"opskit-lab {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
