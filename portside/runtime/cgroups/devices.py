"""Device access rules: OCI ``resources.devices`` to a canonical rule set, and v1 writes.

The rules are run through an emulator of the v1 devices controller (after runc's
``devices_emulator.go``): a default policy (allow or deny everything) plus a set of
exceptions. Its canonical output drives both the v1 writes (``a`` to
``devices.deny`` or ``devices.allow``, then one line per exception) and the v2 eBPF
program (:mod:`portside.runtime.cgroups.devices_bpf`), so both versions behave alike.
Later rules override earlier ones; the start state is "deny everything".
"""

from __future__ import annotations

from portside.runtime.cgroups.base import CgroupInvalid

TYPE_CHECKING = False
if TYPE_CHECKING:
    from portside.oci.runtime_spec import LinuxDeviceCgroup
    from portside.runtime.cgroups.base import Write

__all__ = ["WILDCARD", "DeviceRule", "Emulator", "canonical_rules", "from_oci", "v1_writes"]

#: major/minor wildcard (``*``)
WILDCARD = -1

_ACCESS = "rwm"


def _perms(text: str) -> str:
    """``text`` as a canonical permission string (subset of "rwm", in that order)."""
    return "".join(c for c in _ACCESS if c in text)


class DeviceRule:
    """One rule: type "a", "b" or "c"; major/minor (-1 is ``*``); access; allow or deny."""

    __slots__ = ("access", "allow", "major", "minor", "type")

    def __init__(self, type: str, major: int, minor: int, access: str, allow: bool) -> None:
        self.type = type
        self.major = major
        self.minor = minor
        self.access = access
        self.allow = allow

    def cgroup_string(self) -> str:
        """The v1 devices.allow/deny line, e.g. ``c 1:3 rwm`` or ``c 136:* rwm``."""
        if self.type == "a":
            return "a"
        major = "*" if self.major == WILDCARD else str(self.major)
        minor = "*" if self.minor == WILDCARD else str(self.minor)
        return f"{self.type} {major}:{minor} {self.access}"

    def _key(self) -> tuple[str, int, int, str, bool]:
        return (self.type, self.major, self.minor, self.access, self.allow)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DeviceRule):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        verb = "allow" if self.allow else "deny"
        return f"DeviceRule({verb} {self.cgroup_string()})"


def _number(value: int | None, what: str) -> int:
    if value is None or value == WILDCARD:
        return WILDCARD
    if not 0 <= value <= 0xFFFFFFFF:
        raise CgroupInvalid(f"{what}: invalid device number {value}")
    return value


def from_oci(devices: list[LinuxDeviceCgroup]) -> list[DeviceRule]:
    """Validate OCI device rules: type defaults to "a", access to "rwm", numbers to ``*``."""
    rules: list[DeviceRule] = []
    for i, d in enumerate(devices):
        where = f"linux.resources.devices[{i}]"
        kind = d.type or "a"
        if kind not in ("a", "b", "c"):
            raise CgroupInvalid(f"{where}.type: invalid device type {kind!r}")
        access = "rwm" if d.access is None else d.access
        if not access or any(c not in _ACCESS for c in access):
            raise CgroupInvalid(f"{where}.access: invalid access {access!r}")
        major = _number(d.major, f"{where}.major")
        minor = _number(d.minor, f"{where}.minor")
        rules.append(DeviceRule(kind, major, minor, _perms(access), d.allow))
    return rules


class Emulator:
    """The v1 devices controller's state: a default policy plus exceptions."""

    def __init__(self) -> None:
        self.default_allow = False
        self.exceptions: dict[tuple[str, int, int], str] = {}

    def apply(self, rule: DeviceRule) -> None:
        """Apply one rule as the kernel would, refusing to punch holes in wildcards."""
        if rule.type == "a":
            self.default_allow = rule.allow
            self.exceptions = {}
        elif rule.allow == self.default_allow:
            self._remove(rule)
        else:
            self._add(rule)

    def _add(self, rule: DeviceRule) -> None:
        key = (rule.type, rule.major, rule.minor)
        self.exceptions[key] = _perms(self.exceptions.get(key, "") + rule.access)

    def _remove(self, rule: DeviceRule) -> None:
        key = (rule.type, rule.major, rule.minor)
        for wider in (
            (rule.type, WILDCARD, rule.minor),
            (rule.type, rule.major, WILDCARD),
            (rule.type, WILDCARD, WILDCARD),
        ):
            if wider == key:
                continue
            overlap = _perms("".join(c for c in self.exceptions.get(wider, "") if c in rule.access))
            if overlap:
                wide = DeviceRule(*wider, self.exceptions[wider], not self.default_allow)
                raise CgroupInvalid(
                    f"device rule {rule.cgroup_string()!r} cannot punch a hole in the "
                    f"wider rule {wide.cgroup_string()!r}"
                )
        left = "".join(c for c in self.exceptions.get(key, "") if c not in rule.access)
        if left:
            self.exceptions[key] = left
        else:
            self.exceptions.pop(key, None)

    def rules(self) -> list[DeviceRule]:
        """The canonical rule set: the default ("a") rule, then the exceptions, sorted
        by (major, minor, type) as runc sorts them."""
        out = [DeviceRule("a", WILDCARD, WILDCARD, "rwm", self.default_allow)]
        for (kind, major, minor), access in sorted(
            self.exceptions.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])
        ):
            out.append(DeviceRule(kind, major, minor, access, not self.default_allow))
        return out


def canonical_rules(devices: list[LinuxDeviceCgroup]) -> list[DeviceRule]:
    """OCI rules to the emulator's canonical rule set (default rule first)."""
    emu = Emulator()
    for rule in from_oci(devices):
        emu.apply(rule)
    return emu.rules()


#: v1_writes results by their input rules (every container of a daemon asks for
#: the same defaults); bounded, the function being pure
_V1_MEMO: dict[tuple[tuple[object, ...], ...], list[Write]] = {}
_V1_MEMO_MAX = 64


def v1_writes(devices: list[LinuxDeviceCgroup]) -> list[Write]:
    """``a`` to devices.deny (or devices.allow), then every exception in order."""
    key = tuple((d.allow, d.type, d.major, d.minor, d.access) for d in devices)
    cached = _V1_MEMO.get(key)
    if cached is not None:
        return list(cached)
    writes: list[Write] = []
    for rule in canonical_rules(devices):
        writes.append(("devices.allow" if rule.allow else "devices.deny", rule.cgroup_string()))
    if len(_V1_MEMO) >= _V1_MEMO_MAX:
        _V1_MEMO.clear()
    _V1_MEMO[key] = list(writes)
    return writes
