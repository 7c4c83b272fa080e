"""The `files` tool: read, write, list and search files under a per-tenant workspace root.

The root is ``ToolContext.workspace`` when the caller gives one, else ``<root>/<tenant>`` with
``root`` from the settings (default ``<data dir>/workspaces``, see `_settings.data_dir`). Paths are
relative to it and never leave it: ``..``, absolute paths, symlinks whose target is outside, hard
links, devices and FIFOs are refused, and resolution is race-free (see `_paths`). Sizes are capped.

Footprint: ``read`` reads ``file:<path>``, ``write`` writes it, so calls on different files run
together and calls on the same file in the model's order; ``list`` and ``search`` read every file
under a directory (``file:<dir>/**``) and run alone (exclusive), since a scheduler that matches
resources by name cannot tell which writes they overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from ..base import Footprint, ToolContext, ToolError, ToolResult
from ._paths import PathMissing, PathRefused, Root, check_regular, normalize, open_dir, open_file, walk
from ._settings import ConfigurableTool, ToolSettings, data_dir

_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class FilesSettings(ToolSettings):
    """Settings of the `files` tool (``tools: {files: {...}}``)."""

    root: Path | None = Field(None, description="workspaces root; each tenant gets <root>/<tenant>")
    max_read_bytes: int = Field(256 * 1024, ge=1, le=1 << 30, description="largest read returned")
    max_write_bytes: int = Field(1024 * 1024, ge=1, le=1 << 30, description="largest file written")
    max_list_entries: int = Field(1000, ge=1, le=1_000_000, description="entries listed at most")
    max_search_files: int = Field(5000, ge=1, le=1_000_000, description="files searched at most")
    max_matches: int = Field(200, ge=1, le=100_000, description="matching lines returned at most")
    timeout_s: float = Field(30.0, gt=0, le=3600)


_OPS = ("read", "write", "list", "search")


class FilesTool(ConfigurableTool):
    """``files``: read, write, list and search files in the tenant's workspace."""

    name = "files"
    description = (
        "Read, write, list and search files in your workspace. Paths are relative to the workspace root "
        "(no '..', no absolute paths). op=read {path}; op=write {path, content} (creates parent folders, "
        "replaces the file); op=list {path?, recursive?}; op=search {pattern, path?, regex?} finds lines "
        "containing the pattern."
    )
    parameters: Mapping[str, Any] = {
        "type": "object",
        "properties": {
            "op": {"type": "string", "enum": list(_OPS), "description": "what to do"},
            "path": {"type": "string", "description": "a path relative to the workspace ('' or '.' = the root)"},
            "content": {"type": "string", "description": "op=write: the file's new content (UTF-8 text)"},
            "recursive": {"type": "boolean", "description": "op=list: list sub-folders too"},
            "pattern": {"type": "string", "description": "op=search: the text (or regex) to find"},
            "regex": {"type": "boolean", "description": "op=search: treat the pattern as a regular expression"},
        },
        "required": ["op"],
        "additionalProperties": False,
    }
    Settings: ClassVar[type[ToolSettings]] = FilesSettings
    settings: FilesSettings

    def __init__(self, settings: Any = None) -> None:
        super().__init__(settings)
        self.timeout_s = self.settings.timeout_s

    def footprint(self, arguments: Mapping[str, Any]) -> Footprint:
        """``file:<path>`` read or written; listings and searches exclusive (see the module docstring)."""
        op = arguments.get("op")
        try:
            path = normalize(str(arguments.get("path", "")))
        except PathRefused:
            return Footprint()  # refused before touching anything
        if op == "write":
            return Footprint(writes=frozenset({f"file:{path}"}))
        if op == "read":
            return Footprint(reads=frozenset({f"file:{path}"}))
        # A listing or a search reads every file under a directory, which no set of names can say to
        # a scheduler matching resources by name: it runs alone, so it sees exactly what a sequential
        # run would (``file:<dir>/**`` names what it reads, for the record).
        return Footprint(reads=frozenset({f"file:{path}/**" if path else "file:**"}), exclusive=True)

    def workspace(self, ctx: ToolContext) -> Path:
        """The tenant's workspace root for this call."""
        if ctx.workspace is not None:
            return Path(ctx.workspace)
        if not _TENANT.match(ctx.tenant_id) or ctx.tenant_id in (".", ".."):
            raise ToolError(f"tenant id {ctx.tenant_id!r} cannot name a workspace")
        base = self.settings.root if self.settings.root is not None else data_dir() / "workspaces"
        return base / ctx.tenant_id

    async def run(self, arguments: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        """Do the operation in a thread (file system calls block)."""
        op = arguments.get("op")
        if op not in _OPS:
            raise ToolError(f"argument 'op' must be one of {', '.join(_OPS)}")
        root = self.workspace(ctx)
        try:
            return await asyncio.to_thread(getattr(self, f"_{op}"), str(root), arguments)
        except PathRefused as exc:
            raise ToolError(f"path refused: {exc}") from None
        except PathMissing as exc:
            raise ToolError(f"not found: {exc}") from None
        except OSError as exc:
            raise ToolError(f"{op} failed: {exc.strerror or exc}") from None

    def _read(self, root_path: str, arguments: Mapping[str, Any]) -> ToolResult:
        path = normalize(_text_arg(arguments, "path"))
        if not path:
            raise PathRefused("give a file to read (the root is a directory)")
        limit = self.settings.max_read_bytes
        with Root(root_path) as root:
            res = root.resolve(path)
            fd = open_file(res, os.O_RDONLY)
            try:
                size = os.fstat(fd).st_size
                raw = b""
                while len(raw) <= limit and (chunk := os.read(fd, limit + 1 - len(raw))):
                    raw += chunk
            finally:
                os.close(fd)
        truncated = len(raw) > limit
        text = raw[:limit].decode("utf-8", errors="replace")
        content = text + (f"\n[loomiq: file truncated at {limit} bytes of {size}]" if truncated else "")
        return ToolResult(content, data={"path": res.path, "size": size, "truncated": truncated, "content": text})

    def _write(self, root_path: str, arguments: Mapping[str, Any]) -> ToolResult:
        path = normalize(_text_arg(arguments, "path"))
        content = arguments.get("content")
        if not path:
            raise PathRefused("give a file to write")
        if not isinstance(content, str):
            raise ToolError("argument 'content' (a string) is required for op=write")
        data = content.encode("utf-8")
        if len(data) > self.settings.max_write_bytes:
            raise ToolError(f"content is {len(data)} bytes; the limit is {self.settings.max_write_bytes}")
        with Root(root_path) as root:
            res = root.resolve(path, create_dirs=True)
            try:
                check_regular(os.stat(res.name, dir_fd=res.dir_fd, follow_symlinks=False), res.path)
            except FileNotFoundError:
                pass
            # A new file beside the target, renamed over it: the rename replaces a name (never follows
            # a symlink, never writes through a hard link), and readers never see half a file.
            tmp = f".{res.name}.loomiq-{os.urandom(6).hex()}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=res.dir_fd)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.close(fd)
                os.replace(tmp, res.name, src_dir_fd=res.dir_fd, dst_dir_fd=res.dir_fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=res.dir_fd)
                raise
        return ToolResult(f"wrote {len(data)} bytes to {res.path}", data={"path": res.path, "bytes": len(data)})

    def _list(self, root_path: str, arguments: Mapping[str, Any]) -> ToolResult:
        path = normalize(_text_arg(arguments, "path", ""))
        recursive = bool(arguments.get("recursive", False))
        limit = self.settings.max_list_entries
        entries: list[dict[str, Any]] = []
        with Root(root_path) as root:
            res = root.resolve(path)
            fd = open_dir(root, res)
            try:
                if recursive:
                    for rel, entry, _ in walk(fd, "", limit=limit + 1):
                        entries.append(_entry(rel, entry))
                else:
                    with os.scandir(fd) as it:
                        for entry in sorted(it, key=lambda e: e.name):
                            entries.append(_entry(entry.name, entry))
                            if len(entries) > limit:
                                break
            finally:
                os.close(fd)
        truncated = len(entries) > limit
        entries = entries[:limit]
        lines = [f"{e['path']}{'/' if e['type'] == 'dir' else ''}" + (f"  ({e['size']} bytes)" if e["type"] == "file"
                 else "" if e["type"] == "dir" else f"  [{e['type']}]") for e in entries]
        shown = res.path or "."
        text = "\n".join(lines) if lines else f"{shown} is empty"
        if truncated:
            text += f"\n[loomiq: listing truncated at {limit} entries]"
        return ToolResult(text, data={"path": shown, "entries": entries, "truncated": truncated})

    def _search(self, root_path: str, arguments: Mapping[str, Any]) -> ToolResult:
        path = normalize(_text_arg(arguments, "path", ""))
        pattern = arguments.get("pattern")
        if not isinstance(pattern, str) or not pattern:
            raise ToolError("argument 'pattern' (a non-empty string) is required for op=search")
        try:
            matcher = re.compile(pattern if arguments.get("regex") else re.escape(pattern))
        except re.error as exc:
            raise ToolError(f"argument 'pattern' is not a valid regular expression: {exc}") from None
        s = self.settings
        matches: list[dict[str, Any]] = []
        skipped: list[str] = []
        with Root(root_path) as root:
            res = root.resolve(path)
            fd = open_dir(root, res)
            try:
                for rel, entry, parent in walk(fd, res.path, limit=s.max_search_files):
                    if len(matches) >= s.max_matches:
                        break
                    st = entry.stat(follow_symlinks=False)
                    if not stat.S_ISREG(st.st_mode):
                        continue
                    if st.st_nlink > 1 or st.st_size > s.max_read_bytes:
                        skipped.append(rel)
                        continue
                    matches += _grep(parent, entry.name, rel, matcher, s.max_matches - len(matches))
            finally:
                os.close(fd)
        text = "\n".join(f"{m['path']}:{m['line']}: {m['text']}" for m in matches) or f"no match for {pattern!r}"
        if len(matches) >= s.max_matches:
            text += f"\n[loomiq: stopped at {s.max_matches} matches]"
        return ToolResult(text, data={"pattern": pattern, "matches": matches, "skipped": skipped})


def _grep(parent: int, name: str, rel: str, matcher: re.Pattern[str], room: int) -> list[dict[str, Any]]:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent)
    except OSError:
        return []  # swapped meanwhile: skipped, never followed
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
            return []
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read(st.st_size + 1)
    finally:
        os.close(fd)
    if b"\0" in data[:8192]:
        return []  # binary
    found = []
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        if matcher.search(line):
            found.append({"path": rel, "line": number, "text": line[:500]})
            if len(found) >= room:
                break
    return found


def _entry(rel: str, entry: os.DirEntry[str]) -> dict[str, Any]:
    st = entry.stat(follow_symlinks=False)
    kind = ("dir" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode)
            else "symlink" if stat.S_ISLNK(st.st_mode) else "other")
    return {"path": rel, "type": kind, "size": st.st_size if kind == "file" else None}


def _text_arg(arguments: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = arguments.get(key, default)
    if value is None:
        raise ToolError(f"argument {key!r} is required")
    if not isinstance(value, str):
        raise ToolError(f"argument {key!r} must be a string")
    return value


__all__ = ["FilesSettings", "FilesTool"]
