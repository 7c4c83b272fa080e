"""Approvals of durable workflow runs (see `workflow_runs`): listing them, and answering one,
judged and journalled in one transaction under the run's row lock."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from ..workflows import ApprovalAnswered, WorkflowDefinition, judge_answer, replay
from ..workflows.journal import event_from_json, event_to_json
from ._ops import Outcome, Stmt
from ._workflow_rows import (
    APPROVAL_COLUMNS,
    Answered,
    Approval,
    ApprovalClosed,
    ApprovalConflict,
    ApprovalForbidden,
    ApprovalNotFound,
    Journal,
    RunsBase,
    WorkflowRun,
    append_rows,
    approval_from_row,
    dumps,
    event_key,
)
from .task import DEFAULT_TENANT

__all__ = ["ApprovalsMixin"]


class ApprovalsMixin(RunsBase):
    """`WorkflowRuns`' approvals."""

    async def approvals(self, *, tenant_id: str = DEFAULT_TENANT, status: str | None = None,
                        run_id: str | None = None, limit: int = 100) -> list[Approval]:
        """The tenant's approvals, oldest first."""
        where, args = "tenant_id = ?", [tenant_id]
        if status is not None:
            where += " AND status = ?"
            args.append(status)
        if run_id is not None:
            where += " AND run_id = ?"
            args.append(run_id)
        rows = await self.store.fetch(Stmt(
            f"SELECT {APPROVAL_COLUMNS} FROM workflow_approvals WHERE {where} ORDER BY created_at, id LIMIT ?",
            (*args, limit), "all"))
        return [approval_from_row(r) for r in rows]

    async def get_approval(self, approval_id_: str, *, tenant_id: str = DEFAULT_TENANT) -> Approval:
        """The approval with its answers. Raises `ApprovalNotFound` (also for another tenant's)."""
        row = await self.store.fetch(Stmt(
            f"SELECT {APPROVAL_COLUMNS} FROM workflow_approvals WHERE id = ?", (approval_id_,), "one"))
        if row is None or row[2] != tenant_id:
            raise ApprovalNotFound(f"no approval {approval_id_}")
        a = approval_from_row(row)
        state = await self.state(a.run_id, tenant_id=None)
        ns = state.nodes.get(a.node)  # type: ignore[call-overload]
        answers: list[Mapping[str, Any]] = []
        if ns is not None and ns.approval is not None and ns.approval.round == a.round:
            answers = [{"subject": x.subject, "decision": x.decision, "comment": x.comment, "at": x.at}
                       for x in ns.approval.answers]
        return approval_from_row(row, answers)


    async def answer(self, approval_id_: str, *, subject: str, roles: Sequence[str] = (),
                     decision: Literal["approve", "reject"], comment: str = "", tenant_id: str = DEFAULT_TENANT,
                     idempotency_key: str | None = None) -> Answered:
        """Answer an approval as `subject` holding `roles`. The first valid answer decides (with
        ``require: all`` or N, each distinct approver counts once). Raises `ApprovalNotFound` (404),
        `ApprovalForbidden` (403), `ApprovalConflict`/`ApprovalClosed` (409). The same
        `idempotency_key` replays the first outcome that counted (``replayed``)."""
        if decision not in ("approve", "reject"):
            raise ValueError("decision must be 'approve' or 'reject'")
        approval = await self.get_approval(approval_id_, tenant_id=tenant_id)
        run, d = await self._load(approval.run_id, None)
        event = ApprovalAnswered(approval.node, approval.round, subject, tuple(roles), decision,  # type: ignore[arg-type]
                                 comment, self.clock())
        # Judged and written in one transaction under the run's row lock: concurrent answers (from any
        # process) are judged one after the other, each against the journal the previous one left.
        out = await self.store.run_op(self._answer_op(run, d, approval, event, idempotency_key))
        verdict = out.value
        if verdict in ("accepted", "duplicate", "replayed"):
            await self.drive(approval.run_id)  # the decision is applied (the approval row closed) before answering
            return Answered(verdict, await self.get_approval(approval_id_, tenant_id=tenant_id))
        if verdict == "forbidden":
            raise ApprovalForbidden(f"{subject} is not among the approvers of {approval_id_}")
        if verdict == "conflict":
            raise ApprovalConflict(f"approval {approval_id_} was already answered otherwise "
                                   f"({approval.decision or 'by this approver'})")
        raise ApprovalClosed(f"approval {approval_id_} takes no more answers (it is {approval.status})")

    def _answer_op(self, run: WorkflowRun, d: WorkflowDefinition, approval: Approval, event: ApprovalAnswered,
                   key: str | None) -> Any:
        dialect = self.store.dialect
        yield Stmt(f"SELECT id FROM workflow_runs WHERE id = ?{dialect.for_update}", (run.id,), "val")
        if key is not None:
            seen = yield Stmt("SELECT seq FROM workflow_events WHERE run_id = ? AND key = ?",
                              (run.id, f"idempotency/{approval.id}/{key}"), "val")
            if seen is not None:
                return Outcome(value="replayed")
        rows = yield Stmt("SELECT type, data FROM workflow_events WHERE run_id = ? AND kind = 'input' ORDER BY seq",
                          (run.id,), "all")
        state, _ = replay(d, [event_from_json(r[0], r[1]) for r in rows])
        verdict = judge_answer(state, approval.node, event.subject, event.roles, event.decision, round=approval.round)
        journal: Journal = []
        if verdict == "accepted":
            journal.append((event_key(event), "input", event.type, event_to_json(event)))
        if verdict in ("accepted", "duplicate"):
            journal += self._verdict_row(approval, key, event.subject, event.decision, event.comment, verdict)
        if journal:
            yield from append_rows(dialect, run.id, run.tenant_id, journal, event.at)
        return Outcome(value=verdict)

    def _verdict_row(self, approval: Approval, key: str | None, subject: str, decision: str, comment: str,
                     verdict: str) -> Journal:
        if key is None:
            return []
        data = dumps({"approval": approval.id, "subject": subject, "decision": decision, "comment": comment,
                       "verdict": verdict})
        return [(f"idempotency/{approval.id}/{key}", "answer", "answer", data)]
