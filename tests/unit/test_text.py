"""portside.text: the digit check every parser of outside input uses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portside.text import is_number


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", True),
        ("65535", True),
        ("007", True),
        ("", False),
        ("-1", False),
        ("+1", False),
        (" 1", False),
        ("1.0", False),
        ("²", False),  # isdigit() says yes; int() refuses it
        ("٣", False),  # isdigit() says yes; int() reads 3
        ("\uff11\uff12", False),  # fullwidth digits: int() reads 12
    ],
)
def test_only_ascii_digits_are_a_number(text: str, expected: bool) -> None:
    assert is_number(text) is expected


@given(st.text(max_size=8))
def test_a_number_is_what_int_reads_back_unchanged(text: str) -> None:
    if is_number(text):
        assert str(int(text)).zfill(len(text)) == text
