"""Base images as archives a daemon can ``load``: no hub needed.

``python -m portside.testing.baseimage busybox OUT.tar`` writes ``busybox:latest``
(made from Debian's busybox-static by :func:`portside.image.base.make_busybox_image`)
as a ``docker save`` archive, ready for ``portside load -i OUT.tar`` or
``docker load -i OUT.tar``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile


def write_busybox_archive(path: str, *, tag: str = "busybox:latest") -> str:
    """Write ``tag`` (the deterministic busybox image) to ``path`` in the
    docker-archive format; returns ``path``."""
    from portside.image.archive import save
    from portside.image.base import make_busybox_image
    from portside.image.content import ContentStore
    from portside.image.store import ImageStore

    work = tempfile.mkdtemp(prefix="portside-base-")
    try:
        content = ContentStore(os.path.join(work, "content"))
        store = ImageStore(os.path.join(work, "images"), content)
        make_busybox_image(content, store, tag=tag)
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "wb") as out:
            save(store, content, [tag], out)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "busybox":
        print("usage: python -m portside.testing.baseimage busybox OUT.tar", file=sys.stderr)
        return 2
    write_busybox_archive(args[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
