"""fastjson must read and write exactly what the json module does."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portside.oci import fastjson

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


@given(json_values)
def test_dumps_matches_json(value: object) -> None:
    assert fastjson.dumps(value) == json.dumps(value)
    assert fastjson.dumps(value, indent=2) == json.dumps(value, indent=2)


@given(json_values, st.sampled_from(["", " ", "\n", "\t\r\n "]))
def test_loads_round_trips(value: object, ws: str) -> None:
    assert fastjson.loads(ws + json.dumps(value) + ws) == value
    assert fastjson.loads((json.dumps(value)).encode()) == value


@given(st.text(max_size=40))
def test_loads_accepts_what_json_accepts(text: str) -> None:
    try:
        expected = json.loads(text)
    except ValueError:
        with pytest.raises(fastjson.JSONError):
            fastjson.loads(text)
        return
    got = fastjson.loads(text)
    if isinstance(expected, float) and math.isnan(expected):
        assert isinstance(got, float) and math.isnan(got)
    else:
        assert got == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expecting a value at character 0"),
        ("[1,]", "expecting a value at character 3"),
        ('{"a": 1} x', "extra data at character 9"),
        ('{"a"', "Expecting ':' delimiter"),
    ],
)
def test_errors_give_the_position(text: str, message: str) -> None:
    with pytest.raises(fastjson.JSONError, match=message):
        fastjson.loads(text)


def test_unserialisable_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="set is not JSON serializable"):
        fastjson.dumps({"a": {1, 2}})


def test_errors_inside_strings_and_objects_in_a_fresh_interpreter() -> None:
    # _json needs json.decoder imported to raise its error; in the runtime's
    # lean interpreter it is not
    import os
    import subprocess
    import sys

    import portside

    top = os.path.dirname(os.path.dirname(os.path.abspath(portside.__file__)))
    code = (
        f"import sys; sys.path.insert(0, {top!r});"
        "from portside.oci import fastjson\n"
        "for bad in ['{not json', '\"\\\\x\"', '{\"a\" 1}']:\n"
        "    try: fastjson.loads(bad)\n"
        "    except fastjson.JSONError as e: print('ok', e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.count("ok ") == 3, out.stdout + out.stderr
