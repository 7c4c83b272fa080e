"""docs/workflows.md stays true: its complete workflow examples validate, its node snippets are valid
nodes, and its Python example runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from loomiq.workflows import check_workflow_text, workflow_from_data

DOC = Path(__file__).resolve().parents[2] / "docs" / "workflows.md"
BLOCKS = re.findall(r"```(yaml|python)\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_the_doc_has_examples() -> None:
    assert sum(kind == "yaml" for kind, _ in BLOCKS) >= 5
    assert any(kind == "python" for kind, _ in BLOCKS)


@pytest.mark.parametrize("text", [b for k, b in BLOCKS if k == "yaml"])
def test_yaml_examples_are_valid(text: str) -> None:
    import textwrap

    text = textwrap.dedent(text)
    if text.startswith("name:"):
        result = check_workflow_text(text, "doc.yaml")
        assert result.issues == (), [str(i) for i in result.issues]
        return
    data = yaml.safe_load(text)
    if set(data) == {"inputs"}:
        workflow_from_data({"name": "doc", **data, "nodes": {"a": {"kind": "task", "prompt": "x"}}})
        return
    # A node snippet: wrap it in a workflow that gives it the needs, inputs and upstream nodes it names.
    ((node_id, node),) = data.items()
    nodes = {dep: {"kind": "task", "prompt": "x"} for dep in node.get("needs", []) + node.get("handles", [])}
    for branch in [c.get("then", []) for c in node.get("cases", [])] + [node.get("default", {}).get("then", [])]:
        for target in branch:
            nodes[target] = {"kind": "task", "prompt": "x", "needs": [node_id]}
    inputs = {"title": "string", "severity": "string", "standards": {"type": "list", "items": "string"}}
    workflow_from_data({"name": "doc", "inputs": inputs, "nodes": {node_id: node, **nodes}})


def test_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from .conftest import RELEASE_NOTES

    monkeypatch.chdir(tmp_path)
    (tmp_path / "release-notes.yaml").write_text(RELEASE_NOTES, encoding="utf-8")
    for kind, text in BLOCKS:
        if kind == "python":
            exec(compile(text, str(DOC), "exec"), {})  # noqa: S102 - the documented example, run as written
