"""The OCI ``linux.seccomp`` profile → a libseccomp filter, the way runc reads it.

Translation is in two steps: :func:`plan_seccomp` validates the profile and turns
names into numbers (pure, no libseccomp), :func:`build_filter` feeds that plan to
libseccomp. Behaviour copied from runc so that Docker and Kubernetes profiles mean
the same here:

- ``SCMP_ACT_ERRNO``/``SCMP_ACT_TRACE`` without ``errnoRet`` return EPERM;
- a rule whose action equals the default action is skipped (libseccomp refuses it);
- a syscall name libseccomp does not know is skipped;
- the args of one rule are ANDed, unless an arg index repeats: then every arg
  becomes a rule of its own (ORed), as runc has always done;
- ``SECCOMP_FILTER_FLAG_TSYNC`` is accepted; LOG and SPEC_ALLOW set libseccomp's
  ``CTL_LOG`` and ``CTL_SSB`` attributes.
"""

from __future__ import annotations

import contextlib
import errno

from portside.errors import InvalidArgument, Unavailable
from portside.linux import seccomp as scmp

TYPE_CHECKING = False
if TYPE_CHECKING:
    from portside.oci.runtime_spec import LinuxSeccomp, LinuxSyscall

__all__ = [
    "ACTIONS",
    "FLAGS",
    "OPERATORS",
    "SeccompPlan",
    "build_filter",
    "compile_seccomp",
    "features",
    "load_seccomp",
    "plan_seccomp",
]

#: OCI action name → libseccomp action (ERRNO and TRACE take errnoRet in their low bits)
ACTIONS: dict[str, int] = {
    "SCMP_ACT_KILL": scmp.SCMP_ACT_KILL,
    "SCMP_ACT_KILL_THREAD": scmp.SCMP_ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": scmp.SCMP_ACT_KILL_PROCESS,
    "SCMP_ACT_TRAP": scmp.SCMP_ACT_TRAP,
    "SCMP_ACT_ERRNO": scmp.SCMP_ACT_ERRNO(0),
    "SCMP_ACT_TRACE": scmp.SCMP_ACT_TRACE(0),
    "SCMP_ACT_LOG": scmp.SCMP_ACT_LOG,
    "SCMP_ACT_ALLOW": scmp.SCMP_ACT_ALLOW,
}
#: the actions that take errnoRet, and its largest value (libseccomp rejects ERRNO >= MAX_ERRNO)
_ERRNO_MAX = {"SCMP_ACT_ERRNO": 4094, "SCMP_ACT_TRACE": 0xFFFF}

OPERATORS: dict[str, int] = {
    "SCMP_CMP_NE": scmp.SCMP_CMP_NE,
    "SCMP_CMP_LT": scmp.SCMP_CMP_LT,
    "SCMP_CMP_LE": scmp.SCMP_CMP_LE,
    "SCMP_CMP_EQ": scmp.SCMP_CMP_EQ,
    "SCMP_CMP_GE": scmp.SCMP_CMP_GE,
    "SCMP_CMP_GT": scmp.SCMP_CMP_GT,
    "SCMP_CMP_MASKED_EQ": scmp.SCMP_CMP_MASKED_EQ,
}

#: OCI flag → (libseccomp attribute, the kernel's SECCOMP_FILTER_FLAG_* bit)
FLAGS: dict[str, tuple[int, int]] = {
    "SECCOMP_FILTER_FLAG_TSYNC": (scmp.SCMP_FLTATR_CTL_TSYNC, 1),
    "SECCOMP_FILTER_FLAG_LOG": (scmp.SCMP_FLTATR_CTL_LOG, 2),
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": (scmp.SCMP_FLTATR_CTL_SSB, 4),
}

_MAX_ARGS = 6
_U64 = 1 << 64
_OPTIMIZE_ABOVE = 32  # rules; below that libseccomp's binary tree does not pay (runc's choice)

Arg = tuple[int, int, int, int]


class SeccompPlan:
    """A validated profile in libseccomp's numbers.

    ``attrs`` are (flag name, libseccomp attribute); ``rules`` are (path, action, name, args).
    """

    __slots__ = ("arches", "attrs", "default_action", "rules")

    def __init__(
        self,
        default_action: int,
        arches: list[str],
        attrs: list[tuple[str, int]],
        rules: list[tuple[str, int, str, list[Arg]]],
    ) -> None:
        self.default_action = default_action
        self.arches = arches
        self.attrs = attrs
        self.rules = rules


