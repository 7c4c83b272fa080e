"""The run semantics, scenario by scenario, through the pure step function (no loop, no database)."""

from __future__ import annotations

import pytest

from loomiq.workflows import (
    NODE_KINDS,
    CancelTask,
    FinishRun,
    NodeState,
    NodeStatus,
    NodeSucceeded,
    RequestApproval,
    ResolveApproval,
    RunStatus,
    StartSubworkflow,
    StartTask,
    judge_answer,
    loads_workflow,
    pending_approvals,
)
from loomiq.workflows._scope import node_type, node_view

from .conftest import RELEASE_NOTES, load
from .sim import Sim

S = NodeStatus


def release_notes() -> Sim:
    sim = Sim(loads_workflow(RELEASE_NOTES))
    t = sim.start(version="1.4")
    assert sim.kinds(t) == ["start_task"]
    start = t.actions[0]
    assert isinstance(start, StartTask)
    assert start.task.prompt == "Draft release notes for 1.4" and start.task.strategy == "sequential"
    assert start.step_key == "node/draft/1"
    t = sim.ok("draft", "NOTES v1.4")
    request = t.actions[0]
    assert isinstance(request, RequestApproval)
    assert request.message == "Publish the notes for 1.4?" and request.deadline == 2 + 72 * 3600
    assert request.approvers.roles == ("admin", "operator") and request.approval_key == "approval/approve/1"
    assert sim.status("approve") == S.WAITING_APPROVAL
    assert pending_approvals(sim.state) == [("approve", 1)]
    return sim


def test_release_notes_approved() -> None:
    sim = release_notes()
    t = sim.answer("approve", "ann", roles=("operator",), comment="ship it")
    assert sim.kinds(t) == ["resolve_approval", "start_task"]
    assert t.actions[0] == ResolveApproval(node="approve", round=1, outcome="approved", decision="approved",
                                           comment="ship it", decided_by="ann")
    assert t.actions[1].task.prompt == "Polish for publication: NOTES v1.4"  # type: ignore[union-attr]
    assert sim.state.nodes["held_back"].reason == "if is false: nodes.approve.decision == 'rejected'"
    t = sim.ok("publish", "final notes")
    assert t.actions == (FinishRun(status=RunStatus.SUCCEEDED, outputs={}, error=None),)
    assert sim.statuses() == {"draft": "succeeded", "approve": "succeeded", "publish": "succeeded",
                              "held_back": "skipped"}
    sim.assert_replays()


def test_release_notes_rejected_and_the_comment_reaches_the_prompt() -> None:
    sim = release_notes()
    t = sim.answer("approve", "bob", "reject", roles=("admin",), comment="legal review pending")
    assert t.actions[1].task.prompt == "Say why 1.4 was held back: legal review pending"  # type: ignore[union-attr]
    assert sim.status("publish") == S.SKIPPED
    sim.ok("held_back")
    assert sim.state.status == RunStatus.SUCCEEDED
    sim.assert_replays()


def test_release_notes_deadline_rejects_exactly_once() -> None:
    sim = release_notes()
    deadline = 2 + 72 * 3600
    early = sim.timeout("approve", at=deadline - 1)
    assert early.note is not None and early.actions == ()
    t = sim.timeout("approve", at=deadline)
    assert t.actions[0] == ResolveApproval(node="approve", round=1, outcome="timed_out", decision="rejected",
                                           comment="no decision within 72h", decided_by=None)
    assert t.actions[1].task.prompt == "Say why 1.4 was held back: no decision within 72h"  # type: ignore[union-attr]
    again = sim.timeout("approve", at=deadline + 5)
    assert again.actions == () and again.note is not None
    late = sim.answer("approve", "ann", at=deadline + 6)
    assert late.actions == () and "not counted" in (late.note or "")
    assert sum(isinstance(a, ResolveApproval) for a in sim.actions) == 1
    sim.assert_replays()


