"""_utils/opskit_files.py: the atomic writer on a real filesystem."""

from __future__ import annotations

import os
import stat

import opskit_files
import pytest


def test_write_sets_mode_and_reports_changes(tmp_path):
    path = tmp_path / "app.env"
    assert opskit_files.write_atomic(str(path), "SECRET=x\n", mode=0o600) is True
    assert path.read_text() == "SECRET=x\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # Same content and mode: nothing written, the inode stays.
    inode = path.stat().st_ino
    assert opskit_files.write_atomic(str(path), "SECRET=x\n", mode=0o600) is False
    assert path.stat().st_ino == inode
    # Only the mode differs: rewritten.
    assert opskit_files.write_atomic(str(path), "SECRET=x\n", mode=0o640) is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert opskit_files.write_atomic(str(path), b"SECRET=y\n", mode=0o640) is True
    assert opskit_files.read_text(str(path)) == "SECRET=y\n"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_the_new_file_is_never_visible_with_a_wider_mode(tmp_path, monkeypatch):
    """Mode and owner are set on the temporary file before the rename."""
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append(stat.S_IMODE(os.stat(src).st_mode))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    opskit_files.write_atomic(str(tmp_path / "k"), "x", mode=0o600)
    assert seen == [0o600]


def test_owner_by_name_and_unknown_owner(tmp_path):
    path = str(tmp_path / "f")
    import pwd

    me = pwd.getpwuid(os.getuid()).pw_name
    assert opskit_files.write_atomic(path, "x", user=me) is True
    assert opskit_files.current(path).uid == os.getuid()
    with pytest.raises(LookupError, match="user 'no-such-user-opskit' does not exist"):
        opskit_files.write_atomic(path, "x", user="no-such-user-opskit")


def test_makedirs_missing_file_and_remove(tmp_path):
    path = tmp_path / "a" / "b" / "f"
    with pytest.raises(FileNotFoundError):
        opskit_files.write_atomic(str(path), "x")
    assert opskit_files.write_atomic(str(path), "x", makedirs=True)
    assert opskit_files.read_text(str(tmp_path / "nope")) is None
    assert opskit_files.remove(str(path)) is True
    assert opskit_files.remove(str(path)) is False


def test_a_symlink_is_replaced_not_followed(tmp_path):
    target = tmp_path / "target"
    target.write_text("keep")
    link = tmp_path / "link"
    link.symlink_to(target)
    assert opskit_files.write_atomic(str(link), "new") is True
    assert target.read_text() == "keep"
    assert not link.is_symlink()
    assert link.read_text() == "new"


def test_durable_false_skips_the_fsyncs_but_stays_atomic_and_private(tmp_path, monkeypatch):
    """For hot-path caches (the CMDB pillar copies): no fsync, same rename and mode."""
    synced, renamed = [], []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync_spy(fd):
        synced.append(fd)
        real_fsync(fd)

    def replace_spy(src, dst):
        renamed.append(stat.S_IMODE(os.stat(src).st_mode))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync_spy)
    monkeypatch.setattr(os, "replace", replace_spy)
    path = tmp_path / "copy.json"
    assert opskit_files.write_atomic(str(path), b"{}", 0o600, durable=False) is True
    assert synced == []
    assert renamed == [0o600]
    assert path.read_bytes() == b"{}"
    assert opskit_files.write_atomic(str(path), b"{}", 0o600, durable=False) is False
    assert opskit_files.write_atomic(str(path), b"[]", 0o600) is True
    assert len(synced) == 2  # the file and its directory
