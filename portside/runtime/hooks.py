"""OCI lifecycle hooks: run each with the container state JSON on stdin.

prestart/createRuntime/poststart run in the runtime's namespaces;
createContainer/startContainer are called from the container's init, so they
run in its namespaces. A hook that fails or times out fails the operation
(poststop only warns, as runc does).
"""

from __future__ import annotations

import json
import subprocess
import sys

from portside.errors import FailedPrecondition

TYPE_CHECKING = False
if TYPE_CHECKING:
    from portside.oci.runtime_spec import Hook, State

__all__ = ["HookError", "run_hooks"]


class HookError(FailedPrecondition):
    pass


def _run_one(hook: Hook, state_json: bytes, phase: str, index: int) -> None:
    where = f"{phase} hook #{index} ({hook.path})"
    env = dict(e.split("=", 1) for e in hook.env if "=" in e)
    try:
        proc = subprocess.Popen(
            hook.args or [hook.path],
            executable=hook.path,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    except OSError as exc:
        raise HookError(f"{where}: {exc.strerror}") from exc
    timeout = hook.timeout if hook.timeout and hook.timeout > 0 else None
    try:
        out, _ = proc.communicate(state_json, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise HookError(f"{where}: timed out after {timeout}s") from None
    if proc.returncode != 0:
        detail = out.decode(errors="replace").strip()
        raise HookError(
            f"{where}: exited with status {proc.returncode}" + (f": {detail}" if detail else "")
        )


def run_hooks(hooks: list[Hook], state: State, phase: str) -> None:
    """Run ``hooks`` in order; the first failure raises :class:`HookError`
    (for ``poststop`` every hook runs and failures are only reported)."""
    if not hooks:
        return
    state_json = json.dumps(state.to_json()).encode()
    for i, hook in enumerate(hooks):
        try:
            _run_one(hook, state_json, phase, i)
        except HookError as exc:
            if phase != "poststop":
                raise
            print(f"portside-runtime: warning: {exc}", file=sys.stderr)
