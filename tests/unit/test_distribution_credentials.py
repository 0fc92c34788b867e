"""portside.distribution.credentials: X-Registry-Auth, config.json as docker/cli keeps
it, and the docker-credential-* helper protocol (against a fake helper on PATH)."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portside.distribution import credentials as creds
from portside.distribution.config import AuthConfig
from portside.distribution.credentials import (
    INDEX_SERVER,
    CredentialHelperError,
    CredentialStore,
    config_key,
    decode_registry_auth,
    default_config_path,
    encode_registry_auth,
    server_domain,
)
from portside.errors import Internal, InvalidArgument


def b64(data: str | bytes, *, urlsafe: bool = True, pad: bool = True) -> str:
    raw = data.encode() if isinstance(data, str) else data
    out = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(raw).decode()
    return out if pad else out.rstrip("=")


def basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


# --- X-Registry-Auth ----------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "", "  ", "e30=", "e30", b64("null"), b64("{ }")])
def test_decode_anonymous(header: str | None) -> None:
    assert decode_registry_auth(header) == AuthConfig()


def test_decode_docker_cli_header() -> None:
    doc = {"username": "u", "password": "p?>~", "serveraddress": "127.0.0.1:5000"}
    auth = decode_registry_auth(b64(json.dumps(doc)))
    assert auth == AuthConfig(username="u", password="p?>~", server="127.0.0.1:5000")


def test_decode_docker_py_header_std_alphabet_and_unknown_keys() -> None:
    # "??>" encodes to "Pz8+" in the standard alphabet, "Pz8-" in the URL-safe one
    doc = {"username": "u", "password": "??>", "email": "u@example.com", "serveraddress": ""}
    header = b64(json.dumps(doc), urlsafe=False)
    assert "+" in header or "/" in header
    assert decode_registry_auth(header) == AuthConfig(username="u", password="??>")


def test_decode_keys_case_insensitive_as_go() -> None:
    doc = {"Username": "u", "PASSWORD": "p", "IdentityToken": "it", "RegistryToken": "rt"}
    auth = decode_registry_auth(b64(json.dumps(doc), pad=False))
    assert auth == AuthConfig(username="u", password="p", identity_token="it", registry_token="rt")


def test_decode_auth_field() -> None:
    auth = decode_registry_auth(b64(json.dumps({"auth": basic("u", "p:with:colons")})))
    assert (auth.username, auth.password) == ("u", "p:with:colons")
    # explicit username/password win over auth
    doc = {"auth": basic("x", "y"), "username": "u", "password": "p"}
    assert decode_registry_auth(b64(json.dumps(doc))).username == "u"


@pytest.mark.parametrize(
    "header",
    [
        "!!!!",
        "a",  # a single base64 character cannot be
        "e30=e30=",  # padding in the middle
        "ÿÿÿÿ",
        b64("[1, 2]"),
        b64('"text"'),
        b64('{"username": 1}'),
        b64(b"\xff\xfe{}"),
        b64('{"auth": "bm9jb2xvbg=="}'),  # "nocolon"
        b64('{"auth": "%%%"}'),
    ],
)
def test_decode_garbage(header: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid X-Registry-Auth header"):
        decode_registry_auth(header)


def test_decode_error_never_shows_the_secret() -> None:
    header = b64('{"username": "u", "password": "hunter2"')  # truncated JSON
    with pytest.raises(InvalidArgument) as info:
        decode_registry_auth(header)
    assert "hunter2" not in str(info.value) and header not in str(info.value)


def test_encode_as_docker_cli() -> None:
    assert encode_registry_auth(AuthConfig()) == "e30="
    header = encode_registry_auth(AuthConfig(username="u", password="??>", server="h:5000"))
    assert "+" not in header and "/" not in header
    doc = json.loads(base64.urlsafe_b64decode(header))
    assert doc == {"username": "u", "password": "??>", "serveraddress": "h:5000"}


auth_configs = st.builds(
    AuthConfig,
    username=st.text(),
    password=st.text(),
    identity_token=st.text(),
    registry_token=st.text(),
    server=st.text(),
)


@given(auth_configs, st.booleans(), st.booleans())
def test_registry_auth_round_trip(auth: AuthConfig, std: bool, strip: bool) -> None:
    header = encode_registry_auth(auth)
    if std:
        header = header.replace("-", "+").replace("_", "/")
    if strip:
        header = header.rstrip("=")
    assert decode_registry_auth(header) == auth


@given(st.one_of(st.text(), st.binary().map(lambda b: b64(b, pad=False))))
def test_decode_fails_only_with_invalid_argument(header: str) -> None:
    try:
        decode_registry_auth(header)
    except InvalidArgument:
        pass


# --- names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("server", "domain", "key"),
    [
        ("", "docker.io", INDEX_SERVER),
        ("docker.io", "docker.io", INDEX_SERVER),
        ("https://index.docker.io/v1/", "docker.io", INDEX_SERVER),
        ("index.docker.io", "docker.io", INDEX_SERVER),
        ("registry-1.docker.io", "docker.io", INDEX_SERVER),
        ("127.0.0.1:5000", "127.0.0.1:5000", "127.0.0.1:5000"),
        ("http://127.0.0.1:5000/", "127.0.0.1:5000", "127.0.0.1:5000"),
        ("HTTPS://quay.io/v2/x", "quay.io", "quay.io"),
        ("[::1]:5000", "[::1]:5000", "[::1]:5000"),
    ],
)
def test_server_domain_and_config_key(server: str, domain: str, key: str) -> None:
    assert server_domain(server) == domain
    assert config_key(server) == key


def test_default_config_path(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("PORTSIDE_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_config_path() == f"{tmp_path}/.portside/config.json"
    monkeypatch.setenv("PORTSIDE_CONFIG", "/etc/x")
    assert default_config_path() == "/etc/x/config.json"


def test_import_is_cheap() -> None:
    code = (
        "import sys, portside.distribution.credentials\n"
        "bad = {'subprocess', 'ssl', 'typing', 'http.client', 'portside.distribution.hosts'}\n"
        "print(sorted(bad & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- config.json --------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """A HOME of its own, no PORTSIDE_CONFIG/DOCKER_CONFIG from the environment."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("PORTSIDE_CONFIG", raising=False)
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    return tmp_path


