"""Durable tasks from the command line: `loomiq submit`, `status`, `wait`, `cancel`, `tasks` (and
`register`, which adds them and `loomiq worker`, in `_worker`, to the app).

They all talk to the engine's database (`_database`): ``--database URL``, else ``$LOOMIQ_DATABASE_URL``,
else the SQLite file ``loomiq.db`` in the working directory. `submit` returns the task id as soon as
the task is committed; a `loomiq worker` (any number of them, on any machine that reaches the
database) runs it. Problems the user can fix (unknown task id, unknown dependency, a cycle, a bad
option, a database that cannot be opened) end as one ``loomiq: error: ...`` line on stderr with exit
code 2.

Exit codes: `wait` 0 when the task completed and 1 otherwise; `cancel` 1 when the task had already
ended.
"""
from __future__ import annotations

import asyncio
import json
import re
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from ..config import find_config
from ..orchestrator import Orchestrator
from ._common import (
    fail,
    fmt_cost,
    fmt_ms,
    fmt_tokens,
    offline_notice,
    read_prompt,
    split_list,
    strategy_options,
)
from ._database import (
    DatabaseOption,
    JsonOption,
    check_tenant,
    load_orchestrator,
    print_json,
    run_async,
    when,
    with_engine,
)
from ._display import SCRIPTED_NOTE, EventPrinter, finish_lines, typed
from ._options import (
    AgentsOption,
    AllowFewerOption,
    CapabilitiesOption,
    ConfigOption,
    FailoverOutsideOption,
    PromptArgument,
    PromptFileOption,
    StrategyOption,
    TenantOption,
    ToolsOption,
)
from ._terminal import safe, safe_line
from ._worker import worker_command

if TYPE_CHECKING:
    from ..engine import Priority, TaskStatus

PRIORITIES = ("critical", "high", "medium", "low")
STATUSES = ("queued", "waiting", "running", "completed", "failed", "cancelled", "timed_out")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")

TaskIdArgument = Annotated[str, typer.Argument(help="The task id (as `loomiq submit` printed it).",
                                               show_default=False)]


# -- shared pieces --------------------------------------------------------------------------------


def check_id(task_id: str) -> str:
    """The id, or a one-line error for one that no task can have."""
    if not _ID.match(task_id):
        fail(f"{task_id!r} is not a task id (letters, digits and _ . : -, at most 128 characters)")
    return task_id


async def _tenant_task(o: Orchestrator, task_id: str, tenant: str) -> Any:
    """The task, when it belongs to `tenant`; else TaskNotFound saying whose it is and what to add."""
    from ..engine import TaskNotFound

    try:
        task = await o.get_task(task_id)
    except TaskNotFound:
        raise TaskNotFound(f"no task {task_id} in this database: `loomiq tasks` lists them (--database or "
                           "$LOOMIQ_DATABASE_URL picks another database)") from None
    if task.tenant_id != tenant:
        raise TaskNotFound(f"task {task_id} is not in tenant {tenant} (it belongs to tenant {task.tenant_id}): "
                           f"add --tenant {task.tenant_id}")
    return task


async def _same_tenant_dependencies(o: Orchestrator, deps: list[str], tenant: str) -> None:
    """A task may only wait on tasks of its own tenant (unknown ids are the engine's to report)."""
    from ..engine import TaskNotFound

    for dep in deps:
        try:
            await _tenant_task(o, dep, tenant)
        except TaskNotFound as exc:
            if "belongs to tenant" in str(exc):
                fail(f"--after {dep}: {exc.args[0]}")


def _task_json(task: Any) -> dict[str, Any]:
    data: dict[str, Any] = task.to_dict()
    data["offline"] = task.result.get("offline") if task.result else None
    return data


def task_lines(task: Any) -> list[str]:
    """A finished task's own rows (id, tenant, attempts), under its run's summary."""
    rows = [("task", task.id), ("tenant", task.tenant_id), ("attempts", str(task.attempts))]
    return [f"{label + ':':<9} {value}" for label, value in rows]


