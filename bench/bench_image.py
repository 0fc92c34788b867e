"""The image store: layer apply vs GNU tar, gzip decompression, save/load vs docker.

Three benchmarks, everything on tmpfs (``/dev/shm``), removed afterwards:

- ``image_layer_apply``: ``apply_layer`` (which also computes the diffID) of a generated
  ~200 MB layer of ~20k entries vs ``tar -xf``; then the same layer gzip-compressed vs
  ``tar -xzf`` (a second JSON line, ``image_layer_apply_gzip``). Runs are capped (each
  one writes 200 MB): between ``LAYER_RUNS`` bounds whatever ``--runs`` says.
- ``image_gunzip``: the gzip layer decompressed the way ``layer.py`` does it (stdlib
  zlib, streaming) vs python-isal if importable (not a dependency) and ``gzip -dc``.
- ``image_save_load``: ``archive.save`` + ``archive.load`` of the busybox image into a
  fresh store vs ``docker save | docker load`` where a Docker engine answers.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

from bench.harness import BenchmarkError, Command, compare
from portside.testing import unique_id

__all__ = [
    "LayerFiles",
    "bench_image_gunzip",
    "bench_image_layer_apply",
    "bench_image_save_load",
    "docker_roundtrip_argv",
    "generate_tree",
    "gunzip_argv",
    "layer_runs",
    "tar_extract_argv",
]

SHM = "/dev/shm"
APPLY_GOAL_RATIO = 1.5  # the goal: within 1.5x of GNU tar, digest included
LAYER_RUNS = (5, 7)  # min and max measured runs of the 200 MB benchmarks
LAYER_WARMUP_MAX = 1
# The generated tree: ~20k entries, ~200 MB.
SMALL_FILES = 19_600
SMALL_MAX = 8 << 10  # sizes uniform in 0..8 KiB: ~80 MB in all
LARGE_FILES = 40
LARGE_SIZE = 3 << 20  # 120 MB in all
DIRS = 200
SYMLINKS = 300


def tar_extract_argv(archive: str, dest: str, *, gzip: bool = False) -> list[str]:
    return ["tar", "-xzf" if gzip else "-xf", archive, "-C", dest]


def gunzip_argv(archive: str) -> list[str]:
    return ["gzip", "-dc", archive]


def docker_roundtrip_argv(ref: str) -> list[str]:
    return ["bash", "-c", f"set -o pipefail; docker save {ref} | docker load"]


def layer_runs(runs: int, warmup: int) -> tuple[int, int]:
    """``(runs, warmup)`` for a 200 MB benchmark: runs within ``LAYER_RUNS``, warmup <= 1."""
    low, high = LAYER_RUNS
    return max(low, min(runs, high)), min(warmup, LAYER_WARMUP_MAX)


def _pool(rng: random.Random, size: int) -> bytes:
    """Half random bytes, half text: compresses about 2:1, like real layers."""
    words = [b"lib", b"usr", b"share", b"config", b"value", b"0x1f", b"\n", b"= ", b"the "]
    text = b"".join(rng.choice(words) for _ in range(size // 8))[: size // 2]
    return rng.randbytes(size - len(text)) + text


def generate_tree(
    root: str,
    *,
    small_files: int = SMALL_FILES,
    small_max: int = SMALL_MAX,
    large_files: int = LARGE_FILES,
    large_size: int = LARGE_SIZE,
    dirs: int = DIRS,
    symlinks: int = SYMLINKS,
    seed: int = 3,
) -> dict[str, int]:
    """Fill ``root`` (created) with a deterministic tree: small files spread over
    ``dirs`` nested directories, large files, relative and absolute symlinks.
    Returns ``{"entries", "bytes"}`` (directories and symlinks count as entries)."""
    rng = random.Random(seed)
    pool = _pool(rng, max(4 << 20, small_max * 2, large_size))
    os.makedirs(root)
    paths = []
    for i in range(dirs):
        parent = paths[rng.randrange(len(paths))] if paths and i % 4 else root
        path = os.path.join(parent, f"d{i:03d}")
        os.mkdir(path)
        paths.append(path)
    dir_list = paths or [root]
    total = 0
    files = []
    for i in range(small_files + large_files):
        size = large_size if i >= small_files else rng.randrange(small_max + 1)
        off = rng.randrange(len(pool) - size + 1)
        name = os.path.join(dir_list[i % len(dir_list)], f"f{i:05d}.dat")
        with open(name, "wb") as f:
            f.write(pool[off : off + size])
        os.chmod(name, 0o755 if i % 10 == 0 else 0o644)
        files.append(name)
        total += size
    for i in range(symlinks):
        target = files[rng.randrange(len(files))]
        link = os.path.join(dir_list[i % len(dir_list)], f"l{i:04d}")
        # absolute targets are normal in images (and never followed on the host)
        rel = os.path.relpath(target, os.path.dirname(link))
        os.symlink("/" + os.path.relpath(target, root) if i % 2 else rel, link)
    _fix_mtimes(root)  # the same layer bytes (and diffID) every time
    return {"entries": len(paths) + len(files) + symlinks, "bytes": total}


def _fix_mtimes(root: str, mtime: int = 1_700_000_000) -> None:
    for top, dirs, files in os.walk(root, topdown=False):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(top, d))]:
            os.utime(os.path.join(top, name), (mtime, mtime), follow_symlinks=False)
        os.utime(top, (mtime, mtime))


class LayerFiles:
    """A generated layer on tmpfs, plain and gzip, made once; :meth:`close` removes it."""

    def __init__(self, base: str | None = None, **tree: int) -> None:
        self.dir = tempfile.mkdtemp(prefix="bench-image-", dir=base or SHM)
        self.tar = os.path.join(self.dir, "layer.tar")
        self.gz = os.path.join(self.dir, "layer.tar.gz")
        self.tree = tree
        self.stats: dict[str, Any] = {}

    def make(self, *, gzip: bool = True) -> LayerFiles:
        from portside.image.layer_make import make_layer

        src = os.path.join(self.dir, "tree")
        self.stats = dict(generate_tree(src, **self.tree))
        try:
            with open(self.tar, "wb") as f:
                self.stats["diff_id"], _, self.stats["tar_bytes"] = make_layer(src, f)
            if gzip:
                with open(self.gz, "wb") as f:
                    _, _, self.stats["gzip_bytes"] = make_layer(src, f, compression="gzip")
        finally:
            shutil.rmtree(src, ignore_errors=True)
        return self

    def dest(self, name: str) -> str:
        return os.path.join(self.dir, f"dest-{name}")

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def _layer(*, gzip: bool = True) -> Iterator[LayerFiles]:
    files = LayerFiles()
    try:
        yield files.make(gzip=gzip)
    finally:
        files.close()


# --- image_layer_apply -----------------------------------------------------------------


def _apply_commands(layer: LayerFiles, archive: str, gzip: bool) -> tuple[Command, Command]:
    """Ours (``apply_layer``, dest made by it) and GNU tar (dest made in setup)."""
    from portside.image.layer import apply_layer

    ours_dest, tar_dest = layer.dest("ours"), layer.dest("tar")
    expected = layer.stats["diff_id"]

    def ours() -> None:
        with open(archive, "rb") as f:
            result = apply_layer(f, ours_dest)
        if result.diff_id != expected:
            raise BenchmarkError(f"diffID {result.diff_id}, expected {expected}")

    def tar_setup() -> None:
        os.mkdir(tar_dest)

    return (
        Command("portside apply_layer", ours, teardown=_remover(ours_dest)),
        Command(
            "tar -xzf" if gzip else "tar -xf",
            tar_extract_argv(archive, tar_dest, gzip=gzip),
            setup=tar_setup,
            teardown=_remover(tar_dest),
        ),
    )


def _remover(path: str) -> Callable[[], None]:
    def remove() -> None:
        shutil.rmtree(path, ignore_errors=True)

    return remove


def bench_image_layer_apply(*, runs: int, warmup: int, out: str | None = None) -> dict[str, Any]:
    """Apply a ~200 MB layer of ~20k entries vs GNU tar, plain and gzip (goal: <= 1.5x tar)."""
    runs, warmup = layer_runs(runs, warmup)
    results: dict[str, Any] = {}
    with _layer() as layer:
        for name, archive, gzip in (
            ("image_layer_apply", layer.tar, False),
            ("image_layer_apply_gzip", layer.gz, True),
        ):
            ours, tar = _apply_commands(layer, archive, gzip)

            def facts() -> dict[str, Any]:
                return {
                    "layer": dict(layer.stats),
                    "goal": f"ratio to tar <= {APPLY_GOAL_RATIO}, diffID computed (tar: none)",
                    "tmpfs": SHM,
                }

            results[name] = compare(
                name, ours, [tar], runs=runs, warmup=warmup, out=out, extra=facts
            )
    return results


# --- image_gunzip ----------------------------------------------------------------------


class _Recorded:
    """A callable that records its own duration (for MB/s in ``extra``)."""

    def __init__(self, func: Callable[[], int]) -> None:
        self.func = func
        self.samples: list[int] = []
        self.out_bytes = 0

    def __call__(self) -> None:
        start = time.perf_counter_ns()
        self.out_bytes = self.func()
        self.samples.append(time.perf_counter_ns() - start)

    def mb_per_s(self, runs: int) -> float | None:
        taken = sorted(self.samples[-runs:])
        if not taken:
            return None
        median_s = (
            taken[len(taken) // 2] / 1e9
            if len(taken) % 2
            else ((taken[len(taken) // 2 - 1] + taken[len(taken) // 2]) / 2e9)
        )
        return round(self.out_bytes / 1e6 / median_s, 1)


class _ModuleCommand(Command):
    """A callable peer that is ``available`` only when ``module`` is importable."""

    def __init__(self, name: str, func: Callable[[], None], module: str) -> None:
        super().__init__(name, func)
        self.module = module

    def available(self) -> bool:
        import importlib.util

        return importlib.util.find_spec(self.module) is not None


def _stdlib_gunzip(path: str) -> int:
    """Decompress ``path`` as ``layer.py`` does (``tarstream._gunzip``); bytes out."""
    from portside.image.tarstream import CHUNK, _gunzip

    with open(path, "rb") as f:
        return sum(len(chunk) for chunk in _gunzip(f, f.read(CHUNK)))


def _isal_gunzip(path: str) -> int:
    """The same streaming loop with python-isal's zlib (one gzip member)."""
    from isal import isal_zlib  # type: ignore[import-not-found]

    from portside.image.tarstream import CHUNK

    d = isal_zlib.decompressobj(31)
    total = 0
    with open(path, "rb") as f:
        while raw := f.read(CHUNK):
            for off in range(0, len(raw), 64 << 10):
                pending = raw[off : off + (64 << 10)]
                while pending:
                    total += len(d.decompress(pending, CHUNK))
                    pending = d.unconsumed_tail
        total += len(d.flush())
    return total


