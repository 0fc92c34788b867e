"""The attached side of run/start -a/attach/exec: copy stdin to the hijacked
socket and the socket to stdout/stderr (demultiplexing docker's 8-byte frames
without a TTY), raw terminal mode, SIGWINCH → resize, detach keys."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    import select
    from collections.abc import Callable

    from portside.client.http import Socket

__all__ = ["Demuxer", "nothing", "parse_detach_keys", "raw_terminal", "stream"]

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"
_CTRL = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


def parse_detach_keys(spec: str) -> bytes:
    """docker's detach key syntax: "ctrl-p,ctrl-q", "ctrl-a,x" → bytes."""
    out = bytearray()
    for key in spec.split(","):
        if len(key) == 1:
            out.append(ord(key))
            continue
        name = key.lower()
        if name.startswith("ctrl-") and len(name) == 6:
            char = name[5]
            if "a" <= char <= "z":
                out.append(ord(char) - ord("a") + 1)
                continue
            if char in _CTRL:
                out.append(_CTRL[char])
                continue
        raise ValueError(f"Unknown character: '{key}'")
    if not out:
        raise ValueError("no detach keys given")
    return bytes(out)


class Demuxer:
    """Splits docker's multiplexed stream: frames of ``[stream, 0, 0, 0, len32]``."""

    def __init__(self, write: Callable[[int, bytes], None]) -> None:
        self.write = write
        self.buffer = b""

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= 8:
            size = int.from_bytes(self.buffer[4:8], "big")
            if len(self.buffer) < 8 + size:
                return
            kind = self.buffer[0]
            payload = self.buffer[8 : 8 + size]
            self.buffer = self.buffer[8 + size :]
            self.write(2 if kind in (2, 3) else 1, payload)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            import select

            select.select([], [fd], [])
            continue
        view = view[written:]


class raw_terminal:
    """Put the terminal on ``fd`` in raw mode; restore it on exit, always."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.saved: list | None = None

    def __enter__(self) -> raw_terminal:
        import termios
        import tty

        try:
            self.saved = termios.tcgetattr(self.fd)
        except termios.error:
            return self
        tty.setraw(self.fd, termios.TCSANOW)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            import termios

            try:
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)
            except termios.error:
                pass


class _KeyWatch:
    """docker's escape proxy: holds back what could be the start of the detach
    sequence, drops the sequence itself and notes that it was typed (``seen``)."""

    def __init__(self, keys: bytes | None) -> None:
        self.keys = keys or b""
        self.held = b""
        self.seen = False

    def feed(self, data: bytes) -> bytes:
        """The bytes to forward to the container."""
        if not self.keys:
            return data
        out = bytearray()
        for byte in data:
            if self.seen:
                break
            candidate = self.held + bytes((byte,))
            if self.keys.startswith(candidate):
                self.held = candidate
                if candidate == self.keys:
                    self.seen = True
                    self.held = b""
                continue
            out += self.held
            self.held = b""
            if self.keys[0] == byte:
                self.held = bytes((byte,))
            else:
                out.append(byte)
        return bytes(out)


def stream(
    sock: Socket,
    buffered: bytes,
    *,
    tty: bool,
    stdin_fd: int | None,
    stdout_fd: int = 1,
    stderr_fd: int = 2,
    detach_keys: bytes | None = None,
) -> bool:
    """Copy until the server closes the stream; True when the user typed the
    detach keys (the container keeps running)."""
    import select  # C: `selectors` would cost every attached command ~2 ms of imports

    def emit(kind: int, data: bytes) -> None:
        write_all(stderr_fd if kind == 2 else stdout_fd, data)

    demux = None if tty else Demuxer(emit)
    watch = _KeyWatch(detach_keys if tty and stdin_fd is not None else None)

    def output(data: bytes) -> None:
        if demux is None:
            write_all(stdout_fd, data)
        else:
            demux.feed(data)

    if buffered:
        output(buffered)
    poller = select.poll()
    sock_fd = sock.fileno()
    poller.register(sock_fd, select.POLLIN)
    if stdin_fd is not None:
        poller.register(stdin_fd, select.POLLIN)
    while True:
        for fd, _ in poller.poll():
            if fd != sock_fd:
                if not _forward_stdin(fd, sock, poller, watch):
                    return watch.seen
                if watch.seen:
                    return True
                continue
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, OSError):
                data = b""
            if not data:
                return watch.seen
            output(data)
            pending = getattr(sock, "pending", None)
            while pending is not None and pending():
                output(sock.recv(65536))


def _forward_stdin(fd: int, sock: Socket, poller: select.poll, watch: _KeyWatch) -> bool:
    """Copy what stdin has to the socket; at its end close our side for writing.
    False when the socket is gone."""
    import _socket

    try:
        data = os.read(fd, 32768)
    except OSError:
        data = b""
    if not data:
        poller.unregister(fd)
        try:
            sock.shutdown(_socket.SHUT_WR)
        except OSError:
            pass
        return True
    data = watch.feed(data)
    try:
        if data:
            sock.sendall(data)
    except OSError:
        return False
    return True


def terminal_size(fd: int = 1) -> tuple[int, int] | None:
    """(height, width) of the terminal on ``fd``, None when it is not one."""
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return None
    return size.lines, size.columns


class nothing:
    """A context manager that does nothing: ``contextlib.nullcontext`` without the
    ~4 ms that importing contextlib costs every attached command."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class ResizeMonitor:
    """Send the terminal size now and on every SIGWINCH (``resize(h, w)``)."""

    def __init__(self, resize: Callable[[int, int], None], fd: int = 1) -> None:
        self.resize = resize
        self.fd = fd
        self.previous: object = None

    def update(self, *_: object) -> None:
        size = terminal_size(self.fd)
        if size is None or size == (0, 0):
            return
        try:
            self.resize(*size)
        except Exception:
            pass

    def __enter__(self) -> ResizeMonitor:
        import _signal

        self.update()
        self.previous = _signal.signal(_signal.SIGWINCH, self.update)
        return self

    def __exit__(self, *exc: object) -> None:
        import _signal

        _signal.signal(_signal.SIGWINCH, self.previous)


class SignalProxy:
    """Forward the signals we receive to the container (docker's --sig-proxy)."""

    NAMES = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")

    def __init__(self, kill: Callable[[str], None]) -> None:
        self.kill = kill
        self.previous: dict[int, object] = {}
        self.names: dict[int, str] = {}

    def handle(self, signum: int, _frame: object) -> None:
        try:
            self.kill(self.names[signum])
        except Exception:
            pass

    def __enter__(self) -> SignalProxy:
        import _signal  # the enum-free core of `signal` (its import costs ~2 ms)

        for name in self.NAMES:
            number = getattr(_signal, name)
            self.names[number] = name
            self.previous[number] = _signal.signal(number, self.handle)
        return self

    def __exit__(self, *exc: object) -> None:
        import _signal

        for number, handler in self.previous.items():
            _signal.signal(number, handler)
