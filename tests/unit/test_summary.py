"""Highstate summaries count what the lab's `apply` prints."""

from tests.lab.summary import render
from tests.lab.summary import summarize
from tests.lab.summary import summarize_all


def state(result, changes=None, duration=10.0, sid="x"):
    return {
        "result": result,
        "changes": changes or {},
        "duration": duration,
        "__id__": sid,
        "comment": "c",
    }


def test_counts_ok_changed_failed_and_pending():
    ret = {
        "a": state(True),
        "b": state(True, {"diff": "new"}),
        "c": state(False, sid="broken"),
        "d": state(None),
        "e": state(True, duration=2500.0),
    }
    row = summarize("m1", ret)
    assert (row.ok, row.changed, row.failed, row.pending) == (2, 1, 1, 1)
    assert row.duration_ms == 2540.0
    assert not row.succeeded
    assert row.failures == ["broken: c"]


def test_render_errors_are_failures():
    rows = summarize_all(
        ["m1", "m2"], {"m1": ["Pillar failed to render with the following messages:", "boom"]}
    )
    assert rows[0].error.startswith("Pillar failed to render")
    assert rows[1].error == "did not return"
    assert not any(row.succeeded for row in rows)
    text = render(rows, "title")
    assert "ERROR: Pillar failed to render" in text
    assert "ERROR: did not return" in text


def test_unexpected_minions_are_listed_too():
    rows = summarize_all(["m1"], {"m1": {"a": state(True)}, "stray": {"a": state(True)}})
    assert [row.minion_id for row in rows] == ["m1", "stray"]
