"""dcgm-exporter's surroundings: NVIDIA GPUs, NVIDIA's CUDA apt repository, the DCGM
packages the exporter release was built against, and the DCGM host engine.

``prechecks`` refuses before anything happens: a DCGM whose version differs from the
one the exporter release pairs with, a host without an NVIDIA GPU, or a GPU the NVIDIA
driver has not claimed. ``prepare`` configures the repository (a keyring pinned by
sha256, a ``signed-by`` source, an apt pin that takes only DCGM packages from it),
installs DCGM and starts the host engine. No GPU exists in opskit's lab: the
refusals and the repository files are tested there, the GPU path is not.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import urllib.parse

try:
    import opskit_exporter_catalog as catalog  # synced from file_roots, or module_dirs
    import opskit_exporter_fetch as fetch
    import opskit_exporter_options as opts
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_exporter_catalog as catalog
    from saltext.opskit.utils import opskit_exporter_fetch as fetch
    from saltext.opskit.utils import opskit_exporter_options as opts

NVIDIA_KEYRING = "/etc/apt/keyrings/opskit-nvidia-cuda"
NVIDIA_SOURCE = "/etc/apt/sources.list.d/opskit-nvidia-cuda.list"
NVIDIA_PIN = "/etc/apt/preferences.d/opskit-nvidia-cuda"
NVIDIA_REPO_BASE = "https://developer.download.nvidia.com/compute/cuda/repos"
DCGM_CORE_PACKAGE = "datacenter-gpu-manager-4-core"
HOSTENGINE_UNIT = "nvidia-dcgm.service"
NVIDIA_PCI_VENDOR = "0x10de"
# PCI class codes (sysfs "class" is 0xCCSSPP): 0x0300 VGA controller, 0x0302 3D controller
# (data-centre GPUs without display outputs report 3D controller).
GPU_PCI_CLASSES = ("0x0300", "0x0302")


def nvidia_gpus(sys_root: str = "/sys", proc_root: str = "/proc") -> dict:
    """Find NVIDIA GPUs without any NVIDIA tool: PCI devices with vendor 0x10de and a
    display/3D class in sysfs, and whether the NVIDIA kernel driver has claimed them
    (/proc/driver/nvidia/gpus/<pci address> exists once the driver is loaded)."""
    devices = pathlib.Path(sys_root) / "bus" / "pci" / "devices"
    found = []
    if devices.is_dir():
        for device in sorted(devices.iterdir()):
            try:
                vendor = (device / "vendor").read_text().strip().lower()
                pci_class = (device / "class").read_text().strip().lower()
            except OSError:
                continue
            if vendor == NVIDIA_PCI_VENDOR and pci_class[:6] in GPU_PCI_CLASSES:
                found.append(device.name)
    driver_dir = pathlib.Path(proc_root) / "driver" / "nvidia" / "gpus"
    driven = sorted(p.name for p in driver_dir.iterdir()) if driver_dir.is_dir() else []
    return {"pci": found, "driver": driven, "sysfs": str(devices), "proc": str(driver_dir)}


def nvidia_repo_path(os_name: str, os_major: str | int, machine: str) -> str:
    """NVIDIA's CUDA repository directory for a distribution: debian12/x86_64,
    ubuntu2204/sbsa, ... (developer.download.nvidia.com/compute/cuda/repos/<this>/)."""
    name = str(os_name).lower()
    arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "sbsa", "arm64": "sbsa"}.get(machine)
    if arch is None:
        raise ValueError(f"NVIDIA's CUDA repository has no packages for {machine!r}")
    if name == "debian":
        return f"debian{os_major}/{arch}"
    if name == "ubuntu":
        release = str(os_major).replace(".", "")
        return f"ubuntu{release}/{arch}"
    raise ValueError(f"opskit configures NVIDIA's repository on Debian and Ubuntu, not {os_name}")


def nvidia_apt_source(repo_url: str, keyring: str) -> str:
    return (
        "# Managed by opskit: NVIDIA's CUDA repository, for DCGM and dcgm-exporter.\n"
        f"deb [signed-by={keyring}] {repo_url.rstrip('/')}/ /\n"
    )


def nvidia_apt_pin(repo_url: str) -> str:
    """Keep NVIDIA's repository from upgrading anything but DCGM packages."""
    host = urllib.parse.urlsplit(repo_url).hostname or ""
    return (
        "# Managed by opskit: take only DCGM packages from NVIDIA's repository by default.\n"
        f"Package: *\nPin: origin {host}\nPin-Priority: 100\n\n"
        f"Package: datacenter-gpu-manager*\nPin: origin {host}\nPin-Priority: 600\n"
    )