def summary_lines(task: Any) -> list[str]:
    """The final output and a summary of a finished task."""
    out = ["", "output:", safe(task.output) if task.output else "(no output)", ""]
    rows: list[tuple[str, str]] = [("task", task.id), ("tenant", task.tenant_id), ("status", task.status)]
    if task.error:
        rows.append(("error", safe_line(task.error)))
    rows.append(("attempts", str(task.attempts)))
    u = task.usage
    rows.append(("tokens", f"{fmt_tokens(u.total_tokens)} ({fmt_tokens(u.input_tokens)} in, "
                           f"{fmt_tokens(u.output_tokens)} out)"))
    rows.append(("cost", fmt_cost(task.cost_usd)))
    if task.started_at is not None and task.finished_at is not None:
        rows.append(("duration", fmt_ms((task.finished_at - task.started_at) * 1000)))
    if task.result and task.result.get("offline"):
        rows.append(("answers", "offline scripted answers, not a real model's"))
    width = max(len(label) for label, _ in rows) + 1
    out.extend(f"{label + ':':<{width}} {value}" for label, value in rows)
    return out


# -- loomiq submit --------------------------------------------------------------------------------


def submit_command(
    prompt: PromptArgument = None,
    strategy: StrategyOption = "auto",
    agents: AgentsOption = None,
    capabilities: CapabilitiesOption = None,
    tools: ToolsOption = None,
    priority: Annotated[str, typer.Option(
        "--priority", "-p", help=f"Queue priority: {', '.join(PRIORITIES)}.",
    )] = "medium",
    after: Annotated[list[str] | None, typer.Option(
        "--after", help="A task that must complete first (repeat, or separate ids with commas); its output "
                        "reaches this task.", show_default=False,
    )] = None,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", help="Fail the task if it runs longer than this many seconds.", show_default=False,
    )] = None,
    idempotency_key: Annotated[str | None, typer.Option(
        "--idempotency-key", help="Submitting the same key again returns the first task's id.", show_default=False,
    )] = None,
    task_id: Annotated[str | None, typer.Option(
        "--id", help="Choose the task's id (default: a fresh one).", show_default=False,
    )] = None,
    database: DatabaseOption = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
    prompt_file: PromptFileOption = None,
    tenant: TenantOption = "default",
    allow_fewer: AllowFewerOption = False,
    failover_outside: FailoverOutsideOption = False,
) -> None:
    """Queue a durable task and print its id at once; a `loomiq worker` runs it.

    Exit codes: 0 queued, 2 bad usage (unknown dependency, cycle, bad option, config or database).
    """
    text = read_prompt(prompt, prompt_file)
    check_tenant(tenant)
    options = strategy_options(strategy, allow_fewer)
    if priority not in PRIORITIES:
        fail(f"unknown priority {priority!r} (choose from {', '.join(PRIORITIES)})")
    if timeout is not None and not timeout > 0:
        fail(f"--timeout must be a positive number of seconds, not {timeout:g}")
    deps = [d for value in after or () for d in split_list(value)]
    for dep in deps:
        check_id(dep)
    if task_id is not None:
        check_id(task_id)
    if idempotency_key is not None and not idempotency_key.strip():
        fail("--idempotency-key is empty")
    orch = load_orchestrator(config)

    async def body(o: Orchestrator) -> Any:
        if task_id is not None and idempotency_key is None:
            from ..engine import TaskNotFound

            try:
                await o.get_task(task_id)
            except TaskNotFound:
                pass
            else:
                fail(f"a task with id {task_id} already exists")
        await _same_tenant_dependencies(o, deps, tenant)
        submitted = await o.submit(
            text, strategy=strategy, agents=split_list(agents) or None, capabilities=split_list(capabilities),
            options=options,
            priority=cast("Priority", priority),  # checked against PRIORITIES above
            after=deps, timeout_s=timeout, idempotency_key=idempotency_key, task_id=task_id, tenant_id=tenant,
            tools=None if tools is None else split_list(tools), allow_failover_outside=failover_outside,
        )
        return submitted.task

    task = run_async(with_engine(database, orch, body))
    offline = [a for a in orch.agents if a.id in task.request.agents]
    notice = offline_notice(offline, find_config(config)) if offline else None
    if json_output:
        data = _task_json(task)
        data["offline"] = bool(notice)
        print_json(data)
        return
    if notice:
        sys.stderr.write(notice + "\n")
    if task.status in ("failed", "cancelled"):
        # A dependency had already ended badly: the task ended at submission.
        sys.stderr.write(f"loomiq: task {task.id} ended at submission: {task.status}: {task.error}\n")
    typer.echo(task.id)


# -- loomiq status --------------------------------------------------------------------------------


