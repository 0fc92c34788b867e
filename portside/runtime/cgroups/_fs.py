"""Reading and writing cgroup control files, with errors that name file and value.

Also the parsers of the common control-file formats (single values, flat keyed
``key value`` files, nested keyed ``key a=1 b=2`` lines), which are pure.
"""

from __future__ import annotations

import errno as _errno
import os
import time

from portside.runtime.cgroups.base import (
    CgroupError,
    CgroupInternal,
    CgroupInvalid,
    CgroupNotFound,
    CgroupPermission,
    CgroupUnavailable,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from portside.runtime.cgroups.base import Write

__all__ = [
    "MAX_UINT64",
    "parse_flat_keyed",
    "parse_nested_keyed",
    "parse_uint",
    "read",
    "read_flat_keyed",
    "read_int",
    "read_int_or",
    "rmdir_tree",
    "translate_oserror",
    "write",
    "write_all",
]

#: what runc reports for an unlimited value ("max", or v1's huge page-aligned number)
MAX_UINT64 = (1 << 64) - 1


def translate_oserror(exc: OSError, what: str, directory: str) -> CgroupError:
    """The cgroup error for ``exc``; ``what`` is e.g. ``write <path> = <value>``."""
    message = f"{what}: {exc.strerror or exc}"
    code = exc.errno
    if code == _errno.ENOENT:
        if not os.path.isdir(directory):
            return CgroupNotFound(f"{what}: cgroup directory {directory} does not exist", code)
        return CgroupUnavailable(f"{what}: no such control file (controller missing?)", code)
    if code in (_errno.EPERM, _errno.EACCES, _errno.EROFS):
        return CgroupPermission(message, code)
    if code in (_errno.EINVAL, _errno.ERANGE, _errno.EOVERFLOW):
        return CgroupInvalid(message, code)
    return CgroupInternal(message, code)


def mkdir(parent: str, name: str) -> str:
    """Make cgroup directory ``parent/name`` (existing is fine); return its path."""
    current = f"{parent}/{name}"
    try:
        os.mkdir(current, 0o755)
    except FileExistsError:
        pass
    except OSError as exc:
        raise translate_oserror(exc, f"mkdir {current}", parent) from exc
    return current


def write(directory: str, name: str, value: str) -> None:
    """Write ``value`` to ``directory/name`` in one ``write(2)``."""
    _, error = _write_run(directory, name, [value])
    if error is not None:
        raise error


def _write_run(directory: str, name: str, values: list[str]) -> tuple[int, CgroupError | None]:
    """Write each of ``values`` to ``directory/name`` in a ``write(2)`` of its own, on
    one open file (a control file takes one rule or value per write: devices.allow
    gets a dozen in a row). How many were written, and the error that stopped it."""
    path = f"{directory}/{name}"
    done = 0
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        try:
            for value in values:
                os.write(fd, value.encode())
                done += 1
        finally:
            os.close(fd)
    except OSError as exc:
        return done, translate_oserror(exc, f"write {path} = {values[done]}", directory)
    return done, None


def write_all(directory: str, writes: Iterable[Write], *, deferrable: Iterable[str] = ()) -> None:
    """Perform ``writes`` in order; consecutive writes to one file share its open.

    A write to a file named in ``deferrable`` that fails with EINVAL is retried once
    after all the others (runc's trick for ``cpu.cfs_period_us`` vs. the old quota).
    """
    later: list[Write] = []
    may_defer = set(deferrable)
    pending = list(writes)
    start = 0
    while start < len(pending):
        name = pending[start][0]
        end = start + 1
        while end < len(pending) and pending[end][0] == name:
            end += 1
        done, error = _write_run(directory, name, [value for _, value in pending[start:end]])
        if error is None:
            start = end
            continue
        if not isinstance(error, CgroupInvalid) or name not in may_defer:
            raise error
        later.append(pending[start + done])
        start += done + 1  # the rest of that run goes on as before
    for name, value in later:
        write(directory, name, value)


def read(directory: str, name: str) -> str:
    """The content of ``directory/name``, stripped."""
    path = f"{directory}/{name}"
    try:  # raw reads: a text-mode open() costs an fstat, an ioctl and two lseeks more
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
        finally:
            os.close(fd)
    except OSError as exc:
        raise translate_oserror(exc, f"read {path}", directory) from exc
    return b"".join(chunks).decode("utf-8", "replace").strip()


def parse_uint(text: str) -> int:
    """A control-file number; ``max`` (and v1's page-aligned "unlimited") is MAX_UINT64."""
    text = text.strip()
    if text == "max":
        return MAX_UINT64
    value = int(text)
    return MAX_UINT64 if value < 0 else value


def read_int(directory: str, name: str) -> int:
    """A single-number control file (see :func:`parse_uint`)."""
    text = read(directory, name)
    try:
        return parse_uint(text)
    except ValueError as exc:
        raise CgroupInternal(f"read {directory}/{name}: not a number: {text!r}") from exc


def read_int_or(directory: str, name: str, default: int = 0) -> int:
    """Like :func:`read_int`, but ``default`` when the file does not exist."""
    try:
        return read_int(directory, name)
    except (CgroupUnavailable, CgroupNotFound):
        return default


def parse_flat_keyed(text: str) -> dict[str, int]:
    """``key value`` lines (memory.stat, cpu.stat, memory.events); bad lines are skipped."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2:
            continue
        try:
            out[parts[0]] = parse_uint(parts[1])
        except ValueError:
            continue
    return out


def read_flat_keyed(directory: str, name: str) -> dict[str, int]:
    """:func:`parse_flat_keyed` of a file; empty when the file does not exist."""
    try:
        return parse_flat_keyed(read(directory, name))
    except (CgroupUnavailable, CgroupNotFound):
        return {}


def parse_nested_keyed(text: str) -> list[tuple[str, dict[str, str]]]:
    """``key a=1 b=2`` lines (io.stat, io.max) as (key, {a: "1", b: "2"}) in file order."""
    out: list[tuple[str, dict[str, str]]] = []
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        fields: dict[str, str] = {}
        for item in parts[1:]:
            key, sep, value = item.partition("=")
            if sep:
                fields[key] = value
        out.append((parts[0], fields))
    return out


def rmdir_tree(top: str, *, attempts: int = 12) -> None:
    """Remove ``top`` and every directory below it, deepest first; retry EBUSY briefly.

    Only ``rmdir(2)`` is used, so nothing but (cgroup) directories can be removed,
    and symlinks are never followed. A missing ``top`` is not an error.
    """
    try:  # the common case, a leaf: one rmdir, no walk of its control files
        os.rmdir(top)
        return
    except FileNotFoundError:
        return
    except OSError:
        pass  # children (EBUSY on cgroupfs, ENOTEMPTY elsewhere) or busy: walk below
    found: list[str] = []
    for dirpath, _dirnames, _files in os.walk(top, topdown=False, followlinks=False):
        found.append(dirpath)
    for path in found:
        delay = 0.005
        for attempt in range(attempts):
            try:
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno != _errno.EBUSY or attempt == attempts - 1:
                    raise translate_oserror(exc, f"rmdir {path}", path) from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
