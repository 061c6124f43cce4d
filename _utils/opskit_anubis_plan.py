"""What the ``anubis`` formula builds from its validated settings, and where its
listeners would collide.

``opskit.settings("anubis", ...)`` (schema ``opskit_settings_anubis``) checks pillar
``anubis`` at render time; :func:`plan` then turns the normalised settings into what
the SLS files and templates use: per instance its unit, files, environment, policy (with
the default bbolt path), the systemd drop-in (rendered with ``opskit_formats``), the nginx
site's parameters (each already quoted with ``opskit_formats.nginx_param``), its health
URL and its metrics target. Checks that need this host (its CPU architecture, other
formulas' pillar, the sockets listening now) happen here too and raise the same
``SettingsError`` as the schema. Signing keys are never part of the plan: the module
reads them from pillar on the minion.

Facts about Anubis used here come from upstream v1.27.0: the systemd template
``run/anubis@.service`` (``EnvironmentFile=/etc/anubis/%i.env``, ``DynamicUser=yes``,
``StateDirectory=anubis/%i``), the environment variables of ``cmd/anubis/main.go``, the
subrequest mode's ``TARGET=" "`` (``docs/docs/admin/configuration/subrequest-auth.mdx``),
``XFF_STRIP_PRIVATE`` (``docs/docs/admin/caveats-xff.mdx``), ``lib/http.go``
``matchRedirectDomain`` (host *and port*) and the release asset names of ``yeetfile.js``.
"""

from __future__ import annotations

import copy
import re

try:  # synced from file_roots, or module_dirs
    import opskit_anubis_docker
    import opskit_formats
    import opskit_net
    import opskit_schema
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_anubis_docker
    from saltext.opskit.utils import opskit_formats
    from saltext.opskit.utils import opskit_net
    from saltext.opskit.utils import opskit_schema

ROOT = "anubis"
# Upstream builds Linux packages for these architectures (yeetfile.js).
ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
ARCHES.update({"ppc64le": "ppc64le", "riscv64": "riscv64"})
# nginx's client_max_body_size for `location /` by site profile when not set.
PROFILE_BODY_SIZE = {"default": "1m", "gitlab": "0"}
# Pillar trees of other opskit formulas whose HOST:PORT values (under keys naming a
# listen address) Anubis listeners must not take.
OTHER_FORMULAS = ("exporters", "thumbnail_server", "nginx")
LISTEN_KEY_RE = re.compile(r"(listen|bind|address|port)", re.IGNORECASE)
CREDENTIAL = "ed25519-private-key"


def inst_path(name: str, *keys) -> str:
    """``anubis:instances:<name>:<key>...`` as the schema writes key paths."""
    path = opskit_schema.key_path(f"{ROOT}:instances", name)
    for key in keys:
        path = opskit_schema.key_path(path, key)
    return path


# ---------------------------------------------------------------------------------------
# Values derived from one instance's settings
# ---------------------------------------------------------------------------------------
def site_hosts(site: dict) -> list[str]:
    """The ``host[:port]`` a visitor's redirect URL carries for this site."""
    port = site["listen"]
    return [n if port == 443 else f"{n}:{port}" for n in site["server_name"]]


def redirect_domains(inst: dict) -> list[str]:
    """REDIRECT_DOMAINS: pillar's list, or the site's names with the port when it is
    not 443 (upstream compares the redirect URL's host *and port*)."""
    given = inst.get("redirect_domains")
    return list(given) if given is not None else site_hosts(inst["site"])


def xff_strip_private(inst: dict) -> bool:
    """Proxy mode keeps RFC 1918 clients' addresses (upstream strips them by default)."""
    value = inst.get("xff_strip_private")
    return inst["mode"] != "proxy" if value is None else value


def body_size(site: dict) -> str:
    value = site.get("client_max_body_size")
    return str(PROFILE_BODY_SIZE[site["profile"]] if value is None else value)


def endpoint(listen: str) -> opskit_net.Endpoint:
    return opskit_net.Endpoint(*opskit_net.parse_listen(listen))


