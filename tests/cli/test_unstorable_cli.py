"""`loomiq submit`'s text inputs (the prompt from argv and from --prompt-file, and every string option)
with text no database stores are a one-line error and exit 2, on SQLite and PostgreSQL; text a
database stores (1 MB, right-to-left, control characters) is accepted. (argv cannot carry NUL: a
lone surrogate there is what an undecodable byte becomes; a prompt file carries both.) Issue 10 item 5."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ..engine.conftest import database


@pytest.fixture(params=["sqlite", "postgresql"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with database(request.param, tmp_path) as db:
        yield db


def submit(cwd: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOMIQ_")}
    return subprocess.run([sys.executable, "-m", "loomiq.cli", "submit", *args], cwd=cwd, capture_output=True,
                          text=True, errors="replace", timeout=60, env={**env, "LOOMIQ_DATABASE_URL": url})


def _refused(done: subprocess.CompletedProcess[str], what: str) -> None:
    assert done.returncode == 2, (what, done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("loomiq: error: "), (what, done.stderr)


async def test_submit_text_inputs(url: str, tmp_path: Path) -> None:
    bad = "x\udcffy"  # the byte 0xff in argv
    for option in ("--strategy", "--agents", "--capabilities", "--after", "--idempotency-key", "--id", "--tenant"):
        _refused(submit(tmp_path, url, "fine", option, bad), option)
    done = submit(tmp_path, url, bad)
    _refused(done, "prompt")
    assert "prompt contains a lone surrogate" in done.stderr
    for label, data in (("nul", b"a\x00b"), ("utf-8 surrogate", b"a\xed\xa0\x80b")):
        file = tmp_path / f"{label}.txt"
        file.write_bytes(data)
        _refused(submit(tmp_path, url, "--prompt-file", str(file)), label)
    big = tmp_path / "big.txt"
    big.write_text("é" * 500_000, encoding="utf-8")
    for label, args in (("1mb", ("--prompt-file", str(big))), ("rtl", ("\u202eمرحبا שלום",)),
                        ("controls", ("a\x01\x1b]0;title\x07\x7fz",))):
        done = submit(tmp_path, url, *args)
        assert done.returncode == 0, (label, done.stderr)