def test_on_failure_always_and_skip_propagation() -> None:
    sim = Sim(load("""
        name: w
        nodes:
          a: {kind: task, prompt: a}
          b: {kind: task, prompt: b, needs: [a]}
          c: {kind: task, prompt: c, needs: [b]}
          d: {kind: task, prompt: d, needs: [b], on: always}
          e: {kind: task, prompt: e, needs: [a], on: failure}
          f: {kind: task, prompt: f, needs: [b], on: failure}
          g: {kind: task, prompt: g, needs: [d, e]}
    """))
    sim.start()
    sim.fail("a", "exploded")
    assert sim.state.nodes["b"].reason == "'a' failed"
    assert sim.state.nodes["c"].reason == "'b' was skipped"
    assert sim.state.nodes["f"].reason == "none of its needs failed"
    assert sim.started() == ["a", "d", "e"]
    sim.ok("d")
    sim.ok("e")
    sim.ok("g")
    assert sim.state.status == RunStatus.FAILED and sim.state.error == "node 'a' failed: exploded"
    sim.assert_replays()


def test_node_retries_with_backoff_and_stale_results_are_ignored() -> None:
    sim = Sim(load("""
        name: w
        nodes:
          a: {kind: task, prompt: a, retry: {max_attempts: 3, backoff: 10s, factor: 2}}
          b: {kind: task, prompt: "${{ nodes.a.output }} after ${{ nodes.a.attempts }}", needs: [a]}
    """))
    sim.start(at=100)
    sim.fail("a", at=101)
    retry = sim.last.actions[0]  # type: ignore[union-attr]
    assert isinstance(retry, StartTask) and retry.attempt == 2 and retry.not_before == 111
    stale = sim.feed(NodeSucceeded("a", 1, "x", 112))
    assert stale.actions == () and "stale" in (stale.note or "")
    sim.fail("a", at=112)
    assert sim.last.actions[0].not_before == 132  # type: ignore[union-attr]
    sim.ok("a", "A")
    assert sim.last.actions[0].task.prompt == "A after 3"  # type: ignore[union-attr]
    sim.ok("b")
    assert sim.state.status == RunStatus.SUCCEEDED
    sim.assert_replays()


def test_decision_routes_and_skips_the_other_branches() -> None:
    text = """
        name: w
        inputs: {severity: string}
        nodes:
          triage:
            kind: decision
            cases:
              - {when: "${{ inputs.severity == 'critical' }}", value: hotfix, then: [hotfix]}
              - {when: "${{ inputs.severity == 'high' }}", value: soon, then: [soon, notify]}
            default: {value: later, then: [later]}
          hotfix: {kind: task, prompt: h, needs: [triage]}
          soon: {kind: task, prompt: s, needs: [triage]}
          notify: {kind: task, prompt: "n ${{ nodes.triage.decision }}", needs: [triage]}
          later: {kind: task, prompt: l, needs: [triage]}
          close: {kind: task, prompt: "closing ${{ nodes.triage.decision }}", needs: [hotfix, soon, later], on: always}
    """
    sim = Sim(load(text))
    sim.start(severity="high")
    assert sim.started() == ["soon", "notify"]
    assert sim.state.nodes["hotfix"].reason == "decision 'triage' chose 'soon'"
    assert sim.state.nodes["triage"].decision == "soon"
    sim.ok("soon")
    assert sim.last.actions[0].task.prompt == "closing soon"  # type: ignore[union-attr]
    sim.ok("notify")
    sim.ok("close")
    assert sim.state.status == RunStatus.SUCCEEDED
    sim.assert_replays()
    other = Sim(load(text))
    other.start(severity="low")
    assert other.started() == ["later"]


def test_decision_without_a_match_skips_every_branch() -> None:
    sim = Sim(load("""
        name: w
        nodes:
          d: {kind: decision, cases: [{when: "false", value: x, then: [x]}]}
          x: {kind: task, prompt: x, needs: [d]}
          y: {kind: task, prompt: y, needs: [d]}
    """))
    sim.start()
    assert sim.state.nodes["x"].reason == "decision 'd' matched no case"
    assert sim.started() == ["y"]


