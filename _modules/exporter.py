"""Prometheus exporters as verified, hardened systemd services.

``exporter.install node_exporter version=1.8.2`` downloads the release archive (from
upstream's GitHub releases or a site mirror), checks its sha256 against the release's
checksum file or a pinned hash before anything is installed, unpacks the binary into
a versioned directory and switches a ``current`` symlink to it, writes a hardened
systemd unit, and restarts the service only when something changed. It then checks
that ``/metrics`` answers with the exporter's own series; if it does not, everything
is rolled back to what ran before and the error carries the unit's last log lines.
``source=package`` takes the binary from the OS package instead (the package's own
unit is masked; opskit's hardened unit runs it).

Secrets (redis password, PostgreSQL DSN, basic-auth hashes) go only into files of mode
0600 owned by the exporter's user under ``/etc/opskit/exporters/<name>/``; certificate
and key files reach the service through systemd's ``LoadCredential=``. Neither the unit,
the process's arguments, the state's ``changes`` nor error messages hold them.

The catalog of exporters and the pure logic live in ``_utils/opskit_exporters.py`` and
``_utils/opskit_exporter_plan.py``; this module does the I/O.
"""

from __future__ import annotations

import contextlib
import datetime
import difflib
import grp
import json
import logging
import os
import pathlib
import pwd
import re
import shutil
import tarfile
import tempfile
import time

from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError

try:
    import opskit_exporter_plan as plan  # synced from file_roots, or module_dirs
    import opskit_exporters as catalog
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_exporter_plan as plan
    from saltext.opskit.utils import opskit_exporters as catalog

log = logging.getLogger(__name__)

__virtualname__ = "exporter"
__func_alias__ = {"list_": "list", "plan_": "plan"}

MANIFEST_VERSION = 1
KEEP_VERSIONS = 2  # versioned directories kept: the running one and the one before
HTTP_TIMEOUT = (10, 60)  # connect, read (seconds)
NVIDIA_KEYRING = "/etc/apt/keyrings/opskit-nvidia-cuda"
NVIDIA_SOURCE = "/etc/apt/sources.list.d/opskit-nvidia-cuda.list"
NVIDIA_PIN = "/etc/apt/preferences.d/opskit-nvidia-cuda"
NVIDIA_REPO_BASE = "https://developer.download.nvidia.com/compute/cuda/repos"
DCGM_CORE_PACKAGE = "datacenter-gpu-manager-4-core"
DCGM_HOSTENGINE_UNIT = "nvidia-dcgm.service"


def __virtual__():
    if __grains__.get("kernel") != "Linux":
        return (False, "exporter: Prometheus exporters are managed on Linux only")
    return __virtualname__


# ---------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------
def _minion() -> str:
    return __opts__.get("id") or __grains__.get("id") or "this minion"


def _invocation_error(err: Exception) -> SaltInvocationError:
    return SaltInvocationError(f"{_minion()}: {err}")


def _desired(name: str, kwargs: dict) -> plan.Desired:
    try:
        return plan.build(name, kwargs, __grains__.get("cpuarch", ""))
    except ValueError as err:
        raise _invocation_error(err) from err


def _require_systemd() -> None:
    import salt.utils.systemd

    if not salt.utils.systemd.booted(__context__):
        raise CommandExecutionError(
            f"{_minion()}: opskit runs exporters as systemd services, and systemd is not "
            "the init system here"
        )


def _read(path: str) -> str | None:
    try:
        return pathlib.Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def _ids(owner: str, group: str) -> tuple[int, int]:
    try:
        return pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid
    except KeyError as err:
        raise CommandExecutionError(f"{_minion()}: no such user or group {err}") from err


def _write_atomic(path: str, content: str | bytes, mode: int, owner="root", group="root"):
    uid, gid = _ids(owner, group)
    plan.write_file(path, content, mode, uid, gid)


def _ensure_dir(path: str, mode: int, owner="root", group="root") -> list[str]:
    """Create ``path`` (parents root-owned 0755) if missing; set its mode and owner.
    Returns the directories created, outermost first."""
    directory = pathlib.Path(path)
    created = []
    for parent in [*reversed(directory.parents), directory]:
        if not parent.exists():
            parent.mkdir(mode=0o755)
            created.append(str(parent))
    uid, gid = _ids(owner, group)
    stat = directory.stat()
    if stat.st_mode & 0o7777 != mode:
        directory.chmod(mode)
    if (stat.st_uid, stat.st_gid) != (uid, gid):
        os.chown(directory, uid, gid)
    return created


def _file_state(path: str) -> dict | None:
    """Content, mode and owner of a file (None if missing)."""
    target = pathlib.Path(path)
    try:
        stat = target.stat()
        content = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        owner = pwd.getpwuid(stat.st_uid).pw_name
        group = grp.getgrgid(stat.st_gid).gr_name
    except KeyError:
        owner, group = str(stat.st_uid), str(stat.st_gid)
    return {"content": content, "mode": stat.st_mode & 0o7777, "owner": owner, "group": group}


def _line_changes(old: str | None, new: str | None) -> dict:
    """{"old": removed lines, "new": added lines} of a text file without secrets."""
    if old is None:
        return {"old": None, "new": "created"}
    if new is None:
        return {"old": "present", "new": None}
    removed, added = [], []
    for line in difflib.ndiff(old.splitlines(), new.splitlines()):
        if line.startswith("- "):
            removed.append(line[2:])
        elif line.startswith("+ "):
            added.append(line[2:])
    return {"old": removed, "new": added}


def _env_names(content: str | None) -> list[str]:
    if content is None:
        return []
    return sorted(
        line.split("=", 1)[0] for line in content.splitlines() if "=" in line and line[0] != "#"
    )


def _secret_changes(old: dict | None, spec: plan.FileSpec) -> dict:
    """What changed in a secret file, without its content: variable names only."""
    new_names = _env_names(spec.content) if spec.path.endswith("/env") else ["(hidden)"]
    if old is None:
        return {"old": None, "new": f"written {spec.mode:04o} {spec.owner}: {new_names}"}
    old_names = _env_names(old["content"]) if spec.path.endswith("/env") else ["(hidden)"]
    what = []
    if old["content"] != spec.content:
        what.append("content changed (hidden)")
    if old["mode"] != spec.mode:
        what.append(f"mode {old['mode']:04o} -> {spec.mode:04o}")
    if (old["owner"], old["group"]) != (spec.owner, spec.group):
        what.append(f"owner {old['owner']}:{old['group']} -> {spec.owner}:{spec.group}")
    return {"old": old_names, "new": f"{new_names}: {', '.join(what)}"}


def _run(argv: list[str], **kwargs) -> dict:
    return __salt__["cmd.run_all"](argv, python_shell=False, ignore_retcode=True, **kwargs)


