"""``docker rmi`` semantics, after moby's ``daemon/images/image_delete.go``.

Named by a tag or ``name@digest``: that reference is removed ("Untagged"); when it
was the last tag of its repository, the repository's digest references go with it;
the image is deleted only when no reference is left. Refused, unless forced, when
that would leave a container's image dangling. Named by ID (or ID prefix): when
all its references are in one repository they are removed, then the image;
otherwise it needs ``force``. A running container's image is never deleted
("cannot be forced"); a forced untag of it succeeds and leaves the image.
"""

from __future__ import annotations

from portside.image.store import ImageConflict, _is_id_prefix, _named
from portside.oci.reference import parse_reference

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3

    from portside.image.store import ImageStore, InUse
    from portside.oci.reference import Reference

__all__ = ["remove"]


def remove(
    store: ImageStore,
    conn: sqlite3.Connection,
    ref_or_id: str,
    force: bool,
    in_use: InUse | None,
) -> list[dict[str, str]]:
    """Inside the caller's transaction; see :meth:`ImageStore.remove`."""
    image_id = store._resolve(conn, ref_or_id)
    users = list(in_use(image_id)) if in_use is not None else []
    refs = _references(conn, image_id)
    records: list[dict[str, str]] = []
    quiet = False
    if not _is_id_prefix(image_id, ref_or_id):
        if not force and _single_reference(refs) and users:
            raise ImageConflict(
                f"conflict: unable to remove repository reference {_go_quote(ref_or_id)}"
                f" (must force) - container {users[0][0][:12]} is using its referenced image"
                f" {_short(image_id)}",
                used=True,
            )
        named = _named(ref_or_id)
        _delete_ref(conn, named)
        records.append({"Untagged": named.familiar()})
        refs = [r for r in refs if r != named]
        if named.digest is None and not any(
            r.digest is None and r.name == named.name for r in refs
        ):
            for ref in [r for r in refs if r.digest is not None and r.name == named.name]:
                _delete_ref(conn, ref)
                records.append({"Untagged": ref.familiar()})
                refs.remove(ref)
        if refs:
            return records
        quiet = True
    elif _single_reference(refs):
        conflict = _conflict(image_id, users, refs, hard_only=force, references=False)
        if conflict is not None:
            raise conflict
        for ref in refs:
            _delete_ref(conn, ref)
            records.append({"Untagged": ref.familiar()})
        refs = []
    conflict = _conflict(image_id, users, refs, hard_only=force, references=True)
    if conflict is not None:
        if quiet and conflict.used:
            return records  # the untag stands; the image stays for its container
        raise conflict
    for ref in refs:
        _delete_ref(conn, ref)
        records.append({"Untagged": ref.familiar()})
    conn.execute("DELETE FROM images WHERE id = ?", (image_id,))
    records.append({"Deleted": image_id})
    return records


def _short(image_id: str) -> str:
    return image_id.partition(":")[2][:12]


def _go_quote(text: str) -> str:
    """Go's ``%q`` for the printable ASCII a reference can hold."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _references(conn: sqlite3.Connection, image_id: str) -> list[Reference]:
    """The image's tags and RepoDigests, in Docker's (lexical, familiar) order."""
    rows = conn.execute(
        "SELECT name FROM tags WHERE image_id = ? UNION ALL"
        " SELECT name FROM repo_digests WHERE image_id = ?",
        (image_id, image_id),
    ).fetchall()
    return sorted((parse_reference(str(r[0])) for r in rows), key=lambda r: r.familiar())


def _delete_ref(conn: sqlite3.Connection, ref: Reference) -> None:
    table = "tags" if ref.digest is None else "repo_digests"
    conn.execute(f"DELETE FROM {table} WHERE name = ?", (str(ref),))


def _single_reference(refs: list[Reference]) -> bool:
    """moby's ``isSingleReference``: at most one tag, and every reference in the
    tag's (or the first digest's) repository."""
    if len(refs) <= 1:
        return len(refs) == 1
    single = None
    canonical: set[str] = set()
    for ref in refs:
        if ref.digest is not None:
            canonical.add(ref.name)
        elif single is None:
            single = ref
        else:
            return False
    if single is None:
        single = refs[0]
    return canonical == {single.name}


def _conflict(
    image_id: str,
    users: list[tuple[str, bool]],
    refs: list[Reference],
    *,
    hard_only: bool,
    references: bool,
) -> ImageConflict | None:
    """moby's ``checkImageDeleteConflict``: a running container (hard), then, unless
    ``hard_only``, remaining references (when ``references``) and stopped containers."""
    short = _short(image_id)
    for container_id, running in users:
        if running:
            return ImageConflict(
                f"conflict: unable to delete {short} (cannot be forced) - image is being"
                f" used by running container {container_id[:12]}",
                hard=True,
                used=True,
            )
    if hard_only:
        return None
    if references and refs:
        return ImageConflict(
            f"conflict: unable to delete {short} (must be forced) - image is referenced in"
            " multiple repositories"
        )
    for container_id, _running in users:
        return ImageConflict(
            f"conflict: unable to delete {short} (must be forced) - image is being used by"
            f" stopped container {container_id[:12]}",
            used=True,
        )
    return None