def bench_image_gunzip(*, runs: int, warmup: int, out: str | None = None) -> dict[str, Any]:
    """Gunzip the ~200 MB layer: stdlib zlib streaming (as layer.py) vs python-isal, gzip -dc."""
    runs, warmup = layer_runs(runs, warmup)
    with _layer() as layer:
        zlib_run = _Recorded(lambda: _stdlib_gunzip(layer.gz))
        isal_run = _Recorded(lambda: _isal_gunzip(layer.gz))
        ours = Command("stdlib zlib (streaming)", zlib_run)
        peers = [
            _ModuleCommand("python-isal", isal_run, "isal"),
            Command("gzip -dc", gunzip_argv(layer.gz)),
        ]

        def speeds() -> dict[str, Any]:
            mb_s = {"stdlib zlib": zlib_run.mb_per_s(runs)}
            if isal_run.samples:
                mb_s["python-isal"] = isal_run.mb_per_s(runs)
            return {"layer": dict(layer.stats), "mb_per_s_uncompressed": mb_s}

        return compare("image_gunzip", ours, peers, runs=runs, warmup=warmup, out=out, extra=speeds)


# --- image_save_load -------------------------------------------------------------------


def _docker_reason() -> str | None:
    """Why there is no Docker engine to compare with, or None when ``docker info`` works."""
    if shutil.which("docker") is None:
        return "docker: not installed"
    proc = subprocess.run(["docker", "info"], capture_output=True, check=False)
    if proc.returncode != 0:
        lines = proc.stderr.decode(errors="replace").strip().splitlines() or ["failed"]
        return f"docker info: {lines[-1][:200]}"
    return None


