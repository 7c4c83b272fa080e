"""What the service does for its latency: no thread hop per dependency, each event encoded once,
the garbage collector tuned once started."""

from __future__ import annotations

import gc
import inspect
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.dependencies.models import Dependant
from sse_starlette import ServerSentEvent

from loomiq import Orchestrator
from loomiq.api import (
    Settings,
    build_server,
    create_app,
    routes_agents,
    routes_health,
    routes_keys,
    routes_openai,
    routes_stats,
    routes_tasks,
)
from loomiq.api import server as server_module
from loomiq.api._event_stream import EventEncoder, event_json, sse_event
from loomiq.api.server import GC_THRESHOLDS, LoomiqServer, tune_gc
from loomiq.engine import TaskEvent
from loomiq.engine.task import TaskID

from .support import SECRET, scripted_agents


def _dependencies(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from _dependencies(sub)


def test_every_dependency_runs_on_the_loop() -> None:
    """FastAPI runs a plain ``def`` dependency in its thread pool: none may be one."""
    seen = set()
    routers = (routes_agents, routes_health, routes_keys, routes_openai, routes_stats, routes_tasks)
    routes = [route for module in routers for route in module.router.routes]
    assert len(routes) > 20
    for route in routes:
        dependant = getattr(route, "dependant", None)
        if dependant is None:
            continue
        for dep in _dependencies(dependant):
            if dep.call is not None:
                seen.add(dep.call.__qualname__)
                assert inspect.iscoroutinefunction(dep.call), f"{dep.call.__qualname__} is not async def"
    assert {"get_state", "get_orch", "authenticate"} <= seen


EVENTS = [
    TaskEvent(TaskID("t1"), 1, "task_queued", {"type": "task_queued", "priority": "medium"}),
    TaskEvent(TaskID("t1"), 2, "text_delta", {"type": "text_delta", "step": "seq/0",
                                               "text": "line one\nline two\r\n «ünïcödé» \u2028 end"}),
    TaskEvent(TaskID("t2"), 7, "task_finished", {"type": "task_finished", "status": "completed", "output": "x"}),
]


@pytest.mark.parametrize("event", EVENTS, ids=[e.type for e in EVENTS])
def test_an_sse_frame_is_what_sse_starlette_would_send(event: TaskEvent) -> None:
    expected = ServerSentEvent(event_json(event), id=str(event.seq), event=event.type, sep="\n").encode()
    assert sse_event(event) == expected


def test_an_event_is_encoded_once_for_all_its_subscribers(monkeypatch: pytest.MonkeyPatch) -> None:
    from loomiq.api import _event_stream

    encoder = EventEncoder(size=2)
    encoded: list[TaskEvent] = []
    original = _event_stream._json

    def counting(event: TaskEvent) -> str:
        encoded.append(event)
        return original(event)

    monkeypatch.setattr(_event_stream, "_json", counting)
    live = EVENTS[1]
    frames = {id(encoder.sse(live)) for _ in range(50)}
    assert len(frames) == 1 and encoder.json(live) == original(live)
    replayed = TaskEvent(live.task_id, live.seq, live.type, dict(live.data))  # the same event, read from the log
    assert encoder.sse(replayed) == encoder.sse(live)
    assert encoded == [live]
    # Another event under the same (task, seq) (a new lease holder's) is encoded afresh.
    other = TaskEvent(live.task_id, live.seq, "text_delta", {"type": "text_delta", "step": "seq/0", "text": "other"})
    assert b"other" in encoder.sse(other)
    # Bounded: the oldest entries go.
    encoder.sse(EVENTS[0])
    encoder.sse(EVENTS[2])
    assert len(encoder._cache) == 2
    assert encoded == [live, other, EVENTS[0], EVENTS[2]]


def test_tune_gc_freezes_start_up_and_raises_the_thresholds() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


@pytest.mark.parametrize("tuning", [True, False])
def test_the_server_tunes_the_gc_once_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tuning: bool) -> None:
    settings = Settings(jwt_secret=SECRET, keys_path=tmp_path / "k.db", database_url=f"sqlite:///{tmp_path}/t.db",
                        worker_drain_s=0.5)
    app = create_app(settings, orchestrator=Orchestrator(scripted_agents()))
    calls: list[bool] = []
    monkeypatch.setattr(server_module, "tune_gc", lambda: calls.append(app.state.loomiq is not None))
    server = build_server("127.0.0.1", 0, settings=settings, app=app, log_level="warning", gc_tuning=tuning)
    assert isinstance(server, LoomiqServer)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    server.should_exit = True
    thread.join(15)
    assert not thread.is_alive()
    assert calls == ([True] if tuning else [])  # once, after the app's start-up
