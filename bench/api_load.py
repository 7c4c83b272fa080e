"""Load generator for `bench/bench_api.py`: drives a running loomiq HTTP service from its own process.

    python bench/api_load.py submit      --url http://127.0.0.1:PORT --token JWT [--rate 200 --duration 10]
    python bench/api_load.py first-event --url ... --token ... [--samples 100]
    python bench/api_load.py sse         --url ... --token ... [--clients 1000 --tasks 20]

Each scenario prints one JSON object on stdout. Standard library only (uvloop when importable),
with a small HTTP/1.1 client on `asyncio.Protocol`: each response byte is timestamped in
``data_received`` (``time.monotonic_ns``, CLOCK_MONOTONIC, the same clock as the server process on
this machine), and the client costs a few microseconds per request or event, so that 1,000
streams in one process measure the server rather than the client.

Scenarios:

* ``submit``: open loop. Request i is due at ``t0 + i / rate`` and is sent then whether or not
  earlier ones answered (over an idle keep-alive connection, or a new one: the pool grows as
  needed up to ``--max-conns``). Latency is measured from the due time, not the send time, so a
  stalled server or client is charged to the latency (no coordinated omission). A warm-up second
  at the same rate is sent first and left out.
* ``first-event``: one task at a time: ``POST /api/tasks``, and as soon as the 202 arrives
  ``GET /api/tasks/{id}/events`` (on a second kept-alive connection); the figure is the time from
  sending the POST to receiving the first ``data:`` line (the replayed ``task_queued``). The times
  to ``task_started`` and ``task_finished`` (the embedded worker ran it) are reported beside it.
* ``sse``: fan-out. ``--tasks`` gate tasks (agent ``gate<i>``, latency ``--gate`` + i x
  ``--stagger`` seconds in the server's loomiq.yaml) are submitted, then ``--tasks`` tasks, task i
  after gate i (``after: [gate i]``; sequential strategy over three of the agents ``s0``..``s9``,
  whose latencies differ), then ``--clients`` clients each follow one of those tasks (client k
  follows task k mod tasks). The gates keep the tasks waiting until every client is subscribed,
  so all their run events are delivered live, and start them ``--stagger`` apart. Every client
  must receive every event (seq 1..n without gap or duplicate, ending with ``task_finished``).
  Delay per delivered event: absolute = receive time - the time the server created it (the bench
  server records when each (task, seq) is published, see ``bench_api.py``, fetched from
  ``POST /_bench/stamps`` afterwards; exact for runtime events, a lower bound for the lifecycle
  ``task_*`` events, see below); relative = receive time - the earliest receive time of the same
  event among all its clients.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import resource
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

NS = 1_000_000_000
MS = 1_000_000

Stamp = int  # time.monotonic_ns()


def now() -> Stamp:
    return time.monotonic_ns()


def summary(values_ns: list[int] | list[float], unit: int = MS, total: bool = False) -> dict[str, Any]:
    """count, mean, p50, p90, p99, p99.9, max in milliseconds (nearest-rank percentiles)."""
    if not values_ns:
        return {"count": 0}
    ordered = sorted(values_ns)
    n = len(ordered)

    def pct(p: float) -> float:
        return round(ordered[min(n - 1, max(0, math.ceil(p / 100 * n) - 1))] / unit, 3)

    out: dict[str, Any] = {"total": round(sum(ordered) / unit, 1)} if total else {}
    return {
        **out,
        "count": n,
        "mean": round(sum(ordered) / n / unit, 3),
        "p50": pct(50),
        "p90": pct(90),
        "p99": pct(99),
        "p99_9": pct(99.9),
        "max": round(ordered[-1] / unit, 3),
    }


# -- a small HTTP/1.1 client -----------------------------------------------------------------------


class HttpError(Exception):
    """The connection failed or the response could not be parsed."""


class Response:
    """One response being parsed: head, then a Content-Length or chunked body. With `on_event`,
    the body is parsed as an SSE stream and `on_event(seq, type, received_ns)` is called per event
    (and `first_data_ns` records the first ``data:`` line)."""

    __slots__ = (
        "status",
        "headers",
        "body",
        "done",
        "first_byte_ns",
        "first_data_ns",
        "on_event",
        "_state",
        "_left",
        "_sse",
        "_ev_id",
        "_ev_type",
        "_head",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, on_event: Callable[[int, str, Stamp], None] | None = None):
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.done: asyncio.Future[Response] = loop.create_future()
        self.first_byte_ns = 0
        self.first_data_ns = 0
        self.on_event = on_event
        self._state = "head"  # head, length, chunk-size, chunk-data, chunk-crlf, trailer, done
        self._left = 0
        self._sse = bytearray()
        self._ev_id = -1
        self._ev_type = ""

    def feed(self, buf: bytearray, t: Stamp) -> None:
        """Consume what can be parsed from `buf` (received at `t`)."""
        if not self.first_byte_ns:
            self.first_byte_ns = t
        while buf and self._state != "done":
            state = self._state
            if state == "head":
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
                del buf[: end + 4]
                self.status = int(lines[0].split(" ", 2)[1])
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    self.headers[name.strip().lower()] = value.strip()
                if self.headers.get("transfer-encoding", "").lower() == "chunked":
                    self._state = "chunk-size"
                else:
                    self._left = int(self.headers.get("content-length", "0"))
                    self._state = "length"
                    if not self._left:
                        self._finish()
            elif state == "length":
                take = min(self._left, len(buf))
                self._body(buf[:take], t)
                del buf[:take]
                self._left -= take
                if not self._left:
                    self._finish()
            elif state == "chunk-size":
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                size = int(bytes(buf[:end]).split(b";", 1)[0], 16)
                del buf[: end + 2]
                if size:
                    self._left = size
                    self._state = "chunk-data"
                else:
                    self._state = "trailer"
            elif state == "chunk-data":
                take = min(self._left, len(buf))
                self._body(buf[:take], t)
                del buf[:take]
                self._left -= take
                if not self._left:
                    self._state = "chunk-crlf"
            elif state == "chunk-crlf":
                if len(buf) < 2:
                    return
                del buf[:2]
                self._state = "chunk-size"
            elif state == "trailer":
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                del buf[: end + 2]
                if end == 0:
                    self._finish()

    def _body(self, data: bytearray, t: Stamp) -> None:
        if self.on_event is None:
            self.body += data
            return
        sse = self._sse
        sse += data
        while True:
            end = sse.find(b"\n")
            if end < 0:
                return
            line = bytes(sse[:end]).rstrip(b"\r")
            del sse[: end + 1]
            if not line:  # end of an event
                if self._ev_id >= 0:
                    self.on_event(self._ev_id, self._ev_type, t)
                self._ev_id, self._ev_type = -1, ""
            elif line.startswith(b"data:"):
                if not self.first_data_ns:
                    self.first_data_ns = t
            elif line.startswith(b"id:"):
                self._ev_id = int(line[3:])
            elif line.startswith(b"event:"):
                self._ev_type = line[6:].strip().decode()

    def _finish(self) -> None:
        self._state = "done"
        if not self.done.done():
            self.done.set_result(self)

    def fail(self, exc: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(exc)

    def json(self) -> Any:
        return json.loads(self.body)


class Conn(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, host: str, headers: bytes) -> None:
        self.loop = loop
        self.host = host
        self.base_headers = headers
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.response: Response | None = None
        self.closed = False

    @classmethod
    async def open(cls, loop: asyncio.AbstractEventLoop, host: str, port: int, headers: bytes) -> Conn:
        _, conn = await loop.create_connection(lambda: cls(loop, host, headers), host, port)
        return conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        t = time.monotonic_ns()
        self.buf += data
        response = self.response
        if response is not None:
            try:
                response.feed(self.buf, t)
            except Exception as exc:  # a parse error: fail this response, drop the connection
                response.fail(HttpError(f"bad response: {exc!r}"))
                self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.response is not None:
            self.response.fail(HttpError(f"connection lost: {exc!r}"))

    def send(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        extra: bytes = b"",
        on_event: Callable[[int, str, Stamp], None] | None = None,
    ) -> Response:
        """Send a request; the returned response's `done` resolves when it is complete."""
        if self.closed or self.transport is None:
            raise HttpError("connection closed")
        response = Response(self.loop, on_event)
        self.response = response
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n").encode() + self.base_headers + extra
        if body:
            head += b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n"
        self.transport.write(head + b"\r\n" + body)
        return response

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Client:
    """Connections to one server, with the auth header, and a pool of idle keep-alive ones."""

    def __init__(self, url: str, token: str | None, max_conns: int = 512) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.headers = (f"Authorization: Bearer {token}\r\n" if token else "").encode()
        self.loop = asyncio.get_running_loop()
        self.idle: list[Conn] = []
        self.max_conns = max_conns
        self.opened = 0
        self.open_now = 0
        self._slot = asyncio.Semaphore(max_conns)

    async def connect(self) -> Conn:
        conn = await Conn.open(self.loop, self.host, self.port, self.headers)
        self.opened += 1
        return conn

    async def request(self, method: str, path: str, payload: Any = None) -> Response:
        """A request over a pooled connection (a new one when none is idle)."""
        body = json.dumps(payload).encode() if payload is not None else b""
        async with self._slot:
            conn = None
            while self.idle:
                candidate = self.idle.pop()
                if not candidate.closed:
                    conn = candidate
                    break
            if conn is None:
                conn = await self.connect()
            self.open_now = max(self.open_now, self.max_conns - self._slot._value)
            try:
                response = await conn.send(method, path, body).done
            except BaseException:
                conn.close()
                raise
            if response.headers.get("connection", "").lower() == "close":
                conn.close()
            else:
                self.idle.append(conn)
            return response

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