def repo(
    host,
    grains: dict,
    *,
    present: bool = True,
    base_url: str | None = None,
    keyring_source: str | None = None,
    keyring_sha256: str | None = None,
    proxy: str | None = None,
) -> dict:
    """Configure (or remove) NVIDIA's repository; return what changed."""
    changes = {}
    if not present:
        for path in (NVIDIA_SOURCE, NVIDIA_PIN, f"{NVIDIA_KEYRING}.gpg", f"{NVIDIA_KEYRING}.asc"):
            if os.path.exists(path):
                os.unlink(path)
                changes[path] = {"old": "present", "new": None}
        return changes
    if not keyring_source or not keyring_sha256:
        raise host.invocation_error(
            "NVIDIA's repository needs dcgm.repo.keyring_source and dcgm.repo.keyring_sha256 "
            "(the sha256 of the key file you vetted); opskit trusts no key it cannot check"
        )
    try:
        expected = opts.normalise_sha256(keyring_sha256, "dcgm.repo.keyring_sha256")
        repo_path = nvidia_repo_path(
            grains.get("os", ""), grains.get("osmajorrelease", ""), grains.get("cpuarch", "")
        )
    except ValueError as err:
        raise host.invocation_error(str(err)) from err
    key = fetch.fetch_small(host, keyring_source, proxy)
    actual = hashlib.sha256(key).hexdigest()
    if actual != expected:
        raise host.error(
            f"the NVIDIA repository key from {opts.redact_url(keyring_source)} has sha256 "
            f"{actual}, not the pinned {expected}; nothing was configured"
        )
    armored = key.lstrip().startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    keyring = f"{NVIDIA_KEYRING}.{'asc' if armored else 'gpg'}"
    repo_url = f"{(base_url or NVIDIA_REPO_BASE).rstrip('/')}/{repo_path}"
    wanted = {
        keyring: key,
        NVIDIA_SOURCE: nvidia_apt_source(repo_url, keyring).encode(),
        NVIDIA_PIN: nvidia_apt_pin(repo_url).encode(),
    }
    for path, content in wanted.items():
        current = pathlib.Path(path).read_bytes() if os.path.exists(path) else None
        if current != content:
            host.write(path, content, 0o644)
            changes[path] = {"old": None if current is None else "different", "new": "written"}
    return changes


def prechecks(host, d) -> None:
    """Refusals that need the host: DCGM versions and an NVIDIA GPU."""
    if d.name != "dcgm_exporter":
        return
    installed = host.salt["pkg.version"](DCGM_CORE_PACKAGE)
    if installed:
        try:
            catalog.check_dcgm_pair(d.version, installed, f"the installed {DCGM_CORE_PACKAGE}")
        except catalog.CompatibilityError as err:
            raise host.error(str(err)) from err
    gpus = nvidia_gpus()
    if not gpus["pci"]:
        raise host.error(
            "refusing to install dcgm_exporter: this host has no NVIDIA GPU (no PCI device "
            f"with vendor {NVIDIA_PCI_VENDOR} and a VGA/3D class under {gpus['sysfs']}); it "
            "would only crash-loop. Take dcgm_exporter out of this host's pillar (CMDB)."
        )
    if not gpus["driver"]:
        raise host.error(
            f"refusing to install dcgm_exporter: NVIDIA GPU(s) {', '.join(gpus['pci'])} "
            f"found, but the NVIDIA driver has not claimed them ({gpus['proc']} is empty or "
            "missing). Install and load the NVIDIA datacenter driver first."
        )


def prepare(host, grains: dict, d, manifest: dict) -> dict:
    """NVIDIA's repository, the DCGM packages paired with the exporter, the host engine.

    Not exercised in opskit's lab (no GPU there); the refusals before it are."""
    changes = {}
    settings = d.dcgm
    repo_opts = settings["repo"]
    salt = host.salt
    if repo_opts.get("manage", True):
        repo_changes = repo(
            host,
            grains,
            present=True,
            base_url=repo_opts.get("base_url"),
            keyring_source=repo_opts.get("keyring_source"),
            keyring_sha256=repo_opts.get("keyring_sha256"),
            proxy=d.proxy,
        )
        if repo_changes:
            changes["nvidia_repo"] = {"old": None, "new": sorted(repo_changes)}
            manifest["nvidia_repo"] = True
            salt["pkg.refresh_db"]()
    wanted = settings["dcgm_version"]
    installed = salt["pkg.version"](DCGM_CORE_PACKAGE)
    if not installed:
        if "nvidia_repo" not in changes:
            salt["pkg.refresh_db"]()
        pkgs = [{package: f"1:{wanted}*"} for package in settings["packages"]]
        salt["pkg.install"](pkgs=pkgs, refresh=False)
        installed = salt["pkg.version"](DCGM_CORE_PACKAGE)
        manifest["dcgm_packages"] = list(settings["packages"])
        changes["dcgm"] = {"old": None, "new": installed}
    try:
        catalog.check_dcgm_pair(d.version, installed or "", f"the installed {DCGM_CORE_PACKAGE}")
    except catalog.CompatibilityError as err:
        raise host.error(str(err)) from err
    if not salt["service.enabled"](HOSTENGINE_UNIT):
        salt["service.enable"](HOSTENGINE_UNIT)
    if host.active(HOSTENGINE_UNIT) != "active":
        salt["service.start"](HOSTENGINE_UNIT)
        changes["hostengine"] = {"old": "stopped", "new": "running"}
    return changes
