"""The approval rules of a run (a mixin of `_run.Run`): requesting an approval (round 1, or a new round
when an error handler retries the node), counting answers (`_approvals`), deciding, and deadlines:
``on_timeout: reject`` decides 'rejected', ``fail`` fails the node, ``escalate`` opens one more round for
`escalate_to`'s approvers with its own deadline and final `on_timeout`. A round's timeout takes effect
once; answers and timeouts for another round change nothing.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from . import _approvals
from .model import ApprovalNode, NodeId, TaskOptions, WorkflowDefinition, format_duration
from .state import (
    Action,
    Answer,
    ApprovalAnswered,
    ApprovalState,
    ApprovalTimedOut,
    NodeState,
    NodeStatus,
    RequestApproval,
    ResolveApproval,
    ResolvedTask,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["ApprovalRules"]

S = NodeStatus


class ApprovalRules:
    """Approval nodes: requests, answers, decisions, deadlines."""

    if TYPE_CHECKING:  # provided by `Run`
        d: WorkflowDefinition
        nodes: dict[NodeId, NodeState]
        now: float
        paused: bool
        actions: list[Action]

        def scope(self, **extra: Any) -> dict[str, Any]: ...
        def resolve(self, task: TaskOptions, scope: Mapping[str, Any]) -> ResolvedTask: ...
        def succeed(self, node_id: NodeId, output: Any, *, decision: str | None = None) -> None: ...
        def failed(self, node_id: NodeId, error: str, *, final: bool = False) -> None: ...

    def answer(self, event: ApprovalAnswered) -> str | None:
        node = self.d.by_id.get(event.node)
        ns = self.nodes.get(event.node)
        if not isinstance(node, ApprovalNode) or ns is None or ns.approval is None:
            return f"no approval was requested for '{event.node}'"
        approval = ns.approval
        if ns.status != S.WAITING_APPROVAL or approval.round != event.round:
            verdict = _approvals.judge(approval, event.subject, event.roles, event.decision) \
                if approval.round == event.round else "not_pending"
            return f"answer not counted: {verdict}"
        verdict = _approvals.judge(approval, event.subject, event.roles, event.decision)
        if verdict != "accepted":
            return f"answer not counted: {verdict}"
        answer = Answer(subject=event.subject, roles=tuple(event.roles), decision=event.decision,
                        comment=event.comment, at=event.at)
        approval = replace(approval, answers=(*approval.answers, answer))
        decision = _approvals.decide(approval.approvers, approval.require, approval.answers)
        if decision is None:
            self.nodes[node.id] = replace(ns, approval=approval)
            return None
        approval = replace(approval, decision=decision, comment=event.comment, decided_by=event.subject)
        self.nodes[node.id] = replace(ns, approval=approval)
        self.actions.append(ResolveApproval(node=node.id, round=approval.round, outcome=decision, decision=decision,
                                            comment=event.comment, decided_by=event.subject))
        self.succeed(node.id, decision, decision=decision)
        return None

    def timeout(self, event: ApprovalTimedOut) -> str | None:
        node = self.d.by_id.get(event.node)
        ns = self.nodes.get(event.node)
        if not isinstance(node, ApprovalNode) or ns is None or ns.approval is None:
            return f"no approval was requested for '{event.node}'"
        approval = ns.approval
        if ns.status != S.WAITING_APPROVAL or approval.round != event.round:
            return f"approval '{node.id}' round {event.round} is not waiting (already resolved)"
        if approval.deadline is None or event.at < approval.deadline:
            return f"approval '{node.id}' round {event.round} is not past its deadline"
        escalation = node.escalate_to
        if not approval.escalated and node.on_timeout == "escalate" and escalation is not None:
            self.actions.append(ResolveApproval(node=node.id, round=approval.round, outcome="escalated",
                                                decision=None, comment="", decided_by=None))
            second = ApprovalState(
                round=approval.round + 1, message=approval.message, approvers=escalation.approvers,
                require=escalation.require, requested_at=self.now, escalated=True,
                deadline=self.now + escalation.timeout_s if escalation.timeout_s is not None else None)
            self.nodes[node.id] = replace(ns, approval=second)
            self.actions.append(RequestApproval(node=node.id, round=second.round, message=second.message,
                                                approvers=second.approvers, require=second.require,
                                                deadline=second.deadline))
            return None
        policy = escalation.on_timeout if approval.escalated and escalation is not None else node.on_timeout
        waited = format_duration(self.now - approval.requested_at)
        if policy == "fail":
            self.nodes[node.id] = replace(ns, approval=replace(approval, timed_out=True))
            self.actions.append(ResolveApproval(node=node.id, round=approval.round, outcome="timed_out",
                                                decision=None, comment="", decided_by=None))
            self.failed(node.id, f"approval timed out after {waited}", final=True)
            return None
        comment = f"no decision within {waited}"
        self.nodes[node.id] = replace(ns, approval=replace(approval, timed_out=True, decision="rejected",
                                                           comment=comment))
        self.actions.append(ResolveApproval(node=node.id, round=approval.round, outcome="timed_out",
                                            decision="rejected", comment=comment, decided_by=None))
        self.succeed(node.id, "rejected", decision="rejected")
        return None

    def request_approval(self, node: ApprovalNode, ns: NodeState) -> None:
        message = node.message.render_text(self.scope())
        previous = ns.approval.round if ns.approval is not None else 0
        approval = ApprovalState(round=previous + 1, message=message, approvers=node.approvers,
                                 require=node.require, requested_at=self.now,
                                 deadline=self.now + node.timeout_s if node.timeout_s is not None else None)
        self.nodes[node.id] = replace(ns, status=S.WAITING_APPROVAL, approval=approval, decision=None)
        self.actions.append(RequestApproval(node=node.id, round=approval.round, message=message,
                                            approvers=node.approvers, require=node.require,
                                            deadline=approval.deadline))
