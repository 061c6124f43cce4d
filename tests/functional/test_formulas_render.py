"""Every formula renders with its own pillar.example, and with no pillar at all.

Rendering runs the formula's Jinja (map.jinja merges, pillar validation) through Salt's
real state compiler (``state.show_sls``) on this host; nothing is applied.
"""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import REPO

FORMULAS = sorted(p.parent.name for p in (REPO / "salt").glob("*/pillar.example"))


def test_every_formula_directory_has_a_pillar_example():
    formula_dirs = sorted(
        p.name for p in (REPO / "salt").iterdir() if p.is_dir() and (p / "init.sls").exists()
    )
    assert formula_dirs == FORMULAS


@pytest.mark.parametrize("formula", FORMULAS)
def test_formula_renders_with_its_pillar_example(modules, formula):
    pillar = yaml.safe_load((REPO / "salt" / formula / "pillar.example").read_text())
    rendered = modules.state.show_sls(formula, pillar=pillar)
    assert isinstance(rendered, dict), rendered  # render errors come back as a list
    assert rendered, f"{formula} rendered no states"
    for state_id, body in rendered.items():
        # A formula's states are its own, or come from a shared formula it includes
        # (anubis includes nginx).
        owner = body["__sls__"].split(".")[0]
        assert owner == formula or owner in FORMULAS, state_id


@pytest.mark.parametrize("formula", FORMULAS)
def test_formula_clean_state_renders(modules, formula):
    if not (REPO / "salt" / formula / "clean.sls").exists():
        pytest.fail(f"salt/{formula} has no clean.sls")
    pillar = yaml.safe_load((REPO / "salt" / formula / "pillar.example").read_text())
    rendered = modules.state.show_sls(f"{formula}.clean", pillar=pillar)
    assert isinstance(rendered, dict), rendered
