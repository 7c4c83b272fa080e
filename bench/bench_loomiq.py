"""loomiq on the peer orchestration-overhead benchmark (shared/bench-peers).

W1/W2/W3 are run through loomiq's public API only (`Orchestrator.run` with the ``sequential``,
``parallel`` and ``consensus`` strategies) over the peer harness's one fake model,
``harness.fake_llm``, wrapped as a loomiq `ChatModel` (`_workloads.py`, shared with
`bench_loomiq_durable.py`). The harness is imported from ``$PEERS_DIR`` (default
``<repo>/../shared/bench-peers``).

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

from _workloads import IMPORT_S, MAX_CONCURRENCY, build_orchestrator, harness, workloads

ORCH = build_orchestrator()
w1, w2, w3 = workloads(ORCH, "loomiq run")


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
