"""Task events at the HTTP edge: the SSE and WebSocket encodings of the engine's `TaskEvent` log.

Each frame is the typed event (`TaskEvent.event`) in the one JSON form `loomiq.runtime.event_json`
defines, with the log entry's ``task_id`` and ``seq``; `docs/events.md` lists every type. Both follow
`Orchestrator.events(task_id, after)`, which replays the log after ``seq`` and then
follows live, with no gap and no duplicate, ending after ``task_finished``. SSE sends each event with
``id: <seq>`` (so a reconnecting browser's ``Last-Event-ID`` resumes right after it) and
``event: <type>``; the WebSocket sends the same JSON objects as text frames.

An event is encoded once for all the clients following its task: the engine hands the same event
object to every subscriber of this process, and `ENCODER` keeps the last events' encodings.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from sse_starlette import ServerSentEvent

from ..engine import TaskEvent
from ..orchestrator import Orchestrator
from ..runtime import EventDecodeError, encode_event
from ..runtime.event_json import dumps, json_str

RECONNECT_MS = 2000
"""What the stream tells browsers to wait before reconnecting."""


def _json(event: TaskEvent) -> str:
    """The typed event's JSON (`encode_event`, the one codec) with the entry's ``task_id`` and ``seq``."""
    try:
        body = encode_event(event.event)
    except EventDecodeError:  # a type this version does not know (a newer writer's): passed on as logged
        body = dumps(dict(event.data))
    return f'{body[:-1]},"task_id":{json_str(event.task_id)},"seq":{event.seq}}}'


class _Encoded:
    """An event and its encodings (the SSE frame made on first use)."""

    __slots__ = ("event", "json", "sse")

    def __init__(self, event: TaskEvent) -> None:
        self.event = event
        self.json = _json(event)
        self.sse: bytes | None = None


class EventEncoder:
    """Encodes events for the wire, each once: a bounded cache keyed by (task, seq).

    An entry serves the very event object it was made for, or an equal one (the same event read
    from the log by a replaying client). Lives on one event loop; a cache miss is only a re-encoding.
    """

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._cache: dict[tuple[str, int], _Encoded] = {}

    def _encoded(self, event: TaskEvent) -> _Encoded:
        key = (event.task_id, event.seq)
        hit = self._cache.get(key)
        if hit is not None and (hit.event is event or hit.event == event):
            return hit
        encoded = self._cache[key] = _Encoded(event)
        if len(self._cache) > self.size:
            with contextlib.suppress(StopIteration, KeyError, RuntimeError):
                del self._cache[next(iter(self._cache))]  # the oldest
        return encoded

    def json(self, event: TaskEvent) -> str:
        """An event's JSON text: its fields plus ``task_id`` and ``seq``."""
        return self._encoded(event).json

    def sse(self, event: TaskEvent) -> bytes:
        """An event's SSE frame: ``id: <seq>``, ``event: <type>``, ``data: <JSON>`` and a blank line.
        The JSON has no line break (``json.dumps`` escapes them), so it is one ``data:`` line."""
        encoded = self._encoded(event)
        frame = encoded.sse
        if frame is None:
            frame = encoded.sse = f"id: {event.seq}\nevent: {event.type}\ndata: {encoded.json}\n\n".encode()
        return frame


ENCODER = EventEncoder()
"""This process's encoder of task events."""


def event_json(event: TaskEvent) -> str:
    """An event's JSON text: its fields plus ``task_id`` and ``seq`` (encoded once per event)."""
    return ENCODER.json(event)


def sse_event(event: TaskEvent) -> bytes:
    """One event as an SSE frame, identified by its sequence number (encoded once per event)."""
    return ENCODER.sse(event)


async def sse_stream(orch: Orchestrator, task_id: str, after: int) -> AsyncIterator[ServerSentEvent | bytes]:
    """The task's events after `after` as SSE. When the client leaves, the response cancels this
    generator and closing it unsubscribes from the engine: nothing is left behind."""
    yield ServerSentEvent(comment=f"events of task {task_id} after {after}", retry=RECONNECT_MS, sep="\n")
    async with contextlib.aclosing(orch.events(task_id, after)) as events:
        async for event in events:
            yield sse_event(event)
