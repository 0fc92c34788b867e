"""The default seccomp profile (as data and compiled) and Docker's profile format."""

from __future__ import annotations

import errno
import json
from typing import Any

import pytest

from portside.engine import seccomp_profile as sp
from portside.errors import InvalidArgument
from portside.linux import seccomp as scmp
from portside.oci.runtime_spec import LinuxSeccomp
from portside.runtime.seccomp import compile_profile, plan_seccomp


def rules_for(profile: LinuxSeccomp, name: str) -> list[Any]:
    return [call for call in profile.syscalls if name in call.names]


def test_default_profile_compiles_for_every_abi() -> None:
    profile = sp.default_profile()
    compiled = compile_profile(profile)
    program, flags = compiled.program, compiled.flags
    assert len(program) % 8 == 0 and len(program) > 8 * 100
    assert flags == 0
    if sp.NATIVE_ARCHES.get(__import__("platform").machine(), ())[:1] == ("SCMP_ARCH_X86_64",):
        assert profile.architectures == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]


def test_default_denies_with_eperm() -> None:
    profile = sp.default_profile()
    assert (profile.default_action, profile.default_errno_ret) == ("SCMP_ACT_ERRNO", errno.EPERM)


def test_blocked_syscalls_have_no_allow_rule() -> None:
    profile = sp.default_profile()
    allowed = {
        n for call in profile.syscalls if call.action == "SCMP_ACT_ALLOW" for n in call.names
    }
    for name in sp.BLOCKED:
        assert name not in allowed, name
    for name in ("mount", "io_uring_setup", "keyctl", "bpf", "setns", "pivot_root"):
        assert name in sp.BLOCKED


def test_every_allowed_name_is_a_syscall_libseccomp_knows() -> None:
    unknown = [
        name
        for group in sp.ALLOWED.values()
        for name in group
        if scmp.resolve_syscall(name) is None
    ]
    assert unknown == []


def test_clone3_answers_enosys() -> None:
    (rule,) = rules_for(sp.default_profile(), "clone3")
    assert (rule.action, rule.errno_ret, rule.args) == ("SCMP_ACT_ERRNO", errno.ENOSYS, [])


@pytest.mark.parametrize("name", ["clone", "unshare"])
def test_clone_and_unshare_only_without_namespace_flags(name: str) -> None:
    (rule,) = rules_for(sp.default_profile(), name)
    (arg,) = rule.args
    assert rule.action == "SCMP_ACT_ALLOW"
    assert arg.op == "SCMP_CMP_MASKED_EQ" and arg.value_two == 0
    assert arg.value & 0x7E020000 == 0x7E020000  # every CLONE_NEW* bit is in the mask
    # a flags value passes the rule exactly when it has no namespace flag
    for flags, ok in ((0x11, True), (0x400, True), (0x10000000, False), (0x20000, False)):
        assert (flags & arg.value == arg.value_two) == ok


def socket_allows(profile: LinuxSeccomp, family: int) -> bool:
    """Whether any socket rule allows ``family`` (rules ORed, each with one arg0 test)."""
    ops = {
        "SCMP_CMP_LT": lambda a, v: a < v,
        "SCMP_CMP_EQ": lambda a, v: a == v,
        "SCMP_CMP_GT": lambda a, v: a > v,
    }
    rules = rules_for(profile, "socket")
    assert all(len(r.args) == 1 and r.args[0].index == 0 for r in rules)
    return any(ops[r.args[0].op](family, r.args[0].value) for r in rules)


def test_socket_families() -> None:
    profile = sp.default_profile()
    for family in (1, 2, 10, 16, 17, 39, 41, 45):  # unix inet inet6 netlink packet ... others
        assert socket_allows(profile, family), family
    assert not socket_allows(profile, 38)  # AF_ALG
    assert not socket_allows(profile, 40)  # AF_VSOCK


def test_personality_values() -> None:
    rules = rules_for(sp.default_profile(), "personality")
    assert sorted(r.args[0].value for r in rules) == [0, 8, 0x20000, 0x20008, 0xFFFFFFFF]
    assert all(r.args[0].op == "SCMP_CMP_EQ" for r in rules)


def test_default_profile_is_a_fresh_record() -> None:
    one = sp.default_profile()
    one.syscalls.clear()
    assert sp.default_profile().syscalls


# --- Docker's format -------------------------------------------------------------------


DOCKER_PROFILE = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 38,
    "archMap": [
        {
            "architecture": "SCMP_ARCH_X86_64",
            "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        },
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
    ],
    "syscalls": [
        {"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
        {"name": "getpid", "action": "SCMP_ACT_ALLOW"},
        {
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
        },
        {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["acct"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_CHOWN"]}},
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
        {"names": ["ioperm"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["nope"]}},
    ],
}


def test_docker_profile_converts() -> None:
    profile = sp.from_docker(json.loads(json.dumps(DOCKER_PROFILE)), ["CAP_CHOWN"])
    assert profile.default_errno_ret == 38
    names = [c.names for c in profile.syscalls]
    assert names == [["read", "write", "exit_group"], ["getpid"], ["personality"], ["mkdir"]]
    assert profile.syscalls[2].args[0].value == 8
    assert profile.syscalls[3].errno_ret == 1
    native = sp.native_arch()
    assert profile.architectures[0] == native
    plan_seccomp(profile)  # valid for the runtime
    compile_profile(profile)


def test_docker_profile_includes_caps() -> None:
    profile = sp.from_docker(DOCKER_PROFILE, ["CAP_SYS_ADMIN"])
    names = {n for c in profile.syscalls for n in c.names}
    assert "mount" in names and "acct" in names


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"architectures": ["SCMP_ARCH_X86_64"]}, "both 'architectures' and 'archMap'"),
        ({"syscalls": [{"name": "a", "names": ["b"], "action": "SCMP_ACT_ALLOW"}]}, "'name' and"),
        ({"defaultAction": ""}, "defaultAction"),
        ({"syscalls": [{"names": ["read"], "action": 3}]}, "seccomp profile"),
    ],
)
def test_docker_profile_errors(change: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        sp.from_docker({**DOCKER_PROFILE, **change}, [])


def test_docker_profile_not_an_object() -> None:
    with pytest.raises(InvalidArgument):
        sp.from_docker(["x"], [])
