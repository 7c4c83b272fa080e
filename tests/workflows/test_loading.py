"""Loading and validation: the issue's example verbatim, the builder and JSON giving the identical
definition, and every kind of error as one line with file, line and column."""

from __future__ import annotations

import json

import pytest
import yaml

from loomiq.workflows import (
    ApprovalNode,
    TaskNode,
    ValidationIssue,
    Workflow,
    WorkflowError,
    case,
    check_workflow_text,
    loads_workflow,
    validate,
    workflow_from_data,
)

from .conftest import RELEASE_NOTES, check, lines, load


def release_notes_builder() -> Workflow:
    return (Workflow("release-notes")
            .input("version", type="string")
            .task("draft", prompt="Draft release notes for ${{ inputs.version }}", strategy="sequential")
            .approval("approve", needs=["draft"], message="Publish the notes for ${{ inputs.version }}?",
                      approvers={"roles": ["admin", "operator"]}, timeout="72h", on_timeout="reject")
            .task("publish", needs=["approve"], if_="${{ nodes.approve.decision == 'approved' }}",
                  prompt="Polish for publication: ${{ nodes.draft.output }}")
            .task("held_back", needs=["approve"], if_="${{ nodes.approve.decision == 'rejected' }}",
                  prompt="Say why ${{ inputs.version }} was held back: ${{ nodes.approve.comment }}"))


def test_the_issue_example_validates_as_written() -> None:
    result = check_workflow_text(RELEASE_NOTES, "release-notes.yaml")
    assert result.issues == ()
    assert result.ok
    d = result.definition
    assert d is not None and d.name == "release-notes"
    assert [n.id for n in d.nodes] == ["draft", "approve", "publish", "held_back"]
    approve = d.node("approve")
    assert isinstance(approve, ApprovalNode)
    assert approve.approvers.roles == ("admin", "operator")
    assert approve.timeout_s == 72 * 3600 and approve.on_timeout == "reject" and approve.require == "any"
    draft = d.node("draft")
    assert isinstance(draft, TaskNode) and draft.task.strategy == "sequential"
    publish = d.node("publish")
    assert publish.if_ is not None and publish.if_.source == "nodes.approve.decision == 'approved'"
    assert d.input_specs["version"].required


def test_builder_and_json_give_the_identical_definition() -> None:
    from_yaml = loads_workflow(RELEASE_NOTES)
    assert release_notes_builder().build() == from_yaml
    as_json = json.dumps(yaml.safe_load(RELEASE_NOTES.replace("on_timeout", "on_timeout")), indent="\t")
    assert loads_workflow(as_json, "release-notes.json") == from_yaml
    assert workflow_from_data(release_notes_builder().to_data()) == from_yaml


def test_yaml_12_scalars_keep_on_yes_no_as_strings() -> None:
    d = load("""
        name: scalars
        inputs:
          answer: {type: string, default: no}
          norway: {type: string, enum: [NO, yes, on]}
        nodes:
          a: {kind: task, prompt: x}
          b: {kind: task, needs: a, on: failure, prompt: y}
    """)
    assert d.input_specs["answer"].default == "no"
    assert d.input_specs["norway"].enum == ("NO", "yes", "on")
    assert d.node("b").on == "failure" and d.node("b").needs == ("a",)


