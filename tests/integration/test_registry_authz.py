"""Who may do what on a ``portside registry serve --auth token`` process, through the
real token flow over HTTP (the request, its 401 challenge, ``GET /token`` with Basic
credentials or none, the retry with the bearer token), as docker and skopeo do it.

The authorization matrix: anonymous, a reader, a writer and an admin of organization
``acme`` (teams with those roles on the namespace), a member of another
organization's team, and the registry's admin; by pull, push, delete, mount, catalog
on the public ``acme/public`` and the private ``acme/private`` — every cell asserted,
and where refused, nothing stored and nothing shown. Then skopeo with ``--creds``,
Portside's own client, personal access tokens and robots, forged tokens, and Debian's
``docker-registry`` (distribution 2.8) trusting tokens signed by our key (the ``kid``).

Needs no root: everything runs as processes on 127.0.0.1 with temporary roots.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from urllib.parse import urlencode, urlsplit

import pytest

from portside.distribution.auth import parse_challenges
from portside.registry.accounts import Accounts
from portside.registry.db import Database, sqlite_url
from portside.registry.tokens import TokenService
from portside.testing.registry import DockerRegistry, OCILayout, layer_tar, registry_unavailable
from portside.testing.registryserver import PostgresServer, RegistryServer, postgres_unavailable

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
PASSWORD = "pw-for-tests"
USERS = {
    "reader": "reader",
    "writer": "writer",
    "admin": "boss",  # the admin team of acme
    "other": "stranger",  # a member of another organization's team
    "root": "root",  # the registry's admin
}
PRINCIPALS = ["anonymous", "reader", "writer", "admin", "other", "root"]
REPOS = {"public": "acme/public", "private": "acme/private"}
# each cell: on acme/public then on acme/private; Y allowed, - refused
MATRIX = """
              pull   push   delete   mount   catalog
  anonymous   Y-     --     --       --      Y-
  reader      YY     --     --       YY      YY
  writer      YY     YY     --       YY      YY
  admin       YY     YY     YY       YY      YY
  other       Y-     --     --       Y-      Y-
  root        YY     YY     YY       YY      YY
