"""OCI seccomp profiles → libseccomp: translation, BPF output and errors (nothing is loaded)."""

from __future__ import annotations

import ctypes
import errno
import struct
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portside.errors import InvalidArgument, Unavailable
from portside.linux import seccomp as scmp
from portside.oci.runtime_spec import LinuxSeccomp
from portside.runtime import seccomp

BPF_RET_K = 0x06
BPF_JEQ_K = 0x15
AUDIT_ARCH_I386 = 0x40000003


def spec(**fields: Any) -> LinuxSeccomp:
    return LinuxSeccomp.from_json({"defaultAction": "SCMP_ACT_ALLOW", **fields})


def bpf(profile: LinuxSeccomp) -> list[tuple[int, int, int, int]]:
    """The (code, jt, jf, k) instructions of the compiled profile."""
    raw = seccomp.compile_seccomp(profile)
    assert raw and len(raw) % 8 == 0
    return list(struct.iter_unpack("=HBBI", raw))


def returns(prog: list[tuple[int, int, int, int]]) -> set[int]:
    return {k for code, _, _, k in prog if code == BPF_RET_K}


def jeq_constants(prog: list[tuple[int, int, int, int]]) -> set[int]:
    return {k for code, _, _, k in prog if code == BPF_JEQ_K}


# --- plan_seccomp: pure translation ---------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "errno_ret", "expected"),
    [
        ("SCMP_ACT_ALLOW", None, 0x7FFF0000),
        ("SCMP_ACT_KILL", None, 0),
        ("SCMP_ACT_KILL_THREAD", None, 0),
        ("SCMP_ACT_KILL_PROCESS", None, 0x80000000),
        ("SCMP_ACT_TRAP", None, 0x00030000),
        ("SCMP_ACT_LOG", None, 0x7FFC0000),
        ("SCMP_ACT_ERRNO", None, 0x00050000 | errno.EPERM),
        ("SCMP_ACT_ERRNO", errno.ENOSYS, 0x00050000 | errno.ENOSYS),
        ("SCMP_ACT_ERRNO", 0, 0x00050000),
        ("SCMP_ACT_TRACE", None, 0x7FF00000 | errno.EPERM),
        ("SCMP_ACT_TRACE", 7, 0x7FF00007),
        ("SCMP_ACT_ERRNO", 4094, 0x00050FFE),
        ("SCMP_ACT_TRACE", 0xFFFF, 0x7FF0FFFF),
        ("SCMP_ACT_ALLOW", 5, 0x7FFF0000),  # errnoRet means nothing to ALLOW
    ],
)
def test_actions(action: str, errno_ret: int | None, expected: int) -> None:
    default = spec(defaultAction=action, defaultErrnoRet=errno_ret)
    assert seccomp.plan_seccomp(default).default_action == expected
    other = "SCMP_ACT_LOG" if action == "SCMP_ACT_ALLOW" else "SCMP_ACT_ALLOW"
    rule = {"names": ["read"], "action": action, "errnoRet": errno_ret}
    plan = seccomp.plan_seccomp(spec(defaultAction=other, syscalls=[rule]))
    assert [r[1] for r in plan.rules] == [expected]


