"""portside.oci.image_spec: manifests, indexes and configs, OCI and Docker schema 2."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portside.errors import InvalidArgument
from portside.oci import mediatypes as mt
from portside.oci._json import SpecError
from portside.oci.digest import Digest
from portside.oci.image_spec import (
    EMPTY_DESCRIPTOR,
    EMPTY_JSON,
    ContainerConfig,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    ParsedManifest,
    RootFS,
    parse_image_config,
    parse_manifest,
)
from portside.oci.platform import Platform

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def docker_manifest() -> dict[str, Any]:
    """A Docker schema 2 manifest as a registry serves it."""
    return {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST,
        "config": {"mediaType": mt.DOCKER_CONFIG, "size": 1469, "digest": D1},
        "layers": [
            {"mediaType": mt.DOCKER_LAYER_GZIP, "size": 2479, "digest": D2},
            {"mediaType": mt.DOCKER_FOREIGN_LAYER, "size": 10, "digest": D3, "urls": ["https://x"]},
        ],
    }


def docker_manifest_list() -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST_LIST,
        "manifests": [
            {
                "mediaType": mt.DOCKER_MANIFEST,
                "size": 528,
                "digest": D1,
                "platform": {"architecture": "amd64", "os": "linux"},
            },
            {
                "mediaType": mt.DOCKER_MANIFEST,
                "size": 528,
                "digest": D2,
                "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
            },
            {
                "mediaType": mt.DOCKER_MANIFEST,
                "size": 1125,
                "digest": D3,
                "platform": {
                    "architecture": "amd64",
                    "os": "windows",
                    "os.version": "10.0.17763.5206",
                    "os.features": ["win32k"],
                },
            },
        ],
    }


def oci_index_with_attestation() -> dict[str, Any]:
    """What BuildKit pushes: an image and its attestation manifest."""
    return {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [
            {
                "mediaType": mt.OCI_MANIFEST,
                "digest": D1,
                "size": 673,
                "platform": {"architecture": "amd64", "os": "linux"},
            },
            {
                "mediaType": mt.OCI_MANIFEST,
                "digest": D2,
                "size": 566,
                "annotations": {
                    "vnd.docker.reference.digest": D1,
                    "vnd.docker.reference.type": "attestation-manifest",
                },
                "platform": {"architecture": "unknown", "os": "unknown"},
            },
        ],
    }


def oci_artifact() -> dict[str, Any]:
    """An image-spec 1.1 artifact: empty config, artifactType, a subject."""
    return {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom.v1",
        "config": EMPTY_DESCRIPTOR.to_json(),
        "layers": [{"mediaType": "application/spdx+json", "digest": D2, "size": 1024}],
        "subject": {"mediaType": mt.OCI_MANIFEST, "digest": D1, "size": 7682},
        "annotations": {"org.opencontainers.image.created": "2023-08-03T00:21:51Z"},
    }


def docker_config() -> dict[str, Any]:
    """A Docker image config as ``docker save`` writes it (legacy fields included)."""
    return {
        "architecture": "amd64",
        "config": {
            "Hostname": "",
            "User": "app",
            "ExposedPorts": {"80/tcp": {}},
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Entrypoint": None,
            "Cmd": ["nginx", "-g", "daemon off;"],
            "Volumes": {"/data": {}},
            "WorkingDir": "/srv",
            "Labels": {"maintainer": "someone"},
            "StopSignal": "SIGQUIT",
            "ArgsEscaped": True,
            "Healthcheck": {"Test": ["CMD", "true"], "Interval": 30000000000, "Retries": 3},
            "OnBuild": None,
            "Shell": ["/bin/bash", "-c"],
            "Image": "sha256:" + "9" * 64,
        },
        "container_config": {"Cmd": ["/bin/sh"]},
        "created": "2024-01-11T21:35:00.123456789Z",
        "docker_version": "20.10.23",
        "history": [
            {"created": "2024-01-11T00:00:00Z", "created_by": "/bin/sh -c #(nop) ADD file:x in /"},
            {
                "created": "2024-01-11T00:00:01Z",
                "created_by": '/bin/sh -c #(nop)  CMD ["bash"]',
                "empty_layer": True,
            },
        ],
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [D1]},
    }


def dumps(doc: Any) -> bytes:
    return json.dumps(doc, indent=3).encode()


# --- manifests -------------------------------------------------------------------------


def test_docker_manifest() -> None:
    raw = dumps(docker_manifest())
    parsed = ParsedManifest.parse(raw)
    assert parsed.media_type == mt.DOCKER_MANIFEST
    assert parsed.raw == raw
    assert parsed.digest == Digest.of(raw)
    m = parsed.obj
    assert isinstance(m, Manifest) and not parsed.is_index
    assert m.config.media_type == mt.DOCKER_CONFIG and m.config.digest == D1
    assert [layer.media_type for layer in m.layers] == [
        mt.DOCKER_LAYER_GZIP,
        mt.DOCKER_FOREIGN_LAYER,
    ]
    assert m.layers[1].urls == ["https://x"]
    assert not m.is_artifact
    assert json.loads(m.to_bytes()) == docker_manifest()
    d = parsed.descriptor(platform=Platform(os="linux", architecture="amd64"))
    assert (d.media_type, d.digest, d.size) == (mt.DOCKER_MANIFEST, Digest.of(raw), len(raw))


def test_docker_manifest_list_and_oci_index() -> None:
    index = parse_manifest(dumps(docker_manifest_list()))
    assert isinstance(index, Index)
    assert index.media_type == mt.DOCKER_MANIFEST_LIST
    platforms = [str(d.platform) for d in index.manifests]
    assert platforms == ["linux/amd64", "linux/arm64/v8", "windows(10.0.17763.5206)/amd64"]
    assert index.manifests[2].platform is not None
    assert index.manifests[2].platform.os_features == ["win32k"]
    oci = parse_manifest(dumps(oci_index_with_attestation()), mt.OCI_INDEX)
    assert isinstance(oci, Index)
    assert oci.manifests[1].annotations["vnd.docker.reference.type"] == "attestation-manifest"
    assert json.loads(oci.to_bytes()) == oci_index_with_attestation()


def test_artifact_manifest() -> None:
    m = parse_manifest(dumps(oci_artifact()))
    assert isinstance(m, Manifest)
    assert m.is_artifact
    assert m.artifact_type == "application/vnd.example.sbom.v1"
    assert m.config == EMPTY_DESCRIPTOR
    assert m.subject is not None and m.subject.digest == D1
    assert json.loads(m.to_bytes()) == oci_artifact()


def test_detection_without_media_type() -> None:
    doc = docker_manifest()
    del doc["mediaType"]
    parsed = ParsedManifest.parse(dumps(doc))
    assert parsed.media_type == mt.OCI_MANIFEST
    assert parsed.obj.media_type is None
    idx = oci_index_with_attestation()
    del idx["mediaType"]
    assert ParsedManifest.parse(dumps(idx)).media_type == mt.OCI_INDEX
    # the caller (a registry's Content-Type) may tell what the document does not say
    assert ParsedManifest.parse(dumps(doc), mt.DOCKER_MANIFEST).media_type == mt.DOCKER_MANIFEST


def test_expected_digest() -> None:
    raw = dumps(docker_manifest())
    assert ParsedManifest.parse(raw, expected=Digest.of(raw)).digest == Digest.of(raw)
    sha512 = Digest.of(raw, "sha512")
    assert ParsedManifest.parse(raw, expected=sha512).digest == sha512
    with pytest.raises(SpecError, match="digest mismatch"):
        ParsedManifest.parse(raw + b" ", expected=Digest.of(raw))


@pytest.mark.parametrize(
    ("doc", "media_type", "message"),
    [
        (
            {"schemaVersion": 1, "name": "x", "tag": "1", "fsLayers": [], "signatures": []},
            None,
            "schema 1 is not supported",
        ),
        (docker_manifest(), mt.DOCKER_SCHEMA1_SIGNED_MANIFEST, "schema 1 is not supported"),
        (
            docker_manifest() | {"mediaType": "application/vnd.example+json"},
            None,
            "unsupported manifest media type 'application/vnd.example+json'",
        ),
        (docker_manifest(), mt.OCI_CONFIG, "but was given as"),
        (docker_manifest(), mt.DOCKER_MANIFEST_LIST, "document says"),
        (docker_manifest() | {"schemaVersion": 3}, None, "schemaVersion: must be 2, got 3"),
        ({k: v for k, v in docker_manifest().items() if k != "schemaVersion"}, None, "got None"),
        (docker_manifest() | {"manifests": []}, None, "manifests: not allowed in a manifest"),
        (docker_manifest_list() | {"layers": []}, None, "not allowed in an index"),
        ({"schemaVersion": 2}, None, "neither config nor manifests"),
        (docker_manifest() | {"mediaType": 5}, None, "mediaType: expected a string"),
        (
            {k: v for k, v in docker_manifest().items() if k != "config"},
            None,
            "config: required field is missing",
        ),
    ],
)
def test_refused(doc: dict[str, Any], media_type: str | None, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_manifest(dumps(doc), media_type)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "manifest: invalid JSON"),
        (b"{", "manifest: invalid JSON"),
        (b"\xff\xfe\x00", "manifest: invalid JSON"),
        (b"[]", "manifest: expected a JSON object, got list"),
        (b"null", "expected a JSON object, got NoneType"),
    ],
)
def test_not_json(data: bytes, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_manifest(data)


def _with(path: list[Any], value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    doc = copy.deepcopy(base if base is not None else docker_manifest())
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (_with(["config", "size"], -1), "config.size: must not be negative, got -1"),
        (_with(["config", "size"], 1.5), "config.size: expected an integer"),
        (_with(["config", "digest"], "sha256:abc"), "config.digest: invalid digest 'sha256:abc'"),
        (_with(["config", "digest"], "md5:" + "0" * 32), "unsupported algorithm 'md5'"),
        (_with(["layers", 0, "digest"], 7), "layers[0].digest: expected a string"),
        (_with(["layers", 0, "mediaType"], "text"), "layers[0].mediaType: invalid media type"),
        (
            _with(["layers", 0, "mediaType"], "application/json"),
            "layers[0].mediaType: not a layer media type: 'application/json'",
        ),
        (_with(["layers", 1, "urls"], "https://x"), "layers[1].urls: expected a list"),
        (_with(["annotations"], {"a": 1}), "annotations.a: expected a string"),
        (
            _with(["config"], EMPTY_DESCRIPTOR.to_json(), oci_artifact() | {"artifactType": None}),
            "artifactType: must be set when config is the empty descriptor",
        ),
        (_with(["config", "data"], "e30="), "config.data: 2 bytes, but size says 1469"),
        (_with(["config", "data"], "!!"), "config.data: invalid base64"),
        (
            _with(["config"], {"mediaType": mt.OCI_EMPTY, "digest": D1, "size": 2, "data": "e30="}),
            "config.data: content does not match digest",
        ),
        (
            _with(["manifests", 0, "platform"], {"os": "linux"}, docker_manifest_list()),
            "manifests[0].platform.architecture: required field is missing",
        ),
    ],
)  # fmt: skip
def test_validation(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_manifest(dumps(doc))
    assert message in str(info.value)


def test_artifact_layers_need_not_be_layers() -> None:
    doc = _with(["layers", 0, "mediaType"], "application/json")
    doc["artifactType"] = "application/vnd.example"
    assert isinstance(parse_manifest(dumps(doc)), Manifest)
    doc = _with(["layers", 0, "mediaType"], "application/json")
    doc["config"]["mediaType"] = mt.DOCKER_PLUGIN_CONFIG  # config type is the artifact type
    assert isinstance(parse_manifest(dumps(doc)), Manifest)


def test_empty_descriptor() -> None:
    assert EMPTY_DESCRIPTOR.digest == Digest.of(EMPTY_JSON)
    assert EMPTY_DESCRIPTOR.size == len(EMPTY_JSON)
    assert EMPTY_DESCRIPTOR.inline_data() == b"{}"
    assert EMPTY_DESCRIPTOR.to_json() == {
        "mediaType": "application/vnd.oci.empty.v1+json",
        "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        "size": 2,
        "data": "e30=",
    }
    assert Descriptor.of(mt.OCI_EMPTY, b"{}", data="e30=") == EMPTY_DESCRIPTOR
    assert Descriptor.of(mt.OCI_LAYER, b"x").inline_data() is None


def test_required_lists_are_written_even_empty() -> None:
    m = Manifest(schema_version=2, media_type=mt.OCI_MANIFEST, config=EMPTY_DESCRIPTOR)
    m.artifact_type = "application/vnd.example"
    assert list(m.to_json()) == ["schemaVersion", "mediaType", "artifactType", "config", "layers"]
    assert m.to_json()["layers"] == []
    i = Index(schema_version=2, media_type=mt.OCI_INDEX)
    assert i.to_bytes() == b'{"schemaVersion":2,"mediaType":"%s","manifests":[]}' % (
        mt.OCI_INDEX.encode()
    )
    assert parse_manifest(i.to_bytes()) == i
    assert parse_manifest(m.to_bytes()) == m


def test_to_bytes_is_stable() -> None:
    m = parse_manifest(dumps(docker_manifest()))
    again = parse_manifest(json.dumps(docker_manifest(), sort_keys=True).encode())
    assert m.to_bytes() == again.to_bytes()
    assert m.to_bytes().startswith(b'{"schemaVersion":2,"mediaType":')
    assert parse_manifest(m.to_bytes()) == m


# --- image config ----------------------------------------------------------------------


def test_docker_image_config() -> None:
    config = parse_image_config(dumps(docker_config()))
    assert (config.os, config.architecture) == ("linux", "amd64")
    assert str(config.platform) == "linux/amd64"
    c = config.config
    assert c is not None
    assert c.user == "app"
    assert c.exposed_ports == {"80/tcp": {}}
    assert c.entrypoint is None
    assert c.cmd == ["nginx", "-g", "daemon off;"]
    assert c.volumes == {"/data": {}}
    assert c.working_dir == "/srv"
    assert c.labels == {"maintainer": "someone"}
    assert c.stop_signal == "SIGQUIT"
    assert c.args_escaped is True
    assert c.healthcheck is not None and c.healthcheck.test == ["CMD", "true"]
    assert c.healthcheck.interval == 30_000_000_000 and c.healthcheck.retries == 3
    assert c.shell == ["/bin/bash", "-c"]
    assert config.rootfs.diff_ids == [D1]
    assert isinstance(config.rootfs.diff_ids[0], Digest)
    assert [h.empty_layer for h in config.history] == [None, True]
    assert config.created == "2024-01-11T21:35:00.123456789Z"
    out = json.loads(config.to_bytes())
    assert "Entrypoint" not in out["config"] and "container_config" not in out
    assert parse_image_config(config.to_bytes()) == config


def test_null_and_empty_entrypoint_differ() -> None:
    unset = ContainerConfig(cmd=["sh"])
    cleared = ContainerConfig(entrypoint=[], cmd=["sh"])
    assert "Entrypoint" not in unset.to_json()
    assert cleared.to_json()["Entrypoint"] == []
    config = ImageConfig(
        architecture="arm64", os="linux", variant="v8", config=cleared, rootfs=RootFS()
    )
    back = parse_image_config(config.to_bytes())
    assert back.config is not None and back.config.entrypoint == []
    assert json.loads(config.to_bytes())["rootfs"] == {"type": "layers", "diff_ids": []}
    assert str(back.platform) == "linux/arm64/v8"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rootfs": {"type": "tar", "diff_ids": []}}, "rootfs.type: must be 'layers', got 'tar'"),
        ({"rootfs": {"type": "layers", "diff_ids": ["x"]}}, "rootfs.diff_ids[0]: invalid digest"),
        ({"rootfs": None}, "rootfs: required field is missing"),
        ({"architecture": None}, "architecture: required field is missing"),
        ({"config": {"Cmd": "sh"}}, "config.Cmd: expected a list"),
        ({"config": {"Labels": {"a": []}}}, "config.Labels.a: expected a string"),
        ({"history": [{"empty_layer": "yes"}]}, "history[0].empty_layer: expected true or false"),
    ],
)
def test_image_config_refused(change: dict[str, Any], message: str) -> None:
    doc = docker_config() | change
    with pytest.raises(SpecError) as info:
        parse_image_config(dumps(doc))
    assert message in str(info.value)


# --- properties ------------------------------------------------------------------------

_digests = st.text("0123456789abcdef", min_size=64, max_size=64).map(lambda h: "sha256:" + h)
_media_types = st.sampled_from(
    [mt.OCI_LAYER, mt.OCI_LAYER_GZIP, mt.OCI_LAYER_ZSTD, mt.DOCKER_LAYER_GZIP]
)
_annotations = st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=2)


@st.composite
def descriptors(draw: st.DrawFn, media_types: st.SearchStrategy[str] = _media_types) -> Descriptor:
    content = draw(st.one_of(st.none(), st.binary(max_size=16)))
    fields: dict[str, Any] = {
        "media_type": draw(media_types),
        "annotations": draw(_annotations),
        "urls": draw(st.lists(st.just("https://example.com/blob"), max_size=1)),
    }
    if content is not None:
        return Descriptor.of(data=base64.b64encode(content).decode(), content=content, **fields)
    return Descriptor(digest=Digest(draw(_digests)), size=draw(st.integers(0, 2**40)), **fields)


@st.composite
def manifests(draw: st.DrawFn) -> Manifest:
    docker = draw(st.booleans())
    return Manifest(
        schema_version=2,
        media_type=mt.DOCKER_MANIFEST if docker else draw(st.sampled_from([mt.OCI_MANIFEST, None])),
        config=draw(descriptors(st.just(mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG))),
        layers=draw(st.lists(descriptors(), max_size=4)),
        subject=draw(st.one_of(st.none(), descriptors(st.just(mt.OCI_MANIFEST)))),
        annotations=draw(_annotations),
    )


@given(manifests())
def test_generated_manifests_round_trip(m: Manifest) -> None:
    raw = m.to_bytes()
    parsed = ParsedManifest.parse(raw)
    assert parsed.obj == m
    assert parsed.obj.to_bytes() == raw
    assert parsed.digest == Digest.of(raw)


@given(st.lists(descriptors(st.just(mt.OCI_MANIFEST)), max_size=4), _annotations)
def test_generated_indexes_round_trip(
    entries: list[Descriptor], annotations: dict[str, str]
) -> None:
    for i, d in enumerate(entries):
        d.platform = Platform(os="linux", architecture=["amd64", "arm64", "s390x"][i % 3])
    index = Index(
        schema_version=2, media_type=mt.OCI_INDEX, manifests=entries, annotations=annotations
    )
    assert parse_manifest(index.to_bytes()) == index


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=12,
)


@given(st.binary(max_size=64))
def test_random_bytes_raise_only_invalid_argument(data: bytes) -> None:
    for parse in (parse_manifest, parse_image_config):
        try:
            parse(data)
        except InvalidArgument:
            pass


def _mutate(doc: Any, path: list[int], value: Any) -> Any:
    """Replace the node that ``path`` leads to (indexes into keys/items, modulo) by ``value``."""
    if not path or not isinstance(doc, dict | list) or not doc:
        return value
    keys = list(doc) if isinstance(doc, dict) else list(range(len(doc)))
    key = keys[path[0] % len(keys)]
    doc[key] = _mutate(doc[key], path[1:], value)
    return doc


_DOCUMENTS = [
    docker_manifest,
    docker_manifest_list,
    oci_index_with_attestation,
    oci_artifact,
    docker_config,
]


@given(st.sampled_from(_DOCUMENTS), st.lists(st.integers(0, 10), max_size=4), _json)
def test_mutated_documents_raise_only_invalid_argument(
    make: Any, path: list[int], value: Any
) -> None:
    data = dumps(_mutate(make(), path, value))
    for parse in (parse_manifest, parse_image_config):
        try:
            parse(data)
        except InvalidArgument:
            pass
