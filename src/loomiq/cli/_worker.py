"""`loomiq worker`: run durable tasks from the engine's database until SIGTERM or Ctrl-C.

Any number of workers, on any machine that reaches the database, claim tasks under leases; each
also drives the durable workflow runs. Exit code 0 after SIGTERM or SIGINT once its tasks are
finished or handed back.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from typing import Annotated

import typer

from ..config import find_config
from ..orchestrator import Orchestrator
from ._common import fail, offline_notice, setup_observability
from ._database import DatabaseOption, database_url, load_orchestrator, run_async, shown_url, with_engine
from ._options import ConfigOption


def worker_command(
    concurrency: Annotated[int, typer.Option("--concurrency", "-n", help="Tasks run at once.")] = 4,
    database: DatabaseOption = None,
    config: ConfigOption = None,
    drain: Annotated[float, typer.Option(
        "--drain", help="On SIGTERM or Ctrl-C, let tasks in hand finish for this many seconds, then hand "
                        "the rest back to other workers.",
    )] = 30.0,
    worker_id: Annotated[str | None, typer.Option("--worker-id", help="Lease-holder id (default: host:pid:random).",
                                                  show_default=False)] = None,
    lease: Annotated[float, typer.Option(
        "--lease", help="Seconds a dead worker's tasks wait before others take them over.",
    )] = 10.0,
    renew: Annotated[float, typer.Option("--renew", help="Seconds between lease renewals (below --lease).")] = 3.0,
    max_running: Annotated[int | None, typer.Option(
        "--max-running", help="The most tasks running at once across every worker on the database "
                              "(default: $LOOMIQ_MAX_RUNNING, else no limit).", show_default=False,
    )] = None,
    metrics_port: Annotated[int | None, typer.Option(
        "--metrics-port", help="Serve Prometheus metrics of this worker on this port (127.0.0.1; "
                               "--metrics-host to change).", show_default=False)] = None,
    metrics_host: Annotated[str, typer.Option("--metrics-host", help="Interface of --metrics-port.")] = "127.0.0.1",
    log_level: Annotated[str | None, typer.Option(
        "--log-level", help="debug, info, warning or error (default: $LOOMIQ_LOG_LEVEL, else info).",
        show_default=False)] = None,
    log_format: Annotated[str, typer.Option("--log-format", help="Log lines as text or json.")] = "text",
) -> None:
    """Run durable tasks until SIGTERM or Ctrl-C; tasks in hand then finish or are handed back.

    Prints one JSON line when ready and one when stopped (stdout); progress notes go to stderr.
    """
    from ..engine import EngineConfig

    if concurrency < 1:
        fail(f"--concurrency must be at least 1, not {concurrency}")
    if drain < 0:
        fail(f"--drain must not be negative, not {drain:g}")
    if metrics_port is not None and not 1 <= metrics_port <= 65535:
        fail(f"--metrics-port must be a TCP port (1-65535), not {metrics_port}")
    setup_observability(log_format, log_level, "loomiq-worker")
    # The flags are checked here, by their own names (EngineConfig would name its fields).
    if not 0 < lease < float("inf"):
        fail(f"--lease must be a positive number of seconds, not {lease:g}")
    if not 0 < renew < lease:
        fail(f"--renew ({renew:g}) must be positive and below --lease ({lease:g}): a worker renews its lease "
             "several times before it runs out")
    if max_running is not None and max_running < 1:
        fail(f"--max-running must be at least 1, not {max_running}")
    try:
        if max_running is None:  # $LOOMIQ_MAX_RUNNING, or no limit
            engine_config = EngineConfig(lease_s=lease, renew_s=renew)
        else:
            engine_config = EngineConfig(lease_s=lease, renew_s=renew, max_running=max_running)
    except ValueError as exc:  # $LOOMIQ_MAX_RUNNING
        fail(str(exc))
    orch = load_orchestrator(config)
    orch.tools.set_default("knowledge", "database_url", database_url(database))  # the tasks' database
    notice = offline_notice(orch.agents, find_config(config))

    async def body(o: Orchestrator) -> int:
        from ..engine import Worker

        await o.engine.load_tenant_agents(find_config(config))  # the agents registered over the API
        worker = Worker(o.engine, concurrency=concurrency, worker_id=worker_id, drain_s=drain)
        loop = asyncio.get_running_loop()
        sampler = None
        if metrics_port is not None:
            sampler = _serve_metrics(o, metrics_host, metrics_port)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.request_stop)
        from ..engine import WorkflowRuns

        driver = loop.create_task(WorkflowRuns(o.engine).serve(), name="loomiq-workflow-driver")
        try:
            runner = loop.create_task(worker.run())
            await worker.until_registered(runner)  # ready only once the database took a write
            if notice:
                sys.stderr.write(notice + "\n")
            sys.stderr.write(f"loomiq worker {worker.id}: up to {concurrency} task(s) at once from "
                             f"{shown_url(database_url(database))}; SIGTERM or Ctrl-C stops it\n")
            sys.stdout.write(json.dumps({"event": "worker_ready", "worker_id": worker.id, "pid": os.getpid(),
                                         "concurrency": concurrency}) + "\n")
            sys.stdout.flush()
            await runner
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            if sampler is not None:
                sampler.cancel()
            driver.cancel()
            await asyncio.gather(driver, return_exceptions=True)
        sys.stdout.write(json.dumps({"event": "worker_stopped", "worker_id": worker.id,
                                     "claimed": worker.claimed}) + "\n")
        sys.stdout.flush()
        return worker.claimed

    started = time.monotonic()
    claimed = run_async(with_engine(database, orch, body, config=engine_config))
    sys.stderr.write(f"loomiq worker stopped after {time.monotonic() - started:.1f}s; ran {claimed} task(s)\n")


def _serve_metrics(orch: Orchestrator, host: str, port: int) -> asyncio.Task[None]:
    """Expose this worker's metrics at http://host:port/metrics (a thread of prometheus_client's) and keep
    the queue and worker gauges sampled from the database; returns the sampling task."""
    from prometheus_client import start_http_server

    from ..api.metrics import ApiMetrics

    metrics = ApiMetrics(orch.registry)
    orch.engine.run_observers.append(metrics.observe)
    try:
        start_http_server(port, addr=host, registry=metrics.registry)
    except OSError as exc:
        fail(f"--metrics-port {port}: cannot listen on {host}:{port} ({exc.strerror or exc})")
    return asyncio.get_running_loop().create_task(metrics.sample_forever(orch.engine), name="loomiq-metrics")


__all__ = ["worker_command"]
