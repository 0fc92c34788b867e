"""The OCI image spec 1.1 documents (descriptor, manifest, index, config), which also
read Docker's image manifest v2 schema 2 and manifest list (the media type tells which).

Parsing validates as the spec asks: digests parse, sizes are not negative, inline
``data`` matches its descriptor, a manifest's layers are layers unless it is an
artifact. A manifest's digest is over its exact bytes, so :class:`ParsedManifest` keeps
them; :meth:`Manifest.to_bytes` writes a stable (field-ordered, compact) encoding for
documents Portside creates, and is not a canonical form of anyone else's.
"""

from __future__ import annotations

import base64
import binascii
import json

from portside.oci import mediatypes as mt
from portside.oci._json import ANY, BOOL, INT, STR, F, Record, SpecError, list_of, map_of
from portside.oci.digest import Digest, InvalidDigest
from portside.oci.platform import Platform

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Self

__all__ = [
    "EMPTY_DESCRIPTOR",
    "EMPTY_JSON",
    "ContainerConfig",
    "Descriptor",
    "HealthConfig",
    "History",
    "ImageConfig",
    "Index",
    "Manifest",
    "ParsedManifest",
    "RootFS",
    "parse_image_config",
    "parse_manifest",
]

#: the content of the empty descriptor
EMPTY_JSON = b"{}"

_STRS = list_of(STR)


def DIGEST(value: Any, path: str) -> Digest:
    try:
        return Digest(STR(value, path))
    except InvalidDigest as exc:
        raise SpecError(f"{path}: {exc}") from exc


def MEDIA_TYPE(value: Any, path: str) -> str:
    """A media type, ``type/subtype`` (RFC 6838, loosely)."""
    text = STR(value, path)
    kind, _, sub = text.partition("/")
    if not kind or not sub or "/" in sub or any(c.isspace() for c in text):
        raise SpecError(f"{path}: invalid media type {text!r}")
    return text


def STRS_OR_NULL(value: Any, path: str) -> list[str]:
    """A list of strings where ``null`` (unset) and ``[]`` (set empty) differ, as for
    ``Entrypoint`` and ``Cmd``."""
    return _STRS(value, path)


def _at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


# --- descriptor ------------------------------------------------------------------------


