"""Progress lines on stderr for load, save, import and export — drawn only when
stderr is a terminal, silent otherwise (as docker)."""

from __future__ import annotations

import sys
import time

__all__ = ["Progress", "show_json_messages"]


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