def task_body(prompt: str, **fields: Any) -> dict[str, Any]:
    return {"prompt": prompt, **fields}


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- scenarios -------------------------------------------------------------------------------------


async def scenario_submit(args: argparse.Namespace) -> dict[str, Any]:
    client = Client(args.url, args.token, args.max_conns)
    # A few warm connections, as a real client pool would have.
    for _ in range(4):
        client.idle.append(await client.connect())
    rate, duration, warmup = args.rate, args.duration, args.warmup
    interval_ns = int(NS / rate)
    total = int(round(rate * (duration + warmup)))
    warm_n = int(round(rate * warmup))
    latencies: list[int] = []
    service: list[int] = []
    lags: list[int] = []
    statuses: dict[str, int] = {}
    errors: list[str] = []
    ids: list[str] = []
    pending: set[asyncio.Task[None]] = set()

    last_answer = [0]

    async def one(i: int, due: Stamp) -> None:
        sent = now()
        try:
            response = await client.request("POST", "/api/tasks", task_body(f"bench task {i}: what to do next?"))
        except Exception as exc:
            if i >= warm_n:
                errors.append(repr(exc)[:200])
            return
        t = now()
        if i < warm_n:
            return
        key = str(response.status)
        statuses[key] = statuses.get(key, 0) + 1
        if response.status != 202:
            if len(errors) < 20:
                errors.append(f"{response.status}: {bytes(response.body[:200]).decode(errors='replace')}")
            return
        latencies.append(t - due)
        service.append(t - sent)
        last_answer[0] = max(last_answer[0], t)
        ids.append(response.json()["id"])

    cpu0 = cpu_s()
    start = now() + 20 * MS
    measured_start = start + warm_n * interval_ns
    for i in range(total):
        due = start + i * interval_ns
        delay = due - now()
        if delay > 0:
            await asyncio.sleep(delay / NS)
        if i >= warm_n:
            lags.append(max(0, now() - due))
        task = asyncio.create_task(one(i, due))
        pending.add(task)
        task.add_done_callback(pending.discard)
    last_due = start + (total - 1) * interval_ns
    if pending:
        await asyncio.wait(pending, timeout=args.drain)
    unanswered = len(pending)
    for task in pending:
        task.cancel()
    measured = total - warm_n
    window_s = (last_due + interval_ns - measured_start) / NS
    ok = len(latencies)
    # How far the embedded worker got with the tasks while this ran (same process as the API).
    stats: dict[str, Any] = {}
    with contextlib.suppress(Exception):
        stats = (await client.request("GET", "/api/stats")).json().get("by_status", {})
    client_cpu = cpu_s() - cpu0
    client.close()
    return {
        "scenario": "submit",
        "target_rate_per_s": rate,
        "duration_s": duration,
        "warmup_s": warmup,
        "sent": measured,
        "ok_202": ok,
        "statuses": statuses,
        "errors": len(errors) + unanswered,
        "error_samples": errors[:5],
        "unanswered": unanswered,
        "sent_rate_per_s": round(measured / window_s, 1),
        # answered per second, from the first due time to the last answer (>= the schedule's window)
        "achieved_rate_per_s": round(ok / max(window_s, (last_answer[0] - measured_start) / NS), 1),
        "latency_ms": summary(latencies),
        "service_time_ms": summary(service),
        "client_send_lag_ms": summary(lags),
        "connections_opened": client.opened,
        "peak_in_flight": client.open_now,
        "tasks_by_status_after": stats,
        "client_cpu_s": round(client_cpu, 2),
        "phases_ns": {"measured": [measured_start, max(last_answer[0], last_due)]},
    }


