"""The roles of a content store, as containerd splits them (``core/content``).

Code that needs only part of a store asks for that role: the layer applier and
the image store read (``Provider``), a pull writes (``Ingester``), gc and the
CLI manage (``Manager``, ``IngestManager``). ``ContentStore`` is all of them;
a registry-backed or in-memory store would implement the roles it can. Import
this module for type annotations (it costs ``typing``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, BinaryIO, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from portside.image.content import BlobInfo, ReaderAt
    from portside.image.content_writer import IngestStatus, Writer

__all__ = ["IngestManager", "Ingester", "Manager", "Provider", "Store"]


class Provider(Protocol):
    """Reads committed blobs. Every method raises BlobNotFound for a missing blob
    and InvalidDigest for a malformed digest."""

    def exists(self, digest: str) -> bool: ...

    def info(self, digest: str) -> BlobInfo: ...

    def open(self, digest: str) -> BinaryIO: ...

    def read(self, digest: str, *, max_size: int | None = None) -> bytes: ...

    def reader_at(self, digest: str) -> ReaderAt: ...

    def read_range(self, digest: str, offset: int, length: int) -> bytes: ...


class Ingester(Protocol):
    """Writes blobs, each invisible until committed with its expected digest."""

    def writer(
        self,
        ref: str,
        *,
        expected: str | None = None,
        size: int | None = None,
        lease: str | None = None,
    ) -> Writer: ...

    def write_blob(
        self,
        data: bytes,
        expected: str | None = None,
        *,
        labels: dict[str, str] | None = None,
        lease: str | None = None,
    ) -> str: ...


class Manager(Protocol):
    """Lists, labels and deletes committed blobs."""

    def list(self) -> Iterator[BlobInfo]: ...

    def delete(self, digest: str) -> None: ...

    def update_labels(self, digest: str, labels: Mapping[str, str | None]) -> dict[str, str]: ...

    def usage(self) -> tuple[int, int]: ...


class IngestManager(Protocol):
    """Watches and cancels ingests."""

    def ingests(self) -> list[IngestStatus]: ...

    def abort(self, ref: str) -> None: ...

    def abort_stale(self, older_than: float) -> list[str]: ...


class Store(Provider, Ingester, Manager, IngestManager, Protocol):
    """A complete content store."""