def _action(name: str, errno_ret: int | None, path: str) -> int:
    if name == "SCMP_ACT_NOTIFY":
        raise InvalidArgument(f"{path}: SCMP_ACT_NOTIFY is not supported yet")
    base = ACTIONS.get(name)
    if base is None:
        raise InvalidArgument(f"{path}: unknown action {name!r}")
    top = _ERRNO_MAX.get(name)
    if top is None:
        return base
    if errno_ret is None:
        errno_ret = errno.EPERM
    elif not 0 <= errno_ret <= top:
        raise InvalidArgument(f"{path}: errno {errno_ret} out of range 0..{top}")
    return base | errno_ret


def _args(call: LinuxSyscall, path: str) -> list[list[Arg]]:
    """The arg conditions of one rule, grouped into the rules libseccomp gets."""
    conds: list[Arg] = []
    for j, arg in enumerate(call.args):
        where = f"{path}.args[{j}]"
        op = OPERATORS.get(arg.op)
        if op is None:
            raise InvalidArgument(f"{where}.op: unknown operator {arg.op!r}")
        if not 0 <= arg.index < _MAX_ARGS:
            raise InvalidArgument(f"{where}.index: {arg.index} out of range 0..5")
        value_two = arg.value_two or 0
        for field, value in (("value", arg.value), ("valueTwo", value_two)):
            if not 0 <= value < _U64:
                raise InvalidArgument(f"{where}.{field}: {value} out of range for a u64")
        conds.append((arg.index, op, arg.value, value_two))
    indexes = [c[0] for c in conds]
    if len(set(indexes)) != len(indexes):
        return [[c] for c in conds]
    return [conds]


def plan_seccomp(spec: LinuxSeccomp) -> SeccompPlan:
    """Validate ``spec`` and translate its names; errors name the JSON path."""
    base = "linux.seccomp"
    if spec.listener_path:
        raise InvalidArgument(f"{base}.listenerPath: seccomp notify is not supported yet")
    default = _action(spec.default_action, spec.default_errno_ret, f"{base}.defaultAction")
    for i, arch in enumerate(spec.architectures):
        if arch not in scmp.ARCHES:
            raise InvalidArgument(f"{base}.architectures[{i}]: unknown architecture {arch!r}")
    attrs: list[tuple[str, int]] = []
    for i, flag in enumerate(spec.flags):
        if flag not in FLAGS:
            raise InvalidArgument(f"{base}.flags[{i}]: unknown flag {flag!r}")
        if (flag, FLAGS[flag][0]) not in attrs:
            attrs.append((flag, FLAGS[flag][0]))
    rules: list[tuple[str, int, str, list[Arg]]] = []
    for i, call in enumerate(spec.syscalls):
        path = f"{base}.syscalls[{i}]"
        action = _action(call.action, call.errno_ret, f"{path}.action")
        groups = _args(call, path)
        for j, name in enumerate(call.names):
            if not name:
                raise InvalidArgument(f"{path}.names[{j}]: empty syscall name")
        if action == default:
            continue
        rules.extend((path, action, name, group) for name in call.names for group in groups)
    return SeccompPlan(default, list(spec.architectures), attrs, rules)


def build_filter(spec: LinuxSeccomp) -> scmp.SeccompFilter:
    """A libseccomp filter for ``spec``; the caller releases it (it is a context manager)."""
    plan = plan_seccomp(spec)
    filt = scmp.SeccompFilter(plan.default_action)
    try:
        for i, arch in enumerate(plan.arches):
            try:
                filt.add_arch(arch)
            except InvalidArgument as exc:
                msg = f"linux.seccomp.architectures[{i}]: {arch} is not supported by libseccomp"
                raise InvalidArgument(f"{msg} {scmp.library_version()}") from exc
        for flag, attr in plan.attrs:
            try:
                filt.set_flag(attr, 1)
            except (InvalidArgument, Unavailable) as exc:
                raise Unavailable(f"linux.seccomp.flags: {flag} is not supported here") from exc
        added = 0
        for path, action, name, args in plan.rules:
            try:
                added += filt.add_rule(action, name, args)
            except InvalidArgument as exc:
                raise InvalidArgument(f"{path}: {str(exc).removeprefix('seccomp: ')}") from exc
        if added > _OPTIMIZE_ABOVE:
            # an older libseccomp lacks the binary tree: the linear filter is as correct
            with contextlib.suppress(InvalidArgument, Unavailable):
                filt.set_flag(scmp.SCMP_FLTATR_CTL_OPTIMIZE, 2)
    except BaseException:
        filt.release()
        raise
    return filt


