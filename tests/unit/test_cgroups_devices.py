"""Device rules: the v1 emulator, v1 writes, and the v2 eBPF program generator.

The expected programs are runc's ``devicefilter_test.go`` listings, with the symbolic
jump targets resolved to offsets.
"""

from __future__ import annotations

import pytest

from portside.oci.runtime_spec import LinuxDeviceCgroup
from portside.runtime.cgroups import CgroupInvalid
from portside.runtime.cgroups.devices import (
    WILDCARD,
    DeviceRule,
    canonical_rules,
    from_oci,
    v1_writes,
)
from portside.runtime.cgroups.devices_bpf import compile_program, decode, program_insns


def rule(
    allow: bool,
    type: str | None = None,
    major: int | None = None,
    minor: int | None = None,
    access: str | None = "rwm",
) -> LinuxDeviceCgroup:
    return LinuxDeviceCgroup(allow=allow, type=type, major=major, minor=minor, access=access)


# the OCI rules of runc's TestDeviceFilter_BuiltInAllowList (its specconv defaults)
BUILTIN = [
    rule(True, "c", None, None, "m"),
    rule(True, "b", None, None, "m"),
    rule(True, "c", 1, 3),
    rule(True, "c", 1, 8),
    rule(True, "c", 1, 7),
    rule(True, "c", 5, 0),
    rule(True, "c", 1, 5),
    rule(True, "c", 1, 9),
    rule(True, "c", 136, None),
    rule(True, "c", 5, 2),
    rule(True, "c", 10, 200),
]

LDX, AND, RSH, MOVI, MOVR, JNEI, JNER, EXIT = 0x61, 0x54, 0x74, 0xB4, 0xBC, 0x55, 0x5D, 0x95

PROLOGUE = [
    (LDX, 2, 1, 0, 0),
    (AND, 2, 0, 0, 65535),
    (LDX, 3, 1, 0, 0),
    (RSH, 3, 0, 0, 16),
    (LDX, 4, 1, 4, 0),
    (LDX, 5, 1, 8, 0),
]


def ret(value: int) -> list[tuple[int, int, int, int, int]]:
    return [(MOVI, 0, 0, 0, value), (EXIT, 0, 0, 0, 0)]


def mknod_wildcard(dev_type: int) -> list[tuple[int, int, int, int, int]]:
    # (type, *, *, m, allow): 6 instructions, jumps land on the next block
    return [
        (JNEI, 2, 0, 5, dev_type),
        (MOVR, 1, 3, 0, 0),
        (AND, 1, 0, 0, 1),
        (JNER, 1, 3, 2, 0),
        *ret(1),
    ]


def char(major: int, minor: int) -> list[tuple[int, int, int, int, int]]:
    return [(JNEI, 2, 0, 4, 2), (JNEI, 4, 0, 3, major), (JNEI, 5, 0, 2, minor), *ret(1)]


def test_program_builtin_allow_list() -> None:
    expected = [
        *PROLOGUE,
        *mknod_wildcard(1),  # b *:* m
        *mknod_wildcard(2),  # c *:* m
        *char(1, 3),
        *char(1, 5),
        *char(1, 7),
        *char(1, 8),
        *char(1, 9),
        *char(5, 0),
        *char(5, 2),
        *char(10, 200),
        (JNEI, 2, 0, 3, 2),  # c 136:* rwm
        (JNEI, 4, 0, 2, 136),
        *ret(1),
        *ret(0),
    ]
    assert len(expected) == 64  # as in runc's listing
    assert program_insns(BUILTIN) == expected
    assert decode(compile_program(BUILTIN)) == expected


def test_program_nil_bytes() -> None:
    # hand-encoded from the eBPF ISA: opcode, dst|src<<4, off (le16), imm (le32)
    expected = bytes.fromhex(
        "6112000000000000"
        "54020000ffff0000"
        "6113000000000000"
        "7403000010000000"
        "6114040000000000"
        "6115080000000000"
        "b400000000000000"
        "9500000000000000"
    )
    assert compile_program([]) == expected


def test_program_privileged() -> None:
    assert program_insns([rule(True)]) == [*PROLOGUE, *ret(1)]