@pytest.mark.parametrize(("yaml_text", "expected"), [
    # a cycle
    ("""
     name: w
     nodes:
       a: {kind: task, prompt: x, needs: [b]}
       b: {kind: task, prompt: y, needs: [a]}
     """, ["wf.yaml:3:37: nodes.a.needs: cycle: a -> b -> a"]),
    # unknown node in needs, with a suggestion
    ("""
     name: w
     nodes:
       draft: {kind: task, prompt: x}
       b: {kind: task, prompt: y, needs: [draf]}
     """, ["wf.yaml:4:38: nodes.b.needs.0: unknown node 'draf' (did you mean 'draft'?)"]),
    # undefined variables: an input, a node not upstream, an unknown root
    ("""
     name: w
     inputs: {version: string}
     nodes:
       a: {kind: task, prompt: "v${{ inputs.versoin }}"}
       b: {kind: task, prompt: "${{ nodes.c.output }}"}
       c: {kind: task, prompt: "${{ env.HOME }}", needs: [a]}
     """, ["wf.yaml:4:40: nodes.a.prompt: inputs has no field 'versoin' (fields: version)",
           "wf.yaml:5:38: nodes.b.prompt: nodes.c is not upstream of 'b' (add 'c' to its needs)",
           "wf.yaml:6:32: nodes.c.prompt: unknown variable 'env' (known here: inputs, nodes, vars)"]),
    # a bad expression
    ("""
     name: w
     nodes:
       a:
         kind: task
         prompt: "Hello ${{ inputs.x = 1 }}"
     """, ["wf.yaml:5:33: nodes.a.prompt: bad expression: '=' is not an operator (compare with '==')"]),
    # type errors in inputs
    ("""
     name: w
     inputs:
       count: {type: integer, default: many}
       level: {type: string, enum: [low, high], default: medium}
       tags: {type: list, items: string, default: [a, 2]}
     nodes:
       a: {kind: task, prompt: x}
     """, ["wf.yaml:3:35: inputs.count.default: default must be an integer, not a string",
           'wf.yaml:4:53: inputs.level.default: default must be one of "low", "high", not "medium"',
           "wf.yaml:5:46: inputs.tags.default: default element 1 must be a string, not an integer"]),
    # an unreachable node, and one after it
    ("""
     name: w
     nodes:
       a: {kind: task, prompt: x, if: "${{ 1 == 2 }}"}
       b: {kind: task, prompt: y, needs: [a]}
       c: {kind: task, prompt: z, needs: [a], on: always}
     """, ["wf.yaml:3:6: nodes.a: unreachable: its if is always false",
           "wf.yaml:4:6: nodes.b: unreachable: it needs 'a', which can never run"]),
    # a duplicate node name
    ("""
     name: w
     nodes:
       a: {kind: task, prompt: x}
       a: {kind: task, prompt: y}
     """, ["wf.yaml:4:3: nodes.a: duplicate key 'a' (first at line 3)"]),
    # a bad duration
    ("""
     name: w
     nodes:
       a: {kind: approval, message: ok?, approvers: {roles: [admin]}, timeout: 3 days}
     """, ["wf.yaml:3:75: nodes.a.timeout: not a duration: '3 days' (write e.g. 72h, 30m, 1h30m, 45s, 500ms)"]),
    # an unknown key, with a suggestion
    ("""
     name: w
     nodes:
       a: {kind: task, promt: x}
     """, ["wf.yaml:3:6: nodes.a: missing key 'prompt'",
           "wf.yaml:3:19: nodes.a.promt: unknown key 'promt' (did you mean 'prompt'?)"]),
    # an unknown kind
    ("""
     name: w
     nodes:
       a: {kind: tsk, prompt: x}
     """, ["wf.yaml:3:13: nodes.a: unknown node kind 'tsk' (kinds: task, decision, parallel, approval, "
           "error_handler, subworkflow)"]),
    # invalid YAML
    ("""
     name: w
     nodes: [
     """, ["wf.yaml:3:1: invalid YAML: did not find expected node content"]),
])
def test_each_error_is_one_line_with_file_line_and_column(yaml_text: str, expected: list[str]) -> None:
    assert lines(yaml_text) == expected


def test_expression_columns_inside_block_scalars_and_quoted_strings() -> None:
    text = """
        name: w
        nodes:
          a:
            kind: task
            prompt: |
              First line
              then ${{ nodes.zz.output }} here
          b:
            kind: task
            prompt: 'single ${{ inputs.nope }}'
    """
    assert lines(text) == [
        "wf.yaml:7:22: nodes.a.prompt: unknown node 'zz'",
        "wf.yaml:10:32: nodes.b.prompt: inputs has no field 'nope' (fields: none)",
    ]


def test_semantic_rules() -> None:
    out = lines("""
        name: w
        inputs: {flag: boolean}
        nodes:
          a: {kind: task, prompt: x, strategy: consensuss}
          b: {kind: task, prompt: x, needs: [a, a], on: failure}
          c: {kind: task, prompt: x, on: failure}
          d: {kind: task, prompt: x, if: "${{ inputs.flag == 'yes' }}"}
          e: {kind: task, prompt: x, if: "${{ nodes.a.output }}", needs: [a]}
          f: {kind: approval, message: ok, approvers: {}, timeout: 1h, on_timeout: escalate}
          g: {kind: approval, message: ok, approvers: {subjects: [ann]}, require: 2}
          h: {kind: approval, message: ok, approvers: {roles: [x]}, on_timeout: fail}
          i: {kind: task, prompt: x, output_schema: {type: objekt}}
    """)
    expected = [
        "nodes.a.strategy: unknown strategy 'consensuss'",
        "nodes.b.needs.1: 'a' is listed twice",
        "nodes.c.on: on: failure runs after a need fails, but this node needs nothing",
        "nodes.d.if: compares a boolean with 'yes': they are never equal",
        "nodes.e.if: a condition must be a boolean, not a string",
        "nodes.f.approvers: nobody can answer: give roles or subjects",
        "nodes.f.on_timeout: on_timeout: escalate needs escalate_to",
        "nodes.g.require: require: 2 can never be met by 1 listed subject(s) and no roles",
        "nodes.h.on_timeout: on_timeout: fail needs a timeout",
        "nodes.i.output_schema: not a valid JSON schema",
    ]
    for fragment in expected:
        assert sum(fragment in line for line in out) == 1, (fragment, out)
    assert len(out) == len(expected), out


