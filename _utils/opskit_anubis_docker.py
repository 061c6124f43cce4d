"""The ``anubis`` formula's docker runtime: one container per instance, from upstream's
image, in one docker compose (v2) project.

What the formula builds for ``runtime: docker`` (``opskit_anubis_plan`` calls these):
the paths the container sees, the compose file (rendered by the shared YAML renderer,
``opskit_formats.yaml_document``) and the argv of the compose commands. The layout
follows upstream's container documentation (TecharoHQ/anubis v1.27.0,
``docs/docs/admin/installation.mdx``: the image runs as user and group 1000, mounted
volumes must be writable by them, the policy is mounted read-only under ``/data/cfg``)
and ``cmd/anubis/main.go`` (``ED25519_PRIVATE_KEY_HEX_FILE``, ``TARGET``):

- the policy file on the host, mounted read-only;
- the signing key from a file mounted read-only, named by
  ``ED25519_PRIVATE_KEY_HEX_FILE`` (never ``ED25519_PRIVATE_KEY_HEX``: an environment
  variable shows in ``docker inspect`` and in ``/proc/<pid>/environ``);
- the bbolt store in a host directory owned by ``docker:user``/``docker:group``;
- every other setting from the instance's compose env file (``NAME='value'``), the same
  variables as the systemd runtime, ``TARGET=' '`` in sidecar mode included;
- the host's network (``network_mode: host``): the instance listens on ``bind`` and
  ``metrics_bind`` of the host, as with systemd, so the nginx sites do not change, a
  proxy-mode ``upstream`` on the host's loopback is reachable, and the client address
  nginx passes in ``X-Real-IP`` is not replaced by a Docker bridge address;
- a read-only root file system, no capabilities, ``no-new-privileges``.
"""

from __future__ import annotations

try:  # synced from file_roots, or module_dirs
    import opskit_formats
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_formats

# Paths inside the container.
POLICY = "/data/cfg/botPolicy.yaml"
STORE_DIR = "/data/store"
KEY = "/run/secrets/anubis-ed25519-private-key"
UPSTREAM_IMAGE = "ghcr.io/techarohq/anubis"
HEADER = (
    "Managed by Salt (opskit anubis formula, runtime docker); local changes are "
    "overwritten.\nOne service per Anubis instance. No secrets here: each instance's "
    "signing key is a\nread-only file named by ED25519_PRIVATE_KEY_HEX_FILE."
)


def image(settings: dict) -> str:
    """``docker:image``, or upstream's image of ``release:version``."""
    return settings["docker"].get("image") or f"{UPSTREAM_IMAGE}:v{settings['release']['version']}"


def compose_file(settings: dict) -> str:
    return f"{settings['docker']['project_dir']}/compose.yaml"


def compose_argv(settings: dict) -> list[str]:
    """``docker compose`` for the formula's project (an argv list, never a shell)."""
    dk = settings["docker"]
    return [
        "docker",
        "compose",
        "--project-name",
        dk["project"],
        "--project-directory",
        dk["project_dir"],
        "--file",
        compose_file(settings),
    ]


def service(settings: dict, inst: dict) -> dict:
    """One instance's compose service (``inst`` is the instance's plan)."""
    dk = settings["docker"]
    return {
        "image": image(settings),
        "restart": dk["restart"],
        "user": f"{dk['user']}:{dk['group']}",
        "network_mode": "host",
        "read_only": True,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "env_file": [inst["env_file"]],
        "volumes": [
            {"type": "bind", "source": inst["policy_file"], "target": POLICY, "read_only": True},
            {"type": "bind", "source": inst["key_file"], "target": KEY, "read_only": True},
            {"type": "bind", "source": inst["store_dir"], "target": STORE_DIR},
        ],
    }


def compose(settings: dict, instances: list[dict]) -> str:
    """The compose file's text: one service per instance, named like the instance."""
    document = {
        "name": settings["docker"]["project"],
        "services": {inst["name"]: service(settings, inst) for inst in instances},
    }
    return opskit_formats.yaml_document(document, HEADER, "anubis:docker", compose=True)
