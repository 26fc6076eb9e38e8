"""Adversarial tests of collector.store's atomic writes: unnamed temporaries
(O_TMPFILE + linkat via /proc/self/fd) and the named-temporary fallback.

Real files on the real file system; monkeypatching only simulates what cannot happen here (a
file system without O_TMPFILE, a /proc that refuses links, short writes, a full disk)."""

from __future__ import annotations

import errno
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import collector.storage.durable as durable
import collector.store as store_module
from collector.errors import StoreError
from collector.store import Store, write_file_atomically

ROOT = Path(__file__).resolve().parents[2]
HAVE_TMPFILE = durable._O_TMPFILE is not None


@pytest.fixture(params=["unnamed", "named"])
def kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    # Always restore the module flag: a test that makes it fall back must not leak that.
    monkeypatch.setattr(durable, "_O_TMPFILE", durable._O_TMPFILE)
    if request.param == "named":
        monkeypatch.setattr(durable, "_O_TMPFILE", None)
    elif not HAVE_TMPFILE:
        pytest.skip("no O_TMPFILE on this platform")
    return request.param


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- never overwrite -------------------------------------------------------------------------


@pytest.mark.parametrize("occupant", ["file", "dir", "symlink", "dangling-symlink", "fifo"])
def test_no_kind_of_existing_entry_is_replaced(tmp_path: Path, kind: str, occupant: str) -> None:
    target = tmp_path / "envelope"
    if occupant == "file":
        target.write_bytes(b"original")
    elif occupant == "dir":
        target.mkdir()
    elif occupant == "symlink":
        (tmp_path / "other").write_bytes(b"other")
        target.symlink_to(tmp_path / "other")
    elif occupant == "dangling-symlink":
        target.symlink_to(tmp_path / "nowhere")
    else:
        os.mkfifo(target)
    before = names(tmp_path)
    with pytest.raises(StoreError, match="never overwrites") as caught:
        write_file_atomically(target, b"new data")
    assert isinstance(caught.value.__cause__, FileExistsError)
    assert names(tmp_path) == before  # nothing added, nothing left behind
    if occupant == "file":
        assert target.read_bytes() == b"original"
    if occupant == "symlink":
        assert (tmp_path / "other").read_bytes() == b"other"  # not written through the link
    if occupant == "dangling-symlink":
        assert target.is_symlink() and not (tmp_path / "nowhere").exists()


def test_racing_writers_one_wins_whole_and_the_others_are_refused(tmp_path: Path, kind: str) -> None:
    """Eight threads write different 1 MiB payloads to one name at once: exactly one lands,
    complete, and every other gets StoreError; no temporary is left."""
    target = tmp_path / "race"
    payloads = [bytes([i]) * (1 << 20) for i in range(8)]
    start = threading.Barrier(len(payloads))
    outcomes: list[object] = [None] * len(payloads)

    def write(index: int) -> None:
        start.wait()
        try:
            write_file_atomically(target, payloads[index], sync=False)
            outcomes[index] = "ok"
        except StoreError as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(payloads))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    winners = [i for i, outcome in enumerate(outcomes) if outcome == "ok"]
    assert len(winners) == 1, outcomes
    assert all(isinstance(o, StoreError) for i, o in enumerate(outcomes) if i != winners[0])
    assert target.read_bytes() == payloads[winners[0]]
    assert names(tmp_path) == ["race"]


