"""A read-only or corrupt database: `loomiq submit` and `loomiq worker` print one line naming the
database and the problem and exit non-zero (they printed a 130-line traceback, and `worker` had
already reported itself ready); `worker` reports ready only once the database took a write."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


def loomiq(cwd: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOMIQ_")}
    return subprocess.run([sys.executable, "-m", "loomiq.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env={**env, "LOOMIQ_DATABASE_URL": url})


def _writable(path: Path) -> bool:
    try:
        with path.open("ab"):
            return True
    except OSError:
        return False


@pytest.fixture
def read_only_copy(tmp_path: Path) -> Iterator[Path]:
    """A copy of a working database that cannot be written: chmod 0444; as root (whom modes do not stop),
    the immutable attribute too (chattr +i), or the test is skipped."""
    made = loomiq(tmp_path, f"sqlite:///{tmp_path / 'tasks.db'}", "submit", "a first task")
    assert made.returncode == 0, made.stderr
    conn = sqlite3.connect(tmp_path / "tasks.db")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the file itself, then copy it alone
    conn.close()
    copy = tmp_path / "copy"
    copy.mkdir()
    db = copy / "tasks.db"
    shutil.copy(tmp_path / "tasks.db", db)
    db.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    immutable = False
    if _writable(db) and shutil.which("chattr"):
        immutable = subprocess.run(["chattr", "+i", str(db)], capture_output=True, check=False).returncode == 0
    try:
        if _writable(db):
            pytest.skip("cannot make a file read-only here (root without chattr)")
        yield db
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(db)], check=False)
        db.chmod(0o644)


@pytest.fixture
def corrupt(tmp_path: Path) -> Path:
    db = tmp_path / "garbage.db"
    db.write_bytes(b"this is not a SQLite database, only some bytes of garbage\n" * 200)
    return db


def _one_line(done: subprocess.CompletedProcess[str], db: Path, problem: str) -> None:
    assert done.returncode != 0, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("loomiq: error: "), done.stderr
    assert str(db) in lines[0] and problem in lines[0], lines[0]
    assert "worker_ready" not in done.stdout


@pytest.mark.parametrize("command", [["submit", "Shard the database?"], ["worker", "--concurrency", "1"]])
def test_a_read_only_database(read_only_copy: Path, command: list[str]) -> None:
    listed = loomiq(read_only_copy.parent, f"sqlite:///{read_only_copy}", "tasks")  # it opens and reads
    assert listed.returncode == 0 and "a first task" in listed.stdout, (listed.stdout, listed.stderr)
    done = loomiq(read_only_copy.parent, f"sqlite:///{read_only_copy}", *command)
    _one_line(done, read_only_copy, "readonly database")


@pytest.mark.parametrize("command", [["submit", "Shard the database?"], ["worker", "--concurrency", "1"]])
def test_a_corrupt_database(corrupt: Path, command: list[str]) -> None:
    done = loomiq(corrupt.parent, f"sqlite:///{corrupt}", *command)
    _one_line(done, corrupt, "not a database")
