"""From options to a desired exporter installation (validated, rendered, no I/O).

``build(name, options, machine, renderer)`` checks the options an operator gives for
one exporter (module keyword arguments, state arguments or formula pillar: the same
schema everywhere) and returns a ``Desired``: the release to download or package to
install, the system user, the systemd unit text, and the files to write with their
modes and owners. The unit, the web configuration and the stub_status block come from
the templates (``opskit_exporter_templates``); without a renderer, ``build`` only
checks. Secrets (redis password, PostgreSQL DSN, basic-auth hashes) only ever go into
files of mode 0600 owned by the exporter's user; the unit and the process's arguments
never hold them. Errors are ``ValueError`` naming the exporter, the option and the
value's problem.
"""

from __future__ import annotations

import dataclasses
import logging

try:
    import opskit_exporter_catalog as catalog  # synced from file_roots, or module_dirs
    import opskit_exporter_options as opts
    import opskit_formats
    import opskit_net
    import opskit_settings_exporters as settings
    from opskit_exporter_templates import Word
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_exporter_catalog as catalog
    from saltext.opskit.utils import opskit_exporter_options as opts
    from saltext.opskit.utils import opskit_formats
    from saltext.opskit.utils import opskit_net
    from saltext.opskit.utils import opskit_settings_exporters as settings
    from saltext.opskit.utils.opskit_exporter_templates import Word

log = logging.getLogger(__name__)

INSTALL_ROOT = "/opt/opskit/exporters"
CONFIG_ROOT = "/etc/opskit/exporters"
STATE_ROOT = "/var/lib/opskit/exporters"
CACHE_ROOT = "/var/cache/opskit/exporters"
UNIT_DIR = "/etc/systemd/system"
NGINX_CONF_DIR = "/etc/nginx/conf.d"
STUB_STATUS_CONF = "opskit-nginx-exporter-stub-status.conf"


@dataclasses.dataclass
class FileSpec:
    """A file opskit writes for an exporter."""

    path: str
    content: str | None  # None until the plan is rendered
    mode: int
    owner: str
    group: str
    secret: bool = False  # content never shown in changes, logs or returns
    template: str | None = None
    context: dict | None = None


@dataclasses.dataclass
class Desired:
    """One exporter as the options say it should be."""

    name: str
    exporter: catalog.Exporter
    source: str
    version: str | None  # None: whatever the package repository has (source: package)
    release: catalog.Release | None
    base_url: str | None
    proxy: str | None
    ca_bundle: str | None
    sha256: str | None
    listen_host: str
    listen_port: int
    user: str
    exec_path: str
    unit_path: str
    unit_context: dict
    files: list[FileSpec]
    config_dir: str
    secrets: list[str]
    scheme: str
    basic_auth: bool
    client_auth: bool
    verify_up: bool
    verify_timeout: int
    target_host: str | None
    textfile_directory: str | None = None
    stub_status: FileSpec | None = None
    postgres_major: str | None = None  # as PostgreSQL names it: 15, 9.6
    dcgm: dict | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)
    unit: str | None = None  # the rendered unit
    templates: dict = dataclasses.field(default_factory=dict)  # template -> source used

    @property
    def unit_name(self) -> str:
        return f"{self.name}.service"

    @property
    def install_dir(self) -> str:
        return f"{INSTALL_ROOT}/{self.name}"

    @property
    def current_link(self) -> str:
        return f"{INSTALL_ROOT}/{self.name}/current"

    @property
    def listen(self) -> str:
        return opskit_net.format_listen(self.listen_host, self.listen_port)

    def public(self) -> dict:
        """What may be shown: everything but secret file contents."""
        return {
            "name": self.name,
            "source": self.source,
            "version": self.version,
            "listen": self.listen,
            "user": self.user,
            "unit": self.unit_path,
            "files": {
                f.path: {
                    "mode": f"{f.mode:04o}",
                    "owner": f.owner,
                    "group": f.group,
                    "content": "<secret: hidden>" if f.secret else f.content,
                }
                for f in self.files
            },
        }


SECTIONS = {
    "node_exporter": lambda parts, o: opts.textfile(
        parts, o.get("textfile_directory", opts.NODE_TEXTFILE_DEFAULT)
    ),
    "redis_exporter": lambda parts, o: opts.redis(parts, o.get("redis")),
    "postgres_exporter": lambda parts, o: opts.postgres(parts, o.get("postgres")),
    "nginx_exporter": lambda parts, o: opts.nginx(parts, o.get("nginx")),
    "dcgm_exporter": lambda parts, o: opts.dcgm(parts, o.get("dcgm")),
}


