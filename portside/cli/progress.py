"""Progress output: lines on stderr for load, save, import and export — drawn only
when stderr is a terminal, silent otherwise (as docker) — and docker's display of a
pull's or push's JSON message stream (:func:`display_json_messages`)."""

from __future__ import annotations

import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any, TextIO

__all__ = ["Progress", "StreamError", "display_json_messages", "progress_bar", "show_json_messages"]

#: the width docker assumes when the output's terminal size is unknown
DEFAULT_WIDTH = 200


class Progress:
    """``label [=====>     ] 12.3MB/45.6MB`` redrawn in place, at most 10 times a second."""

    def __init__(self, label: str, total: int = 0, *, stream: object = None) -> None:
        self.label = label
        self.total = total
        self.current = 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.last = 0.0

    def line(self) -> str:
        from portside.cli.formatting import human_size

        if self.total > 0:
            width = 50
            filled = min(width, int(width * self.current / self.total))
            bar = "=" * filled + (">" if filled < width else "") + " " * (width - filled - 1)
            return (
                f"{self.label} [{bar[:width]}] {human_size(self.current)}/{human_size(self.total)}"
            )
        return f"{self.label} {human_size(self.current)}"

    def advance(self, count: int) -> None:
        self.current += count
        now = time.monotonic()
        if self.enabled and now - self.last >= 0.1:
            self.last = now
            self.stream.write("\r\033[K" + self.line())  # type: ignore[attr-defined]
            self.stream.flush()  # type: ignore[attr-defined]

    def done(self) -> None:
        if self.enabled and self.current:
            self.stream.write("\r\033[K" + self.line() + "\n")  # type: ignore[attr-defined]
            self.stream.flush()  # type: ignore[attr-defined]


def show_json_messages(messages: object, out: object, err: object) -> tuple[list[str], str]:
    """Docker's JSON message stream (load, import): print ``stream`` text to ``out``,
    progress to ``err`` when it is a terminal; (the "status" texts, first error)."""
    statuses: list[str] = []
    error = ""
    tty = bool(getattr(err, "isatty", lambda: False)())
    for message in messages:  # type: ignore[attr-defined]
        if not isinstance(message, dict):
            continue
        if message.get("error") or message.get("errorDetail"):
            error = message.get("error") or (message.get("errorDetail") or {}).get("message", "")
            break
        if "stream" in message:
            out.write(message["stream"])  # type: ignore[attr-defined]
        elif message.get("progressDetail") and tty:
            detail = message["progressDetail"]
            bar = Progress(message.get("status", ""), detail.get("total", 0), stream=err)
            bar.current = detail.get("current", 0)
            err.write(
                "\r\033[K"
                + (
                    (
                        message.get("progress")  # type: ignore[attr-defined]
                        and f"{message.get('status', '')} {message['progress']}"
                    )
                    or bar.line()
                )
            )
        elif "status" in message:
            statuses.append(message["status"])
    if tty:
        err.write("\r\033[K")  # type: ignore[attr-defined]
    return statuses, error


class StreamError(Exception):
    """The daemon reported an error inside a JSON message stream (after it had
    started answering): docker prints ``message`` alone, without "Error response
    from daemon"."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def progress_bar(detail: dict, width: int = DEFAULT_WIDTH) -> str:
    """moby's ``JSONProgress.String()``: ``[===>   ]  1.2MB/3.4MB``, the bar only on
    a terminal wider than 110 columns."""
    from portside.cli.formatting import human_size

    current = int(detail.get("current") or 0)
    total = int(detail.get("total") or 0)
    if current <= 0 and total <= 0:
        return ""
    if total <= 0:
        return f"{human_size(current, 4):>8}"
    steps = min(int(current / total * 100) // 2, 50)
    box = f"[{'=' * steps}>{' ' * max(0, 50 - steps)}] " if width > 110 else ""
    numbers = f"{human_size(current, 4):>8}"
    if current <= total:
        numbers += f"/{human_size(total, 4)}"
    return box + numbers


def _width(out: Any) -> int:
    import os

    try:
        return os.get_terminal_size(out.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return DEFAULT_WIDTH


def _display(message: dict, out: TextIO, tty: bool, width: int) -> None:
    """moby's ``JSONMessage.Display`` of one message (errors handled by the caller)."""
    detail = message.get("progressDetail")
    has_progress = isinstance(detail, dict)
    bar = progress_bar(detail, width) if has_progress else ""  # type: ignore[arg-type]
    status = str(message.get("status") or "")
    endl = ""
    if tty and not message.get("stream") and has_progress:
        out.write("\x1b[2K\r")
        endl = "\r"
    elif has_progress and bar:
        return  # no progress bars without a terminal
    if message.get("id"):
        out.write(f"{message['id']}: ")
    if message.get("from"):
        out.write(f"(from {message['from']}) ")
    if has_progress and tty:
        out.write(f"{status} {bar}{endl}")
    elif message.get("progress"):
        out.write(f"{status} {message['progress']}{endl}")
    elif message.get("stream"):
        out.write(f"{message['stream']}{endl}")
    else:
        out.write(f"{status}{endl}\n")


def _error_of(message: dict) -> str | None:
    detail = message.get("errorDetail")
    if isinstance(detail, dict) and detail:
        return str(detail.get("message") or "")
    if message.get("error"):
        return str(message["error"])
    return None


def display_json_messages(
    messages: Iterable[object],
    out: TextIO | None,
    *,
    tty: bool | None = None,
    aux: Callable[[Any], None] | None = None,
) -> None:
    """docker's ``DisplayJSONMessagesStream``: each message printed to ``out``
    (``None``: nowhere, ``-q``). On a terminal the lines of a layer (messages with an
    ``id`` and progress) are redrawn in place with cursor moves; otherwise the
    progress bars are left out. ``aux`` messages go to ``aux``. An error message
    raises :class:`StreamError`."""
    if tty is None:
        tty = out is not None and bool(getattr(out, "isatty", lambda: False)())
    width = _width(out) if tty else DEFAULT_WIDTH
    ids: dict[str, int] = {}
    for message in messages:
        if not isinstance(message, dict):
            continue
        if message.get("aux") is not None:
            if aux is not None:
                aux(message["aux"])
            continue
        error = _error_of(message)
        if error is not None:
            raise StreamError(error)
        if out is None:
            continue
        ident = str(message.get("id") or "")
        diff = 0
        if ident and (isinstance(message.get("progressDetail"), dict) or message.get("progress")):
            line = ids.get(ident)
            if line is None:
                line = ids[ident] = len(ids)
                if tty:
                    out.write("\n")
            diff = len(ids) - line
            if tty and diff:
                out.write(f"\x1b[{diff}A")
        else:
            ids = {}  # a line outside the table: earlier ids are not redrawn any more
        _display(message, out, tty, width)
        if ident and tty and diff:
            out.write(f"\x1b[{diff}B")
        out.flush()
