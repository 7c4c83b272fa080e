"""The `files` tool: its operations, and the path corpus (traversal, absolute paths, symlink and
hard-link escapes, devices and FIFOs, symlinks swapped during resolution): 0 escapes."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from pathlib import Path

import pytest

from loomiq.tools import Footprint, ToolContext, ToolError
from loomiq.tools.builtin import FilesTool, ToolConfigError, create_builtin

SECRET = "the host's secret"


@pytest.fixture
def layout(tmp_path: Path) -> tuple[FilesTool, ToolContext, Path, Path]:
    """A workspaces root with tenant acme's workspace, and a secret file outside it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET)
    tool = FilesTool.configure({"root": str(tmp_path / "ws"), "max_read_bytes": 64, "max_write_bytes": 128})
    ctx = ToolContext(tenant_id="acme")
    workspace = tool.workspace(ctx)
    workspace.mkdir(parents=True)
    return tool, ctx, workspace, outside


async def call(tool: FilesTool, ctx: ToolContext, **arguments: object) -> object:
    return await tool.run(arguments, ctx)


async def test_write_read_list_search(layout: tuple[FilesTool, ToolContext, Path, Path]) -> None:
    tool, ctx, ws, _ = layout
    written = await tool.run({"op": "write", "path": "src/pkg/a.py", "content": "x = 1\nprint('hello')\n"}, ctx)
    assert written.data == {"path": "src/pkg/a.py", "bytes": 21}
    assert (ws / "src/pkg/a.py").read_text() == "x = 1\nprint('hello')\n"
    read = await tool.run({"op": "read", "path": "./src//pkg/a.py"}, ctx)
    assert read.content == "x = 1\nprint('hello')\n" and read.data["truncated"] is False
    await tool.run({"op": "write", "path": "notes.md", "content": "hello again"}, ctx)
    listing = await tool.run({"op": "list", "path": ""}, ctx)
    assert [e["path"] for e in listing.data["entries"]] == ["notes.md", "src"]
    deep = await tool.run({"op": "list", "recursive": True}, ctx)
    assert [e["path"] for e in deep.data["entries"]] == ["notes.md", "src", "src/pkg", "src/pkg/a.py"]
    found = await tool.run({"op": "search", "pattern": "hello"}, ctx)
    assert [(m["path"], m["line"]) for m in found.data["matches"]] == [("notes.md", 1), ("src/pkg/a.py", 2)]
    regex = await tool.run({"op": "search", "pattern": r"^x = \d", "regex": True, "path": "src"}, ctx)
    assert [m["path"] for m in regex.data["matches"]] == ["src/pkg/a.py"]


async def test_limits_and_bad_arguments(layout: tuple[FilesTool, ToolContext, Path, Path]) -> None:
    tool, ctx, ws, _ = layout
    (ws / "big.txt").write_text("y" * 100)
    read = await tool.run({"op": "read", "path": "big.txt"}, ctx)
    assert read.data["truncated"] is True and read.data["content"] == "y" * 64
    assert "[loomiq: file truncated at 64 bytes of 100]" in read.content
    with pytest.raises(ToolError, match="limit is 128"):
        await tool.run({"op": "write", "path": "x", "content": "z" * 200}, ctx)
    with pytest.raises(ToolError, match="not found"):
        await tool.run({"op": "read", "path": "missing.txt"}, ctx)
    await tool.run({"op": "write", "path": "d/x", "content": ""}, ctx)
    with pytest.raises(ToolError, match="is a directory"):
        await tool.run({"op": "read", "path": "d"}, ctx)
    with pytest.raises(ToolError, match="is not a directory"):
        await tool.run({"op": "list", "path": "d/x"}, ctx)
    with pytest.raises(ToolError, match="'op' must be one of"):
        await tool.run({"op": "delete", "path": "x"}, ctx)
    with pytest.raises(ToolError, match="'pattern'"):
        await tool.run({"op": "search"}, ctx)
    with pytest.raises(ToolError, match="not a valid regular expression"):
        await tool.run({"op": "search", "pattern": "(", "regex": True}, ctx)
    with pytest.raises(ToolError, match="cannot name a workspace"):
        await tool.run({"op": "list"}, ToolContext(tenant_id="../other"))
    with pytest.raises(ToolConfigError, match="'max_read_bytes'"):
        create_builtin("files", {"max_read_bytes": 0})


def test_footprints() -> None:
    tool = FilesTool.configure()
    assert tool.footprint({"op": "write", "path": "./src//a.py"}) == Footprint(writes=frozenset({"file:src/a.py"}))
    assert tool.footprint({"op": "read", "path": "src/a.py"}) == Footprint(reads=frozenset({"file:src/a.py"}))
    search = tool.footprint({"op": "search", "path": "src", "pattern": "x"})
    assert search == Footprint(reads=frozenset({"file:src/**"}), exclusive=True)
    assert tool.footprint({"op": "list"}) == Footprint(reads=frozenset({"file:**"}), exclusive=True)
    assert search.conflicts_with(tool.footprint({"op": "write", "path": "src/a.py"}))
    assert tool.footprint({"op": "write", "path": "a"}).conflicts_with(tool.footprint({"op": "read", "path": "a"}))
    assert not tool.footprint({"op": "write", "path": "a"}).conflicts_with(tool.footprint({"op": "write", "path": "b"}))


