"""cgroup v2 device control: an eBPF ``BPF_PROG_TYPE_CGROUP_DEVICE`` program.

:func:`compile_program` hand-assembles the program runc's ``devicefilter`` builds
(after crun's ``ebpf.c``) from the canonical rules of
:mod:`portside.runtime.cgroups.devices`: a prologue loads the request into
registers (r2 type, r3 access, r4 major, r5 minor), then one block per exception
returns its verdict when the request matches, and the last block returns the
default verdict. :func:`install` loads it with ``bpf(2)`` and attaches it to the
cgroup directory with ``BPF_F_ALLOW_MULTI``, then detaches the programs it replaces.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

from portside.linux import _libc
from portside.runtime.cgroups.base import (
    CgroupInternal,
    CgroupInvalid,
    CgroupPermission,
    CgroupUnavailable,
)
from portside.runtime.cgroups.devices import WILDCARD, canonical_rules

TYPE_CHECKING = False
if TYPE_CHECKING:
    from portside.oci.runtime_spec import LinuxDeviceCgroup
    from portside.runtime.cgroups.devices import DeviceRule

__all__ = ["compile_program", "decode", "install", "rule_block"]

# bpf(2) commands, program and attach types, flags (linux/bpf.h)
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2

# struct bpf_cgroup_dev_ctx encodings
_DEV_TYPE = {"b": 1, "c": 2}  # BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR
_ACC = {"m": 1, "r": 2, "w": 4}  # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE

# opcodes: class | op | source
_LDX_MEM_W = 0x61  # BPF_LDX | BPF_MEM | BPF_W
_AND32_IMM = 0x54  # BPF_ALU | BPF_AND | BPF_K
_RSH32_IMM = 0x74  # BPF_ALU | BPF_RSH | BPF_K
_MOV32_IMM = 0xB4  # BPF_ALU | BPF_MOV | BPF_K
_MOV32_REG = 0xBC  # BPF_ALU | BPF_MOV | BPF_X
_JNE_IMM = 0x55  # BPF_JMP | BPF_JNE | BPF_K
_JNE_REG = 0x5D  # BPF_JMP | BPF_JNE | BPF_X
_EXIT = 0x95  # BPF_JMP | BPF_EXIT

_INSN = struct.Struct("<BBhi")
LICENSE = b"Apache\0"

#: an instruction before encoding: (opcode, dst, src, off, imm)
Insn = tuple[int, int, int, int, int]

_PROLOGUE: list[Insn] = [
    (_LDX_MEM_W, 2, 1, 0, 0),  # r2 = ctx->access_type
    (_AND32_IMM, 2, 0, 0, 0xFFFF),  # r2 &= 0xffff: device type
    (_LDX_MEM_W, 3, 1, 0, 0),  # r3 = ctx->access_type
    (_RSH32_IMM, 3, 0, 0, 16),  # r3 >>= 16: access
    (_LDX_MEM_W, 4, 1, 4, 0),  # r4 = ctx->major
    (_LDX_MEM_W, 5, 1, 8, 0),  # r5 = ctx->minor
]


def rule_block(rule: DeviceRule) -> list[Insn]:
    """The instructions returning ``rule.allow`` when a request matches ``rule``.

    Every conditional jump skips to the end of the block (the next rule).
    """
    if rule.type not in _DEV_TYPE:
        raise CgroupInvalid(f"device rule {rule.cgroup_string()!r}: no type in a bpf block")
    body: list[tuple[int, int, int, int]] = [(_JNE_IMM, 2, 0, _DEV_TYPE[rule.type])]
    access = sum(_ACC[c] for c in set(rule.access))
    if access != 7:
        body += [(_MOV32_REG, 1, 3, 0), (_AND32_IMM, 1, 0, access), (_JNE_REG, 1, 3, 0)]
    for reg, number in ((4, rule.major), (5, rule.minor)):
        if number != WILDCARD:
            if number >= 1 << 31:
                raise CgroupInvalid(f"device rule {rule.cgroup_string()!r}: number too large")
            body.append((_JNE_IMM, reg, 0, number))
    body += [(_MOV32_IMM, 0, 0, int(rule.allow)), (_EXIT, 0, 0, 0)]
    out: list[Insn] = []
    for i, (code, dst, src, imm) in enumerate(body):
        off = len(body) - i - 1 if code in (_JNE_IMM, _JNE_REG) else 0
        out.append((code, dst, src, off, imm))
    return out


def program_insns(devices: list[LinuxDeviceCgroup]) -> list[Insn]:
    """The program as instruction tuples (see :func:`compile_program`)."""
    rules = canonical_rules(devices)
    insns = list(_PROLOGUE)
    for rule in rules[1:]:
        insns += rule_block(rule)
    insns += [(_MOV32_IMM, 0, 0, 0, int(rules[0].allow)), (_EXIT, 0, 0, 0, 0)]
    return insns


def compile_program(devices: list[LinuxDeviceCgroup]) -> bytes:
    """The eBPF program for ``devices``, as the bytes ``BPF_PROG_LOAD`` takes."""
    return b"".join(
        _INSN.pack(code, dst | (src << 4), off, imm)
        for code, dst, src, off, imm in program_insns(devices)
    )


def decode(program: bytes) -> list[Insn]:
    """The instruction tuples of encoded ``program`` (for tests and debugging)."""
    out: list[Insn] = []
    for code, regs, off, imm in _INSN.iter_unpack(program):
        out.append((code, regs & 0xF, regs >> 4, off, imm))
    return out


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_char], what: str) -> int:
    try:
        return _libc.syscall("bpf", ctypes.c_int(cmd), attr, ctypes.c_uint(len(attr)))
    except OSError as exc:
        message = f"{what}: {os.strerror(exc.errno) if exc.errno else exc}"
        if exc.errno in (errno.EPERM, errno.EACCES):
            raise CgroupPermission(message, exc.errno) from exc
        if exc.errno in (errno.ENOSYS, errno.EOPNOTSUPP):
            raise CgroupUnavailable(message, exc.errno) from exc
        raise CgroupInternal(message, exc.errno) from exc


def load(program: bytes) -> int:
    """Load ``program`` as a cgroup device program; return its fd."""
    insns = ctypes.create_string_buffer(program, len(program))
    lic = ctypes.create_string_buffer(LICENSE, len(LICENSE))
    log = ctypes.create_string_buffer(65536)
    attr = ctypes.create_string_buffer(72)
    struct.pack_into(
        "<IIQQIIQ",
        attr,
        0,
        BPF_PROG_TYPE_CGROUP_DEVICE,
        len(program) // 8,
        ctypes.addressof(insns),
        ctypes.addressof(lic),
        1,  # log_level
        len(log),
        ctypes.addressof(log),
    )
    try:
        return _bpf(BPF_PROG_LOAD, attr, "bpf prog load (device filter)")
    except CgroupInternal as exc:
        verifier = log.value.decode(errors="replace").strip()
        if verifier:
            raise CgroupInternal(f"{exc}: {verifier[-500:]}", exc.errno) from exc
        raise


def _attached(dirfd: int, path: str) -> list[int]:
    """IDs of the device programs attached to the cgroup at ``dirfd``."""
    ids = (ctypes.c_uint32 * 64)()
    attr = ctypes.create_string_buffer(40)
    struct.pack_into("<IIIIQI", attr, 0, dirfd, BPF_CGROUP_DEVICE, 0, 0, ctypes.addressof(ids), 64)
    _bpf(BPF_PROG_QUERY, attr, f"bpf prog query {path}")
    (count,) = struct.unpack_from("<I", attr, 24)
    return list(ids[: min(count, 64)])


def _attach_cmd(cmd: int, dirfd: int, prog_fd: int, flags: int, what: str) -> None:
    attr = ctypes.create_string_buffer(20)
    struct.pack_into("<IIII", attr, 0, dirfd, prog_fd, BPF_CGROUP_DEVICE, flags)
    _bpf(cmd, attr, what)


def _detach_id(dirfd: int, prog_id: int, path: str) -> None:
    attr = ctypes.create_string_buffer(16)
    struct.pack_into("<I", attr, 0, prog_id)
    try:
        fd = _bpf(BPF_PROG_GET_FD_BY_ID, attr, f"bpf prog get fd {prog_id}")
    except CgroupInternal as exc:
        if exc.errno == errno.ENOENT:  # gone already
            return
        raise
    try:
        _attach_cmd(BPF_PROG_DETACH, dirfd, fd, 0, f"bpf prog detach {path}")
    finally:
        os.close(fd)


def install(directory: str, devices: list[LinuxDeviceCgroup]) -> None:
    """Attach the program for ``devices`` to the cgroup2 ``directory``, replacing ours.

    The new program is attached before the old ones are detached, so the cgroup is
    never left without a filter.
    """
    program = compile_program(devices)
    try:
        dirfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise CgroupInternal(f"open {directory}: {exc.strerror}", exc.errno) from exc
    try:
        try:
            old = _attached(dirfd, directory)
        except CgroupInternal:
            old = []
        prog_fd = load(program)
        try:
            _attach_cmd(
                BPF_PROG_ATTACH, dirfd, prog_fd, BPF_F_ALLOW_MULTI, f"bpf prog attach {directory}"
            )
        finally:
            os.close(prog_fd)
        for prog_id in old:
            _detach_id(dirfd, prog_id, directory)
    finally:
        os.close(dirfd)