def test_parallel_for_each_limits_orders_and_joins() -> None:
    sim = Sim(load("""
        name: w
        inputs: {items: {type: list, default: [a, b, c]}}
        nodes:
          fan:
            kind: parallel
            for_each: "${{ inputs.items }}"
            max_parallel: 2
            task: {prompt: "do ${{ item }} (${{ index }})"}
          after: {kind: task, prompt: "${{ nodes.fan.outputs }} ${{ nodes.fan.items }}", needs: [fan]}
    """))
    t = sim.start()
    assert [(a.index, a.task.prompt, a.step_key) for a in t.actions] == [  # type: ignore[union-attr]
        (0, "do a (0)", "node/fan/0/1"), (1, "do b (1)", "node/fan/1/1")]
    t = sim.ok("fan", "B", index=1)
    assert [a.index for a in t.actions] == [2]  # type: ignore[union-attr]
    sim.ok("fan", "C", index=2)
    t = sim.ok("fan", "A", index=0)
    assert t.actions[0].task.prompt == '["A","B","C"] ["a","b","c"]'  # type: ignore[union-attr]
    sim.assert_replays()


def test_parallel_join_all_stops_starting_after_a_failure() -> None:
    sim = Sim(load("""
        name: w
        nodes:
          fan: {kind: parallel, for_each: [1, 2, 3, 4], max_parallel: 2, task: {prompt: "${{ item }}"}}
          rescue: {kind: task, prompt: "r", needs: [fan], on: failure}
    """))
    sim.start()
    sim.fail("fan", "bad input", index=0)
    assert sim.started() == ["fan[0]", "fan[1]"]
    sim.ok("fan", index=1)
    assert sim.status("fan") == S.FAILED
    assert sim.state.nodes["fan"].error == "item 0 failed: bad input"
    assert [i.status for i in sim.state.nodes["fan"].items] == [S.FAILED, S.SUCCEEDED, S.SKIPPED, S.SKIPPED]
    assert sim.started() == ["fan[0]", "fan[1]", "rescue"]
    sim.assert_replays()


def test_parallel_join_any_and_matrix_product() -> None:
    sim = Sim(load("""
        name: w
        nodes:
          grid:
            kind: parallel
            matrix: {area: [code, deps], std: [soc2, iso]}
            join: any
            task: {prompt: "${{ matrix.area }}/${{ matrix.std }}", retry: 2}
    """))
    t = sim.start()
    assert [a.task.prompt for a in t.actions] == ["code/soc2", "code/iso", "deps/soc2", "deps/iso"]  # type: ignore
    for i in range(4):
        sim.fail("grid", index=i)
    assert sim.started()[4:] == ["grid[0]#2", "grid[1]#2", "grid[2]#2", "grid[3]#2"]
    for i in range(3):
        sim.fail("grid", index=i)
    sim.ok("grid", "fine", index=3)
    assert sim.status("grid") == S.SUCCEEDED
    assert sim.state.nodes["grid"].output == [None, None, None, "fine"]
    assert sim.state.status == RunStatus.SUCCEEDED
    sim.assert_replays()