def _journal(unit: str, since: float | None, secrets) -> str:
    argv = ["journalctl", "-u", unit, "-n", "25", "--no-pager", "-o", "cat"]
    if since:
        argv += ["--since", f"@{int(since) - 1}"]
    out = _run(argv, output_loglevel="quiet")
    text = (out.get("stdout") or out.get("stderr") or "").strip() or "(no log lines)"
    return catalog.redact(text, secrets)


def _unit_props(unit: str) -> dict:
    try:
        return __salt__["service.show"](unit) or {}
    except CommandExecutionError:
        return {}


def _active(unit: str) -> str:
    props = _unit_props(unit)
    if props.get("LoadState") in (None, "not-found"):
        return "absent"
    return props.get("ActiveState", "unknown")


# ---------------------------------------------------------------------------------------
# Manifest: what opskit installed (no secrets), /var/lib/opskit/exporters/<name>.json
# ---------------------------------------------------------------------------------------
def _manifest_path(name: str) -> pathlib.Path:
    return pathlib.Path(plan.STATE_ROOT) / f"{name}.json"


def _load_manifest(name: str) -> dict | None:
    path = _manifest_path(name)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as err:
        raise CommandExecutionError(
            f"{_minion()}: {path} is not valid JSON ({err}); remove it and re-run the install"
        ) from err


def _save_manifest(name: str, data: dict) -> None:
    data = {**data, "manifest": MANIFEST_VERSION, "name": name}
    _write_atomic(
        str(_manifest_path(name)), json.dumps(data, indent=2, sort_keys=True) + "\n", 0o644
    )


def _installed_names() -> list[str]:
    root = pathlib.Path(plan.STATE_ROOT)
    if not root.is_dir():
        return []
    return sorted(p.stem for p in root.glob("*.json") if p.stem in catalog.CATALOG)


# ---------------------------------------------------------------------------------------
# Downloads
# ---------------------------------------------------------------------------------------
def _session(d: plan.Desired):
    import requests

    session = requests.Session()
    session.trust_env = False  # only the proxy the options name, never the environment's
    if d.proxy:
        session.proxies = {"http": d.proxy, "https": d.proxy}
    session.verify = d.ca_bundle or True
    session.headers["User-Agent"] = "opskit-exporter"
    return session


def _get(session, url: str, what: str, d: plan.Desired, stream: bool = False):
    import requests

    shown = catalog.redact_url(url)
    try:
        response = session.get(url, timeout=HTTP_TIMEOUT, stream=stream)
    except requests.RequestException as err:
        detail = catalog.redact(str(err), [d.proxy or "", url])
        raise CommandExecutionError(
            f"{_minion()}: cannot download {what} from {shown}: {detail}. Check base_url, "
            "proxy and network access; nothing was installed."
        ) from err
    if response.status_code != 200:
        response.close()
        raise CommandExecutionError(
            f"{_minion()}: downloading {what} from {shown} answered HTTP "
            f"{response.status_code}. Is the version right, and does the mirror hold this "
            "release? Nothing was installed."
        )
    return response


def _expected_sha256(d: plan.Desired, session, cache_dir: pathlib.Path) -> tuple[str, str]:
    """The sha256 the archive must have, and where that figure comes from."""
    rel = d.release
    if d.sha256:
        return d.sha256, "the pinned sha256"
    sums_path = cache_dir / rel.checksums_file
    source = catalog.redact_url(rel.checksums_url)
    text = _read(str(sums_path))
    if text is None:
        response = _get(session, rel.checksums_url, "the checksum file", d)
        text = response.text
        try:
            catalog.parse_checksums(text, source)
        except ValueError as err:
            raise CommandExecutionError(f"{_minion()}: {err}; nothing was installed") from err
        _write_atomic(str(sums_path), text, 0o644)
    try:
        sums = catalog.parse_checksums(text, source)
    except ValueError as err:
        raise CommandExecutionError(f"{_minion()}: {err}; nothing was installed") from err
    if rel.asset not in sums:
        listed = ", ".join(sorted(sums)[:8])
        raise CommandExecutionError(
            f"{_minion()}: {source} lists no {rel.asset} (it lists {listed}...); is "
            "this architecture published for this version? Nothing was installed."
        )
    return sums[rel.asset], source


def _fetch_archive(d: plan.Desired) -> tuple[pathlib.Path, str]:
    """Return a verified release archive in the cache (downloading it only if needed)."""
    import hashlib

    rel = d.release
    cache_dir = pathlib.Path(plan.CACHE_ROOT) / d.name / rel.key
    cache_dir.mkdir(parents=True, exist_ok=True)
    session = _session(d)
    expected, source = _expected_sha256(d, session, cache_dir)
    archive = cache_dir / rel.asset
    if archive.exists() and catalog.sha256_file(archive) == expected:
        return archive, expected
    partial = cache_dir / f".{rel.asset}.part"
    digest = hashlib.sha256()
    response = _get(session, rel.asset_url, "the release archive", d, stream=True)
    try:
        with open(partial, "wb") as handle:
            for block in response.iter_content(1 << 20):
                digest.update(block)
                handle.write(block)
    finally:
        response.close()
    actual = digest.hexdigest()
    if actual != expected:
        partial.unlink()
        raise CommandExecutionError(
            f"{_minion()}: sha256 mismatch for {catalog.redact_url(rel.asset_url)}: "
            f"expected {expected} ({source}), got {actual}. The download was discarded and "
            "nothing was installed; what ran before keeps running. Check the mirror."
        )
    os.replace(partial, archive)
    return archive, expected


def _unpack(d: plan.Desired, archive: pathlib.Path) -> tuple[pathlib.Path, str]:
    """Unpack the exporter's binary into its versioned directory; return dir, sha256."""
    rel = d.release
    final = pathlib.Path(d.install_dir) / rel.key
    final.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{rel.key}.", dir=final.parent))
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                try:
                    member = tar.getmember(rel.member)
                except KeyError:
                    names = ", ".join(tar.getnames()[:10])
                    raise CommandExecutionError(
                        f"{_minion()}: {rel.asset} has no {rel.member} (it holds {names}); "
                        "nothing was installed"
                    ) from None
                if not member.isfile():
                    raise CommandExecutionError(
                        f"{_minion()}: {rel.member} in {rel.asset} is not a regular file"
                    )
                source = tar.extractfile(member)
                binary = staging / d.exporter.binary
                with open(binary, "wb") as handle:
                    shutil.copyfileobj(source, handle)
        except (tarfile.TarError, OSError, EOFError) as err:
            raise CommandExecutionError(
                f"{_minion()}: cannot unpack {archive}: {err}; nothing was installed"
            ) from err
        binary.chmod(0o755)
        staging.chmod(0o755)
        if final.exists():
            shutil.rmtree(final)
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final, catalog.sha256_file(final / d.exporter.binary)


