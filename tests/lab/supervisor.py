"""The lab's master host: a salt-master (and salt-api) run with pytest-salt-factories.

salt-factories is built for pytest sessions; the lab needs its master to outlive the
command that starts it (``up`` in one command, ``apply`` in the next). This process
runs salt-factories' event listener, log server and daemon factories outside pytest,
writes ``run/supervisor.ready`` once the daemons answer, and tears everything down on
SIGTERM. ``Lab.up()`` starts it detached and tracks it by PID like every other lab
process.

Run: ``python -m tests.lab.supervisor --lab-state DIR`` (configuration from the
OPSKIT_LAB_* variables; ``--lab-state`` only marks the process as this lab's).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time

from tests.lab.config import LabConfig
from tests.lab.master import master_overrides

READY_FILE = "supervisor.ready"
MASTER_ID = "lab-master"

log = logging.getLogger("opskit.lab.supervisor")


def main() -> int:
    cfg = LabConfig.from_env()
    cfg.logs_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=cfg.logs_dir / "supervisor.log",
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from saltfactories.manager import FactoriesManager
    from saltfactories.plugins.event_listener import EventListener
    from saltfactories.plugins.log_server import LogServer

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    listener = EventListener()
    listener.host = "127.0.0.1"
    listener.address = f"tcp://127.0.0.1:{listener.port}"
    log_server = LogServer(log_host="127.0.0.1", log_level="warning")
    listener.start()
    log_server.start()
    daemons = []
    try:
        manager = FactoriesManager(
            root_dir=cfg.master_root,
            log_server_host=log_server.log_host,
            log_server_port=log_server.log_port,
            log_server_level=log_server.log_level,
            event_listener=listener,
            start_timeout=90,
        )
        master = manager.salt_master_daemon(MASTER_ID, overrides=master_overrides(cfg))
        master.start()
        daemons.append(master)
        log.info("salt-master %s started, config in %s", MASTER_ID, master.config_dir)
        api = manager.salt_api_daemon(master)
        api.start()
        daemons.append(api)
        log.info("salt-api started on %s", cfg.salt_api_url)

        ready = {
            "master_config_dir": str(master.config_dir),
            "started": time.time(),
        }
        (cfg.run_dir / READY_FILE).write_text(json.dumps(ready), encoding="utf-8")
        while not stop.wait(2):
            for daemon in daemons:
                if not daemon.is_running():
                    log.error("%s stopped unexpectedly; shutting the lab master down", daemon)
                    return 1
        log.info("SIGTERM received, stopping")
        return 0
    except Exception:
        log.exception("the lab master failed")
        return 1
    finally:
        (cfg.run_dir / READY_FILE).unlink(missing_ok=True)
        for daemon in reversed(daemons):
            daemon.terminate()
        log_server.stop()
        listener.stop()


if __name__ == "__main__":
    sys.exit(main())
