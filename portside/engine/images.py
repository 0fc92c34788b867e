"""The image half of the Engine facade: Docker's image operations and their events.

A thin layer over :mod:`portside.image` (the store already speaks Docker's shapes,
see ``store_docker``): it resolves references, publishes the image events dockerd
publishes (``tag``, ``untag``, ``delete``, ``import``, ``load``, ``save``; the actor
is the image ID and its ``name`` attribute the new tag for ``tag``, the ID
otherwise, plus the image's labels), streams ``save`` and adds what the engine
knows (container counts, the graph driver).
"""

from __future__ import annotations

import json
import os
import threading
import time

from portside.errors import InvalidArgument
from portside.image import store_docker

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any, BinaryIO

    from portside.engine.events import EventBus
    from portside.image.content import ContentStore
    from portside.image.snapshots import Snapshotter
    from portside.image.store import Image, ImageStore

    #: given an image ID, the containers using it: (container ID, running)
    InUse = Callable[[str], list[tuple[str, bool]]]

__all__ = ["IMAGE_CONFIG_KEYS", "Images", "parse_until"]

#: the keys of a container's Config an image's config keeps (on commit)
IMAGE_CONFIG_KEYS = (
    "User",
    "ExposedPorts",
    "Env",
    "Cmd",
    "Healthcheck",
    "ArgsEscaped",
    "Volumes",
    "WorkingDir",
    "Entrypoint",
    "OnBuild",
    "Labels",
    "StopSignal",
    "Shell",
)
_PRUNE_FILTERS = frozenset({"dangling", "until", "label", "label!"})
_SAVE_CHUNK = 1 << 16
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_until(value: str, now: float | None = None) -> float:
    """Docker's ``until`` filter value as unix seconds: a unix timestamp
    (``1700000000.5``), an RFC 3339 time, or a Go duration before now (``10m``, ``1h30m``)."""
    import re

    now = time.time() if now is None else now
    text = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    if parts and "".join(n + u for n, u in parts) == text:
        return now - sum(float(n) * _UNITS[u] for n, u in parts)
    stamp = store_docker.parse_time(text.replace("Z", "+00:00"))
    if stamp:
        return stamp
    raise InvalidArgument(f"invalid until value {value!r}: want a timestamp or a duration")


def _labels(image: Image) -> dict[str, str]:
    try:
        config = json.loads(image.config).get("config") or {}
    except (ValueError, AttributeError):
        return {}
    labels = config.get("Labels") if isinstance(config, dict) else None
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


def _label_match(labels: dict[str, str], item: str) -> bool:
    key, sep, value = item.partition("=")
    return key in labels and (not sep or labels[key] == value)


