"""Control-file parsers, error translation, and the package's exported surface."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portside.errors import Internal, InvalidArgument, NotFound, PermissionDenied, Unavailable
from portside.runtime import cgroups
from portside.runtime.cgroups import _fs
from portside.runtime.cgroups.mounts import parse_proc_cgroup

KEYS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)


@given(st.dictionaries(KEYS, st.integers(min_value=0, max_value=(1 << 63) - 1)))
def test_parse_flat_keyed_round_trip(values: dict[str, int]) -> None:
    text = "".join(f"{k} {v}\n" for k, v in values.items())
    assert _fs.parse_flat_keyed(text + "malformed line here\n\n") == values


def test_parse_flat_keyed_max() -> None:
    assert _fs.parse_flat_keyed("a max\nb -1\nc x\n") == {"a": _fs.MAX_UINT64, "b": _fs.MAX_UINT64}


@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[0-9]{1,3}:[0-9]{1,3}", fullmatch=True),
            st.dictionaries(KEYS, st.from_regex(r"[0-9a-z]{1,6}", fullmatch=True), max_size=4),
        ),
        max_size=5,
    )
)
def test_parse_nested_keyed_round_trip(lines: list[tuple[str, dict[str, str]]]) -> None:
    text = "\n".join(f"{dev} " + " ".join(f"{k}={v}" for k, v in kv.items()) for dev, kv in lines)
    assert _fs.parse_nested_keyed(text) == lines


@given(
    st.lists(
        st.tuples(
            st.lists(KEYS, min_size=1, max_size=3, unique=True),
            st.from_regex(r"(/[a-z0-9:._-]{1,8}){0,3}", fullmatch=True).map(lambda p: p or "/"),
        ),
        max_size=6,
    )
)
def test_parse_proc_cgroup_round_trip(entries: list[tuple[list[str], str]]) -> None:
    text = "".join(f"{i}:{','.join(names)}:{path}\n" for i, (names, path) in enumerate(entries))
    expected: dict[str, str] = {}
    for names, path in entries:
        for name in names:
            expected[name] = path
    assert parse_proc_cgroup(text) == expected


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (errno.EPERM, PermissionDenied),
        (errno.EACCES, PermissionDenied),
        (errno.EINVAL, InvalidArgument),
        (errno.EBUSY, Internal),
        (errno.ENOENT, Unavailable),
    ],
)
def test_translate_oserror(tmp_path: Path, code: int, kind: type[Exception]) -> None:
    exc = OSError(code, "boom")
    err = _fs.translate_oserror(exc, f"write {tmp_path}/f = 1", str(tmp_path))
    assert isinstance(err, kind) and isinstance(err, cgroups.CgroupError)
    assert str(err).startswith(f"write {tmp_path}/f = 1: ")
    assert err.errno == code


def test_missing_directory_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        _fs.write(str(tmp_path / "gone"), "pids.max", "1")


def test_exported_surface() -> None:
    assert sorted(cgroups.__all__) == [
        "CgroupError",
        "CgroupInternal",
        "CgroupInvalid",
        "CgroupManager",
        "CgroupNotFound",
        "CgroupPermission",
        "CgroupUnavailable",
        "detect_mode",
        "features",
        "manager_from_json",
        "open_manager",
    ]
    assert cgroups.features() == {
        "v1": True,
        "v2": True,
        "systemd": False,
        "systemdUser": False,
        "rdma": False,
    }
