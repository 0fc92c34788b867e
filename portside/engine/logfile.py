"""Docker's json-file log driver: the writer the monitor uses and the reader
behind ``docker logs``.

One JSON object per line of output, ``{"log":"hello\\n","stream":"stdout",
"time":"2026-11-28T03:30:19.123456789Z"}``. A line longer than 16 KiB is split
into partial entries (no trailing newline), as Docker does. With ``max-size`` the
file rotates before an entry once it has reached that size: ``<path>`` →
``<path>.1`` → … up to ``max-file`` files (with one file it is truncated).
"""

from __future__ import annotations

import json
import os
import time

from portside.errors import InvalidArgument
from portside.text import is_number

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["JsonLogWriter", "format_time", "parse_size", "parse_time", "read_logs"]

#: a line longer than this is written in pieces (Docker's copier buffer)
MAX_LINE = 16 * 1024
_STREAMS = {1: "stdout", 2: "stderr"}
_STREAM_IDS = {"stdout": 1, "stderr": 2}
#: the json-file options Docker knows (only the size ones change what is written here)
KNOWN_OPTS = frozenset(
    ("max-size", "max-file", "compress", "labels", "labels-regex", "env", "env-regex", "tag")
)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """Docker's RAMInBytes: ``"10m"``, ``"512k"``, ``"1g"``, ``"100"`` (binary units)."""
    s = text.strip().lower()
    if s.endswith("ib") or (s.endswith("b") and len(s) > 1 and s[-2] in "kmgt"):
        s = s[:-2] if s.endswith("ib") else s[:-1]
    num = s.rstrip("bkmgt")
    unit = s[len(num) :]
    try:
        value = float(num)
    except ValueError:
        value = -1.0
    if unit not in _UNITS or value < 0:
        raise InvalidArgument(f"log-opt max-size: invalid size {text!r}")
    return int(value * _UNITS[unit])


def format_time(ns: int) -> str:
    """RFC3339 with nine fraction digits, UTC (Docker's RFC3339NanoFixed)."""
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def _days_from_civil(y: int, m: int, d: int) -> int:
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def parse_time(text: str) -> int:
    """Nanoseconds since the epoch of an RFC3339(Nano) time ("...Z" or "+hh:mm")."""
    try:
        y, mo, d = int(text[0:4]), int(text[5:7]), int(text[8:10])
        h, mi, s = int(text[11:13]), int(text[14:16]), int(text[17:19])
        rest = text[19:]
        frac = 0
        if rest.startswith("."):
            end = 1
            while end < len(rest) and is_number(rest[end]):
                end += 1
            digits = rest[1:end]
            frac = int((digits + "000000000")[:9]) if digits else 0
            rest = rest[end:]
        offset = 0
        if rest not in ("Z", "z"):
            sign = 1 if rest[0] == "+" else -1
            if rest[0] not in "+-":
                raise ValueError(rest)
            offset = sign * (int(rest[1:3]) * 3600 + int(rest[4:6]) * 60)
    except (ValueError, IndexError) as exc:
        raise InvalidArgument(f"invalid log time {text!r}") from exc
    secs = _days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - offset
    return secs * 1_000_000_000 + frac