def write_json(path, doc) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def test_missing_files_are_empty(home) -> None:
    assert CredentialStore().get("docker.io") == AuthConfig()
    assert not (home / ".portside").exists()


def test_store_writes_docker_format(home) -> None:
    store = CredentialStore()
    store.store("docker.io", AuthConfig(username="u", password="p"))
    store.store("127.0.0.1:5000", AuthConfig(identity_token="refresh"))
    path = home / ".portside" / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    doc = json.loads(path.read_text())
    assert doc == {
        "auths": {
            INDEX_SERVER: {"auth": basic("u", "p")},
            "127.0.0.1:5000": {"identitytoken": "refresh"},
        }
    }
    assert store.get("docker.io") == AuthConfig(username="u", password="p", server=INDEX_SERVER)
    assert store.get("https://index.docker.io/v1/").username == "u"
    assert store.get("127.0.0.1:5000").identity_token == "refresh"
    assert [p.name for p in path.parent.iterdir()] == ["config.json"]  # no temp file left


def test_store_keeps_other_keys_and_replaces_secrets(home) -> None:
    path = home / ".portside" / "config.json"
    write_json(
        path,
        {
            "psFormat": "table {{.ID}}",
            "proxies": {"default": {"httpProxy": "http://p:3128"}},
            "auths": {
                "h:5000": {"auth": basic("old", "old"), "email": "u@example.com"},
                "other:5000": {"auth": basic("o", "o")},
            },
        },
    )
    CredentialStore().store("h:5000", AuthConfig(username="new", password="pw"))
    doc = json.loads(path.read_text())
    assert doc["psFormat"] == "table {{.ID}}" and doc["proxies"]["default"]
    assert doc["auths"]["h:5000"] == {"email": "u@example.com", "auth": basic("new", "pw")}
    assert doc["auths"]["other:5000"] == {"auth": basic("o", "o")}


def test_reads_what_docker_wrote(home) -> None:
    write_json(
        home / ".docker" / "config.json",
        {
            "auths": {
                "https://index.docker.io/v1/": {"auth": basic("hub", "hubpw")},
                "http://legacy:5000": {"auth": basic("l", "lpw")},
                "https://plain.example/v1/": {"username": "p", "password": "ppw"},
            }
        },
    )
    store = CredentialStore()
    assert (store.get("docker.io").username, store.get("docker.io").password) == ("hub", "hubpw")
    assert store.get("legacy:5000").password == "lpw"
    assert store.get("plain.example").password == "ppw"
    assert store.get("unknown:5000") == AuthConfig()


