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
the process's arguments, the state's ``changes`` nor error messages hold them. The
``exporters`` formula passes none as state arguments: it names the pillar keys
(``secrets_from``) and this module reads the secret options from pillar on the minion.

The work is done in ``_utils/opskit_exporter_*.py``: the catalog (``catalog``), options
to a plan (``options``, ``plan``, ``templates``), downloads (``fetch``), the comparison
with the host (``diff``), installing (``install``), health checks and rollback
(``probe``), NVIDIA/DCGM (``dcgm``) and removal (``removal``). This module builds the
plan once per call and hands it through.
"""

from __future__ import annotations

import logging

from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError

try:
    import opskit_exporter_catalog as catalog  # synced from file_roots, or module_dirs
    import opskit_exporter_dcgm as dcgm
    import opskit_exporter_host as host_mod
    import opskit_exporter_install as installer
    import opskit_exporter_options as opts
    import opskit_exporter_plan as plan
    import opskit_exporter_probe as probe
    import opskit_exporter_removal as removal
    import opskit_exporter_templates as templates
    import opskit_net
    import opskit_settings_exporters as settings
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_exporter_catalog as catalog
    from saltext.opskit.utils import opskit_exporter_dcgm as dcgm
    from saltext.opskit.utils import opskit_exporter_host as host_mod
    from saltext.opskit.utils import opskit_exporter_install as installer
    from saltext.opskit.utils import opskit_exporter_options as opts
    from saltext.opskit.utils import opskit_exporter_plan as plan
    from saltext.opskit.utils import opskit_exporter_probe as probe
    from saltext.opskit.utils import opskit_exporter_removal as removal
    from saltext.opskit.utils import opskit_exporter_templates as templates
    from saltext.opskit.utils import opskit_net
    from saltext.opskit.utils import opskit_settings_exporters as settings

log = logging.getLogger(__name__)

__virtualname__ = "exporter"
__func_alias__ = {"list_": "list", "plan_": "plan"}


def __virtual__():
    if __grains__.get("kernel") != "Linux":
        return (False, "exporter: Prometheus exporters are managed on Linux only")
    return __virtualname__


def _minion() -> str:
    return __opts__.get("id") or __grains__.get("id") or "this minion"


def _host() -> host_mod.Host:
    return host_mod.Host(__salt__, _minion(), plan.STATE_ROOT)


def _invocation_error(err: Exception) -> SaltInvocationError:
    return SaltInvocationError(f"{_minion()}: {err}")


def _require_systemd() -> None:
    import salt.utils.systemd

    if not salt.utils.systemd.booted(__context__):
        raise CommandExecutionError(
            f"{_minion()}: opskit runs exporters as systemd services, and systemd is not "
            "the init system here"
        )


def _with_pillar_secrets(name: str, kwargs: dict) -> dict:
    """The options with the secret ones (``settings.SECRET_OPTIONS``: marked secret in
    the schema) read from the pillar keys ``secrets_from`` names (merged in order,
    later keys winning, as the formula merges options)."""
    options = {k: v for k, v in kwargs.items() if not str(k).startswith("__")}
    sources = options.pop("secrets_from", None)
    if not sources:
        return options
    import salt.utils.data
    import salt.utils.dictupdate

    sources = [sources] if isinstance(sources, str) else sources
    merged = {}
    for key in sources:
        # __pillar__ itself, not pillar.get: from Salt 3008 on, pillar.get hands
        # execution modules masked values (salt.utils.secret) unless unmask=True.
        value = salt.utils.data.traverse_dict_and_list(__pillar__, str(key), {}, ":")
        if not isinstance(value, dict):
            raise _invocation_error(ValueError(f"pillar {key} must be a mapping of options"))
        merged = salt.utils.dictupdate.merge(merged, value, strategy="recurse")
    for option in settings.SECRET_OPTIONS.get(name, ()):
        value = salt.utils.data.traverse_dict(merged, ":".join(option), None, delimiter=":")
        if value is None:
            continue
        *heads, leaf = option
        target = options
        for part in heads:
            child = target.get(part)
            if child is not None and not isinstance(child, dict):
                raise _invocation_error(ValueError(f"{part} must be a mapping, got {child!r}"))
            target[part] = dict(child or {})
            target = target[part]
        target[leaf] = value
    return options


def _plan(name: str, kwargs: dict, render: bool = True) -> plan.Desired:
    """Build the plan once: options checked, unit and files rendered from templates."""
    renderer = None
    if render:
        saltenv = __opts__.get("saltenv") or "base"
        renderer = templates.Renderer(templates.salt_loader(__salt__, saltenv, __context__))
    try:
        return plan.build(
            name, _with_pillar_secrets(name, kwargs), __grains__.get("cpuarch", ""), renderer
        )
    except (ValueError, SaltInvocationError) as err:
        raise _invocation_error(err) from err


def list_() -> dict:
    """
    List the exporters opskit knows, with their defaults and what is installed here.

    CLI Example:

    .. code-block:: bash

        salt '*' exporter.list
    """
    host = _host()
    result = {}
    for name, exporter in sorted(catalog.CATALOG.items()):
        manifest = host.load_manifest(name)
        result[name] = {
            "description": exporter.description,
            "project": f"https://github.com/{exporter.project}",
            "default_port": exporter.port,
            "package": exporter.package.name if exporter.package else None,
            "architectures": sorted(set(exporter.arches.values())),
            "installed": (
                {"version": manifest.get("version"), "source": manifest.get("source")}
                if manifest
                else None
            ),
        }
    return result


def converge(name: str, test: bool = False, **kwargs) -> dict:
    """
    Install or update exporter ``name`` as ``exporter.install`` does, building the plan
    once: returns ``{"changes": ..., "remaining": ...}``, where ``remaining`` is what
    still differs afterwards (empty when all is in place). With ``test=True`` nothing
    changes and both hold what would change. The ``exporter.installed`` state uses it.

    CLI Example:

    .. code-block:: bash

        salt '*' exporter.converge node_exporter version=1.8.2 test=True
    """
    d = _plan(name, kwargs)
    if not test:
        _require_systemd()
    grains = dict(__grains__)
    return installer.converge(_host(), grains, d, test=bool(test))


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
    return converge(name, test=True, **kwargs)["changes"]


def render(name: str, **kwargs) -> dict:
    """
    Render the unit and files ``exporter.install`` would write (secret contents hidden),
    and say which template each came from.

    CLI Example:

    .. code-block:: bash

        salt '*' exporter.render redis_exporter version=1.45.0 redis='{addr: rediss://db:6380}'
    """
    d = _plan(name, kwargs)
    public = d.public()
    public["unit_text"] = d.unit
    public["templates"] = d.templates
    public["release"] = (
        {
            "asset_url": opts.redact_url(d.release.asset_url),
            "checksums_url": opts.redact_url(d.release.checksums_url),
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
    ``nginx``, ``dcgm`` (see docs/exporters.md). ``secrets_from`` names pillar keys
    (``exporters:defaults``, ``exporters:redis_exporter``) to read the secret options
    from on the minion.

    A second run with the same options changes nothing and downloads nothing. A failed
    download, checksum or start leaves what ran before running.

    CLI Example:

    .. code-block:: bash

        salt '*' exporter.install node_exporter version=1.8.2
        salt '*' exporter.install node_exporter version=1.8.2 base_url=http://mirror.example
        salt db1 exporter.install redis_exporter version=1.67.0 \\
            redis='{addr: "rediss://db1:6380"}' secrets_from=exporters:redis_exporter
    """
    result = converge(name, **kwargs)
    log.info("exporter %s: %s", name, "changed" if result["changes"] else "in place")
    return result["changes"]


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
    steps = removal.steps(_host(), name)
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
    removal.remove_empty_roots()
    return changes


