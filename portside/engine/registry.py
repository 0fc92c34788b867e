"""Pull, push, login and distribution inspect for the Engine: the registry client
(:mod:`portside.distribution`) wired to the engine's stores, its registry settings
and its event bus.

References arrive as the Docker API gives them (``fromImage`` + ``tag``, a push's
name + ``tag``) and are resolved here as moby does (:func:`pull_reference`,
:func:`push_reference`). Calls are synchronous and run in the caller's thread;
progress messages reach ``progress`` from the pull's or push's own threads, one at
a time. Successful pulls and pushes publish dockerd's image events ``pull`` and
``push`` (actor: the familiar reference; ``name``: the familiar name; the image's
labels).
"""

from __future__ import annotations

import json
import threading

from portside.distribution.config import AuthConfig, RegistryConfig
from portside.errors import InvalidArgument, PermissionDenied, PortsideError
from portside.oci.reference import Reference, parse_reference

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from portside.distribution.client import Registry
    from portside.engine.events import EventBus
    from portside.image.content import ContentStore
    from portside.image.snapshots import Snapshotter
    from portside.image.store import ImageStore

    Progress = Callable[[dict[str, Any]], None]
    RegistryFactory = Callable[..., Registry]

__all__ = ["Distribution", "pull_reference", "push_reference"]

LOGIN_SUCCEEDED = "Login Succeeded"
ANONYMOUS = AuthConfig()


def _noop(_message: dict[str, Any]) -> None:
    """Progress dropped."""


def pull_reference(name: str, tag: str | None = None) -> Reference:
    """moby's ``postImagesCreate``: ``fromImage`` (a trailing ``:`` dropped, as old
    ``pull -a`` clients send it) with ``tag``, which may be a tag or a digest (a
    digest replaces any tag of the name). The result may be name-only."""
    ref = parse_reference(name.removesuffix(":"))
    if tag:
        ref = ref.name_only().with_digest(tag) if ":" in tag else ref.with_tag(tag)
    if ref.familiar_name == "scratch":
        raise PermissionDenied("'scratch' is a reserved name")
    return ref


def push_reference(name: str, tag: str | None = None) -> Reference:
    """moby's ``postImagesPush``: the repository ``name`` with ``tag``; a digest
    cannot be pushed. The result is name-only when neither gives a tag."""
    ref = parse_reference(name)
    if ref.digest is not None:
        raise InvalidArgument(f"cannot push a digest reference: {name}")
    if tag:
        ref = ref.with_tag(tag)
    return ref


def _labels(image: Any) -> dict[str, str]:
    """The image's config labels (event attributes)."""
    try:
        config = json.loads(image.config).get("config") or {}
    except (ValueError, AttributeError, TypeError):
        return {}
    labels = config.get("Labels") if isinstance(config, dict) else None
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