class JsonLogWriter:
    """Appends a container's output to its json-file log, line by line.

    A partial line waits (per stream) for its newline, up to :data:`MAX_LINE`
    bytes; :meth:`close` writes what is left."""

    def __init__(self, path: str, opts: dict[str, str] | None = None) -> None:
        opts = opts or {}
        for key in opts:
            if key not in KNOWN_OPTS:
                raise InvalidArgument(f"unknown log opt '{key}' for json-file log driver")
        self.path = path
        self.max_size = parse_size(opts["max-size"]) if opts.get("max-size") else -1
        try:
            self.max_file = int(opts.get("max-file") or 1)
        except ValueError as exc:
            raise InvalidArgument(f"log-opt max-file: not a number: {opts['max-file']!r}") from exc
        if self.max_file < 1:
            raise InvalidArgument(f"log-opt max-file: must be at least 1: {self.max_file}")
        if self.max_file > 1 and self.max_size < 0:
            raise InvalidArgument("log-opt max-file: needs max-size")
        self.pending: dict[int, bytes] = {}
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.size = os.fstat(self.fd).st_size

    def write(self, stream: int, data: bytes, ns: int | None = None) -> None:
        """Log ``data`` read from ``stream`` (1 stdout, 2 stderr) at time ``ns``."""
        ns = time.time_ns() if ns is None else ns
        buf = self.pending.pop(stream, b"") + data
        start = 0
        entries: list[bytes] = []
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0 or nl - start >= MAX_LINE:
                if len(buf) - start >= MAX_LINE:
                    entries.append(buf[start : start + MAX_LINE])
                    start += MAX_LINE
                    continue
                break
            entries.append(buf[start : nl + 1])
            start = nl + 1
        if start < len(buf):
            self.pending[stream] = buf[start:]
        self._emit(stream, entries, ns)

    def flush_partial(self, ns: int | None = None) -> None:
        """Write the partial lines held back (at the end of the output)."""
        ns = time.time_ns() if ns is None else ns
        for stream in list(self.pending):
            self._emit(stream, [self.pending.pop(stream)], ns)

    def _emit(self, stream: int, entries: list[bytes], ns: int) -> None:
        if not entries:
            return
        when = format_time(ns)
        name = _STREAMS.get(stream, "stdout")
        for entry in entries:
            text = entry.decode("utf-8", "replace")
            entry_ = {"log": text, "stream": name, "time": when}
            line = json.dumps(entry_, ensure_ascii=False, separators=(",", ":"))
            raw = line.encode() + b"\n"
            if 0 <= self.max_size <= self.size:
                self._rotate()
            os.write(self.fd, raw)
            self.size += len(raw)

    def _rotate(self) -> None:
        os.close(self.fd)
        self.fd = -1
        if self.max_file >= 2:
            for n in range(self.max_file - 1, 0, -1):
                src = self.path if n == 1 else f"{self.path}.{n - 1}"
                try:
                    os.replace(src, f"{self.path}.{n}")
                except FileNotFoundError:
                    continue
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        self.fd = os.open(self.path, flags, 0o640)
        self.size = 0

    def close(self) -> None:
        if self.fd >= 0:
            try:
                self.flush_partial()
            finally:
                os.close(self.fd)
                self.fd = -1


# --- reading ---------------------------------------------------------------------


def _log_files(path: str) -> list[str]:
    """The rotated files then ``path``, oldest first."""
    files = []
    n = 1
    while os.path.exists(f"{path}.{n}"):
        files.append(f"{path}.{n}")
        n += 1
    return [*reversed(files), path]