class Images:
    """Docker's image operations over an image store, content store and snapshotter."""

    def __init__(
        self,
        store: ImageStore,
        content: ContentStore,
        snapshotter: Snapshotter | None,
        events: EventBus,
    ) -> None:
        self.store = store
        self.content = content
        self.snapshotter = snapshotter
        self.events = events

    def _event(self, action: str, image: Image | str, name: str | None = None) -> None:
        image_id = image if isinstance(image, str) else image.id
        attrs = {} if isinstance(image, str) else _labels(image)
        attrs["name"] = name or image_id
        self.events.publish("image", action, image_id, attrs)

    def _driver(self) -> dict[str, Any]:
        driver = getattr(self.snapshotter, "driver", "") or "overlay"
        return {"Data": None, "Name": "overlay2" if driver == "overlay" else driver}

    # --- reading ------------------------------------------------------------------------

    def list(
        self,
        *,
        all: bool = False,
        filters: dict[str, Any] | None = None,
        digests: bool = False,
        containers_by_image: dict[str, int] | None = None,
    ) -> list[dict[str, Any]]:
        """``GET /images/json``: ImageSummary items, newest first. ``digests`` changes
        nothing (RepoDigests are always there); ``Containers`` is -1 unless
        ``containers_by_image`` (image ID → count) is given."""
        out = self.store.list(all=all, filters=filters)
        if containers_by_image is not None:
            for item in out:
                item["Containers"] = containers_by_image.get(item["Id"], 0)
        return out

    def get(self, ref: str) -> Image:
        """The stored image ``ref`` names (NotFound with Docker's message)."""
        return self.store.get(ref)

    def inspect(self, ref: str) -> dict[str, Any]:
        """``GET /images/{name}/json``, with the engine's ``GraphDriver``."""
        out = self.store.inspect(ref)
        out["GraphDriver"] = self._driver()
        return out

    def history(self, ref: str) -> list[dict[str, Any]]:
        return self.store.history(ref)

    # --- tags, remove, prune ------------------------------------------------------------

    def tag(self, ref: str, repo: str, tag: str | None = None) -> None:
        """``docker tag``: ``repo[:tag]`` (``latest`` by default) now names ``ref``'s image."""
        if not repo:
            raise InvalidArgument("repository name must have at least one component")
        image = self.store.get(ref)
        target = f"{repo}:{tag}" if tag else repo
        named = self.store.tag(image, target)
        self._event("tag", image, named.familiar())

    def remove(
        self,
        ref: str,
        *,
        force: bool = False,
        noprune: bool = False,
        in_use: InUse | None = None,
    ) -> list[dict[str, str]]:
        """``docker rmi``: ``[{"Untagged": …}, {"Deleted": …}]`` with Docker's conflicts
        (see ``store_remove``). ``noprune`` is accepted: there are no parent images."""
        image = self.store.get(ref)
        records = self.store.remove(ref, force=force, in_use=in_use)
        self._record_events(records, {}, image)
        return records

    def _record_events(
        self, records: list[dict[str, str]], owners: dict[str, Image], default: Image | None
    ) -> None:
        for item in records:
            if "Untagged" in item:
                image = owners.get(item["Untagged"], default)
                if image is not None:
                    self._event("untag", image, image.id)
            elif "Deleted" in item:
                self._event("delete", item["Deleted"])

    def prune(
        self, filters: dict[str, Any] | None = None, in_use: InUse | None = None
    ) -> dict[str, Any]:
        """``POST /images/prune``: dangling images (``dangling=false``: every image no
        container uses), narrowed by ``until`` and ``label``/``label!``."""
        wanted = store_docker.normalize_filters(filters, _PRUNE_FILTERS)
        dangling = [v.lower() for v in wanted.get("dangling", [])]
        if any(v not in ("true", "false", "1", "0") for v in dangling):
            raise InvalidArgument(f"invalid filter 'dangling={dangling[0]}'")
        dangling_only = not dangling or dangling[-1] in ("true", "1")
        until = [parse_until(v) for v in wanted.get("until", [])]
        images = {image.id: image for image in self.store.images()}
        owners = {
            store_docker.familiar(name): image
            for image in images.values()
            for name in (*image.tags, *image.repo_digests)
        }

        def keep(image_id: str) -> bool:
            image = images.get(image_id)
            if image is None:
                return False
            labels = _labels(image)
            if any(image.created_unix >= u for u in until):
                return True
            if not all(_label_match(labels, v) for v in wanted.get("label", [])):
                return True
            return any(_label_match(labels, v) for v in wanted.get("label!", []))

        def guarded(image_id: str) -> list[tuple[str, bool]]:
            users = list(in_use(image_id)) if in_use is not None else []
            if not users and keep(image_id):
                users = [("0" * 64, False)]  # filtered out: treated as used, so kept
            return users

        result = self.store.prune(dangling_only, in_use=guarded)
        self._record_events(result["ImagesDeleted"], owners, None)
        return result

    # --- moving images ------------------------------------------------------------------

    def save(self, names: list[str]) -> Iterator[bytes]:
        """``docker save``: a docker-archive tar of ``names`` (tags or IDs), streamed.
        Unknown names fail here, before the first byte; a ``save`` event per image."""
        from portside.image import archive

        if not names:
            raise InvalidArgument("no images to save: want at least one reference")
        images = [self.store.get(name) for name in names]
        read_fd, write_fd = os.pipe()
        failure: list[BaseException] = []

        def produce() -> None:
            out = open(write_fd, "wb", buffering=_SAVE_CHUNK)  # noqa: SIM115 - closed below
            try:
                archive.save(self.store, self.content, list(names), out)
            except BrokenPipeError:
                pass  # the reader went away
            except Exception as exc:  # handed to the reader
                failure.append(exc)
            finally:
                try:
                    out.close()  # closes the fd even when the flush fails
                except BrokenPipeError:
                    pass

        worker = threading.Thread(target=produce, name="image-save", daemon=True)
        worker.start()
        for image in {i.id: i for i in images}.values():
            self._event("save", image, image.id)
        return _PipeStream(read_fd, worker, failure)

    def load(self, stream: BinaryIO, *, quiet: bool = False) -> list[str]:
        """``docker load``: every image of a docker-archive or OCI tar; the lines dockerd
        prints (``Loaded image: busybox:latest``, ``Loaded image ID: sha256:…``)
        and a ``load`` event per image. ``quiet`` is for the API's progress output."""
        from portside.image import archive

        loaded = archive.load(self.store, self.content, stream)
        lines: list[str] = []
        seen: dict[str, Image] = {}
        for name in loaded:
            image = self.store.get(name)
            seen.setdefault(image.id, image)
            if name.startswith("sha256:"):
                lines.append(f"Loaded image ID: {name}")
            else:
                lines.append(f"Loaded image: {name}")
        for image in seen.values():
            self._event("load", image, image.id)
        return lines

    def import_(
        self,
        stream: BinaryIO,
        *,
        repo: str | None = None,
        tag: str | None = None,
        changes: Iterable[str] = (),
        message: str = "",
    ) -> str:
        """``docker import``: a rootfs tarball as a one-layer image, tagged
        ``repo[:tag]`` when ``repo`` is given; returns the image ID."""
        from portside.image.moves import import_rootfs

        name = None
        if repo:
            name = f"{repo}:{tag}" if tag else repo
        image = import_rootfs(
            self.content, self.store, stream, changes=list(changes), tag=name, message=message
        )
        self._event("import", image, image.id)
        return image.id

    def commit(
        self,
        container_id: str,
        image_ref: str,
        *,
        container_config: dict[str, Any],
        config: dict[str, Any] | None = None,
        repo: str | None = None,
        tag: str | None = None,
        author: str = "",
        comment: str = "",
        changes: Iterable[str] = (),
        event_attributes: dict[str, str] | None = None,
    ) -> str:
        """``docker commit``: the read-write layer of snapshot ``container_id`` on top of
        image ``image_ref`` (the container's image ID), as a new image; returns its ID.

        The new image's config is dockerd's: ``config`` (the request body's, if any)
        with the unset fields filled from ``container_config`` (the container's
        effective Config), ``changes`` applied. Pausing the container around the
        call is the caller's job. With ``event_attributes`` (the container's
        ``image``/``name`` attributes) the container ``commit`` event is published."""
        from portside.image.moves import commit_container

        if self.snapshotter is None:
            raise InvalidArgument("commit needs a snapshotter")
        parent = self.store.get(image_ref)
        base = merge_commit_config(config or {}, container_config)
        based = _with_container_config(parent, base)
        name = None
        if repo:
            name = f"{repo}:{tag}" if tag else repo
        image = commit_container(
            self.content,
            self.store,
            self.snapshotter,
            container_id,
            based,
            changes=list(changes),
            tag=name,
            author=author,
            message=comment,
        )
        if event_attributes is not None:
            attrs = {**event_attributes, "comment": comment, "imageID": image.id}
            if name:
                attrs["imageRef"] = name
            self.events.publish("container", "commit", container_id, attrs)
        return image.id


