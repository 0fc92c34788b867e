"""portside.distribution.client against FakeRegistry: manifests (digest checks, a
tampered one refused), blobs (resume with Range after a cut, restart when Range is
ignored, redirects), uploads (monolithic, chunked, mount), tags pagination, Docker's
pull messages, the token flow, endpoint fallback, and TLS with a certs.d CA."""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from portside import tls
from portside.distribution.auth import TokenCache
from portside.distribution.client import ALL_MANIFEST_TYPES, Registry
from portside.distribution.config import AuthConfig, RegistryConfig
from portside.distribution.errors import (
    BadContent,
    RegistryDenied,
    RegistryNotFound,
    RegistryTLSError,
    RegistryUnauthorized,
    RegistryUnavailable,
)
from portside.distribution.hosts import Endpoint
from portside.distribution.transport import Session
from portside.oci import mediatypes as mt
from portside.oci.digest import Digest
from portside.oci.image_spec import Descriptor
from portside.testing.fakeregistry import FakeRegistry

BIG = bytes(range(256)) * 12_000  # ~3 MiB: several 1 MiB reads


class Sink:
    """An in-memory BlobSink recording truncations."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.truncated = 0

    @property
    def offset(self) -> int:
        return len(self.data)

    def write(self, b: bytes) -> None:
        self.data += b

    def truncate(self) -> None:
        self.data.clear()
        self.truncated += 1


class Waits(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def reg() -> Iterator[FakeRegistry]:
    with FakeRegistry() as r:
        yield r


ANONYMOUS = AuthConfig()


def client(reg: FakeRegistry, auth: AuthConfig = ANONYMOUS, **kw: Any) -> Registry:
    kw.setdefault("sleep", Waits())
    return Registry(reg.host, RegistryConfig(), auth, **kw)


def image(reg: FakeRegistry, repo: str = "app", tag: str | None = "v1") -> tuple[bytes, str]:
    """A manifest with its config and one layer in ``repo``: (bytes, digest)."""
    config = reg.add_blob(repo, b'{"architecture":"amd64","os":"linux"}')
    layer = reg.add_blob(repo, BIG)
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": config, "size": 37},
        "layers": [{"mediaType": mt.OCI_LAYER_GZIP, "digest": layer, "size": len(BIG)}],
    }
    data = json.dumps(doc).encode()
    return data, reg.add_manifest(repo, data, mt.OCI_MANIFEST, tag=tag)


def blob_desc(data: bytes) -> Descriptor:
    return Descriptor.of(mt.OCI_LAYER_GZIP, data)


# --- manifests ------------------------------------------------------------------------------


def test_get_manifest_by_tag_and_digest(reg: FakeRegistry) -> None:
    data, digest = image(reg)
    r = client(reg)
    for ref in ("v1", digest):
        fetched = r.get_manifest("app", ref)
        assert (fetched.data, fetched.media_type, fetched.digest) == (data, mt.OCI_MANIFEST, digest)
    (first, *_) = reg.requests("GET", "/manifests/")
    assert first.headers["accept"] == ", ".join(ALL_MANIFEST_TYPES)
    desc = r.head_manifest("app", "v1")
    assert desc is not None and (desc.digest, desc.size, desc.media_type) == (
        digest,
        len(data),
        mt.OCI_MANIFEST,
    )
    assert r.head_manifest("app", "nope") is None


def test_tampered_manifest_is_refused(reg: FakeRegistry) -> None:
    data, digest = image(reg)
    evil = data.replace(b"amd64", b"arm64") + b" "
    reg.add_manifest(
        "app", evil, mt.OCI_MANIFEST, tag="v1", digest=digest
    )  # same digest, other bytes
    r = client(reg)
    for ref in ("v1", digest):
        with pytest.raises(BadContent, match=f"manifest {ref} of {reg.host}/app: digest mismatch"):
            r.get_manifest("app", ref)


def test_manifest_too_large(reg: FakeRegistry) -> None:
    reg.add_manifest("app", b"{" + b" " * (4 << 20) + b"}", mt.OCI_MANIFEST, tag="big")
    with pytest.raises(BadContent, match="more than the limit"):
        client(reg).get_manifest("app", "big")


def test_pull_messages_as_docker(reg: FakeRegistry) -> None:
    image(reg)
    r = client(reg)
    with pytest.raises(RegistryNotFound) as info:
        r.get_manifest("app", "nope")
    assert str(info.value) == (
        f"manifest for {reg.host}/app:nope not found: manifest unknown: manifest unknown"
    )
    with pytest.raises(RegistryNotFound) as info:
        r.get_manifest("other", "latest")
    assert str(info.value) == (
        f"pull access denied for {reg.host}/other, repository does not exist or may require "
        "'portside login': name unknown: repository name not known to registry"
    )
    reg.deny.add("app")
    with pytest.raises(RegistryDenied, match=f"^pull access denied for {reg.host}/app, "):
        r.get_manifest("app", "v1")
    with pytest.raises(RegistryNotFound, match=r"^name unknown"):  # a push says it plainly
        client(reg, push=True).tags("other")


def test_put_manifest(reg: FakeRegistry) -> None:
    data, _ = image(reg, tag=None)
    r = client(reg, push=True)
    digest = r.put_manifest("app", "v2", data, mt.OCI_MANIFEST)
    assert digest == str(Digest.of(data)) and reg.tags["app"]["v2"] == digest
    put = reg.requests("PUT", "/manifests/v2")[0]
    assert put.headers["content-type"] == mt.OCI_MANIFEST
    missing = data.replace(
        b'"layers": [',
        b'"layers": [{"mediaType": "x/y", "digest": "sha256:' + b"1" * 64 + b'", "size": 1}, ',
    )
    with pytest.raises(BadContent, match="manifest blob unknown"):
        r.put_manifest("app", "v3", missing, mt.OCI_MANIFEST)


def test_tags_follow_pagination(reg: FakeRegistry) -> None:
    reg.tags_page = 2
    for tag in ("e", "a", "c", "d", "b"):
        reg.add_manifest("app", b"{}", mt.OCI_MANIFEST, tag=tag)
    assert client(reg).tags("app") == ["a", "b", "c", "d", "e"]
    assert len(reg.requests("GET", "/tags/list")) == 3


# --- blobs ----------------------------------------------------------------------------------


def test_fetch_blob(reg: FakeRegistry) -> None:
    digest = reg.add_blob("app", BIG)
    sink, seen = Sink(), []
    client(reg).fetch_blob("app", blob_desc(BIG), sink, seen.append)
    assert bytes(sink.data) == BIG and Digest.of(bytes(sink.data)) == digest
    assert seen[-1] == len(BIG) and seen == sorted(seen) and len(seen) >= 3


def test_fetch_resumes_with_range_after_a_cut(reg: FakeRegistry) -> None:
    reg.add_blob("app", BIG)
    reg.cut_blob_after(1_500_000)
    sink, seen, waits = Sink(), [], Waits()
    client(reg, sleep=waits, backoff=0.01).fetch_blob("app", blob_desc(BIG), sink, seen.append)
    assert bytes(sink.data) == BIG and sink.truncated == 0 and waits == [0.01]
    first, second = reg.requests("GET", "/blobs/")
    assert "range" not in first.headers and first.status == 200
    assert second.headers["range"] == "bytes=1500000-" and second.status == 206
    assert seen[-1] == len(BIG) and seen == sorted(seen)


def test_fetch_restarts_when_range_is_ignored(reg: FakeRegistry) -> None:
    reg.add_blob("app", BIG)
    reg.cut_blob_after(1_500_000)
    reg.ignore_range = True
    sink, seen = Sink(), []
    client(reg).fetch_blob("app", blob_desc(BIG), sink, seen.append)
    assert bytes(sink.data) == BIG and sink.truncated == 1
    assert [r.status for r in reg.requests("GET", "/blobs/")] == [200, 200]
    assert 0 in seen and seen[-1] == len(BIG)


def test_fetch_continues_a_partial_sink(reg: FakeRegistry) -> None:
    reg.add_blob("app", BIG)
    sink = Sink()
    sink.write(BIG[:1000])
    client(reg).fetch_blob("app", blob_desc(BIG), sink, lambda n: None)
    assert bytes(sink.data) == BIG
    assert reg.requests("GET", "/blobs/")[0].headers["range"] == "bytes=1000-"


def test_fetch_gives_up_after_max_attempts(reg: FakeRegistry) -> None:
    reg.add_blob("app", BIG)
    reg.fail_next(503, 5, path="/blobs/")
    with pytest.raises(RegistryUnavailable, match="after 5 attempts"):
        client(reg).fetch_blob("app", blob_desc(BIG), Sink(), lambda n: None)


def test_fetch_checks_the_size(reg: FakeRegistry) -> None:
    reg.add_blob("app", BIG)
    short = Descriptor(media_type=mt.OCI_LAYER_GZIP, digest=Digest.of(BIG), size=100)
    with pytest.raises(BadContent, match="more than the 100 bytes"):
        client(reg).fetch_blob("app", short, Sink(), lambda n: None)
    long = Descriptor(media_type=mt.OCI_LAYER_GZIP, digest=Digest.of(BIG), size=len(BIG) + 1)
    with pytest.raises(BadContent, match=f"got {len(BIG)} bytes"):
        client(reg).fetch_blob("app", long, Sink(), lambda n: None)


def test_fetch_missing_blob(reg: FakeRegistry) -> None:
    image(reg)
    with pytest.raises(RegistryNotFound, match=r"blob sha256:.* not found: blob unknown"):
        client(reg).fetch_blob("app", blob_desc(b"other"), Sink(), lambda n: None)


def test_fetch_follows_a_redirect(reg: FakeRegistry) -> None:
    reg.add_blob("app", BIG)
    reg.redirect_blobs = True
    reg.cut_blob_after(2_000_000)
    sink = Sink()
    client(reg).fetch_blob("app", blob_desc(BIG), sink, lambda n: None)
    assert bytes(sink.data) == BIG
    assert [r.path.startswith("/_blobs/") for r in reg.log] == [False, True, False, True]


def test_blob_exists(reg: FakeRegistry) -> None:
    digest = reg.add_blob("app", b"12345")
    r = client(reg, push=True)
    assert r.blob_exists("app", digest) == 5
    assert r.blob_exists("other", digest) is None


# --- uploads ---------------------------------------------------------------------------------


def test_monolithic_upload(reg: FakeRegistry) -> None:
    desc = blob_desc(BIG)
    seen: list[int] = []
    client(reg, push=True).upload_blob("app", desc, lambda: io.BytesIO(BIG), seen.append)
    assert reg.blobs[desc.digest] == BIG and desc.digest in reg.repo_blobs["app"]
    assert [r.method for r in reg.log] == ["POST", "PUT"]
    assert reg.log[1].headers["content-length"] == str(len(BIG))
    assert seen[-1] == len(BIG) and seen == sorted(seen)


def test_chunked_upload(reg: FakeRegistry) -> None:
    desc = blob_desc(BIG)
    seen: list[int] = []
    client(reg, push=True).upload_blob(
        "app", desc, lambda: io.BytesIO(BIG), seen.append, chunk_size=1 << 20
    )
    assert reg.blobs[desc.digest] == BIG
    patches = reg.requests("PATCH")
    assert [r.method for r in reg.log] == ["POST", "PATCH", "PATCH", "PATCH", "PUT"]
    assert [p.headers["content-range"] for p in patches] == [
        "0-1048575",
        "1048576-2097151",
        f"2097152-{len(BIG) - 1}",
    ]
    assert reg.log[-1].headers["content-length"] == "0" and seen[-1] == len(BIG)


def test_chunks_grow_to_the_registry_minimum(reg: FakeRegistry) -> None:
    reg.chunk_min = 2 << 20
    desc = blob_desc(BIG)
    client(reg, push=True).upload_blob(
        "app", desc, lambda: io.BytesIO(BIG), lambda n: None, chunk_size=1000
    )
    assert len(reg.requests("PATCH")) == 2 and reg.blobs[desc.digest] == BIG


def test_upload_with_a_wrong_digest_is_refused(reg: FakeRegistry) -> None:
    desc = blob_desc(b"what was announced")
    with pytest.raises(BadContent, match="digest invalid"):
        client(reg, push=True).upload_blob(
            "app", desc, lambda: io.BytesIO(b"something else....."), lambda n: None
        )
    assert reg.blobs == {}


def test_upload_starts_over_after_a_failure(reg: FakeRegistry) -> None:
    reg.fail_next(503, 1, path="digest=")
    opened = []

    def open_() -> io.BytesIO:
        opened.append(1)
        return io.BytesIO(BIG)

    desc = blob_desc(BIG)
    client(reg, push=True).upload_blob("app", desc, open_, lambda n: None)
    assert len(opened) == 2 and reg.blobs[desc.digest] == BIG
    assert [r.method for r in reg.log] == ["POST", "PUT", "POST", "PUT"]


def test_mount(reg: FakeRegistry) -> None:
    digest = reg.add_blob("base", b"shared layer")
    r = client(reg, push=True)
    assert r.mount_blob("app", digest, "base") is True
    assert digest in reg.repo_blobs["app"]
    assert r.mount_blob("app2", "sha256:" + "2" * 64, "base") is False
    assert [r.method for r in reg.log] == ["POST", "POST", "DELETE"]
    assert reg._uploads == {}


# --- auth through the client -----------------------------------------------------------------


def test_bearer_tokens_reused_across_calls_and_registries() -> None:
    with FakeRegistry(auth="bearer", users={"alice": "pw"}) as reg:
        image(reg)
        cache = TokenCache()
        alice = AuthConfig("alice", "pw")
        r = client(reg, alice, cache=cache)
        r.get_manifest("app", "v1")
        r.fetch_blob("app", blob_desc(BIG), Sink(), lambda n: None)
        assert r.tags("app") == ["v1"]
        assert len(reg.token_requests) == 1
        assert reg.token_requests[0]["scopes"] == ["repository:app:pull"]
        assert [x.status for x in reg.log[:3]] == [401, 200, 200]  # challenge, token, retry
        client(reg, alice, cache=cache).get_manifest("app", "v1")  # the next pull
        assert len(reg.token_requests) == 1
        client(reg, alice).get_manifest("app", "v1")  # another cache
        assert len(reg.token_requests) == 2


def test_push_token_and_mount_scopes() -> None:
    with FakeRegistry(auth="bearer", users={"alice": "pw"}) as reg:
        digest = reg.add_blob("base", b"layer")
        r = client(reg, AuthConfig("alice", "pw"), push=True)
        assert r.mount_blob("app", digest, "base")
        assert reg.token_requests[-1]["scopes"] == [
            "repository:app:pull,push",
            "repository:base:pull",
        ]


def test_invalid_token_is_fetched_again() -> None:
    with FakeRegistry(auth="bearer", users={"alice": "pw"}) as reg:
        image(reg)
        r = client(reg, AuthConfig("alice", "pw"))
        r.get_manifest("app", "v1")
        reg.revoke_tokens()
        r.get_manifest("app", "v1")
        assert len(reg.token_requests) == 2


def test_bearer_refusals() -> None:
    with FakeRegistry(auth="bearer", users={"alice": "pw"}) as reg:
        image(reg)
        with pytest.raises(RegistryUnauthorized) as info:
            client(reg, AuthConfig("alice", "nope")).ping()
        assert str(info.value) == f"unauthorized: incorrect username or password ({reg.host})"
        with pytest.raises(
            RegistryUnauthorized, match=r"^pull access denied for .*authentication required"
        ):
            client(reg).get_manifest("app", "v1")  # anonymous: no rights
        reg.anonymous_pull = True
        assert client(reg).get_manifest("app", "v1").media_type == mt.OCI_MANIFEST


def test_identity_token_login() -> None:
    with FakeRegistry(auth="bearer", users={"alice": "pw"}) as reg:
        reg.refresh_tokens["refresh-1"] = "alice"
        client(reg, AuthConfig(identity_token="refresh-1")).ping()
        assert reg.token_requests[0]["method"] == "POST"
        with pytest.raises(RegistryUnauthorized):
            client(reg, AuthConfig(identity_token="stale")).ping()


def test_basic_auth_ping() -> None:
    with FakeRegistry(auth="basic", users={"alice": "pw"}) as reg:
        client(reg, AuthConfig("alice", "pw")).ping()
        with pytest.raises(
            RegistryUnauthorized, match=r"^unauthorized: authentication required \("
        ):
            client(reg, AuthConfig("alice", "no")).ping()
        with pytest.raises(RegistryUnauthorized):
            client(reg).ping()


# --- endpoints ------------------------------------------------------------------------------


def test_insecure_registry_falls_back_to_http_and_remembers(
    reg: FakeRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    image(reg)
    schemes: list[str] = []
    request = Session.request

    def spy(self: Session, *args: Any, **kw: Any) -> Any:
        schemes.append(self.endpoint.scheme)
        return request(self, *args, **kw)

    monkeypatch.setattr(Session, "request", spy)
    waits = Waits()
    r = client(reg, sleep=waits)  # loopback: https (unverified), then http
    assert [e.scheme for e in r.endpoints] == ["https", "http"]
    r.get_manifest("app", "v1")
    r.get_manifest("app", "v1")
    assert schemes == ["https", "http", "http"] and r.endpoint.scheme == "http"
    assert waits == []  # no retries of the https endpoint


def test_secure_registry_does_not_fall_back(reg: FakeRegistry) -> None:
    r = Registry(reg.host, RegistryConfig(), AuthConfig(), endpoints=[Endpoint(reg.host, "https")])
    with pytest.raises(RegistryTLSError, match="server gave HTTP response to HTTPS client"):
        r.ping()


def test_mirror_falls_back_to_the_hub() -> None:
    with FakeRegistry() as mirror, FakeRegistry() as hub:
        data, digest = image(hub, "library/busybox", "latest")
        eps = [Endpoint(mirror.host, "http", mirror=True), Endpoint(hub.host, "http")]
        r = Registry("docker.io", RegistryConfig(), AuthConfig(), endpoints=eps)
        assert r.get_manifest("library/busybox", "latest").digest == digest  # 404 on the mirror
        assert r.endpoint.host == hub.host
        image(mirror, "library/busybox", "latest")
        mirror.fail_next(503, 5)
        r = Registry("docker.io", RegistryConfig(), AuthConfig(), endpoints=eps, sleep=Waits())
        assert r.get_manifest("library/busybox", "latest").data == data
        with pytest.raises(RegistryNotFound, match=r"^manifest for busybox:nope not found"):
            r.get_manifest("library/busybox", "nope")


# --- TLS ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> str:
    d = tmp_path_factory.mktemp("pki")
    tls.init(str(d), ["127.0.0.1", "localhost"])
    return str(d)


def test_tls_verified_against_certs_d(pki: str, tmp_path: Any) -> None:
    certs = str(tmp_path / "certs.d")
    config = RegistryConfig(certs_dir=certs)
    tls_pair = (os.path.join(pki, "server-cert.pem"), os.path.join(pki, "server-key.pem"))
    with FakeRegistry(tls=tls_pair) as reg:
        image(reg)
        secure = [Endpoint(reg.host, "https")]
        with pytest.raises(RegistryTLSError) as info:
            Registry(reg.host, config, AuthConfig(), endpoints=secure).ping()
        assert str(info.value).startswith(f"tls: failed to verify certificate for {reg.host}: ")
        assert str(info.value).endswith(f"(add its CA to {certs}/{reg.host}/ca.crt)")

        os.makedirs(os.path.join(certs, reg.host))
        shutil.copy(os.path.join(pki, "ca.pem"), os.path.join(certs, reg.host, "ca.crt"))
        r = Registry(reg.host, config, AuthConfig(), endpoints=secure)
        sink = Sink()
        r.fetch_blob("app", blob_desc(BIG), sink, lambda n: None)
        assert bytes(sink.data) == BIG

        insecure = Registry(
            reg.host, RegistryConfig(certs_dir=str(tmp_path / "none")), AuthConfig()
        )
        insecure.ping()  # loopback: certificate not checked, https kept
        assert insecure.endpoint.scheme == "https"


def test_tls_cut_and_redirect(pki: str, tmp_path: Any) -> None:
    tls_pair = (os.path.join(pki, "server-cert.pem"), os.path.join(pki, "server-key.pem"))
    with FakeRegistry(tls=tls_pair) as reg:
        reg.add_blob("app", BIG)
        reg.cut_blob_after(1_200_000)
        reg.redirect_blobs = True
        sink = Sink()
        client(reg).fetch_blob("app", blob_desc(BIG), sink, lambda n: None)
        assert bytes(sink.data) == BIG


def test_schema1_is_returned_for_the_puller_to_refuse(reg: FakeRegistry) -> None:
    """A signed schema 1 digest covers the payload only: no mismatch error for it."""
    data = b'{"schemaVersion": 1, "name": "app", "signatures": []}'
    reg.add_manifest(
        "app", data, mt.DOCKER_SCHEMA1_SIGNED_MANIFEST, tag="old", digest="sha256:" + "5" * 64
    )
    fetched = client(reg).get_manifest("app", "old")
    assert fetched.media_type == mt.DOCKER_SCHEMA1_SIGNED_MANIFEST
    assert fetched.digest == Digest.of(data)


def test_media_type_from_the_document(reg: FakeRegistry) -> None:
    data, _ = image(reg, tag=None)
    reg.add_manifest("app", data, "application/json", tag="plain")
    assert client(reg).get_manifest("app", "plain").media_type == mt.OCI_MANIFEST
