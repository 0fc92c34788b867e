"""The CLI starts a fresh interpreter per command: what it imports stays small."""

from __future__ import annotations

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEAVY = ("typing", "dataclasses", "asyncio", "aiohttp", "subprocess", "inspect")
LAYERS = ("portside.engine", "portside.api", "portside.runtime", "portside.image")


def _modules_after(args: list[str], *, lean: bool = False) -> set[str]:
    """What importing and running the CLI with ``args`` loaded; ``lean``: started
    as the installed launcher starts it (``python -I -S``)."""
    code = (
        "import sys\n"
        f"sys.path.insert(0, {REPO!r})\n"
        "from portside.cli.main import run_cli\n"
        f"run_cli({args!r})\n"
        "loaded = sorted(sys.modules)\n"
        "import json\n"
        "sys.stdout.flush()\n"
        "sys.stderr.write('\\n' + json.dumps(loaded))\n"
    )
    flags = ["-I", "-S"] if lean else []
    result = subprocess.run(
        [sys.executable, *flags, "-c", code], capture_output=True, cwd=REPO, timeout=30, check=False
    )
    return set(json.loads(result.stderr.decode().rsplit("\n", 1)[-1]))


def _ours(modules: set[str], names: tuple[str, ...]) -> set[str]:
    return {m for m in modules if m in names or m.startswith(tuple(n + "." for n in names))}


def test_help_imports_almost_nothing() -> None:
    modules = _modules_after(["--help"])
    assert not _ours(modules, HEAVY + LAYERS + ("json", "socket", "ssl", "portside.client"))


def test_a_command_imports_only_the_client(tmp_path) -> None:
    modules = _modules_after(["-H", f"unix://{tmp_path}/none.sock", "ps"])
    assert "portside.client.http" in modules and "portside.cli.info" in modules
    assert not _ours(modules, HEAVY + LAYERS + ("ssl", "portside.cli.containers"))
    run = _modules_after(["-H", f"unix://{tmp_path}/none.sock", "run", "busybox"])
    assert not _ours(run, HEAVY + LAYERS + ("ssl",))


def test_daemon_and_tls_dispatch_lazily(monkeypatch) -> None:
    import types

    from portside.cli.main import run_cli

    calls: list[tuple[str, list[str]]] = []
    for name in ("portside.api.daemon", "portside.tls"):
        module = types.ModuleType(name)
        module.main = lambda argv, name=name: calls.append((name, argv)) or 7  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, name, module)
    assert run_cli(["daemon", "--data-root", "/x"]) == 7
    assert run_cli(["tls", "make", "--dir", "d"]) == 7
    assert calls == [
        ("portside.api.daemon", ["--data-root", "/x"]),
        ("portside.tls", ["make", "--dir", "d"]),
    ]


#: what ``run`` used to import and no longer needs (each cost it 1-8 ms of CPU): json
#: and re (with enum), socket, selectors, threading, contextlib, hashlib (OpenSSL)
RUN_SPARES = ("json", "re", "enum", "socket", "selectors", "threading", "contextlib", "hashlib")


def test_run_imports_nothing_that_costs_milliseconds(tmp_path) -> None:
    from portside.client.fakeserver import FakeDaemon

    cid = "ab" * 32

    def no_output(sock, _rec, _params):
        sock.close()

    with FakeDaemon(str(tmp_path)) as fake:
        fake.route("POST", "/containers/create", json_body={"Id": cid, "Warnings": []}, status=201)
        fake.route("POST", "/containers/{id}/attach", hijack=no_output)
        fake.route("POST", "/containers/{id}/start", status=204)
        fake.route("POST", "/containers/{id}/wait", json_body={"StatusCode": 0, "Error": None})
        modules = _modules_after(["-H", fake.host, "run", "--rm", "busybox", "true"], lean=True)
        assert [r.path.rsplit("/", 1)[-1] for r in fake.requests] == [
            "create", "attach", "wait", "start"
        ]  # fmt: skip
    assert "portside.client.http" in modules
    assert not _ours(modules, RUN_SPARES + HEAVY + LAYERS)
