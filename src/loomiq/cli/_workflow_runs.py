"""Durable workflow runs from the command line: `loomiq workflow run|status|events|pause|resume|cancel|list`,
`loomiq approvals` and `loomiq approve`.

Runs live in the engine's database (``--database``, else ``$LOOMIQ_DATABASE_URL``, else
``sqlite:///loomiq.db``); workers (``loomiq worker``) run their nodes and drive them. With ``--wait``,
``workflow run`` also runs them in this process until the run ends. The CLI answers approvals as the
local operator: subject ``$LOOMIQ_SUBJECT`` (else the login name) with the roles in
``$LOOMIQ_ROLES`` (comma-separated, default ``admin``): whoever can open the database can act on it.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ..orchestrator import Orchestrator
from ..runtime import EventDecodeError, WorkflowFinished, type_of
from ..runtime.event_json import dumps
from ..workflows import WorkflowError, read_workflow_source
from ._common import fail
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
from ._display import workflow_line
from ._options import TenantOption
from ._workflow import workflow_app

RunArg = Annotated[str, typer.Argument(help="The workflow run id (as `loomiq workflow run` printed it).",
                                       show_default=False, metavar="RUN")]
ConfigOption = Annotated[Path | None, typer.Option("--config", help="loomiq.yaml (the agents).",
                                                   show_default=False)]


def _source(ref: str) -> tuple[str | None, str]:
    """(text, shown name) of a file or template, or (None, NAME) for a registered workflow."""
    if ref.startswith("template:") or os.path.exists(ref):
        try:
            text, name = read_workflow_source(ref)
        except KeyError as exc:
            fail(str(exc.args[0]) if exc.args else str(exc))
        except OSError as exc:
            fail(f"cannot read {ref}: {exc.strerror or exc}")
        except UnicodeDecodeError:
            fail(f"cannot read {ref}: not UTF-8 text")
        return text, name
    if "/" in ref or ref.endswith((".yaml", ".yml", ".json")):
        fail(f"cannot read {ref}: no such file")
    return None, ref


def _inputs(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            fail(f"--input {pair!r}: write NAME=VALUE")
        out[key.strip()] = value
    return out


def _subject() -> tuple[str, list[str]]:
    subject = os.environ.get("LOOMIQ_SUBJECT") or getpass.getuser()
    roles = [r.strip() for r in os.environ.get("LOOMIQ_ROLES", "admin").split(",") if r.strip()]
    return subject, roles


async def _runs(o: Orchestrator) -> Any:
    from ..engine import WorkflowRuns

    return WorkflowRuns(o.engine)


def _errors(exc: Exception) -> None:
    from ..engine import (
        ApprovalConflict,
        ApprovalForbidden,
        ApprovalNotFound,
        WorkflowNotFound,
        WorkflowRunNotFound,
    )

    if isinstance(exc, WorkflowError):
        fail(str(exc).splitlines()[0] if str(exc) else "invalid workflow")
    if isinstance(exc, WorkflowRunNotFound | WorkflowNotFound | ApprovalNotFound | ApprovalForbidden
                  | ApprovalConflict):
        fail(str(exc.args[0]) if exc.args else str(exc))
    raise exc


def _call(database: str | None, body: Any, orch: Orchestrator | None = None, create: bool = False) -> Any:
    async def guarded(o: Orchestrator) -> Any:
        try:
            return await body(o)
        except Exception as exc:  # noqa: BLE001 - the user's errors become one line; the rest propagate
            _errors(exc)

    return run_async(with_engine(database, orch or Orchestrator(), guarded, create=create))


def _status_lines(status: dict[str, Any]) -> list[str]:
    paused = " (paused)" if status["paused"] else ""
    lines = [f"run {status['id']}: {status['workflow']} v{status['version']} {status['status']}{paused}"]
    if status.get("error"):
        lines.append(f"  error: {status['error']}")
    for node_id, ns in status["nodes"].items():
        extra = ns.get("reason") or ns.get("error") or ""
        lines.append(f"  {node_id:<20} {ns['kind']:<13} {ns['status']:<16} {extra}".rstrip())
    if status["path"]:
        lines.append("  path: " + " -> ".join(status["path"]))
    for a in status["pending_approvals"]:
        lines.append(f"  waiting: approval {a['id']}: {a['message']}")
    for key, value in (status.get("outputs") or {}).items():
        text = " ".join(str(value).split())
        lines.append(f"  output {key}: {text[:100]}{'...' if len(text) > 100 else ''}")
    return lines


@workflow_app.command("run")
def run_command(
    source: Annotated[str, typer.Argument(help="A workflow file, a registered workflow's NAME, or template:NAME.",
                                          show_default=False, metavar="FILE|NAME|template:NAME")],
    inputs: Annotated[list[str] | None, typer.Option("--input", help="An input as NAME=VALUE (repeatable).",
                                                     show_default=False)] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Run the nodes in this process and wait for the end.")] = False,
    json_output: JsonOption = False,
    database: DatabaseOption = None,
    tenant: TenantOption = "default",
    config: ConfigOption = None,
) -> None:
    """Start a durable run of a workflow; prints its id (workers run it), or with --wait its end."""
    check_tenant(tenant)
    text, name = _source(source)
    given = _inputs(inputs or [])
    orch = load_orchestrator(config)  # node tasks are planned (agents chosen) when they are submitted

    async def body(o: Orchestrator) -> dict[str, Any]:
        runs = await _runs(o)
        if text is None:
            run = await runs.start_registered(name, given, tenant_id=tenant, from_strings=True)
        else:
            run = await runs.start(text, given, tenant_id=tenant, from_strings=True, filename=name)
        if wait:
            from ..engine import Worker

            worker = Worker(o.engine)
            task = asyncio.get_running_loop().create_task(worker.run())
            try:
                run = await _until_parked(runs, run.id, tenant)
                if run.status == "running":
                    for a in await runs.approvals(tenant_id=tenant, status="pending", run_id=run.id):
                        sys.stderr.write(f"loomiq: waiting for approval {a.id}: {a.message} "
                                         f"(loomiq approve {a.id})\n")
                    run = await runs.wait(run.id, tenant_id=tenant)
            finally:
                await worker.stop(drain_s=5.0)
                await asyncio.gather(task, return_exceptions=True)
                await runs.close()
        state: dict[str, Any] = await runs.status(run.id, tenant_id=tenant)
        return state

    status = _call(database, body, orch, create=True)
    if json_output:
        print_json(status)
    elif wait:
        sys.stdout.write("\n".join(_status_lines(status)) + "\n")
    else:
        sys.stdout.write(f"{status['id']}\n")
    if wait and status["status"] != "succeeded":
        raise typer.Exit(1)


async def _until_parked(runs: Any, run_id: str, tenant: str) -> Any:
    """Drive the run until it ends or waits on nothing but approvals."""
    while True:
        run = await runs.wait(run_id, tenant_id=tenant, until=lambda r: True)
        if run.status != "running":
            return run
        pending = await runs.approvals(tenant_id=tenant, status="pending", run_id=run_id)
        state = await runs.state(run_id, tenant_id=tenant)
        if pending and not any(str(ns.status) == "running" for ns in state.nodes.values()):
            return run
        await asyncio.sleep(0.05)


@workflow_app.command("status")
def status_command(run_id: RunArg, json_output: JsonOption = False, database: DatabaseOption = None,
                   tenant: TenantOption = "default") -> None:
    """A run's status: node states, variables, path, pending approvals."""
    async def body(o: Orchestrator) -> dict[str, Any]:
        state: dict[str, Any] = await (await _runs(o)).status(run_id, tenant_id=tenant)
        return state

    status = _call(database, body)
    if json_output:
        print_json(status)
    else:
        sys.stdout.write("\n".join(_status_lines(status)) + "\n")