def test_portside_file_first_then_docker(home, monkeypatch: pytest.MonkeyPatch) -> None:
    write_json(home / ".docker" / "config.json", {"auths": {"a:1": {"auth": basic("d", "d")}}})
    store = CredentialStore()
    assert store.get("a:1").username == "d"
    store.store("a:1", AuthConfig(username="p", password="p"))
    assert store.get("a:1").username == "p"
    assert CredentialStore(fallback=None).get("b:1") == AuthConfig()
    # DOCKER_CONFIG moves Docker's file, as for the docker CLI
    write_json(home / "dc" / "config.json", {"auths": {"b:1": {"auth": basic("e", "e")}}})
    monkeypatch.setenv("DOCKER_CONFIG", str(home / "dc"))
    assert CredentialStore().get("b:1").username == "e"
    assert CredentialStore(fallback=None).get("b:1") == AuthConfig()


def test_erase(home) -> None:
    path = home / ".portside" / "config.json"
    write_json(
        path,
        {
            "auths": {
                "h:5000": {"auth": basic("a", "a")},
                "https://h:5000": {"auth": basic("b", "b")},
                "keep:1": {"auth": basic("k", "k")},
            }
        },
    )
    docker = home / ".docker" / "config.json"
    write_json(docker, {"auths": {"h:5000": {"auth": basic("d", "d")}}})
    store = CredentialStore()
    assert store.erase("h:5000") is True
    assert json.loads(path.read_text())["auths"] == {"keep:1": {"auth": basic("k", "k")}}
    assert store.erase("h:5000") is False
    assert json.loads(docker.read_text())["auths"]["h:5000"]  # Docker's file untouched
    assert store.get("h:5000").username == "d"


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("{not json", "bad JSON"),
        ("[]", "not a JSON object"),
        ('{"auths": []}', "auths is not an object"),
        ('{"auths": {"h": "x"}}', "auths\\['h'\\] is not an object"),
        ('{"credHelpers": {"h": 1}}', "credHelpers"),
        ('{"credsStore": 1}', "credsStore"),
        ('{"auths": {"h": {"auth": "!!"}}}', "auths\\['h'\\].auth: not base64"),
        ('{"auths": {"h": {"auth": "bm9jb2xvbg=="}}}', "auths\\['h'\\].auth"),
    ],
)
def test_malformed_file(home, text: str, what: str) -> None:
    path = home / ".portside" / "config.json"
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(InvalidArgument, match=f"invalid credentials file {path}: {what}"):
        CredentialStore().get("h")


def test_write_follows_symlink(home) -> None:
    real = home / "dotfiles" / "config.json"
    write_json(real, {"auths": {}})
    link = home / ".portside" / "config.json"
    link.parent.mkdir()
    link.symlink_to(real)
    CredentialStore().store("h:1", AuthConfig(username="u", password="p"))
    assert link.is_symlink()
    assert "h:1" in json.loads(real.read_text())["auths"]