def environment(inst: dict, policy_file: str) -> dict[str, str]:
    """The variables the formula sets for an instance (without pillar ``env``)."""
    env = {
        "BIND": inst["bind"],
        "BIND_NETWORK": "tcp",
        "METRICS_BIND": inst["metrics_bind"],
        "METRICS_BIND_NETWORK": "tcp",
        # Subrequest mode: TARGET is a single space (subrequest-auth.mdx); the env file
        # quotes it, so systemd keeps the space.
        "TARGET": inst["upstream"] if inst["mode"] == "proxy" else " ",
        "POLICY_FNAME": policy_file,
        "CUSTOM_REAL_IP_HEADER": inst["custom_real_ip_header"],
        "XFF_STRIP_PRIVATE": "true" if xff_strip_private(inst) else "false",
        "DIFFICULTY": str(inst["difficulty"]),
        "SERVE_ROBOTS_TXT": "true" if inst["serve_robots_txt"] else "false",
    }
    if inst.get("cookie_domain"):
        env["COOKIE_DOMAIN"] = inst["cookie_domain"]
    domains = redirect_domains(inst)
    if domains:
        env["REDIRECT_DOMAINS"] = ",".join(domains)
    return env


def user_environment(inst: dict) -> dict[str, str]:
    """Pillar ``env``, as the text the env file holds (booleans as true/false)."""
    return {
        name: ("true" if value else "false") if isinstance(value, bool) else str(value)
        for name, value in (inst.get("env") or {}).items()
    }


def dropin(name: str, key_file: str, binary: str | None) -> str:
    """The instance's drop-in for upstream's ``anubis@.service``: the signing key as a
    systemd credential (``%d`` is the credentials directory) and, for the tarball
    method, ``ExecStart`` reset to this release's binary."""
    service = [
        ("LoadCredential", f"{CREDENTIAL}:{key_file}"),
        ("Environment", {"ED25519_PRIVATE_KEY_HEX_FILE": f"%d/{CREDENTIAL}"}),
    ]
    if binary:
        service += [("ExecStart", []), ("ExecStart", [binary])]
    header = (
        f"Managed by Salt (opskit anubis formula): additions to upstream's anubis@.service\n"
        f"for instance {name}. The signing key {key_file} is root's (mode 0400); systemd\n"
        "reads it at start and hands the service's dynamic user a private copy in its\n"
        "credentials directory (%d), which disappears when the service stops."
    )
    # Specifiers stay (%d): every value here is a validated path (no '%') or opskit's own.
    return opskit_formats.systemd_unit({"Service": service}, header=header, specifiers=True)


def nginx_site(name: str, inst: dict, anubis_url: str) -> dict:
    """The site template's context: each value already one quoted nginx parameter
    (``opskit_formats.nginx_param``), or a number or boolean."""
    site, where = inst["site"], inst_path(name, "site")
    param = opskit_formats.nginx_param
    return {
        "name": name,
        "mode": inst["mode"],
        "profile": site["profile"],
        "port": site["listen"],
        "listen_ipv6": site["listen_ipv6"],
        "http_redirect_port": site.get("http_redirect_port"),
        "server_name": " ".join(
            param(n, f"{where}:server_name:{i}") for i, n in enumerate(site["server_name"])
        ),
        "certificate": param(site["tls"]["certificate"], f"{where}:tls:certificate"),
        "certificate_key": param(site["tls"]["key"], f"{where}:tls:key"),
        "client_max_body_size": param(body_size(site), f"{where}:client_max_body_size"),
        "anubis_url": param(anubis_url, inst_path(name, "bind")),
        "upstream": param(inst["upstream"], inst_path(name, "upstream")),
    }


def policy_store_dir(settings: dict, name: str) -> str:
    """The directory of the instance's bbolt store, as Anubis sees it."""
    if settings["runtime"] == "docker":
        return opskit_anubis_docker.STORE_DIR
    return f"{settings['state_dir']}/{name}"


def policy_file_data(inst: dict, state_dir: str) -> dict:
    """The policy as written: the default store is a bbolt file in the instance's
    StateDirectory (persistent, and the one place its dynamic user can write)."""
    policy = copy.deepcopy(inst["policy"])
    store = policy.setdefault("store", {"backend": "bbolt"})
    if isinstance(store, dict) and store.get("backend") == "bbolt":
        params = store.setdefault("parameters", {})
        params.setdefault("path", f"{state_dir}/anubis.bdb")
    return policy


# ---------------------------------------------------------------------------------------
# Listen addresses
# ---------------------------------------------------------------------------------------
def wanted_endpoints(settings: dict) -> list[tuple[str, opskit_net.Endpoint, bool]]:
    """(key path, Endpoint, is_nginx) for everything the formula makes listen."""
    wanted, ports = [], {}
    for name, inst in sorted(settings["instances"].items()):
        for field in ("bind", "metrics_bind"):
            wanted.append((inst_path(name, field), endpoint(inst[field]), False))
        for field in ("listen", "http_redirect_port"):
            port = inst["site"].get(field)
            if port:
                ports.setdefault(port, inst_path(name, "site", field))
    wanted += [(path, opskit_net.Endpoint("", port), True) for port, path in ports.items()]
    return wanted


