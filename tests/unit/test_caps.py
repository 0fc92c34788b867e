"""Capability names, bitmasks and the order of apply_capabilities (no kernel side effects)."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portside.errors import Internal, InvalidArgument, PermissionDenied
from portside.linux import caps


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1], 16)
    raise AssertionError(f"{field} not in /proc/self/status")


def test_caps_table_is_the_kernel_numbering() -> None:
    assert len(caps.CAPS) == 41
    assert sorted(caps.CAPS.values()) == list(range(41))
    assert caps.CAPS["CAP_CHOWN"] == 0
    assert caps.CAPS["CAP_SETPCAP"] == 8
    assert caps.CAPS["CAP_NET_BIND_SERVICE"] == 10
    assert caps.CAPS["CAP_NET_RAW"] == 13
    assert caps.CAPS["CAP_SYS_ADMIN"] == 21
    assert caps.CAPS["CAP_AUDIT_READ"] == 37
    assert caps.CAPS["CAP_CHECKPOINT_RESTORE"] == 40
    assert caps.known_caps()[0] == "CAP_CHOWN"
    assert caps.known_caps()[-1] == "CAP_CHECKPOINT_RESTORE"


def test_last_cap_reads_the_kernel() -> None:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        assert caps.last_cap() == int(f.read())


def test_parse_caps_bitmask(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(caps, "_last_cap", 40)
    assert caps.parse_caps([], "x") == 0
    assert caps.parse_caps(["CAP_CHOWN"], "x") == 1
    assert caps.parse_caps(["CAP_NET_RAW", "CAP_KILL", "CAP_NET_RAW"], "x") == (1 << 13) | (1 << 5)
    assert caps.parse_caps(["CAP_CHECKPOINT_RESTORE"], "x") == 1 << 40


def test_parse_caps_unknown_name_names_path() -> None:
    with pytest.raises(InvalidArgument) as info:
        caps.parse_caps(["CAP_CHOWN", "CAP_FOO"], "process.capabilities.bounding")
    assert str(info.value) == "process.capabilities.bounding: unknown capability 'CAP_FOO'"


def test_parse_caps_skips_caps_the_kernel_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(caps, "_last_cap", 38)
    assert caps.parse_caps(["CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"], "x") == 1 << 38


@given(st.sets(st.sampled_from(sorted(caps.CAPS))))
def test_names_round_trip(names: set[str]) -> None:
    mask = caps.parse_caps(sorted(names), "x")
    assert set(caps.caps_to_names(mask)) == {n for n in names if caps.CAPS[n] <= caps.last_cap()}


def test_capget_matches_proc_status() -> None:
    assert caps.capget() == (_status("CapEff"), _status("CapPrm"), _status("CapInh"))


class _Recorder:
    """Stands in for every kernel call of apply_capabilities, in order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail: str | None = None) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.fail = fail
        for name in ("set_keepcaps", "drop_bounding", "capset", "set_ambient"):
            monkeypatch.setattr(caps, name, self._rec(name))
        for name in ("setgroups", "setresgid", "setresuid"):
            monkeypatch.setattr(caps.os, name, self._rec(name))

    def _rec(self, name: str) -> Callable[..., None]:
        def fake(*args: object) -> None:
            self.calls.append((name, *args))
            if name == self.fail:
                raise OSError(errno.EPERM, f"{name}: {os.strerror(errno.EPERM)}")

        return fake


def test_apply_capabilities_order(monkeypatch: pytest.MonkeyPatch) -> None:
    rec = _Recorder(monkeypatch)
    monkeypatch.setattr(caps, "_setgroups_allowed", lambda: True)
    raised = caps.apply_capabilities(
        0b1111, 0b0011, 0b0111, 0b0101, 0b1111, uid=1000, gid=100, additional_gids=[5, 6]
    )
    assert rec.calls == [
        ("set_keepcaps", True),
        ("drop_bounding", 0b1111),
        ("setgroups", [5, 6]),
        ("setresgid", 100, 100, 100),
        ("setresuid", 1000, 1000, 1000),
        ("set_keepcaps", False),
        ("capset", 0b0011, 0b0111, 0b0101),
        ("set_ambient", 0b0101),  # only what is both permitted and inheritable
    ]
    assert raised == 0b0101


def test_apply_capabilities_skips_setgroups_when_denied(monkeypatch: pytest.MonkeyPatch) -> None:
    rec = _Recorder(monkeypatch)
    monkeypatch.setattr(caps, "_setgroups_allowed", lambda: False)
    caps.apply_capabilities(1, 1, 1, 0, 0, uid=0, gid=0, additional_gids=[1])
    assert "setgroups" not in [c[0] for c in rec.calls]


def test_apply_capabilities_error_names_step(monkeypatch: pytest.MonkeyPatch) -> None:
    rec = _Recorder(monkeypatch, fail="setresuid")
    monkeypatch.setattr(caps, "_setgroups_allowed", lambda: True)
    with pytest.raises(PermissionDenied) as info:
        caps.apply_capabilities(1, 1, 1, 0, 0, uid=65534, gid=0, additional_gids=[])
    assert str(info.value) == "capabilities: setresuid 65534: Operation not permitted"
    assert rec.calls[-1][0] == "setresuid"  # stopped there


def test_apply_capabilities_other_errno_is_internal(monkeypatch: pytest.MonkeyPatch) -> None:
    _Recorder(monkeypatch)

    def broken(*args: object) -> None:
        raise OSError(errno.ENOMEM, "capset: Cannot allocate memory")

    monkeypatch.setattr(caps, "capset", broken)
    with pytest.raises(Internal, match=r"^capabilities: capset: Cannot allocate memory$"):
        caps.apply_capabilities(1, 1, 1, 0, 0, uid=0, gid=0, additional_gids=[])


def test_apply_capabilities_ambient_failure_is_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    rec = _Recorder(monkeypatch, fail="set_ambient")
    monkeypatch.setattr(caps, "_ambient_best_effort", lambda mask: mask & 1)
    assert caps.apply_capabilities(3, 3, 3, 3, 3, uid=0, gid=0, additional_gids=[]) == 1
    assert rec.calls[-1][0] == "set_ambient"