def test_decisions_parallel_and_handlers_rules() -> None:
    out = lines("""
        name: w
        nodes:
          a: {kind: task, prompt: x}
          d:
            kind: decision
            needs: [a]
            cases:
              - {when: "${{ nodes.a.output == 'x' }}", value: x, then: [b]}
              - {when: "true", value: x, then: [c, zz]}
          b: {kind: task, prompt: x, needs: [d]}
          c: {kind: task, prompt: x, needs: [a]}
          j: {kind: task, prompt: x, needs: [b, c]}
          p: {kind: parallel, for_each: [1], matrix: {k: [1]}, task: {prompt: "${{ item }}"}}
          q: {kind: parallel, for_each: "${{ 'abc' }}", task: {prompt: "${{ matrix.k }}"}}
          h1: {kind: error_handler, handles: [a], action: retry}
          h2: {kind: error_handler, handles: [a, h1], action: compensate, needs: [a]}
          h3: {kind: error_handler, action: fail, prompt: x}
          h4: {kind: error_handler, action: route}
    """)
    expected = [
        "nodes.d.cases.1.value: duplicate decision value 'x'",
        "nodes.d.cases.1.then.0: node 'c' is a branch of decision 'd' but does not need it (add 'd' to its needs)",
        "nodes.d.cases.1.then.1: unknown node 'zz'",
        "nodes.j: unreachable: it needs 'b', 'c', which decision 'd' never chooses together",
        "nodes.p: a parallel node has exactly one of 'for_each' and 'matrix'",
        "nodes.q.for_each: must be a list, not 'abc'",
        "nodes.q.task.prompt: unknown variable 'matrix'",
        "nodes.h1: action: retry needs retry",
        "nodes.h2.needs: an error_handler has no needs",
        "nodes.h2: action: compensate runs a task: give it a prompt",
        "nodes.h2.handles.1: an error handler cannot handle another error handler",
        "nodes.h2.handles.0: 'a' is already handled by 'h1'",
        "nodes.h3.prompt: action: fail stops the workflow; it runs no task",
        "nodes.h4.handles: only one error handler may cover the whole workflow",
    ]
    for fragment in expected:
        assert sum(fragment in line for line in out) == 1, (fragment, out)
    assert len(out) == len(expected), out


def test_mutually_exclusive_branches_are_unreachable_together() -> None:
    out = lines("""
        name: w
        nodes:
          d:
            kind: decision
            cases:
              - {when: "true", value: left, then: [l]}
            default: {value: right, then: [r]}
          l: {kind: task, prompt: x, needs: [d]}
          r: {kind: task, prompt: x, needs: [d]}
          both: {kind: task, prompt: x, needs: [l, r]}
          either: {kind: task, prompt: x, needs: [l, r], on: always}
    """)
    assert out == ["wf.yaml:10:9: nodes.both: unreachable: it needs 'l', 'r', which decision 'd' never chooses "
                   "together"]


