"""Write lean launchers for ``portside-runtime`` and ``portside``.

A console script from pip starts Python with ``site`` and the editable-install
finder, ~25 ms before any work. These launchers run ``python -I -S`` with
Portside's directory first on ``sys.path`` and the environment's site-packages
last (for what ``portside daemon`` imports; no ``.pth`` processing). Engines call
the runtime several times per container and users call the CLI for every
command, so this is most of the gap to runc and to the docker CLI.
``scripts/install.sh`` runs this after pip::

    python -m portside.runtime.launcher DEST [MODULE]   # MODULE: portside.runtime.cli
"""

from __future__ import annotations

import os
import sys

__all__ = ["launcher_text", "main"]


def launcher_text(
    python: str,
    package_parent: str,
    module: str = "portside.runtime.cli",
    site_packages: str | None = None,
) -> str:
    tail = f"sys.path.append({site_packages!r})\n" if site_packages else ""
    return (
        f"#!{python} -IS\n"
        "import sys\n"
        f"sys.path.insert(0, {package_parent!r})\n"
        f"{tail}"
        f"from {module} import main\n"
        "sys.exit(main())\n"
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2):
        sys.stderr.write("usage: python -m portside.runtime.launcher DEST [MODULE]\n")
        return 2
    import sysconfig

    import portside

    parent = os.path.dirname(os.path.dirname(os.path.abspath(portside.__file__)))
    dest = args[0]
    module = args[1] if len(args) == 2 else "portside.runtime.cli"
    tmp = dest + ".tmp"
    with open(tmp, "w") as f:
        f.write(launcher_text(sys.executable, parent, module, sysconfig.get_paths()["purelib"]))
    os.chmod(tmp, 0o755)
    os.replace(tmp, dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
