"""`TaskEngine`: the durable engine bound to a `Runner` and a `Store`.

It is what `Orchestrator.open_engine()` returns and what the orchestrator's task methods delegate
to: submit, inspect, cancel, follow and wait for tasks, and run one durably in this process. It knows
runs only through the `loomiq.runtime.Runner` protocol (plan, resume from a stored plan, execute
through a context), so it never depends on what composes it. It also
holds, for this process, the leases of the tasks it runs (`_leases.HeldRuns`: renewing them,
abandoning those taken over, answering cancellations). How a submission becomes a stored request is
in `_submission`.

Workers (`worker.Worker`) claim tasks and run them through `TaskEngine.execute_claim`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..observe import bind_ids, span
from ..runtime import PlannedRun, RunEvent, Runner, RunResult, StoredPlan
from ..runtime.options import count, positive_seconds
from . import _ops, _records
from ._codec import request_to_json, result_to_json
from ._config import EngineConfig as EngineConfig
from ._follow import follow_task, wait_for_end
from ._leases import Held, HeldRuns, NextClaims, StopMode
from ._ops import ClaimNext, RunEnd
from ._stmt import Claim
from ._submission import build_request, request_differences, retry_policy, submitted_task
from ._text import check_text, unstorable
from .context import DurableContext, TaskLog
from .errors import EngineClosed, IdempotencyConflict, LeaseLost, StoreUnavailable, TaskNotFound
from .keys import KeyTable
from .store import Store
from .task import (
    DEFAULT_TENANT,
    Attempt,
    Priority,
    SubmitOptions,
    Submitted,
    Task,
    TaskEvent,
    TaskID,
    TaskRetry,
    TaskStatus,
    WorkerID,
    WorkerInfo,
    new_task_id,
)
from .tenant_agents import TenantAgentTable

logger = logging.getLogger("loomiq.engine")

if TYPE_CHECKING:
    from .limits import AgentLimit, AgentLimiter


class TaskEngine:
    """Durable tasks run by `runner`, stored in `store` (see the module docstring)."""

    def __init__(
        self,
        runner: Runner[Any],
        store: Store,
        config: EngineConfig | None = None,
        limiter: AgentLimiter | None = None,
    ) -> None:
        self.runner = runner
        """Plans, resumes and executes the tasks' runs."""
        self.store = store
        self.config = config or EngineConfig()
        self.limiter = limiter
        self.holder_id = WorkerID(f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}")
        """The lease holder of durable runs started in this process with `run`."""
        self._held = HeldRuns(store, self.config.lease_s, self.config.renew_s)
        self._ending: dict[str, asyncio.Future[Any]] = {}
        """Ends of durable runs returned to their caller before the end committed (see `run`)."""
        self._keeper: asyncio.Task[None] | None = None
        self.run_observers: list[Callable[[RunEvent], None]] = []
        """Called with every event (text deltas aside) of the runs this process executes, whoever
        submitted them: what metrics count. An observer that raises is logged and skipped."""
        self._closed = False
        self.keys = KeyTable(store)
        """The API keys kept in the engine's database."""
        self.tenant_agents = TenantAgentTable(store)
        """The agents registered over the API (`load_tenant_agents` builds them into the runner's registry,
        then follows their changes)."""
        self.agent_policy_path: Path | None = None
        """The config file whose rules stored agents are checked against (set by `load_tenant_agents`)."""
        self._agents_applied: dict[str, Any] = {}
        self._agents_version: int | None = None
        self._agents_lock = asyncio.Lock()
        self._agents_changed = asyncio.Event()
        self._agents_follower: asyncio.Task[None] | None = None
        from .agent_stats import AgentStatsRecorder

        self.agent_stats_recorder = AgentStatsRecorder(store, lambda: runner.registry)
        """Writes this process's agent statistics to the database every second (`agent_stats()`)."""

    @classmethod
    async def open(
        cls,
        runner: Runner[Any],
        url: str | None = None,
        *,
        config: EngineConfig | None = None,
        agent_limits: Mapping[str, AgentLimit | Mapping[str, Any]] | None = None,
        store_options: Mapping[str, Any] | None = None,
    ) -> TaskEngine:
        """Open the store at `url` (default ``$LOOMIQ_DATABASE_URL``, else ``sqlite:///loomiq.db``) and
        bind it to `runner`. `agent_limits` maps agent ids to `limits.AgentLimit` (or dicts);
        `store_options` go to the database's store class (for example ``poll_s`` on SQLite,
        ``min_size``/``max_size`` of the PostgreSQL pool)."""
        config = config or EngineConfig()
        store = Store.from_url(url, **(store_options or {}))
        store.lease_s = config.lease_s
        await store.open()
        limiter = None
        if agent_limits:
            from .limits import AgentLimiter

            limiter = AgentLimiter(store, agent_limits)
        engine = cls(runner, store, config, limiter)
        engine.start()
        return engine

    def start(self) -> None:
        """Start renewing leases and listening for cancellations (done by `open`)."""
        self.store.on_cancel = self._held.cancel
        if self._keeper is None:
            self._keeper = asyncio.get_running_loop().create_task(self._held.keep(), name="loomiq-lease-keeper")
        self.agent_stats_recorder.start()

    async def load_tenant_agents(self, config_path: Path | None = None) -> list[str]:
        """Add the stored API agents the runner's registry lacks, each checked again against the rules of
        `config_path` (default: $LOOMIQ_CONFIG or ./loomiq.yaml) for its tenant, and from then on follow
        their changes by any process (`sync_tenant_agents`); returns the ids added."""
        if config_path is not None:
            self.agent_policy_path = config_path
        added = await self.sync_tenant_agents(force=True)
        if self._agents_follower is None and not self._closed:
            self.store.on_agents_changed = self._agents_changed.set
            self._agents_follower = asyncio.get_running_loop().create_task(
                self._follow_tenant_agents(), name="loomiq-tenant-agents")
        return added

    async def sync_tenant_agents(self, *, force: bool = False) -> list[str]:
        """Make the runner's registry hold the stored API agents as they are now (added, changed in place,
        removed: `tenant_agents.sync_tenant_agents`) if their version moved since the last look (one read
        of one row), or with `force` (which also tries again agents the rules refused). Returns the ids
        added."""
        from .tenant_agents import sync_tenant_agents

        async with self._agents_lock:
            version = await self.tenant_agents.version()
            if version == self._agents_version and not force:
                return []
            added = await sync_tenant_agents(self.tenant_agents, self.runner.registry, self.agent_policy_path,
                                             self._agents_applied, retry_refused=force)
            self._agents_version = version  # (read before the rows: a change meanwhile is seen next time)
            return added

    async def _follow_tenant_agents(self) -> None:
        """Apply other processes' changes of the API agents: at once on NOTIFY (PostgreSQL), else when a
        look every `Store.agents_poll_s` finds their version moved."""
        quiet = False
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._agents_changed.wait(), self.store.agents_poll_s)
            self._agents_changed.clear()
            try:
                await self.sync_tenant_agents()
                quiet = False
            except (StoreUnavailable, EngineClosed) as exc:  # the database is away: look again later
                if not quiet:
                    logger.warning("cannot read the agents registered over the API now: %s", exc)
                quiet = True
            except Exception:  # noqa: BLE001 - the follower must outlive one bad look
                logger.exception("following the agents registered over the API failed; trying again")

    async def agent_stats(self) -> dict[str, dict[str, Any]]:
        """Every agent's call statistics summed over every process on this database (this process's
        written first), by agent id: calls, successes, failures, total_latency_s, input_tokens,
        output_tokens, cost_usd, last_error, updated_at."""
        from .agent_stats import read_agent_stats

        await self.agent_stats_recorder.write()
        await self.store.flush()
        return await read_agent_stats(self.store)

    async def close(self) -> None:
        """Stop the lease keeper and close the store. Runs still in flight lose their lease."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._settled()
            if self._agents_follower is not None:
                self._agents_follower.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._agents_follower
            if self._keeper is not None:
                self._keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._keeper
            for held in list(self._held.runs.values()):
                self.stop_run(held.task_id, "crash")
            runners = [h.runner for h in self._held.runs.values()]
            if runners:
                await asyncio.gather(*runners, return_exceptions=True)
            await self.agent_stats_recorder.close()  # (its last write awaits its commit, or logs why not)
        finally:
            # Whatever failed above (the server is gone), every connection is closed; the store's
            # close commits what is still queued, and a write that cannot be made fails its awaiter.
            await self.store.close()

    # -- submitting and inspecting --------------------------------------------------------------

    async def submit(
        self,
        prompt: str,
        *,
        strategy: str = "auto",
        agents: Sequence[str] | None = None,
        capabilities: Sequence[str] = (),
        options: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
        tools: Sequence[str] | None = None,
        allow_failover_outside: bool = False,
        priority: Priority = "medium",
        after: Sequence[str] = (),
        retry: TaskRetry | int | None = None,
        idempotency_key: str | None = None,
        tenant_id: str = DEFAULT_TENANT,
        task_id: str | None = None,
    ) -> Submitted:
        """Queue a task and return it as committed, with `replayed` set when `idempotency_key` named an
        earlier task of the tenant (that task is returned, and nothing is queued).

        `strategy`, `agents`, `capabilities`, `options`, `context`, `timeout_s`, `tools` and
        `allow_failover_outside` are `RunOptions`';
        `priority` (critical, high, medium, low), `after` (ids of tasks that must complete first; their
        outputs reach the task as ``context["dependencies"][id]``), `retry` (`TaskRetry`, or max
        attempts), `idempotency_key` (unique per tenant), `tenant_id` and `task_id` (to choose the id)
        are `SubmitOptions`'.

        Raises `StrategyError`/`UnknownAgent`/`NoAgentAvailable` for a plan that cannot run,
        `InvalidTask` for bad arguments, `DependencyError` for unknown dependencies or a cycle.
        """
        opts = SubmitOptions(
            strategy=strategy, agents=agents, capabilities=capabilities, options=options, context=context,
            timeout_s=timeout_s, tools=tools, allow_failover_outside=allow_failover_outside, priority=priority,
            after=after, retry=retry_policy(retry),
            idempotency_key=idempotency_key, tenant_id=tenant_id,
        )
        for name, value in (("prompt", prompt), ("strategy", strategy), ("agents", agents),
                             ("capabilities", capabilities), ("options", options), ("context", context),
                             ("tools", tools), ("after", after), ("idempotency_key", idempotency_key),
                             ("tenant_id", tenant_id), ("task_id", task_id)):
            check_text(name, value)
        tid = task_id or new_task_id()
        request, _ = build_request(self.runner, prompt, opts, tid)
        now = time.time()
        op = _ops.submit(
            self.store.dialect, tid, request, request_to_json(request), now, self.config.aging_s,
            check_cycles=task_id is not None,
        )
        out = await self.store.run_op(op)
        if not out.events:
            # Nothing was inserted: the idempotency key names an earlier task, which is the answer,
            # unless this is another request under the same key.
            earlier = await self.get_task(out.value)
            differs = request_differences(earlier.request, request, opts)
            if differs:
                raise IdempotencyConflict(
                    f"the idempotency key {opts.idempotency_key!r} was already used for task {earlier.id} with a "
                    f"different {', '.join(differs)}; use a new key for a new request", earlier.id, tuple(differs))
            return Submitted(task=earlier, replayed=True)
        return Submitted(task=submitted_task(out.value, request, now, out.events[0]), replayed=False)

    async def get_task(self, task_id: str) -> Task:
        """The task with this id. Raises `TaskNotFound`."""
        await self._settled(task_id)
        task = await self.store.get_task(task_id)
        if task is None:
            raise TaskNotFound(f"no task {task_id}")
        return task

    async def list_tasks(
        self,
        *,
        tenant_id: str | None = DEFAULT_TENANT,
        status: TaskStatus | Sequence[TaskStatus] | None = None,
        dead: bool | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Task]:
        """Tasks, newest first, of `tenant_id` (None: every tenant's), in one of the statuses
        `status`, dead letters or not (`dead`), `limit` of them after skipping `offset`. Raises
        `InvalidOptions` for a `limit` below 1 or an `offset` below 0."""
        count("limit", limit, minimum=1)
        count("offset", offset)
        await self._settled()
        return await self.store.list_tasks(tenant_id=tenant_id, status=status, dead=dead, limit=limit, offset=offset)

    async def task_stats(self, tenant_id: str | None = DEFAULT_TENANT) -> list[dict[str, Any]]:
        """One row per (status, strategy) of the tenant's tasks (None: every tenant's): ``status``,
        ``strategy``, ``count``, ``mean_duration_s`` of the finished ones, ``input_tokens``,
        ``output_tokens`` and ``cost_usd``."""
        await self._settled()
        return await self.store.task_stats(tenant_id)

    async def queue_depth(self, tenant_id: str | None = None) -> dict[tuple[str, str], int]:
        """Tasks of `tenant_id` (None: every tenant's) not yet ended, by (status, priority), statuses
        ``queued`` (ready to run), ``waiting`` (for dependencies) and ``running`` (metrics, dashboards)."""
        return await self.store.queue_depth(tenant_id)

    async def pending_approvals_summary(self) -> tuple[int, float | None]:
        """Workflow approvals of every tenant waiting for an answer: how many, and when the oldest was asked
        (Unix time; None when none waits). For metrics."""
        return await self.store.pending_approvals_summary()

    async def activity(self, tenant_id: str, since: float, limit: int = 20_000
                       ) -> list[tuple[float, float | None, float | None, str, float]]:
        """(created_at, started_at, finished_at, status, cost_usd) of the tenant's tasks created since `since`
        (Unix time), newest first, at most `limit`: what a dashboard charts."""
        await self._settled()
        return await self.store.activity(tenant_id, since, limit)

    async def schema_version(self) -> int:
        """The schema version of the database (what its migrations reached)."""
        return await self.store.schema_version()

    async def attempts(self, task_id: str) -> list[Attempt]:
        """Every run of the task (a crash leaves one ``lost``)."""
        await self._settled(task_id)
        return await self.store.attempts(task_id)

    async def workers(self) -> list[WorkerInfo]:
        """The workers' heartbeat rows."""
        return await self.store.workers()

    async def cancel_task(self, task_id: str) -> Task:
        """Cancel a task. A queued or waiting one ends ``cancelled`` now, and so do the tasks that
        depend on it; a running one is aborted by its holder (at once in this process, within ~1 s
        from another) and ends ``cancelled`` with the usage of its finished steps. A finished task is
        left as it is. Returns the task as it is after the request."""
        await self._settled(task_id)
        held = self._held.get(task_id)
        if held is not None:
            self._held.cancel(task_id)  # abort in-flight requests before anything else
        await self.store.run_op(_ops.cancel(self.store.dialect, task_id, time.time()))
        if held is not None:
            await asyncio.gather(asyncio.shield(held.runner), return_exceptions=True)
        return await self.get_task(task_id)

    def events(self, task_id: str, after: int = 0) -> AsyncGenerator[TaskEvent]:
        """The task's events with ``seq > after``: first from the log, then live as they happen, with
        no gap and no duplicate; ends after the task's ``task_finished`` event, and at once when
        `after` is at or past it (a client resuming a finished task already has everything).

        Live events come through the store's hub: at once from this process, on NOTIFY from other
        PostgreSQL processes, and from the store's shared `_follow.LogFollower`, which polls the log
        for every follower at once (the only way other SQLite processes' events arrive). See
        `_follow.follow_task` for a follower whose `after` is past the end of the log."""
        return follow_task(self.store, task_id, after)

    async def wait(self, task_id: str, timeout_s: float | None = None) -> Task:
        """Wait for the task to end and return it (`timeout_s`: a positive number of seconds, or None
        for no limit). Raises `TaskNotFound`, `TimeoutError`, or `InvalidOptions` for a bad timeout."""
        positive_seconds("timeout_s", timeout_s)
        return await wait_for_end(self.store, self.get_task, task_id, timeout_s)

    # -- running --------------------------------------------------------------------------------

    async def run(
        self,
        prompt: str,
        *,
        strategy: str = "auto",
        agents: Sequence[str] | None = None,
        capabilities: Sequence[str] = (),
        options: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
        tools: Sequence[str] | None = None,
        allow_failover_outside: bool = False,
        priority: Priority = "medium",
        tenant_id: str = DEFAULT_TENANT,
        task_id: str | None = None,
    ) -> RunResult:
        """Run a task durably in this process and return its result, as `Orchestrator.run` would.

        The task is submitted already claimed by this process, so no worker takes it; each step is
        journalled, and if this process dies a worker resumes the task from its journal. Takes the
        arguments of `submit` but `after`, `retry` and `idempotency_key` (a durable run is one fresh
        attempt). Raises `LeaseLost` if another holder took the task over meanwhile.
        """
        opts = SubmitOptions(
            strategy=strategy, agents=agents, capabilities=capabilities, options=options, context=context,
            timeout_s=timeout_s, tools=tools, allow_failover_outside=allow_failover_outside, priority=priority,
            tenant_id=tenant_id,
        )
        tid = task_id or new_task_id()
        request, plan = build_request(self.runner, prompt, opts, tid)
        cfg, now = self.config, time.time()
        claim = _ops.claimed_at_submission(TaskID(tid), request, now, self.holder_id)
        # Not awaited: the writer is FIFO, so the task row commits no later than the first journal
        # row, and a failed submission surfaces below (its steps' writes are refused meanwhile).
        op, fast = _records.submit_claimed(
            self.store.dialect, tid, request, request_to_json(request), now, cfg.aging_s, self.holder_id, cfg.lease_s,
            claim,
        )
        submitted = self.store.start_op(op, fast=fast)
        try:
            result = await self.execute_claim(claim, self.holder_id, await_end=False, stream_text=False, plan=plan)
        finally:
            if not submitted.done():
                self.store.expedite()
                await asyncio.shield(submitted)
            out = submitted.result()  # raises what refused the submission, if anything
        if result is None:
            raise LeaseLost(f"task {tid} was taken over by another holder; follow it with wait({tid!r})")
        assert out.value is claim
        return result

    async def execute_claim(
        self, claim: Claim, holder: WorkerID, *, await_end: bool = True, stream_text: bool = True,
        plan: PlannedRun | None = None, next_claims: NextClaims | None = None,
    ) -> RunResult | None:
        """Run a claimed task to its end and record it; None when the run was stopped without an end
        (crash, hand-back, lost lease: see `stop_run`). Must run in its own asyncio task.

        With `await_end` False, return once every step is committed and the end is queued: the
        result is what the journal replays to, so a crash before the end commits changes nothing;
        this process's reads of the task wait for the end (read-your-writes). With `stream_text`
        False, model text is streamed into the log only while someone in this process follows the
        task (`run` does so: its caller waits for the result). `plan`: the task's plan, when the
        caller has just made it (`run`), instead of rebuilding it from the request. `next_claims`: the
        worker running the claim; when it `wants_next` as the run ends, an end that makes dependents
        ready claims the next task for `holder` in the same transaction (`_ops.ClaimNext`) and hands
        it to `adopt` (a chain of tasks goes on without a wake-up and a claim per link)."""
        task = claim.task
        runner = asyncio.current_task()
        assert runner is not None
        held = Held(task.id, claim.epoch, holder, runner)
        stale = self._held.get(task.id)
        if stale is not None:
            # This process let its own lease expire and claimed the task again: the older run's
            # writes are fenced off already; stop it.
            self.stop_run(task.id, "lost")
        self._held.runs[task.id] = held
        store = self.store
        log = TaskLog(store, task.id, task.tenant_id, claim.epoch, claim.next_seq)
        ctx: DurableContext | None = None
        result: RunResult | None = None
        end: RunEnd | None = None
        try:
            if task.cancel_requested:
                end = RunEnd("cancelled", "cancelled by request", "", 0, 0, 0.0, None)
            else:
                r = task.request
                registry = self.runner.registry
                if (any(a not in registry for a in r.agents)
                        or not registry.capabilities.issuperset(r.capabilities)):
                    # An agent registered over the API after this process loaded them: reload once (a
                    # stored agent still unknown then fails the plan below, naming it).
                    await self.load_tenant_agents()
                if plan is None or r.after:
                    context = dict(r.context)
                    if r.after:
                        context["dependencies"] = await store.outputs(r.after)
                    try:
                        plan = self.runner.resume(StoredPlan(
                            run_id=task.id, prompt=r.prompt, kind=r.strategy, agents=r.agents,
                            capabilities=r.capabilities, options=r.options, context=context, reason=r.reason,
                            tools=r.tools, failover_within=r.failover_within,
                        ))
                    except Exception as exc:  # noqa: BLE001 - this worker cannot run the plan: the run fails
                        end = RunEnd("failed", f"cannot plan the run here: {exc}", "", 0, 0, 0.0, None)
                if end is None:
                    assert plan is not None
                    journal = await store.journal(task.id) if claim.resumed else None
                    ctx = DurableContext(
                        task.id, plan.task, self.runner.registry,
                        store=store, log=log, journal=journal, on_lease_lost=lambda: self.stop_run(task.id, "lost"),
                        hold=self.limiter.hold if self.limiter is not None else None,
                        delta_flush_s=self.config.delta_flush_s, stream_text=stream_text,
                        observe=self._observe if self.run_observers else None,
                    )
                    timeout = None if claim.deadline_at is None else max(0.0, claim.deadline_at - time.time())
                    with bind_ids(tenant=task.tenant_id, task_id=task.id, run_id=task.id), \
                            span(f"run_task {r.strategy}", {"loomiq.task_id": task.id, "loomiq.tenant": task.tenant_id,
                                                            "loomiq.strategy": r.strategy,
                                                            "loomiq.attempt": claim.task.attempts},
                                 kind="consumer", parent=r.trace or None):
                        result = await self.runner.execute(plan, ctx, timeout_s=timeout, cancellable=True)
        except asyncio.CancelledError:
            if held.stop is None:
                raise
            runner.uncancel()
        except (LeaseLost, StoreUnavailable):  # fenced off, or cut off from the database: abandon the run
            held.stop = "lost"
        except Exception as exc:  # noqa: BLE001 - a strategy bug fails the run, it does not kill the worker
            end = RunEnd("failed", f"{type(exc).__name__}: {exc}", "", 0, 0, 0.0, None)
        finally:
            if self._held.runs.get(task.id) is held:
                del self._held.runs[task.id]
        if held.stop is not None:
            if ctx is not None:
                if held.stop == "hand_back":
                    ctx.flush_deltas()
                else:
                    ctx.discard()
            if held.stop == "hand_back":
                with contextlib.suppress(LeaseLost, StoreUnavailable):
                    await store.run_op(_ops.hand_back(store.dialect, task.id, claim.epoch, log.reserve(), holder,
                                                      time.time()), fence=task.id)
            return None
        if ctx is not None:
            ctx.flush_deltas()
        if result is not None:
            error = result.error
            if result.status == "cancelled" and held.cancel_requested:
                error = "cancelled by request"
            elif result.status == "timed_out":
                # The run saw only the time left of the task's deadline; name the task's timeout.
                error = f"the task did not finish within its timeout of {task.request.timeout_s:g}s"
            u = result.usage
            end = RunEnd(result.status, error, result.output, u.input_tokens, u.output_tokens, result.cost_usd,
                         ctx.result_json(result) if ctx is not None else result_to_json(result))
        assert end is not None
        if end.status != "completed" or logger.isEnabledFor(logging.DEBUG):
            with bind_ids(tenant=task.tenant_id, task_id=task.id, run_id=task.id):
                logger.log(logging.DEBUG if end.status == "completed" else logging.INFO, "task %s %s%s", task.id,
                           end.status, f": {end.error}" if end.error else "")
        cfg = self.config
        chain = (ClaimNext(holder, cfg.lease_s, cfg.max_running)
                 if next_claims is not None and await_end and next_claims.wants_next() else None)
        op, fast = _records.finish_op(store.dialect, task.id, claim.epoch, log.reserve(), end, time.time(),
                                      cfg.aging_s, task.request.retry, chain)
        ending = store.start_op(op, fence=task.id, fast=fast)
        if not await_end and result is not None:
            self._ending[task.id] = ending
            ending.add_done_callback(lambda f: self._ended(task.id, f))
            return result
        store.expedite()
        try:
            out = await ending
        except (LeaseLost, StoreUnavailable):  # the end was refused or not written: the next holder ends it
            return None
        if out.value and next_claims is not None:
            next_claims.adopt(out.value)
        return result

    def _observe(self, event: RunEvent) -> None:
        for observer in self.run_observers:
            try:
                observer(event)
            except Exception:  # noqa: BLE001 - an observer never breaks a run
                logger.exception("a run observer failed on %s", type(event).__name__)

    def _ended(self, task_id: str, fut: asyncio.Future[Any]) -> None:
        if self._ending.get(task_id) is fut:
            del self._ending[task_id]
        if not fut.cancelled() and isinstance(fut.exception(), LeaseLost):
            logger.warning("task %s: the end of its durable run was refused (lease taken over)", task_id)

    async def _settled(self, task_id: str | None = None) -> None:
        """Wait for ends this process queued but has not seen commit (all of them when no id). Raises
        `TaskNotFound` for an id no task can have (text no database stores: `_text.unstorable`)."""
        if task_id is not None and unstorable(task_id) is not None:
            raise TaskNotFound(f"no task {task_id!r}")
        if not self._ending:
            return
        futs = list(self._ending.values()) if task_id is None else [self._ending.get(task_id)]
        if any(f is not None for f in futs):
            self.store.expedite()
        await asyncio.gather(*(asyncio.shield(f) for f in futs if f is not None), return_exceptions=True)

    def stop_run(self, task_id: str, mode: StopMode) -> bool:
        """Stop a run this process holds without recording an end: ``crash`` (write nothing, as if
        the process died), ``hand_back`` (release the lease so another holder resumes it at once) or
        ``lost`` (the lease was taken over). False if this process does not run the task."""
        return self._held.stop(task_id, mode)

    def held(self, holder: WorkerID | None = None) -> list[TaskID]:
        """Ids of the tasks this process runs (for one holder, or all)."""
        return self._held.ids(holder)
