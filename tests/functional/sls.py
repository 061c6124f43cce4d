"""Reading what ``state.show_sls`` returns: one state's module and its arguments."""

from __future__ import annotations


def state_args(rendered: dict, state_id: str) -> tuple[str, dict]:
    """(state module, {argument: value}) of ``state_id`` in a ``state.show_sls`` result."""
    assert isinstance(rendered, dict), rendered
    body = rendered[state_id]
    (module,) = [key for key in body if not key.startswith("__")]
    items = body[module]
    return module, {k: v for item in items if isinstance(item, dict) for k, v in item.items()}
