"""A thin typed wrapper over libseccomp (``libseccomp.so.2``) through ctypes.

libseccomp compiles rules to BPF correctly for every architecture, so Portside
does not hand-write filters. The library is loaded at first use: importing this
module costs nothing, and a host without libseccomp fails only when a filter is
actually built (:class:`~portside.errors.Unavailable`).

Usage::

    with SeccompFilter(SCMP_ACT_ALLOW) as f:
        f.add_rule(SCMP_ACT_ERRNO(errno.EPERM), "mkdir", [])
        f.load()
"""

from __future__ import annotations

import errno
import os

from portside.errors import Internal, InvalidArgument, PermissionDenied, Unavailable

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ctypes
    from types import TracebackType

__all__ = [
    "ARCHES",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_LE",
    "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_NE",
    "SCMP_FLTATR_ACT_BADARCH",
    "SCMP_FLTATR_CTL_LOG",
    "SCMP_FLTATR_CTL_NNP",
    "SCMP_FLTATR_CTL_OPTIMIZE",
    "SCMP_FLTATR_CTL_SSB",
    "SCMP_FLTATR_CTL_TSYNC",
    "BpfProgram",
    "SeccompFilter",
    "arch_token",
    "library_version",
    "resolve_syscall",
]

# actions (seccomp.h)
SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_KILL_THREAD = 0x00000000
SCMP_ACT_KILL = SCMP_ACT_KILL_THREAD
SCMP_ACT_TRAP = 0x00030000
SCMP_ACT_NOTIFY = 0x7FC00000
SCMP_ACT_LOG = 0x7FFC0000
SCMP_ACT_ALLOW = 0x7FFF0000


def SCMP_ACT_ERRNO(x: int) -> int:  # the C macro's name
    """The action that fails the syscall with errno ``x``."""
    return 0x00050000 | (x & 0xFFFF)


def SCMP_ACT_TRACE(x: int) -> int:  # the C macro's name
    """The action that notifies a ptrace tracer with message ``x``."""
    return 0x7FF00000 | (x & 0xFFFF)


# comparison operators (enum scmp_compare)
SCMP_CMP_NE = 1
SCMP_CMP_LT = 2
SCMP_CMP_LE = 3
SCMP_CMP_EQ = 4
SCMP_CMP_GE = 5
SCMP_CMP_GT = 6
SCMP_CMP_MASKED_EQ = 7

# filter attributes (enum scmp_filter_attr)
SCMP_FLTATR_ACT_DEFAULT = 1
SCMP_FLTATR_ACT_BADARCH = 2
SCMP_FLTATR_CTL_NNP = 3
SCMP_FLTATR_CTL_TSYNC = 4
SCMP_FLTATR_API_TSKIP = 5
SCMP_FLTATR_CTL_LOG = 6
SCMP_FLTATR_CTL_SSB = 7
SCMP_FLTATR_CTL_OPTIMIZE = 8

#: OCI architecture names → libseccomp's arch names
ARCHES: dict[str, str] = {
    "SCMP_ARCH_X86": "x86",
    "SCMP_ARCH_X86_64": "x86_64",
    "SCMP_ARCH_X32": "x32",
    "SCMP_ARCH_ARM": "arm",
    "SCMP_ARCH_AARCH64": "aarch64",
    "SCMP_ARCH_MIPS": "mips",
    "SCMP_ARCH_MIPS64": "mips64",
    "SCMP_ARCH_MIPS64N32": "mips64n32",
    "SCMP_ARCH_MIPSEL": "mipsel",
    "SCMP_ARCH_MIPSEL64": "mipsel64",
    "SCMP_ARCH_MIPSEL64N32": "mipsel64n32",
    "SCMP_ARCH_PPC": "ppc",
    "SCMP_ARCH_PPC64": "ppc64",
    "SCMP_ARCH_PPC64LE": "ppc64le",
    "SCMP_ARCH_S390": "s390",
    "SCMP_ARCH_S390X": "s390x",
    "SCMP_ARCH_PARISC": "parisc",
    "SCMP_ARCH_PARISC64": "parisc64",
    "SCMP_ARCH_RISCV64": "riscv64",
    "SCMP_ARCH_LOONGARCH64": "loongarch64",
}