def test_a_failed_branch_is_routed_by_its_handler_and_a_decision_reads_its_output() -> None:
    sim = Sim(load("""
        name: w
        nodes:
          fetch: {kind: task, prompt: f, retry: 2}
          use: {kind: task, prompt: u, needs: [fetch]}
          fallback:
            kind: error_handler
            handles: [fetch]
            action: route
            prompt: "'${{ error.node }}' failed with ${{ error.message }}; propose a fallback"
          choose:
            kind: decision
            needs: [fallback]
            cases:
              - {when: "${{ contains(nodes.fallback.output, 'cache') }}", value: cache, then: [from_cache]}
            default: {value: give_up, then: [give_up]}
          from_cache: {kind: task, prompt: c, needs: [choose]}
          give_up: {kind: task, prompt: g, needs: [choose]}
    """))
    sim.start()
    sim.fail("fetch", "timeout")
    sim.fail("fetch", "timeout again")
    assert sim.status("use") == S.SKIPPED
    assert sim.started() == ["fetch", "fetch#2", "fallback"]
    handler_start = sim.last.actions[-1]  # type: ignore[union-attr]
    assert handler_start.task.prompt == "'fetch' failed with timeout again; propose a fallback"  # type: ignore
    sim.ok("fallback", "serve from cache")
    assert sim.started()[-1] == "from_cache" and sim.status("give_up") == S.SKIPPED
    assert sim.state.nodes["fetch"].handled_by == "fallback"
    sim.ok("from_cache")
    assert sim.state.status == RunStatus.SUCCEEDED  # the route handler recovered the failure
    assert sim.started().count("fallback") == 1
    sim.assert_replays()


def test_compensate_runs_then_the_failure_stands() -> None:
    sim = Sim(load("""
        name: w
        nodes:
          deploy: {kind: task, prompt: d}
          verify: {kind: task, prompt: v, needs: [deploy]}
          rollback:
            {kind: error_handler, handles: [deploy, verify], action: compensate, prompt: "undo ${{ error.node }}"}
    """))
    sim.start()
    sim.ok("deploy")
    sim.fail("verify", "health check failed")
    assert sim.last.actions[0].task.prompt == "undo verify"  # type: ignore[union-attr]
    sim.ok("rollback")
    assert sim.state.status == RunStatus.FAILED
    assert sim.state.error == "node 'verify' failed: health check failed"
    sim.assert_replays()


def test_a_handler_that_is_never_needed_is_skipped() -> None:
    sim = Sim(load("""
        name: w
        nodes:
          a: {kind: task, prompt: a}
          h: {kind: error_handler, action: compensate, prompt: undo}
          after_h: {kind: task, prompt: x, needs: [h]}
    """))
    sim.start()
    sim.ok("a")
    assert sim.state.nodes["h"].reason == "no failure to handle"
    assert sim.status("after_h") == S.SKIPPED and sim.state.status == RunStatus.SUCCEEDED


def test_fail_handler_cancels_what_runs_and_fails_the_run() -> None:
    sim = Sim(load("""
        name: w
        nodes:
          a: {kind: task, prompt: a}
          b: {kind: task, prompt: b}
          c: {kind: task, prompt: c, needs: [a]}
          stop: {kind: error_handler, action: fail, message: "stopped: ${{ error.node }} (${{ error.message }})"}
    """))
    sim.start()
    t = sim.fail("a", "bad")
    assert [a for a in t.actions if isinstance(a, CancelTask)] == [
        CancelTask(node="b", attempt=1, reason="stopped by error handler 'stop'")]
    assert t.actions[-1] == FinishRun(status=RunStatus.FAILED, outputs=None, error="stopped: a (bad)")
    assert sim.status("c") == S.CANCELLED and sim.status("b") == S.CANCELLED
    late = sim.ok("b")
    assert late.actions == () and late.note == "the run is over"
    sim.assert_replays()


def test_retry_handler_gives_each_failed_node_more_attempts() -> None:
    sim = Sim(load("""
        name: w
        nodes:
          a: {kind: task, prompt: a}
          b: {kind: task, prompt: b}
          again: {kind: error_handler, action: retry, retry: {max_attempts: 1, backoff: 5s}}
    """))
    sim.start(at=0)
    sim.fail("a", at=1)
    assert sim.last.actions[0].not_before == 6  # type: ignore[union-attr]
    sim.ok("a")
    sim.fail("b")
    sim.fail("b", "still bad")
    assert sim.started() == ["a", "b", "a#2", "b#2"]
    assert sim.state.nodes["again"].status == S.FAILED
    assert sim.state.status == RunStatus.FAILED and sim.state.error == "node 'b' failed: still bad"
    sim.assert_replays()


