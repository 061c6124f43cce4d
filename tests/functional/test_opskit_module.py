"""The `opskit` execution module reports its version and how it was loaded."""

import re

from tests.conftest import REPO


def test_version_matches_setup_py(modules):
    version = modules.opskit.version()
    # setup.py reads the version from the module; make sure the module reports it as is.
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    assert f'OPSKIT_VERSION = "{version}"' in (REPO / "_modules" / "opskit.py").read_text()


def test_info_names_the_checkout_route(modules):
    info = modules.opskit.info()
    assert info["route"] == "module_dirs"
    assert info["loaded_from"] == str(REPO / "_modules")
