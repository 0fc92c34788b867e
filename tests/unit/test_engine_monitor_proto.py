"""The monitor's wire formats: control messages, Docker's stdio frames, detach
keys, errors crossing the socket."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portside.engine.monitor_proto import (
    DetachMatcher,
    MessageDecoder,
    ProtocolError,
    StreamDecoder,
    decode_error,
    encode_error,
    encode_message,
    stream_frame,
    valid_id,
)
from portside.errors import Conflict, Internal, InvalidArgument, NotFound
from portside.runtime.errors import ChildError, ContainerNotFound, InvalidState

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
messages = st.dictionaries(st.text(max_size=10), json_values, max_size=5)


def split_feed(decoder: MessageDecoder | StreamDecoder, data: bytes, cuts: list[int]) -> list:
    out: list = []
    last = 0
    for cut in [*sorted({min(c, len(data)) for c in cuts}), len(data)]:
        out += decoder.feed(data[last:cut])
        last = cut
    return out


@settings(max_examples=50)
@given(st.lists(messages, max_size=5), st.lists(st.integers(0, 2000), max_size=10))
def test_messages_survive_any_split(msgs: list[dict], cuts: list[int]) -> None:
    data = b"".join(encode_message(m) for m in msgs)
    assert split_feed(MessageDecoder(), data, cuts) == msgs


@given(
    st.lists(st.tuples(st.sampled_from([1, 2]), st.binary(max_size=300)), max_size=6),
    st.lists(st.integers(0, 2000), max_size=10),
)
def test_stream_frames_survive_any_split(frames: list[tuple[int, bytes]], cuts: list[int]) -> None:
    data = b"".join(stream_frame(s, p) for s, p in frames)
    assert split_feed(StreamDecoder(), data, cuts) == frames


@given(st.binary(max_size=64))
def test_garbage_is_refused_or_waits(data: bytes) -> None:
    decoder = MessageDecoder(limit=32)
    try:
        out = decoder.feed(data)
    except ProtocolError:
        return
    assert all(isinstance(m, dict) for m in out)


def test_stream_frame_header_is_dockers() -> None:
    assert stream_frame(2, b"abc") == b"\x02\x00\x00\x00\x00\x00\x00\x03abc"


def test_oversized_and_non_object_messages_are_refused() -> None:
    with pytest.raises(ProtocolError, match="exceeds 10"):
        MessageDecoder(limit=10).feed(struct.pack(">I", 11))
    with pytest.raises(ProtocolError, match="not an object"):
        MessageDecoder().feed(struct.pack(">I", 2) + b"[]")
    with pytest.raises(ProtocolError, match="not JSON"):
        MessageDecoder().feed(struct.pack(">I", 2) + b"{x")
    with pytest.raises(ProtocolError, match="unknown stream 7"):
        StreamDecoder().feed(b"\x07" + b"\x00" * 7)


@pytest.mark.parametrize(
    ("chunks", "stdin", "detached"),
    [
        ([b"abc"], b"abc", False),
        ([b"ab\x10\x11cd"], b"ab", True),
        ([b"ab\x10", b"\x11"], b"ab", True),
        ([b"\x10x"], b"\x10x", False),
        ([b"\x10", b"\x10\x11"], b"\x10", True),
        ([b"\x10"], b"", False),  # held: it may be the start of the sequence
    ],
)
def test_detach_keys(chunks: list[bytes], stdin: bytes, detached: bool) -> None:
    m = DetachMatcher(b"\x10\x11")
    out, done = b"", False
    for chunk in chunks:
        data, done = m.feed(chunk)
        out += data
        if done:
            break
    assert (out, done) == (stdin, detached)


@given(st.binary(max_size=50).filter(lambda b: b"\x10" not in b))
def test_detach_keys_pass_everything_else(data: bytes) -> None:
    assert DetachMatcher(b"\x10\x11").feed(data) == (data, False)


@pytest.mark.parametrize(
    "exc",
    [
        ContainerNotFound("abc"),
        InvalidState("abc", "start", "running"),
        ChildError("exec", 'exec: "x": executable file not found in $PATH', 2),
        Conflict("in use"),
        NotFound("gone"),
    ],
)
def test_errors_cross_with_class_and_message(exc: Exception) -> None:
    back = decode_error(encode_error(exc))
    assert type(back) is type(exc) and str(back) == str(exc)


def test_foreign_errors_fall_back_to_their_kind() -> None:
    err = {"class": "os.PathLike", "kind": "NotFound", "message": "x"}
    assert type(decode_error(err)) is NotFound
    assert type(decode_error({"class": "no.such.Thing", "message": "m"})) is Internal
    assert encode_error(ValueError("boom"))["kind"] == "Internal"
    assert encode_error(ContainerNotFound("a"))["kind"] == "NotFound"


@pytest.mark.parametrize("bad", ["", ".hidden", "a/b", "../x", "a" * 129, "é", 5, None])
def test_ids_must_be_file_names(bad: object) -> None:
    with pytest.raises(InvalidArgument):
        valid_id(bad)


def test_good_ids() -> None:
    assert valid_id("0123abcdef" * 6 + "0123") == "0123abcdef" * 6 + "0123"
    assert valid_id("name_1.2-3") == "name_1.2-3"