@pytest.mark.parametrize(("require", "answers", "decided_after"), [
    ("any", [("ann", ("ops",))], 1),
    (2, [("ann", ("ops",)), ("ann", ("ops",)), ("bob", ("ops",))], 3),
    ("all", [("ann", ("ops",)), ("bob", ("ops",)), ("cat", ("sec",)), ("lead", ())], 4),
])
def test_approval_requirements_count_each_distinct_approver_once(require: object, answers: list,
                                                                 decided_after: int) -> None:
    req = f"'{require}'" if isinstance(require, str) else require
    sim = Sim(load(f"""
        name: w
        nodes:
          gate: {{kind: approval, message: ok?, approvers: {{roles: [ops, sec], subjects: [lead]}}, require: {req}}}
          go: {{kind: task, prompt: go, needs: [gate], if: "${{{{ nodes.gate.decision == 'approved' }}}}"}}
    """))
    sim.start()
    for i, (who, roles) in enumerate(answers, start=1):
        sim.answer("gate", who, roles=roles)
        assert (sim.status("gate") == S.SUCCEEDED) == (i >= decided_after), (i, who)
    assert sim.state.nodes["gate"].decision == "approved"
    assert sim.started() == ["go"]
    sim.assert_replays()


def test_all_needs_a_distinct_person_per_role() -> None:
    sim = Sim(load("""
        name: w
        nodes:
          gate: {kind: approval, message: ok?, approvers: {roles: [ops, sec]}, require: all}
    """))
    sim.start()
    sim.answer("gate", "ann", roles=("ops", "sec"))
    assert sim.status("gate") == S.WAITING_APPROVAL  # one person covers one role
    sim.answer("gate", "bob", roles=("ops",))
    assert sim.status("gate") == S.SUCCEEDED  # ann takes sec, bob takes ops


def test_first_valid_decision_wins_and_verdicts() -> None:
    sim = Sim(load("""
        name: w
        nodes:
          gate: {kind: approval, message: ok?, approvers: {roles: [ops]}, require: 2}
    """))
    sim.start()
    assert judge_answer(sim.state, "gate", "eve", ["viewer"], "approve") == "forbidden"
    assert sim.answer("gate", "eve", roles=("viewer",)).note == "answer not counted: forbidden"
    sim.answer("gate", "ann", roles=("ops",))
    assert judge_answer(sim.state, "gate", "ann", ["ops"], "approve") == "duplicate"
    assert judge_answer(sim.state, "gate", "ann", ["ops"], "reject") == "conflict"
    assert sim.answer("gate", "ann", "reject", roles=("ops",)).note == "answer not counted: conflict"
    sim.answer("gate", "bob", "reject", roles=("ops",), comment="no")
    assert sim.state.nodes["gate"].decision == "rejected"  # any counted rejection decides
    assert judge_answer(sim.state, "gate", "bob", ["ops"], "reject") == "duplicate"
    assert judge_answer(sim.state, "gate", "ann", ["ops"], "approve") == "conflict"
    assert judge_answer(sim.state, "gate", "cy", ["ops"], "approve") == "conflict"
    assert judge_answer(sim.state, "gate", "ann", ["ops"], "approve", round=2) == "not_pending"
    assert judge_answer(sim.state, "nope", "ann", ["ops"], "approve") == "not_pending"
    assert sum(isinstance(a, ResolveApproval) for a in sim.actions) == 1
    sim.assert_replays()