def build(name: str, options: dict | None, machine: str | None, renderer=None) -> Desired:
    """Validate ``options`` for exporter ``name`` (the schema in
    ``opskit_settings_exporters``: ``SettingsError`` for bad values, ``ValueError`` for
    rules across options); render what it needs if given a ``renderer``
    (``opskit_exporter_templates.Renderer``). ``machine`` None (render time: no host
    facts) checks everything but the release's CPU architecture."""
    if name not in catalog.CATALOG:
        raise ValueError(
            f"unknown exporter {name!r}; opskit knows: {', '.join(sorted(catalog.CATALOG))}"
        )
    exporter = catalog.CATALOG[name]
    options = {k: v for k, v in (options or {}).items() if not str(k).startswith("__")}
    options = settings.validate_options(name, options)
    source, version = _source_and_version(exporter, options)
    release, base_url, sha256 = _release(exporter, options, source, version, machine)
    listen_host, listen_port = opskit_net.parse_listen(
        options.get("listen_address") or "", exporter.port, allow_hostname=True
    )

    parts = opts.Parts(
        name=name,
        exporter=exporter,
        version=version,
        user="root" if exporter.run_as_root else name,
        config_dir=f"{CONFIG_ROOT}/{name}",
        archive_dir=f"{INSTALL_ROOT}/{name}/current" if source == "archive" else None,
    )
    opts.user_env(parts, options.get("env"))
    opts.web(parts, options.get("web"))
    SECTIONS[name](parts, options)
    extra = opts.flag_args(exporter, version, options.get("flags"))
    files, stub_status = _files(parts)
    if source == "archive":
        exec_path = f"{INSTALL_ROOT}/{name}/current/{exporter.binary}"
    else:
        exec_path = exporter.package.binary
    exec_start = [
        Word(exec_path),
        Word(f"{exporter.listen_flag}={opskit_net.format_listen(listen_host, listen_port)}"),
        *parts.args,
        *(Word(arg) for arg in extra),
    ]
    desired = Desired(
        name=name,
        exporter=exporter,
        source=source,
        version=version,
        release=release,
        base_url=base_url,
        proxy=options.get("proxy"),
        ca_bundle=options.get("ca_bundle"),
        sha256=sha256,
        listen_host=listen_host,
        listen_port=listen_port,
        user=parts.user,
        exec_path=exec_path,
        unit_path=f"{UNIT_DIR}/{parts.unit_name}",
        unit_context=_unit_context(parts, source, exec_start, files),
        files=files,
        config_dir=parts.config_dir,
        secrets=parts.secrets,
        scheme=parts.scheme,
        basic_auth=parts.basic_auth,
        client_auth=parts.client_auth,
        verify_up=options["verify_up"],
        verify_timeout=options["verify_timeout"],
        target_host=options.get("target_host"),
        textfile_directory=parts.textfile_directory,
        stub_status=stub_status,
        postgres_major=parts.postgres_major,
        dcgm=parts.dcgm,
        warnings=parts.warnings,
    )
    if renderer is not None:
        render(desired, renderer)
    return desired


def _release(exporter, options: dict, source: str, version: str | None, machine: str):
    """(release, base_url, pinned sha256) of an archive install; Nones for packages."""
    name = exporter.name
    base_url = options.get("base_url")
    sha256 = options.get("sha256")
    if sha256 is not None:
        if source != "archive":
            opts.fail(name, "sha256 pins an archive; it has no meaning with source: package")
        sha256 = opts.normalise_sha256(sha256, f"{name}: sha256")
    if source != "archive":
        return None, base_url, sha256
    template = options.get("url_template")
    try:
        if machine is None:
            catalog.check_release(exporter, version, base_url, template)
            return None, base_url, sha256
        release = catalog.release(exporter, version, machine, base_url, template)
        return release, base_url, sha256
    except ValueError as err:
        if str(err).startswith(name):
            raise
        opts.fail(name, str(err))


def _files(parts: opts.Parts) -> tuple[list[FileSpec], FileSpec | None]:
    """The secret environment file and the templated files the sections asked for."""
    files = []
    if parts.secret_env:
        header = "Managed by opskit; holds secrets: keep it 0600."
        env = dict(sorted(parts.secret_env.items()))
        content = opskit_formats.systemd_env_file(env, header, f"exporters:{parts.name}")
        path = f"{parts.config_dir}/env"
        files.append(FileSpec(path, content, 0o600, parts.user, parts.user, secret=True))
    if parts.web_config is not None:
        files.append(
            FileSpec(
                f"{parts.config_dir}/web-config.yml",
                None,
                0o600,
                parts.user,
                parts.user,
                secret=True,
                template="web-config.yml.jinja",
                context=parts.web_config,
            )
        )
    stub_status = None
    if parts.stub_status is not None:
        stub_status = FileSpec(
            f"{NGINX_CONF_DIR}/{STUB_STATUS_CONF}",
            None,
            0o644,
            "root",
            "root",
            template="stub_status.conf.jinja",
            context=parts.stub_status,
        )
    return files, stub_status


def _unit_context(parts: opts.Parts, source: str, exec_start: list, files: list) -> dict:
    """What exporter.service.jinja gets (no secrets: those are in files)."""
    exporter = parts.exporter
    env_file = next((f.path for f in files if f.path.endswith("/env")), None)
    return {
        "exporter": {
            "name": parts.name,
            "description": exporter.description,
            "project": exporter.project,
        },
        "version": parts.version or "(OS package)",
        "source": source,
        "user": parts.user,
        "group": parts.user,
        "after": ["network-online.target", *parts.after],
        "requires": parts.requires,
        "environment_file": env_file,
        "environment": parts.plain_env,
        "credentials": parts.credentials,
        "exec_start": exec_start,
        "hardening": catalog.hardening(exporter),
        "read_only_paths": [],
    }


def render(desired: Desired, renderer) -> Desired:
    """Fill in the unit and the templated files from the templates."""
    try:
        desired.unit = renderer.render("exporter.service.jinja", **desired.unit_context)
        for spec in [*desired.files, desired.stub_status]:
            if spec is not None and spec.template:
                spec.content = renderer.render(spec.template, **spec.context)
    except ValueError as err:
        opts.fail(desired.name, str(err))
    desired.templates = dict(renderer.sources)
    log.debug("exporter plan built for %s", desired.name)
    return desired


def _source_and_version(exporter: catalog.Exporter, options: dict) -> tuple[str, str | None]:
    name = exporter.name
    if options["ensure"] != "present":
        opts.fail(
            name, f"ensure: {options['ensure']!r} is for the formula; use exporter.absent/remove"
        )
    source, version = options["source"], options.get("version")
    if source == "archive" and version is None:
        opts.fail(
            name, "version is required with source: archive (opskit installs pinned releases)"
        )
    if source == "package" and not exporter.package:
        opts.fail(name, "has no OS package opskit knows; use source: archive")
    return source, version
