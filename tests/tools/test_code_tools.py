"""The code tools beyond the escape corpus: results, settings, unavailability, concurrency."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import pytest

from loomiq.tools import PURE, ToolContext, ToolError, ToolUnavailable
from loomiq.tools.builtin import (
    JavaScriptTool,
    PythonTool,
    Sandbox,
    ShellTool,
    ToolConfigError,
    builtin_tools,
    create_builtin,
)
from loomiq.tools.builtin.sandbox import INSTALL_HINT


async def test_python_returns_stdout_stderr_and_exit_code(need_sandbox: None) -> None:
    tool = PythonTool.configure({"warm": 0})
    result = await tool.run({"code": "import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)"},
                            ToolContext())
    assert result.is_error
    assert result.data["stdout"] == "out\n" and result.data["stderr"] == "err\n" and result.data["exit_code"] == 3
    assert result.content == "exit code: 3\nstdout:\nout\nstderr:\nerr"


async def test_shell_and_work_directory_starts_empty(need_sandbox: None) -> None:
    tool = ShellTool.configure()
    first = await tool.run({"code": "ls -A; pwd; echo hi > note; cat note"}, ToolContext())
    second = await tool.run({"code": "ls -A"}, ToolContext())
    assert first.data["stdout"] == "/work\nhi\n" and not first.is_error
    assert second.data["stdout"] == "" and second.content == "exit code: 0\n(no output)"


async def test_javascript_when_node_is_installed(need_sandbox: None) -> None:
    tool = JavaScriptTool.configure()
    if shutil.which("node", path="/usr/local/bin:/usr/bin:/bin") is None:
        assert "node" in (tool.unavailable_reason() or "")
        with pytest.raises(ToolUnavailable):
            await tool.run({"code": "1"}, ToolContext())
        return
    result = await tool.run({"code": "console.log([1, 2, 3].map(x => x * 2).join(','))"}, ToolContext())
    assert result.data["stdout"] == "2,4,6\n" and result.data["exit_code"] == 0


async def test_calls_run_in_parallel_with_their_own_work_directories(need_sandbox: None) -> None:
    tool = PythonTool.configure({"warm": 0})
    assert tool.footprint({"code": "x"}) == PURE
    code = "import os, time\nopen('mine', 'w').write(str(os.getpid()))\ntime.sleep(0.6)\nprint(sorted(os.listdir('.')))"
    started = time.perf_counter()
    results = await asyncio.gather(*(tool.run({"code": code}, ToolContext()) for _ in range(4)))
    elapsed = time.perf_counter() - started
    assert all(r.data["stdout"] == "['mine']\n" for r in results)
    assert elapsed < 0.6 * 4 * 0.75, elapsed  # concurrently, not one after the other


async def test_unavailable_without_bubblewrap_and_never_runs_unsandboxed() -> None:
    sandbox = Sandbox(warm=0, bwrap=None)
    sandbox.bwrap = None  # as on a machine without bubblewrap
    assert INSTALL_HINT in (sandbox.unavailable_reason() or "")
    with pytest.raises(ToolUnavailable, match="apt-get install -y bubblewrap"):
        await sandbox.run(["python3", "-c", "print(1)"])
    tool = PythonTool.configure({"warm": 0})
    tool.sandbox = sandbox
    assert "bubblewrap" in (tool.unavailable_reason() or "")
    with pytest.raises(ToolUnavailable, match="bubblewrap"):
        await tool.run({"code": "print(1)"}, ToolContext())


async def test_unavailable_when_namespaces_are_refused(tmp_path: Path) -> None:
    # A bwrap that cannot create namespaces (here: a stand-in that fails like a locked-down kernel).
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    sandbox = Sandbox(warm=0, bwrap=str(fake), run_as=(os.geteuid(), os.getegid()))
    with pytest.raises(ToolUnavailable, match="user namespaces"):
        await sandbox.check()
    assert "No permissions" in (sandbox.unavailable_reason() or "")


async def test_bad_arguments_and_settings() -> None:
    tool = PythonTool.configure({"max_code_bytes": 10, "warm": 0})
    with pytest.raises(ToolError, match="limit is 10"):
        await tool.run({"code": "print('far too long')"}, ToolContext())
    with pytest.raises(ToolError, match="'code' must be a string"):
        await tool.run({"code": 3}, ToolContext())
    with pytest.raises(ToolConfigError, match="tool 'python': setting 'timeout': unknown setting"):
        PythonTool.configure({"timeout": 3})
    with pytest.raises(ToolConfigError, match="tool 'shell': setting 'memory_mb'"):
        create_builtin("shell", {"memory_mb": 1})
    with pytest.raises(KeyError, match="no built-in tool 'perl'"):
        create_builtin("perl")


def test_specs() -> None:
    names = list(builtin_tools())
    assert names[:3] == ["python", "shell", "javascript"]
    spec = PythonTool.configure().spec()
    assert spec.name == "python" and spec.parameters["required"] == ["code"]
    assert spec.parameters["additionalProperties"] is False
    assert PythonTool.configure({"timeout_s": 5}).timeout_s > 5


async def test_cpu_time_limit(need_sandbox: None) -> None:
    tool = PythonTool.configure({"cpu_s": 1, "timeout_s": 60, "warm": 0})
    result = await tool.run({"code": "while True:\n    pass"}, ToolContext())
    assert result.data["exit_code"] == 128 + 24 and not result.data["timed_out"]
    assert result.data["notes"] == ["killed: CPU time limit of 1 s reached"]
    assert result.content == "exit code: 152\n(no output)\n[killed: CPU time limit of 1 s reached]"
