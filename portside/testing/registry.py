"""Real registries for tests and benchmarks: Debian's ``docker-registry`` (distribution
2.8) on a free port, plain or with htpasswd auth and TLS from a test CA; images to put
in them (:class:`OCILayout`, for skopeo's ``oci:`` and for ``portside load``); and a
loopback proxy that cuts connections mid-response (to prove that pulls resume).

::

    with DockerRegistry(tmp) as reg:                      # http://127.0.0.1:PORT
        skopeo copy oci:DIR docker://{reg.host}/app:1 --dest-tls-verify=false
    ca = TestCA(tmp + "/ca")
    with DockerRegistry(tmp, tls=ca, htpasswd={"alice": "s3cret"}) as reg:
        ca.install(certs_dir, reg.host)                   # certs_dir/HOST/ca.crt

Each registry runs as its own process (``docker-registry serve CONFIG.yml``) in a fresh
directory under ``root_dir`` (storage, config, htpasswd, log), listening on port 0:
the port it got is read from its log, so parallel test runs never race for one. The
systemd unit Debian's package installs is neither needed nor touched.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

__all__ = [
    "REGISTRY_BINARY",
    "CuttingProxy",
    "DockerRegistry",
    "OCILayout",
    "ProxiedRequest",
    "TestCA",
    "busybox_layer",
    "gzip_bytes",
    "layer_tar",
    "local_address",
    "registry_unavailable",
    "sha256_digest",
]

REGISTRY_BINARY = "/usr/bin/docker-registry"
INSTALL_HINT = "apt-get install docker-registry (Debian's distribution 2.8)"


def registry_unavailable(binary: str = REGISTRY_BINARY) -> str | None:
    """Why no ``docker-registry`` can be started (a skip reason), or None when one can."""
    if not os.access(binary, os.X_OK):
        return f"needs {binary}: {INSTALL_HINT}"
    return None


def local_address() -> str | None:
    """A non-loopback IPv4 address of this machine (the default route's source), or None.

    A registry on loopback counts as insecure for Docker (and Portside): its
    certificate is never checked. Tests of certificate checks bind it here instead.
    """
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # a UDP connect sends nothing: a route lookup
        address = probe.getsockname()[0]
    except OSError:
        address = ""
    finally:
        probe.close()
    if address and not address.startswith("127."):
        return address
    with open("/proc/net/fib_trie") as f:  # no default route: any address of our own
        found = re.findall(r"\|-- (\d+\.\d+\.\d+\.\d+)\n\s+/32 host LOCAL", f.read())
    return next((a for a in found if not a.startswith("127.")), None)


class TestCA:
    """A CA with a server certificate for ``hosts`` (default 127.0.0.1 and localhost),
    written by ``portside.tls.init`` into ``directory``: ``ca_path``, ``cert_path``,
    ``key_path`` (PEM)."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: str, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")):
        from portside.tls import init

        self.dir = directory
        self.hosts = hosts
        init(directory, list(hosts))
        self.ca_path = os.path.join(directory, "ca.pem")
        self.cert_path = os.path.join(directory, "server-cert.pem")
        self.key_path = os.path.join(directory, "server-key.pem")

    def install(self, certs_dir: str, host: str) -> str:
        """Trust this CA for ``host`` ("ADDR:PORT") as Docker's certs.d does: writes and
        returns ``certs_dir/HOST/ca.crt``."""
        target = os.path.join(certs_dir, host)
        os.makedirs(target, exist_ok=True)
        path = os.path.join(target, "ca.crt")
        shutil.copyfile(self.ca_path, path)
        return path

    def context(self) -> ssl.SSLContext:
        """A client context that trusts this CA only."""
        return ssl.create_default_context(cafile=self.ca_path)


def _htpasswd(users: dict[str, str]) -> str:
    import bcrypt  # the dev extra: distribution reads bcrypt hashes only

    lines = []
    for user, password in users.items():
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
        lines.append(f"{user}:{hashed}\n")
    return "".join(lines)