def compile_seccomp(spec: LinuxSeccomp) -> bytes:
    """The BPF program of ``spec``: checks a profile early, in the parent."""
    with build_filter(spec) as filt:
        return filt.export_bpf()


_COMPILED: dict[str, scmp.BpfProgram] = {}  # profile JSON -> program and flags
_COMPILED_LIMIT = 16
_RECORDS: list[tuple[LinuxSeccomp, scmp.BpfProgram]] = []  # newest last


def compile_profile(spec: LinuxSeccomp) -> scmp.BpfProgram:
    """The BPF program of ``spec`` with the seccomp(2) flags to load it with.

    The parent compiles (libseccomp is a host library); the container's init
    loads it with :meth:`portside.linux.seccomp.BpfProgram.load` after pivot_root,
    where libseccomp is out of sight. Programs are remembered by the profile's JSON
    (~0.2 ms to make) for the life of the process: libseccomp takes ~35 ms for a
    full profile, and a long-lived caller (the engine's monitor) compiles the same
    one for nearly every container. A bad profile raises and is not remembered."""
    from portside.oci import fastjson

    for known, program in _RECORDS:  # records parse_spec shares: no dumps needed
        if known is spec:
            return program
    key = fastjson.dumps(spec.to_json())
    hit = _COMPILED.get(key)
    if hit is not None:
        _remember(spec, hit)
        return hit
    plan = plan_seccomp(spec)
    flags = 0
    for name, _attr in plan.attrs:
        flags |= scmp.FILTER_FLAGS.get(name, 0)
    compiled = scmp.BpfProgram(compile_seccomp(spec), flags)
    # libseccomp built the filter in ~1 MiB of small allocations, now free: give them
    # back, or the monitor (which forks every container's init) keeps them resident
    from portside.linux._libc import release_free_memory

    release_free_memory()
    if len(_COMPILED) >= _COMPILED_LIMIT:
        _COMPILED.pop(next(iter(_COMPILED)))
    _COMPILED[key] = compiled
    _remember(spec, compiled)
    return compiled


def _remember(spec: LinuxSeccomp, program: scmp.BpfProgram) -> None:
    """Keep ``program`` under the identity of ``spec`` when that identity stands for its
    content (a record parse_spec shares); any other record may be changed later."""
    from portside.oci.runtime_spec import shared_seccomp

    if not shared_seccomp(spec):
        return
    _RECORDS.append((spec, program))
    del _RECORDS[:-_COMPILED_LIMIT]


def load_seccomp(spec: LinuxSeccomp) -> None:
    """Build ``spec`` and load it into the calling process (right before execve)."""
    with build_filter(spec) as filt:
        filt.load()


def _flag_supported(kernel_flag: int) -> bool:
    """Whether the kernel knows ``SECCOMP_FILTER_FLAG_*``: EFAULT (not EINVAL) on a NULL prog."""
    from portside.linux._libc import syscall

    try:
        syscall("seccomp", 1, kernel_flag, None)  # SECCOMP_SET_MODE_FILTER
    except OSError as exc:
        return exc.errno == errno.EFAULT
    return False  # pragma: no cover - a NULL program cannot load


def features() -> dict[str, object]:
    """``linux.seccomp`` of runc's ``features`` output."""
    try:
        archs = sorted(a for a in scmp.ARCHES if scmp.arch_token(a) is not None)
    except Unavailable:
        return {"enabled": False}
    return {
        "enabled": True,
        "actions": sorted(ACTIONS),
        "operators": sorted(OPERATORS),
        "archs": archs,
        "knownFlags": list(FLAGS),
        "supportedFlags": [
            f for f, (_, kflag) in FLAGS.items() if kflag == 1 or _flag_supported(kflag)
        ],
    }