def status(name: str | None = None) -> dict:
    """
    Report installed exporters: version, source, unit state, listen address, and
    whether ``/metrics`` answers with the exporter's own series.

    CLI Example:

    .. code-block:: bash

        salt '*' exporter.status
        salt '*' exporter.status node_exporter
    """
    host = _host()
    names = [name] if name else host.installed_names(catalog.CATALOG)
    result = {}
    for item in names:
        manifest = host.load_manifest(item)
        props = host.unit_props(f"{item}.service")
        if manifest is None:
            result[item] = {"installed": False, "unit": props.get("ActiveState", "absent")}
            continue
        problem, scrape = probe.health(probe.Probe.from_manifest(item, manifest))
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
    host = _host()
    result = []
    for name in host.installed_names(catalog.CATALOG):
        manifest = host.load_manifest(name) or {}
        exporter = catalog.CATALOG[name]
        address, port = opskit_net.parse_listen(
            manifest.get("listen") or "", exporter.port, allow_hostname=True
        )
        if address in ("", "0.0.0.0", "::"):  # noqa: S104 - a comparison, not a bind
            address = manifest.get("target_host") or __grains__.get("fqdn") or _minion()
        elif manifest.get("target_host"):
            address = manifest["target_host"]
        labels = {
            "job": name,
            "__scheme__": manifest.get("scheme", "http"),
            "__metrics_path__": "/metrics",
        }
        if manifest.get("basic_auth"):
            labels["__opskit_basic_auth__"] = "true"
        if manifest.get("client_auth"):
            labels["__opskit_client_cert__"] = "true"
        result.append({"targets": [opskit_net.format_listen(address, port)], "labels": labels})
    return result