def status_command(task_id: TaskIdArgument, database: DatabaseOption = None, json_output: JsonOption = False,
                   tenant: TenantOption = "default") -> None:
    """Show a task: its status, attempts, and its output once it has one."""
    check_id(task_id)
    check_tenant(tenant)

    async def body(o: Orchestrator) -> tuple[Any, list[Any]]:
        task = await _tenant_task(o, task_id, tenant)
        return task, await o.engine.attempts(task_id)

    task, attempts = run_async(with_engine(database, Orchestrator(), body, create=False))
    if json_output:
        data = _task_json(task)
        data["attempt_history"] = [
            {"attempt": a.attempt, "epoch": a.epoch, "worker": a.worker_id, "status": a.status,
             "started_at": a.started_at, "finished_at": a.finished_at, "error": a.error}
            for a in attempts
        ]
        print_json(data)
        return
    r = task.request
    rows: list[tuple[str, str]] = [
        ("task", task.id), ("tenant", task.tenant_id),
        ("status", task.status + (" (dead letter)" if task.dead else "")),
        ("prompt", " ".join(r.prompt.split())[:200]),
        ("strategy", f"{r.strategy} ({r.reason or 'chosen with --strategy'})"),
        ("agents", ", ".join(r.agents)), ("priority", r.priority),
    ]
    if r.after:
        rows.append(("after", ", ".join(r.after)))
    if r.timeout_s is not None:
        rows.append(("timeout", f"{r.timeout_s:g}s"))
    if r.idempotency_key:
        rows.append(("key", r.idempotency_key))
    rows.append(("attempts", ", ".join(f"{a.attempt} {a.status} on {a.worker_id}" for a in attempts) or "none yet"))
    if task.status == "running" and task.lease_owner:
        rows.append(("worker", task.lease_owner))
    if task.cancel_requested and not task.terminal:
        rows.append(("cancel", "requested; the worker stops it"))
    rows.append(("created", when(task.created_at)))
    rows.append(("started", when(task.started_at)))
    rows.append(("finished", when(task.finished_at)))
    if task.error:
        rows.append(("error", task.error))
    if task.terminal:
        u = task.usage
        rows.append(("tokens", f"{fmt_tokens(u.total_tokens)} ({fmt_tokens(u.input_tokens)} in, "
                               f"{fmt_tokens(u.output_tokens)} out)"))
        rows.append(("cost", fmt_cost(task.cost_usd)))
    if task.result and task.result.get("offline"):
        rows.append(("answers", "offline scripted answers, not a real model's"))
    width = max(len(label) for label, _ in rows) + 1
    for label, value in rows:
        typer.echo(f"{label + ':':<{width}} {safe_line(value)}")
    if task.terminal:
        typer.echo("")
        typer.echo("output:")
        typer.echo(safe(task.output) if task.output else "(no output)")


# -- loomiq wait ----------------------------------------------------------------------------------


def wait_command(
    task_id: TaskIdArgument,
    database: DatabaseOption = None,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print each event as one JSON line (the last one is task_finished).",
    )] = False,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", help="Stop waiting after this many seconds (the task goes on).", show_default=False,
    )] = None,
    tenant: TenantOption = "default",
) -> None:
    """Follow a task's events (replayed from its log, then live) until it ends.

    Exit codes: 0 completed, 1 failed, timed out, cancelled, or still running at --timeout.
    """
    check_id(task_id)
    check_tenant(tenant)
    if timeout is not None and not timeout > 0:
        fail(f"--timeout must be a positive number of seconds, not {timeout:g}")
    printer = EventPrinter()

    async def body(o: Orchestrator) -> Any:
        await _tenant_task(o, task_id, tenant)  # TaskNotFound before following anything
        try:
            async with asyncio.timeout(timeout):
                async for event in o.events(task_id):
                    if json_output:
                        sys.stdout.write(json.dumps(event.to_dict(), ensure_ascii=False) + "\n")
                        sys.stdout.flush()
                    elif (typed_event := typed(event)) is not None:
                        printer(typed_event)
        except TimeoutError:
            task = await o.get_task(task_id)
            sys.stderr.write(f"loomiq: task {task_id} is still {task.status} after {timeout:g}s\n")
            raise typer.Exit(1) from None
        return await o.get_task(task_id)

    task = run_async(with_engine(database, Orchestrator(), body, create=False))
    if not json_output:
        # The run's end as `loomiq run` shows it (when the task ran), then the task's own rows.
        run = printer.result
        lines = summary_lines(task) if run is None else [
            *finish_lines(run, SCRIPTED_NOTE if printer.offline else None), *task_lines(task)]
        for line in lines:
            typer.echo(line)
    raise typer.Exit(0 if task.status == "completed" else 1)


# -- loomiq cancel --------------------------------------------------------------------------------


