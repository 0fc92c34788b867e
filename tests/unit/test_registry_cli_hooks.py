"""``portside registry webhook …`` (``portside.registry.cli_hooks``), run in-process
through ``portside.registry.cli.main`` on a fresh root."""

from __future__ import annotations

import io
from typing import Any

import pytest

from portside.registry.cli import main
from portside.registry.db import Database, sqlite_url
from portside.registry.delivery import Deliverer
from portside.registry.webhooks import Webhooks


def run(
    capsys: Any, root: str, *args: str, stdin: str = "", monkeypatch: Any = None
) -> tuple[int, str, str]:
    if monkeypatch is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(["webhook", *args, "--root", root])
    out, err = capsys.readouterr()
    return code, out, err


def test_add_ls_enable_disable_rm(tmp_path: Any, capsys: Any, monkeypatch: Any) -> None:
    root = str(tmp_path)
    code, out, err = run(
        capsys, root, "add", "--namespace", "acme", "--url", "https://ci.test/hook",
        "--event", "push", "--event", "tag",
    )  # fmt: skip
    assert code == 0, err
    hook_id, secret = out.split()
    assert "shown only this once" in err and len(secret) >= 32
    code, out, err = run(
        capsys, root, "add", "--repository", "acme/app", "--url", "http://10.0.0.5:8080/",
        "--secret-stdin", "--disabled", stdin="s3cret\n", monkeypatch=monkeypatch,
    )  # fmt: skip
    assert code == 0, err
    other_id = out.strip()
    db = Database(sqlite_url(root))
    try:
        hooks = Webhooks(db)
        first, second = hooks.get(int(hook_id)), hooks.get(int(other_id))
        assert first.scope_kind == "namespace" and first.scope == "acme"
        assert first.events == {"push", "tag"} and first.secret == secret and first.enabled
        assert second.scope == "acme/app" and second.secret == "s3cret" and not second.enabled
        assert second.events == {"push", "pull", "delete", "mount", "tag"}
        code, out, _ = run(capsys, root, "ls")
        lines = out.splitlines()
        assert lines[0].split()[:5] == ["ID", "SCOPE", "URL", "EVENTS", "STATE"]
        assert "namespace:acme" in lines[1] and "push,tag" in lines[1] and "enabled" in lines[1]
        assert "repository:acme/app" in lines[2] and "disabled" in lines[2]
        assert secret not in out
        _, out, _ = run(capsys, root, "ls", "--repository", "acme/app")
        assert len(out.splitlines()) == 2 and "acme/app" in out
        assert run(capsys, root, "enable", other_id)[0] == 0
        assert hooks.get(int(other_id)).enabled
        assert run(capsys, root, "disable", hook_id)[0] == 0
        assert not hooks.get(int(hook_id)).enabled
        assert run(capsys, root, "rm", hook_id)[0] == 0
        assert [h.id for h in hooks.hooks()] == [int(other_id)]
        code, _, err = run(capsys, root, "rm", hook_id)
        assert code == 1 and f"webhook {hook_id} not found" in err
    finally:
        db.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "--namespace", "acme", "--url", "ftp://x/"], "invalid webhook url"),
        (["add", "--repository", "Bad/Name", "--url", "http://x/"], "invalid repository name"),
        (["deliveries", "7"], "webhook 7 not found"),
    ],
)
def test_errors(tmp_path: Any, capsys: Any, args: list[str], message: str) -> None:
    code, _, err = run(capsys, str(tmp_path), *args)
    assert code == 1 and message in err and err.startswith("portside registry: ")


def test_usage_errors(tmp_path: Any, capsys: Any, monkeypatch: Any) -> None:
    with pytest.raises(SystemExit):  # a scope is required, and only one
        main(["webhook", "add", "--url", "http://x/", "--root", str(tmp_path)])
    with pytest.raises(SystemExit):
        main(["webhook", "add", "--namespace", "a", "--repository", "a/b", "--url", "http://x/",
              "--root", str(tmp_path)])  # fmt: skip
    code, _, err = run(
        capsys, str(tmp_path), "add", "--namespace", "a", "--url", "http://x/",
        "--secret-stdin", stdin="", monkeypatch=monkeypatch,
    )  # fmt: skip
    assert code == 1 and "no secret on stdin" in err


def test_deliveries(tmp_path: Any, capsys: Any) -> None:
    root = str(tmp_path)
    _, out, _ = run(capsys, root, "add", "--namespace", "acme", "--url", "http://h.test/")
    hook_id = int(out.split()[0])
    db = Database(sqlite_url(root))
    try:
        hooks = Webhooks(db)
        for repo in ("acme/app", "acme/web"):
            hooks.enqueue({"action": "push", "target": {"repository": repo, "digest": "d"}})
        answers = iter([500, 202])
        deliverer = Deliverer(hooks, send=lambda *a: next(answers), start=False)
        assert deliverer.run_once()  # acme/app: 500, retried later
        code, out, _ = run(capsys, root, "deliveries", str(hook_id))
        assert code == 0
        rows = [line.split() for line in out.splitlines()]
        assert rows[0][:6] == ["ID", "ACTION", "REPOSITORY", "STATE", "ATTEMPTS", "CODE"]
        assert rows[1][1:6] == ["push", "acme/web", "pending", "0", "-"]
        assert rows[2][1:6] == ["push", "acme/app", "pending", "1", "500"]
        assert "http status 500" in out
        _, out, _ = run(
            capsys, root, "deliveries", str(hook_id), "--state", "pending", "--limit", "1"
        )
        assert len(out.splitlines()) == 2
    finally:
        db.close()
