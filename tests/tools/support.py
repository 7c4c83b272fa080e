"""Helpers of the tool tests: a scripted `call_model`, and an in-memory file model with tools over it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from loomiq.models import ModelRequest, ModelResponse, ScriptedModel, ScriptedReply
from loomiq.tools import FunctionTool, tool


def scripted(*replies: ScriptedReply | str) -> ScriptedModel:
    """A scripted model playing `replies` in order (then the last one again)."""
    items = list(replies)

    def pick(request: ModelRequest, index: int) -> ScriptedReply | str:
        return items[min(index, len(items) - 1)]

    return ScriptedModel(replies=pick)


async def complete(model: ScriptedModel, request: ModelRequest) -> ModelResponse:
    """`call_model` for the loop: one plain completion."""
    return await model.complete(request)


@dataclass
class MemoryFiles:
    """Files in a dict, with tools that yield to the event loop between reading and writing, so
    that two calls interleaving on one file would lose an update."""

    files: dict[str, str] = field(default_factory=dict)
    reads: list[tuple[str, str]] = field(default_factory=list)

    def tools(self, pauses: Sequence[int] = (0,)) -> list[FunctionTool]:
        """write, append, read and copy over `files`; call i of the turn yields pauses[i % len] times."""
        files, reads = self.files, self.reads
        counter = iter(range(1_000_000))

        async def pause() -> None:
            for _ in range(pauses[next(counter) % len(pauses)]):
                await asyncio.sleep(0)

        @tool(writes=["file:{path}"])
        async def write(path: str, text: str) -> str:
            """Replace a file's text."""
            await pause()
            files[path] = text
            return "ok"

        @tool(writes=["file:{path}"])
        async def append(path: str, text: str) -> str:
            """Append text to a file."""
            old = files.get(path, "")
            await pause()
            files[path] = old + text
            return "ok"

        @tool(reads=["file:{path}"])
        async def read(path: str) -> str:
            """Read a file."""
            await pause()
            text = files.get(path, "")
            reads.append((path, text))
            return text

        @tool(reads=["file:{src}"], writes=["file:{dst}"])
        async def copy(src: str, dst: str) -> str:
            """Copy a file."""
            text = files.get(src, "")
            await pause()
            files[dst] = text
            return "ok"

        return [write, append, read, copy]
