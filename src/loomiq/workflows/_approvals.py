"""Approval rules as functions over data: who may answer, whether an answer counts, when the answers
counted so far decide.

- An approver is a listed subject or a holder of a listed role.
- Each distinct approver counts once: their first answer in a round is the one that counts; the same
  answer again is a duplicate, a different one a conflict.
- Any counted rejection rejects at once. Approvals decide when the requirement is met: ``any`` (one),
  ``N`` (N distinct approvers), ``all`` (each listed subject, and for each listed role a distinct
  approver holding it: one person covers one entry, found by bipartite matching).
- After the decision, an answer that agrees with it from someone who already counted is a duplicate;
  any other is a conflict.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from .model import Approvers, Require
from .state import Answer, ApprovalState

__all__ = ["Verdict", "decide", "is_approver", "judge"]

Verdict = Literal["accepted", "duplicate", "conflict", "forbidden", "not_pending"]
"""How an answer is taken: counted, a repeat of a counted answer, in conflict with one (or with the
decision), from someone who may not answer, or for an approval that is not waiting for answers."""


def is_approver(approvers: Approvers, subject: str, roles: Sequence[str]) -> bool:
    """True when `subject` (holding `roles`) may answer."""
    return subject in approvers.subjects or any(role in approvers.roles for role in roles)


def judge(approval: ApprovalState | None, subject: str, roles: Sequence[str],
          decision: Literal["approve", "reject"]) -> Verdict:
    """How an answer would be taken by `approval` (None: nothing requested)."""
    if approval is None:
        return "not_pending"
    if not is_approver(approval.approvers, subject, roles):
        return "forbidden"
    earlier = next((a for a in approval.answers if a.subject == subject), None)
    if approval.decision is not None:
        agrees = (decision == "approve") == (approval.decision == "approved")
        return "duplicate" if earlier is not None and agrees and earlier.decision == decision else "conflict"
    if earlier is not None:
        return "duplicate" if earlier.decision == decision else "conflict"
    return "accepted"


def _covers_all(approvers: Approvers, answers: Sequence[Answer]) -> bool:
    entries: list[tuple[str, str]] = [("subject", s) for s in dict.fromkeys(approvers.subjects)]
    entries += [("role", r) for r in dict.fromkeys(approvers.roles)]
    people = [a for a in answers if a.decision == "approve"]
    if len(people) < len(entries):
        return False

    def can(entry: tuple[str, str], person: Answer) -> bool:
        return person.subject == entry[1] if entry[0] == "subject" else entry[1] in person.roles

    match: dict[int, int] = {}  # person index -> entry index

    def augment(e: int, seen: set[int]) -> bool:
        for p, person in enumerate(people):
            if p in seen or not can(entries[e], person):
                continue
            seen.add(p)
            if p not in match or augment(match[p], seen):
                match[p] = e
                return True
        return False

    return all(augment(e, set()) for e in range(len(entries)))


def decide(approvers: Approvers, require: Require, answers: Sequence[Answer]) -> Literal["approved", "rejected"] | None:
    """The decision the counted `answers` make, or None while undecided."""
    if any(a.decision == "reject" for a in answers):
        return "rejected"
    approvals = len({a.subject for a in answers if a.decision == "approve"})
    if require == "any":
        return "approved" if approvals >= 1 else None
    if require == "all":
        return "approved" if _covers_all(approvers, answers) else None
    return "approved" if approvals >= require else None
