"""Pull and push against docker-registry on loopback: Portside (CLI + daemon) vs skopeo, podman.

Two images, made once into an OCI layout (``portside.testing.registry.OCILayout``) and
loaded into a Portside daemon with ``portside load``:

* **large**: 3 layers of ~100 MB of seeded random bytes (incompressible: gzip level 1
  leaves them at their size), 4 files each;
* **small**: 200 layers of one ~10 KB random file each.

For each image, in one run (ours and the peers alternately, see bench/README.md):

* ``distribution_push_<image>``: ``portside push`` (the CLI, through the daemon) vs
  ``skopeo copy --preserve-digests oci:LAYOUT:TAG docker://…``, each run to a fresh
  ``docker-registry`` (started in the untimed setup), so every blob is uploaded;
* ``distribution_pull_<image>``: ``portside pull`` into a fresh daemon (started, and
  warmed by a one-blob pull, in the setup: nothing of the image is there) vs
  ``skopeo copy docker://… oci:DIR`` (blobs only, no unpacking) and ``podman pull``
  (blobs fetched and unpacked into its overlay storage, like ours).

Besides the harness's median/p10/p90 and ratios, each line carries ``mb_per_s``
(compressed bytes moved / median) and ``per_blob_ms`` (median / blobs) per tool.
Run as root: ``python -m bench.harness distribution --runs 5 --warmup 1``; one case
alone with ``distribution_pull_small`` (``_pull_large``, ``_pull``, ``_push``); set
``BENCH_DISTRIBUTION_PEERS=skopeo`` to leave podman out.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from bench.harness import BenchmarkError, Command, compare
from portside.testing.registry import DockerRegistry, OCILayout, layer_tar, registry_unavailable

__all__ = ["run"]

LARGE_LAYERS = 3
LARGE_FILES = 4  # per layer
LARGE_FILE_BYTES = 25 << 20
SMALL_LAYERS = 200
SMALL_FILE_BYTES = 10 << 10
RUNS = {"large": (3, 5), "small": (5, 10)}  # min and max measured runs
WARMUP_MAX = 1
WORK_BASE = "/var/tmp"  # disk, like the daemon's data root under /tmp
GOAL = "throughput >= skopeo's; per-blob time <= skopeo's"
#: peers to run (comma-separated), e.g. "skopeo" to leave podman out while iterating
PEERS_ENV = "BENCH_DISTRIBUTION_PEERS"


def _wanted(peer: str) -> bool:
    chosen = os.environ.get(PEERS_ENV)
    return chosen is None or peer in chosen.split(",")


def portside_cli() -> list[str]:
    beside = os.path.join(sys.prefix, "bin", "portside")
    return [beside] if os.path.exists(beside) else [sys.executable, "-m", "portside.cli.main"]


def _check(argv: list[str], env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BenchmarkError(
            f"{' '.join(argv[:3])}...: exited {proc.returncode}: {proc.stderr.strip()[-400:]}"
        )
    return proc.stdout


# --- the images ----------------------------------------------------------------------


class Image:
    """One benchmark image in the layout: its tag, blob count and compressed bytes."""

    def __init__(self, key: str, layout: OCILayout, desc: dict[str, Any]) -> None:
        self.key = key
        self.tag = key
        self.name = f"bench/{key}:{key}"
        manifest = json.loads(layout.read(desc["digest"]))
        self.layers = len(manifest["layers"])
        self.blobs = self.layers + 1  # and the config
        self.bytes = manifest["config"]["size"] + sum(la["size"] for la in manifest["layers"])
        self.digest = desc["digest"]

    def facts(self) -> dict[str, Any]:
        return {
            "layers": self.layers,
            "blobs": self.blobs,
            "bytes": self.bytes,
            "manifest": self.digest,
        }


def make_images(layout: OCILayout, seed: int = 7) -> dict[str, Image]:
    """The large and the small image, and a one-layer ``warm`` image, in ``layout``."""
    rng = random.Random(seed)
    large = [
        layer_tar(
            {f"data/{i}-{j}.bin": rng.randbytes(LARGE_FILE_BYTES) for j in range(LARGE_FILES)}
        )
        for i in range(LARGE_LAYERS)
    ]
    small = [
        layer_tar({f"small/{i}.bin": rng.randbytes(SMALL_FILE_BYTES)}) for i in range(SMALL_LAYERS)
    ]
    images = {}
    warm = [layer_tar({"warm": b"warm"})]  # no layer in common with the others
    # level 0 for random data: deflate's stored blocks, which zlib's level 1 would
    # emit for it too, at a tenth of the time
    for key, layers, level in (("large", large, 0), ("small", small, 1), ("warm", warm, 1)):
        desc = layout.image(layers, name=f"bench/{key}:{key}", level=level)
        images[key] = Image(key, layout, desc)
    return images


# --- fixtures around the runs ----------------------------------------------------------


class FreshRegistry:
    """A new ``docker-registry`` per run (setup), stopped and removed in teardown."""

    def __init__(self, work: str) -> None:
        self.work = work
        self.current: DockerRegistry | None = None

    @property
    def host(self) -> str:
        assert self.current is not None
        return self.current.host

    def setup(self) -> None:
        self.current = DockerRegistry(self.work).__enter__()

    def teardown(self) -> None:
        if self.current is not None:
            self.current.stop()
            self.current = None


class Recorded:
    """A timed callable that also keeps its own durations, for MB/s in ``extra``."""

    def __init__(self, func: Callable[[], None]) -> None:
        self.func = func
        self.samples: list[int] = []

    def __call__(self) -> None:
        start = time.perf_counter_ns()
        self.func()
        self.samples.append(time.perf_counter_ns() - start)

    def median_s(self, runs: int) -> float | None:
        taken = sorted(self.samples[-runs:])
        if not taken:
            return None
        mid = len(taken) // 2
        ns = taken[mid] if len(taken) % 2 else (taken[mid - 1] + taken[mid]) / 2
        return ns / 1e9


def _rates(image: Image, recorded: dict[str, Recorded], runs: int) -> dict[str, Any]:
    mb_s, per_blob = {}, {}
    for name, rec in recorded.items():
        median = rec.median_s(runs)
        if median:
            mb_s[name] = round(image.bytes / 1e6 / median, 1)
            per_blob[name] = round(median * 1e3 / image.blobs, 2)
    return {
        "image": image.facts(),
        "mb_per_s": mb_s,
        "per_blob_ms": per_blob,
        "goal": GOAL,
        "registry": "docker-registry 2.8 on 127.0.0.1, filesystem storage on disk",
    }


# --- push ----------------------------------------------------------------------------


def push_benchmark(
    image: Image,
    daemon: Any,
    layout: OCILayout,
    work: str,
    *,
    runs: int,
    warmup: int,
    out: str | None,
) -> dict[str, Any]:
    """``portside push`` vs ``skopeo copy oci:… docker://…``, a fresh registry each run."""
    ours_reg, skopeo_reg = FreshRegistry(work), FreshRegistry(work)

    def ref(reg: FreshRegistry) -> str:
        return f"{reg.host}/bench/{image.key}:{image.tag}"

    def ours_setup() -> None:
        ours_reg.setup()
        _check([*portside_cli(), "tag", image.name, ref(ours_reg)], daemon.env())

    def ours_teardown() -> None:
        _check([*portside_cli(), "rmi", ref(ours_reg)], daemon.env())
        ours_reg.teardown()

    def ours_push() -> None:
        text = _check([*portside_cli(), "push", ref(ours_reg)], daemon.env())
        if f"digest: {image.digest}" not in text:
            raise BenchmarkError(f"portside push: digest {image.digest} not in: {text[-300:]}")

    def skopeo_push() -> None:
        _check(
            [
                "skopeo",
                "copy",
                "-q",
                "--preserve-digests",
                "--dest-tls-verify=false",
                f"oci:{layout.path}:{image.tag}",
                f"docker://{ref(skopeo_reg)}",
            ]
        )

    recorded = {"portside": Recorded(ours_push), "skopeo": Recorded(skopeo_push)}
    ours = Command("portside push", recorded["portside"], ours_setup, ours_teardown)
    peer = Command("skopeo copy", recorded["skopeo"], skopeo_reg.setup, skopeo_reg.teardown)
    if shutil.which("skopeo") is None:
        peer = Command("skopeo copy", ["skopeo"])  # reported absent: not installed
    return compare(
        f"distribution_push_{image.key}",
        ours,
        [peer],
        runs=runs,
        warmup=warmup,
        out=out,
        extra=lambda: _rates(image, recorded, runs),
    )


