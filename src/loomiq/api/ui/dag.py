"""A workflow's DAG as server-rendered SVG: nodes in layers by their longest `needs` chain, each coloured by
its state in the run, edges from each need to the node."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 180, 44, 60, 18, 12


def draw(nodes: Sequence[Any], states: Mapping[str, Mapping[str, Any]]) -> str:
    """`nodes`: the definition's nodes (`id`, `kind`, `needs`); `states`: node id -> {status, ...}."""
    by_id = {n.id: n for n in nodes}
    depth: dict[str, int] = {}

    def level(node_id: str, seen: frozenset[str] = frozenset()) -> int:
        if node_id in depth:
            return depth[node_id]
        needs = [x for x in by_id[node_id].needs if x in by_id and x not in seen]
        depth[node_id] = 0 if not needs else 1 + max(level(x, seen | {node_id}) for x in needs)
        return depth[node_id]

    layers: dict[int, list[str]] = {}
    for n in nodes:
        layers.setdefault(level(n.id), []).append(n.id)
    pos = {}
    for d, ids in layers.items():
        for i, node_id in enumerate(ids):
            pos[node_id] = (PAD + d * (NODE_W + GAP_X), PAD + i * (NODE_H + GAP_Y))
    width = PAD * 2 + (max(layers) + 1) * (NODE_W + GAP_X) - GAP_X if layers else 100
    height = PAD * 2 + max(len(v) for v in layers.values()) * (NODE_H + GAP_Y) - GAP_Y if layers else 60
    out = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
           'aria-label="Workflow graph">'
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" '
           'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#9aa6b8"/></marker></defs>']
    for n in nodes:
        x2, y2 = pos[n.id]
        for need in n.needs:
            if need in pos:
                x1, y1 = pos[need]
                out.append(f'<path class="edge" d="M {x1 + NODE_W} {y1 + NODE_H / 2} C {x1 + NODE_W + GAP_X / 2} '
                           f'{y1 + NODE_H / 2}, {x2 - GAP_X / 2} {y2 + NODE_H / 2}, {x2} {y2 + NODE_H / 2}"/>')
    for n in nodes:
        x, y = pos[n.id]
        status = str(states.get(n.id, {}).get("status", "pending"))
        out.append(f'<g class="node {escape(status)}" data-node="{escape(n.id)}" data-status="{escape(status)}">'
                   f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6"/>'
                   f'<text x="{x + 8}" y="{y + 18}">{escape(n.id[:20])}</text>'
                   f'<text x="{x + 8}" y="{y + 35}" class="muted">{escape(str(n.kind))} · {escape(status)}</text>'
                   f"<title>{escape(n.id)}: {escape(status)}</title></g>")
    out.append("</svg>")
    return "".join(out)
