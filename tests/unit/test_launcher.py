"""The lean launchers install.sh writes for portside-runtime and portside."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

from portside.runtime import launcher


def test_launcher_runs_the_module_without_site(tmp_path: Path) -> None:
    dest = str(tmp_path / "portside")
    assert launcher.main([dest, "portside.cli.main"]) == 0
    text = Path(dest).read_text()
    assert text.startswith(f"#!{sys.executable} -IS\n")
    assert "from portside.cli.main import main" in text
    assert repr(sysconfig.get_paths()["purelib"]) in text  # for `portside daemon`
    assert os.access(dest, os.X_OK)
    out = subprocess.run([dest, "--help"], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert "Usage:" in out.stdout or "usage:" in out.stdout


def test_runtime_launcher_is_the_default(tmp_path: Path) -> None:
    dest = str(tmp_path / "portside-runtime")
    assert launcher.main([dest]) == 0
    out = subprocess.run([dest, "--version"], capture_output=True, text=True, check=False)
    assert out.stdout.startswith("portside-runtime version")


def test_usage_error() -> None:
    assert launcher.main([]) == 2
