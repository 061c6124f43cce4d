"""The `common` formula and the example top file take CMDB data only as data: values
are checked by their schemas (opskit_settings_common/top) at render time and written
through | json; hostile values stop the render naming the key (issue 11)."""

from __future__ import annotations

import pytest
import salt.state

INJECTED = "\n  '*':\n    - injected-by-pillar\n"


def _top(minion_opts, pillar):
    """The top file as the minion compiles it for a highstate: rendered with this
    minion's pillar, then matched against this minion."""
    opts = dict(minion_opts, state_top="salt://top.sls")
    with salt.state.HighState(opts, initial_pillar=pillar) as high:
        return high.top_matches(high.get_top())


def test_top_applies_extra_sls_from_the_hosts_own_pillar(minion_opts):
    matches = _top(minion_opts, {"extra_sls": ["lab", "lab.database"], "roles": ["database"]})
    assert matches["base"] == ["common", "exporters", "tuning", "lab", "lab.database"]
    assert _top(minion_opts, {})["base"] == ["common", "exporters"]


@pytest.mark.parametrize(
    ("extra_sls", "key"),
    [
        (["lab" + INJECTED], "extra_sls:0"),
        (["ok", "../etc"], "extra_sls:1"),
        (["lab }}{{ 7*7"], "extra_sls:0"),
        ([".relative"], "extra_sls:0"),
        ("lab", "extra_sls"),
        (["lab", "lab"], "extra_sls:1"),
        ({"lab": 1}, "extra_sls"),
    ],
)
def test_hostile_extra_sls_is_left_out_of_the_top_and_refused_by_common(
    minion_opts, modules, extra_sls, key
):
    # The top file renders (Salt would hide its error) without the hostile entry...
    assert _top(minion_opts, {"extra_sls": extra_sls})["base"] == ["common", "exporters"]
    # ...and `common`, which every host gets, stops the run naming the key.
    rendered = modules.state.show_sls("common", pillar={"extra_sls": extra_sls})
    assert isinstance(rendered, list), sorted(rendered)
    message = "\n".join(rendered)
    assert f"- {key}" in message, message
    assert "nothing was applied" in message
    assert modules.opskit.check("top", {"extra_sls": extra_sls})[0].startswith(key)


def test_top_renders_on_a_minion_that_has_not_synced_opskit_yet(minion_opts):
    """Salt renders the top file before a highstate syncs custom modules
    (HighState.load_dynamic runs after top matching): on a fresh minion no opskit
    module exists yet. A top file that called one failed to render and the first
    highstate of every host with `extra_sls` ended in "No Top file ... matches found"
    (the lab's CI run caught it on thumb-01 and web-01)."""
    fresh = dict(minion_opts, module_dirs=[])
    matches = _top(fresh, {"extra_sls": ["lab"], "roles": ["database"]})
    assert matches["base"] == ["common", "exporters", "tuning", "lab"]
    assert _top(fresh, {"extra_sls": ["lab", "../etc"]})["base"] == ["common", "exporters"]


@pytest.mark.parametrize(
    "extra_sls",
    [
        ["lab"],
        ["lab.anubis", "site_1.web-x"],
        ["lab\n"],
        ["lab."],
        ["a" * 256],
        ["x"] * 65,
        [f"s{i}" for i in range(64)],
        [1],
        [None],
        ["ok", "lab}}"],
        "lab",
    ],
)
def test_top_file_rule_for_extra_sls_matches_the_schema(minion_opts, modules, extra_sls):
    """The top file checks extra_sls in plain Jinja (it cannot call opskit, see above);
    it must accept exactly what opskit_settings_top accepts, which `common` enforces."""
    fresh = dict(minion_opts, module_dirs=[])
    applied = _top(fresh, {"extra_sls": extra_sls})["base"][2:]
    valid = not modules.opskit.check("top", {"extra_sls": extra_sls})
    assert applied == (list(extra_sls) if valid else [])


def test_top_never_targets_by_minion_id(minion_opts):
    """The old top file wrote grains['id'] raw as a target; a minion id is chosen by
    whoever registers the minion."""
    opts = dict(minion_opts, id="x':\n    - injected-by-id\n  'y")
    matches = _top(opts, {"extra_sls": ["lab"]})
    assert matches["base"] == ["common", "exporters", "lab"]


@pytest.mark.parametrize(
    ("pillar", "key"),
    [
        ({"common": {"motd_file": "/etc"}}, "common:motd_file"),
        ({"common": {"motd_file": "/srv/motd\n- x"}}, "common:motd_file"),
        ({"common": {"roles_file": "/etc/opskit/roles.yaml"}}, "common:roles_file"),
        ({"common": {"packages": ["curl", "evil pkg"]}}, "common:packages:1"),
        ({"common": {"packages": ["curl\n- x"]}}, "common:packages:0"),
        ({"common": {"motd": "hello\x1b[2J"}}, "common:motd"),
        ({"common": {"lookup": {"motd_file": "/"}}}, "common:motd_file"),
        ({"roles": ["database" + INJECTED]}, "roles:0"),
        ({"common": {"extra": 1}}, "common:extra"),
    ],
)
def test_common_refuses_hostile_pillar_naming_the_key(modules, pillar, key):
    rendered = modules.state.show_sls("common", pillar=pillar)
    assert isinstance(rendered, list), sorted(rendered)
    message = "\n".join(rendered)
    assert f"- {key}" in message, message


def test_common_renders_paths_as_data(modules):
    rendered = modules.state.show_sls(
        "common", pillar={"common": {"motd_file": "/srv/x//motd"}, "roles": ["web"]}
    )
    assert isinstance(rendered, dict), rendered
    managed = rendered["common-config-motd-file-managed"]["file"]
    assert {"name": "/srv/x/motd"} in managed
    assert {"source": "salt://common/files/motd.jinja"} in managed