def validate(exporters: dict) -> bool:
    """
    Check a whole ``exporters`` mapping (as the formula's pillar holds it) without
    changing anything, as the formula does when it renders (``opskit.check``: the
    schema in ``_utils/opskit_settings_exporters.py``); raise with every problem found,
    each naming its key path (exporter and option). Host facts (CPU architecture, GPU)
    are checked when an exporter is installed.

    CLI Example:

    .. code-block:: bash

        salt '*' exporter.validate '{node_exporter: {version: 1.8.2}}'
    """
    problems = __salt__["opskit.check"]("exporters", exporters)
    if problems:
        raise SaltInvocationError(
            f"{_minion()}: invalid exporters pillar:\n  " + "\n  ".join(problems)
        )
    return True


def without_secrets(name: str, options: dict) -> dict:
    """
    Return exporter ``name``'s ``options`` without the secret ones (those the schema
    marks secret: ``env``, ``web:basic_auth_users``, ``redis:password``,
    ``postgres:password``, ``postgres:dsn``, URLs that may carry credentials:
    ``base_url``, ``url_template``, ``proxy``, ``nginx:scrape_uri``) and without unset
    ones: what the ``exporters`` formula renders into state arguments.

    CLI Example:

    .. code-block:: bash

        salt '*' exporter.without_secrets redis_exporter '{redis: {password: x}}'
    """
    secret = settings.SECRET_OPTIONS.get(name, ())

    def strip(value, path):
        if not isinstance(value, dict):
            return value
        return {
            key: strip(item, (*path, key))
            for key, item in value.items()
            if (*path, key) not in secret and item is not None
        }

    return strip(options, ())


def gpus() -> dict:
    """
    Show the NVIDIA GPUs opskit sees (PCI devices with vendor 0x10de and a VGA/3D class
    in sysfs) and which of them the NVIDIA driver has claimed.

    CLI Example:

    .. code-block:: bash

        salt '*' exporter.gpus
    """
    return dcgm.nvidia_gpus()


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
    return dcgm.repo(
        _host(),
        __grains__,
        present=present,
        base_url=base_url,
        keyring_source=keyring_source,
        keyring_sha256=keyring_sha256,
        proxy=proxy,
    )
