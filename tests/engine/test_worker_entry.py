"""``python -m loomiq.engine.worker`` (the documented worker command) starts without runpy's warning
that the module was imported before it ran as ``__main__`` (the worker then existed twice)."""

from __future__ import annotations

import os
import subprocess
import sys


def test_python_m_loomiq_engine_worker_runs_without_warnings() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "loomiq.engine.worker", "--help"], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "usage: loomiq worker" in proc.stdout


def test_the_worker_module_run_as_main_is_the_imported_one() -> None:
    # The entry's `main` is the package's (one Worker class in the process, not a second copy).
    code = ("import runpy, sys; sys.argv = ['x', '--help']\n"
            "import loomiq.engine.worker as w\n"
            "try:\n    runpy.run_module('loomiq.engine.worker', run_name='__main__')\n"
            "except SystemExit as e:\n    assert e.code == 0\n"
            "assert sys.modules['loomiq.engine.worker'] is w\n")
    proc = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
