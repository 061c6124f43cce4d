"""Each formula's ``_mapdata`` state (template-formula's convention) shows the merged
settings the formula works from, with secrets masked, and changes nothing."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import REPO

FORMULAS = sorted(p.parent.parent.name for p in (REPO / "salt").glob("*/_mapdata/init.sls"))


def _secret_values(value):
    """Every string value under a pillar key the example marks as secret."""
    if isinstance(value, dict):
        for key, val in value.items():
            if key == "secrets" and isinstance(val, dict):
                yield from (v for v in val.values() if isinstance(v, str))
            else:
                yield from _secret_values(val)
    elif isinstance(value, list):
        for val in value:
            yield from _secret_values(val)


def test_every_formula_has_a_mapdata_state():
    formulas = sorted(p.parent.name for p in (REPO / "salt").glob("*/map.jinja"))
    assert formulas == FORMULAS


@pytest.mark.parametrize("formula", FORMULAS)
def test_mapdata_shows_merged_settings_with_secrets_masked(modules, formula):
    example = yaml.safe_load((REPO / "salt" / formula / "pillar.example").read_text())
    result = modules.state.sls(f"{formula}._mapdata", pillar=example)
    (ret,) = result.raw.values() if hasattr(result, "raw") else result.values()
    assert ret["result"] is True, ret["comment"]
    assert ret["changes"] == {}
    shown = yaml.safe_load(ret["comment"])
    assert list(shown) == [formula]
    assert isinstance(shown[formula], dict)
    assert shown[formula]
    for secret in _secret_values(example):
        assert secret not in ret["comment"]


def test_mapdata_masks_what_the_schema_flags_secret(modules):
    """thumbnail-server's `env` values are secret in its schema (no secret-looking key
    name gives them away)."""
    example = yaml.safe_load((REPO / "salt" / "thumbnail-server" / "pillar.example").read_text())
    settings = modules.opskit.settings("thumbnail-server", example["thumbnail_server"])
    settings["env"] = {"SEAFILE_SITE_GREETING": "visible-if-unmasked"}
    shown = modules.opskit.mapdata("thumbnail-server", settings)
    assert "visible-if-unmasked" not in shown
    assert "SEAFILE_SITE_GREETING" in shown