def test_replace_true_replaces_and_leaves_nothing_else(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "metrics.prom"
    write_file_atomically(target, b"one", replace=True)
    write_file_atomically(target, b"two", replace=True, mode=0o600)
    assert target.read_bytes() == b"two" and target.stat().st_mode & 0o777 == 0o600
    assert names(tmp_path) == ["metrics.prom"]


# --- whole payloads, short writes, failed writes ----------------------------------------------


def test_a_large_payload_and_other_buffer_types_arrive_whole(tmp_path: Path, kind: str) -> None:
    big = os.urandom(1 << 16) * 512  # 32 MiB
    write_file_atomically(tmp_path / "big", big)
    assert (tmp_path / "big").read_bytes() == big
    write_file_atomically(tmp_path / "ba", bytearray(b"abc" * 100_000))
    assert (tmp_path / "ba").read_bytes() == b"abc" * 100_000
    write_file_atomically(tmp_path / "mv", memoryview(b"0123456789")[2:8])
    assert (tmp_path / "mv").read_bytes() == b"234567"
    write_file_atomically(tmp_path / "empty", b"")
    assert (tmp_path / "empty").read_bytes() == b""
    assert names(tmp_path) == ["ba", "big", "empty", "mv"]


def test_short_writes_are_continued(tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """os.write may write less than asked (a signal, over 2 GiB): the loop goes on."""
    real_write = os.write
    calls = []

    def short_write(fd: int, data: object) -> int:
        calls.append(fd)
        return real_write(fd, memoryview(data)[:997])  # type: ignore[arg-type]

    monkeypatch.setattr(store_module.os, "write", short_write)
    payload = os.urandom(100_000)
    write_file_atomically(tmp_path / "f", payload)
    monkeypatch.undo()
    assert (tmp_path / "f").read_bytes() == payload and len(calls) >= 100
    assert names(tmp_path) == ["f"]


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_a_write_that_fails_midway_leaves_nothing(tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch,
                                                  failure: BaseException) -> None:
    real_write = os.write
    written = [0]

    def failing_write(fd: int, data: object) -> int:
        if written[0] >= 3000:
            raise failure
        n = real_write(fd, memoryview(data)[:1000])  # type: ignore[arg-type]
        written[0] += n
        return n

    monkeypatch.setattr(store_module.os, "write", failing_write)
    with pytest.raises(type(failure)):
        write_file_atomically(tmp_path / "f", b"x" * 10_000)
    monkeypatch.undo()
    assert names(tmp_path) == []  # no partial file under the name, no temporary


@pytest.mark.skipif(not HAVE_TMPFILE, reason="no O_TMPFILE on this platform")
@pytest.mark.parametrize("which", ["unnamed", "named"])
def test_a_process_killed_mid_write(tmp_path: Path, which: str) -> None:
    """SIGKILL in the middle of a write: the unnamed temporary vanishes with the process; the
    named one stays as a hidden .tmp (which reindex removes). Neither leaves the final name."""
    folder = tmp_path / "dev"
    folder.mkdir()
    script = f"""
import os, sys, time
sys.path.insert(0, {str(ROOT)!r})
import collector.storage.durable as s
if {which!r} == "named":
    s._O_TMPFILE = None
real = os.write
def slow(fd, data):
    n = real(fd, memoryview(data)[:4096])
    sys.stdout.write("wrote\\n"); sys.stdout.flush()
    time.sleep(60)
    return n
s.os.write = slow
s.write_file_atomically(s.Path({str(folder / 'x.envelope')!r}), b"y" * 100000)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "wrote\n"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(10)
    left = names(folder)
    assert "x.envelope" not in left
    if which == "unnamed":
        assert left == []
    else:
        assert len(left) == 1 and left[0].startswith(".x.envelope.") and left[0].endswith(".tmp")
        store = Store.open(tmp_path)
        store.reindex()
        assert names(folder) == []


# --- modes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o000])
@pytest.mark.parametrize("mode", [0o644, 0o600, 0o400, 0o666])
def test_mode_is_the_requested_mode_under_the_umask_on_both_paths(tmp_path: Path, kind: str, umask: int,
                                                                   mode: int) -> None:
    old = os.umask(umask)
    try:
        write_file_atomically(tmp_path / "f", b"x", mode=mode)
    finally:
        os.umask(old)
    assert (tmp_path / "f").stat().st_mode & 0o7777 == mode & ~umask


def test_a_default_acl_applies_alike_on_both_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory with a default ACL (group rw): the ACL, not the umask, shapes the mode, and
    the unnamed path gets the same mode and access ACL as the named one."""
    if not HAVE_TMPFILE:
        pytest.skip("no O_TMPFILE on this platform")

    def acl(entries: list[tuple[int, int]]) -> bytes:  # the kernel's xattr format, version 2
        return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", tag, perm, 0xFFFFFFFF)
                                               for tag, perm in entries)

    try:  # user::rw- group::rw- mask::rw- other::r--
        os.setxattr(tmp_path, "system.posix_acl_default", acl([(1, 6), (4, 6), (0x10, 6), (0x20, 4)]))
    except OSError as exc:
        pytest.skip(f"no POSIX ACLs here ({exc.strerror})")
    monkeypatch.setattr(durable, "_O_TMPFILE", durable._O_TMPFILE)
    old = os.umask(0o077)
    try:
        write_file_atomically(tmp_path / "unnamed", b"x", mode=0o666)
        monkeypatch.setattr(durable, "_O_TMPFILE", None)
        write_file_atomically(tmp_path / "named", b"x", mode=0o666)
    finally:
        os.umask(old)
    modes = {name: (tmp_path / name).stat().st_mode & 0o777 for name in ("unnamed", "named")}
    assert modes == {"unnamed": 0o664, "named": 0o664}
    assert os.getxattr(tmp_path / "unnamed", "system.posix_acl_access") == \
        os.getxattr(tmp_path / "named", "system.posix_acl_access")


# --- fallbacks -----------------------------------------------------------------------------------


@pytest.mark.skipif(not HAVE_TMPFILE, reason="no O_TMPFILE on this platform")
@pytest.mark.parametrize("code", [errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL])
def test_a_file_system_without_o_tmpfile_falls_back_to_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             code: int) -> None:
    real_open = os.open
    refused = []
    flag = durable._O_TMPFILE

    def open_(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if flags & flag == flag:
            refused.append(path)
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(durable, "_O_TMPFILE", flag)
    monkeypatch.setattr(store_module.os, "open", open_)
    write_file_atomically(tmp_path / "a", b"one")
    write_file_atomically(tmp_path / "b", b"two")
    monkeypatch.setattr(store_module.os, "open", real_open)
    assert len(refused) == 1  # noticed once, then named temporaries only
    assert durable._O_TMPFILE is None
    assert (tmp_path / "a").read_bytes() == b"one" and (tmp_path / "b").read_bytes() == b"two"
    assert names(tmp_path) == ["a", "b"]
    with pytest.raises(StoreError, match="never overwrites"):
        write_file_atomically(tmp_path / "a", b"again")
    assert (tmp_path / "a").read_bytes() == b"one" and names(tmp_path) == ["a", "b"]


@pytest.mark.skipif(not HAVE_TMPFILE, reason="no O_TMPFILE on this platform")
def test_an_unwritable_folder_is_an_error_on_both_paths_not_a_silent_fallback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EACCES on O_TMPFILE open is raised as is (the named path would fail alike), and does
    not switch the process to named temporaries."""
    real_open = os.open
    flag = durable._O_TMPFILE

    def open_(path: object, flags: int, *args: object, **kwargs: object) -> int:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(durable, "_O_TMPFILE", flag)
    monkeypatch.setattr(store_module.os, "open", open_)
    with pytest.raises(PermissionError):
        write_file_atomically(tmp_path / "a", b"one")
    monkeypatch.setattr(store_module.os, "open", real_open)
    assert durable._O_TMPFILE == flag
    assert names(tmp_path) == []


@pytest.mark.skipif(not HAVE_TMPFILE, reason="no O_TMPFILE on this platform")
@pytest.mark.parametrize("code", [errno.ENOENT, errno.EPERM, errno.EXDEV, errno.ENOTSUP])
def test_linking_from_proc_refused_falls_back_without_loss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           code: int) -> None:
    real_link = os.link

    def link(src: object, dst: object, **kwargs: object) -> None:
        if str(src).startswith("/proc/self/fd/"):
            raise OSError(code, os.strerror(code), str(src))
        real_link(src, dst, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(durable, "_O_TMPFILE", durable._O_TMPFILE)
    monkeypatch.setattr(store_module.os, "link", link)
    big = os.urandom(3 << 20)
    write_file_atomically(tmp_path / "a", big)
    assert durable._O_TMPFILE is None
    assert (tmp_path / "a").read_bytes() == big and names(tmp_path) == ["a"]


@pytest.mark.skipif(not HAVE_TMPFILE, reason="no O_TMPFILE on this platform")
def test_linking_from_proc_denied_with_eacces_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_link = os.link

    def link(src: object, dst: object, **kwargs: object) -> None:
        if str(src).startswith("/proc/self/fd/"):
            raise PermissionError(errno.EACCES, "Permission denied", str(src))
        real_link(src, dst, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(durable, "_O_TMPFILE", durable._O_TMPFILE)
    monkeypatch.setattr(store_module.os, "link", link)
    try:
        write_file_atomically(tmp_path / "a", b"one")
    finally:
        assert names(tmp_path) in ([], ["a"])  # whatever happens, nothing else is left
    assert (tmp_path / "a").read_bytes() == b"one"


@pytest.mark.skipif(not HAVE_TMPFILE, reason="no O_TMPFILE on this platform")
def test_the_folder_removed_between_open_and_link_is_an_error_not_a_fallback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "dev"
    folder.mkdir()
    real_link = os.link
    flag = durable._O_TMPFILE

    def link(src: object, dst: object, **kwargs: object) -> None:
        os.rmdir(folder)  # the unnamed file lives on, unlinked; its folder is gone
        real_link(src, dst, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(durable, "_O_TMPFILE", flag)
    monkeypatch.setattr(store_module.os, "link", link)
    with pytest.raises(FileNotFoundError):
        write_file_atomically(folder / "x", b"data")
    assert durable._O_TMPFILE == flag  # still in use for the folders that exist
    assert not folder.exists()


def test_without_hard_links_a_dangling_symlink_is_not_renamed_over(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def link(src: object, dst: object, **kwargs: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted", str(src))

    monkeypatch.setattr(durable, "_O_TMPFILE", durable._O_TMPFILE)
    monkeypatch.setattr(store_module.os, "link", link)
    target = tmp_path / "envelope"
    target.symlink_to(tmp_path / "nowhere")
    try:
        write_file_atomically(target, b"new")
    except StoreError:
        pass
    assert target.is_symlink(), "the symlink at the final name was replaced"


def test_without_hard_links_an_existing_file_is_still_refused(tmp_path: Path, kind: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def link(src: object, dst: object, **kwargs: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted", str(src))

    monkeypatch.setattr(store_module.os, "link", link)
    write_file_atomically(tmp_path / "new", b"fresh")  # renamed into place
    (tmp_path / "old").write_bytes(b"original")
    with pytest.raises(StoreError):
        write_file_atomically(tmp_path / "old", b"new")
    monkeypatch.undo()
    assert (tmp_path / "new").read_bytes() == b"fresh" and (tmp_path / "old").read_bytes() == b"original"
    assert names(tmp_path) == ["new", "old"]


def test_store_save_through_both_paths_reads_back(tmp_path: Path, kind: str) -> None:
    """The store's own writes (envelope, metadata, verdict) through each path: complete files,
    the usual modes, no temporaries."""
    import datetime as dt

    store = Store.open(tmp_path / "s")
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    payload = os.urandom(2 << 20)
    record = store.save(device="r1", host="h", nonce_hex="ab" * 16, output=payload, started=t0,
                        received=t0, duration_s=0.1)
    store.save_verdict(record, {"trusted": False, "findings": []}, trusted=False, reasons=["x"],
                       days_leaf=None, days_root=None)
    folder = tmp_path / "s" / "r1"
    assert (tmp_path / "s" / record.path).read_bytes() == payload
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
    assert all(p.stat().st_mode & 0o777 == 0o644 & ~_umask() for p in folder.iterdir())
    with pytest.raises(StoreError):
        store.save(device="r1", host="h", nonce_hex="ab" * 16, output=b"other", started=t0,
                   received=t0, duration_s=0.1)
    assert (tmp_path / "s" / record.path).read_bytes() == payload


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
