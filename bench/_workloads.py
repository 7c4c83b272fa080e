"""What `bench_loomiq.py` and `bench_loomiq_durable.py` share: the peer harness (shared/bench-peers,
imported from ``$PEERS_DIR``), a loomiq `ChatModel` over its one fake model, the four-agent
`Orchestrator`, and the three workloads W1/W2/W3 run through loomiq's public API.

Importing this module imports loomiq; `IMPORT_S` is how long that took (the harness reports it).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PEERS_DIR = Path(os.environ.get("PEERS_DIR") or REPO.parent / "shared" / "bench-peers").resolve()
if not (PEERS_DIR / "harness.py").is_file():
    sys.exit(f"{Path(sys.argv[0]).stem}: no harness.py in {PEERS_DIR} (set PEERS_DIR)")
sys.path.insert(0, str(PEERS_DIR))

import harness  # noqa: E402
from harness import ANSWER, TASK, Fake, fake_llm  # noqa: E402

t0 = time.perf_counter()
from loomiq import Agent, AgentConfig, ModelRequest, ModelResponse, Orchestrator  # noqa: E402

IMPORT_S = time.perf_counter() - t0

MAX_CONCURRENCY = int(os.environ.get("LOOMIQ_BENCH_MAX_CONCURRENCY", "100000"))
"""Per-agent `max_concurrency`, raised so that 1,000 concurrent runs are not queued behind loomiq's
own limit (default 4)."""

W1_AGENTS = ("a1", "a2", "a3")
W2_AGENTS = ("a1", "a2", "a3")
W3_AGENTS = ("a1", "a2", "a3", "lead")  # more than 3 named: the last one leads

Workload = Callable[[str], Awaitable[Any]]


class HarnessModel:
    """A loomiq `ChatModel` whose every completion is one call of `llm` (the harness's `fake_llm`,
    or a stand-in such as the durable resume self-check's crashing twin)."""

    provider = "bench"
    offline = True

    def __init__(self, llm: Callable[[str], Awaitable[str]] = fake_llm, model_name: str = "harness-fake") -> None:
        self.llm = llm
        self.model_name = model_name

    async def complete(self, request: ModelRequest) -> ModelResponse:
        text = await self.llm(request.prompt_text())
        return ModelResponse(text, self.model_name, provider="bench")

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelResponse]:
        # Only used when a run has an event sink (a durable run has one; `Orchestrator.run` in
        # process has none); the fake model has one part.
        yield await self.complete(request)

    async def aclose(self) -> None:
        return None


OBSERVE = os.environ.get("LOOMIQ_BENCH_OBSERVE", "off")
"""``off`` (default); ``on``: JSON logs at INFO (to /dev/null), tracing set up with no exporter configured, and
(durable) the server's metrics observer on the engine; ``otlp``: the same, with spans exported over OTLP/HTTP to
``$LOOMIQ_BENCH_OTLP`` (bench/otlp_sink.py). docs/benchmarks.md compares the three."""


def observe(orch: Orchestrator) -> None:
    """Turn observability on as `OBSERVE` says (logs and tracing for the process; metrics on the engine once
    open, see `observe_engine`)."""
    if OBSERVE in ("off", "metrics"):
        return
    from loomiq.observe import configure_logging, tracing

    configure_logging("json", "info", stream=open(os.devnull, "w"))  # noqa: SIM115 - for the process's life
    if OBSERVE == "otlp":
        # as in production: the endpoint in the environment (the export process reads it too)
        os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = os.environ["LOOMIQ_BENCH_OTLP"]
    else:  # no endpoint in the environment: stays off, as in production
        os.environ.pop("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None)
        os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    tracing("loomiq-bench")


def observe_engine(orch: Orchestrator) -> None:
    """The server's metrics observer on the durable engine (what `loomiq serve` attaches)."""
    if OBSERVE not in ("off", "logs"):
        from loomiq.api.metrics import ApiMetrics

        orch.engine.run_observers.append(ApiMetrics(orch.registry).observe)


def build_orchestrator(llm: Callable[[str], Awaitable[str]] = fake_llm) -> Orchestrator:
    """Four agents, ``a1``..``a3`` and ``lead``, each on its own `HarnessModel` over `llm`, no system
    prompt, `MAX_CONCURRENCY`; every other setting loomiq's default."""
    agents = [
        Agent(AgentConfig(name, "bench", "harness-fake", max_concurrency=MAX_CONCURRENCY), HarnessModel(llm))
        for name in ("a1", "a2", "a3", "lead")
    ]
    orch = Orchestrator(agents)
    observe(orch)
    return orch


def workloads(orch: Orchestrator, what: str, **options: Any) -> tuple[Workload, Workload, Workload]:
    """W1 (``sequential``), W2 (``parallel``), W3 (``consensus``) as `orch.run` calls with `options`
    (``durable=True`` for the durable set); a run that does not complete raises, named `what`."""

    def _ok(result: Any) -> None:
        if result.status != "completed":
            raise RuntimeError(f"{what} {result.status}: {result.error}")

    async def w1(task: str) -> str:
        result = await orch.run(task, strategy="sequential", agents=W1_AGENTS, **options)
        _ok(result)
        return result.output

    async def w2(task: str) -> tuple[str, ...]:
        result = await orch.run(task, strategy="parallel", agents=W2_AGENTS, **options)
        _ok(result)
        return result.outputs

    async def w3(task: str) -> str:
        result = await orch.run(task, strategy="consensus", agents=W3_AGENTS, **options)
        _ok(result)
        return result.output

    return w1, w2, w3


__all__ = [
    "ANSWER", "IMPORT_S", "MAX_CONCURRENCY", "TASK", "W1_AGENTS", "W2_AGENTS", "W3_AGENTS", "Fake", "HarnessModel",
    "OBSERVE", "build_orchestrator", "fake_llm", "harness", "observe_engine", "workloads",
]