"""
_HEAD, *_ROWS = MATRIX.strip().splitlines()
OPS = _HEAD.split()
EXPECTED = {
    row.split()[0]: {
        op: (cell[0] == "Y", cell[1] == "Y") for op, cell in zip(OPS, row.split()[1:], strict=True)
    }
    for row in _ROWS
}
TEAMS = [("readers", "read", "reader"), ("writers", "write", "writer"), ("admins", "admin", "boss")]
CELLS = [(who, op, vis) for who in PRINCIPALS for op in OPS for vis in ("public", "private")]


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Client:
    """Requests as one principal, answering 401 challenges with the token flow."""

    def __init__(self, reg: RegistryServer, who: str) -> None:
        self.reg = reg
        self.who = who
        self.creds = None if who == "anonymous" else (USERS.get(who, who), PASSWORD)

    def token(self, challenge: str, extra: tuple[str, ...] = ()) -> str:
        [bearer] = [c for c in parse_challenges([challenge]) if c.scheme == "bearer"]
        scopes = [*bearer.params.get("scope", "").split(), *extra]
        query = urlencode([("service", bearer.params["service"]), *(("scope", s) for s in scopes)])
        path = urlsplit(bearer.params["realm"]).path
        status, _, body = self.reg.request("GET", f"{path}?{query}", auth=self.creds)
        # never an error for a subset of what was asked
        assert status == 200, f"GET /token as {self.who}: {status} {body[:300]!r}"
        doc = json.loads(body)
        assert doc["token"] == doc["access_token"] and doc["expires_in"] >= 60
        return str(doc["token"])

    def call(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        extra: tuple[str, ...] = (),
    ) -> tuple[int, dict[str, str], bytes]:
        status, hdrs, data = self.reg.request(method, path, body=body, headers=headers)
        if status != 401:
            return status, hdrs, data
        token = self.token(hdrs["www-authenticate"], extra)
        return self.reg.request(method, path, body=body, headers=headers, token=token)

    # --- operations ---------------------------------------------------------------------

    def push_blob(self, repo: str, data: bytes) -> int:
        query = urlencode({"digest": digest_of(data)})
        headers = {"Content-Type": "application/octet-stream"}
        status, _, _ = self.call("POST", f"/v2/{repo}/blobs/uploads/?{query}", body=data,
                                 headers=headers)  # fmt: skip
        return status

    def push_image(self, repo: str, tag: str, seed: str) -> tuple[int, str]:
        """A config, a layer and a manifest tagged ``tag``: (status of the last, digest)."""
        layer = f"layer of {seed}".encode()
        config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed,
                             "rootfs": {"type": "layers", "diff_ids": []}}).encode()  # fmt: skip
        for blob in (layer, config):
            status = self.push_blob(repo, blob)
            if status != 201:
                return status, ""
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": digest_of(config), "size": len(config)},
            "layers": [{"mediaType": LAYER, "digest": digest_of(layer), "size": len(layer)}],
        }).encode()  # fmt: skip
        status, _, _ = self.call("PUT", f"/v2/{repo}/manifests/{tag}", body=manifest,
                                 headers={"Content-Type": OCI_MANIFEST})  # fmt: skip
        return status, digest_of(manifest)


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    server = RegistryServer(str(tmp_path_factory.mktemp("authz")), auth="token")
    try:
        server.start()
        # the admin CLI for some, the account store itself (on the server's database,
        # bcrypt at its cheapest) for the rest: each CLI call is a fresh interpreter
        server.add_user("root", PASSWORD, admin=True)
        server.admin("org", "add", "acme")
        server.admin("repo", "visibility", "acme/public", "public")
        db = Database(sqlite_url(server.root))
        try:
            accounts = Accounts(db, bcrypt_rounds=4)
            for who, name in USERS.items():
                if who != "root":
                    accounts.add_user(name, PASSWORD)
            for team, role, member in TEAMS:
                accounts.add_team("acme", team)
                accounts.grant("acme", team, "acme", role)
                accounts.add_member("acme", team, member)
            accounts.add_org("elsewhere")
            accounts.add_team("elsewhere", "all")
            accounts.grant("elsewhere", "all", "elsewhere", "admin")
            accounts.add_member("elsewhere", "all", "stranger")
        finally:
            db.close()
        root = Client(server, "root")
        for repo in REPOS.values():
            assert root.push_image(repo, "v1", f"seed {repo}")[0] == 201
        yield server
    finally:
        server.close()


def _seed_layer(repo: str) -> bytes:
    return f"layer of seed {repo}".encode()


def check_pull(client: Client, repo: str, allowed: bool) -> None:
    status, headers, body = client.call(
        "GET", f"/v2/{repo}/manifests/v1", headers={"Accept": OCI_MANIFEST}
    )
    layer = _seed_layer(repo)
    blob_status, _, blob = client.call("GET", f"/v2/{repo}/blobs/{digest_of(layer)}")
    if allowed:
        assert status == 200 and json.loads(body)["schemaVersion"] == 2
        assert headers["docker-content-digest"] == digest_of(body)
        assert (blob_status, blob) == (200, layer)
    else:
        assert status == 401 and b"schemaVersion" not in body
        assert blob_status == 401 and layer not in blob


def check_push(client: Client, root: Client, repo: str, allowed: bool) -> None:
    tag = f"pushed-by-{client.who}"
    status, digest = client.push_image(repo, tag, f"{client.who} {repo}")
    after, _, _ = root.call("GET", f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
    layer = f"layer of {client.who} {repo}".encode()
    linked, _, _ = root.call("HEAD", f"/v2/{repo}/blobs/{digest_of(layer)}")
    if allowed:
        assert status == 201 and digest
        assert (after, linked) == (200, 200)
    else:
        assert status == 401
        assert (after, linked) == (404, 404)  # nothing stored


def check_delete(client: Client, root: Client, repo: str, allowed: bool) -> None:
    status, digest = root.push_image(repo, f"to-delete-{client.who}", f"del {client.who} {repo}")
    assert status == 201
    status, _, _ = client.call("DELETE", f"/v2/{repo}/manifests/{digest}")
    after, _, _ = root.call(
        "GET", f"/v2/{repo}/manifests/{digest}", headers={"Accept": OCI_MANIFEST}
    )
    if allowed:
        assert (status, after) == (202, 404)
    else:
        assert (status, after) == (401, 200)


def check_mount(client: Client, root: Client, repo: str, allowed: bool) -> None:
    """Mount the repository's layer into one the caller may push to (its own
    namespace; anonymous has none): pull on the source + push on the target."""
    layer = digest_of(_seed_layer(repo))
    target = (
        "acme/anonymous-target" if client.who == "anonymous" else f"{USERS[client.who]}/mounted"
    )
    query = urlencode({"mount": layer, "from": repo})
    status, headers, _ = client.call(
        "POST", f"/v2/{target}/blobs/uploads/?{query}", extra=(f"repository:{repo}:pull",)
    )
    linked, _, _ = root.call("HEAD", f"/v2/{target}/blobs/{layer}")
    if allowed:
        assert status == 201 and headers["docker-content-digest"] == layer
        assert linked == 200
    else:
        # anonymous may push nowhere: 401; others get an upload session, not the blob
        assert status == (401 if client.who == "anonymous" else 202)
        assert linked == 404
        if status == 202:
            client.call("DELETE", urlsplit(headers["location"]).path)


def check_catalog(client: Client, repo: str, allowed: bool) -> None:
    status, _, body = client.call("GET", "/v2/_catalog?n=1000")
    assert status == 200
    assert (repo in json.loads(body)["repositories"]) is allowed


@pytest.mark.parametrize(("who", "op", "vis"), CELLS, ids=[f"{w}-{o}-{v}" for w, o, v in CELLS])
def test_authorization_matrix(reg: RegistryServer, who: str, op: str, vis: str) -> None:
    allowed = EXPECTED[who][op][0 if vis == "public" else 1]
    repo = REPOS[vis]
    client, root = Client(reg, who), Client(reg, "root")
    if op == "pull":
        check_pull(client, repo, allowed)
    elif op == "push":
        check_push(client, root, repo, allowed)
    elif op == "delete":
        check_delete(client, root, repo, allowed)
    elif op == "mount":
        check_mount(client, root, repo, allowed)
    else:
        check_catalog(client, repo, allowed)


def test_every_cell_is_listed() -> None:
    assert list(EXPECTED) == PRINCIPALS
    assert OPS == ["pull", "push", "delete", "mount", "catalog"]
    assert len(CELLS) == 6 * 5 * 2


# --- tokens at the server -------------------------------------------------------------


def test_wrong_credentials_expired_and_forged_tokens(reg: RegistryServer, tmp_path: str) -> None:
    status, headers, body = reg.request("GET", "/token?service=portside-registry",
                                        auth=("reader", "wrong"))  # fmt: skip
    assert status == 401 and b'"token"' not in body
    path = "/v2/acme/private/manifests/v1"
    keys = os.path.join(reg.root, "keys")
    grant = [{"type": "repository", "name": "acme/private", "actions": ["pull"]}]
    ours = TokenService.open(keys, issuer="portside-registry")
    good, _, _ = ours.issue("root", grant, "portside-registry", 300)
    assert reg.request("GET", path, token=good, headers={"Accept": OCI_MANIFEST})[0] == 200
    stale = TokenService.open(keys, issuer="portside-registry", clock=lambda: time.time() - 900)
    forger = TokenService.open(str(tmp_path), issuer="portside-registry")
    for token in (
        stale.issue("root", grant, "portside-registry", 300)[0],
        forger.issue("root", grant, "portside-registry", 300)[0],
        ours.issue("root", grant, "another-service", 300)[0],
        good.rsplit(".", 1)[0] + ".",  # signature stripped
    ):
        status, headers, body = reg.request("GET", path, token=token)
        assert status == 401
        assert 'error="invalid_token"' in headers["www-authenticate"]
        assert b"schemaVersion" not in body
    # a token for pull only: a push is refused with insufficient_scope
    status, headers, _ = reg.request("POST", "/v2/acme/private/blobs/uploads/", token=good)
    assert status == 401 and 'error="insufficient_scope"' in headers["www-authenticate"]


def test_personal_access_tokens_and_robots(reg: RegistryServer) -> None:
    pat = reg.admin("token", "add", "writer", "--name", "ci").stdout.strip()
    robot = reg.admin("robot", "add", "acme", "builder").stdout.strip()
    db = Database(sqlite_url(reg.root))
    try:
        Accounts(db).add_member("acme", "readers", "acme+builder")
    finally:
        db.close()
    as_pat = Client(reg, "writer")
    as_pat.creds = ("writer", pat)
    assert as_pat.push_image("acme/private", "by-pat", "pat")[0] == 201
    as_robot = Client(reg, "robot")
    as_robot.creds = ("acme+builder", robot)
    check_pull(as_robot, "acme/private", True)
    assert as_robot.push_image("acme/private", "by-robot", "robot")[0] == 401
    reg.admin("token", "rm", "writer", "ci")
    status, _, _ = reg.request("GET", "/token", auth=("writer", pat))
    assert status == 401


# --- real clients ---------------------------------------------------------------------


def _skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["skopeo", *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="needs skopeo (apt-get install skopeo)")
def test_skopeo_with_creds(reg: RegistryServer, tmp_path: str) -> None:
    layout = OCILayout(os.path.join(str(tmp_path), "src"))
    layout.image([layer_tar({"hello.txt": b"hello from skopeo\n"})], name="app:1")
    src = f"oci:{layout.path}:1"
    host = reg.host
    tls = ("--src-tls-verify=false", "--dest-tls-verify=false")
    pushed = _skopeo(
        "copy", *tls, "--dest-creds", f"writer:{PASSWORD}", src, f"docker://{host}/acme/private:s1"
    )
    assert pushed.returncode == 0, pushed.stderr
    denied = _skopeo(
        "copy", *tls, "--dest-creds", f"reader:{PASSWORD}", src, f"docker://{host}/acme/private:s2"
    )
    assert denied.returncode != 0
    assert "denied" in denied.stderr.lower() or "unauthorized" in denied.stderr.lower()
    anonymous = _skopeo("copy", *tls, src, f"docker://{host}/acme/public:s3")
    assert anonymous.returncode != 0
    out = os.path.join(str(tmp_path), "out")
    pulled = _skopeo(
        "copy",
        *tls,
        "--src-creds",
        f"reader:{PASSWORD}",
        f"docker://{host}/acme/private:s1",
        f"oci:{out}:x",
    )
    assert pulled.returncode == 0, pulled.stderr
    inspect = _skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{host}/acme/private:s1")
    assert inspect.returncode != 0  # anonymous, private
    public = _skopeo(
        "copy", *tls, "--dest-creds", f"boss:{PASSWORD}", src, f"docker://{host}/acme/public:s4"
    )
    assert public.returncode == 0, public.stderr
    raw = _skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{host}/acme/public:s4")
    assert raw.returncode == 0 and json.loads(raw.stdout)["schemaVersion"] == 2
    with open(os.path.join(out, "index.json")) as f:
        [entry] = json.load(f)["manifests"]
    got = _skopeo(
        "inspect",
        "--tls-verify=false",
        "--creds",
        f"reader:{PASSWORD}",
        "--raw",
        f"docker://{host}/acme/private:s1",
    )
    assert digest_of(got.stdout.encode()) == entry["digest"]


def test_portside_client_bearer_flow(reg: RegistryServer) -> None:
    from portside.distribution.client import Registry
    from portside.distribution.config import AuthConfig, RegistryConfig
    from portside.distribution.errors import RegistryError
    from portside.oci.digest import Digest
    from portside.oci.image_spec import Descriptor

    layer = b"a layer pushed by portside"
    desc = Descriptor(media_type=LAYER, digest=Digest.of(layer), size=len(layer))
    with Registry(reg.host, RegistryConfig(), AuthConfig("writer", PASSWORD), push=True) as client:
        import io

        client.upload_blob("acme/private", desc, lambda: io.BytesIO(layer), lambda n: None)
        assert client.blob_exists("acme/private", str(desc.digest)) == len(layer)
        assert client.mount_blob("writer/copy", str(desc.digest), "acme/private")
        fetched = client.get_manifest("acme/private", "v1")
        digest = client.put_manifest(
            "acme/private", "by-portside", fetched.data, fetched.media_type
        )
        assert digest == fetched.digest
    with Registry(reg.host, RegistryConfig(), AuthConfig()) as anonymous:
        assert anonymous.get_manifest("acme/public", "v1").data
        with pytest.raises(RegistryError) as info:
            anonymous.get_manifest("acme/private", "v1")
        assert info.value.status == 401
    wrong = Registry(reg.host, RegistryConfig(), AuthConfig("writer", "wrong"))
    with wrong, pytest.raises(RegistryError, match="incorrect username or password"):
        wrong.get_manifest("acme/private", "v1")


# --- distribution trusts our tokens ---------------------------------------------------


class TokenAuthRegistry(DockerRegistry):
    """docker-registry with ``auth.token`` trusting our key's certificate."""

    def __init__(self, root_dir: str, cert: str) -> None:
        super().__init__(root_dir)
        self.cert = cert

    def config(self) -> str:
        return super().config() + "\n".join([
            "auth:", "  token:", "    realm: http://127.0.0.1:9/token",
            "    service: portside-registry", "    issuer: portside-registry",
            f"    rootcertbundle: {self.cert}", "",
        ])  # fmt: skip


