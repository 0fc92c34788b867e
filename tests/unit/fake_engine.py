"""An in-memory Engine with the methods of portside.engine.engine.Engine, for API tests.

Containers "run" their ``Cmd``: ``echo WORDS`` prints WORDS, anything else prints
nothing; output goes to attach sockets (framed without a TTY) and to the logs.
"""

from __future__ import annotations

import hashlib
import io
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from portside.errors import Conflict, InvalidArgument, NotFound, NotModified


def _id(seed: str) -> str:
    return hashlib.sha256(f"{seed}{time.time_ns()}".encode()).hexdigest()


class FakeSubscription:
    def __init__(self, bus: FakeEvents, filters: dict[str, list[str]] | None) -> None:
        self.queue: queue.Queue[dict] = queue.Queue()
        self.bus = bus
        self.filters = filters or {}
        self.closed = False

    def get(self, timeout: float | None = None) -> dict | None:
        try:
            return self.queue.get(timeout=timeout) if timeout else self.queue.get_nowait()
        except queue.Empty:
            return None

    def close(self) -> None:
        self.closed = True
        self.bus.subs.discard(self)

    def __iter__(self) -> Iterator[dict]:
        while not self.closed:
            event = self.get(0.1)
            if event is not None:
                yield event


class FakeEvents:
    def __init__(self) -> None:
        self.subs: set[FakeSubscription] = set()
        self.history: list[dict] = []

    def publish(self, type: str, action: str, actor_id: str, attributes: dict[str, str]) -> dict:
        now = time.time_ns()
        event = {
            "Type": type,
            "Action": action,
            "Actor": {"ID": actor_id, "Attributes": attributes},
            "scope": "local",
            "time": now // 10**9,
            "timeNano": now,
        }
        if type == "container":
            event |= {"status": action, "id": actor_id, "from": attributes.get("image", "")}
        self.history.append(event)
        for sub in list(self.subs):
            if all(event.get(k.capitalize()) in v for k, v in sub.filters.items() if k == "type"):
                sub.queue.put(event)
        return event

    def subscribe(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        filters: dict[str, list[str]] | None = None,
    ) -> FakeSubscription:
        sub = FakeSubscription(self, filters)
        if since is not None:
            for event in self.history:
                if event["timeNano"] / 1e9 >= since:
                    sub.queue.put(event)
        self.subs.add(sub)
        return sub


class FakeContainer:
    def __init__(self, cid: str, name: str, config: dict, host_config: dict) -> None:
        self.id, self.name, self.config, self.host_config = cid, name, config, host_config
        self.status = "created"
        self.exit_code = 0
        self.started = threading.Event()
        self.exited = threading.Condition()
        self.exit_count = 0
        self.attached: list[socket.socket] = []
        self.output: list[tuple[int, bytes]] = []
        self.stdin = b""

    @property
    def tty(self) -> bool:
        return bool(self.config.get("Tty"))

    def run_output(self) -> bytes:
        cmd = self.config.get("Cmd") or []
        if cmd[:1] == ["echo"]:
            return (" ".join(cmd[1:]) + "\n").encode()
        return b""


