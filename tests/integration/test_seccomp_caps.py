"""Seccomp filters and capability sets on the real kernel, each in a forked child.

The child never returns into pytest: it reports a JSON result through a pipe and
leaves with ``os._exit``; the parent asserts on what it saw.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from portside.errors import PermissionDenied
from portside.linux import caps
from portside.oci.runtime_spec import LinuxSeccomp
from portside.runtime.seccomp import load_seccomp

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
]

_libc = ctypes.CDLL(None, use_errno=True)
NET_RAW = 1 << caps.CAPS["CAP_NET_RAW"]
NET_BIND = 1 << caps.CAPS["CAP_NET_BIND_SERVICE"]
PR_GET_DUMPABLE, PR_GET_CHILD_SUBREAPER, PR_GET_PDEATHSIG = 3, 37, 2


def in_child(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a forked child and return its JSON-able result (or fail with its error)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            try:
                payload = {"ok": fn()}
            except BaseException as exc:
                payload = {"error": f"{type(exc).__name__}: {exc}"}
            os.write(w, json.dumps(payload).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"child died: status {status:#x}"
    result = json.loads(data)
    if "error" in result:
        pytest.fail(f"child: {result['error']}")
    return result["ok"]


def status_fields(text: str | None = None) -> dict[str, str]:
    """/proc/self/status (or ``text`` in its format) as a dict."""
    if text is None:
        text = Path("/proc/self/status").read_text()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def errno_of(fn: Callable[[], object]) -> int:
    try:
        fn()
    except OSError as exc:
        return exc.errno or -1
    return 0


def personality(persona: int) -> int:
    """personality(2) straight through libc: errno on failure, else 0."""
    if _libc.personality(ctypes.c_ulong(persona)) == -1:
        return ctypes.get_errno()
    return 0


# --- seccomp --------------------------------------------------------------------------------


def test_errno_rule_denies_mkdir_only(tmp_path: Path) -> None:
    profile = LinuxSeccomp.from_json(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_TSYNC"],
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}],
        }
    )

    def child() -> dict[str, Any]:
        load_seccomp(profile)
        (tmp_path / "file").write_text("still works")
        return {
            "mkdir": errno_of(lambda: os.mkdir(tmp_path / "dir")),
            "read": (tmp_path / "file").read_text(),
            "listdir": sorted(os.listdir(tmp_path)),
            "status": status_fields(),
        }

    got = in_child(child)
    assert got["mkdir"] == errno.EPERM
    assert got["read"] == "still works"
    assert got["listdir"] == ["file"]
    assert got["status"]["Seccomp"] == "2"
    assert got["status"]["NoNewPrivs"] == "0"  # libseccomp must not set it behind our back
    assert not (tmp_path / "dir").exists()
    assert errno_of(lambda: os.mkdir(tmp_path / "dir")) == 0  # the parent is unfiltered


def test_arg_filter_denies_one_value() -> None:
    profile = LinuxSeccomp.from_json(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {
                    "names": ["personality"],
                    "action": "SCMP_ACT_ERRNO",
                    "errnoRet": errno.EACCES,
                    "args": [{"index": 0, "value": 0xFFFFFFFF, "op": "SCMP_CMP_EQ"}],
                }
            ],
        }
    )

    def child() -> list[int]:
        before = personality(0xFFFFFFFF)
        load_seccomp(profile)
        return [before, personality(0xFFFFFFFF), personality(0)]

    assert in_child(child) == [0, errno.EACCES, 0]


def test_repeated_arg_index_is_ored() -> None:
    args = [
        {"index": 0, "value": 0xFFFFFFFF, "op": "SCMP_CMP_EQ"},
        {"index": 0, "value": 0x0400000, "op": "SCMP_CMP_EQ"},  # READ_IMPLIES_EXEC
    ]
    profile = LinuxSeccomp.from_json(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": args}],
        }
    )

    def child() -> list[int]:
        load_seccomp(profile)
        return [personality(0xFFFFFFFF), personality(0x0400000), personality(0)]

    assert in_child(child) == [errno.EPERM, errno.EPERM, 0]


# --- capabilities ---------------------------------------------------------------------------


def test_drop_net_raw() -> None:
    _, permitted, _ = caps.capget()
    keep = permitted & ~NET_RAW

    def child() -> dict[str, Any]:
        caps.apply_capabilities(keep, keep, keep, 0, 0, uid=0, gid=0, additional_gids=[0])
        raw = errno_of(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
        return {"status": status_fields(), "raw": raw}

    got = in_child(child)
    assert int(got["status"]["CapBnd"], 16) == keep
    assert int(got["status"]["CapEff"], 16) == keep
    assert int(got["status"]["CapPrm"], 16) == keep
    assert int(got["status"]["CapAmb"], 16) == 0
    assert got["raw"] == errno.EPERM


def test_setuid_nobody_with_ambient_cap() -> None:
    def child() -> dict[str, Any]:
        raised = caps.apply_capabilities(
            NET_BIND, NET_BIND, NET_BIND, NET_BIND, NET_BIND,
            uid=65534, gid=65534, additional_gids=[4242],
        )  # fmt: skip
        after_exec = subprocess.run(
            ["cat", "/proc/self/status"], capture_output=True, text=True, check=True
        ).stdout
        return {"raised": raised, "status": status_fields(), "exec": status_fields(after_exec)}

    got = in_child(child)
    assert got["raised"] == NET_BIND
    for where in ("status", "exec"):  # the ambient set survives execve as non-root
        status = got[where]
        assert status["Uid"].split() == ["65534"] * 4, where
        assert status["Gid"].split() == ["65534"] * 4, where
        assert status["Groups"].split() == ["4242"], where
        assert int(status["CapAmb"], 16) == NET_BIND, where
        assert int(status["CapEff"], 16) == NET_BIND, where
        assert int(status["CapPrm"], 16) == NET_BIND, where
        assert int(status["CapBnd"], 16) == NET_BIND, where


def test_unraisable_ambient_is_skipped() -> None:
    def child() -> dict[str, Any]:
        both = NET_BIND | NET_RAW
        raised = caps.apply_capabilities(
            both, both, both, NET_BIND, both, uid=65534, gid=65534, additional_gids=[]
        )
        return {"raised": raised, "amb": int(status_fields()["CapAmb"], 16)}

    assert in_child(child) == {"raised": NET_BIND, "amb": NET_BIND}


def test_capset_error_names_the_step() -> None:
    def child() -> str:
        try:  # inheritable beyond the bounding set: the kernel refuses
            caps.apply_capabilities(
                NET_BIND, NET_BIND, NET_BIND, NET_RAW, 0, uid=0, gid=0, additional_gids=[]
            )
        except PermissionDenied as exc:
            return str(exc)
        return "no error"

    assert in_child(child) == "capabilities: capset: Operation not permitted"


def test_prctl_wrappers() -> None:
    def prctl_get(option: int) -> int:
        value = ctypes.c_int(-1)
        if option == PR_GET_DUMPABLE:
            return _libc.prctl(option, 0, 0, 0, 0)
        _libc.prctl(option, ctypes.byref(value), 0, 0, 0)
        return value.value

    def child() -> dict[str, Any]:
        caps.set_no_new_privs()
        caps.set_dumpable(False)
        caps.set_pdeathsig(9)
        caps.set_child_subreaper(True)
        return {
            "nnp": status_fields()["NoNewPrivs"],
            "dumpable": prctl_get(PR_GET_DUMPABLE),
            "pdeathsig": prctl_get(PR_GET_PDEATHSIG),
            "subreaper": prctl_get(PR_GET_CHILD_SUBREAPER),
        }

    assert in_child(child) == {"nnp": "1", "dumpable": 0, "pdeathsig": 9, "subreaper": 1}
