"""Layer streams, read and written: compression, the diffID, tar headers. No file system.

:class:`LayerSource` turns a layer blob (plain, gzip or zstd, told apart by magic) into
chunks of the uncompressed tar, hashing them for the diffID as they pass;
:class:`LayerWriter` is the reverse, for making layers.

:class:`TarReader` pulls a tar stream from a ``read()`` callable that returns the next
chunk of bytes (``b""`` at the end) and yields one :class:`TarEntry` per member, with
the GNU long-name (``L``/``K``) and PAX (``x``/``g``) meta headers already folded in.
The member's data is then taken as memoryviews over the reader's chunks
(:meth:`TarReader.data`), so that file contents are never copied in Python.

Formats read: v7, ustar (with the 155-byte prefix), GNU (``ustar  \\0`` magic, base-256
numbers), POSIX.1-2001 PAX (``path``, ``linkpath``, ``size``, ``uid``, ``gid``, ``mtime``
with fractions, ``SCHILY.xattr.*``, ``LIBARCHIVE.xattr.*``). Sparse files and
multi-volume archives are refused with :class:`CorruptLayer`.

:func:`encode_header` writes ustar headers, preceded by a PAX header when a field does
not fit; it is what :func:`portside.image.layer_make.make_layer` uses.
"""

from __future__ import annotations

import hashlib
import struct
from zlib import adler32

from portside.errors import InvalidArgument
from portside.text import is_number

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Iterator
    from typing import BinaryIO

__all__ = [
    "BLK",
    "BLOCK",
    "CHR",
    "CHUNK",
    "DIR",
    "FIFO",
    "LINK",
    "REG",
    "SYMLINK",
    "CorruptLayer",
    "LayerSource",
    "LayerWriter",
    "TarEntry",
    "TarReader",
    "detect_compression",
    "encode_header",
    "end_of_archive",
    "parse_header",
    "parse_pax",
]

BLOCK = 512
#: the read size of layer streams, and the size of the chunks they are parsed in
CHUNK = 1 << 20
#: chunks read ahead of the parser
_PREFETCH = 4
_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_STEP = 64 << 10
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

REG = "0"
LINK = "1"
SYMLINK = "2"
CHR = "3"
BLK = "4"
DIR = "5"
FIFO = "6"

_REG_ALIASES = {"\0": REG, "7": REG}
_MEMBER_TYPES = frozenset({REG, LINK, SYMLINK, CHR, BLK, DIR, FIFO})
# types whose data is not a file's contents: a GNU dump directory is a directory
# with a listing as data; a volume label ("V") is skipped by the reader
_DATA_ONLY = {"D": DIR, "V": "V"}
_UNSUPPORTED = {"S": "sparse file", "M": "multi-volume continuation", "N": "old GNU long name"}

# meta entries hold a name or PAX records: cap them so a hostile header cannot make
# us buffer gigabytes
_MAX_META = 1 << 20

_ZERO_BLOCK = bytes(BLOCK)
_POSIX_MAGIC = b"ustar\x0000"


class CorruptLayer(InvalidArgument):
    """The layer is not a well-formed tar stream (or its compression is broken)."""


class TarEntry:
    """One member of a tar archive, with meta headers applied.

    ``name`` and ``linkname`` are str (undecodable bytes kept by ``surrogateescape``);
    ``type`` is one of the one-character type constants; ``mtime_ns`` is nanoseconds;
    ``xattrs`` maps names to raw values (None when there are none).
    """

    __slots__ = (
        "devmajor",
        "devminor",
        "gid",
        "linkname",
        "mode",
        "mtime_ns",
        "name",
        "size",
        "type",
        "uid",
        "xattrs",
    )

    def __init__(
        self,
        name: str,
        type: str = REG,
        *,
        size: int = 0,
        mode: int = 0o644,
        uid: int = 0,
        gid: int = 0,
        mtime_ns: int = 0,
        linkname: str = "",
        devmajor: int = 0,
        devminor: int = 0,
        xattrs: dict[str, bytes] | None = None,
    ) -> None:
        self.name = name
        self.type = type
        self.size = size
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.mtime_ns = mtime_ns
        self.linkname = linkname
        self.devmajor = devmajor
        self.devminor = devminor
        self.xattrs = xattrs

    def __repr__(self) -> str:
        return f"TarEntry({self.name!r}, {self.type!r}, size={self.size})"


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _cstr(field: bytes) -> bytes:
    end = field.find(b"\0")
    return field if end < 0 else field[:end]


