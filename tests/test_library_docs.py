"""Every example of docs/library.md, and the README's "Library" section, runs as written: each ```python
block is a complete script, run offline in an empty directory (a failing assertion or exception in it
fails the test)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "library.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", DOC.read_text(), re.S | re.M)
README_LIBRARY = re.search(r"^## Library\n\n```python\n(.*?)^```", (ROOT / "README.md").read_text(), re.S | re.M)


def test_the_document_has_its_examples() -> None:
    assert len(BLOCKS) >= 6


def _run(source: str, what: str, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(source)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOMIQ_", "OPENAI_", "ANTHROPIC_"))}
    env["LOOMIQ_ALLOW_MODEL_REQUESTS"] = "0"  # offline: a real provider call would be refused
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, f"{what} failed:\n{done.stdout}\n{done.stderr}"
    assert done.stdout.strip(), "each example prints what it shows"


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_example_runs(index: int, tmp_path: Path) -> None:
    _run(BLOCKS[index], f"example {index} of {DOC.name}", tmp_path)


def test_the_readme_library_example_runs(tmp_path: Path) -> None:
    assert README_LIBRARY is not None, "the README has a Library section with a python block"
    _run(README_LIBRARY.group(1), "the README's Library example", tmp_path)