def _collide(ours, others):
    for index, (path, point) in enumerate(ours):
        for other_path, other in ours[index + 1 :]:
            if point.collides(other):
                yield path, point.text, f"collides with {other_path} ({other.text})"
        for label, other in others:
            if point.collides(other):
                yield path, point.text, f"collides with {label}"


def collision_problems(settings: dict):
    """(path, value, message): Anubis listeners that collide with each other, with the
    nginx sites' ports or with ``reserved_ports``."""
    wanted = wanted_endpoints(settings)
    ours = [(path, point) for path, point, is_nginx in wanted if not is_nginx]
    others = [
        (f"the nginx site port {path} ({point.port})", point)
        for path, point, is_nginx in wanted
        if is_nginx
    ]
    others += [
        (
            f"port {port} reserved for {owner} ({ROOT}:reserved_ports)",
            opskit_net.Endpoint("", int(port)),
        )
        for port, owner in sorted((settings.get("reserved_ports") or {}).items())
    ]
    yield from _collide(ours, others)


def _pillar_endpoints(tree, path):
    """(pillar path, Endpoint) for HOST:PORT strings under listen/bind/address keys."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            here = f"{path}:{key}"
            if isinstance(value, str) and LISTEN_KEY_RE.search(str(key)):
                try:
                    yield here, endpoint(value)
                except ValueError:
                    continue
            else:
                yield from _pillar_endpoints(value, here)
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            yield from _pillar_endpoints(value, f"{path}:{index}")


def pillar_collision_problems(settings: dict, pillar: dict):
    """Anubis listeners that collide with listen addresses in other formulas' pillar."""
    ours = [(p, point) for p, point, is_nginx in wanted_endpoints(settings) if not is_nginx]
    others = []
    for tree in OTHER_FORMULAS:
        others += [
            (f"pillar {where} ({point.text})", point)
            for where, point in _pillar_endpoints((pillar or {}).get(tree) or {}, tree)
        ]
    for path, shown, message in _collide(ours, others):
        if "collides with pillar" in message:
            yield path, shown, message


def live_collision_problems(settings: dict, live: list[dict], containers=()):
    """Listeners a socket listening on this host holds, unless a configured instance
    (or nginx, for the sites' ports) is the one holding it: with runtime docker, a
    container of the formula's compose project (``containers``: their ids)."""
    configured = {f"anubis@{name}.service" for name in settings["instances"]}
    for path, point, is_nginx in wanted_endpoints(settings):
        for sock in live:
            listening = opskit_net.Endpoint.from_socket(sock["address"], sock["port"])
            if not point.collides(listening):
                continue
            unit = sock.get("unit")
            if unit in configured or (is_nginx and unit == "nginx.service"):
                continue
            if sock.get("container") and sock["container"] in containers:
                continue
            owner = unit or (sock.get("command") and f"process {sock['command']}")
            yield (
                path,
                point.text,
                f"is already in use on this host by "
                f"{owner or 'a process that could not be identified'} "
                f"(listening on {listening.text}, pid {sock.get('pid')}); choose another "
                "port or stop that service",
            )


# ---------------------------------------------------------------------------------------
# The plan
# ---------------------------------------------------------------------------------------
def release_plan(settings: dict, cpu: str | None) -> tuple[dict, list]:
    """Where the package or tarball comes from and how it is verified."""
    release = dict(settings["release"])
    arch = release.get("arch") or ARCHES.get(cpu or "")
    problems = []
    if arch is None:
        problems.append(
            (f"{ROOT}:release:arch", cpu, "upstream builds no Linux package for this CPU")
        )
    version, base = release["version"], release["base_url"].rstrip("/")
    if release["method"] == "deb":
        asset = f"anubis_{version}_{arch}.deb"
    else:
        asset = f"anubis-{version}-linux-{arch}.tar.gz"
    sha256 = release.get("sha256")
    release.update(
        {
            "arch": arch,
            "asset": asset,
            "url": f"{base}/v{version}/{asset}",
            "source_hash": f"sha256={sha256.lower()}" if sha256 else release["checksums_url"],
            "top_dir": asset.removesuffix(".tar.gz"),
        }
    )
    return release, problems