def test_escalation_opens_a_second_round_and_times_out_once() -> None:
    sim = Sim(load("""
        name: w
        nodes:
          gate:
            kind: approval
            message: ok?
            approvers: {roles: [ops]}
            timeout: 1h
            on_timeout: escalate
            escalate_to: {roles: [admin], timeout: 30m, on_timeout: reject}
    """))
    sim.start(at=0)
    t = sim.timeout("gate", at=3600)
    assert t.actions == (
        ResolveApproval(node="gate", round=1, outcome="escalated", decision=None, comment="", decided_by=None),
        RequestApproval(node="gate", round=2, message="ok?", approvers=sim.d.node("gate").escalate_to.approvers,  # type: ignore
                        require="any", deadline=3600 + 1800),
    )
    assert sim.answer("gate", "ops1", roles=("ops",)).note == "answer not counted: forbidden"
    assert sim.answer("gate", "boss", roles=("admin",), round=1).note == "answer not counted: not_pending"
    assert sim.timeout("gate", at=5400, round=1).actions == ()
    t = sim.timeout("gate", at=5400)
    assert t.actions[0].outcome == "timed_out" and sim.state.nodes["gate"].decision == "rejected"  # type: ignore
    assert sim.timeout("gate", at=9999).actions == ()
    assert sim.state.status == RunStatus.SUCCEEDED
    sim.assert_replays()


def test_on_timeout_fail_fails_the_node() -> None:
    sim = Sim(load("""
        name: w
        nodes:
          gate: {kind: approval, message: ok?, approvers: {roles: [ops]}, timeout: 10m, on_timeout: fail}
    """))
    sim.start(at=0)
    sim.timeout("gate", at=600)
    assert sim.status("gate") == S.FAILED and sim.state.error == "node 'gate' failed: approval timed out after 10m"


def test_cancel_reaches_running_tasks_and_approvals_and_nothing_starts_after() -> None:
    sim = Sim(load("""
        name: w
        nodes:
          a: {kind: task, prompt: a}
          fan: {kind: parallel, for_each: [1, 2], task: {prompt: x}}
          gate: {kind: approval, message: ok?, approvers: {roles: [ops]}}
          after: {kind: task, prompt: z, needs: [a]}
    """))
    sim.start()
    t = sim.cancel("changed my mind")
    assert [a for a in t.actions if isinstance(a, CancelTask)] == [
        CancelTask(node="a", attempt=1, reason="run cancelled: changed my mind"),
        CancelTask(node="fan", attempt=1, reason="run cancelled: changed my mind", index=0),
        CancelTask(node="fan", attempt=1, reason="run cancelled: changed my mind", index=1),
    ]
    assert any(isinstance(a, ResolveApproval) and a.outcome == "cancelled" for a in t.actions)
    assert t.actions[-1] == FinishRun(status=RunStatus.CANCELLED, outputs=None, error="changed my mind")
    assert set(sim.statuses().values()) == {"cancelled"}
    assert sim.ok("a").actions == ()
    assert not any(isinstance(a, StartTask) for a in t.actions)
    sim.assert_replays()


def test_pause_holds_new_starts_and_resume_releases_them() -> None:
    sim = Sim(load("""
        name: w
        nodes:
          a: {kind: task, prompt: a}
          b: {kind: task, prompt: b, needs: [a]}
          fan: {kind: parallel, for_each: [1, 2], max_parallel: 1, needs: [a], task: {prompt: x}}
    """))
    sim.start()
    sim.pause()
    assert sim.ok("a").actions == ()
    assert sim.pause().note == "the run is already paused"
    t = sim.resume()
    assert sim.kinds(t) == ["start_task", "start_task"] and sim.started() == ["a", "b", "fan[0]"]
    sim.pause()
    sim.ok("fan", index=0)
    assert sim.started() == ["a", "b", "fan[0]"]
    sim.resume()
    assert sim.started()[-1] == "fan[1]"
    sim.assert_replays()