def _control(verb: str) -> Any:
    def command(run_id: RunArg, json_output: JsonOption = False, database: DatabaseOption = None,
                tenant: TenantOption = "default") -> None:
        async def body(o: Orchestrator) -> Any:
            runs = await _runs(o)
            return (await getattr(runs, verb)(run_id, tenant_id=tenant)).to_dict()

        # resuming may start nodes: they are planned with the agents
        run = _call(database, body, load_orchestrator(None))
        if json_output:
            print_json(run)
        else:
            paused = " (paused)" if run["paused"] else ""
            sys.stdout.write(f"run {run['id']}: {run['status']}{paused}\n")

    command.__doc__ = {"pause": "Pause a run: nothing new starts (running nodes finish; approvals take answers).",
                       "resume": "Resume a paused run.",
                       "cancel": "Cancel a run: running nodes are cancelled, nothing starts after."}[verb]
    return command


for _verb in ("pause", "resume", "cancel"):
    workflow_app.command(_verb)(_control(_verb))


@workflow_app.command("events")
def events_command(
    run_id: RunArg,
    after: Annotated[int, typer.Option("--after", min=0, max=2**62, help="Only events after this seq.")] = 0,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events until the run ends.")
                      ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON frame per line, as the API's SSE sends: "
                                              "{seq, type, data, at}.")] = False,
    database: DatabaseOption = None,
    tenant: TenantOption = "default",
) -> None:
    """A run's events (workflow started, nodes started and finished, approvals, child runs, pauses,
    the end), one line each; with --follow, until the run ends."""
    check_tenant(tenant)

    async def body(o: Orchestrator) -> None:
        from ..engine import WorkflowRunEvent

        runs = await _runs(o)
        seen = after
        while True:
            entries: list[WorkflowRunEvent] = await runs.events(run_id, after=seen, tenant_id=tenant)
            for entry in entries:
                seen = entry.seq
                if json_output:
                    sys.stdout.write(dumps(entry.to_dict()) + "\n")
                else:
                    line = _event_line(entry)
                    if line is not None:
                        sys.stdout.write(f"{entry.seq:>5} {when(entry.at)}  {line}\n")
                if entry.type == _FINISHED:
                    return
            sys.stdout.flush()
            if not follow:
                return
            await asyncio.sleep(0.25)

    _call(database, body)


