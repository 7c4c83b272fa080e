"""Encoding and decoding cost per event, for the events every run logs: the fast path
(`encode_event`), the generic encoder it stands in for (``dumps(event_to_dict(e))``, what every
event cost before the fast paths and what the rest still cost), and `decode_event` of the JSON.
Prints JSON: microseconds per event (best of 5 repeats)."""

from __future__ import annotations

import json
import timeit

from loomiq.models import Usage
from loomiq.runtime import (
    RunFinished,
    RunResult,
    RunStarted,
    StepDelta,
    StepFinished,
    StepResult,
    StepStarted,
    TaskFinished,
    TaskStarted,
    decode_event,
    encode_event,
    event_to_dict,
)
from loomiq.runtime.event_json import dumps

step = StepResult("par/0", "analyst", "analyst", "We should shard by tenant. " * 8, Usage(120, 240), 0.000318, 812.5)
result = RunResult(task_id="t_01", status="completed", strategy="parallel", output=step.output, steps=(step,) * 3,
                   usage=Usage(360, 720), cost_usd=0.001, duration_ms=900.0, offline=False)
EVENTS = {
    "run_started": RunStarted("t_01", "parallel", "two agents", ("a", "b", "c"), False),
    "step_started": StepStarted("t_01", "par/0", "analyst", "analyst"),
    "text_delta": StepDelta("t_01", "par/0", "analyst", "some streamed text " * 4),
    "step_finished": StepFinished("t_01", step),
    "run_finished": RunFinished("t_01", result),
    "task_started": TaskStarted(1, 1, "host:1:ab", False),
    "task_finished": TaskFinished("completed", None, step.output, Usage(360, 720).as_dict(), 0.001),
}


def per_event_us(fn: object, n: int) -> float:
    return min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e6  # type: ignore[arg-type]


def main() -> None:
    out = {}
    for name, event in EVENTS.items():
        text = encode_event(event)
        n = 2000
        out[name] = {
            "encode_fast_us": round(per_event_us(lambda e=event: encode_event(e), n), 2),
            "encode_generic_us": round(per_event_us(lambda e=event: dumps(event_to_dict(e)), n), 2),
            "decode_us": round(per_event_us(lambda t=text: decode_event(t), n), 2),
            "json_loads_floor_us": round(per_event_us(lambda t=text: json.loads(t), n), 2),
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