class _BytesSink:
    """A blob sink in memory (a config blob for distribution inspect)."""

    def __init__(self, limit: int) -> None:
        self.data = bytearray()
        self.limit = limit

    @property
    def offset(self) -> int:
        return len(self.data)

    def write(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > self.limit:
            raise InvalidArgument(f"blob larger than {self.limit} bytes")

    def truncate(self) -> None:
        self.data.clear()


class Distribution:
    """The registry side of the engine: one token cache shared by every pull, push
    and login; the daemon's :class:`RegistryConfig`."""

    def __init__(
        self,
        content: ContentStore,
        images: ImageStore,
        snapshotter: Snapshotter,
        events: EventBus,
        config: RegistryConfig,
        *,
        registry_factory: RegistryFactory | None = None,
    ) -> None:
        self.content = content
        self.images = images
        self.snapshotter = snapshotter
        self.events = events
        self.config = config
        self._factory = registry_factory
        self._cache: Any = None
        self._lock = threading.Lock()

    def _registry(self, domain: str, auth: AuthConfig, *, push: bool = False) -> Registry:
        """A client of ``domain`` with ``auth`` (mirrors only when not ``push``)."""
        if self._factory is not None:
            return self._factory(domain, self.config, auth, push=push)
        from portside.distribution.auth import TokenCache
        from portside.distribution.client import Registry

        with self._lock:
            if self._cache is None:
                self._cache = TokenCache()
        return Registry(domain, self.config, auth, cache=self._cache, push=push)

    @staticmethod
    def _close(registry: object) -> None:
        close = getattr(registry, "close", None)
        if close is not None:
            try:
                close()
            except (OSError, PortsideError):
                pass  # connections are only being released

    # --- pull -------------------------------------------------------------------------

    def pull(
        self,
        name: str,
        *,
        tag: str | None = None,
        platform: str | None = None,
        auth: AuthConfig = ANONYMOUS,
        all_tags: bool = False,
        progress: Progress | None = None,
    ) -> None:
        """``docker pull``: ``name`` (+ ``tag``, see :func:`pull_reference`); a
        name-only reference pulls every tag with ``all_tags``, else ``latest``.
        ``platform`` is ``os/arch[/variant]`` (default: the host's)."""
        from portside.oci.platform import parse_platform

        ref = pull_reference(name, tag)
        wanted = parse_platform(platform) if platform else None
        every = all_tags and ref.tag is None and ref.digest is None
        if not every:
            ref = ref.with_default_tag()
        registry = self._registry(ref.domain, auth)
        try:
            from portside.distribution import pull as _pull

            options: dict[str, Any] = {
                "registry": registry,
                "content": self.content,
                "images": self.images,
                "snapshotter": self.snapshotter,
                "platform": wanted,
                "progress": progress or _noop,
                "concurrency": self.config.max_concurrent_downloads,
            }
            if every:
                results = list(_pull.pull_all_tags(ref, **options))
            else:
                results = [_pull.pull(ref, **options)]
        finally:
            self._close(registry)
        image = results[0].image if results else None
        self._event("pull", ref, image)

    # --- push -------------------------------------------------------------------------

    def push(
        self,
        name: str,
        *,
        tag: str | None = None,
        auth: AuthConfig = ANONYMOUS,
        all_tags: bool = False,
        progress: Progress | None = None,
    ) -> None:
        """``docker push``: ``name`` (+ ``tag``); a name-only reference pushes every
        local tag of the repository with ``all_tags``, else ``latest``."""
        from portside.distribution import push as _push

        ref = push_reference(name, tag)
        every = all_tags and ref.tag is None
        if not every:
            ref = ref.with_default_tag()
        registry = self._registry(ref.domain, auth, push=True)
        try:
            _push.push(
                ref,
                registry=registry,
                content=self.content,
                images=self.images,
                progress=progress or _noop,
                concurrency=self.config.max_concurrent_uploads,
                all_tags=every,
            )
        finally:
            self._close(registry)
        image = None
        if not every:
            try:
                image = self.images.get(str(ref))
            except PortsideError:
                image = None
        self._event("push", ref, image)

    def _event(self, action: str, ref: Reference, image: object | None) -> None:
        attributes = _labels(image) if image is not None else {}
        attributes["name"] = ref.familiar_name
        try:
            self.events.publish("image", action, ref.familiar(), attributes)
        except PortsideError:
            pass  # an event is not worth failing the pull for

    # --- login and inspect ------------------------------------------------------------

    def login(self, auth: AuthConfig) -> dict[str, str]:
        """``POST /auth``: check ``auth`` against its registry (``auth.server``,
        default Docker Hub; never a mirror). Raises the registry's error."""
        from portside.distribution.credentials import server_domain

        registry = self._registry(server_domain(auth.server), auth, push=True)
        try:
            registry.ping()
        finally:
            self._close(registry)
        return {"Status": LOGIN_SUCCEEDED, "IdentityToken": ""}

    def inspect(self, name: str, *, auth: AuthConfig = ANONYMOUS) -> dict[str, Any]:
        """``GET /distribution/{name}/json``: the manifest descriptor ``name`` resolves
        to in its registry and the platforms it offers."""
        from portside.oci import mediatypes
        from portside.oci.image_spec import Index, parse_manifest

        ref = parse_reference(name).with_default_tag()
        registry = self._registry(ref.domain, auth)
        try:
            fetched = registry.get_manifest(ref.path, str(ref.digest or ref.tag))
            doc = parse_manifest(fetched.data, fetched.media_type)
            platforms: list[dict[str, Any]] = []
            if isinstance(doc, Index):
                platforms = [m.platform.to_json() for m in doc.manifests if m.platform]
            elif mediatypes.is_config(doc.config.media_type):
                platforms = self._config_platform(registry, ref.path, doc.config)
        finally:
            self._close(registry)
        descriptor = {
            "mediaType": fetched.media_type,
            "digest": str(fetched.digest),
            "size": len(fetched.data),
        }
        return {"Descriptor": descriptor, "Platforms": platforms}

    @staticmethod
    def _config_platform(registry: Registry, repo: str, desc: Any) -> list[dict[str, Any]]:
        """The platform an image config names (moby reads it for a single manifest)."""
        sink = _BytesSink(4 << 20)
        try:
            registry.fetch_blob(repo, desc, sink, lambda _n: None)
            config = json.loads(bytes(sink.data))
        except (PortsideError, ValueError):
            return []
        if not isinstance(config, dict) or not (config.get("os") or config.get("architecture")):
            return []
        keys = ("architecture", "os", "os.version", "os.features", "variant")
        return [{k: config[k] for k in keys if config.get(k)}]