class RegistryProcess:
    """What the launchers of a registry process for tests share (:class:`DockerRegistry`,
    ``portside.testing.registryserver.RegistryServer``): its log, waiting until it
    listens and answers, and raw HTTP requests to it. A subclass sets ``host``,
    ``tls``, ``proc``, ``log_path`` and the ``LISTENING`` pattern of its log line."""

    NAME = "registry"
    #: the log line naming the address it listens on (group 1: ADDR:PORT)
    LISTENING = re.compile(r"listening on (\S+:\d+)")
    host: str
    tls: TestCA | None
    proc: subprocess.Popen[bytes] | None
    log_path: str

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def log(self, offset: int = 0) -> str:
        """The end of its log from ``offset`` ("" when there is none)."""
        try:
            with open(self.log_path, errors="replace") as f:
                f.seek(offset)
                return f.read()[-8000:]
        except OSError:
            return ""

    def _wait_listening(self, timeout: float, offset: int = 0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.LISTENING.search(self.log(offset))
            if found:
                return found.group(1)
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.NAME} exited {self.proc.returncode}: {self.log()}")
            time.sleep(0.02)
        raise RuntimeError(f"{self.NAME} did not listen within {timeout}s: {self.log()}")

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                status, _, _ = self.request("GET", "/v2/")
            except OSError:
                status = 0
            if status in (200, 401):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.url}/v2/ answered {status}: {self.log()}")
            time.sleep(0.02)

    def _end(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Stop the process (``sig``, then SIGKILL after ``timeout``); its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        token: str | None = None,
        timeout: float = 30,
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP request (the test CA trusted, ``auth`` as Basic, ``token`` as
        Bearer): ``(status, headers with lowercase names, body)``. For fixtures and
        checks, not a client."""
        import base64

        hdrs = dict(headers or {})
        if auth is not None:
            basic = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            hdrs["Authorization"] = f"Basic {basic}"
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        conn: http.client.HTTPConnection
        if self.tls is not None:
            ctx = self.tls.context()
            conn = http.client.HTTPSConnection(self.host, timeout=timeout, context=ctx)
        else:
            conn = http.client.HTTPConnection(self.host, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()


class DockerRegistry(RegistryProcess):
    """``docker-registry serve`` on ``address`` (127.0.0.1) and a free port, as a
    context manager; ``host`` is "ADDR:PORT", ``url`` its base URL."""

    NAME = "docker-registry"
    LISTENING = re.compile(r'msg="listening on ([^\s",]+)')

    def __init__(
        self,
        root_dir: str,
        *,
        tls: TestCA | None = None,
        htpasswd: dict[str, str] | None = None,
        address: str = "127.0.0.1",
        binary: str = REGISTRY_BINARY,
    ) -> None:
        self.root_dir = root_dir
        self.tls = tls
        self.users = dict(htpasswd or {})
        self.address = address
        self.binary = binary
        self.dir = ""
        self.host = ""
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def storage(self) -> str:
        """The filesystem driver's root (``docker/registry/v2/...`` below it)."""
        return os.path.join(self.dir, "storage")

    @property
    def log_path(self) -> str:
        return os.path.join(self.dir, "registry.log")

    def config(self) -> str:
        """The registry's configuration (version 0.1 YAML)."""
        lines = [
            "version: 0.1",
            "log:",
            "  level: info",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.storage}",
            "  delete:",
            "    enabled: true",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            f"  addr: {self.address}:0",
            f"  secret: {secrets.token_hex(16)}",
        ]
        if self.tls is not None:
            lines += [
                "  tls:",
                f"    certificate: {self.tls.cert_path}",
                f"    key: {self.tls.key_path}",
            ]
        if self.users:
            path = os.path.join(self.dir, "htpasswd")
            lines += ["auth:", "  htpasswd:", "    realm: portside-test", f"    path: {path}"]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 15.0) -> None:
        """Start the process and wait until ``/v2/`` answers."""
        reason = registry_unavailable(self.binary)
        if reason is not None:
            raise FileNotFoundError(reason)
        os.makedirs(self.root_dir, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix="registry-", dir=self.root_dir)
        if self.users:
            with open(os.path.join(self.dir, "htpasswd"), "w") as f:
                f.write(_htpasswd(self.users))
        config = os.path.join(self.dir, "config.yml")
        with open(config, "w") as f:
            f.write(self.config())
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "serve", config],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=self.dir,
            )  # fmt: skip
        self.host = self._wait_listening(timeout)
        self._wait_ready(timeout)

    def stop(self) -> None:
        """Stop the process and remove its directory (storage included)."""
        self._end(timeout=10)
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> DockerRegistry:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --- images to push: OCI image layouts ----------------------------------------------