class Descriptor(Record):
    """A reference to content: what it is, its digest and size (``descriptor.md``)."""

    media_type: str = F(MEDIA_TYPE, required=True, json="mediaType")
    digest: Digest = F(DIGEST, required=True)
    size: int = F(INT, required=True)
    urls: list[str] = F(_STRS)
    annotations: dict[str, str] = F(map_of(STR))
    #: the content inline, base64 (use :meth:`inline_data`)
    data: str | None = F(STR)
    platform: Platform | None = F(Platform)
    artifact_type: str | None = F(MEDIA_TYPE, json="artifactType")

    @classmethod
    def of(cls, media_type: str, content: bytes, **fields: Any) -> Descriptor:
        """The descriptor of ``content`` (sha256), with any other ``fields``."""
        return cls(media_type=media_type, digest=Digest.of(content), size=len(content), **fields)

    @classmethod
    def from_json(cls, data: Any, path: str = "") -> Self:
        desc = super().from_json(data, path)
        desc.validate(path)
        return desc

    def validate(self, path: str = "") -> None:
        if self.size < 0:
            raise SpecError(f"{_at(path, 'size')}: must not be negative, got {self.size}")
        if self.data is not None:
            self.inline_data(path)

    def inline_data(self, path: str = "") -> bytes | None:
        """The decoded ``data``, checked against size and digest; None when absent."""
        if self.data is None:
            return None
        where = _at(path, "data")
        try:
            content = base64.b64decode(self.data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SpecError(f"{where}: invalid base64: {exc}") from exc
        if len(content) != self.size:
            raise SpecError(f"{where}: {len(content)} bytes, but size says {self.size}")
        if Digest.of(content, self.digest.algorithm) != self.digest:
            raise SpecError(f"{where}: content does not match digest {self.digest}")
        return content


#: the empty JSON descriptor of image-spec 1.1 (config of artifacts); do not mutate it
EMPTY_DESCRIPTOR = Descriptor(
    media_type=mt.OCI_EMPTY,
    digest=Digest("sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"),
    size=2,
    data="e30=",
)


class _Document(Record):
    """A top-level document: encodes to stable compact JSON."""

    #: JSON keys of list fields the spec requires even when empty
    _always: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        if all(key in out for key in self._always):
            return out
        ordered: dict[str, Any] = {}
        for f in self.__fields__:
            key = f.json or f.name
            if key in out:
                ordered[key] = out[key]
            elif key in self._always:
                ordered[key] = []
        return ordered

    def to_bytes(self) -> bytes:
        """Compact JSON with keys in field order: the same object gives the same bytes."""
        return _dumps(self.to_json())


# --- manifest and index ----------------------------------------------------------------


class Manifest(_Document):
    """An image manifest: OCI (``image-manifest.md``) or Docker schema 2."""

    schema_version: int = F(INT, 2, json="schemaVersion")
    media_type: str | None = F(MEDIA_TYPE, json="mediaType")
    artifact_type: str | None = F(MEDIA_TYPE, json="artifactType")
    config: Descriptor = F(Descriptor, required=True)
    layers: list[Descriptor] = F(list_of(Descriptor))
    subject: Descriptor | None = F(Descriptor)
    annotations: dict[str, str] = F(map_of(STR))

    _always = ("layers",)

    @property
    def is_artifact(self) -> bool:
        """An artifact rather than a runnable image (its config is not an image config)."""
        return self.artifact_type is not None or not mt.is_config(self.config.media_type)

    def validate(self) -> None:
        if self.schema_version != 2:
            raise SpecError(f"schemaVersion: must be 2, got {self.schema_version}")
        if self.config.media_type == mt.OCI_EMPTY and self.artifact_type is None:
            raise SpecError("artifactType: must be set when config is the empty descriptor")
        if not self.is_artifact:
            for i, layer in enumerate(self.layers):
                if not mt.is_layer(layer.media_type):
                    raise SpecError(
                        f"layers[{i}].mediaType: not a layer media type: {layer.media_type!r}"
                    )


class Index(_Document):
    """An image index (``image-index.md``) or a Docker manifest list."""

    schema_version: int = F(INT, 2, json="schemaVersion")
    media_type: str | None = F(MEDIA_TYPE, json="mediaType")
    artifact_type: str | None = F(MEDIA_TYPE, json="artifactType")
    manifests: list[Descriptor] = F(list_of(Descriptor))
    subject: Descriptor | None = F(Descriptor)
    annotations: dict[str, str] = F(map_of(STR))

    _always = ("manifests",)

    def validate(self) -> None:
        if self.schema_version != 2:
            raise SpecError(f"schemaVersion: must be 2, got {self.schema_version}")


# --- image config ----------------------------------------------------------------------


class HealthConfig(Record):
    """Docker's ``Healthcheck``; durations in nanoseconds."""

    test: list[str] = F(_STRS, json="Test")
    interval: int | None = F(INT, json="Interval")
    timeout: int | None = F(INT, json="Timeout")
    start_period: int | None = F(INT, json="StartPeriod")
    start_interval: int | None = F(INT, json="StartInterval")
    retries: int | None = F(INT, json="Retries")


class ContainerConfig(Record):
    """The ``config`` of an image config: defaults for containers made from the image."""

    user: str | None = F(STR, json="User")
    exposed_ports: dict[str, Any] = F(map_of(ANY), json="ExposedPorts")
    env: list[str] = F(_STRS, json="Env")
    entrypoint: list[str] | None = F(STRS_OR_NULL, json="Entrypoint")
    cmd: list[str] | None = F(STRS_OR_NULL, json="Cmd")
    volumes: dict[str, Any] = F(map_of(ANY), json="Volumes")
    working_dir: str | None = F(STR, json="WorkingDir")
    labels: dict[str, str] = F(map_of(STR), json="Labels")
    stop_signal: str | None = F(STR, json="StopSignal")
    args_escaped: bool | None = F(BOOL, json="ArgsEscaped")
    healthcheck: HealthConfig | None = F(HealthConfig, json="Healthcheck")
    on_build: list[str] | None = F(STRS_OR_NULL, json="OnBuild")
    shell: list[str] = F(_STRS, json="Shell")
    stop_timeout: int | None = F(INT, json="StopTimeout")


class RootFS(Record):
    type: str = F(STR, "layers")
    diff_ids: list[Digest] = F(list_of(DIGEST))

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "diff_ids": list(self.diff_ids)}


class History(Record):
    created: str | None = F(STR)
    created_by: str | None = F(STR)
    author: str | None = F(STR)
    comment: str | None = F(STR)
    empty_layer: bool | None = F(BOOL)