def _check_binary_version(d: plan.Desired, binary: str) -> None:
    """The binary must report the version the options asked for (for dcgm-exporter: the
    DCGM-exporter pair built into the executable)."""
    expected = d.version if d.exporter.version_re is catalog.DCGM_PAIR_RE else None
    expected = expected or d.exporter.release_version(d.version)
    out = _run([binary, "--version"], timeout=20, output_loglevel="quiet")
    text = f"{out.get('stdout', '')}\n{out.get('stderr', '')}"
    if expected not in text:
        first = text.strip().splitlines()[:2]
        raise CommandExecutionError(
            f"{_minion()}: {binary} does not report version {expected} (--version said: "
            f"{' / '.join(first) or 'nothing'}); refusing to run it"
        )


# ---------------------------------------------------------------------------------------
# Rollback
# ---------------------------------------------------------------------------------------
class _Undo:
    """Remembers how files, links and the unit were before, to put them back."""

    def __init__(self):
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
                    _write_atomic(path, before["data"], before["mode"])
                    os.chown(path, before["uid"], before["gid"])
        for path, target in self.links.items():
            with contextlib.suppress(OSError):
                if target is None:
                    pathlib.Path(path).unlink(missing_ok=True)
                else:
                    _switch_link(path, target)
        for directory in reversed(self.dirs):
            with contextlib.suppress(OSError):
                os.rmdir(directory)
        if self.user and __salt__["user.info"](self.user):
            __salt__["user.delete"](self.user)
            if __salt__["group.info"](self.user):
                __salt__["group.delete"](self.user)


def _switch_link(link: str, target: str) -> None:
    """Point ``link`` at ``target`` atomically (a new link renamed over the old one)."""
    tmp = f"{link}.new"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)


# ---------------------------------------------------------------------------------------
# Current state and differences
# ---------------------------------------------------------------------------------------
def _binary_state(d: plan.Desired, manifest: dict | None) -> dict:
    """Is the desired binary in place and intact? (no network)"""
    if manifest is None:
        return {"ok": False, "was": None}
    was = f"{manifest.get('version') or 'package'} ({manifest.get('source')})"
    if d.source == "package":
        installed = __salt__["pkg.version"](d.exporter.package)
        wanted = d.exporter.release_version(d.version) if d.version else None
        ok = manifest.get("source") == "package" and bool(installed)
        ok = ok and (wanted is None or catalog.upstream_version(installed) == wanted)
        return {"ok": ok, "was": f"{installed or 'absent'} (package)"}
    rel = d.release
    binary = pathlib.Path(d.install_dir) / rel.key / d.exporter.binary
    link = pathlib.Path(d.current_link)
    if manifest.get("source") != d.source or manifest.get("release_key") != rel.key:
        problem = ""
    elif d.sha256 and manifest.get("archive_sha256") != d.sha256:
        problem = ", archive sha256 differs from the pin"
    elif not binary.exists():
        problem = ", binary missing"
    elif catalog.sha256_file(binary) != manifest.get("binary_sha256"):
        problem = ", binary modified on disk"
    elif not link.is_symlink() or os.readlink(link) != rel.key:
        problem = f", current link not on {rel.key}"
    else:
        return {"ok": True, "was": was}
    return {"ok": False, "was": was + problem}


def _file_changes(d: plan.Desired, manifest: dict | None) -> dict:
    """Secret and configuration files, and the stub_status block (contents hidden)."""
    changes = {}
    for spec in d.files:
        old = _file_state(spec.path)
        wanted = (spec.content, spec.mode, spec.owner, spec.group)
        if old is None or (old["content"], old["mode"], old["owner"], old["group"]) != wanted:
            changes[spec.path] = _secret_changes(old, spec)
    for stale in ("env", "web-config.yml"):
        path = f"{d.config_dir}/{stale}"
        if path not in {spec.path for spec in d.files} and os.path.exists(path):
            changes[path] = {"old": "present", "new": None}
    if d.stub_status is not None:
        old = _read(d.stub_status.path)
        if old != d.stub_status.content:
            changes["stub_status"] = _line_changes(old, d.stub_status.content)
    elif manifest and manifest.get("stub_status"):
        changes["stub_status"] = {"old": "present", "new": None}
    return changes


def _diff(d: plan.Desired, manifest: dict | None) -> dict:
    """Everything that differs from ``d`` on this host, as changes (no secrets)."""
    changes = {}
    if manifest and manifest.get("source") != d.source:
        changes["source"] = {"old": manifest.get("source"), "new": d.source}
    binary = _binary_state(d, manifest)
    if not binary["ok"]:
        new = f"{d.version or 'repository version'} ({d.source})"
        changes["binary"] = {"old": binary["was"], "new": new}
    if d.user != "root" and not __salt__["user.info"](d.user):
        changes["user"] = {"old": None, "new": d.user}
    if d.textfile_directory and not os.path.isdir(d.textfile_directory):
        changes["textfile_directory"] = {"old": None, "new": d.textfile_directory}
    changes.update(_file_changes(d, manifest))
    old_unit = _read(d.unit_path)
    if old_unit != d.unit:
        changes["unit"] = _line_changes(old_unit, d.unit)
    props = _unit_props(os.path.basename(d.unit_path)) if old_unit is not None else {}
    state = props.get("ActiveState") or "absent"
    if state != "active":
        changes["service"] = {"old": state, "new": "running"}
    elif set(changes) - {"user", "textfile_directory"}:
        changes["service"] = {"old": "running", "new": "restarted"}
    if props.get("UnitFileState") != "enabled":
        changes["enabled"] = {"old": props.get("UnitFileState") or None, "new": "enabled"}
    return changes


# ---------------------------------------------------------------------------------------
# Verification after (re)start
# ---------------------------------------------------------------------------------------
def _scrape(d: plan.Probe) -> dict:
    """GET /metrics once: {"ok": bool, "detail": str, "body": str | None}."""
    import requests
    import urllib3

    host = catalog.probe_host(d.listen_host)
    url = f"{d.scheme}://{catalog.format_listen(host, d.listen_port)}/metrics"
    session = requests.Session()
    session.trust_env = False
    try:
        with warnings_suppressed(urllib3.exceptions.InsecureRequestWarning):
            # Our own service on this host: the certificate names the host, not loopback.
            response = session.get(url, timeout=5, verify=False)
    except requests.exceptions.SSLError as err:
        if d.client_auth:
            return {"ok": True, "detail": "answers (TLS client certificate required)", "body": None}
        return {"ok": False, "detail": f"TLS error on {url}: {err}", "body": None}
    except requests.RequestException as err:
        return {"ok": False, "detail": f"{url} does not answer: {err}", "body": None}
    if response.status_code == 401 and d.basic_auth:
        return {"ok": True, "detail": "answers (basic auth required)", "body": None}
    if response.status_code != 200:
        return {"ok": False, "detail": f"{url} answered HTTP {response.status_code}", "body": None}
    return {"ok": True, "detail": f"{url} answers", "body": response.text}


