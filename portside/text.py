"""Small text checks that every layer shares (stdlib only, a leaf like ``errors``)."""

from __future__ import annotations

__all__ = ["ASCII_ALNUM", "is_number"]

#: ASCII letters and digits: with a few punctuation marks, the alphabet of IDs and names
ASCII_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def is_number(text: str) -> bool:
    """True for a non-empty run of ASCII digits, what ``int()`` reads as a plain number.

    ``str.isdigit`` also says yes to ``"²"``, which ``int()`` refuses (a crash where a
    clear error was due), and to ``"٣"``, which it reads as 3 (a value Docker refuses)."""
    return text.isascii() and text.isdigit()