# --- pull ----------------------------------------------------------------------------


class FreshDaemon:
    """A new Portside daemon per run (setup), warmed by a one-layer pull, so that
    nothing of the image is in its stores; stopped and removed in teardown."""

    def __init__(self) -> None:
        self.stack: contextlib.ExitStack | None = None
        self.daemon: Any = None

    def setup(self, warm_ref: str) -> None:
        from portside.testing.daemon import running_daemon

        self.stack = contextlib.ExitStack()
        self.daemon = self.stack.enter_context(running_daemon(busybox=False))
        _check([*portside_cli(), "pull", "-q", warm_ref], self.daemon.env())

    def teardown(self) -> None:
        if self.stack is not None:
            self.stack.close()
        self.stack = self.daemon = None


class Podman:
    """podman on its own storage root; every pulled image removed between runs."""

    def __init__(self, work: str) -> None:
        self.dir = tempfile.mkdtemp(prefix="podman-", dir=work)
        self.run = tempfile.mkdtemp(prefix="pdm-", dir="/tmp")  # podman: <= 50 characters
        self.base = ["podman", "--root", f"{self.dir}/root", "--runroot", self.run]

    def clear(self) -> None:
        subprocess.run([*self.base, "rmi", "-af"], capture_output=True, check=False)

    def close(self) -> None:
        if shutil.which("podman"):
            subprocess.run([*self.base, "system", "reset", "-f"], capture_output=True, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(self.run, ignore_errors=True)


def pull_benchmark(
    image: Image, source: DockerRegistry, work: str, *, runs: int, warmup: int, out: str | None
) -> dict[str, Any]:
    """``portside pull`` into a fresh daemon vs ``skopeo copy docker://… oci:DIR``, podman."""
    ref = f"{source.host}/bench/{image.key}:{image.tag}"
    fresh = FreshDaemon()
    dest = os.path.join(work, f"skopeo-pull-{image.key}")
    podman = Podman(work)

    def ours_pull() -> None:
        text = _check([*portside_cli(), "pull", ref], fresh.daemon.env())
        if "Already exists" in text or f"Digest: {image.digest}" not in text:
            raise BenchmarkError(f"portside pull did not fetch everything: {text[-300:]}")

    def skopeo_pull() -> None:
        _check(
            [
                "skopeo",
                "copy",
                "-q",
                "--preserve-digests",
                "--src-tls-verify=false",
                f"docker://{ref}",
                f"oci:{dest}:{image.tag}",
            ]
        )

    def podman_pull() -> None:
        _check([*podman.base, "pull", "-q", "--tls-verify=false", ref])

    recorded = {
        "portside": Recorded(ours_pull),
        "skopeo": Recorded(skopeo_pull),
        "podman": Recorded(podman_pull),
    }
    warm = f"{source.host}/bench/warm:warm"
    ours = Command("portside pull", recorded["portside"], lambda: fresh.setup(warm), fresh.teardown)
    peers = [
        Command("skopeo copy", recorded["skopeo"], lambda: shutil.rmtree(dest, True))
        if shutil.which("skopeo")
        else Command("skopeo copy", ["skopeo"]),
        Command("podman pull", recorded["podman"], podman.clear)
        if shutil.which("podman")
        else Command("podman pull", ["podman"]),
    ]
    peers = [p for p in peers if _wanted(p.name.split()[0])]
    try:
        return compare(
            f"distribution_pull_{image.key}",
            ours,
            peers,
            runs=runs,
            warmup=warmup,
            out=out,
            extra=lambda: _rates(image, recorded, runs),
        )
    finally:
        fresh.teardown()
        podman.close()
        shutil.rmtree(dest, ignore_errors=True)


# --- the whole run -------------------------------------------------------------------


@contextlib.contextmanager
def prepared(
    work: str, *, load: bool = True
) -> Iterator[tuple[Any, OCILayout, dict[str, Image], DockerRegistry]]:
    """A daemon with the images loaded (None without ``load``: pulls do not need it),
    and a source registry holding them (skopeo)."""
    from portside.testing.daemon import running_daemon

    layout = OCILayout(os.path.join(work, "layout"))
    images = make_images(layout)
    with contextlib.ExitStack() as stack:
        daemon = None
        if load:
            archive = layout.archive(os.path.join(work, "images.tar"))
            daemon = stack.enter_context(running_daemon(busybox=False))
            _check([*portside_cli(), "load", "-q", "-i", archive], daemon.env())
            os.unlink(archive)
        source = stack.enter_context(DockerRegistry(work))
        for image in images.values():
            _check(
                [
                    "skopeo",
                    "copy",
                    "-q",
                    "--preserve-digests",
                    "--dest-tls-verify=false",
                    f"oci:{layout.path}:{image.tag}",
                    f"docker://{source.host}/bench/{image.key}:{image.tag}",
                ]
            )
        yield daemon, layout, images, source


#: every case, in the order a full run takes them
CASES = (("push", "large"), ("push", "small"), ("pull", "large"), ("pull", "small"))


def run_cases(
    cases: Sequence[tuple[str, str]], *, runs: int, warmup: int, out: str | None = None
) -> list[dict[str, Any]]:
    """Run the ``(push|pull, large|small)`` cases, sharing one set of images."""
    reason = registry_unavailable()
    if reason is not None:
        raise BenchmarkError(reason)
    if shutil.which("skopeo") is None:
        raise BenchmarkError("needs skopeo (it fills the source registry)")
    warmup = min(warmup, WARMUP_MAX)
    work = tempfile.mkdtemp(prefix="bench-distribution-", dir=WORK_BASE)
    results = []
    try:
        load = any(kind == "push" for kind, _ in cases)
        with prepared(work, load=load) as (daemon, layout, images, source):
            for kind, key in cases:
                low, high = RUNS[key]
                n = max(low, min(runs, high))
                if kind == "push":
                    result = push_benchmark(
                        images[key], daemon, layout, work, runs=n, warmup=warmup, out=out
                    )
                else:
                    result = pull_benchmark(
                        images[key], source, work, runs=n, warmup=warmup, out=out
                    )
                results.append(result)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def run(*, runs: int, warmup: int, out: str | None = None) -> list[dict[str, Any]]:
    """Push and pull of the large and the small image, ours vs skopeo (and podman)."""
    return run_cases(CASES, runs=runs, warmup=warmup, out=out)


def bench_distribution_pull_small(*, runs: int, warmup: int, out: str | None = None) -> None:
    """Pull of the 200-layer image only (per-blob overhead), ours vs skopeo, podman."""
    run_cases([("pull", "small")], runs=runs, warmup=warmup, out=out)


def bench_distribution_pull_large(*, runs: int, warmup: int, out: str | None = None) -> None:
    """Pull of the 3-layer ~315 MB image only (throughput), ours vs skopeo, podman."""
    run_cases([("pull", "large")], runs=runs, warmup=warmup, out=out)


def bench_distribution_pull(*, runs: int, warmup: int, out: str | None = None) -> None:
    """Pull of both images (no push), ours vs skopeo, podman."""
    run_cases([c for c in CASES if c[0] == "pull"], runs=runs, warmup=warmup, out=out)


def bench_distribution_push(*, runs: int, warmup: int, out: str | None = None) -> None:
    """Push of both images (no pull), ours vs skopeo."""
    run_cases([c for c in CASES if c[0] == "push"], runs=runs, warmup=warmup, out=out)
