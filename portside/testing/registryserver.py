"""A real ``portside registry serve`` process for tests and benchmarks, on 127.0.0.1 and
a free port, open (``auth="none"``) or with token auth (``auth="token"``, the default of
the command), its data in a fresh root (or a given one, to share it between instances
or keep it across a restart).

::

    with RegistryServer(tmp, auth="none") as reg:            # reg.host "127.0.0.1:PORT"
        skopeo copy oci:DIR docker://{reg.host}/app:1 --dest-tls-verify=false
    with RegistryServer(tmp, auth="token") as reg:
        reg.add_user("alice", "s3cret", admin=True)           # portside registry user add
        token = reg.token(["repository:alice/app:pull,push"], auth=("alice", "s3cret"))
        status, headers, body = reg.request("GET", "/v2/alice/app/tags/list", token=token)
        reg.restart()                                         # same root, db and port

The process listens on port 0 unless told: the port it got is read from its log line
``listening on ADDR:PORT``, so parallel test runs never race for one. ``admin(...)``
runs ``portside registry ARGS --root ROOT [--db URL]`` (the account commands).

:class:`PostgresServer` starts Debian's PostgreSQL (``initdb`` + ``pg_ctl``, as the
``postgres`` user when run as root) in a temporary directory on a free port, for
several registry instances sharing one metadata store::

    with PostgresServer() as pg:                        # pg.url "postgresql://…"
        with RegistryServer(tmp, db_url=pg.url, root=shared) as a, \
             RegistryServer(tmp, db_url=pg.url, root=shared) as b: ...
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

from portside.testing.registry import RegistryProcess

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

    from portside.testing.registry import TestCA

__all__ = ["PostgresServer", "RegistryServer", "peak_rss_kib", "postgres_unavailable"]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def peak_rss_kib(pid: int) -> int:
    """The peak resident set (VmHWM, KiB) of a live process; 0 when unknown."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class RegistryServer(RegistryProcess):
    """One ``portside registry serve`` process; ``host`` is "127.0.0.1:PORT", ``url``
    its base URL, ``root`` its data directory (created under ``root_dir`` unless
    given), ``db_url`` its metadata store ("" = SQLite under the root). ``config``
    is written as the ``--config`` JSON file; ``extra_args`` are added to serve's."""

    NAME = "portside registry"

    def __init__(
        self,
        root_dir: str,
        *,
        auth: str = "none",
        root: str | None = None,
        db_url: str = "",
        config: dict[str, object] | None = None,
        tls: TestCA | None = None,
        address: str = "127.0.0.1",
        port: int = 0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.root_dir = root_dir
        self.auth = auth
        self.db_url = db_url
        self.config = dict(config or {})
        self.tls = tls
        self.address = address
        self.port = port
        self.extra_args = list(extra_args)
        os.makedirs(root_dir, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix="regserve-", dir=root_dir)
        self.root = root or os.path.join(self.dir, "root")
        self._own_root = root is None
        self.log_path = os.path.join(self.dir, "registry.log")
        self.host = ""
        self.proc: subprocess.Popen[bytes] | None = None

    # --- the process ------------------------------------------------------------------

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("the registry is not running")
        return self.proc.pid

    def common_args(self) -> list[str]:
        """``--root ROOT [--db URL]``: what every ``portside registry`` command takes."""
        return ["--root", self.root, *(["--db", self.db_url] if self.db_url else [])]

    def argv(self) -> list[str]:
        args = [
            sys.executable,
            "-m",
            "portside.cli.main",
            "registry",
            "serve",
            "--addr",
            f"{self.address}:{self.port}",
            "--auth",
            self.auth,
            *self.common_args(),
        ]
        if self.config:
            path = os.path.join(self.dir, "config.json")
            with open(path, "w") as f:
                json.dump(self.config, f)
            args += ["--config", path]
        if self.tls is not None:
            args += ["--tls-cert", self.tls.cert_path, "--tls-key", self.tls.key_path]
        return [*args, *self.extra_args]

    def start(self, timeout: float = 20.0) -> None:
        """Start the process and wait until ``/v2/`` answers (200 or 401)."""
        os.makedirs(self.root, exist_ok=True)
        offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=REPO,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self.host = self._wait_listening(timeout, offset)
        self.port = int(self.host.rpartition(":")[2])
        self._wait_ready(timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Stop the process (``sig``, then SIGKILL after ``timeout``); its exit code."""
        return self._end(sig, timeout)

    def restart(self, timeout: float = 20.0) -> None:
        """Stop and start again on the same root, database and port."""
        self.stop()
        self.start(timeout)

    def close(self) -> None:
        """Stop the process and remove its directory (the root too, unless it was given)."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def peak_rss_kib(self) -> int:
        """The server's peak resident set so far (KiB)."""
        return peak_rss_kib(self.pid)

    # --- the admin commands -----------------------------------------------------------

    def admin(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """``portside registry ARGS --root ROOT [--db URL]``; with ``check``, a failure
        raises with its output."""
        argv = [sys.executable, "-m", "portside.cli.main", "registry", *args, *self.common_args()]
        proc = subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"portside registry {' '.join(args)} exited {proc.returncode}: "
                f"{proc.stdout}{proc.stderr}"
            )
        return proc

    def add_user(self, name: str, password: str, *, admin: bool = False) -> None:
        """``portside registry user add NAME --password-stdin [--admin]``."""
        self.admin(
            "user",
            "add",
            name,
            "--password-stdin",
            *(["--admin"] if admin else []),
            input=password + "\n",
        )

    def token(
        self,
        scopes: Sequence[str] = (),
        *,
        auth: tuple[str, str] | None = None,
        service: str | None = None,
    ) -> str:
        """A bearer token from ``GET /token`` for ``scopes`` (Basic ``auth`` or
        anonymous); the service defaults to the one the /v2/ challenge names."""
        from urllib.parse import urlencode

        if service is None:
            _, headers, _ = self.request("GET", "/v2/")
            found = re.search(r'service="([^"]*)"', headers.get("www-authenticate", ""))
            service = found.group(1) if found else ""
        query = urlencode([("service", service), *(("scope", s) for s in scopes)])
        status, _, body = self.request("GET", f"/token?{query}", auth=auth)
        if status != 200:
            raise AssertionError(f"GET /token answered {status}: {body[:500]!r}")
        return str(json.loads(body)["token"])

    def __enter__(self) -> RegistryServer:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --- PostgreSQL ----------------------------------------------------------------------------

_PG_ROOT = "/usr/lib/postgresql"
PG_INSTALL_HINT = "apt-get install postgresql (Debian's PostgreSQL server)"


def _pg_bin() -> str | None:
    try:
        versions = sorted(os.listdir(_PG_ROOT), key=lambda v: int(v) if v.isdigit() else 0)
    except FileNotFoundError:
        return None
    for version in reversed(versions):
        path = os.path.join(_PG_ROOT, version, "bin")
        if os.access(os.path.join(path, "pg_ctl"), os.X_OK):
            return path
    return None


def postgres_unavailable() -> str | None:
    """Why no PostgreSQL server can be started here (a skip reason), or None."""
    if _pg_bin() is None:
        return f"needs PostgreSQL's server binaries under {_PG_ROOT}: {PG_INSTALL_HINT}"
    if os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root needs the postgres user to start PostgreSQL"
    return None


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (in its own directory under /tmp);
    ``url`` is its ``postgresql://postgres@127.0.0.1:PORT/postgres`` (trust auth)."""

    def __init__(self) -> None:
        self.dir = ""
        self.port = 0
        self.bin = _pg_bin() or ""
        self.started = False

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        user = "postgres" if os.geteuid() == 0 else None
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            user=user,
            cwd=self.dir,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr}")

    def start(self) -> None:
        reason = postgres_unavailable()
        if reason is not None:
            raise FileNotFoundError(reason)
        # in /tmp itself: the postgres user must reach it (pytest's tmp_path is 0700)
        self.dir = tempfile.mkdtemp(prefix="portside-pg-")
        if os.geteuid() == 0:
            import pwd

            entry = pwd.getpwnam("postgres")
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        data = os.path.join(self.dir, "data")
        self._run(
            os.path.join(self.bin, "initdb"),
            "-D",
            data,
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
        )
        self.port = _free_port()
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            os.path.join(self.bin, "pg_ctl"),
            "-D",
            data,
            "-o",
            options,
            "-l",
            os.path.join(self.dir, "log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        self.started = True

    def create_database(self, name: str) -> str:
        """A new, empty database ``name`` (letters, digits, _): its URL."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"invalid database name {name!r}")
        self._run(
            os.path.join(self.bin, "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            name,
        )
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def log(self) -> str:
        try:
            with open(os.path.join(self.dir, "log"), errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.started:
            data = os.path.join(self.dir, "data")
            try:
                self._run(
                    os.path.join(self.bin, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"
                )
            finally:
                self.started = False
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = ""

    def __enter__(self) -> PostgresServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