class _DockerRoundTrip:
    """``docker save REF | docker load``; the image is loaded into Docker (from our
    archive) at the first run, untimed, and removed by :meth:`close`."""

    def __init__(self, archive: str) -> None:
        self.archive = archive
        self.ref = f"portside-bench/busybox:{unique_id('t')}"
        self.loaded = False
        self.command = Command("docker save | docker load", self, setup=self.setup)

    def setup(self) -> None:
        if self.loaded:
            return
        reason = _docker_reason()
        if reason is not None:
            raise BenchmarkError(reason)
        with open(self.archive, "rb") as f:
            subprocess.run(["docker", "load"], stdin=f, capture_output=True, check=True)
        self.loaded = True  # tagged busybox:latest by our archive: retag for isolation
        subprocess.run(["docker", "tag", "busybox:latest", self.ref], check=True)

    def __call__(self) -> None:
        proc = subprocess.run(docker_roundtrip_argv(self.ref), capture_output=True, check=False)
        if proc.returncode != 0:
            raise BenchmarkError(f"docker save | load: {proc.stderr.decode()[-300:]}")

    def close(self) -> None:
        if self.loaded:
            subprocess.run(["docker", "rmi", self.ref], capture_output=True, check=False)


class _SaveLoad:
    """``archive.save`` of the busybox image, then ``archive.load`` into a fresh store."""

    def __init__(self, work: str) -> None:
        from portside.image.base import make_busybox_image
        from portside.image.content import ContentStore
        from portside.image.store import ImageStore

        self.work = work
        self.content = ContentStore(os.path.join(work, "src", "content"))
        self.store = ImageStore(os.path.join(work, "src", "images"), self.content)
        self.image = make_busybox_image(self.content, self.store)
        self.archive = os.path.join(work, "busybox.tar")
        self.fresh = os.path.join(work, "fresh")
        self.command = Command("portside save + load", self, teardown=self.teardown)

    def save(self, path: str) -> None:
        from portside.image.archive import save

        with open(path, "wb") as f:
            save(self.store, self.content, ["busybox:latest"], f)

    def __call__(self) -> None:
        from portside.image.archive import load
        from portside.image.content import ContentStore
        from portside.image.store import ImageStore

        self.save(self.archive)
        content = ContentStore(os.path.join(self.fresh, "content"))
        store = ImageStore(os.path.join(self.fresh, "images"), content)
        with open(self.archive, "rb") as f:
            loaded = load(store, content, f)
        if loaded != ["busybox:latest"]:
            raise BenchmarkError(f"load returned {loaded}")

    def teardown(self) -> None:
        shutil.rmtree(self.fresh, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.archive)


def bench_image_save_load(*, runs: int, warmup: int, out: str | None = None) -> dict[str, Any]:
    """Save + load of the busybox image into a fresh store vs `docker save | docker load`."""
    work = tempfile.mkdtemp(prefix="bench-image-", dir=SHM)
    docker: _DockerRoundTrip | None = None
    try:
        ours = _SaveLoad(work)
        docker_archive = os.path.join(work, "for-docker.tar")
        ours.save(docker_archive)
        docker = _DockerRoundTrip(docker_archive)
        size = os.path.getsize(docker_archive)

        def facts() -> dict[str, Any]:
            return {"archive_bytes": size, "image": ours.image.id}

        return compare(
            "image_save_load",
            ours.command,
            [docker.command],
            runs=runs,
            warmup=warmup,
            out=out,
            extra=facts,
        )
    finally:
        if docker is not None:
            docker.close()
        shutil.rmtree(work, ignore_errors=True)
