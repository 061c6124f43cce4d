"""The common formula's mine SLS: opskit_targets published, the entries opskit used
before it removed. The mine here is the masterless one (``mine_cache`` in the minion's
data store, which ``mine.get`` and ``mine.delete`` use when ``file_client`` is local);
the lab's master-side mine is exercised by tests/integration/test_monitoring.py."""

from __future__ import annotations

from tests.functional.sls import state_args

OLD = [{"targets": ["web-01:9201"], "labels": {"job": "anubis", "instance_name": "app"}}]
CURRENT = [{"targets": ["web-01:9100"], "labels": {"job": "node_exporter"}}]


def test_the_old_anubis_mine_entry_is_removed_by_the_idempotent_state(modules):
    rendered = modules.state.show_sls("common.mine", pillar={})
    assert isinstance(rendered, dict), rendered
    fun, args = state_args(rendered, "common-mine-legacy-anubis-targets-absent")
    assert rendered["common-mine-legacy-anubis-targets-absent"]["__sls__"] == "common.mine"
    assert fun == "opskit"
    assert args["name"] == "anubis_targets"
    assert "targets_absent" in rendered["common-mine-legacy-anubis-targets-absent"]["opskit"]


def test_targets_absent_removes_only_the_named_entry_then_changes_nothing(
    modules, states, minion_id
):
    modules.data.update("mine_cache", {"anubis_targets": OLD, "opskit_targets": CURRENT})
    try:
        preview = states.opskit.targets_absent(name="anubis_targets", timeout=2, test=True)
        assert preview.result is None
        assert preview.changes == {"anubis_targets": {"old": OLD, "new": None}}
        assert modules.mine.get(minion_id, "anubis_targets") == {minion_id: OLD}

        ret = states.opskit.targets_absent(name="anubis_targets", timeout=2)
        assert ret.changes == {"anubis_targets": {"old": OLD, "new": None}}
        # Masterless (file_client: local): the mine is this minion's own and there is no
        # master for the monitoring reactor's event; the state says so and succeeds.
        assert ret.result is True
        assert ret.comment == (
            "Removed anubis_targets from the mine. "
            "Masterless: no master to send opskit/targets/published to."
        )
        assert modules.mine.get(minion_id, "anubis_targets") == {}
        assert modules.mine.get(minion_id, "opskit_targets") == {minion_id: CURRENT}

        again = states.opskit.targets_absent(name="anubis_targets", timeout=2)
        assert again.result is True
        assert again.changes == {}
        assert again.comment == f"The mine holds no anubis_targets for {minion_id}."
    finally:
        modules.data.update("mine_cache", {})
