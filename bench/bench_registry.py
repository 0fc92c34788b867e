"""The registry server: ours vs Debian's docker-registry, skopeo push and pull on loopback.

The images of ``bench_distribution`` (made once into an OCI layout): **large**, 3 layers
of ~100 MB of seeded random bytes, and **small**, 200 layers of ~10 KB. For each, in one
run (ours and docker-registry alternately, see bench/README.md):

* ``registry_push_<image>``: ``skopeo copy --preserve-digests oci:LAYOUT:TAG
  docker://…`` to a fresh server (started in the untimed setup: every blob is uploaded);
  ``portside registry serve --auth none`` (SQLite, filesystem under /var/tmp) vs
  ``docker-registry`` (filesystem under /var/tmp). The teardown reads the server's
  resident set before stopping it: ``rss_mib`` gives, per tool, its median at start
  (after one ``/v2/``) and its peak (VmHWM) over the push: memory flat in the blob size
  means the large push peaks no higher than the small one.
* ``registry_pull_<image>``: ``skopeo copy docker://… oci:DIR`` (a fresh directory each
  run) from a server holding the image.

Each line adds ``mb_per_s`` (compressed bytes moved / median) and ``per_blob_ms``
(median / blobs) per tool. Run: ``python -m bench.harness registry --runs 5 --warmup 1``
(about 3 minutes; no root needed); one case alone with ``registry_push_large`` etc.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

from bench.bench_distribution import Image, Recorded, make_images
from bench.harness import BenchmarkError, Command, compare
from portside.testing.registry import DockerRegistry, OCILayout, registry_unavailable
from portside.testing.registryserver import RegistryServer, peak_rss_kib

__all__ = ["run"]

RUNS = {"large": (3, 5), "small": (3, 5)}  # min and max measured runs
WARMUP_MAX = 1
WORK_BASE = "/var/tmp"  # on disk, as a registry's storage would be
GOAL = "throughput >= docker-registry's; per-blob time <= docker-registry's; memory flat"
OURS = "portside registry"
THEIRS = "docker-registry"


def _skopeo(*args: str) -> None:
    proc = subprocess.run(["skopeo", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BenchmarkError(f"skopeo {args[0]}: exited {proc.returncode}: {proc.stderr[-400:]}")


def _rss_kib(pid: int, field: str = "VmRSS:") -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Server:
    """Ours or docker-registry, started and stopped by :meth:`setup`/:meth:`teardown`
    (a fresh one per run) or kept for a whole case; records its memory."""

    def __init__(self, kind: str, work: str) -> None:
        self.kind = kind
        self.work = work
        self.current: RegistryServer | DockerRegistry | None = None
        self.start_kib: list[int] = []
        self.peak_kib: list[int] = []

    @property
    def host(self) -> str:
        assert self.current is not None
        return self.current.host

    @property
    def pid(self) -> int:
        assert self.current is not None and self.current.proc is not None
        return self.current.proc.pid

    def setup(self) -> None:
        if self.kind == OURS:
            server: Any = RegistryServer(self.work, auth="none")
        else:
            server = DockerRegistry(self.work)
        self.current = server.__enter__()
        self.current.request("GET", "/v2/")
        self.start_kib.append(_rss_kib(self.pid))

    def teardown(self) -> None:
        if self.current is None:
            return
        self.peak_kib.append(peak_rss_kib(self.pid))
        if isinstance(self.current, RegistryServer):
            self.current.close()
        else:
            self.current.stop()
        self.current = None

    def memory(self, runs: int) -> dict[str, float]:
        def mib(values: list[int]) -> float:
            return round(statistics.median(values[-runs:]) / 1024, 1) if values else 0.0

        return {"start": mib(self.start_kib), "peak": mib(self.peak_kib)}


def _rates(
    image: Image, recorded: dict[str, Recorded], runs: int, servers: dict[str, Server] | None
) -> dict[str, Any]:
    mb_s, per_blob = {}, {}
    for name, rec in recorded.items():
        median = rec.median_s(runs)
        if median:
            mb_s[name] = round(image.bytes / 1e6 / median, 1)
            per_blob[name] = round(median * 1e3 / image.blobs, 2)
    extra: dict[str, Any] = {
        "image": image.facts(),
        "mb_per_s": mb_s,
        "per_blob_ms": per_blob,
        "goal": GOAL,
        "client": "skopeo copy --preserve-digests, 127.0.0.1, storage on disk",
    }
    if servers:
        extra["rss_mib"] = {name: s.memory(runs) for name, s in servers.items()}
    return extra


def push_case(
    image: Image, layout: OCILayout, work: str, *, runs: int, warmup: int, out: str | None
) -> dict[str, Any]:
    """skopeo push to a fresh server of each kind per run."""
    servers = {OURS: Server(OURS, work), THEIRS: Server(THEIRS, work)}

    def pusher(server: Server) -> Recorded:
        def push() -> None:
            _skopeo(
                "copy",
                "-q",
                "--preserve-digests",
                "--dest-tls-verify=false",
                f"oci:{layout.path}:{image.tag}",
                f"docker://{server.host}/bench/{image.key}:{image.tag}",
            )

        return Recorded(push)

    recorded = {name: pusher(s) for name, s in servers.items()}
    commands = {
        name: Command(name, recorded[name], servers[name].setup, servers[name].teardown)
        for name in servers
    }
    return compare(
        f"registry_push_{image.key}",
        commands[OURS],
        [commands[THEIRS]],
        runs=runs,
        warmup=warmup,
        out=out,
        extra=lambda: _rates(image, recorded, runs, servers),
    )


def pull_case(
    image: Image, servers: dict[str, Server], work: str, *, runs: int, warmup: int, out: str | None
) -> dict[str, Any]:
    """skopeo pull into a fresh OCI directory from each server (holding the image)."""
    recorded = {}
    commands = {}
    for name, server in servers.items():
        dest = os.path.join(work, f"pull-{image.key}-{name.split()[0]}")

        def pull(server: Server = server, dest: str = dest) -> None:
            _skopeo(
                "copy",
                "-q",
                "--preserve-digests",
                "--src-tls-verify=false",
                f"docker://{server.host}/bench/{image.key}:{image.tag}",
                f"oci:{dest}:{image.tag}",
            )

        recorded[name] = Recorded(pull)
        commands[name] = Command(
            name, recorded[name], lambda dest=dest: shutil.rmtree(dest, ignore_errors=True)
        )
    return compare(
        f"registry_pull_{image.key}",
        commands[OURS],
        [commands[THEIRS]],
        runs=runs,
        warmup=warmup,
        out=out,
        extra=lambda: _rates(image, recorded, runs, None),
    )


@contextlib.contextmanager
def filled(work: str, layout: OCILayout, images: dict[str, Image]) -> Iterator[dict[str, Server]]:
    """One server of each kind holding every image (for the pulls)."""
    servers = {OURS: Server(OURS, work), THEIRS: Server(THEIRS, work)}
    try:
        for server in servers.values():
            server.setup()
            for image in images.values():
                _skopeo(
                    "copy",
                    "-q",
                    "--preserve-digests",
                    "--dest-tls-verify=false",
                    f"oci:{layout.path}:{image.tag}",
                    f"docker://{server.host}/bench/{image.key}:{image.tag}",
                )
        yield servers
    finally:
        for server in servers.values():
            server.teardown()


CASES = (("push", "large"), ("push", "small"), ("pull", "large"), ("pull", "small"))


def run_cases(
    cases: Sequence[tuple[str, str]], *, runs: int, warmup: int, out: str | None = None
) -> list[dict[str, Any]]:
    reason = registry_unavailable()
    if reason is not None:
        raise BenchmarkError(reason)
    if shutil.which("skopeo") is None:
        raise BenchmarkError("needs skopeo (the client of every case)")
    warmup = min(warmup, WARMUP_MAX)
    work = tempfile.mkdtemp(prefix="bench-registry-", dir=WORK_BASE)
    results = []
    try:
        layout = OCILayout(os.path.join(work, "layout"))
        images = {k: v for k, v in make_images(layout).items() if k != "warm"}
        for kind, key in cases:
            if kind != "push":
                continue
            low, high = RUNS[key]
            n = max(low, min(runs, high))
            results.append(push_case(images[key], layout, work, runs=n, warmup=warmup, out=out))
        pulls = [key for kind, key in cases if kind == "pull"]
        if pulls:
            with filled(work, layout, {k: images[k] for k in pulls}) as servers:
                for key in pulls:
                    low, high = RUNS[key]
                    n = max(low, min(runs, high))
                    results.append(
                        pull_case(images[key], servers, work, runs=n, warmup=warmup, out=out)
                    )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def run(*, runs: int, warmup: int, out: str | None = None) -> list[dict[str, Any]]:
    """Push and pull of the large and the small image, ours vs docker-registry (skopeo)."""
    return run_cases(CASES, runs=runs, warmup=warmup, out=out)


def bench_registry_push_large(*, runs: int, warmup: int, out: str | None = None) -> None:
    """Push of the 3-layer ~315 MB image only (throughput, memory), ours vs docker-registry."""
    run_cases([("push", "large")], runs=runs, warmup=warmup, out=out)


def bench_registry_push_small(*, runs: int, warmup: int, out: str | None = None) -> None:
    """Push of the 200-layer image only (per-blob overhead), ours vs docker-registry."""
    run_cases([("push", "small")], runs=runs, warmup=warmup, out=out)


def bench_registry_pull(*, runs: int, warmup: int, out: str | None = None) -> None:
    """Pull of both images only, ours vs docker-registry."""
    run_cases([c for c in CASES if c[0] == "pull"], runs=runs, warmup=warmup, out=out)
