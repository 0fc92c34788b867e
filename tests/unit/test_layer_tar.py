"""Layer tars: the header parser, compression, make_layer, and apply_layer without root.

Archives are made by Python's ``tarfile`` (every format it writes) or by hand; hostile
ones aim at a sentinel directory next to the snapshot, which must stay untouched.
Applying runs with ``preserve_owner=False`` and ``whiteouts="remove"``, so none of this
needs root; tests/integration/test_layer_apply.py covers owners, devices and overlay.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from portside.errors import AlreadyExists, Internal, InvalidArgument
from portside.image.layer import (
    CorruptLayer,
    HostileLayer,
    apply_layer,
    apply_layer_in_place,
)
from portside.image.layer_make import make_layer
from portside.image.tarstream import (
    BLK,
    CHR,
    DIR,
    FIFO,
    LINK,
    REG,
    SYMLINK,
    LayerSource,
    TarEntry,
    TarReader,
    detect_compression,
    encode_header,
    end_of_archive,
    parse_pax,
)

Member = tuple[tarfile.TarInfo, bytes | None]


def info(name: str, kind: bytes = tarfile.REGTYPE, **attrs: Any) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mtime = attrs.pop("mtime", 1_700_000_000)
    for key, value in attrs.items():
        setattr(ti, key, value)
    return ti


def make_tar(members: list[Member], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for ti, data in members:
            if data is not None:
                ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def read_all(data: bytes, chunk: int = 1 << 20) -> list[tuple[TarEntry, bytes]]:
    it = chunked(data, chunk)
    reader = TarReader(lambda: next(it, b""))
    out = [(entry, b"".join(bytes(v) for v in reader.data())) for entry in reader]
    reader.drain()
    return out


def every_type() -> list[Member]:
    return [
        (info("dir/", tarfile.DIRTYPE, mode=0o755), None),
        (info("dir/file", mode=0o4755, uid=1000, gid=100), b"hello world"),
        (info("dir/link", tarfile.LNKTYPE, linkname="dir/file"), None),
        (info("dir/sym", tarfile.SYMTYPE, linkname="/etc/passwd"), None),
        (info("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666), None),
        (info("dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0), None),
        (info("fifo", tarfile.FIFOTYPE, mode=0o600), None),
        (info("empty"), b""),
    ]


# --- the header parser ----------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT], ids=str
)
def test_every_entry_type_in_every_format(fmt: int) -> None:
    entries = read_all(make_tar(every_type(), fmt), chunk=100)
    got = [(e.name.rstrip("/"), e.type, e.linkname, data) for e, data in entries]
    assert got == [
        ("dir", DIR, "", b""),
        ("dir/file", REG, "", b"hello world"),
        ("dir/link", LINK, "dir/file", b""),
        ("dir/sym", SYMLINK, "/etc/passwd", b""),
        ("dev/null", CHR, "", b""),
        ("dev/sda", BLK, "", b""),
        ("fifo", FIFO, "", b""),
        ("empty", REG, "", b""),
    ]
    by_name = {e.name: e for e, _ in entries}
    f = by_name["dir/file"]
    assert (f.mode, f.uid, f.gid, f.mtime_ns) == (0o4755, 1000, 100, 1_700_000_000 * 10**9)
    assert (by_name["dev/null"].devmajor, by_name["dev/null"].devminor) == (1, 3)
    assert (by_name["dev/sda"].devmajor, by_name["dev/sda"].devminor) == (8, 0)


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT], ids=str)
def test_long_names_and_links(fmt: int) -> None:
    name = "/".join(["d" * 60] * 5) + "/é-file"
    target = "/".join(["t" * 70] * 4)
    data = make_tar([(info(name), b"x"), (info("s", tarfile.SYMTYPE, linkname=target), None)], fmt)
    (f, body), (s, _) = read_all(data, chunk=512)
    assert (f.name, body) == (name, b"x")
    assert s.linkname == target


def test_ustar_prefix_field() -> None:
    name = "p" * 120 + "/" + "n" * 90
    ((entry, _),) = read_all(make_tar([(info(name), b"")], tarfile.USTAR_FORMAT))
    assert entry.name == name


def test_gnu_base256_numbers() -> None:
    big = 8**11 + 5  # does not fit 11 octal digits: GNU writes base-256
    ti = info("big", uid=8**8, gid=8**7 + 1)
    data = make_tar([(ti, b"")], tarfile.GNU_FORMAT)
    ((entry, _),) = read_all(data)
    assert (entry.uid, entry.gid) == (8**8, 8**7 + 1)
    # a base-256 size, written by hand: the reader must skip exactly that much data
    header = bytearray(data[:512])
    header[124:136] = b"\x80" + big.to_bytes(11, "big")
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    reader = TarReader(iter([bytes(header)]).__next__)
    assert next(reader).size == big


def test_pax_fields_and_xattrs() -> None:
    ti = info("orig")
    ti.pax_headers = {
        "path": "renamed/by/pax",
        "mtime": "1700000000.123456789",
        "uid": "4294967294",
        "SCHILY.xattr.security.capability": "\x01\x00\x00\x02",
        "LIBARCHIVE.xattr.user.a%3Db": "aGVsbG8",  # base64 without padding, name url-encoded
    }
    ((entry, _),) = read_all(make_tar([(ti, b"")], tarfile.PAX_FORMAT))
    assert entry.name == "renamed/by/pax"
    assert entry.mtime_ns == 1_700_000_000_123_456_789
    assert entry.uid == 4294967294
    assert entry.xattrs == {"security.capability": b"\x01\x00\x00\x02", "user.a=b": b"hello"}


def test_pax_global_header_applies_to_later_members() -> None:
    buf = io.BytesIO()
    with tarfile.open(
        fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"uid": "77"}
    ) as tar:
        tar.addfile(info("a"), io.BytesIO(b""))
        tar.addfile(info("b"), io.BytesIO(b""))
    assert [e.uid for e, _ in read_all(buf.getvalue())] == [77, 77]


def test_parse_pax_rejects_malformed_records() -> None:
    assert parse_pax(b"13 path=abcd\n") == {"path": b"abcd"}
    for bad in (b"99 path=x\n", b"x path=a\n", b"9 path=a!", b"6 =ab\n"):
        with pytest.raises(CorruptLayer):
            parse_pax(bad)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: d[:600], "truncated"),  # inside the data
        (lambda d: d[:1024], "truncated"),  # no end-of-archive block
        (lambda d: d[:50] + b"X" + d[51:], "checksum"),
        (lambda d: d[:156] + b"S" + d[157:], "checksum"),  # typeflag changed: sum differs
    ],
)
def test_corrupt_archives(damage: Any, message: str) -> None:
    data = make_tar([(info("f"), b"x" * 700)], tarfile.USTAR_FORMAT)
    with pytest.raises(CorruptLayer, match=message):
        read_all(damage(data))


def test_unknown_and_unsupported_types_are_refused() -> None:
    for flag, message in ((b"S", "sparse"), (b"Q", "unknown tar entry type")):
        block = bytearray(make_tar([(info("f"), b"")], tarfile.USTAR_FORMAT)[:512])
        block[156:157] = flag
        block[148:156] = b" " * 8
        block[148:156] = b"%06o\0 " % sum(block)
        with pytest.raises(CorruptLayer, match=message):
            read_all(bytes(block) + end_of_archive())


def test_empty_stream_is_an_empty_archive() -> None:
    assert read_all(b"") == []


@settings(max_examples=60, deadline=None)
@given(chunk=st.integers(1, 2000), sizes=st.lists(st.integers(0, 3000), max_size=6))
def test_any_chunking_gives_the_same_members(chunk: int, sizes: list[int]) -> None:
    members = [(info(f"f{i}"), bytes([i]) * n) for i, n in enumerate(sizes)]
    data = make_tar(members)
    assert [(e.name, d) for e, d in read_all(data, chunk)] == [
        (ti.name, body) for ti, body in members
    ]


_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=5)


@settings(max_examples=80, deadline=None)
@given(
    name=st.lists(_text.filter(bool), min_size=1, max_size=40).map("/".join),
    link=st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=300
    ),
    uid=st.integers(0, 2**40),
    size=st.integers(0, 600),
    xattrs=st.dictionaries(st.sampled_from(["user.a", "security.capability"]), st.binary()),
)
@example(name="/", link="", uid=0, size=0, xattrs={})
@example(name="é/", link="", uid=0, size=0, xattrs={})
def test_encode_header_round_trips(
    name: str, link: str, uid: int, size: int, xattrs: dict[str, bytes]
) -> None:
    entry = TarEntry(name, REG, size=size, uid=uid, mtime_ns=5 * 10**9, linkname=link)
    entry.xattrs = xattrs or None
    data = encode_header(entry) + b"z" * size + bytes(-size % 512) + end_of_archive()
    ((got, body),) = read_all(data, chunk=333)
    assert (got.name, got.linkname, got.uid, got.size, body) == (name, link, uid, size, b"z" * size)
    assert (got.xattrs or {}) == xattrs
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:  # and Python's tarfile agrees
        (member,) = tar.getmembers()
        # but for trailing slashes, which tarfile strips from a PAX path and keeps in a
        # ustar name (an ASCII name of <= 100 bytes ending in "/", as "/" itself)
        assert (member.name.rstrip("/"), member.uid, member.size) == (name.rstrip("/"), uid, size)


# --- compression ----------------------------------------------------------------------


def test_detect_compression() -> None:
    tar = make_tar([(info("a"), b"a")])
    assert detect_compression(tar) == "none"
    assert detect_compression(gzip.compress(tar)) == "gzip"
    assert detect_compression(zstandard.ZstdCompressor().compress(tar)) == "zstd"


@pytest.mark.parametrize("prefetch", [True, False])
def test_sources_give_the_same_diff_id(prefetch: bool) -> None:
    tar = make_tar([(info(f"f{i}"), os.urandom(5000)) for i in range(50)])
    want = "sha256:" + hashlib.sha256(tar).hexdigest()
    blobs = [tar, gzip.compress(tar), zstandard.ZstdCompressor().compress(tar)]
    blobs.append(gzip.compress(tar[:7000]) + gzip.compress(tar[7000:]))  # two gzip members
    for blob in blobs:
        source = LayerSource(io.BytesIO(blob), prefetch=prefetch)
        try:
            got = b""
            while chunk := source.read():
                got += chunk
        finally:
            source.close()
        assert (got, source.diff_id(), source.size) == (tar, want, len(tar))


@pytest.mark.parametrize(
    "blob",
    [
        gzip.compress(b"x" * 100_000)[:-10],
        gzip.compress(b"x" * 100_000) + b"junk",
        zstandard.ZstdCompressor().compress(b"x" * 100) + b"\x28\xb5\x2f\xfd\x00\xff\xff\xff",
    ],
    ids=["gzip-truncated", "gzip-trailing-junk", "zstd-corrupt"],
)
def test_broken_compression_is_corrupt(blob: bytes) -> None:
    source = LayerSource(io.BytesIO(blob))
    try:
        with pytest.raises(CorruptLayer):
            while source.read():
                pass
    finally:
        source.close()


def test_gzip_bomb_is_read_in_bounded_chunks() -> None:
    bomb = gzip.compress(bytes(30 << 20), 9)
    source = LayerSource(io.BytesIO(bomb), prefetch=False)
    biggest = 0
    while chunk := source.read():
        biggest = max(biggest, len(chunk))
    assert biggest <= 1 << 20
    assert source.size == 30 << 20


# --- applying -------------------------------------------------------------------------


# Snapshots are made DEPTH levels below the test's tmp_path, which also holds
# ``sentinel/``; hostile paths have fewer ``..`` than that and symlinks aim at the
# sentinel, so that even a broken extractor could only write inside tmp_path, never
# elsewhere on the host (these tests run as root in CI). Nothing outside the box may
# change: the fixture compares a listing of tmp_path before and after.
DEPTH = 10


def listing(top: Path, skip: Path) -> list[tuple[str, int, bytes]]:
    out = []
    for dirpath, dirnames, filenames in os.walk(top):
        if Path(dirpath) == skip:
            dirnames.clear()
            continue
        for name in sorted(dirnames + filenames):
            path = Path(dirpath, name)
            st = path.lstat()
            body = path.read_bytes() if stat.S_ISREG(st.st_mode) else b""
            out.append((str(path.relative_to(top)), st.st_mode, body))
    return sorted(out)


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Path]:
    """An empty directory for snapshots, DEPTH levels below tmp_path/sentinel/."""
    (tmp_path / "sentinel").mkdir()
    (tmp_path / "sentinel/keep").write_text("original")
    deep = tmp_path.joinpath(*[f"d{i}" for i in range(DEPTH)])
    deep.mkdir(parents=True)
    before = listing(tmp_path, deep)
    yield deep
    assert listing(tmp_path, deep) == before


def sentinel(box: Path) -> Path:
    return box.parents[DEPTH - 1] / "sentinel"


def apply(blob: bytes, dest: Path, **kwargs: Any) -> Any:
    kwargs.setdefault("whiteouts", "remove")
    kwargs.setdefault("preserve_owner", False)
    return apply_layer(io.BytesIO(blob), str(dest), **kwargs)


def leftovers(box: Path) -> list[str]:
    return sorted(p.name for p in box.iterdir())


def test_apply_regular_tree(box: Path) -> None:
    tar = make_tar(
        [
            (info("./etc/", tarfile.DIRTYPE, mode=0o750, mtime=1_600_000_000), None),
            (info("/etc/hostname", mode=0o640), b"box\n"),
            (info("etc/hosts.link", tarfile.LNKTYPE, linkname="/etc/hostname"), None),
            (info("bin/sh", tarfile.SYMTYPE, linkname="/bin/busybox"), None),
            (info("run/fifo", tarfile.FIFOTYPE, mode=0o620), None),
        ]
    )
    result = apply(gzip.compress(tar), box / "snap")
    assert result.diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    assert (result.size, result.entries) == (len(tar), 5)
    snap = box / "snap"
    assert (snap / "etc/hostname").read_text() == "box\n"
    assert stat.S_IMODE((snap / "etc/hostname").stat().st_mode) == 0o640
    assert (snap / "etc/hosts.link").stat().st_ino == (snap / "etc/hostname").stat().st_ino
    assert os.readlink(snap / "bin/sh") == "/bin/busybox"  # absolute, stored as it is
    assert stat.S_ISFIFO((snap / "run/fifo").lstat().st_mode)
    etc = (snap / "etc").stat()
    assert (stat.S_IMODE(etc.st_mode), etc.st_mtime) == (0o750, 1_600_000_000)
    assert (snap / "etc/hostname").stat().st_mtime == 1_700_000_000
    assert leftovers(box) == ["snap"]


def test_later_members_replace_earlier_ones(box: Path) -> None:
    tar = make_tar(
        [
            (info("a"), b"file first"),
            (info("a/", tarfile.DIRTYPE), None),
            (info("a/x"), b"in dir"),
            (info("b/", tarfile.DIRTYPE), None),
            (info("b/y"), b"gone"),
            (info("b", tarfile.SYMTYPE, linkname="a"), None),
            (info("c"), b"one"),
            (info("c"), b"two"),
        ]
    )
    apply(tar, box / "snap")
    assert (box / "snap/a/x").read_text() == "in dir"
    assert os.readlink(box / "snap/b") == "a"
    assert (box / "snap/c").read_text() == "two"


HOSTILE = {
    "dotdot": [(info("../sentinel/pwned"), b"x")],
    "dotdot-deep": [(info("a/../../sentinel/pwned"), b"x")],
    "dotdot-dir": [(info("a/b/../../../sentinel/", tarfile.DIRTYPE), None)],
    "symlink-to-root-then-file": [
        (info("evil", tarfile.SYMTYPE, linkname="/"), None),
        (info("evilSENTINEL/pwned"), b"root::0:0"),  # evil/<tmp>/sentinel/pwned
    ],
    "symlink-to-sentinel": [
        (info("evil", tarfile.SYMTYPE, linkname="SENTINEL"), None),
        (info("evil/pwned"), b"x"),
    ],
    "relative-symlink-out": [
        (info("evil", tarfile.SYMTYPE, linkname="../sentinel"), None),
        (info("evil/pwned", tarfile.SYMTYPE, linkname="x"), None),
    ],
    "hardlink-out": [(info("h", tarfile.LNKTYPE, linkname="../../sentinel/keep"), None)],
    "hardlink-through-symlink": [
        (info("evil", tarfile.SYMTYPE, linkname="SENTINEL"), None),
        (info("h", tarfile.LNKTYPE, linkname="evil/keep"), None),
    ],
    "whiteout-through-symlink": [
        (info("evil", tarfile.SYMTYPE, linkname="SENTINEL"), None),
        (info("evil/.wh.keep"), b""),
    ],
    "whiteout-dotdot-name": [(info("a/.wh.."), b"")],
    "opaque-through-symlink": [
        (info("evil", tarfile.SYMTYPE, linkname="SENTINEL"), None),
        (info("evil/.wh..wh..opq"), b""),
    ],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_layers_are_refused(box: Path, case: str) -> None:
    members = []
    for orig, data in HOSTILE[case]:
        link = orig.linkname.replace("SENTINEL", str(sentinel(box)))
        ti = info(orig.name.replace("SENTINEL", str(sentinel(box))), orig.type, linkname=link)
        members.append((ti, data))
    members.append((info("after"), b"never applied"))
    bad_name = members[-2][0].name
    with pytest.raises(HostileLayer, match=bad_name.split("/")[0].replace(".", r"\.")):
        apply(make_tar(members), box / "snap")
    assert leftovers(box) == []  # no snapshot, no staging directory


def test_symlink_planted_in_a_lower_layer(box: Path) -> None:
    apply(
        make_tar([(info("evil", tarfile.SYMTYPE, linkname=str(sentinel(box))), None)]),
        box / "lower",
    )
    tar = make_tar([(info("evil/pwned"), b"x")])
    with pytest.raises(HostileLayer, match="evil/pwned"):
        apply(tar, box / "snap", lower_dirs=[str(box / "lower")])
    tar = make_tar([(info("h", tarfile.LNKTYPE, linkname="evil/keep"), None)])
    with pytest.raises(HostileLayer, match="'h'"):
        apply(tar, box / "snap", lower_dirs=[str(box / "lower")])
    assert leftovers(box) == ["lower"]


_part = st.sampled_from(["a", "b", "..", ".", "", "sentinel", "keep", "é"])


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    parts=st.lists(_part, min_size=1, max_size=8).filter(lambda p: ".." in p),
    kind=st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE]),
    as_link=st.booleans(),
)
def test_random_names_with_dotdot_are_hostile(
    box: Path, parts: list[str], kind: bytes, as_link: bool
) -> None:
    hostile = "/".join(parts)
    members: list[Member] = [(info("keep"), b"k")]
    if as_link:
        members.append((info("l", tarfile.LNKTYPE, linkname=hostile), None))
    else:
        ti = info(hostile, kind, linkname="keep")
        members.append((ti, b"x" if kind == tarfile.REGTYPE else None))
    with pytest.raises(HostileLayer):
        apply(make_tar(members, tarfile.GNU_FORMAT), box / "snap")
    assert leftovers(box) == []


def test_digest_mismatch_leaves_nothing(box: Path) -> None:
    tar = make_tar([(info("a"), b"a")])
    with pytest.raises(CorruptLayer, match="does not match"):
        apply(tar, box / "snap", expected_diff_id="sha256:" + "0" * 64)
    assert leftovers(box) == []
    good = "sha256:" + hashlib.sha256(tar).hexdigest()
    assert apply(tar, box / "snap", expected_diff_id=good).diff_id == good


def test_truncated_layer_leaves_nothing(box: Path) -> None:
    tar = make_tar([(info(f"f{i}"), b"x" * 3000) for i in range(20)])
    for blob in (tar[: len(tar) // 2], gzip.compress(tar)[:-20]):
        with pytest.raises(CorruptLayer):
            apply(blob, box / "snap")
        assert leftovers(box) == []


def test_dest_must_not_exist(box: Path) -> None:
    (box / "snap").mkdir()
    with pytest.raises(AlreadyExists):
        apply(make_tar([]), box / "snap")
    with pytest.raises(InvalidArgument, match="whiteouts"):
        apply(make_tar([]), box / "other", whiteouts="aufs")


def test_whiteouts_remove_mode(box: Path) -> None:
    base = box / "flat"
    apply(
        make_tar([(info(p), b"lower") for p in ("a/x", "a/y", "b/z", "c/keep", "c/sub/old")]),
        base,
    )
    layer = make_tar(
        [
            (info("a/.wh.x"), b""),
            (info("b/.wh..wh..opq"), b""),
            (info("b/new"), b"upper"),
            (info("c/sub/", tarfile.DIRTYPE), None),
            (info("c/sub/fresh"), b"upper"),
            (info("c/.wh..wh..opq"), b""),  # after this layer's own members of c/
            (info(".wh.nothing-there"), b""),
        ]
    )
    result = apply_layer_in_place(
        io.BytesIO(layer), str(base), whiteouts="remove", preserve_owner=False
    )
    assert result.entries == 7
    found = sorted(str(p.relative_to(base)) for p in base.rglob("*"))
    assert found == ["a", "a/y", "b", "b/new", "c", "c/sub", "c/sub/fresh"]


def test_hardlink_to_a_lower_file_is_copied_up(box: Path) -> None:
    apply(make_tar([(info("usr/bin/tool", mode=0o751), b"binary")]), box / "lower")
    tar = make_tar([(info("usr/bin/alias", tarfile.LNKTYPE, linkname="usr/bin/tool"), None)])
    apply(tar, box / "snap", lower_dirs=[str(box / "lower")])
    tool, alias = box / "snap/usr/bin/tool", box / "snap/usr/bin/alias"
    assert tool.read_bytes() == b"binary"
    assert tool.stat().st_ino == alias.stat().st_ino
    assert stat.S_IMODE(tool.stat().st_mode) == 0o751
    assert tool.stat().st_ino != (box / "lower/usr/bin/tool").stat().st_ino
    missing = make_tar([(info("x", tarfile.LNKTYPE, linkname="no/such"), None)])
    with pytest.raises(CorruptLayer, match="not found"):
        apply(missing, box / "snap2", lower_dirs=[str(box / "lower")])


# --- make_layer, and random trees both ways --------------------------------------------

_names = st.text(st.sampled_from("abcé-_.~ "), min_size=1, max_size=6).filter(
    lambda s: s not in (".", "..") and not s.startswith(".wh.")
)
_leaf = st.one_of(
    st.tuples(st.just("file"), st.binary(max_size=2000), st.sampled_from([0o644, 0o600, 0o755])),
    st.tuples(st.just("symlink"), st.text(st.sampled_from("ab/."), min_size=1, max_size=12)),
)
_tree = st.recursive(
    _leaf,
    lambda kids: st.tuples(st.just("dir"), st.dictionaries(_names, kids, max_size=4)),
    max_leaves=25,
)


def build(root: Path, children: dict[str, Any], mtime: int) -> None:
    for name, node in children.items():
        path = root / name
        if node[0] == "file":
            path.write_bytes(node[1])
            path.chmod(node[2])
        elif node[0] == "symlink":
            path.symlink_to(node[1])
        else:
            path.mkdir()
            build(path, node[1], mtime + 1)
        os.utime(path, (mtime, mtime), follow_symlinks=False)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    tree=st.dictionaries(_names, _tree, max_size=5), comp=st.sampled_from(["none", "gzip", "zstd"])
)
def test_make_then_apply_round_trips(
    tmp_path_factory: pytest.TempPathFactory, tree: dict[str, Any], comp: str
) -> None:
    top = tmp_path_factory.mktemp("rt")
    (top / "src").mkdir()
    build(top / "src", tree, 1_500_000_000)
    first = io.BytesIO()
    diff_id, digest, size = make_layer(str(top / "src"), first, compression=comp)
    assert size == len(first.getvalue())
    assert digest == "sha256:" + hashlib.sha256(first.getvalue()).hexdigest()
    result = apply(first.getvalue(), top / "snap")
    assert result.diff_id == diff_id
    again = io.BytesIO()
    assert make_layer(str(top / "snap"), again, compression=comp)[0] == diff_id
    assert again.getvalue() == first.getvalue()  # deterministic, and nothing was lost


def test_make_layer_is_readable_by_tarfile(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d/f").write_bytes(b"data")
    os.link(src / "d/f", src / "d/g")
    (src / "s").symlink_to("/abs/target")
    (src / ("n" * 150)).write_bytes(b"")
    out = io.BytesIO()
    make_layer(str(src), out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        got = [(m.name, m.type) for m in tar.getmembers()]
    assert got == [
        ("d", tarfile.DIRTYPE),
        ("d/f", tarfile.REGTYPE),
        ("d/g", tarfile.LNKTYPE),
        ("n" * 150, tarfile.REGTYPE),
        ("s", tarfile.SYMTYPE),
    ]


# --- what a small layer costs --------------------------------------------------------


@pytest.mark.parametrize(("size", "thread"), [(10_000, False), (3 << 20, True)])
def test_prefetch_thread_only_for_a_layer_past_a_chunk(size: int, thread: bool) -> None:
    tar = make_tar([(info("f"), os.urandom(size))])
    source = LayerSource(io.BytesIO(gzip.compress(tar, compresslevel=1)))
    try:
        got = b""
        while chunk := source.read():
            got += chunk
        assert (source._thread is not None) == thread
    finally:
        source.close()
    assert got == tar and source.diff_id() == "sha256:" + hashlib.sha256(tar).hexdigest()


def test_lower_layers_are_opened_only_when_looked_at(box: Path) -> None:
    """A layer that never looks below does not open its (here missing) lowers."""
    tar = make_tar([(info("dir/", tarfile.DIRTYPE), None), (info("dir/f"), b"x")])
    missing = [str(box / f"lower{i}") for i in range(300)]
    (box / "up").mkdir()
    apply_layer_in_place(
        io.BytesIO(tar),
        str(box / "up"),
        lower_dirs=missing,
        whiteouts="remove",
        preserve_owner=False,
    )
    assert (box / "up/dir/f").read_bytes() == b"x"
    implicit = make_tar([(info("new/f"), b"y")])  # new/ is not listed: lowers are asked
    with pytest.raises(Internal, match="'new/f': no such file"):
        apply_layer_in_place(
            io.BytesIO(implicit),
            str(box / "up"),
            lower_dirs=missing,
            whiteouts="remove",
            preserve_owner=False,
        )
