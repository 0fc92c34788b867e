"""The distribution API (``server.make_app``) through aiohttp's test client: every
endpoint, every error code, the bad input of issue 6, authorisation through a fake
``Access`` and events into a recording ``EventSink``."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from portside.oci import mediatypes as mt
from portside.oci.digest import Digest
from portside.registry.config import RegistryConfig
from portside.registry.db import Database, sqlite_url
from portside.registry.interfaces import ANONYMOUS, AuthChallenge, OpenAccess, Principal
from portside.registry.names import fallback_tag
from portside.registry.server import make_app
from portside.registry.storage import Storage


class FakeAccess:
    """Basic ``user:any`` logs in as ``user``; ``Bearer user`` is a token of ``user``
    granting what ``tokens[user]`` says; ``rights[(user, repo)]`` what a user may do;
    repositories in ``public`` are pullable by anyone."""

    def __init__(self) -> None:
        self.rights: dict[tuple[str, str], set[str]] = {}
        self.tokens: dict[str, dict[str, frozenset[str]]] = {}
        self.public: set[str] = set()

    def authenticate(self, headers: Mapping[str, str], remote: str) -> Principal:
        value = headers.get("Authorization", "")
        scheme, _, cred = value.partition(" ")
        if scheme == "Basic":
            import base64

            user = base64.b64decode(cred).decode().partition(":")[0]
            return Principal(name=user, kind="user")
        if scheme == "Bearer":
            if cred not in self.tokens:
                raise AuthChallenge("invalid token", self.challenge([], "invalid_token"))
            return Principal(name=cred, kind="user", granted=self.tokens[cred])
        return ANONYMOUS

    def authorize(self, principal: Principal, repository: str, actions: set[str]) -> set[str]:
        if principal.granted:
            allowed = set(principal.granted.get(repository, ()))
        else:
            allowed = set(self.rights.get((principal.name, repository), set()))
            if repository in self.public:
                allowed.add("pull")
        return allowed & actions

    def challenge(self, scopes: Iterable[tuple[str, str, set[str]]], error: str = "") -> str:
        value = 'Bearer realm="http://auth.test/token",service="test"'
        wanted = " ".join(f"{t}:{n}:{','.join(sorted(a))}" for t, n, a in scopes)
        if wanted:
            value += f',scope="{wanted}"'
        return value + (f',error="{error}"' if error else "")

    def may_list(self, principal: Principal, repositories: Iterable[str]) -> list[str]:
        return [r for r in repositories if "pull" in self.authorize(principal, r, {"pull"})]

    def routes(self) -> list[tuple[str, str, Any]]:
        return []


class RecordingSink:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def publish(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def actions(self) -> list[tuple[str, str]]:
        return [(e["action"], e["target"].get("tag") or e["target"]["digest"]) for e in self.events]


class Env:
    def __init__(self, root: str, access: Any = None, **config: Any) -> None:
        self.config = RegistryConfig(root=root, auth="none", **config)
        self.storage = Storage(root, Database(sqlite_url(root)))
        self.access = access or OpenAccess()
        self.sink = RecordingSink()

    def run(self, body: Callable[[TestClient], Awaitable[Any]]) -> Any:
        async def main() -> Any:
            app = make_app(self.config, self.storage, self.access, self.sink)
            async with TestClient(TestServer(app)) as client:
                return await body(client)

        try:
            return asyncio.run(main())
        finally:
            self.storage.close()


@pytest.fixture
def env(tmp_path: Any) -> Env:
    return Env(str(tmp_path))


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return str(Digest.of(data, algorithm))


async def errors(resp: Any) -> list[str]:
    return [e["code"] for e in (await resp.json())["errors"]]


async def push_blob(c: TestClient, repo: str, data: bytes) -> str:
    digest = digest_of(data)
    r = await c.post(f"/v2/{repo}/blobs/uploads/?digest={digest}", data=data)
    assert r.status == 201, await r.text()
    return digest


async def push_image(
    c: TestClient, repo: str, tag: str | None = "v1", extra: dict[str, Any] | None = None
) -> tuple[str, bytes]:
    config = json.dumps({"architecture": "amd64", "os": "linux", "r": os.urandom(4).hex()})
    layer = os.urandom(2048)
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {
            "mediaType": mt.OCI_CONFIG,
            "digest": await push_blob(c, repo, config.encode()),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": mt.OCI_LAYER_GZIP,
                "digest": await push_blob(c, repo, layer),
                "size": len(layer),
            }
        ],
        **(extra or {}),
    }
    data = json.dumps(doc).encode()
    r = await c.put(
        f"/v2/{repo}/manifests/{tag or digest_of(data)}",
        data=data,
        headers={"Content-Type": mt.OCI_MANIFEST},
    )
    assert r.status == 201, await r.text()
    return r.headers["Docker-Content-Digest"], data


# --- base -----------------------------------------------------------------------------


def test_base_and_unknown_endpoints(env: Env) -> None:
    async def body(c: TestClient) -> None:
        for path in ("/v2/", "/v2"):
            r = await c.get(path)
            assert r.status == 200 and await r.json() == {}
            assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
        r = await c.get("/v2/app/nothing/here")
        assert r.status == 404 and await errors(r) == ["UNSUPPORTED"]
        assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
        r = await c.post("/v2/app/tags/list")
        assert r.status == 405 and await errors(r) == ["UNSUPPORTED"]

    env.run(body)


# --- blobs and uploads ------------------------------------------------------------------


def test_monolithic_upload_and_blob_reads(env: Env) -> None:
    data = os.urandom(100_000)

    async def body(c: TestClient) -> None:
        digest = digest_of(data)
        r = await c.post(f"/v2/team/app/blobs/uploads/?digest={digest}", data=data)
        assert r.status == 201
        assert r.headers["Location"] == f"/v2/team/app/blobs/{digest}"
        assert r.headers["Docker-Content-Digest"] == digest
        r = await c.get(f"/v2/team/app/blobs/{digest}")
        assert r.status == 200 and await r.read() == data
        assert r.headers["Docker-Content-Digest"] == digest
        assert r.headers["Content-Type"] == "application/octet-stream"
        r = await c.head(f"/v2/team/app/blobs/{digest}")
        assert r.status == 200 and r.headers["Content-Length"] == str(len(data))
        assert await r.read() == b""
        r = await c.get(f"/v2/team/app/blobs/{digest}", headers={"Range": "bytes=10-19"})
        assert r.status == 206 and await r.read() == data[10:20]
        assert r.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
        r = await c.get(f"/v2/team/app/blobs/{digest}", headers={"Range": "bytes=99990-"})
        assert r.status == 206 and await r.read() == data[99990:]
        for bad in (f"bytes={len(data)}-", "bytes=500000-600000", "bytes=abc", "bytes=5-2"):
            r = await c.get(f"/v2/team/app/blobs/{digest}", headers={"Range": bad})
            assert r.status == 416, bad
            assert r.headers["Content-Range"] == f"bytes */{len(data)}"
        # another repository cannot read it; an unknown blob is 404
        r = await c.get(f"/v2/other/blobs/{digest}")
        assert r.status == 404 and await errors(r) == ["BLOB_UNKNOWN"]
        r = await c.head(f"/v2/team/app/blobs/{digest_of(b'nothing')}")
        assert r.status == 404 and await r.read() == b""
        r = await c.get("/v2/team/app/blobs/sha256:abc")
        assert r.status == 400 and await errors(r) == ["DIGEST_INVALID"]
        r = await c.delete(f"/v2/team/app/blobs/{digest}")
        assert r.status == 202
        r = await c.get(f"/v2/team/app/blobs/{digest}")
        assert r.status == 404
        r = await c.delete(f"/v2/team/app/blobs/{digest}")
        assert r.status == 404 and await errors(r) == ["BLOB_UNKNOWN"]

    env.run(body)


def test_post_then_put_and_sha512(env: Env) -> None:
    data = b"a blob sent in the closing PUT"

    async def body(c: TestClient) -> None:
        r = await c.post("/v2/app/blobs/uploads/")
        assert r.status == 202
        location = r.headers["Location"]
        assert location.startswith("/v2/app/blobs/uploads/")
        assert r.headers["Range"] == "0-0"
        assert r.headers["Docker-Upload-UUID"] == location.rsplit("/", 1)[1]
        digest = digest_of(data, "sha512")
        r = await c.put(f"{location}?digest={digest}", data=data)
        assert r.status == 201 and r.headers["Docker-Content-Digest"] == digest
        r = await c.get(f"/v2/app/blobs/{digest}")
        assert await r.read() == data

    env.run(body)


def test_chunked_upload_with_content_range(env: Env) -> None:
    data = os.urandom(30_000)

    async def body(c: TestClient) -> None:
        r = await c.post("/v2/app/blobs/uploads/", headers={"Content-Length": "0"})
        url = r.headers["Location"]
        for start in range(0, 30_000, 10_000):
            end = start + 9_999
            r = await c.patch(
                url, data=data[start : end + 1], headers={"Content-Range": f"{start}-{end}"}
            )
            assert r.status == 202, await r.text()
            assert r.headers["Range"] == f"0-{end}"
            url = r.headers["Location"]
        r = await c.get(url)
        assert r.status == 204 and r.headers["Range"] == "0-29999"
        r = await c.put(f"{url}?digest={digest_of(data)}")
        assert r.status == 201
        r = await c.get(f"/v2/app/blobs/{digest_of(data)}")
        assert await r.read() == data

    env.run(body)


def test_bad_chunks_get_416_and_leave_the_upload_alone(env: Env) -> None:
    async def body(c: TestClient) -> None:
        r = await c.post("/v2/app/blobs/uploads/")
        url = r.headers["Location"]
        r = await c.patch(url, data=b"0123456789", headers={"Content-Range": "0-9"})
        assert r.status == 202
        cases = [
            ("20-29", b"x" * 10),  # a gap
            ("5-14", b"x" * 10),  # overlapping
            ("0-9", b"x" * 10),  # again
            ("10-19", b"x" * 5),  # the range says 10 bytes, 5 come
            ("12-10", b"x" * 3),  # backwards
            ("ten-twenty", b"x"),  # not a range
        ]
        for content_range, chunk in cases:
            r = await c.patch(url, data=chunk, headers={"Content-Range": content_range})
            assert r.status == 416, content_range
            assert await errors(r) == ["BLOB_UPLOAD_INVALID"]
            assert r.headers["Range"] == "0-9" and r.headers["Location"] == url
        r = await c.get(url)
        assert r.headers["Range"] == "0-9"
        r = await c.put(f"{url}?digest={digest_of(b'0123456789')}")
        assert r.status == 201

    env.run(body)


def test_streamed_patch_then_digest_mismatch(env: Env) -> None:
    async def body(c: TestClient) -> None:
        r = await c.post("/v2/app/blobs/uploads/")
        url = r.headers["Location"]

        async def chunks() -> Any:
            for _ in range(5):
                yield os.urandom(400_000)

        r = await c.patch(url, data=chunks())  # chunked transfer, no Content-Range
        assert r.status == 202 and r.headers["Range"] == "0-1999999"
        wrong = digest_of(b"something else")
        r = await c.put(f"{url}?digest={wrong}")
        assert r.status == 400 and await errors(r) == ["DIGEST_INVALID"]
        r = await c.head(f"/v2/app/blobs/{wrong}")
        assert r.status == 404
        r = await c.get(url)  # the session ended
        assert r.status == 404 and await errors(r) == ["BLOB_UPLOAD_UNKNOWN"]
        # monolithic with a wrong digest: nothing stored, no session left
        r = await c.post(f"/v2/app/blobs/uploads/?digest={wrong}", data=b"not it")
        assert r.status == 400 and await errors(r) == ["DIGEST_INVALID"]
        assert os.listdir(env.storage.upload_dir) == []
        assert not os.listdir(env.storage.blob_dir)

    env.run(body)


def test_upload_errors(env: Env) -> None:
    async def body(c: TestClient) -> None:
        r = await c.post("/v2/app/blobs/uploads/")
        url = r.headers["Location"]
        r = await c.put(url, data=b"x")
        assert r.status == 400 and await errors(r) == ["DIGEST_INVALID"]
        r = await c.put(f"{url}?digest=sha256:nope", data=b"x")
        assert r.status == 400 and await errors(r) == ["DIGEST_INVALID"]
        other = url.replace("/v2/app/", "/v2/other/")
        r = await c.patch(other, data=b"x")
        assert r.status == 404 and await errors(r) == ["BLOB_UPLOAD_UNKNOWN"]
        r = await c.delete(url)
        assert r.status == 204
        for method in ("GET", "PATCH", "PUT", "DELETE"):
            r = await c.request(method, f"{url}?digest={digest_of(b'')}")
            assert r.status == 404 and await errors(r) == ["BLOB_UPLOAD_UNKNOWN"], method
        r = await c.get("/v2/app/blobs/uploads/not-a-uuid")
        assert r.status == 404 and await errors(r) == ["BLOB_UPLOAD_UNKNOWN"]
        assert os.listdir(env.storage.upload_dir) == []

    env.run(body)


def test_truncated_upload_is_not_kept(env: Env) -> None:
    """A client that announces 100000 bytes and hangs up after 40000: the chunk is
    dropped and the session stays where it was."""

    async def body(c: TestClient) -> None:
        r = await c.post("/v2/app/blobs/uploads/")
        url = r.headers["Location"]
        r = await c.patch(url, data=b"first", headers={"Content-Range": "0-4"})
        assert r.status == 202
        _reader, writer = await asyncio.open_connection(c.server.host, c.server.port)
        writer.write(
            f"PATCH {url} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
            f"Content-Range: 5-100004\r\n\r\n".encode()
            + b"y" * 40_000
        )
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.close()
        for _ in range(50):
            await asyncio.sleep(0.05)
            r = await c.get(url)
            if r.headers["Range"] == "0-4":
                break
        assert r.headers["Range"] == "0-4"
        r = await c.put(f"{url}?digest={digest_of(b'first')}")
        assert r.status == 201

    env.run(body)


def test_mount(tmp_path: Any) -> None:
    access = FakeAccess()
    access.rights[("alice", "alice/app")] = {"pull", "push"}
    access.rights[("alice", "shared/base")] = {"pull"}
    access.rights[("admin", "private/secret")] = {"pull", "push"}
    env = Env(str(tmp_path), access)
    auth = {"Authorization": "Basic YWxpY2U6eA=="}  # alice
    admin = {"Authorization": "Basic YWRtaW46eA=="}

    async def body(c: TestClient) -> None:
        r = await c.post(
            f"/v2/shared/base/blobs/uploads/?digest={digest_of(b'base')}",
            data=b"base",
            headers={"Authorization": "Basic " + _b64("root")},
        )
        assert r.status == 403  # root has no rights at all
        access.rights[("root", "shared/base")] = {"push"}
        base = digest_of(b"base")
        r = await c.post(
            f"/v2/shared/base/blobs/uploads/?digest={base}",
            data=b"base",
            headers={"Authorization": "Basic " + _b64("root")},
        )
        assert r.status == 201
        secret = digest_of(b"secret")
        r = await c.post(
            f"/v2/private/secret/blobs/uploads/?digest={secret}", data=b"secret", headers=admin
        )
        assert r.status == 201
        r = await c.post(
            f"/v2/alice/app/blobs/uploads/?mount={base}&from=shared/base", headers=auth
        )
        assert r.status == 201 and r.headers["Docker-Content-Digest"] == base
        assert r.headers["Location"] == f"/v2/alice/app/blobs/{base}"
        # a private repository alice cannot read: an upload session, nothing linked
        r = await c.post(
            f"/v2/alice/app/blobs/uploads/?mount={secret}&from=private/secret", headers=auth
        )
        assert r.status == 202 and "/blobs/uploads/" in r.headers["Location"]
        r = await c.head(f"/v2/alice/app/blobs/{secret}", headers=auth)
        assert r.status == 404
        # a blob the source does not have: a session too
        r = await c.post(
            f"/v2/alice/app/blobs/uploads/?mount={secret}&from=shared/base", headers=auth
        )
        assert r.status == 202

    env.run(body)
    assert [(e["action"], e["target"]["repository"]) for e in env.sink.events] == [
        ("mount", "alice/app")
    ]
    assert env.sink.events[0]["actor"] == {"name": "alice"}


def _b64(user: str) -> str:
    import base64

    return base64.b64encode(f"{user}:x".encode()).decode()


# --- manifests ---------------------------------------------------------------------------


def test_manifest_push_pull_delete(env: Env) -> None:
    async def body(c: TestClient) -> None:
        digest, data = await push_image(c, "team/app", "v1")
        r = await c.get("/v2/team/app/manifests/v1", headers={"Accept": mt.OCI_MANIFEST})
        assert r.status == 200 and await r.read() == data
        assert r.headers["Content-Type"] == mt.OCI_MANIFEST
        assert r.headers["Docker-Content-Digest"] == digest == digest_of(data)
        r = await c.head(f"/v2/team/app/manifests/{digest}")
        assert r.status == 200 and r.headers["Content-Length"] == str(len(data))
        assert r.headers["Docker-Content-Digest"] == digest and await r.read() == b""
        r = await c.get("/v2/team/app/manifests/v2")
        assert r.status == 404 and await errors(r) == ["MANIFEST_UNKNOWN"]
        r = await c.get("/v2/nothing/manifests/v1")
        assert r.status == 404 and await errors(r) == ["NAME_UNKNOWN"]
        r = await c.get("/v2/team/app/manifests/bad..tag!")
        assert r.status == 400
        r = await c.delete("/v2/team/app/manifests/v1")  # the tag only
        assert r.status == 202
        r = await c.get("/v2/team/app/manifests/v1")
        assert r.status == 404
        r = await c.get(f"/v2/team/app/manifests/{digest}")
        assert r.status == 200
        r = await c.delete(f"/v2/team/app/manifests/{digest}")
        assert r.status == 202
        r = await c.get(f"/v2/team/app/manifests/{digest}")
        assert r.status == 404 and await errors(r) == ["MANIFEST_UNKNOWN"]
        r = await c.delete(f"/v2/team/app/manifests/{digest}")
        assert r.status == 404

    env.run(body)
    actions = [e["action"] for e in env.sink.events]
    assert actions == ["push", "tag", "pull", "delete", "pull", "delete"]
    push = env.sink.events[0]
    assert push["target"]["tag"] == "v1" and push["target"]["repository"] == "team/app"
    assert push["target"]["mediaType"] == mt.OCI_MANIFEST
    assert push["target"]["url"].endswith(f"/v2/team/app/manifests/{push['target']['digest']}")
    assert push["request"]["method"] == "PUT" and push["source"]["instanceID"]
    assert {"id", "timestamp", "actor"} <= set(push)


def test_manifest_put_checks(env: Env) -> None:
    async def body(c: TestClient) -> None:
        _digest, data = await push_image(c, "app", "v1")
        doc = json.loads(data)
        # a missing blob
        missing = dict(
            doc,
            layers=[
                *doc["layers"],
                {"mediaType": mt.OCI_LAYER, "digest": digest_of(b"missing"), "size": 7},
            ],
        )
        r = await c.put(
            "/v2/app/manifests/v2",
            data=json.dumps(missing),
            headers={"Content-Type": mt.OCI_MANIFEST},
        )
        assert r.status == 400 and await errors(r) == ["MANIFEST_BLOB_UNKNOWN"]
        # digest mismatch
        r = await c.put(
            f"/v2/app/manifests/{digest_of(b'x')}",
            data=data,
            headers={"Content-Type": mt.OCI_MANIFEST},
        )
        assert r.status == 400 and await errors(r) == ["DIGEST_INVALID"]
        # not JSON, wrong schema, schema 1
        for bad, ctype in (
            (b"{", mt.OCI_MANIFEST),
            (b'{"schemaVersion": 1}', mt.OCI_MANIFEST),
            (data, mt.DOCKER_SCHEMA1_MANIFEST),
            (data, "application/x-nope"),
        ):
            r = await c.put("/v2/app/manifests/v3", data=bad, headers={"Content-Type": ctype})
            assert r.status == 400 and await errors(r) == ["MANIFEST_INVALID"], bad[:20]
        r = await c.get("/v2/app/tags/list")
        assert (await r.json())["tags"] == ["v1"]

    env.run(body)


def test_manifest_size_limit(env: Env) -> None:
    limit = env.config.max_manifest_size
    assert limit == 4 << 20

    async def body(c: TestClient) -> None:
        _digest, data = await push_image(c, "app", "v1")
        doc = json.loads(data)
        doc["annotations"] = {"pad": "x" * (limit - len(data) - 100)}
        fits = json.dumps(doc).encode()
        assert len(fits) <= limit
        r = await c.put(
            "/v2/app/manifests/big", data=fits, headers={"Content-Type": mt.OCI_MANIFEST}
        )
        assert r.status == 201
        doc["annotations"] = {"pad": "x" * limit}
        over = json.dumps(doc).encode()
        r = await c.put(
            "/v2/app/manifests/over", data=over, headers={"Content-Type": mt.OCI_MANIFEST}
        )
        assert r.status == 413 and await errors(r) == ["SIZE_INVALID"]

        async def stream() -> Any:  # no Content-Length: cut off while reading
            for i in range(0, len(over), 65536):
                yield over[i : i + 65536]

        r = await c.put(
            "/v2/app/manifests/over", data=stream(), headers={"Content-Type": mt.OCI_MANIFEST}
        )
        assert r.status == 413
        r = await c.get("/v2/app/tags/list")
        assert (await r.json())["tags"] == ["big", "v1"]

    env.run(body)


def test_index_docker_types_and_artifacts(env: Env) -> None:
    async def body(c: TestClient) -> None:
        child, child_data = await push_image(c, "app", None)
        entry = {
            "mediaType": mt.OCI_MANIFEST,
            "digest": child,
            "size": len(child_data),
            "platform": {"architecture": "amd64", "os": "linux"},
        }
        for media_type in (mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST):
            doc = {"schemaVersion": 2, "mediaType": media_type, "manifests": [entry]}
            r = await c.put(
                f"/v2/app/manifests/{media_type.rsplit('.', 2)[-2]}",
                data=json.dumps(doc),
                headers={"Content-Type": media_type},
            )
            assert r.status == 201, await r.text()
        missing = dict(entry, digest=digest_of(b"nope"))
        doc = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [missing]}
        r = await c.put(
            "/v2/app/manifests/broken", data=json.dumps(doc), headers={"Content-Type": mt.OCI_INDEX}
        )
        assert r.status == 400 and await errors(r) == ["MANIFEST_BLOB_UNKNOWN"]
        # Docker schema 2
        cfg = await push_blob(c, "app", b"{}")
        layer = await push_blob(c, "app", b"layer")
        doc = {
            "schemaVersion": 2,
            "mediaType": mt.DOCKER_MANIFEST,
            "config": {"mediaType": mt.DOCKER_CONFIG, "digest": cfg, "size": 2},
            "layers": [
                {"mediaType": mt.DOCKER_LAYER_GZIP, "digest": layer, "size": 5},
                {
                    "mediaType": mt.DOCKER_FOREIGN_LAYER,
                    "digest": digest_of(b"win"),
                    "size": 3,
                    "urls": ["https://example.com/win"],
                },
            ],
        }
        r = await c.put(
            "/v2/app/manifests/docker",
            data=json.dumps(doc),
            headers={"Content-Type": mt.DOCKER_MANIFEST},
        )
        assert r.status == 201, await r.text()
        # an artifact: artifactType, the empty config, any layer type
        art = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "artifactType": "application/vnd.example.thing",
            "config": {"mediaType": mt.OCI_EMPTY, "digest": cfg, "size": 2},
            "layers": [{"mediaType": "text/plain", "digest": layer, "size": 5}],
        }
        r = await c.put(
            "/v2/app/manifests/artifact",
            data=json.dumps(art),
            headers={"Content-Type": mt.OCI_MANIFEST},
        )
        assert r.status == 201
        r = await c.get("/v2/app/manifests/list")
        assert r.headers["Content-Type"] == mt.DOCKER_MANIFEST_LIST

    env.run(body)


def test_referrers(env: Env) -> None:
    async def body(c: TestClient) -> None:
        subject, data = await push_image(c, "app", "v1")
        desc = {"mediaType": mt.OCI_MANIFEST, "digest": subject, "size": len(data)}
        cfg = await push_blob(c, "app", b"{}")
        art = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "artifactType": "application/vnd.example.sig",
            "subject": desc,
            "config": {"mediaType": mt.OCI_EMPTY, "digest": cfg, "size": 2},
            "layers": [],
            "annotations": {"k": "v"},
        }
        raw = json.dumps(art).encode()
        r = await c.put(
            f"/v2/app/manifests/{digest_of(raw)}",
            data=raw,
            headers={"Content-Type": mt.OCI_MANIFEST},
        )
        assert r.status == 201 and r.headers["OCI-Subject"] == subject
        r = await c.get(f"/v2/app/referrers/{subject}")
        assert r.status == 200 and r.headers["Content-Type"] == mt.OCI_INDEX
        index = await r.json()
        assert index["mediaType"] == mt.OCI_INDEX and index["schemaVersion"] == 2
        assert index["manifests"] == [
            {
                "mediaType": mt.OCI_MANIFEST,
                "digest": digest_of(raw),
                "size": len(raw),
                "artifactType": art["artifactType"],
                "annotations": {"k": "v"},
            }
        ]
        assert "OCI-Filters-Applied" not in r.headers
        r = await c.get(f"/v2/app/referrers/{subject}?artifactType=application/other")
        assert (await r.json())["manifests"] == []
        assert r.headers["OCI-Filters-Applied"] == "artifactType"
        r = await c.get(f"/v2/app/referrers/{digest_of(b'nothing')}")
        assert r.status == 200 and (await r.json())["manifests"] == []
        r = await c.get("/v2/app/referrers/sha256:bad")
        assert r.status == 400 and await errors(r) == ["DIGEST_INVALID"]
        r = await c.get(f"/v2/app/tags/list?n=10&last={fallback_tag(subject)}")
        assert (await r.json())["tags"] == ["v1"]

    env.run(body)


# --- names and listings ----------------------------------------------------------------------


async def raw(c: TestClient, method: str, path: str) -> tuple[int, bytes]:
    """A request with its path sent as it is (clients fold ``..`` away)."""
    reader, writer = await asyncio.open_connection(c.server.host, c.server.port)
    writer.write(
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Content-Length: 0\r\n\r\n".encode()
    )
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_invalid_names(env: Env) -> None:
    async def body(c: TestClient) -> None:
        for name in ("../x", "a/../../etc", "%2e%2e/x", "Upper/case", "x" * 300, "a//b", "-a"):
            for path in (
                f"/v2/{name}/manifests/latest",
                f"/v2/{name}/blobs/uploads/",
                f"/v2/{name}/tags/list",
                f"/v2/{name}/blobs/{digest_of(b'')}",
            ):
                method = "POST" if path.endswith("uploads/") else "GET"
                status, text = await raw(c, method, path)
                assert status == 400, (name, path)
                assert json.loads(text)["errors"][0]["code"] == "NAME_INVALID"
        assert os.listdir(env.storage.upload_dir) == []
        assert env.storage.repositories() == []

    env.run(body)


def test_tags_list_paging_and_a_huge_list(tmp_path: Any) -> None:
    env = Env(str(tmp_path), max_page=100)

    async def body(c: TestClient) -> None:
        _, _data = await push_image(c, "app", "seed")
        record = env.storage.manifest("app", "seed")
        names = [f"t{i:04d}" for i in range(2500)]
        await asyncio.to_thread(_many_tags, env.storage, record.digest, names)
        everything = sorted([*names, "seed"])
        r = await c.get("/v2/app/tags/list")  # no n: a page of max_page, and a Link
        page = await r.json()
        assert page["name"] == "app" and page["tags"] == everything[:100]
        assert r.headers["Link"] == f'</v2/app/tags/list?n=100&last={everything[99]}>; rel="next"'
        seen: list[str] = []
        url = "/v2/app/tags/list?n=1000"
        while url:
            r = await c.get(url)
            seen += (await r.json())["tags"]
            link = r.headers.get("Link")
            url = link[1 : link.index(">")] if link else ""
        assert seen == everything
        r = await c.get("/v2/app/tags/list?n=3&last=t0100")
        assert (await r.json())["tags"] == ["t0101", "t0102", "t0103"]
        r = await c.get("/v2/app/tags/list?n=0")
        assert (await r.json())["tags"] == [] and "Link" not in r.headers
        r = await c.get("/v2/app/tags/list?last=t2499")
        assert (await r.json())["tags"] == [] and "Link" not in r.headers
        r = await c.get("/v2/app/tags/list?n=-1")
        assert r.status == 400
        r = await c.get("/v2/nothing/tags/list")
        assert r.status == 404 and await errors(r) == ["NAME_UNKNOWN"]

    env.run(body)


def _many_tags(storage: Storage, digest: str, names: list[str]) -> None:
    from portside.registry.storage import tags

    with storage.db.begin() as conn:
        conn.execute(
            tags.insert(),
            [{"repository": "app", "name": n, "digest": digest, "updated": 0.0} for n in names],
        )


def test_catalog_paging_and_filter(tmp_path: Any) -> None:
    access = FakeAccess()
    access.public = {"pub/a", "pub/b", "pub/c"}
    for repo in ("pub/a", "pub/b", "pub/c", "priv/x", "priv/y"):
        access.rights[("root", repo)] = {"pull", "push"}
    env = Env(str(tmp_path), access)
    root = {"Authorization": "Basic " + _b64("root")}
    anon_token = {"Authorization": "Bearer anon"}
    access.tokens["anon"] = {}

    async def body(c: TestClient) -> None:
        for repo in ("pub/a", "priv/x", "pub/b", "priv/y", "pub/c"):
            r = await c.post(
                f"/v2/{repo}/blobs/uploads/?digest={digest_of(b'x')}", data=b"x", headers=root
            )
            assert r.status == 201
        r = await c.get("/v2/_catalog?n=2", headers=root)
        assert (await r.json())["repositories"] == ["priv/x", "priv/y"]
        assert r.headers["Link"] == '</v2/_catalog?n=2&last=priv%2Fy>; rel="next"'
        r = await c.get("/v2/_catalog?n=2&last=priv/y", headers=root)
        assert (await r.json())["repositories"] == ["pub/a", "pub/b"]
        r = await c.get("/v2/_catalog")  # no credentials at all: the challenge
        assert r.status == 401 and "registry:catalog:*" in r.headers["WWW-Authenticate"]
        r = await c.get("/v2/_catalog?n=2", headers=anon_token)
        assert (await r.json())["repositories"] == ["pub/a", "pub/b"]
        r = await c.get("/v2/_catalog?n=2&last=pub/b", headers=anon_token)
        assert (await r.json())["repositories"] == ["pub/c"] and "Link" not in r.headers

    env.run(body)


# --- authorisation ------------------------------------------------------------------------


def test_challenges_and_refusals(tmp_path: Any) -> None:
    access = FakeAccess()
    access.rights[("alice", "alice/app")] = {"pull", "push", "delete"}
    access.tokens["alice"] = {"alice/app": frozenset({"pull"})}
    env = Env(str(tmp_path), access)

    async def body(c: TestClient) -> None:
        r = await c.get("/v2/")
        assert r.status == 401 and await errors(r) == ["UNAUTHORIZED"]
        assert (
            r.headers["WWW-Authenticate"] == 'Bearer realm="http://auth.test/token",service="test"'
        )
        r = await c.get("/v2/", headers={"Authorization": "Basic " + _b64("alice")})
        assert r.status == 200
        # anonymous: a challenge naming the scope, whether the repository exists or not
        for repo in ("alice/app", "alice/none"):
            r = await c.get(f"/v2/{repo}/manifests/latest")
            assert r.status == 401
            assert r.headers["WWW-Authenticate"].endswith(f'scope="repository:{repo}:pull"')
        r = await c.post("/v2/alice/app/blobs/uploads/")
        assert 'scope="repository:alice/app:pull,push"' in r.headers["WWW-Authenticate"]
        # a token that falls short: insufficient_scope
        r = await c.post("/v2/alice/app/blobs/uploads/", headers={"Authorization": "Bearer alice"})
        assert r.status == 401 and 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]
        r = await c.get("/v2/alice/app/tags/list", headers={"Authorization": "Bearer bogus"})
        assert r.status == 401 and 'error="invalid_token"' in r.headers["WWW-Authenticate"]
        # a user without rights: 403 DENIED, the same for an existing or a missing repo
        bob = {"Authorization": "Basic " + _b64("bob")}
        for repo in ("alice/app", "alice/none"):
            r = await c.get(f"/v2/{repo}/tags/list", headers=bob)
            assert r.status == 403 and await errors(r) == ["DENIED"]
        r = await c.delete(f"/v2/alice/app/manifests/{digest_of(b'x')}", headers=bob)
        assert r.status == 403
        alice = {"Authorization": "Basic " + _b64("alice")}
        r = await c.get("/v2/alice/app/tags/list", headers=alice)
        assert r.status == 404 and await errors(r) == ["NAME_UNKNOWN"]

    env.run(body)


def test_errors_from_access_are_rendered(tmp_path: Any) -> None:
    """An Access error with a code and status of its own (reg-auth's RateLimited)."""
    from portside.errors import PermissionDenied

    class RateLimited(PermissionDenied):
        code, status, retry_after = "TOOMANYREQUESTS", 429, 30

    class LimitedAccess(FakeAccess):
        def authenticate(self, headers: Mapping[str, str], remote: str) -> Principal:
            raise RateLimited("too many failed logins")

    env = Env(str(tmp_path), LimitedAccess())

    async def body(c: TestClient) -> None:
        r = await c.get("/v2/app/tags/list")
        assert r.status == 429 and await errors(r) == ["TOOMANYREQUESTS"]
        assert r.headers["Retry-After"] == "30"

    env.run(body)


# --- configuration ------------------------------------------------------------------------


def test_config_layers_and_checks(tmp_path: Any) -> None:
    from portside.errors import InvalidArgument
    from portside.registry.config import build_config

    assert build_config().auth == "token" and build_config().max_manifest_size == 4 << 20
    toml = tmp_path / "r.toml"
    toml.write_text('addr = "0.0.0.0:5001"\nmax-manifest-size = 8388608\nauth = "none"\n')
    config = build_config({"auth": "token", "root": "rel"}, str(toml))
    assert (config.addr, config.max_manifest_size, config.auth) == (
        "0.0.0.0:5001",
        8 << 20,
        "token",
    )
    assert config.root == os.path.abspath("rel") and config.listen() == ("0.0.0.0", 5001)
    js = tmp_path / "r.json"
    js.write_text(json.dumps({"external_url": "https://reg.example.com/", "token_ttl": 600}))
    config = build_config({}, str(js))
    assert config.external_url == "https://reg.example.com"
    assert config.external_host == "reg.example.com" and config.token_ttl == 600
    for bad in (
        {"nope": 1},
        {"token_ttl": "600"},
        {"webhooks": 1},
        {"max_page": True},
        {"webhook_backoff": 0},
        {"webhook_attempts": -1},
        {"max_manifest_size": 1000},
        {"auth": "basic"},
        {"addr": "localhost"},
        {"tls_cert": "c.pem"},
        {"external_url": "reg.example.com"},
    ):
        js.write_text(json.dumps(bad))
        with pytest.raises(InvalidArgument):
            build_config({}, str(js))
    with pytest.raises(InvalidArgument, match="cannot read"):
        build_config({}, str(tmp_path / "missing.json"))
    config = RegistryConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.addr = "x"  # type: ignore[misc]


def test_cli_takes_common_options_anywhere() -> None:
    from portside.registry.cli import _split_common

    common, rest = _split_common(
        [
            "user",
            "add",
            "bob",
            "--root",
            "/r",
            "--db=sqlite:///x",
            "--password-stdin",
            "--config",
            "c.json",
        ]
    )
    assert common == {"root": "/r", "db": "sqlite:///x", "config": "c.json"}
    assert rest == ["user", "add", "bob", "--password-stdin"]
