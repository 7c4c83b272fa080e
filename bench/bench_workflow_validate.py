"""How long loomiq takes to check a 200-node workflow before it runs, and what one step of the run
semantics costs. One JSON object on stdout (and in --out when given).

    python bench/bench_workflow_validate.py [--nodes 200] [--reps 50] [--out results.json]

The workflow is generated (deterministically) to look like a real one at scale: tasks whose prompts
read inputs, vars and upstream outputs, with `if` conditions; a decision every 20 nodes routing two
branches; an approval every 25; a parallel matrix every 30; an error handler; workflow outputs.

Figures (median, p95 and min over --reps, after one warm-up; ``cpu_median`` and ``cpu_min`` are the
thread's CPU time, steadier than wall time on a shared machine):
- ``validate_ms``: `validate(definition)`: names, needs, cycles, node rules, every expression's static
  check in its scope, reachability. The issue's target is under 20 ms for 200 nodes.
- ``check_text_ms``: the whole of ``loomiq workflow validate`` minus process start: YAML with marks
  (libyaml), the pydantic edge model, parsing every expression (the parse cache cleared before each
  repetition, so repeated expressions inside the file are the only hits), `validate`, locating issues.
- ``advance_us_per_event``: one `advance` (apply an event, settle the graph) while running the
  workflow to the end with every task succeeding and every approval approved.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from typing import Any

import yaml

from loomiq.workflows import (
    ApprovalAnswered,
    NodeStatus,
    NodeSucceeded,
    RunStarted,
    StartTask,
    advance,
    check_workflow_text,
    initial_state,
    loads_workflow,
    validate,
)
from loomiq.workflows._parser import parse


def build(count: int) -> dict[str, Any]:
    """A valid workflow of `count` nodes (plus one handler) as data."""
    nodes: dict[str, Any] = {}
    ids: list[str] = []
    decisions: list[tuple[str, list[str], list[str]]] = []
    for i in range(count):
        name = f"step_{i:03d}"
        needs = [ids[j] for j in (i - 1, i - 3, i - 7) if 0 <= j < len(ids)] if ids else []
        needs = [n for n in dict.fromkeys(needs) if nodes[n].get("kind") != "error_handler"]
        upstream = needs[0] if needs else None
        node: dict[str, Any]
        if i % 20 == 10 and upstream:
            node = {"kind": "decision", "needs": [upstream],
                    "cases": [{"when": f"${{{{ contains(nodes.{upstream}.output, 'fast') || inputs.level > 2 }}}}",
                               "value": "fast", "then": []}],
                    "default": {"value": "slow", "then": []}}
            decisions.append((name, node["cases"][0]["then"], node["default"]["then"]))
        elif i % 25 == 12 and upstream:
            node = {"kind": "approval", "needs": needs,
                    "message": f"Continue after ${{{{ nodes.{upstream}.status }}}}?",
                    "approvers": {"roles": ["admin", "operator"]}, "timeout": "24h", "on_timeout": "reject"}
        elif i % 30 == 15:
            node = {"kind": "parallel", "needs": needs,
                    "matrix": {"area": ["code", "deps"], "std": "${{ inputs.standards }}"},
                    "task": {"prompt": "Audit ${{ matrix.area }} for ${{ matrix.std }} (${{ vars.label }})"}}
        else:
            reads = " ".join(f"${{{{ nodes.{n}.output }}}}" for n in needs)
            node = {"kind": "task", "needs": needs, "strategy": "sequential",
                    "prompt": f"Step {i} of ${{{{ inputs.title }}}} at level ${{{{ inputs.level }}}}: {reads}"}
            if i % 4 == 1 and upstream:
                node["if"] = f"${{{{ nodes.{upstream}.status == 'succeeded' && len(inputs.title) > 0 }}}}"
        if decisions and i % 20 in (11, 12) and decisions[-1][0] in ids:
            decision, fast, slow = decisions[-1]
            (fast if i % 20 == 11 else slow).append(name)
            if decision not in node.setdefault("needs", []):
                node["needs"].append(decision)
        elif i % 20 in (13, 14, 15, 16, 17, 18) and node.get("needs"):
            node["on"] = "always"  # joins after a decision's branches, one of which is skipped
        if not node.get("needs"):
            node.pop("needs", None)
        nodes[name] = node
        ids.append(name)
    nodes["recover"] = {"kind": "error_handler", "action": "compensate",
                        "prompt": "Undo after ${{ error.node }}: ${{ error.message }}"}
    return {
        "name": "bench-200",
        "inputs": {"title": {"type": "string"}, "level": {"type": "integer", "default": 1},
                   "standards": {"type": "list", "items": "string", "default": ["soc2", "iso27001"]}},
        "vars": {"label": "${{ inputs.title }} L${{ inputs.level }}"},
        "nodes": nodes,
        "outputs": {"last": f"${{{{ nodes.{ids[-1]}.output }}}}"},
    }


def timed(fn: Any, reps: int) -> dict[str, float]:
    fn()  # warm-up: caches, imports
    samples, cpu = [], []
    for _ in range(reps):
        start, start_cpu = time.perf_counter(), time.thread_time()
        fn()
        cpu.append((time.thread_time() - start_cpu) * 1000)
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return {"median": round(statistics.median(samples), 3),
            "p95": round(samples[min(len(samples) - 1, int(len(samples) * 0.95))], 3),
            "min": round(samples[0], 3),
            # CPU time of this thread: what the work costs when other processes take the cores away
            "cpu_median": round(statistics.median(cpu), 3), "cpu_min": round(min(cpu), 3)}


def run_to_end(definition: Any) -> tuple[int, float]:
    """Run with every task succeeding and every approval approved: (events, seconds in advance)."""
    state = initial_state(definition)
    spent, events, now = 0.0, 0, 0.0
    pending: list[Any] = [RunStarted({"title": "bench"}, now)]
    while pending:
        event = pending.pop(0)
        start = time.perf_counter()
        t = advance(definition, state, event)
        spent += time.perf_counter() - start
        events += 1
        state = t.state
        now += 1
        for action in t.actions:
            if isinstance(action, StartTask):
                pending.append(NodeSucceeded(action.node, action.attempt, f"fast result {action.node}", now,
                                             action.index))
        for node_id, ns in state.nodes.items():
            if ns.status == NodeStatus.WAITING_APPROVAL and ns.approval and not ns.approval.answers and \
                    not any(isinstance(p, ApprovalAnswered) and p.node == node_id for p in pending):
                pending.append(ApprovalAnswered(node_id, ns.approval.round, "ann", ("admin",), "approve", "", now))
    assert state.finished and state.status.value == "succeeded", (state.status, state.error)
    return events, spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    data = build(args.nodes)
    text = yaml.safe_dump(data, sort_keys=False, width=200)
    result = check_workflow_text(text, "bench.yaml")
    if not result.ok:
        sys.exit("generated workflow is invalid:\n" + "\n".join(str(i) for i in result.issues[:10]))
    definition = loads_workflow(text)
    kinds: dict[str, int] = {}
    for node in definition.nodes:
        kinds[node.kind] = kinds.get(node.kind, 0) + 1
    events, spent = run_to_end(definition)
    report = {
        "bench": "workflow_validate",
        "nodes": len(definition.nodes),
        "kinds": kinds,
        "expressions": text.count("${{"),
        "yaml_bytes": len(text.encode()),
        "reps": args.reps,
        "validate_ms": timed(lambda: validate(definition), args.reps),
        "check_text_ms": timed(lambda: (parse.cache_clear(), check_workflow_text(text, "bench.yaml")), args.reps),
        "run_events": events,
        "advance_us_per_event": round(spent / events * 1e6, 1),
        "target_validate_ms": 20,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "libyaml": yaml.__with_libyaml__,
    }
    line = json.dumps(report)
    print(line)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(line + "\n")


if __name__ == "__main__":
    main()
