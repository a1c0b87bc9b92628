"""``user`` at run time without changing who runs the tests: the calls a
worker makes to become its user, and the master's hand-over of log files."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from nginxws.conf.model import User
from nginxws.privileges import PrivilegeError, give_files, switch_user

NOBODY = User("nobody", 65534, 65534)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Root, with setgid/initgroups/setuid recorded instead of made."""
    made: list[tuple] = []
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(os, "setgid", lambda gid: made.append(("setgid", gid)))
    monkeypatch.setattr(os, "initgroups", lambda name, gid: made.append(("initgroups", name, gid)))
    monkeypatch.setattr(os, "setuid", lambda uid: made.append(("setuid", uid)))
    return made


def refuse(*args) -> None:
    raise OSError(errno.EPERM, os.strerror(errno.EPERM))


def test_a_worker_switches_group_then_groups_then_user_as_nginx(calls: list[tuple]) -> None:
    assert switch_user(NOBODY) == []
    assert calls == [("setgid", 65534), ("initgroups", "nobody", 65534), ("setuid", 65534)]


def test_only_root_switches(calls: list[tuple], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert switch_user(NOBODY) == [] and calls == []


@pytest.mark.parametrize(("call", "message"), [("setgid", "setgid(65534) failed"), ("setuid", "setuid(65534) failed")])
def test_a_failed_setgid_or_setuid_is_fatal(calls, monkeypatch: pytest.MonkeyPatch, call: str, message: str) -> None:
    monkeypatch.setattr(os, call, refuse)
    with pytest.raises(PrivilegeError) as err:
        switch_user(NOBODY)
    assert str(err.value) == f"[emerg] {message} (1: Operation not permitted)"


def test_a_failed_initgroups_is_reported_and_the_switch_goes_on(calls, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "initgroups", refuse)
    assert switch_user(NOBODY) == ["initgroups(nobody, 65534) failed (1: Operation not permitted)"]
    assert calls == [("setgid", 65534), ("setuid", 65534)]


def test_the_master_gives_log_files_to_the_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chowned: list[tuple] = []
    monkeypatch.setattr(os, "fchown", lambda fd, uid, gid: chowned.append((os.fstat(fd).st_ino, uid, gid)))
    mine = User("me", os.getuid(), os.getgid())
    kept, locked, missing = tmp_path / "kept.log", tmp_path / "locked.log", tmp_path / "new.log"
    kept.write_text("old lines\n")
    locked.write_text("")
    locked.chmod(0o044)  # its owner may not even write it
    problems = give_files([str(kept), str(locked), str(missing), "stderr", "/dev/null", str(kept)], NOBODY)
    assert problems == []
    assert missing.exists() and kept.read_text() == "old lines\n"
    assert stat.S_IMODE(locked.stat().st_mode) == 0o644
    assert stat.S_IMODE(kept.stat().st_mode) == 0o644
    inodes = [path.stat().st_ino for path in (kept, locked, missing)]
    assert chowned == [(inode, 65534, -1) for inode in inodes]  # /dev/null is no log file; each path once
    chowned.clear()
    assert give_files([str(kept)], mine) == [] and chowned == []  # already the user's


def test_what_cannot_be_given_is_reported_as_nginx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "fchown", refuse)
    (tmp_path / "a.log").write_text("")
    assert give_files([str(tmp_path / "no/dir/x.log"), str(tmp_path / "a.log")], NOBODY) == [
        f'open() "{tmp_path}/no/dir/x.log" failed (2: No such file or directory)',
        f'chown("{tmp_path}/a.log", 65534) failed (1: Operation not permitted)',
    ]