async def scenario_first_event(args: argparse.Namespace) -> dict[str, Any]:
    client = Client(args.url, args.token)
    post = await client.connect()
    stream = await client.connect()
    to_first: list[int] = []
    to_accepted: list[int] = []
    to_started: list[int] = []
    to_finished: list[int] = []
    errors: list[str] = []
    follow, unfinished = args.follow, 0
    for i in range(args.samples + args.warmup_samples):
        seen: dict[str, Stamp] = {}
        got_first = asyncio.Event()

        def on_event(
            seq: int, kind: str, t: Stamp, seen: dict[str, Stamp] = seen, got_first: asyncio.Event = got_first
        ) -> None:
            seen.setdefault(kind, t)
            got_first.set()

        try:
            if post.closed:
                post = await client.connect()
            if stream.closed:
                stream = await client.connect()
            t0 = now()
            accepted = await post.send("POST", "/api/tasks", json.dumps(task_body(f"first event {i}?")).encode()).done
            t1 = now()
            if accepted.status != 202:
                raise HttpError(f"submit answered {accepted.status}: {bytes(accepted.body[:200])!r}")
            task_id = accepted.json()["id"]
            events = stream.send(
                "GET", f"/api/tasks/{task_id}/events", extra=b"Accept: text/event-stream\r\n", on_event=on_event
            )
            await asyncio.wait_for(got_first.wait(), args.timeout)
            if events.status != 200:
                raise HttpError(f"events answered {events.status}")
            try:  # follow to task_finished (the stream's end), for the figures beside the first event
                await asyncio.wait_for(asyncio.shield(events.done), follow)
            except TimeoutError:
                stream.close()  # not finished (no worker?): drop this stream, open a new connection
                unfinished += 1
                if unfinished >= 3:
                    follow = 0.0  # tasks do not finish here: measure the first event only

        except Exception as exc:
            errors.append(repr(exc)[:200])
            post.close()
            stream.close()
            continue
        if i < args.warmup_samples:
            continue
        to_accepted.append(t1 - t0)
        to_first.append(events.first_data_ns - t0)
        if "task_started" in seen:
            to_started.append(seen["task_started"] - t0)
        if "task_finished" in seen:
            to_finished.append(seen["task_finished"] - t0)
        await asyncio.sleep(args.gap)
    client.close()
    post.close()
    stream.close()
    return {
        "scenario": "first-event",
        "method": "POST /api/tasks, then GET /api/tasks/{id}/events right after the 202 (keep-alive connections); "
        "time from sending the POST to the first data: line (the replayed task_queued)",
        "samples": len(to_first),
        "errors": len(errors),
        "error_samples": errors[:5],
        "submit_to_first_event_ms": summary(to_first),
        "submit_to_202_ms": summary(to_accepted),
        "submit_to_task_started_ms": summary(to_started),
        "submit_to_task_finished_ms": summary(to_finished),
        "streams_not_finished": unfinished,
    }