def cancel_command(task_id: TaskIdArgument, database: DatabaseOption = None, json_output: JsonOption = False,
                   tenant: TenantOption = "default") -> None:
    """Cancel a task: a queued or waiting one ends now (with the tasks waiting on it), a running one is
    stopped by its worker within a second or so.

    Exit codes: 0 cancelled or cancel requested, 1 the task had already ended.
    """
    check_id(task_id)
    check_tenant(tenant)

    async def body(o: Orchestrator) -> tuple[str, Any]:
        before = await _tenant_task(o, task_id, tenant)
        if before.terminal:
            return before.status, before
        return before.status, await o.cancel_task(task_id)

    was, task = run_async(with_engine(database, Orchestrator(), body, create=False))
    if json_output:
        data = _task_json(task)
        data["previous_status"] = was
        print_json(data)
    if task.terminal and was in ("completed", "failed", "cancelled", "timed_out"):
        if not json_output:
            sys.stderr.write(f"loomiq: task {task_id} had already ended ({was}); nothing to cancel\n")
        raise typer.Exit(1)
    if json_output:
        return
    if task.status == "cancelled":
        typer.echo(f"task {task_id} cancelled (it was {was})")
    else:
        typer.echo(f"task {task_id}: cancel requested; worker {task.lease_owner or '?'} stops it "
                   f"(follow it with `loomiq wait {task_id}`)")


# -- loomiq tasks ---------------------------------------------------------------------------------


def tasks_command(
    status: Annotated[list[str] | None, typer.Option(
        "--status", help=f"Only tasks in this status (repeat or separate with commas): {', '.join(STATUSES)}.",
        show_default=False,
    )] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Show at most this many, newest first.")] = 50,
    database: DatabaseOption = None,
    json_output: JsonOption = False,
    tenant: TenantOption = "default",
) -> None:
    """List a tenant's tasks, newest first (the output names the tenant)."""
    wanted = [s for value in status or () for s in split_list(value)]
    for s in wanted:
        if s not in STATUSES:
            fail(f"unknown status {s!r} (choose from {', '.join(STATUSES)})")
    if limit < 1:
        fail(f"--limit must be at least 1, not {limit}")
    check_tenant(tenant)

    async def body(o: Orchestrator) -> tuple[list[Any], str]:
        # every one checked against STATUSES above
        tasks = await o.list_tasks(tenant_id=tenant, status=cast("list[TaskStatus]", wanted) or None, limit=limit)
        return tasks, ("" if tasks or json_output else await _other_tenants(o, tenant))

    tasks, others = run_async(with_engine(database, Orchestrator(), body, create=False))
    if json_output:
        print_json([_task_json(t) for t in tasks])
        return
    if not tasks:
        typer.echo(f"no tasks in tenant {tenant}" + (f" with status {', '.join(wanted)}" if wanted else "")
                   + (f" (other tenants hold tasks: {others}; add --tenant NAME)" if others else ""))
        return
    typer.echo(f"tenant {tenant}: {len(tasks)} task{'s' if len(tasks) != 1 else ''}"
               + (f" with status {', '.join(wanted)}" if wanted else "") + ", newest first")
    header = ("id", "status", "priority", "strategy", "attempts", "created", "prompt")
    rows = [
        (t.id, t.status, t.request.priority, t.request.strategy, str(t.attempts),
         datetime.fromtimestamp(t.created_at).strftime("%Y-%m-%d %H:%M:%S"), _short(safe_line(t.request.prompt)))
        for t in tasks
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header[:-1])]
    for row in (header, *rows):
        typer.echo("  ".join(f"{v:<{w}}" for v, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1])


async def _other_tenants(o: Orchestrator, tenant: str, sample: int = 1000) -> str:
    """``acme (2), globex (1)``: the other tenants among the latest `sample` tasks, for a hint."""
    counts: dict[str, int] = {}
    for task in await o.list_tasks(tenant_id=None, limit=sample):
        if task.tenant_id != tenant:
            counts[task.tenant_id] = counts.get(task.tenant_id, 0) + 1
    shown = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    more = f", and {len(counts) - 5} more" if len(counts) > 5 else ""
    return ", ".join(f"{name} ({n})" for name, n in shown) + more


def _short(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def register(app: typer.Typer) -> None:
    """Add the durable-task commands to the `loomiq` app."""
    app.command("submit")(submit_command)
    app.command("status")(status_command)
    app.command("wait")(wait_command)
    app.command("cancel")(cancel_command)
    app.command("tasks")(tasks_command)
    app.command("worker")(worker_command)


__all__ = ["register", "summary_lines"]
