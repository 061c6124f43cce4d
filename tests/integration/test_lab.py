"""The lab itself: real systemd minions that answer the real master and apply highstate."""

from tests.lab.summary import summarize_all


def test_every_minion_answers_ping(lab):
    result = lab.salt("*", "test.ping", timeout=30)
    assert result.data == {minion_id: True for minion_id in lab.minions}


def test_minions_boot_systemd_in_nspawn(lab):
    grains = lab.salt("*", "grains.item", "init", "virtual", timeout=30).data
    assert set(grains) == set(lab.minions)
    for minion_id, items in grains.items():
        assert items["init"] == "systemd", minion_id
        assert items["virtual"] == "systemd-nspawn", minion_id
    for minion in lab.minions.values():
        pid1 = minion.run(["cat", "/proc/1/comm"]).stdout.strip()
        assert pid1 == "systemd"


def test_highstate_applies_without_failures_and_then_changes_nothing(lab, highstate_once):
    """The session's first highstate succeeded; then two highstates in a row (other tests
    may have changed the minions since): the first converges, the second changes nothing."""
    first = summarize_all(list(lab.minions), highstate_once.data)
    assert all(row.succeeded for row in first), first
    assert sum(row.ok + row.changed for row in first) > 0

    converge = summarize_all(list(lab.minions), lab.salt("*", "state.highstate", timeout=900).data)
    assert all(row.succeeded for row in converge), converge
    second = summarize_all(list(lab.minions), lab.salt("*", "state.highstate", timeout=900).data)
    assert all(row.succeeded for row in second), second
    assert [row.changed for row in second] == [0] * len(second), second


def test_minions_load_opskit_synced_from_file_roots(lab, highstate_once):
    """The classic route: modules on file_roots, synced to the minion by highstate."""
    infos = lab.salt("*", "opskit.info", timeout=60).data
    assert set(infos) == set(lab.minions)
    for minion_id, info in infos.items():
        assert info["route"] == "synced", (minion_id, info)
        assert info["loaded_from"].endswith("/extmods/modules"), (minion_id, info)


def test_minions_only_reach_the_lab_host(lab):
    """No default route: a minion cannot open connections beyond the lab bridge."""
    minion = next(iter(lab.minions.values()))
    routes = minion.run(["ip", "-4", "route", "show"]).stdout
    assert "default" not in routes
    probe = minion.run(["curl", "-s", "-m", "3", "http://192.0.2.1/"], check=False)
    assert probe.returncode != 0


def test_minions_reach_each_other_across_the_bridge(lab):
    """A monitoring host must be able to scrape the others: minion-to-minion traffic
    passes the lab's firewall (the host bridges with br_netfilter on)."""
    server, client = list(lab.minions.values())[:2]
    unit = "opskit-lab-reach-test"
    server.run(
        [
            "systemd-run",
            f"--unit={unit}",
            "python3",
            "-m",
            "http.server",
            "18999",
            "--bind",
            server.spec.ip,
            "--directory",
            "/etc",
        ]
    )
    try:
        probe = client.run(
            [
                "curl",
                "-s",
                "-m",
                "5",
                "--retry",
                "5",
                "--retry-connrefused",
                "--retry-delay",
                "1",
                f"http://{server.spec.ip}:18999/hostname",
            ],
            check=False,
        )
        assert probe.returncode == 0, probe.stderr
        assert probe.stdout.strip() == server.spec.machine
    finally:
        server.run(["systemctl", "stop", unit], check=False)