def test_output_schema_parses_json_and_a_mismatch_is_a_failed_attempt() -> None:
    sim = Sim(load("""
        name: w
        nodes:
          review:
            kind: task
            prompt: r
            retry: 2
            output_schema:
              type: object
              properties: {verdict: {enum: [approve, changes]}, notes: {type: string}}
              required: [verdict]
          route:
            kind: decision
            needs: [review]
            cases: [{when: "${{ nodes.review.output.verdict == 'changes' }}", value: fix, then: [fix]}]
          fix: {kind: task, prompt: "fix: ${{ nodes.review.output.notes }}", needs: [route]}
    """))
    sim.start()
    sim.ok("review", '{"verdict": "maybe"}')
    assert sim.state.nodes["review"].error.startswith("output does not match output_schema at verdict")  # type: ignore
    assert sim.started() == ["review", "review#2"]
    sim.ok("review", '{"verdict": "changes", "notes": "rename x"}')
    assert sim.last.actions[0].task.prompt == "fix: rename x"  # type: ignore[union-attr]
    sim.assert_replays()


def test_vars_outputs_and_runtime_expression_errors() -> None:
    sim = Sim(load("""
        name: w
        inputs: {who: string, n: {type: integer, default: 2}}
        vars: {greeting: "hello ${{ inputs.who }}", twice: "${{ inputs.n * 2 }}"}
        nodes:
          a: {kind: task, prompt: "${{ vars.greeting }} x${{ vars.twice }}"}
          b: {kind: task, prompt: b, needs: [a], if: "${{ fromJSON(nodes.a.output).go }}"}
        outputs: {result: "${{ nodes.a.output }}", doubled: "${{ vars.twice }}"}
    """))
    t = sim.start(who="ann", n=2)
    assert t.actions[0].task.prompt == "hello ann x4"  # type: ignore[union-attr]
    sim.ok("a", "not json")
    assert sim.status("b") == S.FAILED and sim.state.nodes["b"].error.startswith("if: fromJSON(): not JSON")  # type: ignore
    assert sim.state.status == RunStatus.FAILED
    ok = Sim(sim.d)
    ok.start(who="bo", n=1)
    ok.ok("a", '{"go": false}')
    assert ok.state.status == RunStatus.SUCCEEDED
    assert ok.state.outputs == {"result": '{"go": false}', "doubled": 2}
    assert ok.last.actions[-1] == FinishRun(status=RunStatus.SUCCEEDED,  # type: ignore[union-attr]
                                            outputs={"result": '{"go": false}', "doubled": 2}, error=None)


def test_subworkflow_action_and_output() -> None:
    sim = Sim(load("""
        name: w
        inputs: {title: string}
        nodes:
          child: {kind: subworkflow, workflow: bug-fix, inputs: {title: "${{ inputs.title }}", severity: high}}
          after: {kind: task, prompt: "${{ nodes.child.output.root_cause }}", needs: [child]}
    """))
    t = sim.start(title="crash")
    assert t.actions == (StartSubworkflow(node="child", attempt=1, workflow="bug-fix",
                                          inputs={"title": "crash", "severity": "high"}),)
    sim.ok("child", {"root_cause": "null pointer"})
    assert sim.last.actions[0].task.prompt == "null pointer"  # type: ignore[union-attr]


def test_events_before_start_and_unknown_nodes_change_nothing() -> None:
    sim = Sim(loads_workflow(RELEASE_NOTES))
    t = sim.cancel()
    assert t.note == "the run has not started" and t.actions == ()
    sim.start(version="1")
    assert sim.start(version="2").note == "the run has already started"


@pytest.mark.parametrize("kind", NODE_KINDS)
def test_static_node_types_and_runtime_views_have_the_same_fields(kind: str) -> None:
    bodies = {
        "task": "{kind: task, prompt: x}",
        "decision": "{kind: decision, cases: [{when: 'true', value: v}]}",
        "parallel": "{kind: parallel, for_each: [1], task: {prompt: x}}",
        "approval": "{kind: approval, message: m, approvers: {roles: [r]}}",
        "error_handler": "{kind: error_handler, action: route}",
        "subworkflow": "{kind: subworkflow, workflow: other}",
    }
    d = load(f"name: w\nnodes:\n  n: {bodies[kind]}\n")
    node = d.node("n")
    static = set(node_type(node).fields or {})
    assert static == set(node_view(node, NodeState()))