def merge_commit_config(config: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    """dockerd's commit ``merge``: the fields of ``config`` left unset are taken from
    the container's ``container`` Config; Env, Labels, ExposedPorts and Volumes are
    unions (``config`` wins per key). Only the keys an image config holds are kept."""
    out = {k: config[k] for k in IMAGE_CONFIG_KEYS if config.get(k) not in (None, "", [], {})}
    base = {k: container[k] for k in IMAGE_CONFIG_KEYS if container.get(k) not in (None, "")}
    for key in ("User", "WorkingDir", "StopSignal", "Healthcheck", "Shell", "OnBuild"):
        if key not in out and key in base:
            out[key] = base[key]
    if "Entrypoint" not in out:
        if "Cmd" not in out and "Cmd" in base:
            out["Cmd"] = base["Cmd"]
        if "Entrypoint" in base:
            out["Entrypoint"] = base["Entrypoint"]
    env = list(out.get("Env") or [])
    names = {e.partition("=")[0] for e in env}
    env += [e for e in base.get("Env") or [] if e.partition("=")[0] not in names]
    if env:
        out["Env"] = env
    for key in ("Labels", "ExposedPorts", "Volumes"):
        merged = {**(base.get(key) or {}), **(out.get(key) or {})}
        if merged:
            out[key] = merged
    return out


def _with_container_config(parent: Image, config: dict[str, Any]) -> Image:
    """A copy of ``parent`` whose config document carries ``config`` as its
    ``config`` object: what ``commit_container`` builds the new image from."""
    from portside.image.store_db import Image

    doc = json.loads(parent.config)
    doc["config"] = config
    return Image(
        id=parent.id,
        manifest_digest=parent.manifest_digest,
        media_type=parent.media_type,
        config=json.dumps(doc, separators=(",", ":")).encode(),
        created=parent.created,
        created_unix=parent.created_unix,
        size=parent.size,
        added=parent.added,
        last_tag_time=parent.last_tag_time,
        layers=list(parent.layers),
        tags=list(parent.tags),
        repo_digests=list(parent.repo_digests),
    )


class _PipeStream:
    """The bytes of pipe ``fd`` until EOF, then the producer's error, if any.
    Closing it (or dropping it, even unstarted) closes the pipe, which stops the
    producer with EPIPE."""

    def __init__(self, fd: int, worker: threading.Thread, failure: list[BaseException]) -> None:
        self._fd: int | None = fd
        self._worker = worker
        self._failure = failure

    def __iter__(self) -> _PipeStream:
        return self

    def __next__(self) -> bytes:
        if self._fd is None:
            raise StopIteration
        chunk = os.read(self._fd, _SAVE_CHUNK)
        if chunk:
            return chunk
        self.close()
        if self._failure:
            raise self._failure[0]
        raise StopIteration

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._worker.join(timeout=30)

    def __del__(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