@contextlib.contextmanager
def warnings_suppressed(category):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category)
        yield


def _series_problem(d: plan.Probe, body: str) -> str | None:
    """Why ``body`` is not this exporter's healthy output (None: it is)."""
    exporter = d.exporter
    if not any(line.startswith(exporter.metric_prefix) for line in body.splitlines()):
        return f"/metrics has no {exporter.metric_prefix}* series: is another program on the port?"
    if d.verify_up and exporter.up_metric:
        match = re.search(rf"^{exporter.up_metric}(?:{{[^}}]*}})? (\S+)$", body, re.MULTILINE)
        if match is None:
            return f"/metrics has no {exporter.up_metric} series"
        if float(match.group(1)) != 1:
            return (
                f"{exporter.up_metric} is {match.group(1)}: the exporter runs but cannot reach "
                "what it watches (address, credentials, TLS?)"
            )
    return None


def _postgres_server_major(body: str) -> int | None:
    """The PostgreSQL major a running postgres_exporter reports (pg_static short_version)."""
    match = re.search(r'^pg_static\{[^}]*short_version="(\d+)\.', body, re.MULTILINE)
    return int(match.group(1)) if match else None


def _verify(d: plan.Desired) -> str:
    """Wait until the unit is active and /metrics shows healthy series; else raise."""
    unit = os.path.basename(d.unit_path)
    deadline = time.monotonic() + d.verify_timeout
    problem = "not checked yet"
    while True:
        state = _active(unit)
        if state == "active":
            scrape = _scrape(plan.Probe.of(d))
            problem = scrape["detail"] if not scrape["ok"] else None
            if problem is None and scrape["body"] is not None:
                problem = _series_problem(plan.Probe.of(d), scrape["body"])
                if problem is None and d.name == "postgres_exporter" and d.version:
                    major = _postgres_server_major(scrape["body"])
                    if major is not None:
                        try:
                            catalog.postgres_compatibility(d.version, major)
                        except catalog.CompatibilityError as err:
                            raise _NotHealthy(str(err), hard=True) from err
            if problem is None:
                return scrape["detail"]
        else:
            problem = f"unit {unit} is {state}"
        if time.monotonic() > deadline:
            raise _NotHealthy(f"after {d.verify_timeout}s: {problem}")
        time.sleep(1)


class _NotHealthy(Exception):
    def __init__(self, message: str, hard: bool = False):
        super().__init__(message)
        self.hard = hard


# ---------------------------------------------------------------------------------------
# Install steps
# ---------------------------------------------------------------------------------------
def _ensure_user(d: plan.Desired) -> bool:
    """Create the exporter's system user and group; True if created."""
    if d.user == "root" or __salt__["user.info"](d.user):
        return False
    if not __salt__["user.add"](  # noqa: S604 - the account's login shell, not a subprocess
        d.user,
        system=True,
        usergroup=True,
        home="/nonexistent",
        createhome=False,
        shell="/usr/sbin/nologin",
        fullname=f"opskit {d.name}",
    ):
        raise CommandExecutionError(f"{_minion()}: could not create system user {d.user}")
    return True


def _mask_package_unit(d: plan.Desired) -> None:
    """Mask the package's own unit (before installing it, so it never starts)."""
    unit = d.exporter.package_unit
    if unit and not __salt__["service.masked"](unit):
        __salt__["service.mask"](unit)
        if _active(unit) == "active":
            __salt__["service.stop"](unit)


def _install_package(d: plan.Desired, manifest: dict) -> str:
    _mask_package_unit(d)
    package = d.exporter.package
    package_user = d.exporter.package_user
    if package_user and not __salt__["user.info"](package_user):
        manifest["package_user_absent_before"] = package_user
    # A package's version is the exporter's own (for dcgm-exporter: the tag's second part).
    wanted = d.exporter.release_version(d.version) if d.version else None
    kwargs = {"version": f"{wanted}*"} if wanted else {}
    try:
        __salt__["pkg.install"](package, refresh=False, **kwargs)
    except CommandExecutionError as err:
        raise CommandExecutionError(
            f"{_minion()}: installing package {package} failed: {err}"
        ) from err
    installed = __salt__["pkg.version"](package)
    if not installed:
        raise CommandExecutionError(
            f"{_minion()}: package {package} is not installed after pkg.install"
        )
    if wanted and catalog.upstream_version(installed) != wanted:
        raise CommandExecutionError(
            f"{_minion()}: package {package} installed {installed}, not {wanted}; "
            "the repository has no such version"
        )
    return installed


def _prune_versions(d: plan.Desired, keep: str) -> None:
    root = pathlib.Path(d.install_dir)
    dirs = sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and p.name != keep),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in dirs[KEEP_VERSIONS - 1 :]:
        shutil.rmtree(old, ignore_errors=True)


def _nginx_test() -> None:
    out = _run(["nginx", "-t"])
    if out["retcode"] != 0:
        raise CommandExecutionError(
            f"{_minion()}: nginx -t rejects the configuration: {out['stderr'].strip()[-800:]}"
        )


def _nginx_reload() -> None:
    if _active("nginx.service") == "active":
        __salt__["service.reload"]("nginx.service")


def _apply_stub_status(d: plan.Desired, undo: _Undo) -> None:
    spec = d.stub_status
    if shutil.which("nginx") is None or not os.path.isdir(os.path.dirname(spec.path)):
        raise CommandExecutionError(
            f"{_minion()}: nginx_exporter's stub_status needs nginx, which is not installed "
            f"({os.path.dirname(spec.path)} missing); install nginx first, or set "
            "nginx.stub_status: false and nginx.scrape_uri"
        )
    if _read(spec.path) == spec.content:
        return
    undo.file(spec.path)
    _write_atomic(spec.path, spec.content, spec.mode)
    try:
        _nginx_test()
    except CommandExecutionError:
        undo.restore()
        raise
    _nginx_reload()


def _remove_stub_status() -> bool:
    path = os.path.join(plan.NGINX_CONF_DIR, plan.STUB_STATUS_CONF)
    if not os.path.exists(path):
        return False
    os.unlink(path)
    if shutil.which("nginx"):
        _nginx_test()
        _nginx_reload()
    return True


