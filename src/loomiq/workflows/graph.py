"""A workflow as a Mermaid ``flowchart``: one shape per node kind, its conditions written on it, and
edges that say how they are taken (on failure, always, a decision's case, an error handler)."""

from __future__ import annotations

from .model import (
    AnyNode,
    ApprovalNode,
    DecisionNode,
    ErrorHandlerNode,
    ParallelNode,
    SubworkflowNode,
    TaskNode,
    WorkflowDefinition,
    format_duration,
)

__all__ = ["to_mermaid"]

_SHAPES = {
    "task": ('["', '"]'),
    "decision": ('{"', '"}'),
    "parallel": ('[/"', '"\\]'),
    "approval": ('{{"', '"}}'),
    "error_handler": ('>"', '"]'),
    "subworkflow": ('[["', '"]]'),
}
_STYLES = {
    "task": "fill:#eef4ff,stroke:#4a6fd1",
    "decision": "fill:#fff6dd,stroke:#c99a06",
    "parallel": "fill:#eefbf0,stroke:#2f9e44",
    "approval": "fill:#fdeef6,stroke:#c2255c",
    "error_handler": "fill:#fff0ee,stroke:#e03131",
    "subworkflow": "fill:#f3f0ff,stroke:#7048e8",
}


def _text(value: str, limit: int = 80) -> str:
    value = " ".join(value.split())
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    return value.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def _mid(node_id: str) -> str:
    # A prefix keeps ids such as `end` or `graph`, which Mermaid reserves, usable.
    return f"n_{node_id}"


def _details(node: AnyNode) -> list[str]:
    if isinstance(node, TaskNode):
        return [f"task · {node.task.strategy}"]
    if isinstance(node, DecisionNode):
        return ["decision"]
    if isinstance(node, ParallelNode):
        over = "for each item" if node.for_each is not None else "matrix: " + ", ".join(node.matrix or {})
        return [f"parallel · {over} · join {node.join}"]
    if isinstance(node, ApprovalNode):
        who = ", ".join([*node.approvers.roles, *node.approvers.subjects])
        require = node.require if isinstance(node.require, str) else f"{node.require} of"
        line = f"approval · {require} {who}"
        if node.timeout_s is not None:
            line += f" · {format_duration(node.timeout_s)} → {node.on_timeout}"
            if node.escalate_to is not None:
                to = ", ".join([*node.escalate_to.approvers.roles, *node.escalate_to.approvers.subjects])
                line += f" ({to})"
        return [line]
    if isinstance(node, ErrorHandlerNode):
        scope = ", ".join(node.handles) if node.handles else "whole workflow"
        return [f"error handler · {node.action} · handles {scope}"]
    assert isinstance(node, SubworkflowNode)
    return [f"subworkflow · {node.workflow}"]


def to_mermaid(definition: WorkflowDefinition) -> str:
    """The Mermaid source of a ``flowchart TD`` of the workflow (valid definitions only)."""
    lines = [f"%% workflow {definition.name}", "flowchart TD"]
    for node in definition.nodes:
        label = [f"<b>{_text(node.id)}</b>", *(_text(d) for d in _details(node))]
        if node.if_ is not None:
            label.append(_text(f"if {node.if_.source}"))
        start, end = _SHAPES[node.kind]
        lines.append(f"  {_mid(node.id)}{start}{'<br/>'.join(label)}{end}")
    routed: dict[tuple[str, str], str] = {}
    for node in definition.nodes:
        if isinstance(node, DecisionNode):
            cases = [*node.cases, *([node.default] if node.default else [])]
            for c in cases:
                for target in c.then:
                    key = (node.id, target)
                    routed[key] = f"{routed[key]} | {c.value}" if key in routed else c.value
    for node in definition.nodes:
        for dep in node.needs:
            edge_label = routed.get((dep, node.id))
            text = f"|\"{_text(edge_label)}\"|" if edge_label else ""
            if node.on == "failure":
                lines.append(f"  {_mid(dep)} -. on failure .-> {_mid(node.id)}")
            elif node.on == "always":
                lines.append(f"  {_mid(dep)} == always ==> {_mid(node.id)}")
            else:
                lines.append(f"  {_mid(dep)} -->{text} {_mid(node.id)}")
    for node in definition.nodes:
        if isinstance(node, ErrorHandlerNode):
            for target in node.handles:
                lines.append(f"  {_mid(target)} -. fails .-> {_mid(node.id)}")
    for kind, style in _STYLES.items():
        members = [_mid(n.id) for n in definition.nodes if n.kind == kind]
        if members:
            lines.append(f"  classDef {kind} {style}")
            lines.append(f"  class {','.join(members)} {kind}")
    return "\n".join(lines) + "\n"
