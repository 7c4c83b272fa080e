"""How the CLI shows a run to a person: a live `rich` table on a terminal, plain progressive lines
anywhere else (pipes, logs, tests), and the same final summary for both.

The plain lines come from one place, `EventPrinter`, which matches on the typed events (a durable
task's log is decoded into the same classes), so `loomiq run`, `loomiq run --durable` and
`loomiq wait` print a run the same way. Text from models, tools and agents is shown only through
`safe` (no terminal control sequence reaches the terminal)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import get_args

import typer
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from ..engine import TaskEvent
from ..orchestrator import RunPlan
from ..runtime import (
    AgentFailedOver,
    ApprovalRequested,
    ApprovalResolved,
    Event,
    EventDecodeError,
    NodeFinished,
    NodeStarted,
    RunEvent,
    RunFinished,
    RunResult,
    RunStarted,
    StepDelta,
    StepFinished,
    StepRestarted,
    StepStarted,
    SubworkflowFinished,
    SubworkflowStarted,
    TaskHandedBack,
    TaskQueued,
    TaskReady,
    TaskRetrying,
    TaskStarted,
    TaskWaiting,
    ToolFinished,
    ToolRefused,
    ToolSerialized,
    WorkflowEvent,
    WorkflowFinished,
    WorkflowPaused,
    WorkflowResumed,
    WorkflowStarted,
)
from ._common import fmt_cost, fmt_ms, fmt_tokens
from ._terminal import safe, safe_line

SCRIPTED_NOTE = "offline: these answers come from loomiq's built-in scripted agents, not a real model"


def strategy_line(strategy: str, reason: str) -> str:
    """``consensus (why it was chosen)``; an explicit choice says so."""
    return f"{strategy} ({reason or 'chosen with --strategy'})"


def summary_rows(result: RunResult) -> list[tuple[str, str]]:
    """(label, value) pairs describing a finished run, for either display."""
    rows: list[tuple[str, str]] = [("status", result.status)]
    if result.error:
        rows.append(("error", safe_line(result.error)))
    rows.append(("strategy", safe_line(strategy_line(result.strategy, result.strategy_reason))))
    rows.extend(("note", safe_line(note)) for note in result.notes)
    rows.append(("answered", safe_line(", ".join(result.answered)) or "none"))
    failed = result.failed
    if not failed:
        rows.append(("failed", "none"))
    for agent, why in failed.items():
        rows.append(("failed", safe_line(f"{agent} ({why})")))
    u = result.usage
    rows.append(("tokens", f"{fmt_tokens(u.total_tokens)} ({fmt_tokens(u.input_tokens)} in, "
                           f"{fmt_tokens(u.output_tokens)} out)"))
    rows.append(("cost", fmt_cost(result.cost_usd)))
    rows.append(("duration", fmt_ms(result.duration_ms)))
    if result.offline:
        rows.append(("answers", "offline scripted answers, not a real model's"))
    return rows


def header_lines(notice: str | None, strategy: str, reason: str, agents: Iterable[str]) -> list[str]:
    """The lines that announce a run: the offline notice (if any), then strategy and agents."""
    lines = [notice] if notice else []
    lines.append(f"strategy: {strategy_line(strategy, reason)}")
    lines.append(f"agents: {', '.join(agents)}")
    return lines


class EventPrinter:
    """One plain line per typed event of a run or task (`loomiq.runtime.Event`, matched on its
    class): the one display of `loomiq run`, `loomiq run --durable` and `loomiq wait`. Text deltas
    are not echoed (concurrent steps would interleave them; the output is printed whole at the end).
    With `lifecycle`, a durable task's queue events (queued, started, retrying...) get a line too.
    Remembers whether the run said it was `offline`, and its `result` once it finished. Every text
    from a model, tool or agent goes through `safe` first."""

    def __init__(self, write: Callable[[str], None] = typer.echo, lifecycle: bool = True,
                 notice: str | None = None) -> None:
        self.write = write
        self.lifecycle = lifecycle
        self.notice = notice
        """The offline notice to head the run with (None: the scripted note when the run is offline)."""
        self.offline = False
        self.result: RunResult | None = None

    def __call__(self, event: Event) -> None:
        line = self.line(event)
        if line is not None:
            self.write(line)

    def line(self, event: Event) -> str | None:  # noqa: PLR0911 - one case per event type
        """The line for one event, or None for events not shown."""
        match event:
            case RunStarted():
                self.offline = event.offline
                notice = self.notice if self.notice is not None else (SCRIPTED_NOTE if event.offline else None)
                return "\n".join(header_lines(notice, safe_line(event.strategy), safe_line(event.reason),
                                               map(safe_line, event.agents)))
            case StepStarted():
                return f"[{safe_line(event.step)}] {safe_line(event.agent)} working ({safe_line(event.role)})"
            case AgentFailedOver():
                return (f"[{safe_line(event.step)}] {safe_line(event.from_agent)} failed over to "
                        f"{safe_line(event.to_agent)}: {safe_line(event.error)}")
            case StepRestarted():
                return (f"[{safe_line(event.step)}] {safe_line(event.agent)} starts its answer again: "
                        f"{safe_line(event.error)}")
            case ToolFinished():
                r = event.record
                outcome = f"error: {safe_line(r.error)}" if r.error else _one_line(safe_line(r.excerpt))
                return (f"[{safe_line(event.step)}] {safe_line(event.agent)} tool {safe_line(r.name)} "
                        f"({fmt_ms(r.duration_ms)}): {outcome}")
            case ToolRefused():
                r = event.record
                return (f"[{safe_line(event.step)}] {safe_line(event.agent)} tool {safe_line(r.name)} refused: "
                        f"{safe_line(r.error or '')}")
            case ToolSerialized():
                waits = ", ".join(f"#{i}" for i in event.waits_for)
                return (f"[{safe_line(event.step)}] {safe_line(event.agent)} tool {safe_line(event.name)} waits for "
                        f"call {waits} (same resource)")
            case StepFinished():
                st = event.result
                if st.error is None:
                    return (f"[{safe_line(st.key)}] {safe_line(st.agent)} done: {fmt_tokens(st.usage.total_tokens)} "
                            f"tokens, {fmt_cost(st.cost_usd)}, {fmt_ms(st.duration_ms)}")
                return f"[{safe_line(st.key)}] {safe_line(st.agent)} failed: {safe_line(st.error)}"
            case RunFinished():
                self.result = event.result
                return None
        if isinstance(event, _WORKFLOW_EVENTS):
            return workflow_line(event)
        if not self.lifecycle:
            return None
        match event:
            case TaskQueued():
                return f"queued (priority {safe_line(event.priority)})"
            case TaskWaiting():
                return f"waiting for {', '.join(map(safe_line, event.after)) or 'its dependencies'}"
            case TaskReady():
                return "ready: its dependencies completed"
            case TaskStarted():
                resumed = ", resumed from its journal" if event.resumed or event.attempt > 1 else ""
                return f"started: attempt {event.attempt} on worker {safe_line(event.worker)}{resumed}"
            case TaskHandedBack():
                return (f"handed back by worker {safe_line(event.worker)} (attempt {event.attempt}); "
                        "another worker resumes it")
            case TaskRetrying():
                return (f"attempt {event.attempt} failed ({safe_line(event.error or '')}); "
                        f"retrying in {event.delay_s:g}s")
        return None


_WORKFLOW_EVENTS = get_args(WorkflowEvent)


def workflow_line(event: WorkflowEvent) -> str:  # noqa: PLR0911 - one case per event type
    """The line for one event of a workflow run's log (`loomiq workflow events`)."""
    match event:
        case WorkflowStarted():
            parent = event.parent or {}
            child = (f" (child run of {safe_line(str(parent.get('run')))}, node {safe_line(str(parent.get('node')))})"
                     if parent else "")
            return f"workflow {safe_line(event.workflow)} v{event.version} started{child}"
        case NodeStarted():
            return (f"[{_node(event.node, event.index)}] attempt {event.attempt} started "
                    f"(task {safe_line(event.task_id)})")
        case NodeFinished():
            error = f": {safe_line(event.error)}" if event.error else ""
            return f"[{_node(event.node, event.index)}] attempt {event.attempt} {safe_line(event.status)}{error}"
        case ApprovalRequested():
            return (f"[{safe_line(event.node)}] waiting for approval {safe_line(event.approval_id)}: "
                    f"{safe_line(event.message)}")
        case ApprovalResolved():
            by = f" by {safe_line(event.decided_by)}" if event.decided_by else ""
            comment = f": {safe_line(event.comment)}" if event.comment else ""
            return (f"[{safe_line(event.node)}] approval {safe_line(event.approval_id)} "
                    f"{safe_line(event.outcome)}{by}{comment}")
        case SubworkflowStarted():
            return (f"[{safe_line(event.node)}] subworkflow {safe_line(event.workflow)} started as run "
                    f"{safe_line(event.run_id)}")
        case SubworkflowFinished():
            error = f": {safe_line(event.error)}" if event.error else ""
            return (f"[{safe_line(event.node)}] subworkflow run {safe_line(event.run_id)} "
                    f"{safe_line(event.status)}{error}")
        case WorkflowPaused():
            return "paused: nothing new starts until it is resumed"
        case WorkflowResumed():
            return "resumed"
        case WorkflowFinished():
            error = f": {safe_line(event.error)}" if event.error else ""
            return f"workflow {safe_line(event.status)}{error}"


