"""Per-minion summary of a highstate: states ok / changed / failed and duration."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class MinionSummary:
    minion_id: str
    ok: int = 0
    changed: int = 0
    failed: int = 0
    pending: int = 0  # result None: would change (test=True)
    duration_ms: float = 0.0
    error: str = ""  # set when the minion returned no state results at all
    failures: list[str] = dataclasses.field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return not self.error and self.failed == 0


def summarize(minion_id: str, ret) -> MinionSummary:
    """Summarise one minion's ``state.highstate`` return (JSON-decoded)."""
    summary = MinionSummary(minion_id)
    if not isinstance(ret, dict):
        # Render errors, "Pillar failed to render", "No Top file ..." come back as lists
        # of strings; a minion that did not return comes back as a string.
        lines = ret if isinstance(ret, list) else [str(ret)]
        summary.error = "; ".join(str(line) for line in lines)[:500] or "no return"
        return summary
    for key, state in ret.items():
        summary.duration_ms += float(state.get("duration") or 0)
        if state.get("result") is False:
            summary.failed += 1
            summary.failures.append(f"{state.get('__id__', key)}: {state.get('comment', '')}"[:300])
        elif state.get("result") is None:
            summary.pending += 1
        elif state.get("changes"):
            summary.changed += 1
        else:
            summary.ok += 1
    return summary


def summarize_all(expected: list[str], data: dict | None) -> list[MinionSummary]:
    data = data or {}
    rows = [
        summarize(m, data[m]) if m in data else MinionSummary(m, error="did not return")
        for m in expected
    ]
    rows += [summarize(m, ret) for m, ret in sorted(data.items()) if m not in expected]
    return rows


def render(rows: list[MinionSummary], title: str) -> str:
    width = max([len("minion")] + [len(r.minion_id) for r in rows])
    lines = [
        title,
        f"  {'minion':<{width}}  {'ok':>4} {'changed':>7} {'failed':>6}  {'duration':>9}  result",
    ]
    for row in rows:
        verdict = "OK" if row.succeeded else ("ERROR: " + row.error if row.error else "FAILED")
        lines.append(
            f"  {row.minion_id:<{width}}  {row.ok:>4} {row.changed:>7} {row.failed:>6}"
            f"  {row.duration_ms / 1000:>8.2f}s  {verdict}"
        )
        lines.extend(f"      failed: {failure}" for failure in row.failures)
    totals = (sum(r.ok for r in rows), sum(r.changed for r in rows), sum(r.failed for r in rows))
    lines.append(f"  {'total':<{width}}  {totals[0]:>4} {totals[1]:>7} {totals[2]:>6}")
    return "\n".join(lines)
