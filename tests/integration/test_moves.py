"""Import, export and commit (``portside.image.moves``): the ``--change`` parser as a
table, and the three moves on the real kernel with the overlay and vfs snapshotters."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mount_helpers import mounts_under, scratch_root

from portside.errors import InvalidArgument
from portside.image.base import make_busybox_image
from portside.image.content import ContentStore
from portside.image.moves import (
    apply_changes,
    commit_container,
    export_container,
    import_rootfs,
    parse_change,
)
from portside.image.snapshots import SnapshotterBase, mount_all, open_snapshotter, unmount_all
from portside.image.store import Image, ImageStore
from portside.image.unpack import prepare_container_rootfs, unpack
from portside.oci import mediatypes as mt
from portside.testing import busybox_available
from portside.testing.busybox import INSTALL_HINT

needs_busybox = pytest.mark.skipif(
    not busybox_available(), reason=f"needs a static busybox: {INSTALL_HINT}"
)

# --- parse_change / apply_changes (pure) ---------------------------------------------


@pytest.mark.parametrize(
    ("line", "want"),
    [
        ('CMD ["sh"]', ("CMD", "sh")),
        ("cmd echo hi there", ("CMD", "/bin/sh", "-c", "echo hi there")),
        ('ENTRYPOINT ["/bin/app", "-x"]', ("ENTRYPOINT", "/bin/app", "-x")),
        ("ENTRYPOINT [not json", ("ENTRYPOINT", "/bin/sh", "-c", "[not json")),
        ("ENV A=b", ("ENV", "A=b")),
        ('ENV A=b C="d e" F=g\\ h', ("ENV", "A=b", "C=d e", "F=g h")),
        ("ENV K some value", ("ENV", "K=some value")),
        ("EXPOSE 80 53/UDP 8000-8001", ("EXPOSE", "80/tcp", "53/udp", "8000/tcp", "8001/tcp")),
        ('LABEL a=1 "b c"=2', ("LABEL", "a=1", "b c=2")),
        ("ONBUILD RUN make", ("ONBUILD", "RUN make")),
        ("USER nobody:nogroup", ("USER", "nobody:nogroup")),
        ('VOLUME ["/data", "/logs"]', ("VOLUME", "/data", "/logs")),
        ("VOLUME /a /b", ("VOLUME", "/a", "/b")),
        ("WORKDIR /srv", ("WORKDIR", "/srv")),
        ("STOPSIGNAL SIGKILL", ("STOPSIGNAL", "SIGKILL")),
        ("STOPSIGNAL 9", ("STOPSIGNAL", "9")),
    ],
)
def test_parse_change(line: str, want: tuple[str, ...]) -> None:
    assert parse_change(line) == want


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("FROM busybox", "FROM is not a valid change command"),
        ("RUN echo hi", "RUN is not a valid change command"),
        ("copy a b", "copy is not a valid change command"),
        ("", "empty change"),
        ("ENV", "ENV requires at least one argument"),
        ("ENV =x", "names can not be blank"),
        ("EXPOSE http", "invalid containerPort: http"),
        ("EXPOSE 70000", "invalid port specification"),
        ("ONBUILD ONBUILD RUN x", "ONBUILD isn't allowed as an ONBUILD trigger"),
        ("STOPSIGNAL SIGNOPE", "invalid signal: SIGNOPE"),
        ("USER", "USER requires exactly one argument"),
        ('ENV A="open', "unterminated quote"),
    ],
)
def test_parse_change_refuses(line: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_change(line)


def test_apply_changes() -> None:
    base = {"Env": ["PATH=/bin", "A=old"], "Cmd": ["sh"], "WorkingDir": "/srv"}
    out = apply_changes(
        base,
        [
            "ENV A=new B=2",
            "EXPOSE 80",
            "LABEL x=y",
            "WORKDIR app",
            "VOLUME /data",
            "USER 1000",
            "ONBUILD RUN make\n# a comment\n\nSTOPSIGNAL TERM",
        ],
    )
    assert out["Env"] == ["PATH=/bin", "A=new", "B=2"]
    assert out["ExposedPorts"] == {"80/tcp": {}}
    assert out["Labels"] == {"x": "y"}
    assert out["WorkingDir"] == "/srv/app"
    assert out["Volumes"] == {"/data": {}}
    assert (out["User"], out["OnBuild"], out["StopSignal"]) == ("1000", ["RUN make"], "TERM")
    assert base == {"Env": ["PATH=/bin", "A=old"], "Cmd": ["sh"], "WorkingDir": "/srv"}
    # an ENTRYPOINT clears the Cmd, unless a CMD was given before it
    assert apply_changes(base, ["ENTRYPOINT top"])["Cmd"] is None
    both = apply_changes(base, ['CMD ["-b"]', 'ENTRYPOINT ["top"]'])
    assert (both["Entrypoint"], both["Cmd"]) == (["top"], ["-b"])
    with pytest.raises(InvalidArgument, match="MAINTAINER is not a valid change command"):
        apply_changes(base, ["ENV A=b", "MAINTAINER me"])


_KEY = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_", min_size=1, max_size=8)
_VALUE = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=12)


@given(st.dictionaries(_KEY, _VALUE, min_size=1, max_size=5))
def test_env_round_trips_through_json_quoting(env: dict[str, str]) -> None:
    import json

    # json.dumps quotes with the two escapes the word splitter undoes: \" and \\
    line = "ENV " + " ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in env.items())
    assert parse_change(line) == ("ENV", *(f"{k}={v}" for k, v in env.items()))


# --- the moves on the real kernel ------------------------------------------------------


@pytest.fixture
def tmp_root() -> Iterator[str]:
    with scratch_root("ps-moves-") as path:
        yield path


@pytest.fixture
def stores(tmp_root: str) -> tuple[ContentStore, ImageStore]:
    content = ContentStore(os.path.join(tmp_root, "content"))
    return content, ImageStore(os.path.join(tmp_root, "images"), content)


@pytest.fixture(params=["overlay", "vfs"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _container(
    stores: tuple[ContentStore, ImageStore], tmp_root: str, kind: str
) -> tuple[Image, SnapshotterBase]:
    """The busybox image, and a container snapshot ``ctr`` on it in which /hello was
    written and /etc/hostname deleted."""
    content, store = stores
    image = make_busybox_image(content, store)
    sn = open_snapshotter(os.path.join(tmp_root, "snapshots"), kind=kind)
    unpack(image, content, sn)
    mounts = prepare_container_rootfs(image, sn, "ctr")
    rootfs = os.path.join(tmp_root, "rootfs")
    os.mkdir(rootfs)
    mount_all(mounts, rootfs)
    try:
        assert os.path.exists(os.path.join(rootfs, "etc", "hostname"))
        with open(os.path.join(rootfs, "hello"), "w") as f:
            f.write("hello\n")
        os.unlink(os.path.join(rootfs, "etc", "hostname"))
    finally:
        unmount_all(rootfs)
    return image, sn


def _tar_names(data: bytes) -> set[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name.rstrip("/") for m in tar.getmembers()}


@pytest.mark.root
@needs_busybox
def test_commit_adds_the_rw_layer(
    stores: tuple[ContentStore, ImageStore], tmp_root: str, kind: str
) -> None:
    content, store = stores
    image, sn = _container(stores, tmp_root, kind)
    new = commit_container(
        content,
        store,
        sn,
        "ctr",
        image,
        changes=["ENV A=b", "EXPOSE 8080"],
        tag="committed:1",
        author="me",
        message="added hello",
    )
    assert store.get("committed:1").id == new.id
    assert len(new.layers) == 2 and new.layers[0].digest == image.layers[0].digest
    assert new.layers[1].media_type == mt.OCI_LAYER_GZIP
    import json

    doc = json.loads(new.config)
    assert doc["author"] == "me"
    assert doc["history"][-1]["comment"] == "added hello"
    assert "A=b" in doc["config"]["Env"] and doc["config"]["Cmd"] == ["sh"]
    assert doc["config"]["ExposedPorts"] == {"8080/tcp": {}}
    assert store.check(verify_layers=True) == []
    # the layer itself: the new file and a whiteout, not the whole tree
    names = _tar_names(gzip.decompress(content.read(new.layers[1].digest)))
    assert {"hello", "etc/.wh.hostname"} <= names and "bin/busybox" not in names
    # unpacked in a fresh snapshotter root, it shows the change
    fresh = open_snapshotter(os.path.join(tmp_root, "fresh"), kind=kind)
    unpack(new, content, fresh)
    view = os.path.join(tmp_root, "view")
    os.mkdir(view)
    mount_all(fresh.view("look", parent=new.layers[-1].chain_id), view)
    try:
        with open(os.path.join(view, "hello")) as f:
            assert f.read() == "hello\n"
        assert not os.path.exists(os.path.join(view, "etc", "hostname"))
        assert os.access(os.path.join(view, "bin", "busybox"), os.X_OK)
    finally:
        unmount_all(view)


@pytest.mark.root
@needs_busybox
def test_export_then_import(
    stores: tuple[ContentStore, ImageStore], tmp_root: str, kind: str
) -> None:
    content, store = stores
    _, sn = _container(stores, tmp_root, kind)
    out = io.BytesIO()
    digest, size = export_container(sn, "ctr", out)
    data = out.getvalue()
    assert size == len(data) > 0 and data[:2] != b"\x1f\x8b"
    names = _tar_names(data)
    assert {"bin/busybox", "hello"} <= names
    assert "etc/hostname" not in names and not any(".wh." in n for n in names)
    assert mounts_under(tmp_root) == []  # the export's mount is gone

    image = import_rootfs(
        content, store, io.BytesIO(data), changes=['CMD ["sh"]', "ENV A=b"], tag="imported"
    )
    import json

    doc = json.loads(image.config)
    assert doc["config"]["Cmd"] == ["sh"] and doc["config"]["Env"] == ["A=b"]
    assert doc["os"] == "linux" and doc["rootfs"]["diff_ids"] == [digest]
    assert doc["history"] == [{"created": doc["created"], "comment": "Imported from -"}]
    assert store.get("imported").id == image.id
    (layer,) = image.layers
    assert (layer.media_type, layer.digest, layer.diff_id) == (mt.OCI_LAYER, digest, digest)
    assert content.read(layer.digest) == data  # the bytes are kept
    # gzip bytes are kept too, with the same diffID
    blob = gzip.compress(data, mtime=0)
    again = import_rootfs(content, store, io.BytesIO(blob))
    assert again.layers[0].media_type == mt.OCI_LAYER_GZIP
    assert again.layers[0].diff_id == digest and content.read(again.layers[0].digest) == blob
    assert store.check(verify_layers=True) == []
    assert content.leases() == []


def test_import_refuses_a_non_tar(tmp_root: str) -> None:
    content = ContentStore(os.path.join(tmp_root, "content"))
    store = ImageStore(os.path.join(tmp_root, "images"), content)
    with pytest.raises(InvalidArgument, match="not a valid tar archive"):
        import_rootfs(content, store, io.BytesIO(b"not a tarball" * 100))
    with pytest.raises(InvalidArgument, match="FROM is not a valid change command"):
        import_rootfs(content, store, io.BytesIO(b""), changes=["FROM scratch"])
    assert store.images() == [] and content.leases() == []