def test_rule_with_the_default_action_is_skipped() -> None:
    rules = [
        {"names": ["read"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["write"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM},
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES},
    ]
    plan = seccomp.plan_seccomp(spec(defaultAction="SCMP_ACT_ERRNO", syscalls=rules))
    assert [r[2] for r in plan.rules] == ["mkdir"]


def test_args_distinct_indexes_are_anded() -> None:
    args = [
        {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
        {"index": 2, "value": 0xF0, "valueTwo": 0x10, "op": "SCMP_CMP_MASKED_EQ"},
    ]
    rule = {"names": ["clone", "clone3"], "action": "SCMP_ACT_ERRNO", "args": args}
    plan = seccomp.plan_seccomp(spec(syscalls=[rule]))
    conds = [(0, scmp.SCMP_CMP_EQ, 1, 0), (2, scmp.SCMP_CMP_MASKED_EQ, 0xF0, 0x10)]
    assert plan.rules == [
        ("linux.seccomp.syscalls[0]", 0x50001, "clone", conds),
        ("linux.seccomp.syscalls[0]", 0x50001, "clone3", conds),
    ]


def test_args_repeated_index_become_separate_rules() -> None:
    args = [
        {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
        {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"},
        {"index": 1, "value": 3, "op": "SCMP_CMP_GT"},
    ]
    plan = seccomp.plan_seccomp(
        spec(syscalls=[{"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": args}])
    )
    assert [r[3] for r in plan.rules] == [
        [(0, scmp.SCMP_CMP_EQ, 1, 0)],
        [(0, scmp.SCMP_CMP_EQ, 2, 0)],
        [(1, scmp.SCMP_CMP_GT, 3, 0)],
    ]


def test_flags_become_attributes() -> None:
    plan = seccomp.plan_seccomp(
        spec(flags=["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"])
    )
    assert plan.attrs == [
        ("SECCOMP_FILTER_FLAG_LOG", scmp.SCMP_FLTATR_CTL_LOG),
        ("SECCOMP_FILTER_FLAG_SPEC_ALLOW", scmp.SCMP_FLTATR_CTL_SSB),
    ]


BAD = [
    (
        {"defaultAction": "SCMP_ACT_FOO"},
        "linux.seccomp.defaultAction: unknown action 'SCMP_ACT_FOO'",
    ),
    (
        {
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO"}] * 3
            + [{"names": ["read"], "action": "SCMP_ACT_FOO"}]
        },
        "linux.seccomp.syscalls[3].action: unknown action 'SCMP_ACT_FOO'",
    ),
    (
        {"syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]},
        "linux.seccomp.syscalls[0].action: SCMP_ACT_NOTIFY is not supported yet",
    ),
    (
        {"listenerPath": "/run/notify.sock"},
        "linux.seccomp.listenerPath: seccomp notify is not supported yet",
    ),
    (
        {"architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_VAX"]},
        "linux.seccomp.architectures[1]: unknown architecture 'SCMP_ARCH_VAX'",
    ),
    (
        {"flags": ["SECCOMP_FILTER_FLAG_NOPE"]},
        "linux.seccomp.flags[0]: unknown flag 'SECCOMP_FILTER_FLAG_NOPE'",
    ),
    (
        {
            "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "op": "X"}]}
            ]
        },
        "linux.seccomp.syscalls[0].args[0].op: unknown operator 'X'",
    ),
    (
        {
            "syscalls": [
                {
                    "names": ["read"],
                    "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 6, "op": "SCMP_CMP_EQ"}],
                }
            ]
        },
        "linux.seccomp.syscalls[0].args[0].index: 6 out of range 0..5",
    ),
    (
        {
            "syscalls": [
                {
                    "names": ["read"],
                    "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 0, "value": 1 << 64, "op": "SCMP_CMP_EQ"}],
                }
            ]
        },
        f"linux.seccomp.syscalls[0].args[0].value: {1 << 64} out of range for a u64",
    ),
    (
        {"syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 4095}]},
        "linux.seccomp.syscalls[0].action: errno 4095 out of range 0..4094",
    ),
    (
        {"defaultAction": "SCMP_ACT_TRACE", "defaultErrnoRet": 70000},
        "linux.seccomp.defaultAction: errno 70000 out of range 0..65535",
    ),
    (
        {"syscalls": [{"names": ["read", ""], "action": "SCMP_ACT_ERRNO"}]},
        "linux.seccomp.syscalls[0].names[1]: empty syscall name",
    ),
]


@pytest.mark.parametrize(("fields", "message"), BAD)
def test_bad_profiles_name_the_path(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        seccomp.compile_seccomp(spec(**fields))
    assert str(info.value) == message


def test_conflicting_rules_name_the_rule() -> None:
    # on x86, socket() is multiplexed through socketcall(): libseccomp cannot give it two actions
    rules = [
        {"names": ["socket"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["read", "socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 0},
    ]
    with pytest.raises(InvalidArgument) as info:
        seccomp.compile_seccomp(spec(architectures=["SCMP_ARCH_X86"], syscalls=rules))
    assert str(info.value) == (
        "linux.seccomp.syscalls[1]: rule for socket: conflicts with an earlier rule"
    )


# --- build_filter / compile_seccomp: libseccomp's output ------------------------------------


def test_compile_errno_rule() -> None:
    mkdir_nr = scmp.resolve_syscall("mkdir")
    assert mkdir_nr is not None and mkdir_nr >= 0
    prog = bpf(spec(syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]))
    assert mkdir_nr in jeq_constants(prog)
    assert returns(prog) >= {scmp.SCMP_ACT_ALLOW, scmp.SCMP_ACT_ERRNO(errno.EPERM)}


def test_compile_errno_ret_and_default_errno() -> None:
    prog = bpf(
        spec(
            defaultAction="SCMP_ACT_ERRNO",
            defaultErrnoRet=errno.ENOSYS,
            syscalls=[{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}],
        )
    )
    assert scmp.SCMP_ACT_ERRNO(errno.ENOSYS) in returns(prog)


def test_unknown_syscall_is_skipped() -> None:
    known = spec(syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}])
    with_unknown = spec(syscalls=[{"names": ["mkdir", "no_such_call"], "action": "SCMP_ACT_ERRNO"}])
    assert seccomp.compile_seccomp(with_unknown) == seccomp.compile_seccomp(known)
    with scmp.SeccompFilter(scmp.SCMP_ACT_ALLOW) as f:
        assert f.add_rule(scmp.SCMP_ACT_LOG, "no_such_call", []) is False
        assert f.add_rule(scmp.SCMP_ACT_LOG, "mkdir", []) is True
        with pytest.raises(InvalidArgument, match="action is the default action"):
            f.add_rule(scmp.SCMP_ACT_ALLOW, "read", [])


def test_extra_arch_is_in_the_filter() -> None:
    native = bpf(spec(syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]))
    multi = bpf(
        spec(
            architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}],
        )
    )
    assert AUDIT_ARCH_I386 not in jeq_constants(native)
    assert AUDIT_ARCH_I386 in jeq_constants(multi)


def test_arg_rule_compares_the_value() -> None:
    args = [{"index": 0, "value": 0xFFFFFFFF, "op": "SCMP_CMP_EQ"}]
    prog = bpf(
        spec(syscalls=[{"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": args}])
    )
    assert 0xFFFFFFFF in jeq_constants(prog)


def test_many_rules_are_optimised_and_still_compile() -> None:
    names = ["read", "write", "openat", "close", "mmap", "munmap", "brk", "futex", "getpid"]
    rules = [{"names": [n], "action": "SCMP_ACT_ALLOW"} for n in names * 5]
    assert bpf(spec(defaultAction="SCMP_ACT_ERRNO", syscalls=rules))


def test_filter_is_unusable_after_release() -> None:
    f = scmp.SeccompFilter(scmp.SCMP_ACT_ALLOW)
    f.release()
    f.release()
    with pytest.raises(scmp.Internal, match="after release"):
        f.export_bpf()


def test_missing_library_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    real_cdll = ctypes.CDLL

    def cdll(name: str, *args: Any, **kwargs: Any) -> ctypes.CDLL:
        if "seccomp" in name:
            raise OSError(f"{name}: cannot open shared object file")
        return real_cdll(name, *args, **kwargs)

    monkeypatch.setattr(scmp, "_lib", None)
    monkeypatch.setattr(ctypes, "CDLL", cdll)
    with pytest.raises(Unavailable) as info:
        seccomp.compile_seccomp(spec())
    assert str(info.value) == "seccomp: libseccomp.so.2 not found; install libseccomp2"
    assert seccomp.features() == {"enabled": False}


def test_import_loads_nothing_but_portside() -> None:
    code = (
        "import sys; before = set(sys.modules); import portside.runtime.seccomp;"
        "print(*sorted(set(sys.modules) - before))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    new = out.stdout.split()
    assert "portside.runtime.seccomp" in new
    assert [m for m in new if not m.startswith("portside")] == []


def test_features_shape() -> None:
    feats = seccomp.features()
    assert feats["enabled"] is True
    assert "SCMP_ACT_ERRNO" in feats["actions"]  # type: ignore[operator]
    assert "SCMP_ACT_NOTIFY" not in feats["actions"]  # type: ignore[operator]
    assert feats["operators"] == sorted(seccomp.OPERATORS)
    assert {"SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"} <= set(feats["archs"])  # type: ignore[call-overload]
    assert feats["knownFlags"] == list(seccomp.FLAGS)
    assert "SECCOMP_FILTER_FLAG_TSYNC" in feats["supportedFlags"]  # type: ignore[operator]


# --- random well-formed profiles ------------------------------------------------------------

_NAMES = ["read", "write", "mkdir", "personality", "socket", "socketcall", "clone", "no_such_call"]
_arg = st.fixed_dictionaries(
    {
        "index": st.integers(0, 5),
        "op": st.sampled_from(sorted(seccomp.OPERATORS)),
        "value": st.integers(0, (1 << 64) - 1),
        "valueTwo": st.integers(0, (1 << 64) - 1),
    }
)
_rule = st.fixed_dictionaries(
    {
        "names": st.lists(st.sampled_from(_NAMES), max_size=3),
        "action": st.sampled_from(sorted(seccomp.ACTIONS)),
    },
    # libseccomp's time grows steeply with argument rules on one syscall: one random
    # profile of 6 rules with 3 arguments each ran for 38 minutes
    optional={"errnoRet": st.integers(0, 0xFFFF), "args": st.lists(_arg, max_size=2)},
)
_profile = st.fixed_dictionaries(
    {
        "defaultAction": st.sampled_from(sorted(seccomp.ACTIONS)),
        "syscalls": st.lists(_rule, max_size=4),
        "architectures": st.lists(
            st.sampled_from(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]), max_size=3
        ),
        "flags": st.lists(st.sampled_from(list(seccomp.FLAGS)), max_size=2),
    },
    optional={"defaultErrnoRet": st.integers(0, 0xFFFF)},
)


@settings(max_examples=150, deadline=None)
@given(_profile)
def test_random_profiles_compile_or_fail_cleanly(profile: dict[str, Any]) -> None:
    try:
        raw = seccomp.compile_seccomp(LinuxSeccomp.from_json(profile))
    except InvalidArgument as exc:
        assert str(exc).startswith("linux.seccomp.")
    else:
        assert raw and len(raw) % 8 == 0


def test_compiled_programs_are_remembered_per_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    """The monitor compiles the same default profile for nearly every container."""
    monkeypatch.setattr(seccomp, "_COMPILED", {})
    calls: list[int] = []
    real = seccomp.compile_seccomp

    def counting(spec: LinuxSeccomp) -> bytes:
        calls.append(1)
        return real(spec)

    monkeypatch.setattr(seccomp, "compile_seccomp", counting)
    errno_profile = LinuxSeccomp.from_json({"defaultAction": "SCMP_ACT_ERRNO"})
    first = seccomp.compile_profile(errno_profile)
    again = seccomp.compile_profile(LinuxSeccomp.from_json({"defaultAction": "SCMP_ACT_ERRNO"}))
    assert again is first
    assert seccomp.compile_profile(LinuxSeccomp.from_json({"defaultAction": "SCMP_ACT_LOG"}))
    assert len(calls) == 2
    for n in range(seccomp._COMPILED_LIMIT + 3):
        seccomp.compile_profile(LinuxSeccomp.from_json(
            {"defaultAction": "SCMP_ACT_ALLOW",
             "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": n + 1}]}
        ))  # fmt: skip
    assert len(seccomp._COMPILED) == seccomp._COMPILED_LIMIT