class ImageConfig(_Document):
    """An image config (``config.md``); Docker's has the same shape."""

    created: str | None = F(STR)
    author: str | None = F(STR)
    architecture: str = F(STR, required=True)
    os: str = F(STR, required=True)
    os_version: str | None = F(STR, json="os.version")
    os_features: list[str] = F(_STRS, json="os.features")
    variant: str | None = F(STR)
    config: ContainerConfig | None = F(ContainerConfig)
    rootfs: RootFS = F(RootFS, required=True)
    history: list[History] = F(list_of(History))

    @property
    def platform(self) -> Platform:
        return Platform(
            os=self.os,
            architecture=self.architecture,
            variant=self.variant,
            os_version=self.os_version,
            os_features=list(self.os_features),
        )

    def validate(self) -> None:
        if self.rootfs.type != "layers":
            raise SpecError(f"rootfs.type: must be 'layers', got {self.rootfs.type!r}")


# --- parsing ---------------------------------------------------------------------------


def _load(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise SpecError(f"{what}: invalid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise SpecError(f"{what}: expected a JSON object, got {type(doc).__name__}")
    return doc


def _media_type_of(doc: dict[str, Any], media_type: str | None) -> str:
    """The manifest's media type: the one given, checked against the document's own."""
    declared = doc.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise SpecError(f"mediaType: expected a string, got {declared!r}")
    schema = doc.get("schemaVersion")
    if schema == 1 or mt.is_schema1(media_type or "") or mt.is_schema1(declared or ""):
        raise SpecError("docker image manifest schema 1 is not supported (deprecated format)")
    if media_type is not None and declared is not None and declared != media_type:
        raise SpecError(f"mediaType: document says {declared!r} but was given as {media_type!r}")
    found = media_type or declared
    if found is None:
        if "manifests" in doc:
            return mt.OCI_INDEX
        if "config" in doc:
            return mt.OCI_MANIFEST
        raise SpecError("manifest: no mediaType, and neither config nor manifests to tell")
    if not (mt.is_manifest(found) or mt.is_index(found)):
        raise SpecError(f"mediaType: unsupported manifest media type {found!r}")
    if schema != 2:
        raise SpecError(f"schemaVersion: must be 2, got {schema!r}")
    return found


def _parse(data: bytes, media_type: str | None) -> tuple[Manifest | Index, str]:
    doc = _load(data, "manifest")
    found = _media_type_of(doc, media_type)
    obj: Manifest | Index
    if mt.is_manifest(found):
        if "manifests" in doc:  # image-spec: do not let an index pass for a manifest
            raise SpecError(f"manifests: not allowed in a manifest of type {found!r}")
        obj = Manifest.from_json(doc)
    else:
        if "config" in doc or "layers" in doc:
            raise SpecError(f"config: not allowed in an index of type {found!r}")
        obj = Index.from_json(doc)
    obj.validate()
    return obj, found


def parse_manifest(data: bytes, media_type: str | None = None) -> Manifest | Index:
    """Parse a manifest or index (OCI or Docker schema 2) from its bytes.

    ``media_type`` is what the registry or layout said; without it the document's own
    ``mediaType`` (or its shape) decides. Unknown types and schema 1 are refused."""
    return _parse(data, media_type)[0]


def parse_image_config(data: bytes) -> ImageConfig:
    """Parse an image config (OCI or Docker) from its bytes."""
    config = ImageConfig.from_json(_load(data, "image config"))
    config.validate()
    return config


class ParsedManifest:
    """A manifest or index with the exact bytes it was parsed from and their digest."""

    __slots__ = ("digest", "media_type", "obj", "raw")

    def __init__(self, obj: Manifest | Index, raw: bytes, digest: Digest, media_type: str) -> None:
        self.obj = obj
        self.raw = raw
        self.digest = digest
        self.media_type = media_type

    @classmethod
    def parse(
        cls,
        raw: bytes,
        media_type: str | None = None,
        expected: str | None = None,
    ) -> ParsedManifest:
        """Parse ``raw``; with ``expected``, its digest must match (before parsing)."""
        if expected is not None:
            want = DIGEST(expected, "digest")
            digest = Digest.of(raw, want.algorithm)
            if digest != want:
                raise SpecError(f"manifest: digest mismatch: expected {want}, got {digest}")
        else:
            digest = Digest.of(raw)
        obj, found = _parse(raw, media_type)
        return cls(obj, bytes(raw), digest, found)

    @property
    def is_index(self) -> bool:
        return isinstance(self.obj, Index)

    def descriptor(self, **fields: Any) -> Descriptor:
        """A descriptor pointing at this manifest."""
        return Descriptor(
            media_type=self.media_type, digest=self.digest, size=len(self.raw), **fields
        )

    def __repr__(self) -> str:
        return f"ParsedManifest({self.media_type!r}, {self.digest!s})"
