"""Small text checks that every layer shares (stdlib only, a leaf like ``errors``)."""

from __future__ import annotations

__all__ = ["is_number"]


def is_number(text: str) -> bool:
    """True for a non-empty run of ASCII digits, what ``int()`` reads as a plain number.

    ``str.isdigit`` also says yes to ``"²"``, which ``int()`` refuses (a crash where a
    clear error was due), and to ``"٣"``, which it reads as 3 (a value Docker refuses)."""
    return text.isascii() and text.isdigit()