_MTIME = 1_700_000_000
_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
BUSYBOX_APPLETS = ("sh", "cat", "echo", "ls", "true", "uname")


def layer_tar(files: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    """A deterministic layer tar: regular files (mode 0755, parents made) and symlinks."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({d for p in [*files, *(symlinks or {})] for d in _parents(p)})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, _MTIME
            tar.addfile(info)
        for path, data in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), 0o755, _MTIME
            tar.addfile(info, io.BytesIO(data))
        for path, target in sorted((symlinks or {}).items()):
            info = tarfile.TarInfo(path)
            info.type, info.linkname, info.mode, info.mtime = tarfile.SYMTYPE, target, 0o777, _MTIME
            tar.addfile(info)
    return buf.getvalue()


def _parents(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def busybox_layer(extra: dict[str, bytes] | None = None, busybox: str = "/bin/busybox") -> bytes:
    """A layer tar of a static busybox (``bin/busybox`` and a few applet links) plus
    ``extra`` files: runnable on the host's architecture."""
    with open(busybox, "rb") as f:
        files = {"bin/busybox": f.read(), **(extra or {})}
    return layer_tar(files, {f"bin/{a}": "busybox" for a in BUSYBOX_APPLETS})


def sha256_digest(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def gzip_bytes(data: bytes, level: int = 6) -> bytes:
    """gzip with no name and mtime 0: the same bytes every time."""
    import gzip

    return gzip.compress(data, compresslevel=level, mtime=0)


class OCILayout:
    """Writes an OCI image layout (image-spec ``image-layout.md``) in ``path``: images
    from layer tars, indexes of them, ``index.json`` entries tagged for skopeo
    (``oci:PATH:TAG``) and for ``portside load`` / ``docker load`` (:meth:`archive`)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.entries: list[dict[str, object]] = []
        #: manifest.json entries (docker-archive) of the images added with a name
        self.docker: list[dict[str, object]] = []
        os.makedirs(os.path.join(path, "blobs", "sha256"), exist_ok=True)
        with open(os.path.join(path, "oci-layout"), "w") as f:
            f.write('{"imageLayoutVersion":"1.0.0"}')
        self.write()

    def blob(self, data: bytes) -> tuple[str, int]:
        """Store ``data``; its ``(digest, size)``."""
        digest = sha256_digest(data)
        with open(self.blob_path(digest), "wb") as f:
            f.write(data)
        return digest, len(data)

    def blob_path(self, digest: str) -> str:
        return os.path.join(self.path, "blobs", *digest.split(":", 1))

    def read(self, digest: str) -> bytes:
        with open(self.blob_path(digest), "rb") as f:
            return f.read()

    def image(
        self,
        layers: list[bytes],
        *,
        arch: str | None = None,
        cmd: tuple[str, ...] = ("sh",),
        name: str | None = None,
        level: int = 6,
    ) -> dict[str, object]:
        """Add an image of ``layers`` (uncompressed tars, gzipped here at ``level``)
        for linux/``arch`` (default: the host's); listed in ``index.json`` when
        ``name`` ("repo:tag") is given. Returns its manifest's descriptor."""
        from portside.oci.platform import host_platform

        arch = arch or host_platform().architecture
        descs, diff_ids = [], []
        for tar in layers:
            digest, size = self.blob(gzip_bytes(tar, level))
            descs.append({"mediaType": _OCI_LAYER_GZIP, "digest": digest, "size": size})
            diff_ids.append(sha256_digest(tar))
        return self.image_of_blobs(descs, diff_ids, arch=arch, cmd=cmd, name=name)

    def image_of_blobs(
        self,
        layers: list[dict[str, object]],
        diff_ids: list[str],
        *,
        arch: str,
        cmd: tuple[str, ...] = ("sh",),
        name: str | None = None,
    ) -> dict[str, object]:
        """Add an image of layer blobs already stored (their descriptors and diffIDs)."""
        import json

        config = {
            "architecture": arch,
            "os": "linux",
            "created": "2023-11-14T22:13:20Z",
            "config": {"Env": ["PATH=/bin"], "Cmd": list(cmd)},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": "portside.testing.registry"} for _ in diff_ids],
        }
        cfg_digest, cfg_size = self.blob(json.dumps(config, sort_keys=True).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": _OCI_MANIFEST,
            "config": {"mediaType": _OCI_CONFIG, "digest": cfg_digest, "size": cfg_size},
            "layers": layers,
        }
        digest, size = self.blob(json.dumps(manifest, sort_keys=True).encode())
        desc: dict[str, object] = {
            "mediaType": _OCI_MANIFEST,
            "digest": digest,
            "size": size,
            "platform": {"architecture": arch, "os": "linux"},
        }
        if name is not None:
            self._tag(desc, name)
            paths = [f"blobs/sha256/{d['digest'].split(':')[1]}" for d in layers]  # type: ignore[union-attr]
            self.docker.append(
                {"Config": f"blobs/sha256/{cfg_digest[7:]}", "RepoTags": [name], "Layers": paths}
            )
        return desc

    def index(self, manifests: list[dict[str, object]], *, name: str) -> dict[str, object]:
        """Add an OCI index of ``manifests`` (descriptors with platforms) as ``name``."""
        import json

        doc = {"schemaVersion": 2, "mediaType": _OCI_INDEX, "manifests": manifests}
        digest, size = self.blob(json.dumps(doc, sort_keys=True).encode())
        desc: dict[str, object] = {"mediaType": _OCI_INDEX, "digest": digest, "size": size}
        self._tag(desc, name)
        return desc

    def _tag(self, desc: dict[str, object], name: str) -> None:
        tag = name.rpartition(":")[2] if ":" in name.rpartition("/")[2] else "latest"
        annotations = {"org.opencontainers.image.ref.name": tag, "io.containerd.image.name": name}
        self.entries.append({**desc, "annotations": annotations})
        self.write()

    def write(self) -> None:
        import json

        doc = {"schemaVersion": 2, "mediaType": _OCI_INDEX, "manifests": self.entries}
        with open(os.path.join(self.path, "index.json"), "w") as f:
            json.dump(doc, f)

    def archive(self, path: str) -> str:
        """Tar the layout into ``path`` with a docker-archive ``manifest.json`` for the
        named images, as Docker 25+ writes ``docker save``: ``portside load -i PATH``."""
        import io
        import json
        import tarfile

        with tarfile.open(path, "w") as tar:
            tar.add(self.path, arcname=".", recursive=True)
            data = json.dumps(self.docker).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size, info.mtime = len(data), _MTIME
            tar.addfile(info, io.BytesIO(data))
        return path


# --- the cutting proxy ---------------------------------------------------------------

_REQUEST_LINE = re.compile(rb"^([A-Z]+) (\S+) HTTP/1\.[01]$")


class ProxiedRequest:
    """One request seen by :class:`CuttingProxy`: its connection number, method, path
    and ``Range`` header ("" when none)."""

    def __init__(self, conn: int, method: str, path: str, range_: str) -> None:
        self.conn = conn
        self.method = method
        self.path = path
        self.range = range_

    def __repr__(self) -> str:
        return f"ProxiedRequest({self.conn}, {self.method} {self.path}, range={self.range!r})"


class _RequestParser:
    """Request heads out of a client's byte stream (bodies skipped by Content-Length)."""

    def __init__(self, conn: int, sink: list[ProxiedRequest], lock: threading.Lock) -> None:
        self.conn = conn
        self.sink = sink
        self.lock = lock
        self.buf = b""
        self.skip = 0
        self.broken = False

    def feed(self, data: bytes) -> None:
        if self.broken:
            return
        self.buf += data
        while True:
            if self.skip:
                taken = min(self.skip, len(self.buf))
                self.buf, self.skip = self.buf[taken:], self.skip - taken
                if self.skip:
                    return
            head, sep, rest = self.buf.partition(b"\r\n\r\n")
            if not sep:
                return
            self.buf = rest
            self._head(head)
            if self.broken:
                return

    def _head(self, head: bytes) -> None:
        first, *fields = head.split(b"\r\n")
        match = _REQUEST_LINE.match(first)
        headers = {}
        for field in fields:
            name, _, value = field.partition(b":")
            headers[name.strip().lower()] = value.strip().decode("latin-1")
        if match is None or "chunked" in headers.get(b"transfer-encoding", ""):
            self.broken = True  # not followed further; the proxy still forwards it all
            return
        self.skip = int(headers.get(b"content-length", "0") or 0)
        request = ProxiedRequest(
            self.conn, match.group(1).decode(), match.group(2).decode(), headers.get(b"range", "")
        )
        with self.lock:
            self.sink.append(request)


class _Link:
    """One proxied connection: the client's and upstream's sockets, closed by the last
    of its two pumps (so no thread ever uses a closed socket's fd)."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.lock = threading.Lock()
        self.pumps = 2

    def shutdown(self) -> None:
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def done(self) -> bool:
        """One pump has finished: True when it was the last one."""
        self.shutdown()
        with self.lock:
            self.pumps -= 1
            last = self.pumps == 0
        if last:
            self.client.close()
            self.upstream.close()
        return last


class CuttingProxy:
    """A loopback TCP proxy to ``upstream_host`` ("ADDR:PORT") that closes a client's
    connection once it has forwarded ``cut_after_bytes`` bytes of responses on it; it
    does that ``times`` times, then passes everything through. ``host`` is its own
    "127.0.0.1:PORT"; ``connections`` counts the connections accepted, ``cuts`` the
    connections cut, ``requests`` lists the requests seen (:class:`ProxiedRequest`)."""

    def __init__(self, upstream_host: str, cut_after_bytes: int, times: int = 1) -> None:
        addr, _, port = upstream_host.rpartition(":")
        self.upstream = (addr, int(port))
        self.cut_after = cut_after_bytes
        self.times = times
        self.connections = 0
        self.cuts = 0
        self.requests: list[ProxiedRequest] = []
        self._lock = threading.Lock()
        self._links: set[_Link] = set()
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._closed = False

    def start(self) -> CuttingProxy:
        self._spawn(self._accept_loop)
        return self

    def requests_for(self, path_part: str) -> list[ProxiedRequest]:
        """The requests whose path contains ``path_part``."""
        with self._lock:
            return [r for r in self.requests if path_part in r.path]

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            link = _Link(client, upstream)
            with self._lock:
                if self._closed:
                    link.done()
                    link.done()
                    return
                self.connections += 1
                number = self.connections
                self._links.add(link)
            parser = _RequestParser(number, self.requests, self._lock)
            self._spawn(self._forward_requests, link, parser)
            self._spawn(self._forward_responses, link)

    def _forward_requests(self, link: _Link, parser: _RequestParser) -> None:
        try:
            while data := link.client.recv(65536):
                parser.feed(data)
                link.upstream.sendall(data)
        except OSError:
            pass
        finally:
            self._finish(link)

    def _forward_responses(self, link: _Link) -> None:
        sent = 0
        limit: int | None = self.cut_after
        try:
            while data := link.upstream.recv(65536):
                if limit is not None and sent + len(data) >= limit and self._take_cut():
                    link.client.sendall(data[: limit - sent])
                    break
                if limit is not None and sent + len(data) >= limit:
                    limit = None  # no cuts left: pass through
                link.client.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            self._finish(link)

    def _take_cut(self) -> bool:
        with self._lock:
            if self.cuts >= self.times:
                return False
            self.cuts += 1
            return True

    def _finish(self, link: _Link) -> None:
        if link.done():
            with self._lock:
                self._links.discard(link)

    def close(self) -> None:
        """Stop accepting, close every connection and wait for the threads."""
        with self._lock:
            self._closed = True
            links = list(self._links)
            threads = list(self._threads)
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for link in links:
            link.shutdown()  # the pumps see EOF and close the sockets
        for thread in threads:
            thread.join(5)

    def __enter__(self) -> CuttingProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