def test_program_privileged_except_single_device() -> None:
    rules = [rule(True), rule(False, "b", 8, 0)]
    assert program_insns(rules) == [
        *PROLOGUE,
        (JNEI, 2, 0, 4, 1),
        (JNEI, 4, 0, 3, 8),
        (JNEI, 5, 0, 2, 0),
        *ret(0),
        *ret(1),
    ]


def test_program_weird() -> None:
    # runc: 8:1 ends up allowed (the "a" rule resets), 8:2 is denied
    rules = [rule(False, "b", 8, 1), rule(True), rule(False, "b", 8, 2)]
    assert program_insns(rules) == [
        *PROLOGUE,
        (JNEI, 2, 0, 4, 1),
        (JNEI, 4, 0, 3, 8),
        (JNEI, 5, 0, 2, 2),
        *ret(0),
        *ret(1),
    ]


def test_canonical_rules_merge_and_remove() -> None:
    rules = [
        rule(False),
        rule(True, "c", 1, 3, "r"),
        rule(True, "c", 1, 3, "w"),
        rule(True, "c", 1, 5, "rwm"),
        rule(False, "c", 1, 5, "w"),
        rule(True, "c", 1, 9, "rw"),
        rule(False, "c", 1, 9, "rw"),
    ]
    assert canonical_rules(rules) == [
        DeviceRule("a", WILDCARD, WILDCARD, "rwm", False),
        DeviceRule("c", 1, 3, "rw", True),
        DeviceRule("c", 1, 5, "rm", True),
    ]


def test_punching_a_hole_in_a_wildcard_is_refused() -> None:
    with pytest.raises(CgroupInvalid, match="punch a hole"):
        canonical_rules([rule(False), rule(True, "c", None, None), rule(False, "c", 1, 3)])


def test_v1_writes() -> None:
    rules = [rule(False), rule(True, "c", 1, 3, "rwm"), rule(True, "c", 136, None, "rw")]
    assert v1_writes(rules) == [
        ("devices.deny", "a"),
        ("devices.allow", "c 1:3 rwm"),
        ("devices.allow", "c 136:* rw"),
    ]
    assert v1_writes([rule(True), rule(False, "b", 8, 0, "mwr")]) == [
        ("devices.allow", "a"),
        ("devices.deny", "b 8:0 rwm"),
    ]
    # no rules at all: deny everything, as an empty runc rule set does
    assert v1_writes([]) == [("devices.deny", "a")]


def test_v1_writes_repeated_gives_the_same_fresh_list() -> None:
    """The same rules again (every container of a daemon): same writes, and a list
    the caller may change without changing the next answer."""
    rules = [rule(False), rule(True, "c", 1, 3, "rwm")]
    first = v1_writes(rules)
    first.append(("devices.allow", "a"))
    assert v1_writes(rules) == [("devices.deny", "a"), ("devices.allow", "c 1:3 rwm")]
    # equal-looking rules that differ in one field are not confused
    assert v1_writes([rule(False), rule(True, "c", 1, 3, "r")]) == [
        ("devices.deny", "a"),
        ("devices.allow", "c 1:3 r"),
    ]


@pytest.mark.parametrize(
    ("bad", "what"),
    [
        (rule(True, "x", 1, 3), "type"),
        (rule(True, "c", 1, 3, "rwx"), "access"),
        (rule(True, "c", 1, 3, ""), "access"),
        (rule(True, "c", -5, 3), "major"),
        (rule(True, "c", 1, 1 << 32), "minor"),
    ],
)
def test_from_oci_invalid(bad: LinuxDeviceCgroup, what: str) -> None:
    with pytest.raises(CgroupInvalid, match=what):
        from_oci([bad])


def test_from_oci_defaults() -> None:
    assert from_oci([LinuxDeviceCgroup(allow=True)]) == [
        DeviceRule("a", WILDCARD, WILDCARD, "rwm", True)
    ]
    assert from_oci([rule(True, "c", -1, 3, "mr")]) == [DeviceRule("c", WILDCARD, 3, "rm", True)]
