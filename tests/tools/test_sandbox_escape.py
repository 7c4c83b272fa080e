"""The escape corpus (`escape_corpus.CASES`) through the code tools' public entry and through
``loomiq tool run`` (the agents' path, in a process of its own): every attempt is
contained with a clear result, and the host is unchanged afterwards (no file written outside, no
process left behind, the host's listener never reached, the secret never read)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import sqlite3
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from loomiq.tools import ToolContext
from loomiq.tools.builtin import create_builtin

from ..cli.conftest import cli_env
from .escape_corpus import CASES, SETTINGS, Case, Host

PROJECT = Path(__file__).resolve().parents[2]


def _processes_with(marker: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


def _tmp_entries() -> set[str]:
    return {p.name for p in Path("/tmp").iterdir()}


def _assert_no_files(token: str, outside: Path, tmp_before: set[str]) -> None:
    for path in (outside / token, PROJECT / token, Path("/tmp") / token, Path("/") / token,
                 Path("/usr") / token, Path("/etc") / token, Path("/root") / token):
        assert not path.exists(), path
    assert list(outside.iterdir()) == []
    assert [n for n in _tmp_entries() - tmp_before if token in n] == []


@pytest.fixture
async def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Host]:
    """A host with a secret in its environment and database, a listener, and a directory to protect."""
    token = f"loomiq-escape-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("LOOMIQ_ESCAPE_SECRET", token)
    database = tmp_path / "loomiq.db"
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE secrets (value TEXT)")
        conn.execute("INSERT INTO secrets VALUES (?)", (token,))
    conn.close()
    outside = tmp_path / "outside"
    outside.mkdir()
    outside.chmod(0o777)  # writable by anyone: only the sandbox can keep the program out
    connections: list[object] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer.get_extra_info("peername"))
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    marker = f"{random.randint(100000, 999999)}.{random.randint(100, 999)}"
    before = _tmp_entries()
    try:
        yield Host(token, str(PROJECT), str(database), str(outside), port, marker)
    finally:
        server.close()
        await server.wait_closed()
    # The host is unchanged: nothing reached the listener, no file with the token exists anywhere the
    # corpus wrote to, /tmp holds no new entry of the sandbox's, no process of the corpus survived.
    assert connections == []
    _assert_no_files(token, outside, before)
    await asyncio.sleep(0.05)
    assert _processes_with(marker) == []
    assert _processes_with(token) == []


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_escape_is_contained(case: Case, host: Host, need_sandbox: None) -> None:
    if case.tool == "javascript" and shutil.which("node", path="/usr/local/bin:/usr/bin:/bin") is None:
        pytest.skip("node is not installed: the javascript tool is unavailable")
    tool = create_builtin(case.tool, SETTINGS)
    result = await tool.run({"code": case.source(host)}, ToolContext())
    case.check(result.data, host)
    assert result.is_error == (result.data["exit_code"] != 0)
    assert result.content.startswith(f"exit code: {result.data['exit_code']}")


@pytest.fixture
def corpus_config(tmp_path: Path) -> Path:
    """A loomiq.yaml giving the code tools the corpus's limits (one scripted agent: the file needs one)."""
    settings = {**SETTINGS, "warm": 0}  # one call per process: nothing to start ahead
    tools = {name: settings for name in ("python", "shell", "javascript")}
    config = {"agents": [{"id": "a", "provider": "scripted", "model": "scripted"}], "tools": tools}
    path = tmp_path / "loomiq.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_escape_is_contained_through_loomiq_tool_run(case: Case, host: Host, corpus_config: Path,
                                                           need_sandbox: None) -> None:
    if case.tool == "javascript" and shutil.which("node", path="/usr/local/bin:/usr/bin:/bin") is None:
        pytest.skip("node is not installed: the javascript tool is unavailable")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loomiq.cli", "tool", "run", case.tool, "--args",
        json.dumps({"code": case.source(host)}), "--config", str(corpus_config), "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=cli_env(),
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    record = json.loads(out)
    assert record["name"] == case.tool, err
    case.check(record["data"], host)
    # A program that failed is an error result (exit 1), one that succeeded is not (exit 0).
    assert proc.returncode == (1 if record["data"]["exit_code"] != 0 else 0), (proc.returncode, err)
