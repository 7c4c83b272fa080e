"""What the workflow tests share: the issue's release-notes example, verbatim, and small helpers."""

from __future__ import annotations

import textwrap

from loomiq.workflows import LoadResult, WorkflowDefinition, check_workflow_text, loads_workflow

#: The example of issue 13, exactly as written there: it must validate and run as is.
RELEASE_NOTES = """\
name: release-notes
inputs:
  version: {type: string}
nodes:
  draft:
    kind: task
    prompt: "Draft release notes for ${{ inputs.version }}"
    strategy: sequential
  approve:
    kind: approval
    needs: [draft]
    message: "Publish the notes for ${{ inputs.version }}?"
    approvers: {roles: [admin, operator]}
    timeout: 72h
    on_timeout: reject
  publish:
    kind: task
    needs: [approve]
    if: ${{ nodes.approve.decision == 'approved' }}
    prompt: "Polish for publication: ${{ nodes.draft.output }}"
  held_back:
    kind: task
    needs: [approve]
    if: ${{ nodes.approve.decision == 'rejected' }}
    prompt: "Say why ${{ inputs.version }} was held back: ${{ nodes.approve.comment }}"
"""


def load(text: str) -> WorkflowDefinition:
    """A definition from dedented YAML; raises `WorkflowError`."""
    return loads_workflow(textwrap.dedent(text).lstrip("\n"), "wf.yaml")


def check(text: str) -> LoadResult:
    """Every issue of dedented YAML, located in ``wf.yaml``."""
    return check_workflow_text(textwrap.dedent(text).lstrip("\n"), "wf.yaml")


def lines(text: str) -> list[str]:
    """The issues of dedented YAML as the CLI prints them."""
    return [str(i) for i in check(text).issues]