@pytest.mark.skipif(registry_unavailable() is not None, reason=str(registry_unavailable()))
def test_distribution_trusts_our_tokens(tmp_path: str) -> None:
    keys = os.path.join(str(tmp_path), "keys")
    ours = TokenService.open(keys, issuer="portside-registry")
    stranger = TokenService.open(os.path.join(str(tmp_path), "other"), issuer="portside-registry")
    access = [{"type": "repository", "name": "x/y", "actions": ["pull", "push"]}]
    data = b"blob for distribution"
    with TokenAuthRegistry(str(tmp_path), ours.certificate_path) as dist:
        status, headers, _ = dist.request("GET", "/v2/")
        assert status == 401 and "realm=" in headers["www-authenticate"]
        for service, expected in ((stranger, 401), (ours, 202)):
            token, _, _ = service.issue("alice", access, "portside-registry", 300)
            bearer = {"Authorization": f"Bearer {token}"}
            status, headers, body = dist.request("POST", "/v2/x/y/blobs/uploads/", headers=bearer)
            assert status == expected, (body, dist.log())
        location = urlsplit(headers["location"])
        query = f"{location.query}&{urlencode({'digest': digest_of(data)})}"
        status, _, body = dist.request(
            "PUT", f"{location.path}?{query}", body=data,
            headers={**bearer, "Content-Type": "application/octet-stream"},
        )  # fmt: skip
        assert status == 201, body
        status, _, body = dist.request("GET", f"/v2/x/y/blobs/{digest_of(data)}", headers=bearer)
        assert (status, body) == (200, data)