def _number(field: bytes, what: str) -> int:
    """An octal field, or GNU base-256 when the top bit of the first byte is set."""
    try:
        return int(field.split(b"\0", 1)[0], 8)  # the common case, fast
    except ValueError:
        pass
    first = field[0]
    if first & 0x80:
        if first == 0xFF:
            return int.from_bytes(field, "big", signed=True)
        return int.from_bytes(bytes([first & 0x7F]) + field[1:], "big")
    if not _cstr(field).strip(b" "):
        return 0
    raise CorruptLayer(f"invalid tar header: {what} field {field!r} is not octal")


def _check_sum(block: bytes, stored: int) -> None:
    # the byte sum of each half is at most 256 * 255 < 65521, so the low half of its
    # adler32 is exactly 1 + that sum: C speed instead of sum() over 512 ints
    unsigned = (adler32(block[:256]) & 0xFFFF) + (adler32(block[256:]) & 0xFFFF) - 2
    unsigned += 8 * 32 - sum(block[148:156])
    if stored == unsigned:
        return
    # some old tars summed signed chars
    signed = unsigned - 256 * sum(1 for b in block if b & 0x80)
    signed += 256 * sum(1 for b in block[148:156] if b & 0x80)
    if stored != signed:
        raise CorruptLayer(f"invalid tar header: checksum {stored:o}, computed {unsigned:o}")


# name mode uid gid size mtime chksum type linkname magic+version (uname gname)
# devmajor devminor prefix (padding)
_HEADER = struct.Struct("100s8s8s8s12s12s8sB100s8s64x8s8s155s12x")
_NUMBERS = ("mode", "uid", "gid", "size", "mtime", "checksum")


def parse_header(block: bytes) -> TarEntry:
    """Decode one 512-byte header (not a zero block); raise CorruptLayer if malformed."""
    fields = _HEADER.unpack(block)
    try:  # the common case, octal everywhere: no function call per field
        mode, uid, gid, size, mtime, chksum = [int(f.split(b"\0", 1)[0], 8) for f in fields[1:7]]
    except ValueError:
        mode, uid, gid, size, mtime, chksum = map(_number, fields[1:7], _NUMBERS)
    _check_sum(block, chksum)
    name, typeflag, link, magic, major, minor, prefix = fields[0], *fields[7:]
    name = name.split(b"\0", 1)[0]
    if magic[:6] == b"ustar\0" and prefix[0]:
        name = prefix.split(b"\0", 1)[0] + b"/" + name
    kind = chr(typeflag)
    entry = TarEntry(
        name.decode("utf-8", "surrogateescape"),
        _REG_ALIASES.get(kind, kind),
        size=size,
        mode=mode & 0o7777,
        uid=uid,
        gid=gid,
        mtime_ns=mtime * 1_000_000_000,
        linkname=link.split(b"\0", 1)[0].decode("utf-8", "surrogateescape") if link[0] else "",
    )
    if kind in (CHR, BLK) and magic[:5] == b"ustar":
        entry.devmajor = _number(major, "devmajor")
        entry.devminor = _number(minor, "devminor")
    return entry


