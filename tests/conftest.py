"""Fixtures shared by every tier.

The unit and functional tiers load opskit straight from the checkout: the loader's
``module_dirs`` option points at the repository root, where Salt finds ``_modules/``,
``_states/``, ``_pillar/``, ``_runners/`` and ``_utils/``. Plain imports of the shared
helpers in ``_utils/`` work the same way Salt makes them work on a minion.
"""

from __future__ import annotations

import pathlib
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

# Unit tests import the helpers in _utils/ directly, as the modules do at load time.
if str(REPO / "_utils") not in sys.path:
    sys.path.insert(0, str(REPO / "_utils"))


def pytest_configure(config):
    # Salt's log handlers flush to pytest's capture streams at interpreter exit, after
    # pytest closed them; keep that shutdown noise out of the output.
    import logging

    logging.raiseExceptions = False


@pytest.fixture(scope="session")
def salt_factories_default_root_dir(tmp_path_factory):
    """Keep salt-factories' daemon trees in pytest's temporary directory, not in /tmp."""
    return tmp_path_factory.mktemp("salt-factories")