class FakeEngine:
    """Same method names and shapes as the real Engine; records every call."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.calls: list[tuple[str, tuple, dict]] = []
        self.events = FakeEvents()
        self.containers: dict[str, FakeContainer] = {}
        self.images: dict[str, dict] = {
            "sha256:" + "b" * 64: {"Id": "sha256:" + "b" * 64, "RepoTags": ["busybox:latest"]}
        }
        self.volumes: dict[str, dict] = {}
        self.execs: dict[str, dict] = {}
        self.closed = False
        self.followers_closed = 0

    def _record(self, name: str, *args: Any, **kw: Any) -> None:
        self.calls.append((name, args, kw))

    def close(self) -> None:
        self.closed = True

    # --- system -----------------------------------------------------------------
    def ping(self) -> None:
        self._record("ping")

    def version(self) -> dict:
        return {
            "Version": "0.1.0",
            "ApiVersion": "1.50",
            "MinAPIVersion": "1.41",
            "Os": "linux",
            "Arch": "amd64",
            "GoVersion": "python3.11",
            "GitCommit": "fake",
            "KernelVersion": "6.1",
            "BuildTime": "2026-11-28T00:00:00.000000000Z",
            "Components": [
                {
                    "Name": "Engine",
                    "Version": "0.1.0",
                    "Details": {"ApiVersion": "1.50", "MinAPIVersion": "1.41"},
                }
            ],
            "Platform": {"Name": "Portside"},
        }

    def info(self) -> dict:
        return {
            "ID": "fake",
            "Containers": len(self.containers),
            "Images": len(self.images),
            "Name": "fake",
            "ServerVersion": "0.1.0",
            "OperatingSystem": "Debian",
            "OSType": "linux",
            "Architecture": "x86_64",
            "NCPU": 1,
            "MemTotal": 1 << 30,
            "Driver": "overlay2",
            "DockerRootDir": "/tmp/x",
            "CgroupVersion": "1",
        }

    def df(self) -> dict:
        return {"LayersSize": 0, "Images": [], "Containers": [], "Volumes": [], "BuildCache": []}

    # --- containers ----------------------------------------------------------------
    def _get(self, ref: str) -> FakeContainer:
        with self.lock:
            for c in self.containers.values():
                if ref in (c.id, c.name, "/" + c.name):
                    return c
            found = [c for c in self.containers.values() if c.id.startswith(ref)]
        if len(found) == 1:
            return found[0]
        raise NotFound(f"No such container: {ref}")

    def container_create(
        self,
        name: str | None,
        config: dict,
        host_config: dict,
        networking_config: dict | None = None,
    ) -> dict:
        self._record("container_create", name, config, host_config, networking_config)
        image = config.get("Image", "")
        if not any(
            image in (i["Id"], *i["RepoTags"]) or f"{image}:latest" in i["RepoTags"]
            for i in self.images.values()
        ):
            raise NotFound(f"No such image: {image}")
        if host_config.get("Memory", 0) and host_config["Memory"] < 6 * 1024 * 1024:
            raise InvalidArgument("Minimum memory limit allowed is 6MB")
        cid = _id(name or "")
        name = name or f"fake_{cid[:6]}"
        with self.lock:
            if any(c.name == name for c in self.containers.values()):
                raise Conflict(f'Conflict. The container name "/{name}" is already in use')
            self.containers[cid] = FakeContainer(cid, name, config, host_config)
        self.events.publish("container", "create", cid, {"name": name, "image": image})
        return {"Id": cid, "Warnings": []}

    def container_start(self, ref: str) -> None:
        self._record("container_start", ref)
        c = self._get(ref)
        if c.status == "running":
            raise NotModified(f"container {ref} is already running")
        c.status = "running"
        c.started.set()
        out = c.run_output()
        c.output.append((1, out))
        for sock in c.attached:
            sock.sendall(out if c.tty else struct.pack(">BxxxL", 1, len(out)) + out)
            sock.close()
        c.attached.clear()
        if c.config.get("Cmd", [""])[0] != "sleep":
            threading.Thread(target=self._exit, args=(c, 0), daemon=True).start()

    def _exit(self, c: FakeContainer, code: int) -> None:
        time.sleep(0.05)
        with c.exited:
            c.status, c.exit_code = "exited", code
            c.exit_count += 1
            c.exited.notify_all()
        if c.host_config.get("AutoRemove"):
            with self.lock:
                self.containers.pop(c.id, None)
            with c.exited:
                c.status = "removed"
                c.exited.notify_all()

    def container_stop(
        self, ref: str, timeout: int | None = None, signal: str | None = None
    ) -> None:
        self._record("container_stop", ref, timeout=timeout, signal=signal)
        c = self._get(ref)
        if c.status != "running":
            raise NotModified(f"container {ref} is not running")
        self._exit(c, 137)

    def container_restart(
        self, ref: str, timeout: int | None = None, signal: str | None = None
    ) -> None:
        self._record("container_restart", ref, timeout=timeout, signal=signal)
        self._get(ref).status = "running"

    def container_kill(self, ref: str, signal: str = "SIGKILL") -> None:
        self._record("container_kill", ref, signal)
        c = self._get(ref)
        if c.status != "running":
            raise Conflict(f"container {c.id} is not running")
        self._exit(c, 137)

    def container_pause(self, ref: str) -> None:
        self._get(ref).status = "paused"

    def container_unpause(self, ref: str) -> None:
        self._get(ref).status = "running"

    def container_wait(
        self, ref: str, condition: str = "not-running", timeout: float | None = None
    ) -> dict:
        return self.container_waiter(ref, condition, timeout)()

    def container_waiter(
        self, ref: str, condition: str = "not-running", timeout: float | None = None
    ) -> Callable[[], dict]:
        self._record("container_wait", ref, condition)
        c = self._get(ref)
        with c.exited:
            seen = c.exit_count
        return lambda: self._wait(c, condition, seen, timeout)

    def _wait(self, c: Any, condition: str, seen: int, timeout: float | None) -> dict:
        with c.exited:
            if condition == "not-running" and c.status not in ("running", "paused"):
                return {"StatusCode": c.exit_code, "Error": None}
            if condition == "removed":
                c.exited.wait_for(
                    lambda: c.status == "removed" or c.id not in self.containers, timeout or 30
                )
            else:
                c.exited.wait_for(lambda: c.exit_count > seen, timeout or 30)
        return {"StatusCode": c.exit_code, "Error": None}

    def container_remove(self, ref: str, *, force: bool = False, volumes: bool = False) -> None:
        self._record("container_remove", ref, force=force, volumes=volumes)
        c = self._get(ref)
        if c.status == "running" and not force:
            raise Conflict(
                f"cannot remove container {c.name}: container is running: "
                "stop the container before removing or force remove"
            )
        with self.lock:
            self.containers.pop(c.id, None)
        with c.exited:
            c.status = "removed"
            c.exited.notify_all()

    def container_inspect(self, ref: str, *, size: bool = False) -> dict:
        c = self._get(ref)
        return {
            "Id": c.id,
            "Name": "/" + c.name,
            "Created": "2026-11-28T00:00:00.000000000Z",
            "Path": (c.config.get("Cmd") or [""])[0],
            "Args": (c.config.get("Cmd") or [])[1:],
            "State": {
                "Status": c.status,
                "Running": c.status == "running",
                "Paused": c.status == "paused",
                "Restarting": False,
                "OOMKilled": False,
                "Dead": False,
                "Pid": 0,
                "ExitCode": c.exit_code,
                "Error": "",
                "StartedAt": "0001-01-01T00:00:00Z",
                "FinishedAt": "0001-01-01T00:00:00Z",
            },
            "Image": "sha256:" + "b" * 64,
            "Config": c.config,
            "HostConfig": {"LogConfig": {"Type": "json-file", "Config": {}}} | c.host_config,
            "Mounts": [],
            "NetworkSettings": {"Networks": {}, "Ports": {}},
            "RestartCount": 0,
            "Driver": "overlay2",
            "Platform": "linux",
        }

    def container_list(
        self,
        *,
        all: bool = False,
        limit: int = -1,
        size: bool = False,
        filters: dict[str, list[str]] | None = None,
    ) -> list[dict]:
        self._record("container_list", all=all, limit=limit, size=size, filters=filters)
        out = []
        for c in list(self.containers.values()):
            if not all and c.status != "running":
                continue
            if filters and "status" in filters and c.status not in filters["status"]:
                continue
            out.append(
                {
                    "Id": c.id,
                    "Names": ["/" + c.name],
                    "Image": c.config.get("Image", ""),
                    "ImageID": "sha256:" + "b" * 64,
                    "Command": " ".join(c.config.get("Cmd") or []),
                    "Created": 1764288000,
                    "State": c.status,
                    "Status": c.status,
                    "Ports": [],
                    "Labels": c.config.get("Labels") or {},
                    "Mounts": [],
                    "HostConfig": {"NetworkMode": "none"},
                    "NetworkSettings": {"Networks": {}},
                }
            )
        return out[:limit] if limit > 0 else out

    def container_rename(self, ref: str, name: str) -> None:
        self._get(ref).name = name

    def container_update(self, ref: str, resources: dict) -> dict:
        self._get(ref).host_config.update(resources)
        return {"Warnings": []}

    def container_changes(self, ref: str) -> list[dict]:
        self._get(ref)
        return [{"Path": "/tmp", "Kind": 0}]

    def container_export(self, ref: str) -> Iterator[bytes]:
        self._get(ref)
        return iter([b"x" * 512, b"\0" * 1024])

    def container_top(self, ref: str, ps_args: str = "-ef") -> dict:
        self._get(ref)
        return {"Titles": ["PID", "CMD"], "Processes": [["1", "sleep"]]}

    def container_stats(self, ref: str, *, stream: bool = True) -> Iterator[dict]:
        self._get(ref)

        def gen() -> Iterator[dict]:
            for i in range(3 if stream else 1):
                yield {"read": "2026-11-28T00:00:00Z", "pids_stats": {"current": i + 1}}

        return gen()

    def container_logs(
        self,
        ref: str,
        *,
        follow: bool = False,
        stdout: bool = False,
        stderr: bool = False,
        since: float = 0.0,
        until: float = 0.0,
        timestamps: bool = False,
        tail: str = "all",
    ) -> tuple[bool, Iterator[tuple[int, bytes]]]:
        self._record("container_logs", ref, follow=follow, tail=tail, since=since)
        c = self._get(ref)
        chunks = [(s, d) for s, d in c.output if (s == 1 and stdout) or (s == 2 and stderr)]
        if not follow:
            return c.tty, iter(chunks)

        def ticks() -> Iterator[tuple[int, bytes]]:
            try:
                yield from chunks
                # waits until the container stops; a "tick" label ticks forever instead
                ticking = bool((c.config.get("Labels") or {}).get("tick"))
                while ticking or c.status == "running":
                    time.sleep(0.05)
                    if ticking:
                        yield 1, b"tick\n"
            finally:
                self.followers_closed += 1

        return c.tty, ticks()

    def container_attach(
        self,
        ref: str,
        *,
        stdin: bool = False,
        stdout: bool = False,
        stderr: bool = False,
        stream: bool = True,
        logs: bool = False,
        detach_keys: str | None = None,
    ) -> tuple[bool, socket.socket]:
        self._record("container_attach", ref, stdin=stdin, stdout=stdout, stderr=stderr)
        c = self._get(ref)
        ours, theirs = socket.socketpair()
        if c.config.get("Cmd", [""])[0] in ("cat", "sponge"):  # stdin back (sponge: at EOF)
            threading.Thread(target=self._cat, args=(c, ours), daemon=True).start()
        elif c.status == "created":
            c.attached.append(ours)
        else:
            ours.close()
        return c.tty, theirs

    def _cat(self, c: FakeContainer, sock: socket.socket) -> None:
        sponge = c.config["Cmd"][0] == "sponge"
        held = b""
        with sock:
            while data := sock.recv(65536):
                if sponge:
                    held += data
                    continue
                sock.sendall(data if c.tty else struct.pack(">BxxxL", 1, len(data)) + data)
            if held:
                sock.sendall(held if c.tty else struct.pack(">BxxxL", 1, len(held)) + held)

    def container_resize(self, ref: str, height: int, width: int) -> None:
        self._record("container_resize", ref, height, width)
        self._get(ref)

    def archive_head(self, ref: str, path: str) -> dict:
        self._get(ref)
        return {
            "name": path.rsplit("/", 1)[-1],
            "size": 3,
            "mode": 420,
            "mtime": "2026-11-28T00:00:00Z",
            "linkTarget": "",
        }

    def archive_get(self, ref: str, path: str) -> tuple[dict, Iterator[bytes]]:
        return self.archive_head(ref, path), iter([b"tar-bytes"])

    def archive_put(
        self,
        ref: str,
        path: str,
        stream: BinaryIO,
        *,
        no_overwrite_dir_non_dir: bool = False,
        copy_uid_gid: bool = False,
    ) -> None:
        self._get(ref)
        data = b""
        while chunk := stream.read(4096):
            data += chunk
        self._record("archive_put", ref, path, data)

    def containers_prune(self, filters: dict[str, list[str]] | None = None) -> dict:
        self._record("containers_prune", filters)
        return {"ContainersDeleted": [], "SpaceReclaimed": 0}

    # --- exec ------------------------------------------------------------------------
    def exec_create(self, ref: str, config: dict) -> dict:
        c = self._get(ref)
        if c.status != "running":
            raise Conflict(f"container {c.id} is not running")
        eid = _id("exec")
        self.execs[eid] = {
            "ID": eid,
            "ContainerID": c.id,
            "Config": config,
            "Running": False,
            "ExitCode": None,
        }
        return {"Id": eid}

    def exec_start(
        self, exec_id: str, *, detach: bool = False, tty: bool = False
    ) -> tuple[bool, socket.socket] | None:
        ex = self.exec_inspect(exec_id)
        self._record("exec_start", exec_id, detach=detach, tty=tty)
        ex["ExitCode"] = 0
        if detach:
            return None
        ours, theirs = socket.socketpair()
        cmd = ex["Config"].get("Cmd") or []
        if cmd[:1] == ["cat"]:
            threading.Thread(target=self._cat_exec, args=(tty, ours), daemon=True).start()
        else:
            out = (" ".join(cmd[1:]) + "\n").encode() if cmd[:1] == ["echo"] else b""
            with ours:
                ours.sendall(out if tty else struct.pack(">BxxxL", 1, len(out)) + out)
        return tty, theirs

    def _cat_exec(self, tty: bool, sock: socket.socket) -> None:
        with sock:
            while data := sock.recv(65536):
                sock.sendall(data if tty else struct.pack(">BxxxL", 1, len(data)) + data)
            sock.sendall(b"" if tty else struct.pack(">BxxxL", 2, 4) + b"EOF\n")

    def exec_inspect(self, exec_id: str) -> dict:
        try:
            return self.execs[exec_id]
        except KeyError:
            raise NotFound(f"No such exec instance: {exec_id}") from None

    def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        self._record("exec_resize", exec_id, height, width)
        self.exec_inspect(exec_id)

    # --- images ------------------------------------------------------------------------
    def _image(self, ref: str) -> dict:
        for image in self.images.values():
            if (
                ref in (image["Id"], image["Id"][7:], *image["RepoTags"])
                or f"{ref}:latest" in image["RepoTags"]
            ):
                return image
        raise NotFound(f"No such image: {ref}")

    def image_list(
        self, *, all: bool = False, filters: dict | None = None, digests: bool = False
    ) -> list[dict]:
        return [
            {
                "Id": i["Id"],
                "ParentId": "",
                "RepoTags": i["RepoTags"],
                "RepoDigests": [],
                "Created": 1764288000,
                "Size": 4096,
                "SharedSize": -1,
                "VirtualSize": 4096,
                "Labels": {},
                "Containers": -1,
            }
            for i in self.images.values()
        ]

    def image_inspect(self, ref: str) -> dict:
        image = self._image(ref)
        return {
            "Id": image["Id"],
            "RepoTags": image["RepoTags"],
            "RepoDigests": [],
            "Created": "2026-11-28T00:00:00Z",
            "Os": "linux",
            "Architecture": "amd64",
            "Size": 4096,
            "Config": {"Cmd": ["sh"]},
            "RootFS": {"Type": "layers", "Layers": []},
        }

    def image_history(self, ref: str) -> list[dict]:
        image = self._image(ref)
        return [
            {
                "Id": image["Id"],
                "Created": 1764288000,
                "CreatedBy": "fake",
                "Tags": [],
                "Size": 4096,
                "Comment": "",
            }
        ]

    def image_tag(self, ref: str, repo: str, tag: str | None) -> None:
        self._record("image_tag", ref, repo, tag)
        repo = repo.removeprefix("docker.io/").removeprefix("library/")
        self._image(ref)["RepoTags"].append(f"{repo}:{tag or 'latest'}")

    def image_remove(self, ref: str, *, force: bool = False, noprune: bool = False) -> list[dict]:
        image = self._image(ref)
        del self.images[image["Id"]]
        return [{"Untagged": t} for t in image["RepoTags"]] + [{"Deleted": image["Id"]}]

    def images_prune(self, filters: dict | None = None) -> dict:
        return {"ImagesDeleted": [], "SpaceReclaimed": 0}

    def images_save(self, names: list[str]) -> Iterator[bytes]:
        for name in names:
            self._image(name)
        return iter([b"saved:" + ",".join(names).encode()])

    def images_load(self, stream: BinaryIO, *, quiet: bool = False) -> list[str]:
        data = stream.read()
        self._record("images_load", data, quiet=quiet)
        return ["Loaded image: busybox:latest"]

    def image_import(
        self,
        stream: BinaryIO,
        *,
        repo: str | None,
        tag: str | None,
        changes: list[str],
        message: str = "",
    ) -> str:
        data = io.BytesIO(stream.read()).getvalue()
        self._record("image_import", data, repo=repo, tag=tag, changes=changes)
        image_id = "sha256:" + hashlib.sha256(data).hexdigest()
        tags = [f"{repo}:{tag or 'latest'}"] if repo else []
        self.images[image_id] = {"Id": image_id, "RepoTags": tags}
        return image_id

    def commit(
        self,
        ref: str,
        *,
        repo: str | None,
        tag: str | None,
        comment: str = "",
        author: str = "",
        pause: bool = True,
        changes: list[str] | tuple = (),
        config: dict | None = None,
    ) -> str:
        self._record(
            "commit", ref, repo=repo, tag=tag, pause=pause, changes=list(changes), config=config
        )
        self._get(ref)
        return "sha256:" + "c" * 64

    # --- volumes ---------------------------------------------------------------------
    def volume_create(
        self,
        name: str | None = None,
        driver: str = "local",
        driver_opts: dict | None = None,
        labels: dict | None = None,
    ) -> dict:
        name = name or _id("vol")
        vol = {
            "Name": name,
            "Driver": driver,
            "Mountpoint": f"/fake/volumes/{name}/_data",
            "Labels": labels or {},
            "Options": driver_opts or {},
            "Scope": "local",
            "CreatedAt": "2026-11-28T00:00:00Z",
        }
        self.volumes.setdefault(name, vol)
        return self.volumes[name]

    def volume_list(self, filters: dict | None = None) -> dict:
        return {"Volumes": list(self.volumes.values()), "Warnings": []}

    def volume_inspect(self, name: str) -> dict:
        try:
            return self.volumes[name]
        except KeyError:
            raise NotFound(f"get {name}: no such volume") from None

    def network_inspect(self, ref: str, *, verbose: bool = False, scope: str = "") -> dict:
        raise NotFound(f"network {ref} not found")  # no networks (docker inspect asks)

    def volume_remove(self, name: str, *, force: bool = False) -> None:
        self.volume_inspect(name)
        del self.volumes[name]

    def volumes_prune(self, filters: dict | None = None) -> dict:
        return {"VolumesDeleted": [], "SpaceReclaimed": 0}


class ServerThread:
    """The API server over an engine, on its own event loop in a thread (for e2e tests)."""

    def __init__(self, engine: Any, hosts: list[str], tls: Any = None) -> None:
        self.engine, self.hosts, self.tls = engine, hosts, tls
        self.addresses: list[str] = []
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: Any = None
        self._stop: Any = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import asyncio

        from portside.api.daemon import Server

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            server = Server(self.engine, self.hosts, self.tls)
            try:
                await server.start()
            except BaseException as exc:
                self._error = exc
                self._ready.set()
                return
            self.addresses = server.addresses
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                await server.stop()

        asyncio.run(main())

    def __enter__(self) -> ServerThread:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