_NR_SCMP_ERROR = -1
_lib: ctypes.CDLL | None = None
_ArgCmp: type[ctypes.Structure] | None = None


def _load() -> ctypes.CDLL:
    """libseccomp with its prototypes declared, loaded once."""
    global _lib, _ArgCmp
    if _lib is not None:
        return _lib
    import ctypes

    try:
        lib = ctypes.CDLL("libseccomp.so.2")
    except OSError as exc:
        raise Unavailable("seccomp: libseccomp.so.2 not found; install libseccomp2") from exc

    class ArgCmp(ctypes.Structure):
        _fields_ = (
            ("arg", ctypes.c_uint),
            ("op", ctypes.c_int),
            ("datum_a", ctypes.c_uint64),
            ("datum_b", ctypes.c_uint64),
        )

    class Version(ctypes.Structure):
        _fields_ = (("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint))

    ctx, u32, i32 = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int
    protos: dict[str, tuple[object, list[object]]] = {
        "seccomp_init": (ctx, [u32]),
        "seccomp_release": (None, [ctx]),
        "seccomp_arch_add": (i32, [ctx, u32]),
        "seccomp_arch_resolve_name": (u32, [ctypes.c_char_p]),
        "seccomp_syscall_resolve_name": (i32, [ctypes.c_char_p]),
        "seccomp_rule_add_array": (i32, [ctx, u32, i32, ctypes.c_uint, ctypes.POINTER(ArgCmp)]),
        "seccomp_attr_set": (i32, [ctx, i32, u32]),
        "seccomp_export_bpf": (i32, [ctx, i32]),
        "seccomp_load": (i32, [ctx]),
        "seccomp_version": (ctypes.POINTER(Version), []),
    }
    for name, (restype, argtypes) in protos.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    _ArgCmp, _lib = ArgCmp, lib
    return lib


def library_version() -> str:
    """libseccomp's version, e.g. ``"2.5.4"``."""
    v = _load().seccomp_version().contents
    return f"{v.major}.{v.minor}.{v.micro}"


def arch_token(name: str) -> int | None:
    """libseccomp's token of an OCI arch name (``SCMP_ARCH_X86_64``); None if unsupported."""
    lib_name = ARCHES.get(name)
    if lib_name is None:
        return None
    token = _load().seccomp_arch_resolve_name(lib_name.encode())
    return token or None


def resolve_syscall(name: str) -> int | None:
    """The native number of syscall ``name`` (negative for another arch's), None if unknown."""
    nr = _load().seccomp_syscall_resolve_name(name.encode())
    return None if nr == _NR_SCMP_ERROR else nr


def _error(what: str, rc: int) -> Exception:
    err = -rc
    msg = f"seccomp: {what}: {os.strerror(err)}"
    if err in (errno.EPERM, errno.EACCES):
        return PermissionDenied(msg)
    if err in (errno.EINVAL, errno.EEXIST, errno.EDOM, errno.EFAULT):
        return InvalidArgument(msg)
    if err == errno.EOPNOTSUPP:
        return Unavailable(msg)
    return Internal(msg)


class SeccompFilter:
    """One libseccomp filter context; release it (or use ``with``) when done.

    The filter is created with ``SCMP_FLTATR_CTL_NNP`` off: the runtime decides on
    no_new_privs itself, libseccomp must not set it behind its back.
    """

    _ctx: int | None = None

    def __init__(self, default_action: int) -> None:
        lib = _load()
        ctx = lib.seccomp_init(default_action)
        if not ctx:
            raise InvalidArgument(f"seccomp: invalid default action {default_action:#x}")
        self._lib = lib
        self._ctx = ctx
        self.default_action = default_action
        self.set_flag(SCMP_FLTATR_CTL_NNP, 0)

    def _handle(self) -> int:
        if self._ctx is None:
            raise Internal("seccomp: filter used after release")
        return self._ctx

    def add_arch(self, name: str) -> None:
        """Add an architecture by OCI name (``SCMP_ARCH_X86``); the native one is implied."""
        token = arch_token(name)
        if token is None:
            raise InvalidArgument(f"seccomp: unsupported architecture {name!r}")
        rc = self._lib.seccomp_arch_add(self._handle(), token)
        if rc < 0 and rc != -errno.EEXIST:
            raise _error(f"add architecture {name}", rc)

    def add_rule(self, action: int, syscall: str, args: list[tuple[int, int, int, int]]) -> bool:
        """Add ``action`` for ``syscall`` when every (index, op, datum_a, datum_b) matches.

        A syscall name libseccomp does not know is skipped (False), as runc does.
        """
        nr = resolve_syscall(syscall)
        if nr is None:
            return False
        assert _ArgCmp is not None
        array = (_ArgCmp * max(len(args), 1))()
        for i, (index, op, datum_a, datum_b) in enumerate(args):
            array[i].arg, array[i].op = index, op
            array[i].datum_a, array[i].datum_b = datum_a, datum_b
        rc = self._lib.seccomp_rule_add_array(self._handle(), action, nr, len(args), array)
        if rc == -errno.EACCES and action == self.default_action:
            raise InvalidArgument(f"seccomp: rule for {syscall}: action is the default action")
        if rc == -errno.EEXIST:
            raise InvalidArgument(f"seccomp: rule for {syscall}: conflicts with an earlier rule")
        if rc < 0:
            raise _error(f"add rule for {syscall}", rc)
        return True

    def set_flag(self, attr: int, value: int) -> None:
        """Set a filter attribute (``SCMP_FLTATR_*``)."""
        rc = self._lib.seccomp_attr_set(self._handle(), attr, value)
        if rc < 0:
            raise _error(f"set attribute {attr} to {value}", rc)

    def export_bpf(self) -> bytes:
        """The compiled BPF program (``struct sock_filter`` array)."""
        fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
        try:
            rc = self._lib.seccomp_export_bpf(self._handle(), fd)
            if rc < 0:
                raise _error("export bpf", rc)
            size = os.lseek(fd, 0, os.SEEK_END)
            return os.pread(fd, size, 0)
        finally:
            os.close(fd)

    def load(self) -> None:
        """Load the filter into the calling process (thread, unless TSYNC is set)."""
        rc = self._lib.seccomp_load(self._handle())
        if rc < 0:
            raise _error("load filter", rc)

    def release(self) -> None:
        """Free the libseccomp context; further use raises Internal."""
        if self._ctx is not None:
            self._lib.seccomp_release(self._ctx)
            self._ctx = None

    def __enter__(self) -> SeccompFilter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


#: SECCOMP_FILTER_FLAG_* of the seccomp(2) syscall
FILTER_FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
}


_SockFprog: type[ctypes.Structure] | None = None


def _sock_fprog() -> type[ctypes.Structure]:
    """struct sock_fprog, made once."""
    global _SockFprog
    if _SockFprog is None:
        import ctypes

        class SockFprog(ctypes.Structure):
            _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_char_p))

        _SockFprog = SockFprog
    return _SockFprog