# --- the account store on PostgreSQL --------------------------------------------------


@pytest.mark.skipif(postgres_unavailable() is not None, reason=str(postgres_unavailable()))
def test_accounts_on_postgresql() -> None:
    """The same statements on PostgreSQL: accounts, teams, rights, tokens, and a failed-
    login limit two instances count together."""
    from portside.errors import AlreadyExists, NotFound
    from portside.registry.accounts import LoginLimits, RateLimited
    from portside.registry.interfaces import ANONYMOUS, Principal

    with PostgresServer() as pg:
        db = Database(pg.create_database("accounts"))
        try:
            limits = LoginLimits(per_user=3, per_address=10, window=60)
            one = Accounts(db, bcrypt_rounds=4, limits=limits)
            two = Accounts(db, bcrypt_rounds=4, limits=limits)
            one.add_user("alice", "pw")
            one.add_user("bob", "pw")
            with pytest.raises(AlreadyExists):
                two.add_user("alice", "pw")
            one.add_org("acme")
            one.add_team("acme", "devs")
            with pytest.raises(AlreadyExists):
                two.add_team("acme", "devs")
            one.add_member("acme", "devs", "bob")
            with pytest.raises(AlreadyExists):
                one.add_member("acme", "devs", "bob")
            one.grant("acme", "devs", "acme/app", "write")
            two.set_visibility("acme/pub", "public")
            bob = Principal("bob", "user")
            assert two.rights(bob, "acme/app") == {"pull", "push"}
            assert two.rights(ANONYMOUS, "acme/pub") == {"pull"}
            assert two.visible(bob, ["acme/app", "acme/pub", "acme/priv"]) == [
                "acme/app",
                "acme/pub",
            ]
            _, pat = one.add_token("alice", "ci")
            assert two.check_password("alice", pat) == Principal("alice", "token")
            robot, secret = one.add_robot("acme", "ci")
            assert two.check_password(robot, secret) == Principal(robot, "robot")
            refresh = one.add_refresh_token(bob, "docker", 60)
            assert two.check_refresh_token(refresh) == bob
            for accounts in (one, two, one):
                assert accounts.check_password("alice", "bad", "10.0.0.1") is None
            with pytest.raises(RateLimited):
                two.check_password("alice", "pw", "10.0.0.2")
            one.remove_org("acme")
            assert two.check_password(robot, secret) is None
            assert two.rights(bob, "acme/app") == set()
            one.remove_user("bob")
            assert two.check_refresh_token(refresh) is None
            with pytest.raises(NotFound):
                two.remove_user("bob")
        finally:
            db.close()