def instance_plan(settings: dict, name: str, inst: dict, release: dict, minion: str) -> dict:
    config, state_dir = settings["config_dir"], f"{settings['state_dir']}/{name}"
    docker = settings["runtime"] == "docker"
    policy_file = f"{config}/{name}.botPolicies.yaml"
    key_file = f"{settings['key_dir']}/{name}.key"
    binary = None
    if release.get("method") == "tarball" and not docker:
        binary = f"{settings['install_dir']}/{release['top_dir']}/bin/anubis"
    bind, metrics = endpoint(inst["bind"]), endpoint(inst["metrics_bind"])
    target_host = inst.get("metrics_target_host") or (
        (settings.get("target_host") or minion) if metrics.wildcard else metrics.local_host
    )
    anubis_url = f"http://{bind.local_url_host}:{bind.port}"
    out = {
        "name": name,
        "mode": inst["mode"],
        "unit": f"anubis@{name}.service",
        "env_file": f"{config}/{name}.env",
        "env_syntax": "systemd",
        "env": environment(inst, policy_file),
        "user_env": user_environment(inst),
        "policy_file": policy_file,
        "policy": policy_file_data(inst, policy_store_dir(settings, name)),
        "key_file": key_file,
        "key_owner": [0, 0],
        "key_pillar_path": f"{ROOT}:instances:{name}:ed25519_private_key_hex",
        "dropin_file": f"/etc/systemd/system/anubis@{name}.service.d/opskit.conf",
        "dropin": dropin(name, key_file, binary),
        "state_dir": state_dir,
        "store_dir": state_dir,
        "nginx_site": f"anubis-{name}",
        "site": nginx_site(name, inst, anubis_url),
        "health_url": f"http://{metrics.local_url_host}:{metrics.port}/healthz",
        "target": {
            "targets": [opskit_net.format_listen(target_host, metrics.port)],
            "labels": {"job": "anubis", "anubis_instance": name, "minion": minion},
        },
    }
    if docker:
        dk = settings["docker"]
        env = environment(inst, opskit_anubis_docker.POLICY)
        env["ED25519_PRIVATE_KEY_HEX_FILE"] = opskit_anubis_docker.KEY
        out.update(
            env_file=f"{dk['project_dir']}/{name}.env",
            env_syntax="compose",
            env=env,
            key_owner=[dk["user"], dk["group"]],
            dropin_file=None,
            dropin=None,
        )
    return out


def _check_env_files(instances: list[dict]):
    """Render each env file once, so a value its format cannot hold fails the render."""
    render = {
        "systemd": opskit_formats.systemd_env_file,
        "compose": opskit_formats.compose_env_file,
    }
    for inst in instances:
        where = inst_path(inst["name"], "env")
        render[inst["env_syntax"]]({**inst["env"], **inst["user_env"]}, path=where)


def plan(
    settings: dict,
    *,
    minion: str,
    cpu: str | None,
    pillar: dict,
    live: list | None,
    containers=(),
):
    """The formula's plan from validated settings (see the module docstring); raises
    ``opskit_schema.SettingsError`` for what only this host can tell (``containers``:
    ids of the containers of the formula's compose project, whose sockets are its own)."""
    problems = opskit_schema.Problems()
    instances = settings["instances"]
    docker = settings["runtime"] == "docker"
    release = {}
    if instances:
        found = []
        if not docker:
            release, found = release_plan(settings, cpu)
        found += list(pillar_collision_problems(settings, pillar))
        found += list(live_collision_problems(settings, live or [], containers))
        for path, value, message in found:
            problems.add(path, value, message)
    if problems:
        raise opskit_schema.SettingsError(ROOT, problems.items)
    out = {
        key: value
        for key, value in settings.items()
        if key not in ("instances", "instance_defaults", "release", "docker")
    }
    out["release"] = release
    out["instances"] = [
        instance_plan(settings, name, inst, release, minion)
        for name, inst in sorted(instances.items())
    ]
    _check_env_files(out["instances"])
    out["targets"] = [inst["target"] for inst in out["instances"]]
    if docker:
        out["docker"] = {
            **settings["docker"],
            "image": opskit_anubis_docker.image(settings),
            "compose_file": opskit_anubis_docker.compose_file(settings),
            "compose_argv": opskit_anubis_docker.compose_argv(settings),
            "compose": opskit_anubis_docker.compose(settings, out["instances"]),
        }
    return out
