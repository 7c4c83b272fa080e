"""The code tools: `python`, `shell` and `javascript`, each ``{"code": "..."}`` run in a fresh
bubblewrap sandbox (`sandbox.Sandbox`), returning stdout, stderr and the exit code.

Calls never share anything (each has its own empty work directory), so their footprint is empty and
calls of one model turn run in parallel. A non-zero exit is an error result the model can read and
correct; a missing sandbox is `ToolUnavailable`, never a run outside it.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field

from ..base import ToolContext, ToolError, ToolResult, ToolUnavailable
from ._settings import ConfigurableTool, ToolSettings
from .sandbox import CODE_DIR, Sandbox, SandboxLimits, SandboxResult


class CodeSettings(ToolSettings):
    """Settings of a code tool (``tools: {python: {...}}``): the sandbox's limits and the code size."""

    timeout_s: float = Field(30.0, gt=0, le=3600, description="wall time of one run; the tree is killed after")
    cpu_s: int = Field(10, ge=1, le=3600, description="CPU seconds per process")
    memory_mb: int = Field(512, ge=16, le=65536, description="heap and anonymous memory per process")
    max_processes: int = Field(64, ge=1, le=4096, description="processes and threads in the sandbox")
    file_size_mb: int = Field(16, ge=1, le=65536, description="largest file a process may write")
    work_dir_mb: int = Field(64, ge=1, le=65536, description="size of the work directory and of /tmp")
    max_output_bytes: int = Field(64 * 1024, ge=256, le=64 * 1024 * 1024, description="kept of each stream")
    max_code_bytes: int = Field(1024 * 1024, ge=1, le=64 * 1024 * 1024, description="largest accepted code")
    warm: int = Field(2, ge=0, le=32, description="sandboxes started ahead of calls (0: each at its call)")

    def limits(self) -> SandboxLimits:
        """The sandbox limits these settings describe."""
        return SandboxLimits(
            wall_s=self.timeout_s, cpu_s=self.cpu_s, memory_mb=self.memory_mb,
            max_processes=self.max_processes, file_size_mb=self.file_size_mb,
            work_dir_mb=self.work_dir_mb, max_output_bytes=self.max_output_bytes,
        )


_SANDBOXES: dict[tuple[SandboxLimits, int, str | None], Sandbox] = {}


def shared_sandbox(limits: SandboxLimits, warm: int = 2) -> Sandbox:
    """One `Sandbox` per set of limits in this process, shared by the code tools: its start-up check
    runs once, and its sandboxes started ahead serve every tool instance with these limits."""
    key = (limits, warm, shutil.which("bwrap"))
    sandbox = _SANDBOXES.get(key)
    if sandbox is None:
        sandbox = _SANDBOXES[key] = Sandbox(limits, warm=warm)
    return sandbox


def format_result(result: SandboxResult) -> str:
    """What the model reads: the exit code, then stdout and stderr (each only when not empty), then notes."""
    parts = [f"exit code: {result.exit_code}"]
    if result.stdout:
        parts.append("stdout:\n" + result.stdout.rstrip("\n"))
    if result.stderr:
        parts.append("stderr:\n" + result.stderr.rstrip("\n"))
    if not result.stdout and not result.stderr:
        parts.append("(no output)")
    parts += [f"[{note}]" for note in result.notes]
    return "\n".join(parts)


class CodeTool(ConfigurableTool):
    """Base of the code tools: run ``{"code": ...}`` with `interpreter` in a fresh sandbox."""

    read_only = True  # the code changes nothing outside its own sandbox

    Settings: ClassVar[type[ToolSettings]] = CodeSettings
    settings: CodeSettings
    interpreter: ClassVar[tuple[str, ...]]
    """The program that runs the code file, found on the sandbox's PATH (under /usr)."""
    filename: ClassVar[str]
    """The code file's name inside `sandbox.CODE_DIR`."""
    language: ClassVar[str]
    parameters: Mapping[str, Any]

    def __init__(self, settings: Any = None) -> None:
        super().__init__(settings)
        # The loop's own timeout must not cut the sandbox's: it ends the run and reports first.
        self.timeout_s = self.settings.timeout_s + 10.0
        self.sandbox = shared_sandbox(self.settings.limits(), self.settings.warm)
        self.parameters = {
            "type": "object",
            "properties": {"code": {"type": "string", "description": f"the {self.language} source to run"}},
            "required": ["code"],
            "additionalProperties": False,
        }

    def unavailable_reason(self) -> str | None:
        """Why the sandbox (or the interpreter) is missing here, or None."""
        return self.sandbox.unavailable_reason() or self._interpreter_missing()

    def _interpreter_missing(self) -> str | None:
        path = shutil.which(self.interpreter[0], path="/usr/local/bin:/usr/bin:/bin")
        if path is None:
            return f"the {self.name} tool needs {self.interpreter[0]!r} installed under /usr ({self.install_hint})"
        return None

    install_hint: ClassVar[str] = ""

    async def run(self, arguments: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        """Run the code in a fresh sandbox; a non-zero exit is an error result."""
        code = arguments.get("code")
        if not isinstance(code, str):
            raise ToolError("argument 'code' must be a string")
        data = code.encode("utf-8", errors="replace")
        if len(data) > self.settings.max_code_bytes:
            raise ToolError(f"argument 'code' is {len(data)} bytes; the limit is {self.settings.max_code_bytes}")
        missing = self._interpreter_missing()
        if missing:
            raise ToolUnavailable(missing)
        result = await self.sandbox.run([*self.interpreter, f"{CODE_DIR}/{self.filename}"], {self.filename: data})
        return ToolResult(format_result(result), data=result.to_dict(), is_error=result.exit_code != 0)


class PythonTool(CodeTool):
    """``python``: run Python 3 code in a sandbox (no network, empty work directory, limits)."""

    name = "python"
    language = "Python 3"
    description = (
        "Run Python 3 code in an isolated sandbox and get its stdout, stderr and exit code. No network; "
        "the work directory starts empty and is discarded after the call; print what you need to see."
    )
    interpreter = ("python3",)
    filename = "main.py"
    install_hint = "Debian/Ubuntu: apt-get install -y python3"


class ShellTool(CodeTool):
    """``shell``: run a bash script in a sandbox."""

    name = "shell"
    language = "bash"
    description = (
        "Run a bash script in an isolated sandbox (coreutils and the system's tools, read-only) and get its "
        "stdout, stderr and exit code. No network; the work directory starts empty and is discarded after."
    )
    interpreter = ("bash",)
    filename = "main.sh"
    install_hint = "Debian/Ubuntu: apt-get install -y bash"


class JavaScriptTool(CodeTool):
    """``javascript``: run JavaScript with Node.js in a sandbox (available when ``node`` is installed)."""

    name = "javascript"
    language = "JavaScript (Node.js)"
    description = (
        "Run JavaScript with Node.js in an isolated sandbox and get its stdout, stderr and exit code. No "
        "network; the work directory starts empty and is discarded after the call."
    )
    interpreter = ("node",)
    filename = "main.js"
    install_hint = "Debian/Ubuntu: apt-get install -y nodejs"


__all__ = ["CodeSettings", "CodeTool", "JavaScriptTool", "PythonTool", "ShellTool", "format_result", "shared_sandbox"]
