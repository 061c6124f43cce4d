"""The lab's Anubis artifacts (which carry the opskit STAND-IN, not Anubis): named and
laid out like upstream's release assets, reproducible, and pinned by the lab's CMDB
record. The stand-in's own request-header logic is checked against upstream's
documented examples, because the integration tests' address assertions rely on it."""

from __future__ import annotations

import gzip
import hashlib
import io
import subprocess
import tarfile

import pytest
import yaml

from tests.lab import anubis_artifacts
from tests.lab import anubis_standin
from tests.lab.lab import INVENTORY


def _ar_members(blob: bytes) -> dict[str, bytes]:
    assert blob.startswith(b"!<arch>\n")
    members, offset = {}, 8
    while offset < len(blob):
        header = blob[offset : offset + 60]
        name, size = header[:16].decode().strip(), int(header[48:58])
        members[name] = blob[offset + 60 : offset + 60 + size]
        offset += 60 + size + (size % 2)
    return members


def _tar_members(blob: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_lab_cmdb_pins_the_deb_the_mirror_serves():
    record = yaml.safe_load(INVENTORY.read_text())["minions"]["web-01.lab"]
    release = record["anubis"]["release"]
    built = anubis_artifacts.sha256_of(anubis_artifacts.DEB_ASSET)
    assert release["version"] == anubis_artifacts.VERSION
    assert release["sha256"] == built, (
        "tests/lab/inventory.yaml pins an Anubis stand-in .deb that is no longer what "
        f"tests/lab/anubis_artifacts.py builds; set web-01.lab anubis:release:sha256 to {built}"
    )


def test_artifacts_are_reproducible():
    assert anubis_artifacts.build_deb() == anubis_artifacts.build_deb()
    assert anubis_artifacts.build_tarball() == anubis_artifacts.build_tarball()


def test_deb_has_upstreams_layout_and_is_marked_as_a_stand_in():
    members = _ar_members(anubis_artifacts.build_deb())
    assert list(members) == ["debian-binary", "control.tar.gz", "data.tar.gz"]
    data = _tar_members(members["data.tar.gz"])
    assert {"./usr/bin/anubis", "./usr/lib/systemd/system/anubis@.service"} <= set(data)
    assert data["./usr/bin/anubis"].mode == 0o755
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(members["control.tar.gz"]))) as tar:
        control = tar.extractfile("./control").read().decode()
    assert "Package: anubis\n" in control
    assert f"Version: {anubis_artifacts.VERSION}\n" in control
    assert "NOT Anubis" in control


def test_deb_is_accepted_by_dpkg_deb(tmp_path):
    deb = tmp_path / anubis_artifacts.DEB_ASSET
    deb.write_bytes(anubis_artifacts.build_deb())
    info = subprocess.run(
        ["dpkg-deb", "--field", str(deb)], capture_output=True, text=True, check=False
    )
    assert info.returncode == 0, info.stderr
    assert "Package: anubis" in info.stdout


def test_unit_carries_upstreams_directives():
    unit = anubis_artifacts.UNIT
    for line in (
        "ExecStart=/usr/bin/anubis",
        "EnvironmentFile=/etc/anubis/%i.env",
        "DynamicUser=yes",
        "StateDirectory=anubis/%i",
    ):
        assert line + "\n" in unit


def test_tarball_is_named_and_laid_out_like_upstreams():
    expected = f"anubis-{anubis_artifacts.VERSION}-linux-amd64.tar.gz"
    assert expected == anubis_artifacts.TARBALL_ASSET
    top = anubis_artifacts.TARBALL_ASSET.removesuffix(".tar.gz")
    names = set(_tar_members(anubis_artifacts.build_tarball()))
    assert {top, f"{top}/bin/anubis", f"{top}/run/anubis@.service"} <= names
    assert all(name == top or name.startswith(f"{top}/") for name in names)


def test_mirror_checksum_file_matches_the_assets(tmp_path):
    anubis_artifacts.build_release(tmp_path)
    directory = anubis_artifacts.release_dir(tmp_path)
    lines = (directory / anubis_artifacts.CHECKSUMS).read_text().splitlines()
    sums = dict(reversed(line.split("  ")) for line in lines)
    for asset in (anubis_artifacts.DEB_ASSET, anubis_artifacts.TARBALL_ASSET):
        assert sums[asset] == hashlib.sha256((directory / asset).read_bytes()).hexdigest()


# The stand-in's X-Forwarded-For handling, against upstream's documented examples
# (docs/docs/admin/caveats-xff.mdx) and internal/headers.go.
@pytest.mark.parametrize(
    ("peer", "xff", "strip_private", "expected"),
    [
        # "Incoming: X-Forwarded-For: 1.2.3.4, 5.6.7.8, 10.0.0.1 -> Upstream: 5.6.7.8"
        ("10.0.0.1", "1.2.3.4, 5.6.7.8", True, "5.6.7.8"),
        # nginx on loopback in front, a campus client on RFC 1918: lost by default ...
        ("127.0.0.1", "10.213.7.1", True, ""),
        # ... kept with XFF_STRIP_PRIVATE=false
        ("127.0.0.1", "10.213.7.1", False, "10.213.7.1"),
        # CGNAT and link-local are always stripped
        ("127.0.0.1", "100.64.1.1, 169.254.1.1", False, ""),
        # an unparsable element ends the walk
        ("127.0.0.1", "203.0.113.9, bogus", False, ""),
    ],
)
def test_standin_xff_matches_upstream(peer, xff, strip_private, expected):
    assert anubis_standin.compute_xff(peer, xff, strip_private) == expected


def test_standin_key_rules_match_upstream(tmp_path, monkeypatch):
    for var in ("ED25519_PRIVATE_KEY_HEX", "ED25519_PRIVATE_KEY_HEX_FILE", "HS512_SECRET"):
        monkeypatch.delenv(var, raising=False)
    key_file = tmp_path / "key"
    key_file.write_text("ab" * 32 + "\n")
    monkeypatch.setenv("ED25519_PRIVATE_KEY_HEX_FILE", str(key_file))
    assert anubis_standin.load_key(anubis_standin.Settings()) == bytes.fromhex("ab" * 32)

    monkeypatch.setenv("ED25519_PRIVATE_KEY_HEX", "ab" * 32)
    with pytest.raises(anubis_standin.Fatal, match="do not specify both"):
        anubis_standin.load_key(anubis_standin.Settings())

    monkeypatch.delenv("ED25519_PRIVATE_KEY_HEX")
    key_file.write_text("ab" * 31)
    with pytest.raises(anubis_standin.Fatal, match="not 32 bytes long, got 31"):
        anubis_standin.load_key(anubis_standin.Settings())


def test_standin_refuses_what_it_does_not_implement(monkeypatch):
    monkeypatch.setenv("TARGET", " ")
    cfg = anubis_standin.Settings()
    with pytest.raises(anubis_standin.Fatal, match="not implemented by the opskit lab stand-in"):
        anubis_standin.Policy({"bots": [{"import": "(data)/botPolicies.yaml"}]}, cfg)
    with pytest.raises(anubis_standin.Fatal, match="must define at least one"):
        anubis_standin.Policy({"bots": []}, cfg)


def test_the_mirror_is_rebuilt_when_the_stand_ins_rule_modules_change():
    """The stand-in's packages ship opskit's rule modules: a change to one must give the
    lab a new mirror (it once served a stale .deb whose sha256 no longer matched)."""
    from tests.lab import artifacts

    shipped = {p.resolve() for p in anubis_artifacts.RULE_MODULES}
    assert shipped
    assert shipped <= {p.resolve() for p in artifacts.mirror_sources()}