def _prechecks(d: plan.Desired) -> None:
    """Refusals that need the host: DCGM versions and an NVIDIA GPU."""
    if d.name != "dcgm_exporter":
        return
    installed = __salt__["pkg.version"](DCGM_CORE_PACKAGE)
    if installed:
        try:
            catalog.check_dcgm_pair(d.version, installed, f"the installed {DCGM_CORE_PACKAGE}")
        except catalog.CompatibilityError as err:
            raise CommandExecutionError(f"{_minion()}: {err}") from err
    gpus = catalog.nvidia_gpus()
    if not gpus["pci"]:
        raise CommandExecutionError(
            f"{_minion()}: refusing to install dcgm_exporter: this host has no NVIDIA GPU "
            f"(no PCI device with vendor {catalog.NVIDIA_PCI_VENDOR} and a VGA/3D class "
            f"under {gpus['sysfs']}); it would only crash-loop. Take dcgm_exporter out of "
            "this host's pillar (CMDB)."
        )
    if not gpus["driver"]:
        raise CommandExecutionError(
            f"{_minion()}: refusing to install dcgm_exporter: NVIDIA GPU(s) "
            f"{', '.join(gpus['pci'])} found, but the NVIDIA driver has not claimed them "
            f"({gpus['proc']} is empty or missing). Install and load the NVIDIA datacenter "
            "driver first."
        )


def _dcgm_prepare(d: plan.Desired, manifest: dict) -> dict:
    """NVIDIA's repository, the DCGM packages paired with the exporter, the hostengine.

    Not exercised in opskit's lab (no GPU there); the refusals before it are."""
    changes = {}
    dcgm = d.dcgm
    repo = dcgm["repo"]
    if repo.get("manage", True):
        repo_changes = dcgm_repo(
            present=True,
            base_url=repo.get("base_url"),
            keyring_source=repo.get("keyring_source"),
            keyring_sha256=repo.get("keyring_sha256"),
            proxy=d.proxy,
        )
        if repo_changes:
            changes["nvidia_repo"] = {"old": None, "new": sorted(repo_changes)}
            manifest["nvidia_repo"] = True
            __salt__["pkg.refresh_db"]()
    wanted = dcgm["dcgm_version"]
    installed = __salt__["pkg.version"](DCGM_CORE_PACKAGE)
    if not installed:
        if "nvidia_repo" not in changes:
            __salt__["pkg.refresh_db"]()
        pkgs = [{package: f"1:{wanted}*"} for package in dcgm["packages"]]
        __salt__["pkg.install"](pkgs=pkgs, refresh=False)
        installed = __salt__["pkg.version"](DCGM_CORE_PACKAGE)
        manifest["dcgm_packages"] = list(dcgm["packages"])
        changes["dcgm"] = {"old": None, "new": installed}
    try:
        catalog.check_dcgm_pair(d.version, installed or "", f"the installed {DCGM_CORE_PACKAGE}")
    except catalog.CompatibilityError as err:
        raise CommandExecutionError(f"{_minion()}: {err}") from err
    if not __salt__["service.enabled"](DCGM_HOSTENGINE_UNIT):
        __salt__["service.enable"](DCGM_HOSTENGINE_UNIT)
    if _active(DCGM_HOSTENGINE_UNIT) != "active":
        __salt__["service.start"](DCGM_HOSTENGINE_UNIT)
        changes["hostengine"] = {"old": "stopped", "new": "running"}
    return changes


# ---------------------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------------------
def list_() -> dict:
    """
    List the exporters opskit knows, with their defaults and what is installed here.

    CLI Example:

    .. code-block:: bash

        salt '*' exporter.list
    """
    result = {}
    for name, exporter in sorted(catalog.CATALOG.items()):
        manifest = _load_manifest(name)
        result[name] = {
            "description": exporter.description,
            "project": f"https://github.com/{exporter.project}",
            "default_port": exporter.port,
            "package": exporter.package,
            "architectures": sorted(set(exporter.arches.values())),
            "installed": (
                {"version": manifest.get("version"), "source": manifest.get("source")}
                if manifest
                else None
            ),
        }
    return result


def plan_(name: str, **kwargs) -> dict:
    """
    Show what ``exporter.install`` would change, without changing anything.

    Takes the same arguments as ``exporter.install``; returns the changes (old/new per
    thing; secret file contents are never shown), empty when all is in place. Refusals
    (unknown options, incompatible versions, no GPU for dcgm_exporter) raise.

    CLI Example:

    .. code-block:: bash

        salt '*' exporter.plan node_exporter version=1.8.2
    """
    d = _desired(name, kwargs)
    _prechecks(d)
    return _diff(d, _load_manifest(name))


def render(name: str, **kwargs) -> dict:
    """
    Render the unit and files ``exporter.install`` would write (secret contents hidden).

    CLI Example:

    .. code-block:: bash

        salt '*' exporter.render redis_exporter version=1.45.0 redis='{addr: rediss://db:6380}'
    """
    d = _desired(name, kwargs)
    public = d.public()
    public["unit_text"] = d.unit
    public["release"] = (
        {
            "asset_url": catalog.redact_url(d.release.asset_url),
            "checksums_url": catalog.redact_url(d.release.checksums_url),
            "member": d.release.member,
        }
        if d.release
        else None
    )
    if d.stub_status:
        public["files"][d.stub_status.path] = {"mode": "0644", "content": d.stub_status.content}
    public["warnings"] = d.warnings
    return public


