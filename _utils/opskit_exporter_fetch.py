"""Release archives: download, verify, unpack.

``fetch_archive`` returns a release archive from the download cache
(``/var/cache/opskit/exporters/<name>/<version>.linux-<arch>/``) after checking its
sha256 against the pinned hash or the release's checksum file; a download whose sum
differs is discarded before anything is installed. ``unpack`` extracts the binary into
a fresh versioned directory next to the running one, and ``check_version`` makes sure
the binary reports the version that was asked for. Nothing here switches what runs:
that is the install step's job, after all of this has succeeded.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import re
import shutil
import tarfile
import tempfile

try:
    import opskit_exporter_host as host_mod  # synced from file_roots, or module_dirs
    import opskit_exporter_options as opts
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_exporter_host as host_mod
    from saltext.opskit.utils import opskit_exporter_options as opts

HTTP_TIMEOUT = (10, 60)  # connect, read (seconds)
SHA256_RE = re.compile(r"[0-9a-f]{64}\Z")


def parse_checksums(text: str, source: str = "checksum file") -> dict[str, str]:
    """Parse sha256sum output: '<64 hex>  <file>' or '<64 hex> *<file>' per line.

    Blank lines and '#' comments are ignored; any other malformed line, or a file
    listed twice with different sums, raises ValueError naming ``source`` and the line.
    """
    sums: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        if len(parts) != 2 or not SHA256_RE.match(parts[0].lower()):
            raise ValueError(f"{source} line {number} is not '<sha256>  <file>': {raw[:120]!r}")
        digest, name = parts[0].lower(), parts[1].strip().lstrip("*")
        name = name.removeprefix("./")
        if name in sums and sums[name] != digest:
            raise ValueError(f"{source} lists {name} twice with different sums")
        sums[name] = digest
    if not sums:
        raise ValueError(f"{source} lists no files")
    return sums


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def session(proxy: str | None, ca_bundle: str | None = None):
    import requests

    client = requests.Session()
    client.trust_env = False  # only the proxy the options name, never the environment's
    if proxy:
        client.proxies = {"http": proxy, "https": proxy}
    client.verify = ca_bundle or True
    client.headers["User-Agent"] = "opskit-exporter"
    return client


def get(host, client, url: str, what: str, *, proxy: str | None, stream: bool = False):
    import requests

    shown = opts.redact_url(url)
    try:
        response = client.get(url, timeout=HTTP_TIMEOUT, stream=stream)
    except requests.RequestException as err:
        detail = host_mod.redact(str(err), [proxy or "", url])
        raise host.error(
            f"cannot download {what} from {shown}: {detail}. Check base_url, proxy and "
            "network access; nothing was installed."
        ) from err
    if response.status_code != 200:
        response.close()
        raise host.error(
            f"downloading {what} from {shown} answered HTTP {response.status_code}. Is the "
            "version right, and does the mirror hold this release? Nothing was installed."
        )
    return response


def expected_sha256(host, d, client, cache_dir: pathlib.Path) -> tuple[str, str]:
    """The sha256 the archive must have, and where that figure comes from."""
    rel = d.release
    if d.sha256:
        return d.sha256, "the pinned sha256"
    sums_path = cache_dir / rel.checksums_file
    source = opts.redact_url(rel.checksums_url)
    text = host_mod.read(str(sums_path))
    fresh = text is None
    if fresh:
        text = get(host, client, rel.checksums_url, "the checksum file", proxy=d.proxy).text
    try:
        sums = parse_checksums(text, source)
    except ValueError as err:
        raise host.error(f"{err}; nothing was installed") from err
    if fresh:
        host.write(str(sums_path), text, 0o644)
    if rel.asset not in sums:
        listed = ", ".join(sorted(sums)[:8])
        raise host.error(
            f"{source} lists no {rel.asset} (it lists {listed}...); is this architecture "
            "published for this version? Nothing was installed."
        )
    return sums[rel.asset], source


def fetch_archive(host, d, cache_root: str) -> tuple[pathlib.Path, str]:
    """Return a verified release archive in the cache (downloading it only if needed)."""
    rel = d.release
    cache_dir = pathlib.Path(cache_root) / d.name / rel.key
    cache_dir.mkdir(parents=True, exist_ok=True)
    client = session(d.proxy, d.ca_bundle)
    expected, source = expected_sha256(host, d, client, cache_dir)
    archive = cache_dir / rel.asset
    if archive.exists() and sha256_file(archive) == expected:
        return archive, expected
    partial = cache_dir / f".{rel.asset}.part"
    digest = hashlib.sha256()
    response = get(host, client, rel.asset_url, "the release archive", proxy=d.proxy, stream=True)
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
        raise host.error(
            f"sha256 mismatch for {opts.redact_url(rel.asset_url)}: expected {expected} "
            f"({source}), got {actual}. The download was discarded and nothing was "
            "installed; what ran before keeps running. Check the mirror."
        )
    os.replace(partial, archive)
    return archive, expected


def _extract(host, tar: tarfile.TarFile, member_name: str, asset: str, target: pathlib.Path):
    try:
        member = tar.getmember(member_name)
    except KeyError:
        names = ", ".join(tar.getnames()[:10])
        raise host.error(
            f"{asset} has no {member_name} (it holds {names}); nothing was installed"
        ) from None
    if not member.isfile():
        raise host.error(f"{member_name} in {asset} is not a regular file")
    target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    with tar.extractfile(member) as source, open(target, "wb") as handle:
        shutil.copyfileobj(source, handle)


def unpack(host, d, archive: pathlib.Path) -> tuple[pathlib.Path, str, dict]:
    """Unpack the exporter's binary, and the files its release scheme names (e.g.
    dcgm-exporter's collectors CSV), into its versioned directory; return the
    directory, the binary's sha256 and the other files' sha256 by path."""
    rel = d.release
    final = pathlib.Path(d.install_dir) / rel.key
    final.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{rel.key}.", dir=final.parent))
    binary = staging / d.exporter.binary
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                _extract(host, tar, rel.member, rel.asset, binary)
                for member, relative in rel.files:
                    _extract(host, tar, member, rel.asset, staging / relative)
                    (staging / relative).chmod(0o644)
        except (tarfile.TarError, OSError, EOFError) as err:
            raise host.error(f"cannot unpack {archive}: {err}; nothing was installed") from err
        binary.chmod(0o755)
        for directory in (p for p in staging.rglob("*") if p.is_dir()):
            directory.chmod(0o755)
        staging.chmod(0o755)
        if final.exists():
            shutil.rmtree(final)
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    files = {relative: sha256_file(final / relative) for _, relative in rel.files}
    return final, sha256_file(final / d.exporter.binary), files


def check_version(host, d, binary: str) -> None:
    """The binary must report the version the options asked for (for dcgm-exporter:
    the DCGM-exporter pair built into the executable)."""
    if not d.version:
        return
    expected = d.version if d.exporter.version_kind == "dcgm_pair" else None
    expected = expected or d.exporter.release_version(d.version)
    out = host.run([binary, "--version"], timeout=20, output_loglevel="quiet")
    text = f"{out.get('stdout', '')}\n{out.get('stderr', '')}"
    if expected not in text:
        first = text.strip().splitlines()[:2]
        raise host.error(
            f"{binary} does not report version {expected} (--version said: "
            f"{' / '.join(first) or 'nothing'}); refusing to run it"
        )


def fetch_small(host, source: str, proxy: str | None) -> bytes:
    """Read a small file from a path, salt:// or http(s)."""
    if source.startswith("salt://"):
        cached = host.salt["cp.cache_file"](source)
        if not cached:
            raise host.error(f"{source} is not on the master")
        return pathlib.Path(cached).read_bytes()
    if source.startswith(("http://", "https://")):
        import requests

        try:
            response = session(proxy).get(source, timeout=HTTP_TIMEOUT)
            response.raise_for_status()
        except requests.RequestException as err:
            detail = host_mod.redact(str(err), [proxy or ""])
            raise host.error(f"cannot download {opts.redact_url(source)}: {detail}") from err
        return response.content
    try:
        return pathlib.Path(source).read_bytes()
    except OSError as err:
        raise host.error(f"cannot read {source}: {err}") from err