def _node(node: str, index: int | None) -> str:
    return safe_line(node) if index is None else f"{safe_line(node)}#{index}"


def typed(entry: TaskEvent) -> Event | None:
    """The typed event a task log's entry holds, or None for one this version does not know (a
    newer writer's type: not shown, never fatal)."""
    try:
        return entry.event
    except EventDecodeError:
        return None


def finish_lines(result: RunResult, notice: str | None) -> list[str]:
    """The final output, then the summary: how every plain display ends a run (`notice`: the offline
    notice the run was headed with, if any)."""
    lines = ["", "output:", safe(result.output) if result.output else "(no output)", ""]
    rows = summary_rows(result)
    width = max(len(label) for label, _ in rows) + 1
    lines.extend(f"{label + ':':<{width}} {value}" for label, value in rows)
    if result.offline and notice is None:
        lines.append("offline: some answers come from loomiq's built-in scripted agents, not a real model")
    return lines


def _one_line(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class PlainDisplay:
    """Progressive plain-text lines, one per step event (`EventPrinter`); no colours, no cursor
    movement."""

    def __init__(self, notice: str | None) -> None:
        self.notice = notice
        self._printer = EventPrinter(self._line, lifecycle=False, notice=notice)

    def _line(self, text: str = "") -> None:
        typer.echo(text)

    async def begin(self, plan: RunPlan) -> None:
        """Nothing yet: the run's first event, `RunStarted`, announces it."""

    def event(self, event: RunEvent) -> None:
        """One line per event shown, as `EventPrinter` writes it."""
        self._printer(event)

    async def close(self) -> None:
        """Nothing to stop."""

    async def finish(self, result: RunResult) -> None:
        """The final output, then the summary."""
        for line in finish_lines(result, self.notice):
            self._line(line)


_STATE_STYLE = {
    "waiting": "dim", "done": "green", "failed": "bold red", "failed over": "magenta",
    "cancelled": "yellow", "timed out": "yellow", "stopped": "yellow",
}


@dataclass(slots=True)
class _Row:
    agent: str
    step: str | None = None
    role: str = ""
    state: str = "waiting"
    tokens: int | None = None
    cost: float | None = None
    started: float = 0.0
    ms: float | None = None
    detail: str = ""
    text: list[str] = field(default_factory=list)


class LiveDisplay:
    """A `rich` Live table (one row per agent step) with the text being streamed under it."""

    refresh_s = 0.1
    tail_lines = 6

    def __init__(self, notice: str | None, console: Console | None = None) -> None:
        self.notice = notice
        self.console = console or Console(highlight=False)
        self.rows: list[_Row] = []
        self._streaming: _Row | None = None
        self._live: Live | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._done = False

    async def begin(self, plan: RunPlan) -> None:
        """Print the header and start the live table with every planned agent waiting."""
        c = self.console
        if self.notice:
            c.print(Text(self.notice, style="bold yellow"))
        c.print(Text.assemble(("strategy ", "bold"), (plan.strategy.name, "cyan"),
                              (safe_line(f" ({plan.reason or 'chosen with --strategy'})"), "dim")))
        self.rows = [_Row(a.id) for a in plan.agents]
        # Refreshed from the event loop (auto_refresh off) so rendering never races the updates.
        self._live = Live(console=c, auto_refresh=False, get_renderable=self._render, transient=False)
        self._live.start()
        self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            if self._live is not None:
                self._live.refresh()

    def _row(self, step: str, agent: str) -> _Row | None:
        for row in reversed(self.rows):
            if row.step == step and row.agent == agent:
                return row
        return None

    def event(self, event: RunEvent) -> None:
        """Update the rows (and the streamed text) from one run event."""
        if isinstance(event, StepStarted):
            row = next((r for r in self.rows if r.step is None and r.agent == event.agent), None)
            if row is None:
                row = _Row(event.agent)
                self.rows.append(row)
            row.step, row.role, row.state = event.step, safe_line(event.role), "working"
            row.started = time.perf_counter()
        elif isinstance(event, StepDelta):
            row = self._row(event.step, event.agent)
            if row is not None:
                row.text.append(safe(event.text))
                self._streaming = row
        elif isinstance(event, StepRestarted):
            row = self._row(event.step, event.agent)
            if row is not None:  # the failed call's text is void: the retry's replaces it
                kept = "".join(row.text)
                row.text = [kept[:max(0, len(kept) - event.void_chars)]]
                row.detail = safe_line(f"retrying: {event.error}")
        elif isinstance(event, AgentFailedOver):
            row = self._row(event.step, event.from_agent)
            if row is not None:
                row.state, row.detail = "failed over", safe_line(f"→ {event.to_agent}: {event.error}")
                row.ms = (time.perf_counter() - row.started) * 1000
        elif isinstance(event, ToolFinished | ToolRefused):
            row = self._row(event.step, event.agent)
            if row is not None:
                r = event.record
                row.detail = safe_line(f"tool {r.name}: " + (f"{r.status}: {r.error}" if r.error else "ok"))
        elif isinstance(event, StepFinished):
            s = event.result
            row = self._row(s.key, s.agent)
            if row is not None:
                row.state = "done" if s.ok else "failed"
                row.detail = safe_line(s.error or "")
                row.tokens, row.cost = s.usage.total_tokens, s.cost_usd
                # A step's own duration includes the agents it failed over from; the row is one agent's.
                row.ms = s.duration_ms if not s.failed_over_from else (time.perf_counter() - row.started) * 1000

    @property
    def _width(self) -> int:
        return max(24, self.console.width - 2)

    def _table(self) -> Table:
        # Expanded so the fixed columns keep their natural width and only the detail column shrinks;
        # short of the last columns so a "^C" echoed by the terminal does not wrap and shift the display.
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, expand=True, width=self._width,
                      padding=(0, 1, 0, 0))
        table.add_column("agent", style="bold", no_wrap=True)
        table.add_column("role", no_wrap=True)
        table.add_column("state", no_wrap=True)
        table.add_column("tokens", justify="right", no_wrap=True)
        table.add_column("cost", justify="right", no_wrap=True)
        table.add_column("ms", justify="right", no_wrap=True)
        table.add_column("", style="dim", overflow="ellipsis", no_wrap=True, ratio=1)
        now = time.perf_counter()
        for row in self.rows:
            state: RenderableType
            if row.state == "working" and not self._done:
                state = Spinner("dots", text=Text("working", style="yellow"), style="yellow")
            else:
                state = Text(row.state, style=_STATE_STYLE.get(row.state, ""))
            ms = row.ms if row.ms is not None else ((now - row.started) * 1000 if row.state == "working" else None)
            table.add_row(
                safe_line(row.agent),
                row.role or "—",
                state,
                fmt_tokens(row.tokens) if row.tokens is not None else "",
                fmt_cost(row.cost) if row.cost is not None else "",
                f"{ms:,.0f}" if ms is not None else "",
                row.detail,
            )
        return table

    def _render(self) -> RenderableType:
        table = self._table()
        row = self._streaming
        if self._done or row is None or row.state != "working":
            return table
        width = self._width - 4
        lines = Text("".join(row.text)).wrap(self.console, width)
        tail = Text("\n").join(lines[-self.tail_lines:])
        title = Text.assemble((safe_line(row.agent), "bold"), safe_line(f" · {row.role} · {row.step}"))
        return Group(table, Panel(tail, title=title, title_align="left", border_style="dim", width=width + 4))

    async def close(self) -> None:
        """Stop the live display (if still running), leaving the table on screen."""
        self._done = True
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
            self._live = None

    async def finish(self, result: RunResult) -> None:
        """Stop the table (steps still working when a run is cancelled or timed out are marked so),
        then print the final output under a rule and the summary as a two-column grid."""
        ended = {"cancelled": "cancelled", "timed_out": "timed out"}.get(result.status, "stopped")
        now = time.perf_counter()
        for row in self.rows:
            if row.state == "working":
                row.state, row.ms = ended, (now - row.started) * 1000
        await self.close()
        c = self.console
        title = "output (offline scripted answer, not a real model's)" if result.offline else "output"
        c.print()
        c.rule(Text(title, style="bold"), align="left")
        c.print(Text(safe(result.output)) if result.output else Text("(no output)", style="dim"))
        c.rule(style="dim")
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column()
        styles = {"completed": "green", "failed": "bold red", "timed_out": "bold red", "cancelled": "yellow"}
        for label, value in summary_rows(result):
            style = styles.get(value, "") if label == "status" else ("red" if label == "error" else "")
            if label == "answers":
                style = "yellow"
            grid.add_row(label, Text(value, style=style))
        c.print(grid)