def parse_pax(data: bytes) -> dict[str, bytes]:
    """The records of a PAX extended header: ``"%d %s=%s\\n"`` each, values raw bytes."""
    records: dict[str, bytes] = {}
    pos = 0
    end = len(data)
    while pos < end:
        if data[pos] == 0:  # NUL padding after the last record
            break
        space = data.find(b" ", pos, pos + 20)
        try:
            length = int(data[pos:space]) if space > pos else 0
        except ValueError:
            length = 0
        record_end = pos + length
        if length <= 0 or record_end > end or data[record_end - 1] != 0x0A:
            raise CorruptLayer(f"invalid pax header: malformed record at offset {pos}")
        key, eq, value = data[space + 1 : record_end - 1].partition(b"=")
        if not eq or not key:
            raise CorruptLayer(f"invalid pax header: record without key at offset {pos}")
        records[_decode(key)] = value
        pos = record_end
    return records


def _pax_int(value: bytes, key: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise CorruptLayer(f"invalid pax header: {key}={value!r}") from None


def _pax_time_ns(value: bytes) -> int:
    """``1700000000.123456789`` (or negative) as nanoseconds."""
    text = value.decode("ascii", "replace").strip()
    negative = text.startswith("-")
    whole, _, frac = text.lstrip("-").partition(".")
    if not (whole or frac) or not is_number(whole or "0") or (frac and not is_number(frac)):
        raise CorruptLayer(f"invalid pax header: mtime={value!r}")
    ns = int(whole or "0") * 1_000_000_000 + int((frac[:9] or "0").ljust(9, "0"))
    return -ns if negative else ns


def _percent_decode(raw: bytes) -> bytes:
    parts = raw.split(b"%")
    out = [parts[0]]
    for part in parts[1:]:
        try:
            out.append(bytes([int(part[:2], 16)]) + part[2:])
        except ValueError:
            out.append(b"%" + part)
    return b"".join(out)


def _apply_pax(entry: TarEntry, records: dict[str, bytes]) -> None:
    for key, value in records.items():
        if not value and not key.startswith(("SCHILY.xattr.", "LIBARCHIVE.xattr.")):
            continue  # an empty value unsets the keyword: the ustar field stands
        if key == "path":
            entry.name = _decode(value)
        elif key == "linkpath":
            entry.linkname = _decode(value)
        elif key == "size":
            entry.size = _pax_int(value, key)
        elif key == "uid":
            entry.uid = _pax_int(value, key)
        elif key == "gid":
            entry.gid = _pax_int(value, key)
        elif key == "mtime":
            entry.mtime_ns = _pax_time_ns(value)
        elif key.startswith("SCHILY.xattr."):
            if entry.xattrs is None:
                entry.xattrs = {}
            entry.xattrs[key[13:]] = value
        elif key.startswith("LIBARCHIVE.xattr."):
            import binascii

            if entry.xattrs is None:
                entry.xattrs = {}
            name = _decode(_percent_decode(key[17:].encode("utf-8", "surrogateescape")))
            try:
                entry.xattrs[name] = binascii.a2b_base64(value + b"=" * (-len(value) % 4))
            except binascii.Error:
                raise CorruptLayer(f"invalid pax header: {key} is not base64") from None
        elif key.startswith("GNU.sparse."):
            raise CorruptLayer(f"layer member {entry.name!r}: sparse files are not supported")


class TarReader:
    """A pull parser over ``read()``, which returns chunks of the tar stream.

    Iterate for entries; while an entry is current, :meth:`data` yields its contents.
    Whatever of an entry's data is not taken is skipped by the next step. Iteration
    ends at the end-of-archive zero block; a stream that ends before it (other than an
    entirely empty stream) raises :class:`CorruptLayer`. :meth:`drain` then consumes
    whatever follows, so that the caller's digest covers the whole stream.
    """

    def __init__(self, read: Callable[[], bytes]) -> None:
        self._read = read
        self._buf = b""
        self._view = memoryview(b"")
        self._pos = 0
        self._left = 0  # data bytes of the current entry not yet taken
        self._pad = 0  # padding after them
        self._global: dict[str, bytes] = {}
        self._started = False

    def _fill(self) -> bool:
        chunk = self._read()
        if not chunk:
            return False
        self._buf = chunk
        self._view = memoryview(chunk)
        self._pos = 0
        return True

    def _take(self, n: int, what: str) -> bytes:
        """Exactly ``n`` bytes; CorruptLayer if the stream ends first."""
        end = self._pos + n
        if end <= len(self._buf):
            out = self._buf[self._pos : end]
            self._pos = end
            return out
        parts = [self._buf[self._pos :]]
        got = len(parts[0])
        self._pos = len(self._buf)
        while got < n:
            if not self._fill():
                if what == "header" and got == 0 and not self._started:
                    return b""
                raise CorruptLayer(f"truncated tar stream: unexpected end in {what}")
            need = n - got
            piece = self._buf[:need]
            self._pos = len(piece)
            parts.append(piece)
            got += len(piece)
        return b"".join(parts)

    def _skip(self, n: int, what: str) -> None:
        while n:
            avail = len(self._buf) - self._pos
            if avail == 0:
                if not self._fill():
                    raise CorruptLayer(f"truncated tar stream: unexpected end in {what}")
                continue
            step = min(avail, n)
            self._pos += step
            n -= step

    def take_all(self) -> memoryview | None:
        """The rest of the current entry's data as one view if the current chunk holds
        all of it (the common case: no generator), else None: then use :meth:`data`."""
        pos, left = self._pos, self._left
        if pos + left > len(self._buf):
            return None
        self._pos = pos + left
        self._left = 0
        return self._view[pos : pos + left]

    def data(self) -> Iterator[memoryview]:
        """The rest of the current entry's data, as views valid until the next step."""
        while self._left:
            avail = len(self._buf) - self._pos
            if avail == 0:
                if not self._fill():
                    raise CorruptLayer("truncated tar stream: unexpected end in file data")
                continue
            step = min(avail, self._left)
            start = self._pos
            self._pos += step
            self._left -= step
            yield self._view[start : start + step]

    def _meta_data(self, size: int, kind: str) -> bytes:
        if size > _MAX_META:
            raise CorruptLayer(f"invalid tar stream: {kind} header of {size} bytes")
        raw = self._take(size, f"{kind} header")
        self._skip(-size % BLOCK, f"{kind} header")
        return raw

    def __iter__(self) -> Iterator[TarEntry]:
        return self

    def __next__(self) -> TarEntry:
        if self._left or self._pad:
            self._skip(self._left + self._pad, "file data")
            self._left = self._pad = 0
        long_name: bytes | None = None
        long_link: bytes | None = None
        pax: dict[str, bytes] | None = None
        while True:
            pos = self._pos
            if pos + BLOCK <= len(self._buf):  # the common case, inline
                block = self._buf[pos : pos + BLOCK]
                self._pos = pos + BLOCK
            else:
                block = self._take(BLOCK, "header")
                if not block:
                    raise StopIteration  # an empty stream is an empty archive
            self._started = True
            if block == _ZERO_BLOCK:
                raise StopIteration
            entry = parse_header(block)
            kind = entry.type
            if kind in ("L", "K", "x", "g"):
                raw = self._meta_data(entry.size, kind)
                if kind == "L":
                    long_name = _cstr(raw)
                elif kind == "K":
                    long_link = _cstr(raw)
                elif kind == "x":
                    pax = parse_pax(raw)
                else:
                    self._global.update(parse_pax(raw))
                continue
            if entry.type == "V":
                self._skip(entry.size + -entry.size % BLOCK, "volume label")
                continue
            break
        if long_name is not None:
            entry.name = _decode(long_name)
        if long_link is not None:
            entry.linkname = _decode(long_link)
        if self._global:
            _apply_pax(entry, self._global)
        if pax:
            _apply_pax(entry, pax)
        return self._finish(entry)

    def _finish(self, entry: TarEntry) -> TarEntry:
        kind = entry.type
        if kind in _UNSUPPORTED:
            raise CorruptLayer(
                f"layer member {entry.name!r}: unsupported tar entry type ({_UNSUPPORTED[kind]})"
            )
        if kind not in _MEMBER_TYPES and kind not in _DATA_ONLY:
            raise CorruptLayer(f"layer member {entry.name!r}: unknown tar entry type {kind!r}")
        if entry.size < 0 or entry.uid < 0 or entry.gid < 0:
            raise CorruptLayer(f"layer member {entry.name!r}: negative size, uid or gid")
        # as Go's archive/tar: links, devices, fifos and directories are header-only,
        # whatever their size field says; GNU dump directories carry a listing
        size = entry.size if kind in _DATA_ONLY or kind == REG else 0
        entry.type = _DATA_ONLY.get(kind, kind)
        self._left = size
        self._pad = -size % BLOCK
        return entry

    def drain(self) -> int:
        """Consume the rest of the stream; return how many bytes followed the end."""
        rest = len(self._buf) - self._pos
        self._pos = len(self._buf)
        while self._fill():
            rest += len(self._buf)
            self._pos = len(self._buf)
        return rest


def _octal(value: int, width: int) -> bytes | None:
    """``value`` as a NUL-terminated octal field, or None if it does not fit."""
    digits = b"%o" % value
    if value < 0 or len(digits) > width - 1:
        return None
    return digits.rjust(width - 1, b"0") + b"\0"


def _field(value: int, width: int) -> bytes:
    return _octal(value, width) or _octal(0, width) or b""


def _pax_record(key: str, value: bytes) -> bytes:
    body = b" " + key.encode("utf-8", "surrogateescape") + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    return str(length).encode() + body


def _ustar_block(entry: TarEntry, name: bytes, prefix: bytes, link: bytes, size: int) -> bytes:
    fields = [
        name.ljust(100, b"\0"),
        _field(entry.mode & 0o7777, 8),
        _field(entry.uid, 8),
        _field(entry.gid, 8),
        _field(size, 12),
        _field(entry.mtime_ns // 1_000_000_000, 12),
        b" " * 8,
        entry.type.encode(),
        link.ljust(100, b"\0"),
        _POSIX_MAGIC,
        bytes(64),  # uname, gname: left empty for reproducible layers
        _field(entry.devmajor, 8),
        _field(entry.devminor, 8),
        prefix.ljust(155, b"\0"),
        bytes(12),
    ]
    block = bytearray(b"".join(fields))
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def _split_name(name: bytes) -> tuple[bytes, bytes] | None:
    """(prefix, name) for a ustar header, or None if the path does not fit."""
    if len(name) <= 100:
        return b"", name
    cut = name.rfind(b"/", 0, 156)
    while cut > 0:
        if len(name) - cut - 1 <= 100:
            return name[:cut], name[cut + 1 :]
        cut = name.rfind(b"/", 0, cut)
    return None


def encode_header(entry: TarEntry) -> bytes:
    """The header block(s) of ``entry``: ustar, with a PAX header before it for the
    fields that do not fit (long names, big ids or sizes, non-ASCII, xattrs).

    Times are written in whole seconds, uname/gname empty, so that the same tree
    always gives the same bytes.
    """
    name = entry.name.encode("utf-8", "surrogateescape")
    link = entry.linkname.encode("utf-8", "surrogateescape")
    size = entry.size if entry.type == REG else 0
    records: list[bytes] = []
    split = _split_name(name) if name.isascii() else None
    if split is None:
        records.append(_pax_record("path", name))
        split = (b"", name[-100:] if name.isascii() else b"PaxPath")
    if len(link) > 100 or not link.isascii():
        records.append(_pax_record("linkpath", link))
        link = b""
    for key, value, width in (("uid", entry.uid, 8), ("gid", entry.gid, 8), ("size", size, 12)):
        if _octal(value, width) is None:
            records.append(_pax_record(key, b"%d" % value))
    for key in sorted(entry.xattrs or ()):
        records.append(_pax_record("SCHILY.xattr." + key, (entry.xattrs or {})[key]))
    block = _ustar_block(entry, split[1], split[0], link, size)
    if not records:
        return block
    pax_data = b"".join(records)
    pax_entry = TarEntry("PaxHeader", "x", size=len(pax_data), mode=0o644)
    pax_name = b"PaxHeaders/" + split[1][:89]
    pax_block = _ustar_block(pax_entry, pax_name, b"", b"", len(pax_data))
    return pax_block + pax_data + bytes(-len(pax_data) % BLOCK) + block


def end_of_archive() -> bytes:
    """The two zero blocks that end a tar archive."""
    return bytes(2 * BLOCK)


# --- the decompressed, hashed stream ------------------------------------------------


class _Prefixed:
    """``stream`` with ``head`` (already read off it) put back in front."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = head
        self._stream = stream

    def read(self, n: int = -1) -> bytes:
        if self._head:
            head, self._head = self._head, b""
            return head
        return self._stream.read(n)


def _plain(stream: BinaryIO, first: bytes) -> Iterator[bytes]:
    chunk = first
    while chunk:
        yield chunk
        chunk = stream.read(CHUNK)


def _gunzip(stream: BinaryIO, first: bytes) -> Iterator[bytes]:
    """Decompress gzip (several members allowed), at most CHUNK bytes out per step.

    zlib is fed 64 KiB at a time: with whole 1 MiB reads, the copies of the unconsumed
    input that ``max_length`` makes cost a third of the time.
    """
    import zlib

    d = zlib.decompressobj(31)
    raw, off = first, 0  # compressed bytes read, how far they have been fed
    pending = b""  # fed but not consumed: zlib's unconsumed_tail
    out = b""
    while True:
        if d.eof:
            raw, off = d.unused_data + raw[off:], 0
            if not raw:
                raw = stream.read(CHUNK)
                if not raw:
                    return
            if raw[:2] != _GZIP_MAGIC:
                raise CorruptLayer("invalid gzip stream: garbage after the last member")
            d = zlib.decompressobj(31)
        if not pending and len(out) < CHUNK:
            if off >= len(raw):
                raw, off = stream.read(CHUNK), 0
                if not raw:
                    raise CorruptLayer("truncated gzip stream")
            pending = raw[off : off + _GZIP_STEP]
            off += len(pending)
        try:
            out = d.decompress(pending, CHUNK)
        except zlib.error as exc:
            raise CorruptLayer(f"invalid gzip stream: {exc}") from exc
        pending = d.unconsumed_tail
        if out:
            yield out


def _unzstd(stream: BinaryIO, first: bytes) -> Iterator[bytes]:
    """Decompress zstd. A truncated frame yields a truncated tar, which the tar reader
    refuses (it insists on the end-of-archive block)."""
    import zstandard

    reader = zstandard.ZstdDecompressor().stream_reader(
        _Prefixed(first, stream), read_size=CHUNK, read_across_frames=True
    )
    try:
        while chunk := reader.read(CHUNK):
            yield chunk
    except zstandard.ZstdError as exc:
        raise CorruptLayer(f"invalid zstd stream: {exc}") from exc


class LayerSource:
    """The uncompressed tar stream of a layer blob as chunks (``read()``), hashed and
    counted as they are read: ``diff_id()`` and ``size`` once it is exhausted.

    With ``prefetch`` (the default) reading, decompressing and hashing run in a helper
    thread a few chunks ahead of the consumer; all three release the GIL, so they
    overlap with the consumer's file system calls. The helper starts once the layer
    has passed :data:`CHUNK` bytes: for a small layer a thread costs more than it
    saves. Call :meth:`close` when done.
    """

    def __init__(self, stream: BinaryIO, *, prefetch: bool = True) -> None:
        first = stream.read(CHUNK)
        self.compression = detect_compression(first)
        decode = {"gzip": _gunzip, "zstd": _unzstd}.get(self.compression, _plain)
        self._chunks = decode(stream, first)
        self._hash = hashlib.sha256()
        self.size = 0
        self._stop = False
        self._prefetch = prefetch
        self._thread: threading.Thread | None = None

    def _start(self) -> None:
        """Hand the rest of the stream to the helper thread."""
        import queue
        import threading

        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(_PREFETCH)
        self._thread = threading.Thread(target=self._produce, name="layer-read", daemon=True)
        self._thread.start()

    def _next(self) -> bytes:
        chunk = next(self._chunks, b"")
        self._hash.update(chunk)
        self.size += len(chunk)
        return chunk

    def _produce(self) -> None:
        import queue

        while not self._stop:
            try:
                item: bytes | BaseException = self._next()
            except BaseException as exc:  # handed to the consumer, raised there
                item = exc
            while not self._stop:
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if not isinstance(item, bytes) or not item:
                return

    def read(self) -> bytes:
        if self._thread is None:
            chunk = self._next()
            if self._prefetch and chunk and self.size >= CHUNK:
                self._start()
            return chunk
        item = self._queue.get()
        if isinstance(item, BaseException):
            self._queue.put(item)  # every later read fails the same way
            raise item
        if not item:
            self._queue.put(item)
        return item

    def close(self) -> None:
        """Stop the helper thread (if the stream was not read to its end)."""
        import queue

        self._stop = True
        if self._thread is None:
            return
        while self._thread.is_alive():
            try:
                self._queue.get_nowait()
            except queue.Empty:
                self._thread.join(0.05)

    def diff_id(self) -> str:
        return "sha256:" + self._hash.hexdigest()


def detect_compression(head: bytes) -> str:
    """The compression of a layer blob from its first bytes: gzip, zstd or none."""
    if head[:2] == _GZIP_MAGIC:
        return "gzip"
    if head[:4] == _ZSTD_MAGIC:
        return "zstd"
    return "none"


# --- writing a compressed, hashed stream ------------------------------------------


class LayerWriter:
    """Writes a tar stream to ``out``: hashes it (diffID), compresses it, hashes and
    counts what is written (digest, size)."""

    def __init__(self, out: BinaryIO, compression: str) -> None:
        self._out = out
        self._diff = hashlib.sha256()
        self._blob = hashlib.sha256()
        self._buf = bytearray()
        self.size = 0
        self._compress: Callable[[bytes], bytes] | None = None
        self._flush: Callable[[], bytes] | None = None
        if compression == "gzip":
            import zlib

            gz = zlib.compressobj(6, zlib.DEFLATED, 31)
            self._compress, self._flush = gz.compress, gz.flush
        elif compression == "zstd":
            import zstandard

            zc = zstandard.ZstdCompressor(level=3).compressobj()
            self._compress, self._flush = zc.compress, zc.flush
        elif compression != "none":
            raise InvalidArgument(f"compression must be none, gzip or zstd, not {compression!r}")

    def write(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) >= CHUNK:
            self._emit(bytes(self._buf))
            self._buf.clear()

    def _emit(self, data: bytes) -> None:
        self._diff.update(data)
        if self._compress is not None:
            data = self._compress(data)
        if data:
            self._blob.update(data)
            self._out.write(data)
            self.size += len(data)

    def close(self) -> tuple[str, str, int]:
        self._emit(bytes(self._buf))
        self._buf.clear()
        if self._flush is not None:
            tail = self._flush()
            self._blob.update(tail)
            self._out.write(tail)
            self.size += len(tail)
        return "sha256:" + self._diff.hexdigest(), "sha256:" + self._blob.hexdigest(), self.size