def task_agents(i: int, pool: int) -> list[str]:
    """The three agents task i runs in sequence: different latencies per task, so that the tasks'
    step boundaries do not all fall at the same instant."""
    return [f"s{i % pool}", f"s{(i + 3) % pool}", f"s{(i + 7) % pool}"]


async def scenario_sse(args: argparse.Namespace) -> dict[str, Any]:
    client = Client(args.url, args.token)
    cpu0 = cpu_s()
    await client.request("POST", "/_bench/start")
    # One gate per task (agent gate<i>, latency gate + i * stagger in the server's config): the
    # tasks start a little apart, as independent tasks would, not all in the same instant.
    gate_ids: list[str] = []
    for i in range(args.tasks):
        gate = await client.request(
            "POST",
            "/api/tasks",
            task_body(f"gate {i}: hold task {i} until all clients listen", strategy="single", agents=[f"gate{i}"]),
        )
        if gate.status != 202:
            raise SystemExit(f"gate task: {gate.status} {bytes(gate.body)!r}")
        gate_ids.append(gate.json()["id"])
    task_ids: list[str] = []
    for i in range(args.tasks):
        r = await client.request(
            "POST",
            "/api/tasks",
            task_body(
                f"fan-out task {i}: follow me",
                strategy="sequential",
                agents=task_agents(i, args.agent_pool),
                after=[gate_ids[i]],
            ),
        )
        if r.status != 202:
            raise SystemExit(f"task {i}: {r.status} {bytes(r.body)!r}")
        task_ids.append(r.json()["id"])

    # received[k] = list of (seq, type, t) for client k
    received: list[list[tuple[int, str, Stamp]]] = [[] for _ in range(args.clients)]
    subscribed: list[Stamp] = [0] * args.clients  # first data: line (the replayed task_waiting)
    connect_errors: list[str] = []
    streams: list[Response | None] = [None] * args.clients
    conns: list[Conn] = []
    sem = asyncio.Semaphore(args.connect_concurrency)

    async def open_stream(k: int) -> None:
        log = received[k]
        live = asyncio.Event()

        def on_event(seq: int, kind: str, t: Stamp) -> None:
            log.append((seq, kind, t))
            if not subscribed[k]:
                subscribed[k] = t
                live.set()

        async with sem:
            try:
                conn = await client.connect()
                conns.append(conn)
                response = conn.send(
                    "GET",
                    f"/api/tasks/{task_ids[k % args.tasks]}/events",
                    extra=b"Accept: text/event-stream\r\n",
                    on_event=on_event,
                )
                streams[k] = response
                first = asyncio.ensure_future(live.wait())
                await asyncio.wait([first, response.done], timeout=args.timeout, return_when=asyncio.FIRST_COMPLETED)
                first.cancel()
                if not subscribed[k]:
                    connect_errors.append(f"client {k}: no first event within {args.timeout}s")
            except Exception as exc:
                connect_errors.append(f"client {k}: {exc!r}"[:200])

    t_connect0 = now()
    await asyncio.gather(*(open_stream(k) for k in range(args.clients)))
    all_subscribed = now()
    waits = [r.done for r in streams if r is not None]
    done, not_done = (
        await asyncio.wait(waits, timeout=args.gate + args.stagger * args.tasks + args.timeout)
        if waits
        else (set(), set())
    )
    finished = now()
    stream_errors = [repr(f.exception())[:200] for f in done if f.exception() is not None]
    statuses: dict[str, int] = {}
    for r in streams:
        if r is not None:
            statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
    for conn in conns:
        conn.close()

    stamps_resp = await client.request("POST", "/_bench/stamps", [*gate_ids, *task_ids])
    bench_data = stamps_resp.json() if stamps_resp.status == 200 else {}
    stamps: dict[str, dict[str, int]] = bench_data.get("stamps", {})
    loop_lag: list[tuple[int, int]] = bench_data.get("loop_lag", [])
    gc_pauses: list[tuple[int, int, int, int]] = bench_data.get("gc", [])
    client.close()
    client_cpu = cpu_s() - cpu0

    # Completeness: every client got seq 1..n of its task, in order, ending with task_finished.
    final_seq: dict[str, int] = {}
    for tid in task_ids:
        seqs = [int(s) for s in stamps.get(tid, {})]
        final_seq[tid] = max(seqs) if seqs else 0
    complete = 0
    incomplete: list[str] = []
    for k in range(args.clients):
        tid = task_ids[k % args.tasks]
        seqs = [s for s, _, _ in received[k]]
        ok = bool(seqs) and seqs == list(range(1, len(seqs) + 1)) and received[k][-1][1] == "task_finished"
        if ok and final_seq[tid] and len(seqs) != final_seq[tid]:
            ok = False
        if ok:
            complete += 1
        elif len(incomplete) < 5:
            incomplete.append(
                f"client {k} task {tid}: {len(seqs)} events, last "
                f"{received[k][-1][1] if received[k] else None}, expected {final_seq[tid]}"
            )

    # Delays. Absolute: receive - server publish stamp, for events published after the client's
    # stream was live (its first event arrived). Relative: receive - earliest receiver of that event.
    first_recv: dict[tuple[int, int], Stamp] = {}
    for k in range(args.clients):
        ti = k % args.tasks
        for seq, _, t in received[k]:
            key = (ti, seq)
            if t < first_recv.get(key, t + 1):
                first_recv[key] = t
    # The server stamps runtime events (run_*, step_*, text_delta) as they are created: TaskLog.emit
    # publishes at once. Lifecycle events (task_*) are written by a transaction and published when it
    # commits, and a follower's log poll may read them first: for those the creation time is taken
    # as min(publish stamp, earliest receipt), which makes their delay a lower bound.
    absolute: list[int] = []
    lifecycle: list[int] = []
    relative: list[int] = []
    absolute_by_type: dict[str, list[int]] = {}
    replayed = 0
    missing_stamp = 0
    for k in range(args.clients):
        ti = k % args.tasks
        task_stamps = stamps.get(task_ids[ti], {})
        for seq, kind, t in received[k]:
            stamp = task_stamps.get(str(seq))
            if stamp is None:
                missing_stamp += 1
                continue
            if stamp < subscribed[k]:
                replayed += 1  # logged before this client listened: read back from the log
                continue
            first = first_recv[(ti, seq)]
            if kind.startswith("task_"):
                delay = t - min(stamp, first)
                lifecycle.append(delay)
            else:
                delay = t - stamp
                absolute.append(delay)
            absolute_by_type.setdefault(kind, []).append(delay)
            relative.append(t - first)
    # Per task, from the server's stamps and the event types: claim delay and run time.
    kinds: dict[int, dict[int, str]] = {}
    for k in range(min(args.clients, args.tasks)):
        kinds[k] = {seq: kind for seq, kind, _ in received[k]}
    ready_to_started: list[int] = []
    started_to_finished: list[int] = []
    for ti, seq_kind in kinds.items():
        by_kind = {kind: stamps.get(task_ids[ti], {}).get(str(seq)) for seq, kind in seq_kind.items()}
        if by_kind.get("task_ready") and by_kind.get("task_started"):
            ready_to_started.append(by_kind["task_started"] - by_kind["task_ready"])
        if by_kind.get("task_started") and by_kind.get("task_finished"):
            started_to_finished.append(by_kind["task_finished"] - by_kind["task_started"])

    live_events = sum(1 for tid in task_ids for s, v in stamps.get(tid, {}).items() if v >= all_subscribed)
    ready_stamps = [
        min(v.values()) for tid in task_ids if (v := {s: x for s, x in stamps.get(tid, {}).items() if int(s) > 1})
    ]
    run_start = min(ready_stamps) if ready_stamps else 0
    return {
        "scenario": "sse",
        "clients": args.clients,
        "tasks": args.tasks,
        "clients_per_task": args.clients / args.tasks,
        "agent_pool": args.agent_pool,
        "gate_s": args.gate,
        "stagger_s": args.stagger,
        "connect_s": round((all_subscribed - t_connect0) / NS, 3),
        "all_subscribed_before_tasks_ran": bool(run_start) and all_subscribed <= run_start,
        "subscribed_margin_s": round((run_start - all_subscribed) / NS, 3) if run_start else None,
        "run_s": round((finished - max(all_subscribed, run_start)) / NS, 3) if run_start else None,
        "statuses": statuses,
        "connect_errors": len(connect_errors),
        "connect_error_samples": connect_errors[:5],
        "stream_errors": len(stream_errors),
        "stream_error_samples": stream_errors[:5],
        "streams_not_finished": len(not_done),
        "clients_complete": complete,
        "incomplete_samples": incomplete,
        "events_per_task": round(sum(final_seq.values()) / max(1, len(final_seq)), 1),
        "events_published_live": live_events,
        "deliveries": sum(len(r) for r in received),
        "deliveries_live": len(absolute) + len(lifecycle),
        "deliveries_replayed": replayed,
        "deliveries_without_stamp": missing_stamp,
        "delay_abs_ms": summary(absolute),
        "delay_abs_lifecycle_ms": summary(lifecycle),
        "delay_rel_ms": summary(relative),
        "delay_abs_ms_by_type": {kind: summary(v) for kind, v in sorted(absolute_by_type.items())},
        "task_ready_to_started_ms": summary(ready_to_started),
        "task_started_to_finished_ms": summary(started_to_finished),
        "server_loop_lag_ms": {
            phase: summary([lag for t, lag in loop_lag if a <= t <= b], total=True)
            for phase, (a, b) in {
                "connect": (t_connect0, all_subscribed),
                "idle_subscribed": (all_subscribed, run_start or all_subscribed),
                "run": (max(all_subscribed, run_start), finished),
            }.items()
        },
        "server_gc_pauses": {
            f"gen{g}": {
                "count": len(p),
                "total_ms": round(sum(x[2] for x in p) / MS, 1),
                "max_ms": round(max(x[2] for x in p) / MS, 1),
                "collected": sum(x[3] for x in p),
                "in_run": sum(1 for x in p if run_start and run_start <= x[0] <= finished),
            }
            for g in (0, 1, 2)
            if (p := [x for x in gc_pauses if x[1] == g])
        },
        "server_gc_objects_at_end": bench_data.get("gc_objects"),
        "client_cpu_s": round(client_cpu, 2),
        "phases_ns": {
            "connect": [t_connect0, all_subscribed],
            "idle_subscribed": [all_subscribed, run_start or all_subscribed],
            "run": [max(all_subscribed, run_start), finished],
        },
    }


