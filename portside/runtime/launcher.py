"""Write a lean ``portside-runtime`` launcher.

A console script from pip starts Python with ``site`` and the editable-install
finder, ~25 ms before any work; the runtime needs only the standard library, so
its launcher runs ``python -I -S`` with Portside's directory put first on
``sys.path``. Engines call the runtime several times per container, so this is
most of the gap to runc. ``scripts/install.sh`` runs this after pip.
"""

from __future__ import annotations

import os
import sys

__all__ = ["launcher_text", "main"]


def launcher_text(python: str, package_parent: str) -> str:
    return (
        f"#!{python} -IS\n"
        "import sys\n"
        f"sys.path.insert(0, {package_parent!r})\n"
        "from portside.runtime.cli import main\n"
        "sys.exit(main())\n"
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m portside.runtime.launcher DEST\n")
        return 2
    import portside

    parent = os.path.dirname(os.path.dirname(os.path.abspath(portside.__file__)))
    dest = args[0]
    tmp = dest + ".tmp"
    with open(tmp, "w") as f:
        f.write(launcher_text(sys.executable, parent))
    os.chmod(tmp, 0o755)
    os.replace(tmp, dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