def _tail_lines(path: str, count: int, end: int = -1) -> list[bytes]:
    """The last ``count`` complete lines of ``path`` (of its first ``end`` bytes),
    reading backwards."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            end = size if end < 0 else min(end, size)
            pos, data = end, b""
            while pos > 0 and data.count(b"\n") <= count:
                step = min(65536, pos)
                pos -= step
                f.seek(pos)
                data = f.read(step) + data
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    if pos > 0:
        lines = lines[1:]  # the first piece may be cut
    lines = [line for line in lines if line]
    return lines[-count:] if count else []


def _decode(line: bytes) -> tuple[int, bytes, int] | None:
    """(stream, log bytes, time ns) of one json-file line; None if it is damaged."""
    try:
        entry = json.loads(line)
        return _STREAM_IDS[entry["stream"]], entry["log"].encode(), parse_time(entry["time"])
    except (ValueError, KeyError, TypeError, AttributeError, InvalidArgument):
        return None


class _Filter:
    def __init__(
        self, stdout: bool, stderr: bool, since: float, until: float, stamps: bool
    ) -> None:
        self.streams = {s for s, on in ((1, stdout), (2, stderr)) if on}
        self.since = int(since * 1e9) if since else 0
        self.until = int(until * 1e9) if until else 0
        self.stamps = stamps
        self.done = False

    def apply(self, line: bytes) -> tuple[int, bytes] | None:
        entry = _decode(line)
        if entry is None:
            return None
        stream, data, ns = entry
        if self.since and ns < self.since:
            return None
        if self.until and ns > self.until:
            self.done = True
            return None
        if stream not in self.streams:
            return None
        if self.stamps:
            data = format_time(ns).encode() + b" " + data
        return stream, data


def read_logs(
    path: str,
    *,
    stdout: bool = True,
    stderr: bool = True,
    since: float = 0.0,
    until: float = 0.0,
    tail: int = -1,
    follow: bool = False,
    timestamps: bool = False,
    running: Callable[[], bool] | None = None,
    poll: float = 0.1,
    heartbeat: bool = False,
) -> Iterator[tuple[int, bytes] | None]:
    """``docker logs`` over a json-file log: (stream, line) pairs, oldest first.

    ``tail`` counts entries of both streams before filtering (as Docker);
    ``since``/``until`` are Unix times (0: unbounded); ``follow`` keeps reading
    new entries (across rotations) until ``running()`` is false and the file is
    drained, or an entry is past ``until``. With ``heartbeat``, a follower yields
    ``None`` at every idle poll, so that its consumer can notice that its own
    client has gone while the container is silent."""
    filt = _Filter(stdout, stderr, since, until, timestamps)
    if tail == 0 and not follow:
        return
    if tail >= 0:
        try:
            offset = os.stat(path).st_size
        except FileNotFoundError:
            offset = 0
        lines = _tail_slice(path, tail, offset)
        for line in lines:
            got = filt.apply(line)
            if filt.done:
                return
            if got is not None:
                yield got
        if not follow:
            return
        yield from _follow(path, filt, running, poll, offset=offset, heartbeat=heartbeat)
        return
    for name in _log_files(path)[:-1]:
        try:
            with open(name, "rb") as f:
                for line in f:
                    got = filt.apply(line)
                    if filt.done:
                        return
                    if got is not None:
                        yield got
        except FileNotFoundError:
            continue
    if not follow:
        yield from _read_to_end(path, filt)
        return
    yield from _follow(path, filt, running, poll, offset=0, heartbeat=heartbeat)


def _tail_slice(path: str, count: int, offset: int) -> list[bytes]:
    """The last ``count`` lines over the rotated files and the first ``offset``
    bytes of ``path``."""
    lines: list[bytes] = []
    for name in reversed(_log_files(path)):
        if len(lines) >= count:
            break
        end = offset if name == path else -1
        lines = _tail_lines(name, count - len(lines), end) + lines
    return lines


def _read_to_end(path: str, filt: _Filter) -> Iterator[tuple[int, bytes]]:
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed below; missing is not an error)
    except FileNotFoundError:
        return
    with f:
        for line in f:
            if not line.endswith(b"\n"):
                break  # being written
            got = filt.apply(line)
            if filt.done:
                return
            if got is not None:
                yield got


def _follow(
    path: str,
    filt: _Filter,
    running: Callable[[], bool] | None,
    poll: float,
    *,
    offset: int,
    heartbeat: bool = False,
) -> Iterator[tuple[int, bytes] | None]:
    """Read ``path`` as it grows; reopen it when it is rotated or truncated."""
    f = None
    rest = b""
    try:
        while f is None:
            try:
                f = open(path, "rb")  # noqa: SIM115 (closed in finally)
            except FileNotFoundError:
                if running is not None and not running():
                    return
                time.sleep(poll)
        if offset and os.fstat(f.fileno()).st_size >= offset:
            f.seek(offset)
        while True:
            alive = running is None or running()  # sampled before the read: no lost tail
            chunk = f.read(65536)
            if chunk:
                rest += chunk
                *lines, rest = rest.split(b"\n")
                for line in lines:
                    got = filt.apply(line)
                    if filt.done:
                        return
                    if got is not None:
                        yield got
                continue
            swapped = _reopen_if_rotated(path, f)
            if swapped is not None:
                f.close()
                f, rest = swapped, b""
                continue
            if not alive:
                return
            if heartbeat:
                yield None
            time.sleep(poll)
    finally:
        if f is not None:
            f.close()


def _reopen_if_rotated(path: str, f: object) -> object | None:
    """A new file object when ``path`` is no longer the file ``f`` reads (or was
    truncated under it); None when it still is."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    mine = os.fstat(f.fileno())  # type: ignore[attr-defined]
    if st.st_ino == mine.st_ino and st.st_size >= f.tell():  # type: ignore[attr-defined]
        return None
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return None