def test_failed_write_leaves_old_file(home, monkeypatch: pytest.MonkeyPatch) -> None:
    path = home / ".portside" / "config.json"
    write_json(path, {"auths": {"h:1": {"auth": basic("old", "old")}}})
    before = path.read_bytes()

    def fail(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(creds.os, "replace", fail)
    with pytest.raises(Internal, match=f"cannot write {path}: No space left on device"):
        CredentialStore().store("h:1", AuthConfig(username="new", password="new"))
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.json"]


# --- credential helpers -------------------------------------------------------------------

FAKE_HELPER = """\
#!{python}
# a docker-credential-* helper keeping its secrets in $FAKE_HELPER_DB (JSON), logging calls
import json, os, sys
db_path = os.environ["FAKE_HELPER_DB"]
action = sys.argv[1]
data = sys.stdin.read()
with open(db_path + ".log", "a") as log:
    log.write(json.dumps([action, data]) + "\\n")
if os.environ.get("FAKE_HELPER_FAIL"):
    print(os.environ["FAKE_HELPER_FAIL"])
    sys.exit(3)
db = json.load(open(db_path)) if os.path.exists(db_path) else {{}}
if action == "store":
    c = json.loads(data)
    db[c["ServerURL"]] = [c["Username"], c["Secret"]]
elif action in ("get", "erase") and data not in db:
    print("credentials not found in native keychain")
    sys.exit(1)
elif action == "get":
    if os.environ.get("FAKE_HELPER_GARBAGE"):
        print("this is not json")
        sys.exit(0)
    user, secret = db[data]
    print(json.dumps({{"ServerURL": data, "Username": user, "Secret": secret}}))
elif action == "erase":
    del db[data]
json.dump(db, open(db_path, "w"))
"""


class FakeHelper:
    def __init__(self, db) -> None:
        self.db = db

    @property
    def secrets(self) -> dict:
        return json.loads(self.db.read_text()) if self.db.exists() else {}

    @property
    def calls(self) -> list[list[str]]:
        log = self.db.with_name(self.db.name + ".log")
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def helper(home, monkeypatch: pytest.MonkeyPatch) -> FakeHelper:
    """``docker-credential-test`` on PATH."""
    bindir = home / "bin"
    bindir.mkdir()
    script = bindir / "docker-credential-test"
    script.write_text(textwrap.dedent(FAKE_HELPER.format(python=sys.executable)))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_HELPER_DB", str(home / "helper-db.json"))
    return FakeHelper(home / "helper-db.json")


def test_helper_store_get_erase(home, helper: FakeHelper) -> None:
    path = home / ".portside" / "config.json"
    write_json(path, {"credsStore": "test"})
    store = CredentialStore()
    store.store("docker.io", AuthConfig(username="u", password="s3cret"))
    assert helper.secrets == {INDEX_SERVER: ["u", "s3cret"]}
    assert "s3cret" not in path.read_text()
    assert json.loads(path.read_text()) == {"credsStore": "test", "auths": {INDEX_SERVER: {}}}
    assert store.get("docker.io") == AuthConfig(
        username="u", password="s3cret", server=INDEX_SERVER
    )
    assert helper.calls[-1] == ["get", INDEX_SERVER]
    assert store.erase("docker.io") is True
    assert helper.secrets == {}
    assert json.loads(path.read_text())["auths"] == {}
    assert store.erase("docker.io") is False
    assert store.get("docker.io") == AuthConfig()  # "credentials not found": none


def test_helper_identity_token(home, helper: FakeHelper) -> None:
    write_json(home / ".portside" / "config.json", {"credsStore": "test"})
    store = CredentialStore()
    store.store("h:5000", AuthConfig(username="u", identity_token="refresh"))
    assert helper.secrets == {"h:5000": ["<token>", "refresh"]}
    assert store.get("h:5000") == AuthConfig(identity_token="refresh", server="h:5000")


def test_cred_helpers_override_creds_store(home, helper: FakeHelper) -> None:
    write_json(
        home / ".portside" / "config.json",
        {"credsStore": "absent", "credHelpers": {"h:5000": "test"}},
    )
    store = CredentialStore()
    store.store("h:5000", AuthConfig(username="u", password="p"))
    assert helper.secrets == {"h:5000": ["u", "p"]}
    with pytest.raises(CredentialHelperError, match=r"docker-credential-absent .* not found"):
        store.get("other:1")


def test_helper_in_docker_file(home, helper: FakeHelper) -> None:
    write_json(home / ".docker" / "config.json", {"credHelpers": {"h:5000": "test"}})
    helper.db.write_text(json.dumps({"h:5000": ["du", "dp"]}))
    assert CredentialStore().get("h:5000").password == "dp"


def test_helper_not_found_falls_back_to_docker(home, helper: FakeHelper) -> None:
    write_json(home / ".portside" / "config.json", {"credsStore": "test"})
    write_json(home / ".docker" / "config.json", {"auths": {"h:1": {"auth": basic("d", "d")}}})
    assert CredentialStore().get("h:1").username == "d"


def test_helper_failure_is_clear(home, helper: FakeHelper, monkeypatch) -> None:
    write_json(home / ".portside" / "config.json", {"credsStore": "test"})
    monkeypatch.setenv("FAKE_HELPER_FAIL", "boom: keychain locked")
    with pytest.raises(CredentialHelperError) as info:
        CredentialStore().get("h:1")
    assert str(info.value) == (
        "docker-credential-test get failed (exit status 3): boom: keychain locked"
    )
    with pytest.raises(CredentialHelperError, match="docker-credential-test store failed"):
        CredentialStore().store("h:1", AuthConfig(username="u", password="p"))


def test_helper_garbage(home, helper: FakeHelper, monkeypatch) -> None:
    write_json(home / ".portside" / "config.json", {"credsStore": "test"})
    helper.db.write_text(json.dumps({"h:1": ["u", "p"]}))
    monkeypatch.setenv("FAKE_HELPER_GARBAGE", "1")
    with pytest.raises(CredentialHelperError, match="docker-credential-test get printed invalid"):
        CredentialStore().get("h:1")


def test_helper_name_is_not_a_path(home) -> None:
    write_json(home / ".portside" / "config.json", {"credsStore": "../../bin/sh"})
    with pytest.raises(InvalidArgument, match="invalid credential helper name"):
        CredentialStore().get("h:1")