class BpfProgram:
    """A compiled filter (``export_bpf`` output) made ready to install with
    seccomp(SECCOMP_SET_MODE_FILTER). Needs no libseccomp, so a child can load a
    filter compiled by its parent after it can no longer see the host's libraries.

    Build it in the parent: the ctypes ``sock_fprog`` is made here, so the forked
    child that calls :meth:`load` only makes the syscall. Building it in the child
    allocates there, and its copy-on-write page faults cost ~2 ms a container."""

    __slots__ = ("_buf", "_prog", "_syscall", "flags", "program")

    def __init__(self, program: bytes, flags: int = 0) -> None:
        import ctypes

        from portside.linux._libc import syscall

        if len(program) % 8 or not program:
            raise InvalidArgument(f"seccomp: a BPF program of {len(program)} bytes is malformed")
        self.program, self.flags = program, flags
        self._syscall = syscall  # imported here: the child may no longer see the library
        self._buf = ctypes.create_string_buffer(program, len(program))
        self._prog = _sock_fprog()(len(program) // 8, ctypes.cast(self._buf, ctypes.c_char_p))

    def load(self) -> None:
        """Install the filter in the calling thread."""
        import ctypes

        try:
            self._syscall("seccomp", 1, ctypes.c_ulong(self.flags), ctypes.byref(self._prog))
        except OSError as exc:
            raise _error("seccomp(SET_MODE_FILTER)", -(exc.errno or 1)) from None
