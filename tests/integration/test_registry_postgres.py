"""Scaling out: two ``portside registry serve`` processes sharing one PostgreSQL (Debian's,
started here in a temporary directory on a free port) and one storage root. What one
stores the other serves; an upload started on one is finished on the other; pushes
of the same image to both at once; garbage collection over PostgreSQL. Skipped, with
the reason, where PostgreSQL cannot start.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from portside.registry.db import Database
from portside.registry.storage import Storage
from portside.testing.registry import OCILayout, layer_tar
from portside.testing.registryserver import PostgresServer, RegistryServer, postgres_unavailable

TLS_OFF = ("--src-tls-verify=false", "--dest-tls-verify=false")


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    reason = postgres_unavailable()
    if reason is not None:
        pytest.skip(reason)
    server = PostgresServer()
    try:
        server.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        server.stop()
        pytest.skip(f"PostgreSQL did not start: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def db_url(pg: PostgresServer) -> str:
    return pg.create_database(f"reg_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def pair(tmp_path: Any, db_url: str) -> Iterator[tuple[RegistryServer, RegistryServer]]:
    root = str(tmp_path / "shared")
    a = RegistryServer(str(tmp_path), auth="none", root=root, db_url=db_url)
    b = RegistryServer(str(tmp_path), auth="none", root=root, db_url=db_url)
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        a.close()
        b.close()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_what_one_stores_the_other_serves(pair: tuple[RegistryServer, RegistryServer]) -> None:
    a, b = pair
    assert "store postgresql+psycopg://postgres@127.0.0.1" in a.log()
    data = os.urandom(200_000)
    status, _, _ = a.request(
        "POST", f"/v2/team/app/blobs/uploads/?digest={sha256(data)}", body=data
    )
    assert status == 201
    status, _, body = b.request("GET", f"/v2/team/app/blobs/{sha256(data)}")
    assert status == 200 and body == data
    # an upload started on one, continued and finished on the other (the hash rebuilt)
    status, headers, _ = a.request("POST", "/v2/team/app/blobs/uploads/")
    session = headers["location"]
    first, second = os.urandom(70_000), os.urandom(30_000)
    status, _, _ = a.request("PATCH", session, body=first, headers={"Content-Range": "0-69999"})
    assert status == 202
    status, headers, _ = b.request("GET", session)
    assert status == 204 and headers["range"] == "0-69999"
    status, headers, _ = b.request(
        "PATCH", session, body=second[:10], headers={"Content-Range": "0-9"}
    )
    assert status == 416 and headers["range"] == "0-69999"
    digest = sha256(first + second)
    status, _, _ = b.request(
        "PUT", f"{session}?digest={digest}", body=second, headers={"Content-Range": "70000-99999"}
    )
    assert status == 201
    status, _, body = a.request("GET", f"/v2/team/app/blobs/{digest}")
    assert body == first + second
    status, _, body = b.request("GET", "/v2/_catalog")
    assert json.loads(body) == {"repositories": ["team/app"]}


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="needs skopeo (apt-get install skopeo)")
def test_pushes_to_both_at_once(pair: tuple[RegistryServer, RegistryServer], tmp_path: Any) -> None:
    a, b = pair
    layout = OCILayout(str(tmp_path / "oci"))
    layers = [layer_tar({f"f{i}": os.urandom(300_000)}) for i in range(4)]
    image = layout.image(layers, name="app:1")
    errors: list[str] = []

    def copy(server: RegistryServer, tag: str) -> None:
        proc = subprocess.run(
            [
                "skopeo",
                "copy",
                *TLS_OFF,
                f"oci:{layout.path}:1",
                f"docker://{server.host}/app:{tag}",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if proc.returncode != 0:
            errors.append(proc.stderr)

    threads = [threading.Thread(target=copy, args=(s, t)) for s, t in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for server in (a, b):
        status, _, body = server.request("GET", "/v2/app/tags/list")
        assert json.loads(body)["tags"] == ["a", "b"]
        for tag in ("a", "b"):
            status, headers, _ = server.request("HEAD", f"/v2/app/manifests/{tag}")
            assert status == 200 and headers["docker-content-digest"] == image["digest"]
    back = str(tmp_path / "back")
    subprocess.run(
        ["skopeo", "copy", *TLS_OFF, f"docker://{b.host}/app:a", f"oci:{back}:1"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    # one copy of each blob in the shared store
    blob_files = [n for _, _, names in os.walk(os.path.join(a.root, "blobs")) for n in names]
    assert len(blob_files) == len(set(blob_files)) == 4 + 2  # layers, config, manifest
    assert os.listdir(os.path.join(a.root, "uploads")) == []


def test_gc_and_storage_on_postgres(pair: tuple[RegistryServer, RegistryServer]) -> None:
    a, b = pair
    data = b"loose blob"
    a.request("POST", f"/v2/app/blobs/uploads/?digest={sha256(data)}", body=data)
    dry = b.admin("gc", "--dry-run", "--grace", "0").stdout
    assert f"would remove blob {sha256(data)}" in dry
    b.admin("gc", "--grace", "0")
    status, _, _ = a.request("HEAD", f"/v2/app/blobs/{sha256(data)}")
    assert status == 404


def test_tags_sort_byte_by_byte_on_postgres(db_url: str, tmp_path: Any) -> None:
    """PostgreSQL sorts text by its collation: tags and names still come in byte order."""
    storage = Storage(str(tmp_path / "root"), Database(db_url))
    try:
        config = b'{"architecture":"amd64","os":"linux"}'
        uuid_ = storage.start_upload("app")
        writer = storage.open_writer("app", uuid_, 0)
        writer.write(config)
        writer.finish(sha256(config))
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": sha256(config),
                    "size": len(config),
                },
                "layers": [],
            }
        ).encode()
        names = ["b", "B", "_x", "a-1", "a.1", "A", "1", "a_1"]
        for name in names:
            storage.put_manifest("app", name, manifest, "")
        assert storage.tags("app") == sorted(names)
        assert (
            storage.tags("app", last="B", limit=2)
            == sorted(names)[sorted(names).index("B") + 1 :][:2]
        )
    finally:
        storage.close()
