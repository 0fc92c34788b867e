"""Content digests, as image-spec ``descriptor.md`` defines them: ``algorithm:encoded``.

A :class:`Digest` is a validated ``str`` (like go-digest's ``Digest`` string type), so it
serialises to JSON as itself and compares equal to its text. Only the registered
algorithms are accepted: ``sha256`` (64 lowercase hex digits) and ``sha512`` (128).

Grammar (image-spec 1.1)::

    digest                ::= algorithm ":" encoded
    algorithm             ::= algorithm-component (algorithm-separator algorithm-component)*
    algorithm-component   ::= [a-z0-9]+
    algorithm-separator   ::= [+._-]
    encoded               ::= [a-zA-Z0-9=_-]+
"""

from __future__ import annotations

from portside.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "ALGORITHMS",
    "Digest",
    "DigestMismatch",
    "Digester",
    "InvalidDigest",
    "verify",
]

#: registered algorithms and the length of their hex encoding
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}

_ALG_COMPONENT = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_ALG_SEPARATORS = frozenset("+._-")
_ENCODED = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789=_-")
_LOWER_HEX = frozenset("0123456789abcdef")


class InvalidDigest(InvalidArgument):
    """A string is not a valid digest; ``reason`` is the message without the value."""

    def __init__(self, value: str, reason: str) -> None:
        super().__init__(f"invalid digest {value!r}: {reason}")
        self.value = value
        self.reason = reason


class DigestMismatch(InvalidArgument):
    """Content does not hash to the digest (or size) it was expected to have."""


def _algorithm_error(algorithm: str) -> str | None:
    if not algorithm:
        return "missing algorithm"
    component = 0
    for ch in algorithm:
        if ch in _ALG_COMPONENT:
            component += 1
        elif ch in _ALG_SEPARATORS and component:
            component = 0
        else:
            return f"malformed algorithm {algorithm!r}"
    if not component:
        return f"malformed algorithm {algorithm!r}"
    return None


def _check(value: str) -> None:
    """Raise :class:`InvalidDigest` unless ``value`` is a digest of a registered algorithm."""
    algorithm, sep, encoded = value.partition(":")
    if not sep:
        raise InvalidDigest(value, "missing ':' between algorithm and encoded value")
    reason = _algorithm_error(algorithm)
    if reason is not None:
        raise InvalidDigest(value, reason)
    if not encoded or not _ENCODED.issuperset(encoded):
        raise InvalidDigest(value, "malformed encoded value")
    want = ALGORITHMS.get(algorithm)
    if want is None:
        raise InvalidDigest(value, f"unsupported algorithm {algorithm!r}")
    if not _LOWER_HEX.issuperset(encoded):
        raise InvalidDigest(value, f"{algorithm} needs lowercase hex digits")
    if len(encoded) != want:
        raise InvalidDigest(value, f"{algorithm} needs {want} hex digits, got {len(encoded)}")


class Digest(str):
    """A validated digest string such as ``sha256:<64 hex>``."""

    __slots__ = ()

    def __new__(cls, value: str) -> Digest:
        if not isinstance(value, str):
            raise InvalidDigest(repr(value), "not a string")
        if type(value) is cls:
            return value  # type: ignore[return-value]
        _check(value)
        return super().__new__(cls, value)

    @classmethod
    def parse(cls, value: str) -> Digest:
        """Validate ``value``; raises :class:`InvalidDigest` naming what is wrong."""
        return cls(value)

    @classmethod
    def from_parts(cls, algorithm: str, hex: str) -> Digest:
        return cls(f"{algorithm}:{hex}")

    @classmethod
    def of(cls, data: bytes | bytearray | memoryview, algorithm: str = "sha256") -> Digest:
        """The digest of ``data``."""
        digester = Digester(algorithm)
        digester.update(data)
        return digester.digest()

    @property
    def algorithm(self) -> str:
        return self.partition(":")[0]

    @property
    def hex(self) -> str:
        """The encoded part (lowercase hex for the registered algorithms)."""
        return self.partition(":")[2]

    encoded = hex

    @property
    def short(self) -> str:
        """The first 12 hex digits, as Docker shows image IDs."""
        return self.hex[:12]

    def __repr__(self) -> str:
        return f"Digest({str.__repr__(self)})"

    def digester(self) -> Digester:
        """A :class:`Digester` of this digest's algorithm, for verifying a stream."""
        return Digester(self.algorithm)


class Digester:
    """Hash a stream incrementally; counts the bytes it has seen in ``size``."""

    __slots__ = ("_hash", "algorithm", "size")

    def __init__(self, algorithm: str = "sha256") -> None:
        if algorithm not in ALGORITHMS:
            raise InvalidArgument(f"unsupported digest algorithm {algorithm!r}")
        self.algorithm = algorithm
        import hashlib  # here: loading OpenSSL costs every CLI command ~2.5 ms

        self._hash = hashlib.new(algorithm)
        self.size = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._hash.update(data)
        self.size += len(data)

    def digest(self) -> Digest:
        """The digest of everything so far (the digester can go on being updated)."""
        value = f"{self.algorithm}:{self._hash.hexdigest()}"
        return str.__new__(Digest, value)

    def verify(self, expected: str, size: int | None = None) -> Digest:
        """Raise :class:`DigestMismatch` unless the content seen so far has ``expected``
        digest (and ``size`` bytes, when given); returns the digest."""
        want = Digest(expected)
        if want.algorithm != self.algorithm:
            raise DigestMismatch(
                f"digest mismatch: expected {want}, but the content was hashed with "
                f"{self.algorithm}"
            )
        if size is not None and size != self.size:
            raise DigestMismatch(
                f"size mismatch for {want}: expected {size} bytes, got {self.size}"
            )
        got = self.digest()
        if got != want:
            raise DigestMismatch(f"digest mismatch: expected {want}, got {got}")
        return got


def verify(
    expected: str,
    data: bytes | bytearray | memoryview | Iterable[bytes],
    size: int | None = None,
) -> Digest:
    """Check that ``data`` (bytes or an iterable of chunks) has digest ``expected`` and,
    when given, ``size`` bytes; raises :class:`DigestMismatch` (or :class:`InvalidDigest`
    for a malformed ``expected``)."""
    digester = Digest(expected).digester()
    if isinstance(data, bytes | bytearray | memoryview):
        digester.update(data)
    else:
        for chunk in data:
            digester.update(chunk)
    return digester.verify(expected, size)
