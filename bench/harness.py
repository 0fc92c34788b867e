"""A small benchmark harness: time our command against its peers, one JSON line per benchmark.

``compare`` runs ours and every installed peer *alternately* (ours, peer1, peer2, ours,
...), so that drift of the machine (frequency scaling, caches, other load) falls on all of
them alike. Each run is timed with ``time.perf_counter_ns``: a subprocess for an argv
command, a direct call for a callable. ``setup`` and ``teardown`` run around every run,
outside the timing.

Benchmarks live in ``bench/bench_<name>.py``, each with a ``run(*, runs, warmup, out)``
function that calls :func:`compare`, or several ``bench_<name>(*, runs, warmup, out)``
functions, one benchmark each (see bench/README.md)::

    python -m bench.harness --list
    python -m bench.harness NAME [NAME...] [--runs 20] [--warmup 2] [--out results.jsonl]
"""

from __future__ import annotations

import datetime
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["BenchmarkError", "Command", "compare", "discover", "emit", "machine", "summarize"]

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
_PREFIX = "bench_"


class BenchmarkError(RuntimeError):
    """A benchmarked command failed, or ours is not available."""


class Command:
    """One thing to time: an argv run as a subprocess, or a callable called directly."""

    def __init__(
        self,
        name: str,
        argv: list[str] | Callable[[], None],
        setup: Callable[[], None] | None = None,
        teardown: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.setup = setup
        self.teardown = teardown

    def __repr__(self) -> str:
        return f"Command({self.name!r}, {self.argv!r})"

    def available(self) -> bool:
        """True for a callable, or when the argv's program is installed."""
        if callable(self.argv):
            return True
        return bool(self.argv) and shutil.which(self.argv[0]) is not None

    def run_once(self) -> int:
        """Run the command once (setup and teardown around it); the elapsed nanoseconds."""
        if self.setup is not None:
            self.setup()
        try:
            return self._timed()
        finally:
            if self.teardown is not None:
                self.teardown()

    def _timed(self) -> int:
        if callable(self.argv):
            start = time.perf_counter_ns()
            self.argv()
            return time.perf_counter_ns() - start
        start = time.perf_counter_ns()
        proc = subprocess.run(
            self.argv,
            check=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        elapsed = time.perf_counter_ns() - start
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()[-500:]
            raise BenchmarkError(f"{self.name}: {self.argv} exited {proc.returncode}: {err}")
        return elapsed


def _percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of sorted data, by linear interpolation between points."""
    if not ordered:
        raise ValueError("no data")
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summarize(name: str, samples_ns: Sequence[int]) -> dict[str, Any]:
    """``{"name", "median_ms", "p10_ms", "p90_ms"}`` of the samples (nanoseconds)."""
    ordered = sorted(ns / 1e6 for ns in samples_ns)
    return {
        "name": name,
        "median_ms": round(_percentile(ordered, 0.5), 3),
        "p10_ms": round(_percentile(ordered, 0.1), 3),
        "p90_ms": round(_percentile(ordered, 0.9), 3),
    }


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def _probe(peers: list[Command]) -> tuple[list[Command], dict[str, str]]:
    """The peers that are installed and pass one run, and why the others are absent."""
    present: list[Command] = []
    reasons: dict[str, str] = {}
    for peer in peers:
        if not peer.available():
            reasons[peer.name] = "not installed"
            continue
        try:
            peer.run_once()
        except BenchmarkError as exc:
            reasons[peer.name] = f"probe failed: {exc}"
            continue
        present.append(peer)
    return present, reasons


def compare(
    benchmark: str,
    ours: Command,
    peers: list[Command],
    *,
    runs: int = 20,
    warmup: int = 2,
    out: str | None = None,
    extra: Callable[[], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Time ``ours`` against each installed peer, alternately; print and return the result.

    Each peer is probed with one untimed run first: a peer whose program is not installed,
    or whose probe fails with :class:`BenchmarkError`, is listed under ``"absent"``, the
    reason under ``"absent_reasons"``. ``ratio`` is ours' median over the peer's: below 1
    means we are faster. ``extra``, called after the runs, returns more fields for the
    JSON line. With ``out``, the line is also appended to that file.
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0, got {runs} and {warmup}")
    if not ours.available():
        raise BenchmarkError(f"{benchmark}: our command {ours.name!r} is not available")
    present, absent_reasons = _probe(peers)
    lineup = [ours, *present]
    samples: list[list[int]] = [[] for _ in lineup]
    for i in range(warmup + runs):
        for cmd, taken in zip(lineup, samples, strict=True):
            elapsed = cmd.run_once()
            if i >= warmup:
                taken.append(elapsed)
    our_summary = summarize(ours.name, samples[0])
    peer_summaries: dict[str, dict[str, Any]] = {}
    for cmd, taken in zip(present, samples[1:], strict=True):
        summary = summarize(cmd.name, taken)
        peer_median = summary["median_ms"]
        ratio = our_summary["median_ms"] / peer_median if peer_median else None
        summary["ratio"] = round(ratio, 3) if ratio is not None else None
        peer_summaries[cmd.name] = summary
    result = {
        "benchmark": benchmark,
        "runs": runs,
        "ours": our_summary,
        "peers": peer_summaries,
        "absent": list(absent_reasons),
        "absent_reasons": absent_reasons,
        "machine": machine(),
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    if extra is not None:
        fields = extra()
        clash = sorted(set(fields) & set(result))
        if clash:
            raise ValueError(f"{benchmark}: extra fields {clash} clash with the standard ones")
        result.update(fields)
    return emit(result, out)


def emit(result: dict[str, Any], out: str | None = None) -> dict[str, Any]:
    """Print ``result`` as one JSON line (and append it to ``out``); ``result``."""
    line = json.dumps(result)
    print(line, flush=True)
    if out:
        with open(out, "a") as f:
            f.write(line + "\n")
    return result


def _catalog(directory: str | None = None) -> dict[str, tuple[str, str | None, str]]:
    """``{name: (module, function or None, first docstring line)}`` of ``directory``.

    Every ``bench_<module>.py`` is a benchmark named ``<module>``; each of its top-level
    functions ``bench_<name>`` is a benchmark named ``<name>`` too. Parsed, not imported.
    """
    import ast

    directory = directory or BENCH_DIR

    def first_line(node: ast.Module | ast.FunctionDef) -> str:
        doc = (ast.get_docstring(node) or "").strip()
        return doc.splitlines()[0] if doc else ""

    found: dict[str, tuple[str, str | None, str]] = {}
    for entry in sorted(os.listdir(directory)):
        if not (entry.startswith(_PREFIX) and entry.endswith(".py")):
            continue
        with open(os.path.join(directory, entry)) as f:
            tree = ast.parse(f.read())
        module = entry[len(_PREFIX) : -3]
        found[module] = (module, None, first_line(tree))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith(_PREFIX):
                name = node.name[len(_PREFIX) :]
                if name in found:
                    raise ValueError(f"{entry}: benchmark {name!r} is defined twice")
                found[name] = (module, node.name, first_line(node))
    return found


def discover(directory: str | None = None) -> dict[str, str]:
    """The benchmarks in ``directory`` (bench/): ``{name: first line of its docstring}``.

    A benchmark is a file ``bench_<name>.py``, or a function ``bench_<name>`` in one;
    docstrings are read without importing.
    """
    return {name: doc for name, (_, _, doc) in _catalog(directory).items()}


def run_benchmark(name: str, *, runs: int, warmup: int, out: str | None = None) -> None:
    """Run the benchmark ``name``: call its ``bench_<name>(runs=..., warmup=..., out=...)``.

    For a module name: its ``run`` function, or else each of its ``bench_*`` functions.
    """
    catalog = _catalog()
    module_name, function, _ = catalog[name]
    module = importlib.import_module(f"bench.{_PREFIX}{module_name}")
    if function is not None:
        funcs = [getattr(module, function)]
    elif hasattr(module, "run"):
        funcs = [module.run]
    else:
        funcs = [getattr(module, f) for m, f, _ in catalog.values() if m == name and f]
    for func in funcs:
        func(runs=runs, warmup=warmup, out=out)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.harness", description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmarks to run (see --list)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", help="also append the JSON lines to this file")
    args = parser.parse_args(argv)
    known = discover()
    if args.list or not args.names:
        for name, doc in known.items():
            print(f"{name}\t{doc}")
        return 0
    unknown = [n for n in args.names if n not in known]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)} (see --list)", file=sys.stderr)
        return 2
    for name in args.names:
        run_benchmark(name, runs=args.runs, warmup=args.warmup, out=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