_FINISHED = type_of(WorkflowFinished)


def _event_line(entry: Any) -> str | None:
    """The display's line of the entry's typed event (None for a type this version does not know)."""
    try:
        event = entry.event
    except EventDecodeError:
        return None
    return workflow_line(event)


@workflow_app.command("list")
def list_command(json_output: JsonOption = False, database: DatabaseOption = None,
                 tenant: TenantOption = "default") -> None:
    """The workflow runs of the tenant, newest first."""
    async def body(o: Orchestrator) -> list[dict[str, Any]]:
        return [r.to_dict() for r in await (await _runs(o)).list_runs(tenant_id=tenant)]

    runs = _call(database, body)
    if json_output:
        print_json(runs)
        return
    if not runs:
        sys.stdout.write("no workflow runs\n")
    for r in runs:
        paused = " (paused)" if r["paused"] else ""
        sys.stdout.write(f"{r['id']}  {r['workflow']:<24} {r['status']}{paused}  {when(r['created_at'])}\n")


def approvals_command(json_output: JsonOption = False, database: DatabaseOption = None,
                      tenant: TenantOption = "default",
                      status: Annotated[str, typer.Option("--status", help="pending, approved, rejected, "
                                                          "timed_out, escalated, cancelled or all.")] = "pending",
                      ) -> None:
    """The approvals waiting for an answer (or, with --status, the others)."""
    async def body(o: Orchestrator) -> list[dict[str, Any]]:
        found = await (await _runs(o)).approvals(tenant_id=tenant, status=None if status == "all" else status)
        return [a.to_dict() for a in found]

    approvals = _call(database, body)
    if json_output:
        print_json(approvals)
        return
    if not approvals:
        sys.stdout.write(f"no {'' if status == 'all' else status + ' '}approvals\n")
    for a in approvals:
        who = ", ".join([*(f"role {r}" for r in a["approvers"]["roles"]), *a["approvers"]["subjects"]])
        deadline = f", deadline {when(a['deadline'])}" if a["deadline"] else ""
        sys.stdout.write(f"{a['id']}  {a['status']}  {a['message']}  ({who}{deadline})\n")


def approve_command(
    approval: Annotated[str, typer.Argument(help="The approval id (from `loomiq approvals`).", show_default=False,
                                            metavar="ID")],
    reject: Annotated[bool, typer.Option("--reject", help="Reject instead of approving.")] = False,
    comment: Annotated[str, typer.Option("--comment", help="Why (shown to the run as the approval's comment).")] = "",
    json_output: JsonOption = False,
    database: DatabaseOption = None,
    tenant: TenantOption = "default",
) -> None:
    """Answer an approval as the local operator ($LOOMIQ_SUBJECT, roles $LOOMIQ_ROLES, default admin)."""
    subject, roles = _subject()

    async def body(o: Orchestrator) -> Any:
        runs = await _runs(o)
        try:
            answered = await runs.answer(approval, subject=subject, roles=roles,
                                         decision="reject" if reject else "approve", comment=comment,
                                         tenant_id=tenant)
        finally:
            await runs.close()
        return answered.verdict, answered.approval.to_dict()

    verdict, a = _call(database, body, load_orchestrator(None))  # the answer may start the next nodes
    if json_output:
        print_json({"verdict": verdict, "approval": a})
    else:
        sys.stdout.write(f"approval {a['id']}: {a['status']} ({verdict})\n")


def register(app: typer.Typer) -> None:
    """Add `loomiq approvals` and `loomiq approve` (the workflow subcommands register themselves)."""
    app.command("approvals")(approvals_command)
    app.command("approve")(approve_command)


__all__ = ["register"]
