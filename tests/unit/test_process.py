"""Process setup: rlimits, personality, $PATH lookup, the signal state at exec."""

from __future__ import annotations

import os
import resource
import signal

import pytest

from portside.errors import InvalidArgument, NotFound, PermissionDenied
from portside.oci.runtime_spec import POSIXRlimit, Process
from portside.runtime import process


def test_check_rlimits_translates_names_and_infinity() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limits = process.check_rlimits(
        [
            POSIXRlimit(type="RLIMIT_NOFILE", soft=min(512, soft), hard=min(512, hard)),
            POSIXRlimit(type="RLIMIT_CORE", soft=0, hard=0),
        ]
    )
    assert limits == [
        (resource.RLIMIT_NOFILE, min(512, soft), min(512, hard)),
        (resource.RLIMIT_CORE, 0, 0),
    ]


@pytest.mark.parametrize(
    ("rlimits", "message"),
    [
        ([POSIXRlimit(type="RLIMIT_FOO", soft=1, hard=1)], "unknown rlimit 'RLIMIT_FOO'"),
        ([POSIXRlimit(type="RLIMIT_CORE", soft=2, hard=1)], "soft limit 2 exceeds hard 1"),
        (
            [POSIXRlimit(type="RLIMIT_CORE", soft=0, hard=0)] * 2,
            r"process.rlimits\[1\]: RLIMIT_CORE given twice",
        ),
    ],
)
def test_check_rlimits_refuses_bad_entries(rlimits: list[POSIXRlimit], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        process.check_rlimits(rlimits)


def test_check_rlimits_above_the_hard_limit_without_cap_sys_resource(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        pytest.skip("the NOFILE hard limit is infinite here")
    monkeypatch.setattr(process, "_has_cap", lambda cap: False)
    with pytest.raises(PermissionDenied, match=r"RLIMIT_NOFILE hard limit .* CAP_SYS_RESOURCE"):
        process.check_rlimits([POSIXRlimit(type="RLIMIT_NOFILE", soft=1, hard=hard + 1)])


def test_check_personality() -> None:
    assert process.check_personality(None) is None
    assert process.check_personality({"domain": "LINUX"}) == 0
    assert process.check_personality({"domain": "LINUX32"}) == 8
    with pytest.raises(InvalidArgument, match="unknown domain 'WINDOWS'"):
        process.check_personality({"domain": "WINDOWS"})
    with pytest.raises(InvalidArgument, match="no flags"):
        process.check_personality({"domain": "LINUX", "flags": ["SHORT_INODE"]})


def test_lookpath_searches_the_process_path(tmp_path: os.PathLike[str]) -> None:
    exe = os.path.join(tmp_path, "tool")
    with open(exe, "w") as f:
        f.write("#!/bin/sh\n")
    os.chmod(exe, 0o755)
    plain = os.path.join(tmp_path, "data")
    open(plain, "w").close()
    env = [f"PATH=/nonexistent:{tmp_path}"]
    assert process.lookpath("tool", env) == exe
    assert process.lookpath(exe, []) == exe
    with pytest.raises(NotFound, match='exec: "nope": executable file not found in \\$PATH'):
        process.lookpath("nope", env)
    with pytest.raises(NotFound, match="no such file or directory"):
        process.lookpath("/nonexistent/tool", env)
    with pytest.raises(NotFound):
        process.lookpath("data", env)  # not executable: skipped in $PATH


def test_env_path_default() -> None:
    assert process.env_path(["A=b"]) == process.DEFAULT_PATH
    assert process.env_path(["PATH=/x"]) == "/x"


def _sig_ignored_after_exec_process() -> int:
    """Fork, ignore SIGPIPE and SIGXFSZ as Python does, run the real
    exec_process on a shell reading /proc/self/status: its SigIgn mask."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            os.dup2(w, 1)
            signal.signal(signal.SIGPIPE, signal.SIG_IGN)
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            process._set_user = lambda *_: None  # this child's copy only: no root needed
            proc = Process(
                args=["/bin/sh", "-c", "grep '^SigIgn:' /proc/self/status"],
                env=["PATH=/usr/bin:/bin"],
            )
            process.exec_process(proc, "/bin/sh", None)
        finally:
            os._exit(127)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out
    return int(out.split()[1], 16)


def test_exec_process_gives_sigpipe_and_sigxfsz_their_defaults() -> None:
    # ignored dispositions survive execve: without the reset a container started by
    # portside-runtime would ignore SIGPIPE, and `yes | head -1` would never end
    ignored = _sig_ignored_after_exec_process()
    assert not ignored & (1 << (signal.SIGPIPE - 1)), f"SigIgn {ignored:#x}"
    assert not ignored & (1 << (signal.SIGXFSZ - 1)), f"SigIgn {ignored:#x}"
