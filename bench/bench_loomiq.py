"""loomiq on the peer orchestration-overhead benchmark (shared/bench-peers).

W1/W2/W3 are run through loomiq's public API only (`Orchestrator.run` with the ``sequential``,
``parallel`` and ``consensus`` strategies) over the peer harness's one fake model,
``harness.fake_llm``, wrapped as a loomiq `ChatModel`. The harness is imported from ``$PEERS_DIR``
(default ``<repo>/../shared/bench-peers``).

    python bench/bench_loomiq.py --mode latency      # (a) L=0 and (b) L=50 ms, one JSON line
    python bench/bench_loomiq.py --mode throughput   # (c) 1,000 concurrent W2 runs, one JSON line

`bench/run.sh` runs this beside the plain-asyncio floor (and, with PEERS=1, the peers).

Setup, identical for every run and built once (untimed): one `Orchestrator` with four agents,
``a1``..``a3`` and ``lead``, each on its own `HarnessModel`, no system prompt, and
``max_concurrency`` raised to ``LOOMIQ_BENCH_MAX_CONCURRENCY`` (default 100,000) so that the
throughput test's 1,000 concurrent runs (3,000 calls on three agents) are not queued behind
loomiq's per-agent concurrency limit (default 4); every other setting is loomiq's default
(retries, breaker, 60 s per-call timeout, failover).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PEERS_DIR = Path(os.environ.get("PEERS_DIR") or REPO.parent / "shared" / "bench-peers").resolve()
if not (PEERS_DIR / "harness.py").is_file():
    sys.exit(f"bench_loomiq: no harness.py in {PEERS_DIR} (set PEERS_DIR)")
sys.path.insert(0, str(PEERS_DIR))

import harness  # noqa: E402
from harness import fake_llm  # noqa: E402

t0 = time.perf_counter()
from loomiq import Agent, AgentConfig, ModelRequest, ModelResponse, Orchestrator  # noqa: E402

IMPORT_S = time.perf_counter() - t0

MAX_CONCURRENCY = int(os.environ.get("LOOMIQ_BENCH_MAX_CONCURRENCY", "100000"))


class HarnessModel:
    """A loomiq `ChatModel` whose every completion is one call of the harness's fake model."""

    provider = "bench"
    offline = True

    def __init__(self, model_name: str = "harness-fake") -> None:
        self.model_name = model_name

    async def complete(self, request: ModelRequest) -> ModelResponse:
        text = await fake_llm(request.prompt_text())
        return ModelResponse(text, self.model_name, provider="bench")

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelResponse]:
        # Only used when a run has an event sink; the benchmark calls `Orchestrator.run` without one.
        yield await self.complete(request)

    async def aclose(self) -> None:
        return None


def build_orchestrator() -> Orchestrator:
    agents = [
        Agent(AgentConfig(name, "bench", "harness-fake", max_concurrency=MAX_CONCURRENCY), HarnessModel())
        for name in ("a1", "a2", "a3", "lead")
    ]
    return Orchestrator(agents)


ORCH = build_orchestrator()
W1_AGENTS = ("a1", "a2", "a3")
W2_AGENTS = ("a1", "a2", "a3")
W3_AGENTS = ("a1", "a2", "a3", "lead")  # more than 3 named: the last one leads


def _ok(result) -> None:
    if result.status != "completed":
        raise RuntimeError(f"loomiq run {result.status}: {result.error}")


async def w1(task: str) -> str:
    result = await ORCH.run(task, strategy="sequential", agents=W1_AGENTS)
    _ok(result)
    return result.output


async def w2(task: str) -> tuple[str, ...]:
    result = await ORCH.run(task, strategy="parallel", agents=W2_AGENTS)
    _ok(result)
    return result.outputs


async def w3(task: str) -> str:
    result = await ORCH.run(task, strategy="consensus", agents=W3_AGENTS)
    _ok(result)
    return result.output


if __name__ == "__main__":
    harness.main(
        "loomiq (in-process)",
        ["loomiq"],
        w1,
        w2,
        w3,
        import_s=IMPORT_S,
        notes=(
            "Orchestrator.run(strategy=sequential|parallel|consensus), in-memory ExecutionContext; "
            f"4 agents, no system prompt, max_concurrency={MAX_CONCURRENCY} per agent, "
            "other settings default (retries, breaker, 60 s call timeout, failover)"
        ),
    )
