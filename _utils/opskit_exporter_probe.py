"""After a (re)start: is the exporter healthy, and if not, how to put back what ran
before.

``verify`` waits until the unit is active and ``/metrics`` answers with the exporter's
own series (and its ``*_up`` series is 1: it reaches what it watches), or raises
``NotHealthy``; the request and the wait are opskit's one health wait
(``opskit_health.probe`` and ``wait_until``). ``Undo`` remembers files, the ``current``
link, created directories and a created user before the install touches them;
``roll_back`` restores them and starts what ran before again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import re

from salt.exceptions import CommandExecutionError

try:
    import opskit_exporter_catalog as catalog  # synced from file_roots, or module_dirs
    import opskit_exporter_host as host_mod
    import opskit_health
    import opskit_net
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_exporter_catalog as catalog
    from saltext.opskit.utils import opskit_exporter_host as host_mod
    from saltext.opskit.utils import opskit_health
    from saltext.opskit.utils import opskit_net


@dataclasses.dataclass
class Probe:
    """How to reach and judge one exporter's /metrics."""

    name: str
    exporter: catalog.Exporter
    version: str | None
    listen_host: str
    listen_port: int
    scheme: str = "http"
    basic_auth: bool = False
    client_auth: bool = False
    verify_up: bool = True

    @classmethod
    def of(cls, d) -> Probe:
        return cls(
            name=d.name,
            exporter=d.exporter,
            version=d.version,
            listen_host=d.listen_host,
            listen_port=d.listen_port,
            scheme=d.scheme,
            basic_auth=d.basic_auth,
            client_auth=d.client_auth,
            verify_up=d.verify_up,
        )

    @classmethod
    def from_manifest(cls, name: str, manifest: dict) -> Probe:
        exporter = catalog.CATALOG[name]
        host, port = opskit_net.parse_listen(
            manifest.get("listen") or "", exporter.port, allow_hostname=True
        )
        return cls(
            name=name,
            exporter=exporter,
            version=manifest.get("version"),
            listen_host=host,
            listen_port=port,
            scheme=manifest.get("scheme", "http"),
            basic_auth=manifest.get("basic_auth", False),
            client_auth=manifest.get("client_auth", False),
        )


def metrics_url(probe: Probe) -> str:
    host = opskit_net.probe_host(probe.listen_host)
    return f"{probe.scheme}://{opskit_net.format_listen(host, probe.listen_port)}/metrics"


def scrape(probe: Probe, timeout: float = 5) -> dict:
    """GET /metrics once (``opskit_health.probe``): {"ok": bool, "detail": str,
    "body": str | None}. An exporter that refuses us for want of a client certificate
    or basic-auth credentials answers, which is all this host can check."""
    url = metrics_url(probe)
    # Our own service on this host: its certificate names the host, not the loopback.
    answer = opskit_health.probe(url, timeout=timeout, verify=False, body_limit=None)
    if answer["status"] is None:
        if answer["tls"] and probe.client_auth:
            return {"ok": True, "detail": "answers (TLS client certificate required)", "body": None}
        if answer["tls"]:
            return {"ok": False, "detail": f"TLS error on {url}: {answer['error']}", "body": None}
        return {"ok": False, "detail": f"{url} does not answer: {answer['error']}", "body": None}
    if answer["status"] == 401 and probe.basic_auth:
        return {"ok": True, "detail": "answers (basic auth required)", "body": None}
    if not answer["healthy"]:
        return {"ok": False, "detail": f"{url} answered HTTP {answer['status']}", "body": None}
    return {"ok": True, "detail": f"{url} answers", "body": answer["body"]}


def series_problem(probe: Probe, body: str) -> str | None:
    """Why ``body`` is not this exporter's healthy output (None: it is)."""
    exporter = probe.exporter
    if not any(line.startswith(exporter.metric_prefix) for line in body.splitlines()):
        return f"/metrics has no {exporter.metric_prefix}* series: is another program on the port?"
    if probe.verify_up and exporter.up_metric:
        match = re.search(rf"^{exporter.up_metric}(?:{{[^}}]*}})? (\S+)$", body, re.MULTILINE)
        if match is None:
            return f"/metrics has no {exporter.up_metric} series"
        if float(match.group(1)) != 1:
            return (
                f"{exporter.up_metric} is {match.group(1)}: the exporter runs but cannot reach "
                "what it watches (address, credentials, TLS?)"
            )
    return None


def health(probe: Probe, timeout: float = 5) -> tuple[str | None, dict]:
    """(problem or None, the scrape) for one look at /metrics."""
    result = scrape(probe, timeout)
    problem = None if result["ok"] else result["detail"]
    if problem is None and result["body"] is not None:
        problem = series_problem(probe, result["body"])
    return problem, result