SCENARIOS = {"submit": scenario_submit, "first-event": scenario_first_event, "sse": scenario_sse}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", default=os.environ.get("LOOMIQ_BENCH_TOKEN"))
    parser.add_argument("--rate", type=float, default=200.0, help="submit: requests per second")
    parser.add_argument("--duration", type=float, default=10.0, help="submit: measured seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="submit: warm-up seconds (not measured)")
    parser.add_argument("--drain", type=float, default=10.0, help="submit: wait this long for the last answers")
    parser.add_argument("--max-conns", type=int, default=512, help="submit: connection pool limit")
    parser.add_argument("--samples", type=int, default=100, help="first-event: measured tasks")
    parser.add_argument("--warmup-samples", type=int, default=5)
    parser.add_argument("--gap", type=float, default=0.01, help="first-event: pause between tasks")
    parser.add_argument("--follow", type=float, default=2.0, help="first-event: how long to wait for task_finished")
    parser.add_argument("--clients", type=int, default=1000, help="sse: concurrent streams")
    parser.add_argument("--tasks", type=int, default=20, help="sse: tasks the clients follow")
    parser.add_argument(
        "--agent-pool",
        type=int,
        default=10,
        help="sse: agents s0..s<N-1> in the server's config; task i runs s<i>, s<i+3>, s<i+7> (mod N) in sequence",
    )
    parser.add_argument("--gate", type=float, default=8.0, help="sse: agent gate0's latency (server config)")
    parser.add_argument("--stagger", type=float, default=0.05, help="sse: gate<i>'s latency is gate + i * stagger")
    parser.add_argument("--connect-concurrency", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        runner: Any = asyncio.run
        loop_name = "asyncio"
    else:
        runner = uvloop.run
        loop_name = "uvloop"
    result = runner(SCENARIOS[args.scenario](args))
    result["client_loop"] = loop_name
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
