"""portside.runtime.sync: the typed message channel over a real SOCK_SEQPACKET socketpair."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator

import pytest

from portside.errors import Internal, InvalidArgument
from portside.runtime.errors import ChildError
from portside.runtime.sync import SyncSocket, sync_pair


@pytest.fixture
def pair() -> Iterator[tuple[SyncSocket, SyncSocket]]:
    parent, child = sync_pair()
    try:
        yield parent, child
    finally:
        parent.close()
        child.close()


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_pair_is_seqpacket_and_not_inherited(pair: tuple[SyncSocket, SyncSocket]) -> None:
    parent, child = pair
    assert parent.sock.type == socket.SOCK_SEQPACKET
    assert child.fileno() == child.sock.fileno()
    assert os.get_inheritable(child.fileno()) is False


def test_send_and_recv(pair: tuple[SyncSocket, SyncSocket]) -> None:
    parent, child = pair
    child.send("pid", pid=1234, nested={"a": [1, 2]}, text="é")
    assert parent.recv() == ({"type": "pid", "pid": 1234, "nested": {"a": [1, 2]}, "text": "é"}, [])
    parent.send("go")
    assert child.recv() == ({"type": "go"}, [])


def test_messages_keep_their_boundaries(pair: tuple[SyncSocket, SyncSocket]) -> None:
    parent, child = pair
    for i in range(5):
        child.send("n", i=i)
    assert [parent.recv()[0]["i"] for _ in range(5)] == [0, 1, 2, 3, 4]  # type: ignore[index]


def test_fds_arrive_and_are_usable(pair: tuple[SyncSocket, SyncSocket]) -> None:
    parent, child = pair
    r, w = os.pipe()
    r2, w2 = os.pipe()
    try:
        child.send("fds", fds=[r, w2], what="pipes")
        msg, fds = parent.recv()
        assert msg == {"type": "fds", "what": "pipes"}
        assert len(fds) == 2 and r not in fds and w2 not in fds  # new descriptors
        got_r, got_w2 = fds
        os.write(w, b"through the socket")
        assert os.read(got_r, 100) == b"through the socket"
        os.write(got_w2, b"back")
        assert os.read(r2, 100) == b"back"
        for fd in fds:
            os.close(fd)
    finally:
        for fd in (r, w, r2, w2):
            os.close(fd)


def test_sixteen_fds_in_one_message(pair: tuple[SyncSocket, SyncSocket]) -> None:
    parent, child = pair
    sent = [os.open("/dev/null", os.O_RDONLY) for _ in range(16)]
    try:
        child.send("many", fds=sent)
        _, fds = parent.recv()
        assert len(fds) == 16
        for fd in fds:
            os.fstat(fd)
            os.close(fd)
    finally:
        for fd in sent:
            os.close(fd)


def test_empty_fd_list_sends_a_plain_message(pair: tuple[SyncSocket, SyncSocket]) -> None:
    parent, child = pair
    child.send("x", fds=[])
    assert parent.recv() == ({"type": "x"}, [])


def test_os_error_crosses_as_child_error(pair: tuple[SyncSocket, SyncSocket]) -> None:
    parent, child = pair
    child.send_error("mounts", FileNotFoundError(errno.ENOENT, "No such file or directory", "/x"))
    with pytest.raises(ChildError) as info:
        parent.recv()
    err = info.value
    assert (err.step, err.errno, err.message) == (
        "mounts",
        errno.ENOENT,
        "/x: No such file or directory",
    )
    assert str(err) == "mounts: /x: No such file or directory"
    assert isinstance(err, Internal)


@pytest.mark.parametrize(
    ("exc", "code", "message"),
    [
        (PermissionError(errno.EPERM, "Not permitted"), errno.EPERM, "Not permitted"),
        (OSError("no errno at all"), 0, "no errno at all"),
        (OSError(errno.EIO, "mount /proc: I/O error"), errno.EIO, "mount /proc: I/O error"),
        (InvalidArgument("linux.sysctl: vm.x"), 0, "linux.sysctl: vm.x"),
        (ValueError("bad"), 0, "bad"),
        (RuntimeError(), 0, ""),
    ],
)
def test_send_error_of_any_exception(
    pair: tuple[SyncSocket, SyncSocket], exc: BaseException, code: int, message: str
) -> None:
    parent, child = pair
    child.send_error("step", exc)
    with pytest.raises(ChildError) as info:
        parent.recv()
    assert (info.value.step, info.value.errno, info.value.message) == ("step", code, message)


def test_error_message_with_missing_fields(pair: tuple[SyncSocket, SyncSocket]) -> None:
    parent, child = pair
    child.send("error")
    with pytest.raises(ChildError) as info:
        parent.recv()
    assert (info.value.step, info.value.errno, info.value.message) == ("?", 0, "")


def test_eof_when_the_other_end_closes(pair: tuple[SyncSocket, SyncSocket]) -> None:
    parent, child = pair
    child.send("last")
    child.close()
    assert parent.recv() == ({"type": "last"}, [])
    assert parent.recv() == (None, [])
    assert parent.recv() == (None, [])


def test_eof_when_the_child_execs() -> None:
    # the child end is close-on-exec: a successful execve reads as end-of-file
    parent, child = sync_pair()
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - in the child
            try:
                parent.close()
                os.execv("/bin/true", ["true"])
            finally:
                os._exit(127)
        child.close()
        assert parent.recv() == (None, [])
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        parent.close()
        child.close()


def test_expect(pair: tuple[SyncSocket, SyncSocket]) -> None:
    parent, child = pair
    child.send("ready", pid=7)
    assert parent.expect("ready", "waiting for init") == {"type": "ready", "pid": 7}


def test_expect_wrong_type_raises(pair: tuple[SyncSocket, SyncSocket]) -> None:
    parent, child = pair
    child.send("pid", pid=1)
    with pytest.raises(ChildError) as info:
        parent.expect("ready", "waiting for init")
    assert info.value.step == "waiting for init"
    assert info.value.message == "expected 'ready', got 'pid'"


def test_expect_any(pair: tuple[SyncSocket, SyncSocket]) -> None:
    parent, child = pair
    child.send("b")
    assert parent.expect_any(("a", "b"), "x") == {"type": "b"}
    child.send("c")
    with pytest.raises(ChildError, match=r"expected 'a' or 'b', got 'c'"):
        parent.expect_any(("a", "b"), "x")


def test_expect_at_eof_raises(pair: tuple[SyncSocket, SyncSocket]) -> None:
    parent, child = pair
    child.close()
    with pytest.raises(ChildError) as info:
        parent.expect("ready", "create")
    assert info.value.step == "create"
    assert "exited before sending 'ready'" in info.value.message


def test_expect_passes_errors_through(pair: tuple[SyncSocket, SyncSocket]) -> None:
    parent, child = pair
    child.send_error("pivot", OSError(errno.EINVAL, "Invalid argument"))
    with pytest.raises(ChildError) as info:
        parent.expect("ready", "create")
    assert (info.value.step, info.value.errno) == ("pivot", errno.EINVAL)


def test_expect_closes_unwanted_fds(pair: tuple[SyncSocket, SyncSocket]) -> None:
    parent, child = pair
    before = open_fds()
    fd = os.open("/dev/null", os.O_RDONLY)
    child.send("ready", fds=[fd])
    os.close(fd)
    parent.expect("ready", "x")
    assert open_fds() == before
