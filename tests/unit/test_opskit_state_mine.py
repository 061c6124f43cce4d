"""opskit.targets_published / targets_absent wait for the master's mine to follow.

``mine.send`` and ``mine.delete`` fire an event the minion's main process forwards to
the master (salt/modules/mine.py, ``_mine_send``: fire_event, then a fixed 0.5 s sleep),
so the first read-back can still show the old entry. The state module is loaded from
``_states/opskit.py`` with a stand-in for ``__salt__`` whose mine catches up late, as
a busy master's does (seen in the lab: "the mine holds None" right after mine.send).
"""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import REPO

TARGETS = [{"targets": ["db-01.lab:9100"], "labels": {"job": "node_exporter"}}]


class LateMine:
    """A mine that shows the new entry only after ``lag`` reads following a write."""

    def __init__(self, held, lag):
        self.held, self.pending, self.lag, self.events = held, None, lag, []

    def get(self, tgt, fun, tgt_type="glob"):
        if self.pending is not None:
            self.lag -= 1
            if self.lag < 0:
                self.held, self.pending = self.pending[0], None
        return {} if self.held is None else {tgt[0]: self.held}

    def send(self, name, mine_function=None):
        self.pending = (TARGETS,)
        return True

    def delete(self, name):
        self.pending = (None,)
        return True


def _state(mine, monkeypatch):
    spec = importlib.util.spec_from_file_location("opskit_state", REPO / "_states" / "opskit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.__opts__ = {"id": "db-01.lab", "test": False}
    module.__salt__ = {
        "opskit.targets": lambda: TARGETS,
        "mine.get": mine.get,
        "mine.send": mine.send,
        "mine.delete": mine.delete,
        "event.send": lambda tag, data: mine.events.append(tag) or True,
    }
    monkeypatch.setattr(module.opskit_health.time, "sleep", lambda seconds: None)
    return module


@pytest.mark.parametrize("lag", [0, 3])
def test_published_waits_for_the_mine_to_hold_the_new_entry(lag, monkeypatch):
    mine = LateMine(None, lag)
    ret = _state(mine, monkeypatch).targets_published("opskit_targets")
    assert ret["result"] is True, ret
    assert ret["changes"] == {"opskit_targets": {"old": None, "new": TARGETS}}
    assert mine.events == ["opskit/targets/published"]


def test_published_fails_when_the_mine_never_follows(monkeypatch):
    mine = LateMine(None, 10**9)
    ret = _state(mine, monkeypatch).targets_published("opskit_targets", timeout=0)
    assert ret["result"] is False
    assert "after mine.send, the mine holds None" in ret["comment"]
    assert mine.events == []


def test_absent_waits_for_the_entry_to_go(monkeypatch):
    mine = LateMine(TARGETS, 3)
    ret = _state(mine, monkeypatch).targets_absent("opskit_targets")
    assert ret["result"] is True, ret
    assert ret["changes"] == {"opskit_targets": {"old": TARGETS, "new": None}}


def test_a_failed_event_to_the_master_fails_the_state_saying_what_it_means(monkeypatch):
    mine = LateMine(None, 0)
    module = _state(mine, monkeypatch)
    module.__salt__["event.send"] = lambda tag, data: False
    ret = module.targets_published("opskit_targets")
    assert ret["result"] is False
    assert ret["changes"] == {"opskit_targets": {"old": None, "new": TARGETS}}
    assert ret["comment"].endswith(
        "Sending the event opskit/targets/published to the master failed: monitoring "
        "hosts pick the change up at their next highstate."
    )


def test_a_masterless_minion_sends_no_event_and_succeeds(monkeypatch):
    mine = LateMine(None, 0)
    module = _state(mine, monkeypatch)
    module.__opts__["file_client"] = "local"
    ret = module.targets_published("opskit_targets")
    assert ret["result"] is True, ret
    assert ret["comment"].endswith("Masterless: no master to send opskit/targets/published to.")
    assert mine.events == []
