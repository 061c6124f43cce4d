"""The lab master's configuration.

The master loads opskit's master-side code (``_pillar/``, ``_runners/``) straight from
the checkout through ``module_dirs``, and serves the formulas in ``salt/`` together with
the loader directories (``_modules/``, ``_states/``, ...) on ``file_roots``, so minions
get opskit the classic way: ``saltutil.sync_all`` (which highstate runs by itself).
``tests/lab/salt`` is a lab-only file root for scaffolding states (see its README).
"""

from __future__ import annotations

import pathlib

from tests.lab.config import REPO
from tests.lab.config import LabConfig

LOADER_DIRS = ("_modules", "_states", "_pillar", "_runners", "_utils")


def extensions_root(cfg: LabConfig) -> pathlib.Path:
    """A file_roots directory holding symlinks to the checkout's loader directories."""
    root = cfg.state_dir / "srv" / "extensions"
    root.mkdir(parents=True, exist_ok=True)
    for name in LOADER_DIRS:
        link = root / name
        if link.is_symlink() or link.exists():
            link.unlink()
        if (REPO / name).is_dir():
            link.symlink_to(REPO / name)
    return root


def cmdb_credentials_file(cfg: LabConfig) -> pathlib.Path:
    return cfg.cmdb_dir / "credentials.json"


def cmdb_password_file(cfg: LabConfig) -> pathlib.Path:
    return cfg.cmdb_dir / "salt.password"


def cmdb_ca_file(cfg: LabConfig) -> pathlib.Path:
    return cfg.cmdb_dir / "ca.pem"


def cmdb_webhook_secret_file(cfg: LabConfig) -> pathlib.Path:
    """The secret the sample CMDB signs webhooks with, and the master verifies them with."""
    return cfg.cmdb_dir / "webhook.secret"


def ext_pillar_entry(cfg: LabConfig) -> dict:
    """How the lab master reads the sample CMDB (HTTPS with the lab's own CA)."""
    return {
        "cmdb": {
            "url": cfg.cmdb_url,
            "username": "salt",
            "password_file": str(cmdb_password_file(cfg)),
            "ca_bundle": str(cmdb_ca_file(cfg)),
        }
    }


def master_overrides(cfg: LabConfig) -> dict:
    """Configuration passed to salt-factories for the lab master."""
    return {
        "interface": cfg.host_ip,
        "publish_port": cfg.ports.master_publish,
        "ret_port": cfg.ports.master_return,
        "file_roots": {
            "base": [
                str(REPO / "salt"),
                str(REPO / "tests" / "lab" / "salt"),
                str(extensions_root(cfg)),
            ]
        },
        "module_dirs": [str(REPO)],
        "ext_pillar": [ext_pillar_entry(cfg)],
        # CMDB edit -> webhook (salt-api /hook/cmdb) -> reactor -> cmdb.hook runner;
        # new scrape targets in the mine -> monitoring hosts rewrite their target files.
        "reactor": [
            {"salt/netapi/hook/cmdb": ["salt://reactor/cmdb-webhook.sls"]},
            {"opskit/targets/published": ["salt://reactor/opskit-targets.sls"]},
        ],
        "cmdb_webhook": {"secret_file": str(cmdb_webhook_secret_file(cfg))},
        "timeout": 30,
        "gather_job_timeout": 30,
        "worker_threads": 4,
        "hash_type": "sha256",
        "state_output": "mixed",
        "log_level_logfile": "info",
        "rest_cherrypy": {
            "host": "127.0.0.1",
            "port": cfg.ports.salt_api,
            "disable_ssl": True,
            "webhook_url": "/hook",
            "webhook_disable_auth": True,
        },
    }
