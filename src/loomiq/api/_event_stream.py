"""Task events at the HTTP edge: the SSE and WebSocket encodings of the engine's `TaskEvent` log.

Both follow `Orchestrator.events(task_id, after)`, which replays the log after ``seq`` and then
follows live, with no gap and no duplicate, ending after ``task_finished``. SSE sends each event with
``id: <seq>`` (so a reconnecting browser's ``Last-Event-ID`` resumes right after it) and
``event: <type>``; the WebSocket sends the same JSON objects as text frames.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

from sse_starlette import ServerSentEvent

from ..engine import TaskEvent
from ..orchestrator import Orchestrator

RECONNECT_MS = 2000
"""What the stream tells browsers to wait before reconnecting."""


def event_json(event: TaskEvent) -> str:
    """An event's JSON text: its fields plus ``task_id`` and ``seq``."""
    return json.dumps(event.to_dict(), separators=(",", ":"), ensure_ascii=False)


def sse_event(event: TaskEvent) -> ServerSentEvent:
    """One event as SSE, identified by its sequence number."""
    return ServerSentEvent(event_json(event), id=str(event.seq), event=event.type, sep="\n")


async def sse_stream(orch: Orchestrator, task_id: str, after: int) -> AsyncIterator[ServerSentEvent]:
    """The task's events after `after` as SSE. When the client leaves, the response cancels this
    generator and closing it unsubscribes from the engine: nothing is left behind."""
    yield ServerSentEvent(comment=f"events of task {task_id} after {after}", retry=RECONNECT_MS, sep="\n")
    async with contextlib.aclosing(orch.events(task_id, after)) as events:
        async for event in events:
            yield sse_event(event)
