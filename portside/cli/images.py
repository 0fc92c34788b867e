"""images, tag, rmi, save, load, history, import, image prune."""

from __future__ import annotations

import sys

from portside.cli.flags import Opt
from portside.client.http import APIError, quote

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import BinaryIO

    from portside.cli.main import Context

__all__ = ["history", "images", "import_", "load", "prune", "rmi", "save", "tag"]

IMAGES_OPTS = [
    Opt("a|all", "bool", "Show all images (default hides intermediate images)"),
    Opt("digests", "bool", "Show digests"),
    Opt("f|filter", "list", "Filter output based on conditions provided"),
    Opt("format", "str", "Format output using a custom template"),
    Opt("no-trunc", "bool", "Don't truncate output"),
    Opt("q|quiet", "bool", "Only show image IDs"),
    Opt("tree", "bool", "List multi-platform images as a tree (not supported)"),
]

IMAGES_FORMAT = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
IMAGES_DIGEST_FORMAT = (
    "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
)


def images(ctx: Context, argv: list[str]) -> int:
    from portside.cli.formatting import image_rows, render
    from portside.client.api import encode_filters

    p = ctx.parse(IMAGES_OPTS, argv, max_args=1)
    filters = list(p.filter)
    if p.args:
        filters.append(f"reference={p.args[0]}")
    try:
        encoded = encode_filters(filters)
    except ValueError as exc:
        raise ctx.error(str(exc), 1) from None
    query = {"all": p.all or None, "filters": encoded, "digests": p.digests or None}
    listed = ctx.client.call("GET", "/images/json", query=query) or []
    if p.quiet:
        seen: list[str] = []
        for image in listed:
            ident = image.get("Id", "")
            ident = ident if p.no_trunc else ident.removeprefix("sha256:")[:12]
            if ident not in seen:
                seen.append(ident)
        ctx.out.write("".join(f"{i}\n" for i in seen))
        return 0
    fmt = p.format or (IMAGES_DIGEST_FORMAT if p.digests else IMAGES_FORMAT)
    show_digests = p.digests or ".Digest" in fmt
    rows = image_rows(listed, digests=show_digests, trunc=not p.no_trunc)
    render(rows, fmt, ctx.out)
    return 0


def tag(ctx: Context, argv: list[str]) -> int:
    from portside.cli.transfer import split_reference

    p = ctx.parse([], argv, min_args=2, max_args=2)
    repo, tag_ = split_reference(p.args[1])
    ctx.client.call(
        "POST", f"/images/{quote(p.args[0])}/tag", query={"repo": repo, "tag": tag_ or "latest"}
    )
    return 0


RMI_OPTS = [
    Opt("f|force", "bool", "Force removal of the image"),
    Opt("no-prune", "bool", "Do not delete untagged parents"),
]


def rmi(ctx: Context, argv: list[str]) -> int:
    p = ctx.parse(RMI_OPTS, argv, min_args=1)
    errors = []
    for ref in p.args:
        try:
            items = (
                ctx.client.call(
                    "DELETE",
                    f"/images/{quote(ref)}",
                    query={"force": p.force or None, "noprune": p.no_prune or None},
                )
                or []
            )
        except APIError as exc:
            errors.append(f"Error response from daemon: {exc.message}")
            continue
        for item in items:
            if item.get("Untagged"):
                ctx.out.write(f"Untagged: {item['Untagged']}\n")
            if item.get("Deleted"):
                ctx.out.write(f"Deleted: {item['Deleted']}\n")
    if errors:
        ctx.out.flush()
        raise ctx.error("\n".join(errors), 1)
    return 0


def save(ctx: Context, argv: list[str]) -> int:
    from portside.cli.progress import Progress
    from portside.cli.transfer import open_output

    p = ctx.parse(
        [
            Opt("o|output", "str", "Write to a file, instead of STDOUT"),
            Opt("platform", "list", "Save only the given platform (ignored)"),
        ],
        argv,
        min_args=1,
    )
    out = open_output(ctx, p.output, "image")
    progress = Progress("Saving", 0)
    try:
        response = ctx.client.request("GET", "/images/get", query={"names": p.args})
        try:
            for chunk in response.iter_chunks():
                out.write(chunk)
                progress.advance(len(chunk))
            out.flush()
        finally:
            response.close()
    finally:
        progress.done()
        if p.output:
            out.close()
    return 0


def _upload(handle: BinaryIO, label: str, total: int) -> Iterator[bytes]:
    from portside.cli.progress import Progress

    progress = Progress(label, total)
    try:
        while True:
            chunk = handle.read(1 << 16)
            if not chunk:
                return
            progress.advance(len(chunk))
            yield chunk
    finally:
        progress.done()


def _source(ctx: Context, path: str | None, what: str) -> tuple[BinaryIO, int]:
    import os

    if path and path != "-":
        try:
            handle = open(path, "rb")  # noqa: SIM115 (closed by the caller)
        except OSError as exc:
            raise ctx.error(f"open {path}: {(exc.strerror or str(exc)).lower()}", 1) from None
        return handle, os.fstat(handle.fileno()).st_size
    if sys.stdin.isatty():
        raise ctx.error(f"requested {what} from stdin, but stdin is empty", 1)
    return sys.stdin.buffer, 0