def test_a_new_compile_gives_libseccomps_memory_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """After building a filter (a burst of small allocations) the C heap is trimmed, so
    the long-lived monitor does not keep ~1 MiB more resident for every fork to copy;
    a program found in the cache costs no trim."""
    import portside.linux._libc as libc_mod

    monkeypatch.setattr(seccomp, "_COMPILED", {})
    trims: list[int] = []
    monkeypatch.setattr(libc_mod, "release_free_memory", lambda: trims.append(1))
    seccomp.compile_profile(LinuxSeccomp.from_json({"defaultAction": "SCMP_ACT_ERRNO"}))
    seccomp.compile_profile(LinuxSeccomp.from_json({"defaultAction": "SCMP_ACT_ERRNO"}))
    assert trims == [1]
    monkeypatch.undo()
    libc_mod.release_free_memory()  # the real one: harmless to call at any time


def test_a_bad_profile_is_never_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seccomp, "_COMPILED", {})
    bad = LinuxSeccomp.from_json({"defaultAction": "SCMP_ACT_NOPE"})
    for _ in range(2):
        with pytest.raises(InvalidArgument):
            seccomp.compile_profile(bad)
    assert seccomp._COMPILED == {}


def test_compile_profile_remembers_texts() -> None:
    profile = spec(syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}])
    program = seccomp.compile_profile(profile)
    twin = spec(syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}])
    assert seccomp.compile_profile(twin) is program  # the same text
    other = spec(syscalls=[{"names": ["rmdir"], "action": "SCMP_ACT_ERRNO"}])
    assert seccomp.compile_profile(other) is not program


def test_compile_profile_follows_a_record_changed_in_place() -> None:
    # only the records parse_spec shares are known by identity: another may change
    profile = spec(syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}])
    first = seccomp.compile_profile(profile)
    profile.syscalls[0].names = ["rmdir"]
    second = seccomp.compile_profile(profile)
    assert second is not first
    rmdir = scmp.resolve_syscall("rmdir")
    assert rmdir in jeq_constants(list(struct.iter_unpack("=HBBI", second.program)))


def test_compile_profile_knows_shared_records_by_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    from portside.oci.runtime_spec import parse_spec
    from portside.runtime.specgen import default_spec

    config = default_spec()
    config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}],
    }
    linux = parse_spec(config).linux
    assert linux is not None and linux.seccomp is not None
    shared = linux.seccomp
    program = seccomp.compile_profile(shared)
    monkeypatch.setattr(shared, "to_json", lambda: pytest.fail("serialised again"))
    assert seccomp.compile_profile(shared) is program