def test_scopes_of_parallel_bodies_handlers_and_outputs() -> None:
    d = load("""
        name: w
        inputs: {standards: {type: list, items: string}}
        vars:
          label: "audit of ${{ inputs.standards }}"
        nodes:
          scan:
            kind: parallel
            matrix: {area: [code, config], standard: "${{ inputs.standards }}"}
            task: {prompt: "${{ matrix.area }} ${{ matrix.standard }} ${{ index }} ${{ vars.label }}"}
          each:
            kind: parallel
            for_each: "${{ inputs.standards }}"
            needs: [scan]
            task: {prompt: "${{ item }} ${{ nodes.scan.outputs[0] }}"}
          recover:
            kind: error_handler
            handles: [each]
            action: route
            prompt: "${{ error.node }} failed: ${{ error.message }}; ${{ nodes.scan.outputs }}"
        outputs:
          first: "${{ nodes.each.outputs[0] }}"
          recovered: "${{ nodes.recover.handled }}"
    """)
    assert validate(d) == []
    bad = lines("""
        name: w
        vars: {v: "${{ nodes.a.output }}"}
        nodes:
          a: {kind: task, prompt: "${{ error.message }} ${{ item }}"}
          h: {kind: error_handler, handles: [a], action: route, prompt: "${{ matrix.x }}"}
        outputs: {o: "${{ nodes.h.nope }}"}
    """)
    assert [line.split(": ", 1)[1] for line in bad] == [
        "vars.v: unknown variable 'nodes' (known here: inputs)",
        "nodes.a.prompt: unknown variable 'error' (known here: inputs, nodes, vars)",
        "nodes.a.prompt: unknown variable 'item' (known here: inputs, nodes, vars)",
        "nodes.h.prompt: unknown variable 'matrix' (known here: error, inputs, nodes, vars)",
        "outputs.o: nodes.h has no field 'nope' (fields: error, handled, output, status)",
    ]


def test_subworkflows_are_checked_with_a_resolver() -> None:
    child = load("""
        name: child
        inputs: {title: string, n: {type: integer, default: 1}}
        nodes: {a: {kind: task, prompt: "${{ inputs.title }}"}}
        outputs: {summary: "${{ nodes.a.output }}"}
    """)
    parent_text = """
        name: parent
        nodes:
          call: {kind: subworkflow, workflow: child, inputs: {n: "x", extra: 1}}
          after: {kind: task, needs: [call], prompt: "${{ nodes.call.output.summary }} ${{ nodes.call.output.nope }}"}
          missing: {kind: subworkflow, workflow: nobody}
    """
    parent = load(parent_text)
    messages = [i.message for i in validate(parent, resolver={"child": child}.get)]
    assert sorted(messages) == sorted([
        "nodes.call.inputs.n: must be an integer, not a string",
        "nodes.call.inputs.extra: workflow 'child' has no input 'extra'",
        "nodes.call.inputs: workflow 'child' needs input 'title'",
        "nodes.after.prompt: the outputs of workflow 'child' has no field 'nope' (fields: summary)",
        "nodes.missing.workflow: unknown workflow 'nobody'",
    ])
    assert validate(parent) == []  # without a resolver, names are not checked
    loop = load("""
        name: child
        nodes: {back: {kind: subworkflow, workflow: parent}}
    """)
    issues = validate(parent, resolver={"child": loop}.get)
    assert any("subworkflow cycle: parent -> child -> parent" in i.message for i in issues)


def test_builder_errors_are_located_by_path() -> None:
    with pytest.raises(WorkflowError) as info:
        (Workflow("w").task("a", prompt="x").decision("d", needs=["a"], cases=[case("${{ 1 }}", "one")]).build())
    assert str(info.value) == "workflow 'w': nodes.d.cases.0.when: a condition must be a boolean, not a number " \
                              "(compare it, e.g. == 'x', or test len(...) > 0)"
    with pytest.raises(WorkflowError, match="duplicate node 'a'"):
        Workflow("w").task("a", prompt="x").task("a", prompt="y")


def test_issue_format() -> None:
    issue = ValidationIssue("nodes.a: boom", ("nodes", "a"), 3, 7, file="f.yaml")
    assert str(issue) == "f.yaml:3:7: nodes.a: boom"
    assert str(ValidationIssue("x", severity="warning")) == "<workflow>: warning: x"


def test_json_file_errors_are_located_too() -> None:
    text = '{\n  "name": "w",\n  "nodes": {\n    "a": {"kind": "task", "prompt": "${{ nodes.b.output }}"}\n  }\n}\n'
    assert [str(i) for i in check_workflow_text(text, "w.json").issues] == [
        "w.json:4:48: nodes.a.prompt: unknown node 'b'"]


def test_check_returns_no_definition_for_a_wrong_shape() -> None:
    result = check("""
        name: [w]
        nodes: []
    """)
    assert result.definition is None and not result.ok
    assert [str(i) for i in result.issues] == [
        "wf.yaml:1:7: name: should be a valid string",
        "wf.yaml:2:8: nodes: should be a valid dictionary",
    ]