def load(ctx: Context, argv: list[str]) -> int:
    from portside.cli.progress import show_json_messages

    p = ctx.parse(
        [
            Opt("i|input", "str", "Read from tar archive file, instead of STDIN"),
            Opt("q|quiet", "bool", "Suppress the load output"),
            Opt("platform", "list", "Load only the given platform (ignored)"),
        ],
        argv,
        max_args=0,
    )
    handle, total = _source(ctx, p.input, "load")
    quiet = p.quiet or not ctx.err.isatty()
    try:
        body = _upload(handle, "Loading", total) if not quiet else _plain(handle)
        response = ctx.client.request(
            "POST",
            "/images/load",
            query={"quiet": "1" if quiet else "0"},
            stream=body,
            headers={"Content-Type": "application/x-tar"},
        )
        try:
            _, error = show_json_messages(response.iter_json(), ctx.out, ctx.err)
        finally:
            response.close()
    finally:
        if p.input:
            handle.close()
    if error:
        raise ctx.error(error, 1)
    return 0


def _plain(handle: BinaryIO) -> Iterator[bytes]:
    while True:
        chunk = handle.read(1 << 16)
        if not chunk:
            return
        yield chunk


IMPORT_OPTS = [
    Opt("c|change", "list", "Apply Dockerfile instruction to the created image"),
    Opt("m|message", "str", "Set commit message for imported image"),
    Opt("platform", "str", "Set platform if server is multi-platform capable"),
]


def import_(ctx: Context, argv: list[str]) -> int:
    from portside.cli.progress import show_json_messages
    from portside.cli.transfer import split_reference

    p = ctx.parse(IMPORT_OPTS, argv, min_args=1, max_args=2)
    source = p.args[0]
    if source.startswith(("http://", "https://")):
        raise ctx.error(
            "portside: importing from a URL is not supported (download the file "
            "and import it, or pipe it to 'portside import -')",
            1,
        )
    repo, tag_ = split_reference(p.args[1] if len(p.args) > 1 else "")
    handle, total = _source(ctx, source, "import")
    query = {
        "fromSrc": "-",
        "repo": repo,
        "tag": tag_,
        "message": p.message,
        "changes": p.change or None,
        "platform": p.platform,
    }
    try:
        response = ctx.client.request(
            "POST",
            "/images/create",
            query=query,
            stream=_upload(handle, "Importing", total),
            headers={"Content-Type": "application/x-tar"},
        )
        try:
            statuses, error = show_json_messages(response.iter_json(), ctx.out, ctx.err)
        finally:
            response.close()
    finally:
        if source != "-":
            handle.close()
    if error:
        raise ctx.error(error, 1)
    for status in statuses[-1:]:
        ctx.out.write(status + "\n")
    return 0


HISTORY_OPTS = [
    Opt("format", "str", "Format output using a custom template"),
    Opt("H|human", "bool", "Print sizes and dates in human readable format", default=True),
    Opt("no-trunc", "bool", "Don't truncate output"),
    Opt("q|quiet", "bool", "Only show image IDs"),
]

HISTORY_HEADERS = {
    "ID": "IMAGE",
    "CreatedSince": "CREATED",
    "CreatedAt": "CREATED AT",
    "CreatedBy": "CREATED BY",
    "Size": "SIZE",
    "Comment": "COMMENT",
}


def history(ctx: Context, argv: list[str]) -> int:
    import time

    from portside.cli.formatting import MapRow, ellipsis, human_size, render, since

    p = ctx.parse(HISTORY_OPTS, argv, min_args=1, max_args=1)
    layers = ctx.client.call("GET", f"/images/{quote(p.args[0])}/history") or []
    rows = []
    for layer in layers:
        ident = layer.get("Id", "") or "<missing>"
        if not p.no_trunc and ident != "<missing>":
            ident = ident.removeprefix("sha256:")[:12]
        created = layer.get("Created", 0)
        created_by = (
            " ".join((layer.get("CreatedBy") or "").split())
            if not p.no_trunc
            else layer.get("CreatedBy") or ""
        )
        if not p.no_trunc:
            created_by = ellipsis(created_by, 45)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created))
        rows.append(
            MapRow(
                {
                    "ID": ident,
                    "CreatedSince": since(created) if p.human else stamp,
                    "CreatedAt": stamp,
                    "CreatedBy": created_by,
                    "Size": human_size(layer.get("Size", 0))
                    if p.human
                    else str(layer.get("Size", 0)),
                    "Comment": layer.get("Comment", ""),
                },
                HISTORY_HEADERS,
            )
        )
    if p.quiet:
        fmt = "{{.ID}}"
    else:
        fmt = p.format or (
            "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
        )
    render(rows, fmt, ctx.out)
    return 0


PRUNE_OPTS = [
    Opt("a|all", "bool", "Remove all unused images, not just dangling ones"),
    Opt("filter", "list", 'Provide filter values (e.g. "until=<timestamp>")'),
    Opt("f|force", "bool", "Do not prompt for confirmation"),
]


def prune(ctx: Context, argv: list[str]) -> int:
    from portside.cli.lifecycle import confirm, prune_kind, write_reclaimed

    p = ctx.parse(PRUNE_OPTS, argv, max_args=0)
    warning = (
        "WARNING! This will remove all images without at least one container associated to them."
        if p.all
        else "WARNING! This will remove all dangling images."
    )
    if not p.force and not confirm(ctx, warning):
        return 0
    filters = list(p.filter)
    filters.append(f"dangling={'false' if p.all else 'true'}")
    return write_reclaimed(ctx, prune_kind(ctx, "images", filters))