def postgres_server_major(body: str) -> str | None:
    """The PostgreSQL major a running postgres_exporter reports (pg_static
    short_version): "15" for 15.4, "9.6" for 9.6.24 (two parts before PostgreSQL 10)."""
    match = re.search(r'^pg_static\{[^}]*short_version="(\d+)\.(\d+)', body, re.MULTILINE)
    if match is None:
        return None
    major, minor = match.groups()
    return f"{major}.{minor}" if int(major) < 10 else major


class NotHealthy(Exception):
    def __init__(self, message: str, hard: bool = False):
        super().__init__(message)
        self.hard = hard


def verify(host, d, interval: float = 1.0) -> str:
    """Wait (``opskit_health.wait_until``) until the unit is active and /metrics shows
    healthy series; else raise :class:`NotHealthy` with the last problem. A postgres
    exporter too old for the server it reaches fails at once (``hard``)."""
    probe = Probe.of(d)

    def look(left):
        state = host.active(d.unit_name)
        if state != "active":
            return False, f"unit {d.unit_name} is {state}"
        problem, result = health(probe, timeout=min(5.0, left))
        if problem is None and result["body"] and d.name == "postgres_exporter" and d.version:
            major = postgres_server_major(result["body"])
            if major is not None:
                try:
                    catalog.postgres_compatibility(d.version, major)
                except catalog.CompatibilityError as err:
                    raise NotHealthy(str(err), hard=True) from err
        return problem is None, problem or result["detail"]

    seen = opskit_health.wait_until(look, timeout=d.verify_timeout, interval=interval)
    if not seen.done:
        raise NotHealthy(f"after {d.verify_timeout}s: {seen.value}")
    return seen.value


def switch_link(link: str, target: str) -> None:
    """Point ``link`` at ``target`` atomically (a new link renamed over the old one)."""
    tmp = f"{link}.new"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)


class Undo:
    """Remembers how files, links and the unit were before, to put them back."""

    def __init__(self, host):
        self.host = host
        self.files: dict[str, dict | None] = {}
        self.links: dict[str, str | None] = {}
        self.dirs: list[str] = []  # created by this run: removed if still empty
        self.user: str | None = None  # created by this run: deleted
        self.restarted = False  # the unit was (re)started by this run

    @property
    def touched(self) -> bool:
        """Did this run change anything on the host yet?"""
        return bool(self.files or self.links or self.dirs or self.user or self.restarted)

    def file(self, path: str) -> None:
        if path in self.files:
            return
        target = pathlib.Path(path)
        if target.exists():
            stat = target.stat()
            self.files[path] = {
                "data": target.read_bytes(),
                "mode": stat.st_mode & 0o7777,
                "uid": stat.st_uid,
                "gid": stat.st_gid,
            }
        else:
            self.files[path] = None

    def link(self, path: str) -> None:
        if path not in self.links:
            self.links[path] = os.readlink(path) if os.path.islink(path) else None

    def restore(self) -> None:
        for path, before in self.files.items():
            with contextlib.suppress(OSError):
                if before is None:
                    pathlib.Path(path).unlink(missing_ok=True)
                else:
                    host_mod.write_file(
                        path, before["data"], before["mode"], before["uid"], before["gid"]
                    )
        for path, target in self.links.items():
            with contextlib.suppress(OSError):
                if target is None:
                    pathlib.Path(path).unlink(missing_ok=True)
                else:
                    switch_link(path, target)
        for directory in reversed(self.dirs):
            with contextlib.suppress(OSError):
                os.rmdir(directory)
        if self.user and self.host.salt["user.info"](self.user):
            self.host.delete_user(self.user)


def roll_back(host, d, undo: Undo, was_active: bool, manifest: dict) -> str:
    """Put files, link and unit back as they were and restart what ran before."""
    unit = d.unit_name
    if not undo.touched:
        running = manifest.get("version") or "what ran before"
        return f"nothing was changed; {running} keeps running" if was_active else "nothing changed"
    if not was_active:
        with contextlib.suppress(CommandExecutionError):
            host.salt["service.stop"](unit)
        with contextlib.suppress(CommandExecutionError):
            host.salt["service.disable"](unit)
    undo.restore()
    with contextlib.suppress(CommandExecutionError):
        host.salt["service.systemctl_reload"]()
    if was_active:
        with contextlib.suppress(CommandExecutionError):
            host.salt["service.restart"](unit)
        return f"rolled back: {manifest.get('version') or 'the previous version'} runs again"
    host.run(["systemctl", "reset-failed", unit])
    return "rolled back: nothing runs in its place"
