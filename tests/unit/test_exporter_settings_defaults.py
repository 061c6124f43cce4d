"""`exporters:defaults` is checked on its own key path: a bad value or key there is
refused as exporters:defaults:<option>, not only under each exporter it was merged into
(the fuzz tier found the old, misleading message)."""

from __future__ import annotations

import opskit_schema as s
import opskit_settings_exporters as settings
import pytest


@pytest.mark.parametrize(
    ("defaults", "path"),
    [
        ({"base_url": "http://x\n/"}, "exporters:defaults:base_url"),
        ({"../x": "http://lab-host"}, "exporters:defaults:../x"),
        ({"listen_address": "[::1%eth0]:9100"}, "exporters:defaults:listen_address"),
        ({"version": "1.5.0;x"}, "exporters:defaults:version"),
    ],
)
def test_bad_defaults_are_refused_under_their_own_key(defaults, path):
    with pytest.raises(s.SettingsError) as caught:
        s.validate(settings.SCHEMA, {"defaults": defaults}, root="exporters")
    assert [p for p, _, _ in caught.value.problems] == [path]


def test_defaults_take_options_of_any_exporter_in_any_of_their_forms():
    defaults = {
        "base_url": "http://lab-host:18081",
        "version": "4.5.3-4.8.2",
        "redis": {"addr": "redis://127.0.0.1:6379"},
    }
    result = s.validate(settings.SCHEMA, {"defaults": defaults}, root="exporters")
    assert result["defaults"]["base_url"] == "http://lab-host:18081"
    assert result["defaults"]["version"] == "4.5.3-4.8.2"
