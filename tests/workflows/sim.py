"""A test driver for the pure semantics: feeds events to `advance`, remembers the actions, and knows
the attempt each running task is on, so tests read as a story."""

from __future__ import annotations

from typing import Any

from loomiq.workflows import (
    Action,
    ApprovalAnswered,
    ApprovalTimedOut,
    Event,
    NodeFailed,
    NodeStatus,
    NodeSucceeded,
    RunCancelled,
    RunPaused,
    RunResumed,
    RunStarted,
    StartSubworkflow,
    StartTask,
    Transition,
    WorkflowDefinition,
    advance,
    initial_state,
    replay,
)


class Sim:
    """One run of a definition, driven by hand. `now` advances by one second per event unless set."""

    def __init__(self, definition: WorkflowDefinition) -> None:
        self.d = definition
        self.state = initial_state(definition)
        self.events: list[Event] = []
        self.actions: list[Action] = []
        self.last: Transition | None = None
        self.now = 0.0

    def feed(self, event: Event) -> Transition:
        """Apply one event and keep its transition."""
        self.last = advance(self.d, self.state, event)
        self.state = self.last.state
        self.events.append(event)
        self.actions.extend(self.last.actions)
        return self.last

    def tick(self, at: float | None) -> float:
        self.now = self.now + 1 if at is None else at
        return self.now

    def start(self, at: float | None = None, **inputs: Any) -> Transition:
        return self.feed(RunStarted(inputs, self.tick(at)))

    def attempt(self, node: str, index: int | None = None) -> int:
        for action in reversed(self.actions):
            if isinstance(action, StartTask | StartSubworkflow) and action.node == node and \
                    getattr(action, "index", None) == index:
                return action.attempt
        raise AssertionError(f"{node}[{index}] was never started")

    def ok(self, node: str, output: Any = "done", index: int | None = None, at: float | None = None) -> Transition:
        return self.feed(NodeSucceeded(node, self.attempt(node, index), output, self.tick(at), index))

    def fail(self, node: str, error: str = "boom", index: int | None = None, at: float | None = None) -> Transition:
        return self.feed(NodeFailed(node, self.attempt(node, index), error, self.tick(at), index))

    def answer(self, node: str, subject: str, decision: str = "approve", roles: tuple[str, ...] = ("admin",),
               comment: str = "", round: int | None = None, at: float | None = None) -> Transition:
        ns = self.state.nodes[node]  # type: ignore[index]
        rnd = round if round is not None else (ns.approval.round if ns.approval else 1)
        return self.feed(ApprovalAnswered(node, rnd, subject, roles, decision, comment,  # type: ignore[arg-type]
                                          self.tick(at)))

    def timeout(self, node: str, at: float, round: int | None = None) -> Transition:
        ns = self.state.nodes[node]  # type: ignore[index]
        rnd = round if round is not None else (ns.approval.round if ns.approval else 1)
        return self.feed(ApprovalTimedOut(node, rnd, self.tick(at)))

    def pause(self) -> Transition:
        return self.feed(RunPaused(self.tick(None)))

    def resume(self) -> Transition:
        return self.feed(RunResumed(self.tick(None)))

    def cancel(self, reason: str = "user") -> Transition:
        return self.feed(RunCancelled(reason, self.tick(None)))

    def status(self, node: str) -> NodeStatus:
        return self.state.nodes[node].status  # type: ignore[index]

    def statuses(self) -> dict[str, str]:
        return {k: v.status.value for k, v in self.state.nodes.items()}

    def started(self) -> list[str]:
        """Every StartTask/StartSubworkflow so far as ``node``, ``node[i]``, with ``#attempt`` after the first."""
        out = []
        for a in self.actions:
            if isinstance(a, StartTask | StartSubworkflow):
                name = a.node + (f"[{a.index}]" if getattr(a, "index", None) is not None else "")
                out.append(name + (f"#{a.attempt}" if a.attempt > 1 else ""))
        return out

    def kinds(self, transition: Transition | None = None) -> list[str]:
        """The types of the last transition's actions."""
        t = transition or self.last
        assert t is not None
        return [a.type for a in t.actions]

    def assert_replays(self) -> None:
        """Folding the recorded events again gives the same state and the same actions."""
        state, actions = replay(self.d, self.events)
        assert state == self.state
        assert list(actions) == self.actions
