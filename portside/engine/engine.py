"""The Engine: the daemon's core as one synchronous, thread-safe facade.

``portside.api`` calls these methods from a thread pool and serialises what they
return (Docker's JSON shapes). The work is done by :class:`~.lifecycle.Lifecycle`
(containers), :class:`~.execs.Execs`, :class:`~.health.HealthChecks`, and the
image, volume, event and system modules; this class resolves references, takes the
container's lock, and shapes the answers.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from portside.distribution.config import AuthConfig
from portside.engine import views
from portside.engine.containerfs import ContainerFiles
from portside.engine.execs import Execs
from portside.engine.health import HealthChecks
from portside.engine.lifecycle import RUNNING_STATES, Lifecycle, parse_signal
from portside.engine.model import Container, ContainerState, EngineConfig, now_rfc3339
from portside.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    NotModified,
    PortsideError,
)

__all__ = ["Engine"]

ANONYMOUS = AuthConfig()


class Engine(ContainerFiles):
    """Containers, execs, images, volumes and the system, as Docker's API sees them
    (a container's files — diff, export, cp — in :mod:`portside.engine.containerfs`)."""

    def __init__(self, config: EngineConfig) -> None:
        from portside.engine.events import EventBus
        from portside.engine.monitor_client import MonitorClient
        from portside.engine.volumes import VolumeStore
        from portside.image.content import ContentStore
        from portside.image.snapshots import open_snapshotter
        from portside.image.store import ImageStore

        paths = config.paths
        os.makedirs(paths.data_root, mode=0o700, exist_ok=True)
        os.chmod(paths.data_root, 0o700)
        os.makedirs(paths.exec_root, mode=0o700, exist_ok=True)
        self.config = config
        self.paths = paths
        self.events = EventBus()
        self.content = ContentStore(paths.content)
        self.image_store = ImageStore(paths.images, self.content)
        self.snapshotter = open_snapshotter(paths.snapshots, config.snapshotter)
        self.volume_store = VolumeStore(paths.volumes)
        self._images: Any = None
        self._distribution: Any = None
        self.lc = Lifecycle(
            config,
            images=self.image_store,
            snapshotter=self.snapshotter,
            volumes=self.volume_store,
            events=self.events,
            monitor_factory=lambda: MonitorClient(paths.exec_root, paths.runtime_root),
        )
        self.execs = Execs(self.lc)
        self.health = HealthChecks(self.execs.probe, self._health_result)
        self.lc.health = self.health
        self._closed = False
        self._subscription: Any = None
        from portside.engine.networks import Networks

        self.networks = Networks(config.network, self.lc.db, self.lc, self.events)
        self.lc.networks = self.networks
        self.networks.load()  # before the containers: their exits release addresses
        to_start = self.lc.load()
        self.networks.reconcile()
        self._watcher = threading.Thread(target=self._watch, name="exits", daemon=True)
        self._watcher.start()
        for c in to_start:
            self._start_quietly(c)

    def close(self) -> None:
        """Stop the engine's threads; containers and the monitor keep running."""
        self._closed = True
        self.health.close()
        self.networks.close()
        sub = self._subscription
        if sub is not None and hasattr(sub, "close"):
            try:
                sub.close()
            except (OSError, ValueError, RuntimeError):
                pass  # a generator running in the watcher cannot be closed from here
        self.lc.close()

    # --- the exit watcher -------------------------------------------------------------

    def _watch(self) -> None:
        while not self._closed:
            try:
                self._subscription = self.lc.monitor.subscribe()
                for c in list(self.lc.containers.values()):
                    self.lc.sync(c)  # exits while we were not listening
                for event in self._subscription:
                    if self._closed:
                        return
                    self._dispatch(event)
            except (OSError, PortsideError):
                pass
            if not self._closed:
                time.sleep(0.2)

    def _dispatch(self, event: dict[str, Any]) -> None:
        if event.get("type") != "exit":
            return
        if event.get("exec"):
            self.execs.exited(event)
        else:
            self.lc.exited(str(event.get("id")), event)

    def _start_quietly(self, c: Container) -> None:
        with self.lc.lock(c.id):
            try:
                self.lc.start(c, manual=False)
            except PortsideError as exc:
                c.state.error = str(exc)

    def _health_result(self, c: Container, apply: Callable[[dict[str, Any]], bool]) -> None:
        """Apply a probe result to State.Health; save; publish a change of status."""
        with self.lc.lock(c.id):
            if self._closed or c.state.health is None or c.state.status != "running":
                return
            changed = apply(c.state.health)
            if c.id in self.lc.containers:
                self.lc.save(c)
        if changed:
            self.lc.publish(c, "health_status: " + str(c.state.health.get("Status")))

    # --- system -----------------------------------------------------------------------

    def ping(self) -> None:
        return None

    def version(self) -> dict[str, Any]:
        from portside.engine import system

        return system.version()

    def info(self) -> dict[str, Any]:
        from portside.engine import system
        from portside.runtime.cgroups import detect_mode

        with self.lc.map_lock:
            states = [c.state.status for c in self.lc.containers.values()]
        counts = {
            "total": len(states),
            "running": sum(s in ("running", "restarting") for s in states),
            "paused": states.count("paused"),
        }
        counts["stopped"] = counts["total"] - counts["running"] - counts["paused"]
        return system.info(
            containers=counts,
            images=len(self.image_store.images()),
            data_root=self.paths.data_root,
            driver=self._driver_name(),
            cgroup_version="2" if detect_mode() == "v2" else "1",
            events_listeners=self.events.subscribers(),
            init_path=self.config.init_path,
            registry=self.config.registry,
            warnings=self.networks.warnings(),
        )

    def _driver_name(self) -> str:
        return "overlay2" if type(self.snapshotter).__name__.startswith("Overlay") else "vfs"

    def df(self) -> dict[str, Any]:
        from portside.engine import system

        layers = 0
        for info in self.snapshotter.walk():
            if getattr(info, "kind", "") == "committed":
                try:
                    layers += int(self.snapshotter.usage(info.name)[0])
                except PortsideError:
                    continue
        volumes = self.volume_store.list().get("Volumes") or []
        return system.df(
            images=self.image_list(all=True),
            containers=self.container_list(all=True, size=True),
            volumes=volumes,
            layers_size=layers,
        )

    # --- containers: create and state -----------------------------------------------

    def _get(self, ref: str) -> Container:
        return self.lc.resolve(ref)

    def container_create(
        self,
        name: str | None,
        config: dict[str, Any],
        host_config: dict[str, Any],
        networking_config: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        from portside.engine import spec as _spec
        from portside.image.store import ImageNotFound

        ref = str(config.get("Image") or "")
        if not ref:
            raise InvalidArgument("config.Image: an image is required")
        try:
            image = self.image_store.get(ref)
        except ImageNotFound as exc:
            raise NotFound(f"No such image: {ref}") from exc
        default_mode = "bridge" if self.networks.default_bridge is not None else "none"
        host_config = views.host_config_defaults(host_config, default_mode)
        warnings = list(_spec.validate_create(config, host_config, self.networks.exists) or [])
        endpoints = self.networks.for_create(host_config, networking_config)
        image_config = (json.loads(image.config).get("config")) or {}
        merged = _spec.merge_image_config(config, image_config)
        cid = os.urandom(32).hex()
        if not merged.get("Hostname"):
            merged["Hostname"] = (
                socket.gethostname() if host_config.get("NetworkMode") == "host" else cid[:12]
            )
        merged["Image"] = ref
        c = Container(
            id=cid,
            name="",
            image=ref,
            image_id=image.id,
            created=now_rfc3339(),
            config=merged,
            host_config=host_config,
            state=ContainerState(),
            networks=endpoints,
        )
        c.driver = (
            "overlay2" if self.snapshotter.__class__.__name__.startswith("Overlay") else "vfs"
        )
        self.lc.reserve(name, c)
        with self.lc.lock(cid):
            try:
                self.lc.build(c, image, image_config)
            except BaseException:
                self._undo_create(c)
                raise
            self.lc.finish_create(c)
        return {"Id": cid, "Warnings": warnings}

    def _undo_create(self, c: Container) -> None:
        try:
            self.lc.teardown(c.id)
        finally:
            self.lc.db.delete_container(c.id)
            with self.lc.map_lock:
                self.lc.containers.pop(c.id, None)

    def container_start(self, ref: str) -> None:
        c = self._get(ref)
        with self.lc.lock(c.id):
            self.lc.start(c, manual=True)

    def container_stop(
        self, ref: str, timeout: int | None = None, signal: str | None = None
    ) -> None:
        self.lc.stop(self._get(ref), timeout, signal)

    def container_restart(
        self, ref: str, timeout: int | None = None, signal: str | None = None
    ) -> None:
        c = self._get(ref)
        try:
            self.lc.stop(c, timeout, signal)
        except NotModified:
            pass
        with self.lc.lock(c.id):
            self.lc.start(c, manual=True)
        self.lc.publish(c, "restart")

    def container_kill(self, ref: str, signal: str = "SIGKILL") -> None:
        c = self._get(ref)
        with self.lc.lock(c.id):
            self.lc.kill(c, parse_signal(signal, 9))

    def container_pause(self, ref: str) -> None:
        c = self._get(ref)
        with self.lc.lock(c.id):
            if c.state.status == "paused":
                raise Conflict(f"Container {c.id} is already paused")
            if c.state.status != "running":
                raise Conflict(f"Container {c.id} is not running")
            self.lc.runtime.pause(c.id)
            c.state.status = "paused"
            self.lc.save(c)
            self.lc.publish(c, "pause")

    def container_unpause(self, ref: str) -> None:
        c = self._get(ref)
        with self.lc.lock(c.id):
            if c.state.status != "paused":
                raise Conflict(f"Container {c.id} is not paused")
            self.lc.runtime.resume(c.id)
            c.state.status = "running"
            self.lc.save(c)
            self.lc.publish(c, "unpause")

    def container_wait(
        self, ref: str, condition: str = "not-running", timeout: float | None = None
    ) -> dict[str, Any]:
        return self.lc.wait(self._get(ref), condition or "not-running", timeout)

    def container_waiter(
        self, ref: str, condition: str = "not-running", timeout: float | None = None
    ) -> Callable[[], dict[str, Any]]:
        """:meth:`container_wait` in two steps: registered when this returns (an
        unknown container raises here), blocking when the result is called."""
        return self.lc.waiter(self._get(ref), condition or "not-running", timeout)

    def container_remove(self, ref: str, *, force: bool = False, volumes: bool = False) -> None:
        c = self._get(ref)
        self.lc.remove(c, force=force, volumes=volumes)
        self.execs.forget_container(c.id)

    def container_rename(self, ref: str, name: str) -> None:
        from portside.engine.names import NameConflict, validate_name

        c = self._get(ref)
        new = validate_name(name)
        if new == c.name:
            raise InvalidArgument("Renaming a container with the same name as its current name")
        with self.lc.lock(c.id), self.lc.map_lock:  # container lock first, always
            for other in self.lc.containers.values():
                if other.name == new:
                    raise NameConflict(new, other.id)
            old, c.name = c.name, new
            self.lc.save(c)
        self.lc.publish(c, "rename", oldName="/" + old)

    def container_update(self, ref: str, resources: dict[str, Any]) -> dict[str, Any]:
        from portside.engine import spec as _spec

        c = self._get(ref)
        with self.lc.lock(c.id):
            updated = dict(c.host_config)
            for key, value in resources.items():
                if key == "RestartPolicy":
                    if value and c.host_config.get("AutoRemove") and value.get("Name") != "no":
                        raise InvalidArgument(
                            "Restart policy cannot be updated because AutoRemove is enabled"
                            " for the container"
                        )
                    updated[key] = value or {"Name": "no", "MaximumRetryCount": 0}
                elif value not in (None, 0, "", [], {}):
                    updated[key] = value
            warnings = list(_spec.validate_create(c.config, updated) or [])
            if self.lc.runtime_status(c.id) in ("created", "running", "paused"):
                spec = _spec.build_spec(
                    c.__class__(**{**c.__dict__, "host_config": updated}),
                    {},
                    self.paths.rootfs(c.id),
                    [],
                    paths=self.paths,
                    cgroup_parent=self.config.cgroup_parent,
                    init_path=None,
                    namespace_paths=None,
                )
                if spec.linux is not None and spec.linux.resources is not None:
                    self.lc.runtime.update(c.id, spec.linux.resources)
            c.host_config = updated
            self.lc.save(c)
        self.lc.publish(c, "update")
        return {"Warnings": warnings}

    # --- containers: views -------------------------------------------------------------

    def container_inspect(self, ref: str, *, size: bool = False) -> dict[str, Any]:
        c = self._get(ref)
        return views.inspect(
            c, self.paths, self.snapshotter, size=size, image_size=self._image_size
        )

    def _image_size(self, image_id: str) -> int:
        try:
            return int(self.image_store.get(image_id).size or 0)
        except PortsideError:
            return 0

    def container_list(
        self,
        *,
        all: bool = False,
        limit: int = -1,
        size: bool = False,
        filters: dict[str, list[str]] | None = None,
    ) -> list[dict[str, Any]]:
        with self.lc.map_lock:
            containers = list(self.lc.containers.values())
        selected = views.select(
            containers,
            all=all,
            limit=limit,
            filters=filters or {},
            resolve=self._get,
            image_id=self._image_id_of,
        )
        return [
            views.summary(c, self.snapshotter, size=size, image_size=self._image_size)
            for c in selected
        ]

    def _image_id_of(self, ref: str) -> str | None:
        try:
            return str(self.image_store.get(ref).id)
        except PortsideError:
            return None

    def container_top(self, ref: str, ps_args: str = "-ef") -> dict[str, Any]:
        from portside.engine import top

        c = self._get(ref)
        if c.state.status not in ("running", "paused"):
            raise Conflict(f"Container {c.id} is not running")
        return top.top(self.lc.runtime.pids(c.id), ps_args or "-ef")

    def container_stats(self, ref: str, *, stream: bool = True) -> Iterator[dict[str, Any]]:
        """Docker's stats samples: one (with ``precpu_stats`` from a sample a moment
        before, as dockerd) or one a second while the container exists."""
        from portside.engine import stats

        c = self._get(ref)

        def read(previous: dict[str, Any] | None) -> dict[str, Any]:
            try:
                paths = stats.cgroup_paths_for(self.paths.runtime_root, c.id)
                pids = self.lc.runtime.pids(c.id)
            except (OSError, PortsideError):
                paths, pids = {}, []
            return stats.read_stats(paths, pids=pids, previous=previous, name=c.name, cid=c.id)

        def samples() -> Iterator[dict[str, Any]]:
            previous = None
            if not stream:  # a sample a moment before, for the CPU percentage
                previous = read(None)
                time.sleep(0.1)
            while c.id in self.lc.containers:
                sample = read(previous)
                yield sample
                if not stream:
                    return
                previous = sample
                time.sleep(1.0)

        return samples()

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
    ) -> tuple[bool, Iterator[tuple[int, bytes] | None]]:
        from portside.engine.logfile import read_logs

        c = self._get(ref)
        if not stdout and not stderr:
            raise InvalidArgument("You must choose at least one stream")
        driver = (c.host_config.get("LogConfig") or {}).get("Type") or "json-file"
        if driver != "json-file":
            raise FailedPrecondition(
                f'configured logging driver does not support reading: "{driver}"'
            )
        count = -1 if tail in ("all", "", None) else int(tail)
        chunks = read_logs(
            self.paths.log_path(c.id),
            stdout=stdout,
            stderr=stderr,
            since=since,
            until=until,
            tail=count,
            follow=follow,
            timestamps=timestamps,
            running=lambda: c.state.status in RUNNING_STATES,
            heartbeat=follow,  # the API drops a follower whose client has gone
        )
        return c.tty, chunks

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
        c = self._get(ref)
        live = None
        if stream:
            if c.state.status in ("exited", "dead") and not logs:
                raise Conflict("You cannot attach to a stopped container, start it first")
            live = self.lc.monitor.attach(
                c.id,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                detach_keys=detach_keys.encode() if detach_keys else None,
            )
        if not logs:
            if live is None:
                a, b = socket.socketpair()
                a.close()
                return c.tty, b
            return c.tty, live
        _, chunks = self.container_logs(ref, stdout=stdout, stderr=stderr)
        return c.tty, views.replay_then_relay(chunks, live, c.tty)

    def container_resize(self, ref: str, height: int, width: int) -> None:
        c = self._get(ref)
        if c.state.status not in ("created", "running", "paused"):
            raise Conflict(f"Container {c.id} is not running")
        self.lc.monitor.resize(c.id, height, width)

    def containers_prune(self, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        with self.lc.map_lock:
            containers = list(self.lc.containers.values())
        deleted, reclaimed = [], 0
        for c in views.prunable(containers, filters or {}):
            try:
                if c.state.status in ("running", "paused", "restarting", "removing"):
                    continue
                size = views.rw_size(self.snapshotter, c.id)
                self.container_remove(c.id)
            except (NotFound, Conflict):
                continue
            deleted.append(c.id)
            reclaimed += size
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    # --- exec -----------------------------------------------------------------------

    def exec_create(self, ref: str, config: dict[str, Any]) -> dict[str, str]:
        return self.execs.create(self._get(ref), config)

    def exec_start(
        self, exec_id: str, *, detach: bool = False, tty: bool = False
    ) -> tuple[bool, socket.socket] | None:
        return self.execs.start(exec_id, detach=detach, tty=tty)

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        return self.execs.inspect(exec_id)

    def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        self.execs.resize(exec_id, height, width)

    # --- images (helper F2's Images) ------------------------------------------------

    @property
    def images(self) -> Any:
        if self._images is None:
            from portside.engine.images import Images

            self._images = Images(self.image_store, self.content, self.snapshotter, self.events)
        return self._images

    def image_list(
        self, *, all: bool = False, filters: Any = None, digests: bool = False
    ) -> list[dict[str, Any]]:
        counts: dict[str, int] = {}
        with self.lc.map_lock:
            for c in self.lc.containers.values():
                counts[c.image_id] = counts.get(c.image_id, 0) + 1
        return self.images.list(  # type: ignore[no-any-return]
            all=all, filters=filters, digests=digests, containers_by_image=counts
        )

    def _image_users(self, image_id: str) -> list[tuple[str, bool]]:
        """(container ID, running) of the containers made from image ``image_id``."""
        with self.lc.map_lock:
            return [
                (c.id, c.state.status in RUNNING_STATES)
                for c in self.lc.containers.values()
                if c.image_id == image_id
            ]

    def image_inspect(self, ref: str) -> dict[str, Any]:
        return self.images.inspect(ref)  # type: ignore[no-any-return]

    def image_history(self, ref: str) -> list[dict[str, Any]]:
        return self.images.history(ref)  # type: ignore[no-any-return]

    def image_tag(self, ref: str, repo: str, tag: str | None) -> None:
        self.images.tag(ref, repo, tag)

    def image_remove(self, ref: str, *, force: bool = False, noprune: bool = False) -> list[dict]:
        return self.images.remove(  # type: ignore[no-any-return]
            ref, force=force, noprune=noprune, in_use=self._image_users
        )

    def images_prune(self, filters: Any = None) -> dict[str, Any]:
        return self.images.prune(filters, in_use=self._image_users)  # type: ignore[no-any-return]

    def images_save(self, names: list[str]) -> Iterator[bytes]:
        return self.images.save(names)  # type: ignore[no-any-return]

    def images_load(self, stream: BinaryIO, *, quiet: bool = False) -> list[str]:
        return self.images.load(stream, quiet=quiet)  # type: ignore[no-any-return]

    def image_import(
        self,
        stream: BinaryIO,
        *,
        repo: str | None,
        tag: str | None,
        changes: list[str],
        message: str = "",
    ) -> str:
        return self.images.import_(stream, repo=repo, tag=tag, changes=changes, message=message)  # type: ignore[no-any-return]

    def commit(
        self,
        ref: str,
        *,
        repo: str | None,
        tag: str | None,
        comment: str = "",
        author: str = "",
        pause: bool = True,
        changes: list[str] | tuple[str, ...] = (),
        config: dict[str, Any] | None = None,
    ) -> str:
        c = self._get(ref)
        paused = False
        with self.lc.lock(c.id):
            if pause and c.state.status == "running":
                self.lc.runtime.pause(c.id)
                paused = True
            try:
                return str(
                    self.images.commit(
                        c.id,
                        c.image_id,
                        container_config=c.config,
                        config=config,
                        repo=repo,
                        tag=tag,
                        author=author,
                        comment=comment,
                        changes=changes,
                        event_attributes={"image": c.image, "name": c.name},
                    )
                )
            finally:
                if paused:
                    self.lc.runtime.resume(c.id)

    # --- registries (portside.engine.registry) -------------------------------------------

    @property
    def distribution(self) -> Any:
        if self._distribution is None:
            from portside.engine.registry import Distribution

            stores = (self.content, self.image_store, self.snapshotter, self.events)
            self._distribution = Distribution(*stores, self.config.registry)
        return self._distribution

    def image_pull(
        self,
        name: str,
        *,
        tag: str | None = None,
        platform: str | None = None,
        auth: AuthConfig = ANONYMOUS,
        all_tags: bool = False,
        progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.distribution.pull(
            name, tag=tag, platform=platform, auth=auth, all_tags=all_tags, progress=progress
        )

    def image_push(
        self,
        name: str,
        *,
        tag: str | None = None,
        auth: AuthConfig = ANONYMOUS,
        all_tags: bool = False,
        progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.distribution.push(name, tag=tag, auth=auth, all_tags=all_tags, progress=progress)

    def registry_login(self, auth: AuthConfig) -> dict[str, str]:
        return self.distribution.login(auth)  # type: ignore[no-any-return]

    def distribution_inspect(self, name: str, *, auth: AuthConfig = ANONYMOUS) -> dict:
        return self.distribution.inspect(name, auth=auth)  # type: ignore[no-any-return]

    # --- volumes (helper F1's VolumeStore) ----------------------------------------------

    def volume_create(
        self,
        name: str | None = None,
        driver: str = "local",
        driver_opts: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        vol = self.volume_store.create(name, driver, driver_opts, labels)
        self._volume_event("create", vol.get("Name", name or ""), driver)
        return vol  # type: ignore[no-any-return]

    def volume_list(self, filters: Any = None) -> dict[str, Any]:
        return self.volume_store.list(filters)  # type: ignore[no-any-return]

    def volume_inspect(self, name: str) -> dict[str, Any]:
        return self.volume_store.inspect(name)  # type: ignore[no-any-return]

    def volume_remove(self, name: str, *, force: bool = False) -> None:
        self.volume_store.remove(name, force=force, in_use=self.lc.volume_users)
        self._volume_event("destroy", name, "local")

    def volumes_prune(self, filters: Any = None) -> dict[str, Any]:
        out = self.volume_store.prune(filters, self.lc.volume_users)
        for name in out.get("VolumesDeleted") or []:
            self._volume_event("destroy", name, "local")
        return out  # type: ignore[no-any-return]

    def _volume_event(self, action: str, name: str, driver: str) -> None:
        try:
            self.events.publish("volume", action, name, {"driver": driver})
        except PortsideError:
            pass

    # --- networks (portside.engine.networks) --------------------------------------------

    def network_create(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.networks.create(body)

    def network_list(self, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        return self.networks.list(filters)

    def network_inspect(self, ref: str, *, verbose: bool = False, scope: str = "") -> dict:
        return self.networks.inspect(ref, verbose=verbose, scope=scope)

    def network_remove(self, ref: str) -> None:
        self.networks.remove(ref)

    def networks_prune(self, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        return self.networks.prune(filters)

    def network_connect(
        self, ref: str, container: str, endpoint_config: dict | None = None
    ) -> None:
        self.networks.connect(ref, container, endpoint_config)

    def network_disconnect(self, ref: str, container: str, *, force: bool = False) -> None:
        self.networks.disconnect(ref, container, force=force)
