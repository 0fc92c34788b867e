"""What the registry needs to know of a pushed manifest, read from its bytes (pure):
its media type, the blobs and manifests it references (which must exist), its
``subject`` and artifact type (for the referrers API) and annotations.

Accepted: OCI image manifest and index (artifacts included: any ``artifactType``,
any config and layer media types), Docker schema 2 manifest and manifest list. Schema
1 is refused, as distribution 2.8 does by default. The bytes are never rewritten: the
registry stores what the client sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from portside.oci import mediatypes as mt
from portside.oci.digest import Digest, InvalidDigest
from portside.registry.errors import ManifestInvalid

__all__ = ["MANIFEST_TYPES", "ParsedManifest", "parse"]

MANIFEST_TYPES = frozenset(
    {mt.OCI_MANIFEST, mt.OCI_INDEX, mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST}
)
#: layers that live elsewhere (their ``urls``): not required in the registry
_FOREIGN = frozenset(
    {
        mt.DOCKER_FOREIGN_LAYER,
        mt.OCI_LAYER_NONDIST,
        mt.OCI_LAYER_NONDIST_GZIP,
        mt.OCI_LAYER_NONDIST_ZSTD,
    }
)
#: Content-Type values that say nothing: the body's ``mediaType`` decides
_GENERIC = frozenset({"", "application/json", "application/octet-stream", "text/plain"})


@dataclass(frozen=True)
class ParsedManifest:
    media_type: str
    #: blobs that must be in the repository (config, layers)
    blobs: tuple[str, ...] = ()
    #: manifests that must be in the repository (an index's)
    manifests: tuple[str, ...] = ()
    subject: str | None = None
    #: what the referrers API lists it as: ``artifactType``, else the config's media type
    artifact_type: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def is_index(self) -> bool:
        return mt.is_index(self.media_type)


def _media_type(content_type: str, doc: dict[str, object]) -> str:
    declared = content_type.split(";", 1)[0].strip().lower()
    body = doc.get("mediaType")
    if body is not None and not isinstance(body, str):
        raise ManifestInvalid("manifest mediaType is not a string")
    if mt.is_schema1(declared) or (isinstance(body, str) and mt.is_schema1(body)):
        raise ManifestInvalid("schema 1 manifests are not supported")
    if declared in _GENERIC:
        if body:
            declared = body
        elif "manifests" in doc:
            declared = mt.OCI_INDEX
        else:
            declared = mt.OCI_MANIFEST
    if declared not in MANIFEST_TYPES:
        raise ManifestInvalid(f"unsupported manifest media type {declared!r}")
    if body and body != declared:
        raise ManifestInvalid(
            f"manifest mediaType {body!r} does not match its Content-Type {declared!r}"
        )
    return declared


def _descriptor(value: object, where: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise ManifestInvalid(f"{where}: not a descriptor")
    media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise ManifestInvalid(f"{where}: missing mediaType")
    if not isinstance(digest, str):
        raise ManifestInvalid(f"{where}: missing digest")
    try:
        Digest(digest)
    except InvalidDigest as exc:
        raise ManifestInvalid(f"{where}: {exc}") from exc
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestInvalid(f"{where}: size must be a non-negative integer")
    return value


def _descriptors(doc: dict[str, object], key: str) -> list[dict[str, object]]:
    items = doc.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise ManifestInvalid(f"{key} is not a list")
    return [_descriptor(item, f"{key}[{i}]") for i, item in enumerate(items)]


def _annotations(doc: dict[str, object]) -> dict[str, str]:
    value = doc.get("annotations")
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ManifestInvalid("annotations must map strings to strings")
    return value


def parse(data: bytes, content_type: str = "") -> ParsedManifest:
    """Check a manifest's structure; :class:`ManifestInvalid` says what is wrong."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestInvalid(f"manifest is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ManifestInvalid("manifest is not a JSON object")
    media_type = _media_type(content_type, doc)
    if doc.get("schemaVersion") != 2:
        raise ManifestInvalid(f"unsupported schemaVersion {doc.get('schemaVersion')!r}")
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise ManifestInvalid("artifactType is not a string")
    subject = None
    if doc.get("subject") is not None:
        subject = str(_descriptor(doc["subject"], "subject")["digest"])
    annotations = _annotations(doc)
    if mt.is_index(media_type):
        if "manifests" not in doc:
            raise ManifestInvalid("an index needs a manifests list")
        children = tuple(str(d["digest"]) for d in _descriptors(doc, "manifests"))
        return ParsedManifest(
            media_type, (), _unique(children), subject, artifact_type, annotations
        )
    if "config" not in doc:
        raise ManifestInvalid("a manifest needs a config descriptor")
    config = _descriptor(doc["config"], "config")
    layers = _descriptors(doc, "layers")
    blobs = [str(config["digest"])]
    blobs += [str(d["digest"]) for d in layers if not _foreign(d)]
    kind = artifact_type or str(config["mediaType"])
    return ParsedManifest(media_type, _unique(blobs), (), subject, kind, annotations)


def _foreign(desc: dict[str, object]) -> bool:
    return desc["mediaType"] in _FOREIGN and bool(desc.get("urls"))


def _unique(items: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