def install(name: str, **kwargs) -> dict:
    """
    Install or update exporter ``name`` (node_exporter, redis_exporter, postgres_exporter,
    nginx_exporter, dcgm_exporter) and make sure it runs; return what changed.

    Options (also the state's and the formula's pillar): ``version`` (exact release; for
    dcgm_exporter the tag ``<DCGM>-<exporter>``), ``source`` (``archive`` or
    ``package``), ``base_url`` (a mirror instead of GitHub releases), ``proxy``,
    ``ca_bundle``, ``sha256`` (pin the archive), ``listen_address``, ``flags``, ``env``,
    ``web`` (``basic_auth_users``, ``tls``), ``verify_up``, ``verify_timeout``,
    ``target_host``, and per exporter ``textfile_directory``, ``redis``, ``postgres``,
    ``nginx``, ``dcgm`` (see the README's configuration reference).

    A second run with the same options changes nothing and downloads nothing. A failed
    download, checksum or start leaves what ran before running.

    CLI Example:

    .. code-block:: bash

        salt '*' exporter.install node_exporter version=1.8.2
        salt '*' exporter.install node_exporter version=1.8.2 base_url=http://mirror.example
        salt db1 exporter.install redis_exporter version=1.67.0 \\
            redis='{addr: "rediss://db1:6380", password: s3cret}'
    """
    _require_systemd()
    d = _desired(name, kwargs)
    _prechecks(d)
    manifest = _load_manifest(name) or {}
    changes = _diff(d, manifest or None)
    if not changes:
        return {}
    unit = os.path.basename(d.unit_path)
    was_active = _active(unit) == "active"
    undo = _Undo()
    new_manifest = dict(manifest)
    started = time.time()
    try:
        extra = _apply(d, changes, manifest, new_manifest, undo)
        started = time.time()
        undo.restarted = True
        __salt__["service.restart" if was_active else "service.start"](unit)
        detail = _verify(d)
    except _NotHealthy as err:
        logs = _journal(unit, started, d.secrets)
        rolled = _roll_back(d, undo, was_active, manifest)
        raise CommandExecutionError(
            f"{_minion()}: {name} {d.version or ''} did not come up healthy {err}; {rolled}. "
            f"Last log lines of {unit}:\n{logs}"
        ) from None
    except Exception as err:
        rolled = _roll_back(d, undo, was_active, manifest)
        message = catalog.redact(str(err), d.secrets)
        if isinstance(err, (CommandExecutionError, SaltInvocationError)):
            raise CommandExecutionError(f"{message} ({rolled})") from err
        raise CommandExecutionError(
            f"{_minion()}: installing {name} failed: {message} ({rolled})"
        ) from err
    new_manifest.update(
        {
            "version": d.version,
            "source": d.source,
            "listen": d.listen,
            "scheme": d.scheme,
            "basic_auth": d.basic_auth,
            "client_auth": d.client_auth,
            "target_host": d.target_host,
            "unit": d.unit_path,
            "exec_path": d.exec_path,
            "updated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
    )
    _save_manifest(name, new_manifest)
    if d.source == "archive":
        _prune_versions(d, d.release.key)
    changes.update(extra)
    if d.warnings:
        changes["warnings"] = {"old": None, "new": d.warnings}
    log.info("exporter %s: %s", name, detail)
    return changes


def _apply(d: plan.Desired, changes: dict, manifest: dict, new_manifest: dict, undo: _Undo):
    """Everything but the (re)start: binary, user, files, unit. Records how to undo."""
    extra = {}
    if manifest.get("source") and manifest["source"] != d.source:
        for _key, _change, action in _binary_removal(d.name, manifest):
            action()
        for key in ("release_key", "package", "masked_unit"):
            new_manifest.pop(key, None)
    if d.dcgm is not None:
        extra.update(_dcgm_prepare(d, new_manifest))
    if _ensure_user(d):
        new_manifest["created_user"] = undo.user = d.user
    if d.textfile_directory and not os.path.isdir(d.textfile_directory):
        created = _ensure_dir(d.textfile_directory, 0o755)
        undo.dirs += created
        new_manifest["created_textfile_directory"] = d.textfile_directory
        new_manifest["created_dirs"] = created
    if "binary" in changes:
        _install_binary(d, undo, new_manifest)
    _write_files(d, new_manifest, undo)
    if "enabled" in changes:
        __salt__["service.enable"](os.path.basename(d.unit_path))
    return extra


def _write_files(d: plan.Desired, new_manifest: dict, undo: _Undo) -> None:
    """Configuration and secret files, the stub_status block, then the unit."""
    undo.dirs += _ensure_dir(d.config_dir, 0o750, "root", d.user)
    wanted = {spec.path for spec in d.files}
    for spec in d.files:
        undo.file(spec.path)
        _write_atomic(spec.path, spec.content, spec.mode, spec.owner, spec.group)
    for stale in ("env", "web-config.yml"):
        path = f"{d.config_dir}/{stale}"
        if path not in wanted and os.path.exists(path):
            undo.file(path)
            os.unlink(path)
    if d.stub_status is not None:
        _apply_stub_status(d, undo)
        new_manifest["stub_status"] = d.stub_status.path
    elif new_manifest.pop("stub_status", None):
        _remove_stub_status()
    undo.file(d.unit_path)
    if _read(d.unit_path) != d.unit:
        _write_atomic(d.unit_path, d.unit, 0o644)
        __salt__["service.systemctl_reload"]()


def _install_binary(d: plan.Desired, undo: _Undo, manifest: dict) -> None:
    if d.source == "package":
        manifest["package"] = _install_package(d, manifest)
        manifest["masked_unit"] = d.exporter.package_unit
        _check_binary_version_if_known(d, d.exec_path)
        return
    archive, archive_sha = _fetch_archive(d)
    final, binary_sha = _unpack(d, archive)
    _check_binary_version(d, str(final / d.exporter.binary))
    undo.link(d.current_link)
    _switch_link(d.current_link, d.release.key)
    manifest.update(
        {
            "release_key": d.release.key,
            "arch": d.release.arch,
            "asset_url": catalog.redact_url(d.release.asset_url),
            "archive_sha256": archive_sha,
            "binary_sha256": binary_sha,
        }
    )


def _check_binary_version_if_known(d: plan.Desired, binary: str) -> None:
    if d.version:
        _check_binary_version(d, binary)


def _roll_back(d: plan.Desired, undo: _Undo, was_active: bool, manifest: dict) -> str:
    """Put files, link and unit back as they were and restart what ran before."""
    unit = os.path.basename(d.unit_path)
    if not undo.touched:
        running = manifest.get("version") or "what ran before"
        return f"nothing was changed; {running} keeps running" if was_active else "nothing changed"
    if not was_active:
        with contextlib.suppress(CommandExecutionError):
            __salt__["service.stop"](unit)
        with contextlib.suppress(CommandExecutionError):
            __salt__["service.disable"](unit)
    undo.restore()
    with contextlib.suppress(CommandExecutionError):
        __salt__["service.systemctl_reload"]()
    if was_active:
        with contextlib.suppress(CommandExecutionError):
            __salt__["service.restart"](unit)
        return f"rolled back: {manifest.get('version') or 'the previous version'} runs again"
    _run(["systemctl", "reset-failed", unit])
    return "rolled back: nothing runs in its place"


def _binary_removal(name: str, manifest: dict) -> list:
    """Steps that take away the binaries: versioned directories or the OS package."""
    steps = []
    install_dir = pathlib.Path(plan.INSTALL_ROOT) / name
    if install_dir.exists():
        steps.append(
            ("binaries", {"old": str(install_dir), "new": None}, lambda: shutil.rmtree(install_dir))
        )
    if manifest.get("package"):
        package = catalog.CATALOG[name].package
        steps.append(
            (
                "package",
                {"old": f"{package} {manifest['package']}", "new": None},
                lambda: __salt__["pkg.purge"](package),
            )
        )
    package_user = manifest.get("package_user_absent_before")
    if package_user and __salt__["user.info"](package_user):
        # The package's postinst made this user and purging leaves it: delete it unless
        # another installed package of the same family still needs it.
        ours = catalog.CATALOG[name].package
        family = [
            pkg
            for pkg in __salt__["pkg.list_pkgs"]()
            if pkg.startswith(f"{package_user}-") and pkg != ours
        ]
        if not family:
            change = {"old": package_user, "new": None}
            steps.append(
                (f"package user {package_user}", change, lambda: _delete_user(package_user))
            )
    masked = manifest.get("masked_unit")
    if masked and __salt__["service.masked"](masked):
        steps.append(
            (
                f"mask {masked}",
                {"old": "masked", "new": None},
                lambda: __salt__["service.unmask"](masked),
            )
        )
    return steps


def _removal(name: str) -> list:
    """(what, {"old", "new"}, action) for everything opskit installed for ``name``."""
    manifest = _load_manifest(name) or {}
    unit = f"{name}.service"
    unit_path = f"{plan.UNIT_DIR}/{unit}"
    steps = []
    state = _active(unit)
    if os.path.exists(unit_path) or state not in ("absent", "inactive"):
        steps.append(("service", {"old": state, "new": "removed"}, lambda: _remove_unit(unit)))
    steps += _binary_removal(name, manifest)
    for path in (f"{plan.CONFIG_ROOT}/{name}", f"{plan.CACHE_ROOT}/{name}"):
        if os.path.exists(path):
            steps.append((path, {"old": "present", "new": None}, lambda p=path: shutil.rmtree(p)))
    if manifest.get("stub_status") and os.path.exists(manifest["stub_status"]):
        steps.append(("stub_status", {"old": "present", "new": None}, _remove_stub_status))
    textfile = manifest.get("created_textfile_directory")
    if textfile and os.path.isdir(textfile):
        if any(os.scandir(textfile)):
            kept = f"{textfile} kept: it holds files other tools wrote"
            steps.append(("textfile_directory", {"old": textfile, "new": kept}, lambda: None))
        else:
            created = manifest.get("created_dirs") or [textfile]
            change = {"old": textfile, "new": None}
            steps.append(("textfile_directory", change, lambda: _rmdirs(created)))
    if manifest.get("nvidia_repo"):
        steps.append(("nvidia_repo", {"old": "configured", "new": None}, _remove_nvidia_repo))
    if manifest.get("dcgm_packages"):
        packages = manifest["dcgm_packages"]
        change = {"old": packages, "new": None}
        steps.append(("dcgm", change, lambda: __salt__["pkg.purge"](pkgs=packages)))
    user = manifest.get("created_user")
    if user and __salt__["user.info"](user):
        steps.append(("user", {"old": user, "new": None}, lambda: _delete_user(user)))
    manifest_path = _manifest_path(name)
    if manifest_path.exists():
        change = {"old": str(manifest_path), "new": None}
        steps.append(("manifest", change, manifest_path.unlink))
    return steps


def _rmdirs(directories: list[str]) -> None:
    """Remove directories opskit created, innermost first, as long as they are empty."""
    for directory in reversed(directories):
        with contextlib.suppress(OSError):
            os.rmdir(directory)


def _remove_unit(unit: str) -> None:
    with contextlib.suppress(CommandExecutionError):
        __salt__["service.stop"](unit)
    with contextlib.suppress(CommandExecutionError):
        __salt__["service.disable"](unit)
    pathlib.Path(plan.UNIT_DIR, unit).unlink(missing_ok=True)
    __salt__["service.systemctl_reload"]()
    _run(["systemctl", "reset-failed", unit])


def _remove_nvidia_repo() -> None:
    dcgm_repo(present=False)


def _delete_user(user: str) -> None:
    __salt__["user.delete"](user)
    if __salt__["group.info"](user):
        __salt__["group.delete"](user)


def remove(name: str, test: bool = False) -> dict:
    """
    Stop and remove exporter ``name`` and everything opskit installed for it: unit,
    binaries, configuration and secrets, download cache, the nginx stub_status block,
    the OS package it installed, and the system user it created. Returns what changed
    (with ``test=True``: what would change, changing nothing).

    CLI Example:

    .. code-block:: bash

        salt '*' exporter.remove redis_exporter
        salt '*' exporter.remove redis_exporter test=True
    """
    if name not in catalog.CATALOG:
        known = ", ".join(sorted(catalog.CATALOG))
        raise _invocation_error(ValueError(f"unknown exporter {name!r}; known: {known}"))
    _require_systemd()
    steps = _removal(name)
    changes = {what: change for what, change, _ in steps}
    if test:
        return changes
    for what, _change, action in steps:
        try:
            action()
        except (OSError, CommandExecutionError) as err:
            raise CommandExecutionError(
                f"{_minion()}: removing {name}: {what} failed: {err}; run exporter.remove "
                "again once fixed"
            ) from err
    for root in (plan.INSTALL_ROOT, plan.CONFIG_ROOT, plan.CACHE_ROOT, plan.STATE_ROOT):
        _remove_empty_parents(pathlib.Path(root))
    return changes


def _remove_empty_parents(directory: pathlib.Path) -> None:
    """rmdir opskit's own directories once empty (…/exporters, then …/opskit)."""
    for path in (directory, directory.parent):
        if path.name in ("exporters", "opskit") and path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def status(name: str | None = None) -> dict:
    """
    Report installed exporters: version, source, unit state, listen address, and
    whether ``/metrics`` answers with the exporter's own series.

    CLI Example:

    .. code-block:: bash

        salt '*' exporter.status
        salt '*' exporter.status node_exporter
    """
    names = [name] if name else _installed_names()
    result = {}
    for item in names:
        manifest = _load_manifest(item)
        unit = f"{item}.service"
        props = _unit_props(unit)
        if manifest is None:
            result[item] = {"installed": False, "unit": props.get("ActiveState", "absent")}
            continue
        exporter = catalog.CATALOG[item]
        host, port = catalog.parse_listen(manifest.get("listen"), exporter.port)
        probe = plan.Probe(
            name=item,
            exporter=exporter,
            version=manifest.get("version"),
            listen_host=host,
            listen_port=port,
            scheme=manifest.get("scheme", "http"),
            basic_auth=manifest.get("basic_auth", False),
            client_auth=manifest.get("client_auth", False),
        )
        scrape = _scrape(probe)
        problem = None if scrape["ok"] else scrape["detail"]
        if problem is None and scrape["body"] is not None:
            problem = _series_problem(probe, scrape["body"])
        result[item] = {
            "installed": True,
            "version": manifest.get("version"),
            "source": manifest.get("source"),
            "unit": f"{props.get('ActiveState', 'absent')} ({props.get('SubState', '?')})",
            "enabled": props.get("UnitFileState") == "enabled",
            "listen": manifest.get("listen"),
            "metrics": scrape["detail"] if problem is None else "failing",
            "metrics_ok": problem is None,
            "problem": problem,
        }
    return result


def targets() -> list:
    """
    The scrape targets of the exporters installed here, in Prometheus ``file_sd``
    shape (one group per exporter): the address, ``job`` (the exporter's name), the
    scheme and path, and ``__opskit_basic_auth__`` / ``__opskit_client_cert__`` when
    the exporter's web configuration wants credentials. ``opskit.targets`` (the mine
    function the ``common`` formula publishes) adds the minion id and roles.

    CLI Example:

    .. code-block:: bash

        salt '*' exporter.targets
    """
    result = []
    for name in _installed_names():
        manifest = _load_manifest(name) or {}
        exporter = catalog.CATALOG[name]
        host, port = catalog.parse_listen(manifest.get("listen"), exporter.port)
        if host in ("", "0.0.0.0", "::"):  # noqa: S104 - a comparison, not a bind
            host = manifest.get("target_host") or __grains__.get("fqdn") or _minion()
        elif manifest.get("target_host"):
            host = manifest["target_host"]
        labels = {
            "job": name,
            "__scheme__": manifest.get("scheme", "http"),
            "__metrics_path__": "/metrics",
        }
        if manifest.get("basic_auth"):
            labels["__opskit_basic_auth__"] = "true"
        if manifest.get("client_auth"):
            labels["__opskit_client_cert__"] = "true"
        result.append({"targets": [catalog.format_listen(host, port)], "labels": labels})
    return result


def validate(exporters: dict) -> bool:
    """
    Check a whole ``exporters`` mapping (as the formula's pillar holds it) without
    changing anything; raise with every problem found, each naming exporter and option.

    CLI Example:

    .. code-block:: bash

        salt '*' exporter.validate '{node_exporter: {version: 1.8.2}}'
    """
    if not isinstance(exporters, dict):
        raise _invocation_error(ValueError("exporters must be a mapping of exporter -> options"))
    problems = []
    for name, given in exporters.items():
        options = given or {}
        if not isinstance(options, dict):
            problems.append(f"{name}: options must be a mapping, got {options!r}")
            continue
        ensure = options.get("ensure", "present")
        if ensure not in ("present", "absent"):
            problems.append(f"{name}: ensure must be present or absent, got {ensure!r}")
            continue
        try:
            if ensure == "absent":
                if name not in catalog.CATALOG:
                    raise ValueError(f"unknown exporter {name!r}")
                continue
            plan.build(
                name,
                {k: v for k, v in options.items() if k != "ensure"},
                __grains__.get("cpuarch", ""),
            )
        except ValueError as err:
            problems.append(str(err))
    if problems:
        raise SaltInvocationError(
            f"{_minion()}: invalid exporters pillar:\n  " + "\n  ".join(problems)
        )
    return True


def gpus() -> dict:
    """
    Show the NVIDIA GPUs opskit sees (PCI devices with vendor 0x10de and a VGA/3D class
    in sysfs) and which of them the NVIDIA driver has claimed.

    CLI Example:

    .. code-block:: bash

        salt '*' exporter.gpus
    """
    return catalog.nvidia_gpus()


def dcgm_repo(
    present: bool = True,
    base_url: str | None = None,
    keyring_source: str | None = None,
    keyring_sha256: str | None = None,
    proxy: str | None = None,
) -> dict:
    """
    Configure (or with ``present=False`` remove) NVIDIA's CUDA apt repository for DCGM:
    a keyring verified against ``keyring_sha256``, a ``signed-by`` source for this
    distribution and architecture, and an apt pin that takes only DCGM packages from
    it by default. Does not run ``apt-get update``.

    ``keyring_source`` is a path on the minion, a ``salt://`` URL or an http(s) URL of
    NVIDIA's repository key (ASCII-armored or binary); ``keyring_sha256`` pins it.
    ``base_url`` replaces ``https://developer.download.nvidia.com/compute/cuda/repos``
    (a mirror).

    CLI Example:

    .. code-block:: bash

        salt gpu1 exporter.dcgm_repo keyring_source=salt://keys/cuda.pub keyring_sha256=<sha256>
        salt gpu1 exporter.dcgm_repo present=False
    """
    changes = {}
    if not present:
        for path in (NVIDIA_SOURCE, NVIDIA_PIN, f"{NVIDIA_KEYRING}.gpg", f"{NVIDIA_KEYRING}.asc"):
            if os.path.exists(path):
                os.unlink(path)
                changes[path] = {"old": "present", "new": None}
        return changes
    if not keyring_source or not keyring_sha256:
        raise SaltInvocationError(
            f"{_minion()}: NVIDIA's repository needs dcgm.repo.keyring_source and "
            "dcgm.repo.keyring_sha256 (the sha256 of the key file you vetted); opskit "
            "trusts no key it cannot check"
        )
    try:
        expected = catalog.normalise_sha256(keyring_sha256, "dcgm.repo.keyring_sha256")
        repo_path = catalog.nvidia_repo_path(
            __grains__.get("os", ""),
            __grains__.get("osmajorrelease", ""),
            __grains__.get("cpuarch", ""),
        )
    except ValueError as err:
        raise _invocation_error(err) from err
    key = _fetch_small(keyring_source, proxy)
    import hashlib

    actual = hashlib.sha256(key).hexdigest()
    if actual != expected:
        raise CommandExecutionError(
            f"{_minion()}: the NVIDIA repository key from {catalog.redact_url(keyring_source)} "
            f"has sha256 {actual}, not the pinned {expected}; nothing was configured"
        )
    armored = key.lstrip().startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    keyring = f"{NVIDIA_KEYRING}.{'asc' if armored else 'gpg'}"
    repo_url = f"{(base_url or NVIDIA_REPO_BASE).rstrip('/')}/{repo_path}"
    wanted = {
        keyring: key,
        NVIDIA_SOURCE: catalog.nvidia_apt_source(repo_url, keyring).encode(),
        NVIDIA_PIN: catalog.nvidia_apt_pin(repo_url).encode(),
    }
    for path, content in wanted.items():
        current = pathlib.Path(path).read_bytes() if os.path.exists(path) else None
        if current != content:
            _write_atomic(path, content, 0o644)
            changes[path] = {"old": None if current is None else "different", "new": "written"}
    return changes


def _fetch_small(source: str, proxy: str | None) -> bytes:
    """Read a small file from a path, salt:// or http(s)."""
    if source.startswith("salt://"):
        cached = __salt__["cp.cache_file"](source)
        if not cached:
            raise CommandExecutionError(f"{_minion()}: {source} is not on the master")
        return pathlib.Path(cached).read_bytes()
    if source.startswith(("http://", "https://")):
        import requests

        session = requests.Session()
        session.trust_env = False
        if proxy:
            session.proxies = {"http": proxy, "https": proxy}
        try:
            response = session.get(source, timeout=HTTP_TIMEOUT)
            response.raise_for_status()
        except requests.RequestException as err:
            raise CommandExecutionError(
                f"{_minion()}: cannot download {catalog.redact_url(source)}: "
                f"{catalog.redact(str(err), [proxy or ''])}"
            ) from err
        return response.content
    try:
        return pathlib.Path(source).read_bytes()
    except OSError as err:
        raise CommandExecutionError(f"{_minion()}: cannot read {source}: {err}") from err
