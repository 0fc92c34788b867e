"""``GET /containers/{id}/top``: the host's ``ps``, cut down to the container's
processes, as dockerd does it (moby ``daemon/top_unix.go``).

``ps <args> -q<pids>`` is run first (fast, only those processes); when ps refuses
that combination (``f`` and ``-q`` do not mix) it runs again without ``-q``. The
rows whose PID column is one of the container's stay; thread rows (``-`` in the
PID column, with ``m``) follow the process before them.
"""

from __future__ import annotations

from portside.errors import Internal, InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    #: run(argv) → (exit status, stdout, stderr)
    Runner = Callable[[Sequence[str]], tuple[int, bytes, bytes]]

__all__ = ["parse_ps_output", "top", "validate_ps_args"]

_ASCII_SPACE = "\t\n\f\r "


class PsFailed(Internal):
    """``ps`` could not run or refused its arguments (HTTP 500, as dockerd)."""


def validate_ps_args(ps_args: str) -> None:
    """dockerd refuses ``-o x=PID``-style renames of the PID column, except ``pid=``."""
    import re

    for key, value in re.findall(r"\s+([^\s]*)=\s*(PID[^\s]*)", ps_args):
        if key != "pid":
            raise InvalidArgument(f'specifying "{key}={value}" is not allowed')


def _fields(line: str) -> list[str]:
    """Split on ASCII whitespace only (Go's ``fieldsASCII``)."""
    out: list[str] = []
    word: list[str] = []
    for ch in line:
        if ch in _ASCII_SPACE:
            if word:
                out.append("".join(word))
                word = []
        else:
            word.append(ch)
    if word:
        out.append("".join(word))
    return out


def _row(titles: list[str], fields: list[str]) -> list[str]:
    """``fields`` fitted to the titles: the overhanging ones (a command's arguments)
    joined into the last column."""
    n = len(titles)
    return [*fields[: n - 1], " ".join(fields[n - 1 :])]


def parse_ps_output(output: str, pids: Sequence[int]) -> dict:
    """Docker's ``{"Titles", "Processes"}`` of the rows of ``output`` whose PID is in ``pids``."""
    lines = output.split("\n")
    titles = _fields(lines[0])
    if "PID" not in titles:
        raise PsFailed("Couldn't find PID field in ps output")
    index = titles.index("PID")
    wanted = set(pids)
    processes: list[list[str]] = []
    keep_threads = False
    for line in lines[1:]:
        fields = _fields(line)
        if not fields:
            continue
        if index >= len(fields):
            raise PsFailed(f"Unexpected ps output line {line!r}")
        if fields[index] == "-":
            if keep_threads:
                processes.append(_row(titles, fields))
            continue
        try:
            pid = int(fields[index])
        except ValueError:
            raise PsFailed(f"Unexpected pid '{fields[index]}'") from None
        keep_threads = pid in wanted
        if keep_threads:
            processes.append(_row(titles, fields))
    return {"Titles": titles, "Processes": processes}


def _run_ps(argv: Sequence[str]) -> tuple[int, bytes, bytes]:
    import subprocess

    try:
        done = subprocess.run(list(argv), capture_output=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PsFailed(f"ps: {exc}") from exc
    return done.returncode, done.stdout, done.stderr


def top(pids: list[int], ps_args: str = "-ef", *, run: Runner | None = None) -> dict:
    """``docker top``: ``ps ps_args`` on the host, rows of ``pids`` only. ``run`` runs
    a command (tests feed canned output); errors are dockerd's: InvalidArgument for
    a renamed PID column, PsFailed (500) when ps fails or shows no PID column."""
    ps_args = ps_args or "-ef"
    validate_ps_args(ps_args)
    runner = run or _run_ps
    args = [a for a in ps_args.split(" ") if a]
    code, out, err = runner(["ps", *args, "-q" + ",".join(str(p) for p in pids)])
    if code != 0:
        code, out, err = runner(["ps", *args])
        if code != 0:
            first = err.decode(errors="replace").split("\n", 1)[0]
            raise PsFailed(f"ps: {first or f'exit status {code}'}")
    return parse_ps_output(out.decode(errors="replace"), pids)