def test_tenants_get_their_own_workspace(tmp_path: Path) -> None:
    tool = FilesTool.configure({"root": str(tmp_path)})
    assert tool.workspace(ToolContext(tenant_id="acme")) == tmp_path / "acme"
    assert tool.workspace(ToolContext(tenant_id="beta")) == tmp_path / "beta"
    assert tool.workspace(ToolContext(workspace=tmp_path / "given")) == tmp_path / "given"


# --- the path corpus -------------------------------------------------------------------------------

def _make_escapes(ws: Path, outside: Path) -> None:
    """Links planted in the workspace (as a program with access to it might) that point outside."""
    (ws / "abs_link").symlink_to(outside / "secret.txt")
    (ws / "rel_link").symlink_to("../../outside/secret.txt")
    (ws / "dir_link").symlink_to(outside)
    (ws / "up_link").symlink_to("..")
    (ws / "sub").mkdir()
    (ws / "sub" / "deep_up").symlink_to("../../../outside")
    (ws / "loop").symlink_to("loop")
    os.link(outside / "secret.txt", ws / "hard_link")
    os.mkfifo(ws / "fifo")
    (ws / "inside.txt").write_text("inside")
    (ws / "ok_link").symlink_to("inside.txt")  # stays inside: followed
    (ws / "sub" / "ok_up").symlink_to("../inside.txt")


ESCAPING_PATHS = [
    "../outside/secret.txt", "../../etc/passwd", "sub/../../outside/secret.txt", "..", "./../x",
    "/etc/passwd", str(Path("/tmp")), "~/x", "C:/x", "sub\\..\\..\\x", "a\0b",
    "abs_link", "rel_link", "dir_link/secret.txt", "up_link/outside/secret.txt", "sub/deep_up/secret.txt",
    "loop", "hard_link", "fifo", "/dev/zero", "up_link",
]


@pytest.mark.parametrize("path", ESCAPING_PATHS)
@pytest.mark.parametrize("op", ["read", "write", "list", "search"])
async def test_path_corpus_never_escapes(layout: tuple[FilesTool, ToolContext, Path, Path], op: str,
                                         path: str) -> None:
    tool, ctx, ws, outside = layout
    _make_escapes(ws, outside)
    arguments: dict[str, object] = {"op": op, "path": path}
    if op == "write":
        arguments["content"] = "overwritten"
    if op == "search":
        arguments["pattern"] = "secret"
    try:
        result = await tool.run(arguments, ctx)
    except ToolError as exc:
        assert "path refused" in str(exc) or "not found" in str(exc) or "failed" in str(exc), exc
    else:
        # What succeeded touched only the workspace: nothing of the outside came back or changed.
        assert SECRET not in result.content and "the host" not in str(result.data), result
    assert (outside / "secret.txt").read_text() == SECRET
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


async def test_symlinks_inside_the_workspace_are_followed(layout: tuple[FilesTool, ToolContext, Path, Path]) -> None:
    tool, ctx, ws, outside = layout
    _make_escapes(ws, outside)
    assert (await tool.run({"op": "read", "path": "ok_link"}, ctx)).content == "inside"
    assert (await tool.run({"op": "read", "path": "sub/ok_up"}, ctx)).content == "inside"
    listing = await tool.run({"op": "list", "recursive": True}, ctx)
    kinds = {e["path"]: e["type"] for e in listing.data["entries"]}
    assert kinds["dir_link"] == "symlink" and kinds["fifo"] == "other"
    assert not any(p.startswith("dir_link/") for p in kinds)  # listing never descends through a link
    found = await tool.run({"op": "search", "pattern": "secret"}, ctx)
    assert found.data["matches"] == [] and "hard_link" in found.data["skipped"]
    # Writing over a hard link or a symlink with an inside target replaces the name only.
    with pytest.raises(ToolError, match="hard links"):
        await tool.run({"op": "write", "path": "hard_link", "content": "x"}, ctx)
    await tool.run({"op": "write", "path": "ok_link", "content": "replaced"}, ctx)
    assert (ws / "inside.txt").read_text() == "replaced" and (ws / "ok_link").is_symlink()


async def test_race_swapping_a_directory_for_a_symlink(layout: tuple[FilesTool, ToolContext, Path, Path]) -> None:
    """A thread keeps swapping ``race/`` between a real directory and a symlink to the outside while
    reads and writes go through it: none of them ever reaches the outside."""
    tool, ctx, ws, outside = layout
    real = ws / "race_real"
    real.mkdir()
    (real / "secret.txt").write_text("inside copy")
    evil = ws / "race_evil"
    evil.symlink_to(outside)
    race = ws / "race"
    stop = threading.Event()

    def swap() -> None:
        # Each rename is atomic: ``race`` is in turn absent, a directory inside, absent, a symlink outside.
        while not stop.is_set():
            for source in (real, evil):
                try:
                    os.rename(source, race)
                    os.rename(race, source)
                except OSError:
                    # A write created ``race/`` while it was absent: clear it and go on swapping.
                    if race.is_dir() and not race.is_symlink():
                        shutil.rmtree(race, ignore_errors=True)

    thread = threading.Thread(target=swap, daemon=True)
    thread.start()
    leaked = 0
    try:
        for i in range(300):
            for arguments in ({"op": "read", "path": "race/secret.txt"},
                              {"op": "write", "path": "race/secret.txt", "content": f"w{i}"},
                              {"op": "search", "path": "race", "pattern": "secret"}):
                try:
                    result = await tool.run(arguments, ctx)
                except ToolError:
                    continue
                if SECRET in result.content:
                    leaked += 1
            await asyncio.sleep(0)
    finally:
        stop.set()
        thread.join()
    assert leaked == 0
    assert (outside / "secret.txt").read_text() == SECRET
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
