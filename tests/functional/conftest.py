"""Functional tier: opskit's modules run inside Salt's real loaders (salt-factories
``Loaders``), on this host, without root and without the lab."""

from __future__ import annotations

import http.server
import threading

import pytest
from saltfactories.utils.functional import Loaders

from tests.conftest import REPO


@pytest.fixture(scope="package")
def minion_id():
    return "opskit-functional"


@pytest.fixture(scope="module")
def state_tree(tmp_path_factory):
    return tmp_path_factory.mktemp("state-tree")


@pytest.fixture(scope="module")
def minion_config_overrides():
    """Modules override this to add configuration."""
    return {}


@pytest.fixture(scope="module")
def minion_opts(salt_factories, minion_id, state_tree, minion_config_overrides):
    overrides = {
        "file_client": "local",
        "file_roots": {"base": [str(state_tree), str(REPO / "salt")]},
        "module_dirs": [str(REPO)],
        **minion_config_overrides,
    }
    factory = salt_factories.salt_minion_daemon(minion_id, overrides=overrides)
    return factory.config.copy()


@pytest.fixture(scope="module")
def master_config_overrides():
    return {}


@pytest.fixture(scope="module")
def master_opts(salt_factories, master_config_overrides):
    overrides = {"module_dirs": [str(REPO)], **master_config_overrides}
    factory = salt_factories.salt_master_daemon("opskit-functional-master", overrides=overrides)
    return factory.config.copy()


@pytest.fixture(scope="module")
def loaders(minion_opts):
    return Loaders(minion_opts, loaded_base_name=f"{__name__}.loaded")


@pytest.fixture(autouse=True)
def reset_loaders_state(loaders):
    try:
        yield
    finally:
        loaders.reset_state()


@pytest.fixture
def modules(loaders):
    return loaders.modules


@pytest.fixture
def states(loaders):
    return loaders.states


@pytest.fixture(params=[False, True], ids=["apply", "test"])
def testmode(request):
    """Run a state test twice: applying, and with test=True."""
    return request.param


@pytest.fixture
def health_endpoint():
    """Start a real HTTP server on 127.0.0.1 that answers 200 and ``body`` on ``path``
    and 404 elsewhere; returns its base URL. Health-check states are tested against it."""
    servers = []

    def start(path, body):
        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                payload = body if self.path == path else b"404 page not found\n"
                self.send_response(200 if self.path == path else 404)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
