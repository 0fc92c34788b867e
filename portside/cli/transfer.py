"""cp, diff, commit, export: moving files and filesystems in and out of containers."""

from __future__ import annotations

import os

from portside.cli.flags import Opt
from portside.client.http import APIError, quote

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import BinaryIO

    from portside.cli.main import Context

__all__ = ["commit", "cp", "diff", "export", "split_cp_arg"]

CP_OPTS = [
    Opt("a|archive", "bool", "Archive mode (copy all uid/gid information)"),
    Opt("L|follow-link", "bool", "Always follow symbol link in SRC_PATH"),
    Opt("q|quiet", "bool", "Suppress progress output during copy"),
]

_DIR_BIT = 1 << 31


def split_cp_arg(arg: str) -> tuple[str | None, str]:
    """``name:/path`` → ("name", "/path"); a local path (absolute, ./, or without a
    colon) → (None, path), as docker's splitCpArg."""
    if os.path.isabs(arg) or arg.startswith("."):
        return None, arg
    container, sep, path = arg.partition(":")
    if not sep:
        return None, arg
    return container, path


def _stat(ctx: Context, container: str, path: str) -> dict | None:
    """The X-Docker-Container-Path-Stat of ``path``, None if it does not exist."""
    import base64
    import json

    try:
        response = ctx.client.request(
            "HEAD", f"/containers/{quote(container)}/archive", query={"path": path}
        )
    except APIError as exc:
        if exc.status == 404 and "No such container" not in exc.message:
            return None
        raise
    response.close()
    header = response.headers.get("x-docker-container-path-stat", "")
    return json.loads(base64.b64decode(header)) if header else {}


def cp(ctx: Context, argv: list[str]) -> int:
    p = ctx.parse(CP_OPTS, argv, min_args=2, max_args=2)
    (src_ctr, src), (dst_ctr, dst) = split_cp_arg(p.args[0]), split_cp_arg(p.args[1])
    if src_ctr is not None and dst_ctr is not None:
        raise ctx.error("copying between containers is not supported", 1)
    if src_ctr is None and dst_ctr is None:
        raise ctx.error("must specify at least one container source", 1)
    if src_ctr == "" or dst_ctr == "":
        raise ctx.error("copying between containers is not supported", 1)
    quiet = p.quiet or not ctx.err.isatty()
    if src_ctr is not None:
        return _copy_from(ctx, src_ctr, src, dst, quiet=quiet)
    return _copy_to(ctx, src, dst_ctr, dst, copy_uid=p.archive, quiet=quiet)  # type: ignore[arg-type]


def _copy_from(ctx: Context, container: str, src: str, dst: str, *, quiet: bool) -> int:
    import base64
    import json

    response = ctx.client.request(
        "GET", f"/containers/{quote(container)}/archive", query={"path": src}
    )
    try:
        header = response.headers.get("x-docker-container-path-stat", "")
        stat = json.loads(base64.b64decode(header)) if header else {}
        if dst == "-":
            from portside.cli.interactive import write_all

            ctx.out.flush()
            for chunk in response.iter_chunks():
                write_all(1, chunk)
            return 0
        size = _extract(response.iter_chunks(), src, stat, dst)
    finally:
        response.close()
    if not quiet:
        from portside.cli.formatting import human_size

        ctx.err.write(f"Successfully copied {human_size(size, 4)} to {dst}\n")
    return 0


def _extract(chunks: Iterator[bytes], src: str, stat: dict, dst: str) -> int:
    """Extract the archive of ``src`` to the local ``dst`` with docker's naming:
    into ``dst`` if it is a directory, else as ``dst`` itself."""
    import tarfile
    import tempfile

    from portside.errors import InvalidArgument

    src_is_dir = bool(int(stat.get("mode", 0)) & _DIR_BIT)
    base = stat.get("name") or os.path.basename(src.rstrip("/")) or "."
    contents_only = src.endswith("/.")
    if os.path.isdir(dst):
        target, rename = dst, None
    elif os.path.exists(dst):
        if src_is_dir:
            raise InvalidArgument(f"cannot copy directory to file: {dst}")
        target, rename = os.path.dirname(dst) or ".", os.path.basename(dst)
    else:
        if dst.endswith("/"):
            raise InvalidArgument(f"destination directory {dst} does not exist")
        parent = os.path.dirname(dst.rstrip("/")) or "."
        if not os.path.isdir(parent):
            raise InvalidArgument(f"destination parent {parent} does not exist")
        target, rename = parent, os.path.basename(dst.rstrip("/"))
    size = 0
    with tempfile.TemporaryFile() as spool:
        for chunk in chunks:
            size += len(chunk)
            spool.write(chunk)
        spool.seek(0)
        with tarfile.open(fileobj=spool, mode="r|") as archive:
            for member in archive:
                name = member.name
                if contents_only and os.path.isdir(dst):
                    _, _, rest = name.partition("/")
                    if not rest:
                        continue
                    member.name = rest
                elif rename is not None and (name == base or name.startswith(base + "/")):
                    member.name = rename + name[len(base) :]
                _check_member(member)
                archive.extract(member, target, set_attrs=True)
    return size


def _check_member(member: object) -> None:
    """Refuse archive names that would land outside the target directory."""
    from portside.errors import InvalidArgument

    for name in (member.name, member.linkname if member.islnk() else ""):  # type: ignore[attr-defined]
        parts = name.split("/")
        if name.startswith("/") or ".." in parts:
            raise InvalidArgument(f"refusing archive entry outside the target: {name!r}")


def _copy_to(
    ctx: Context, src: str, container: str, dst: str, *, copy_uid: bool, quiet: bool
) -> int:
    query: dict[str, object] = {"noOverwriteDirNonDir": "true"}
    if copy_uid:
        query["copyUIDGID"] = "true"
    if src == "-":
        stat = _stat(ctx, container, dst)
        if stat is None or not int(stat.get("mode", 0)) & _DIR_BIT:
            raise ctx.error(f'destination "{container}:{dst}" must be a directory', 1)
        import sys

        query["path"] = dst
        ctx.client.call(
            "PUT",
            f"/containers/{quote(container)}/archive",
            query=query,
            stream=_read_stream(sys.stdin.buffer),
            headers={"Content-Type": "application/x-tar"},
        )
        return 0
    if not os.path.lexists(src):
        raise ctx.error(f"lstat {os.path.abspath(src)}: no such file or directory", 1)
    stat = _stat(ctx, container, dst)
    src_is_dir = os.path.isdir(src)
    base = os.path.basename(os.path.normpath(src))
    if stat is not None and int(stat.get("mode", 0)) & _DIR_BIT:
        target, name = dst, base
    elif stat is not None:
        if src_is_dir:
            raise ctx.error(f"cannot copy directory to file: {container}:{dst}", 1)
        target, name = os.path.dirname(dst) or "/", os.path.basename(dst)
    else:
        if dst.endswith("/"):
            raise ctx.error(
                f"Error response from daemon: Could not find the file {dst} in "
                f"container {container}",
                1,
            )
        target, name = os.path.dirname(dst.rstrip("/")) or "/", os.path.basename(dst.rstrip("/"))
    contents = src.endswith("/.") and src_is_dir
    spool, size = _tar_path(src, "." if contents else name)
    with spool:
        query["path"] = target if not contents or stat is None else dst
        if contents and stat is None:
            query["path"] = target
        ctx.client.call(
            "PUT",
            f"/containers/{quote(container)}/archive",
            query=query,
            stream=_read_stream(spool),
            headers={"Content-Type": "application/x-tar"},
        )
    if not quiet:
        from portside.cli.formatting import human_size

        ctx.err.write(f"Successfully copied {human_size(size, 4)} to {container}:{dst}\n")
    return 0


def _tar_path(src: str, arcname: str) -> tuple[BinaryIO, int]:
    import tarfile
    import tempfile

    spool = tempfile.TemporaryFile()  # noqa: SIM115 (returned open)
    with tarfile.open(fileobj=spool, mode="w|", format=tarfile.PAX_FORMAT) as archive:
        archive.add(src, arcname=arcname)
    size = spool.tell()
    spool.seek(0)
    return spool, size  # type: ignore[return-value]


def _read_stream(handle: BinaryIO, size: int = 1 << 16) -> Iterator[bytes]:
    while True:
        chunk = handle.read(size)
        if not chunk:
            return
        yield chunk


def diff(ctx: Context, argv: list[str]) -> int:
    p = ctx.parse([], argv, min_args=1, max_args=1)
    changes = ctx.client.call("GET", f"/containers/{quote(p.args[0])}/changes") or []
    kinds = {0: "C", 1: "A", 2: "D"}
    for change in changes:
        ctx.out.write(f"{kinds.get(change.get('Kind'), '?')} {change.get('Path')}\n")
    return 0


COMMIT_OPTS = [
    Opt("a|author", "str", 'Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")'),
    Opt("c|change", "list", "Apply Dockerfile instruction to the created image"),
    Opt("m|message", "str", "Commit message"),
    Opt("p|pause", "bool", "Pause container during commit", default=True),
]


def split_reference(ref: str) -> tuple[str | None, str | None]:
    """``repo:tag`` → ("repo", "tag"); a digest or a bare name keeps tag None."""
    if not ref:
        return None, None
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash and "@" not in ref:
        return ref[:colon], ref[colon + 1 :]
    return ref, None


def commit(ctx: Context, argv: list[str]) -> int:
    p = ctx.parse(COMMIT_OPTS, argv, min_args=1, max_args=2)
    repo, tag = split_reference(p.args[1] if len(p.args) > 1 else "")
    query = {
        "container": p.args[0],
        "repo": repo,
        "tag": tag,
        "comment": p.message,
        "author": p.author,
        "pause": "true" if p.pause else "false",
        "changes": p.change or None,
    }
    result = ctx.client.call("POST", "/commit", query=query, body={}) or {}
    ctx.out.write(f"{result.get('Id', '')}\n")
    return 0


def open_output(ctx: Context, path: str | None, what: str) -> BinaryIO:
    """The file of ``-o`` or stdout (refused when it is a terminal)."""
    import sys

    if path:
        try:
            return open(path, "wb")
        except OSError as exc:
            raise ctx.error(f"failed to save {what}: {exc}", 1) from None
    if sys.stdout.isatty():
        raise ctx.error("cowardly refusing to save to a terminal. Use the -o flag or redirect", 1)
    ctx.out.flush()
    return sys.stdout.buffer


def export(ctx: Context, argv: list[str]) -> int:
    from portside.cli.progress import Progress

    p = ctx.parse(
        [Opt("o|output", "str", "Write to a file, instead of STDOUT")], argv, min_args=1, max_args=1
    )
    out = open_output(ctx, p.output, "container")
    response = ctx.client.request("GET", f"/containers/{quote(p.args[0])}/export")
    progress = Progress("Exporting", total=0)
    try:
        for chunk in response.iter_chunks():
            out.write(chunk)
            progress.advance(len(chunk))
        out.flush()
    finally:
        progress.done()
        response.close()
        if p.output:
            out.close()
    return 0
