"""The HTTP service under load (issue 4's targets): ``python bench/bench_api.py``.

Starts the real server (uvicorn through `loomiq.api.server.build_server`, one process, SQLite in a
fresh temporary directory, the embedded worker in the same process, JWT auth on) as a subprocess on
a free loopback port, waits for ``/api/health``, runs `bench/api_load.py` as a second process for
each scenario, stops the server and prints one JSON object: every figure, and pass/fail per target.
See docs/benchmarks.md, "HTTP service".

    python bench/bench_api.py                     # every scenario (~1 min)
    python bench/bench_api.py --only submit       # some: first-event, submit, sse, sse-stream
    python bench/bench_api.py --clients 200       # smaller fan-out
    python bench/bench_api.py --profile DIR       # also cProfile the servers (DIR/server-*.prof/.txt)
    python bench/bench_api.py --profile DIR --pyspy /path/to/py-spy   # or sample them with py-spy
    python bench/bench_api.py --experiment no-gc-tune                 # A/B (see _install_experiment)

Servers (each fresh, one after the other):

* a (``first-event``, then ``submit``): no loomiq.yaml, so the four offline scripted agents (zero
  latency), tasks planned by ``auto``; the embedded worker (default concurrency 2) runs them.
* b (``sse``) and c (``sse-stream``): a loomiq.yaml with scripted agents ``s0``..``s9`` (latencies
  0.75..1.2 x ``--step-s``) and ``gate0``..``gate<tasks-1>`` (``--gate-s`` + i x ``--stagger-s``);
  ``LOOMIQ_API_WORKERS`` = 2 x tasks, so every gate and followed task runs at once. In b the
  agents answer "done." (step events: one text_delta per step); in c they stream the default
  offline answer (~11 text_delta events per step). These servers also record, for every event,
  when `EventHub.publish` was called (``time.monotonic_ns``: CLOCK_MONOTONIC is the same clock in
  every process of the machine), the event loop's lag and the garbage collector's pauses, and
  serve them at ``POST /_bench/stamps`` (a bench-only route; ``POST /_bench/start`` starts the lag
  monitor).

All run with ``LOOMIQ_RATE_PER_S``/``LOOMIQ_RATE_BURST`` raised to 1e6 (the per-tenant limit would
otherwise answer 429 at 20/s) and uvicorn's log level ``warning`` (no access log).

Internal: ``python bench/bench_api.py --serve PORT`` is the server subprocess itself.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LOAD = HERE / "api_load.py"

AGENT_POOL = 10

TARGETS = {
    "submit_p50_ms": 5.0,
    "submit_p99_ms": 10.0,
    "first_event_p50_ms": 15.0,
    "sse_p99_ms": 100.0,
}


# -- the server subprocess -------------------------------------------------------------------------


def serve(port: int) -> None:
    """Run the service on 127.0.0.1:`port` (settings from the environment), optionally with event
    stamps (LOOMIQ_BENCH_STAMPS=1) and cProfile (LOOMIQ_BENCH_PROFILE=file)."""
    from loomiq.api.app import create_app
    from loomiq.api.server import build_server
    from loomiq.api.settings import Settings

    settings = Settings.from_env()
    app = create_app(settings)
    if os.environ.get("LOOMIQ_BENCH_STAMPS") == "1":
        _install_stamps(app)
    experiments = [e for e in os.environ.get("LOOMIQ_BENCH_EXPERIMENTS", "").split(",") if e]
    for experiment in experiments:
        _install_experiment(app, experiment)
    server = build_server(
        "127.0.0.1", port, settings=settings, app=app, log_level="warning", gc_tuning="no-gc-tune" not in experiments
    )
    profile_to = os.environ.get("LOOMIQ_BENCH_PROFILE")
    if not profile_to:
        server.run()
        return
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        server.run()
    finally:
        profiler.disable()
        profiler.dump_stats(profile_to)
        with open(profile_to.removesuffix(".prof") + ".txt", "w") as out:
            stats = pstats.Stats(profiler, stream=out).strip_dirs()
            out.write("== by own time ==\n")
            stats.sort_stats("tottime").print_stats(40)
            out.write("== by cumulative time ==\n")
            stats.sort_stats("cumulative").print_stats(60)


EXPERIMENTS = ("no-gc-tune", "follow-poll=S")


def _install_experiment(app: Any, experiment: str) -> None:
    """What-if changes for A/B runs against the shipped service (not the default):

    * ``no-gc-tune``: the server does not tune the garbage collector once started
      (`loomiq.api.server.tune_gc`: ``gc.freeze()`` and thresholds 20,000/20/20); applied in `serve`.
    * ``follow-poll=S``: the store's shared event-log poll (`loomiq.engine._follow.LogFollower`)
      runs every S seconds instead of every 0.05 s (SQLite's ``follow_poll_s``).

    (The earlier what-ifs ``async-deps``, ``gc-freeze`` and ``gc-threshold=N`` are now the service's
    behaviour; the per-follower poll they were measured against is gone.)
    """
    from loomiq.engine._sqlite import SQLiteStore

    if experiment == "no-gc-tune":
        return
    if experiment.startswith("follow-poll="):
        poll_s = float(experiment.partition("=")[2])
        original = SQLiteStore.__init__

        def init(self: SQLiteStore, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            self.follow_poll_s = poll_s

        SQLiteStore.__init__ = init  # type: ignore[method-assign]
        return
    raise SystemExit(f"bench_api: unknown experiment {experiment!r} (known: {', '.join(EXPERIMENTS)})")


def _install_stamps(app: Any) -> None:
    """Record when each (task, seq) is first published to this process's subscribers, and (after
    ``POST /_bench/start``) the event loop's lag: a task that sleeps 5 ms and records the overshoot."""
    import asyncio

    from loomiq.engine.events import EventHub

    stamps: dict[str, dict[int, int]] = {}
    lags: list[tuple[int, int]] = []
    original = EventHub.publish
    monitors: list[asyncio.Task[None]] = []

    def publish(self: EventHub, event: Any) -> None:
        per_task = stamps.setdefault(event.task_id, {})
        if event.seq not in per_task:
            per_task[event.seq] = time.monotonic_ns()
        original(self, event)

    EventHub.publish = publish  # type: ignore[method-assign]

    import gc

    gc_pauses: list[tuple[int, int, int, int]] = []  # (end ns, generation, pause ns, objects collected)
    gc_start = [0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_start[0] = time.monotonic_ns()
        elif monitors:
            end = time.monotonic_ns()
            gc_pauses.append((end, info.get("generation", -1), end - gc_start[0], info.get("collected", 0)))

    gc.callbacks.append(on_gc)

    async def monitor() -> None:
        while True:
            before = time.monotonic_ns()
            await asyncio.sleep(0.005)
            after = time.monotonic_ns()
            lags.append((after, after - before - 5_000_000))

    async def start() -> dict[str, bool]:
        if not monitors:
            monitors.append(asyncio.get_running_loop().create_task(monitor()))
        return {"started": True}

    async def read_stamps(task_ids: list[str]) -> dict[str, Any]:
        return {
            "stamps": {tid: stamps.get(tid, {}) for tid in task_ids},
            "loop_lag": lags,
            "gc": gc_pauses,
            "gc_objects": {"tracked": len(gc.get_objects()), "frozen": gc.get_freeze_count()},
        }

    app.add_api_route("/_bench/start", start, methods=["POST"], include_in_schema=False)
    app.add_api_route("/_bench/stamps", read_stamps, methods=["POST"], include_in_schema=False)


# -- the driver ------------------------------------------------------------------------------------


def source_state() -> dict[str, Any]:
    """Which code was measured: the git commit, whether src/ differs from it, and a digest of the
    src/ files (the working tree may change between runs)."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((REPO / "src").rglob("*.py")):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    state: dict[str, Any] = {"src_sha256": digest.hexdigest()[:16]}
    try:
        state["git_head"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        state["src_dirty"] = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--", "src"], cwd=REPO, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        pass
    return state


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env() -> dict[str, str]:
    """This environment without LOOMIQ_* settings or provider keys (the default agents must be the
    offline scripted ones)."""
    return {
        k: v for k, v in os.environ.items() if not k.startswith("LOOMIQ_") and not k.endswith(("_API_KEY", "_BASE_URL"))
    }


def proc_cpu_s(pid: int, thread: int | None = None) -> float:
    """User + system CPU seconds of a process (all its threads), or of one of its threads."""
    path = f"/proc/{pid}/task/{thread}/stat" if thread else f"/proc/{pid}/stat"
    try:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """A server subprocess in its own temporary directory."""

    def __init__(
        self, name: str, root: Path, env: dict[str, str], profile_dir: Path | None, pyspy: str | None = None
    ) -> None:
        self.name = name
        self.profile_dir = profile_dir
        self.pyspy = pyspy
        self.spy: subprocess.Popen[bytes] | None = None
        self.dir = root / name
        self.dir.mkdir()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **env,
            "LOOMIQ_DATABASE_URL": f"sqlite:///{self.dir / 'tasks.db'}",
            "LOOMIQ_KEYS_PATH": str(self.dir / "keys.db"),
        }
        if profile_dir is not None and not pyspy:
            self.env["LOOMIQ_BENCH_PROFILE"] = str(profile_dir / f"server-{name}.prof")
        self.log = open(self.dir / "server.log", "w+")  # noqa: SIM115 - closed in stop()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> float:
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve", str(self.port)],
            cwd=self.dir,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise SystemExit(f"bench_api: server {self.name} exited ({self.proc.returncode}): {self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/health", timeout=2) as r:
                    if r.status == 200:
                        took = time.monotonic() - t0
                        self._start_spy()
                        return took
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise SystemExit(f"bench_api: server {self.name} not healthy after {timeout}s: {self.tail()}")

    def _start_spy(self) -> None:
        if not self.pyspy or self.profile_dir is None or self.proc is None:
            return
        out = self.profile_dir / f"server-{self.name}.collapsed"
        self.spy = subprocess.Popen(
            [
                self.pyspy,
                "record",
                "--pid",
                str(self.proc.pid),
                "--format",
                "raw",
                "--rate",
                "250",
                "--threads",
                "--nonblocking",
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _stop_spy(self) -> None:
        if self.spy is None:
            return
        self.spy.send_signal(signal.SIGINT)
        try:
            self.spy.wait(30)
        except subprocess.TimeoutExpired:
            self.spy.kill()
            self.spy.wait()
        self.spy = None
        out = self.profile_dir / f"server-{self.name}.collapsed" if self.profile_dir else None
        if out is not None and out.is_file():
            (out.with_suffix(".pyspy.txt")).write_text(summarize_collapsed(out))

    def cpu_s(self) -> float:
        return proc_cpu_s(self.proc.pid) if self.proc else float("nan")

    def tail(self) -> str:
        self.log.flush()
        return (self.dir / "server.log").read_text()[-2000:]

    def stop(self, grace: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        self._stop_spy()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def summarize_collapsed(path: Path, top: int = 45) -> str:
    """Top functions of a py-spy raw (collapsed) profile: by own samples and by inclusive samples,
    and the samples per thread."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    threads: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        threads[frames[0]] = threads.get(frames[0], 0) + n
        frames = frames[1:] or frames
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for frame in set(frames):
            incl[frame] = incl.get(frame, 0) + n
    lines = [f"{total} samples", "== by thread =="]
    lines += [f"{n:7d} {100 * n / total:5.1f}%  {t}" for t, n in sorted(threads.items(), key=lambda x: -x[1])]
    lines.append("== own samples ==")
    lines += [f"{n:7d} {100 * n / total:5.1f}%  {f}" for f, n in sorted(own.items(), key=lambda x: -x[1])[:top]]
    lines.append("== inclusive samples ==")
    lines += [f"{n:7d} {100 * n / total:5.1f}%  {f}" for f, n in sorted(incl.items(), key=lambda x: -x[1])[: top * 2]]
    return "\n".join(lines) + "\n"


class CpuSampler(threading.Thread):
    """(monotonic_ns, CPU seconds) of a process every `interval` seconds."""

    def __init__(self, server: Server, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.interval = interval
        self.samples: list[tuple[int, float, float]] = []  # (ns, process CPU s, main thread CPU s)
        self.halt = threading.Event()

    def sample(self) -> None:
        pid = self.server.proc.pid if self.server.proc else 0
        self.samples.append((time.monotonic_ns(), self.server.cpu_s(), proc_cpu_s(pid, pid)))

    def run(self) -> None:
        while True:
            self.sample()
            if self.halt.wait(self.interval):
                self.sample()
                return

    def cores(self, start_ns: int, end_ns: int, main_thread: bool = False) -> float | None:
        """Mean CPU cores the server (or its main thread, the event loop's) used between the two
        times (from the nearest samples)."""
        inside = [s for s in self.samples if start_ns <= s[0] <= end_ns]
        if len(inside) < 2 or inside[-1][0] == inside[0][0]:
            return None
        i = 2 if main_thread else 1
        return round((inside[-1][i] - inside[0][i]) / ((inside[-1][0] - inside[0][0]) / 1e9), 2)


def run_load(scenario: str, server: Server, token: str, extra: list[str], timeout: float) -> dict[str, Any]:
    cpu0, t0 = server.cpu_s(), time.monotonic()
    sampler = CpuSampler(server)
    sampler.start()
    try:
        done = subprocess.run(
            [sys.executable, str(LOAD), scenario, "--url", server.url, *extra],
            env={**base_env(), "LOOMIQ_BENCH_TOKEN": token},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        return {
            "scenario": scenario,
            "error": f"api_load.py ran past {timeout}s",
            "stderr": (exc.stderr or b"")[-3000:].decode(errors="replace")
            if isinstance(exc.stderr, bytes)
            else (exc.stderr or "")[-3000:],
        }
    finally:
        sampler.halt.set()
        sampler.join()
    wall = time.monotonic() - t0
    if done.returncode != 0 or not done.stdout.strip():
        return {"scenario": scenario, "error": f"api_load.py exited {done.returncode}", "stderr": done.stderr[-3000:]}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall_s"] = round(wall, 2)
    # Server CPU over the scenario, in cores (1.0 = one core busy the whole time).
    result["server_cpu_cores"] = round((server.cpu_s() - cpu0) / wall, 2)
    phases = result.pop("phases_ns", {})
    if phases:
        by_phase = {name: sampler.cores(a, b) for name, (a, b) in phases.items()}
        result["server_cpu_cores_by_phase"] = by_phase
        result["server_loop_thread_cores_by_phase"] = {
            name: sampler.cores(a, b, main_thread=True) for name, (a, b) in phases.items()
        }
        # CPU cost per unit of work: less sensitive to a busy machine than the latencies.
        if scenario == "submit" and by_phase.get("measured") and result.get("ok_202"):
            a, b = phases["measured"]
            result["server_cpu_ms_per_request"] = round(by_phase["measured"] * (b - a) / 1e6 / result["ok_202"], 3)
        if scenario == "sse":
            if by_phase.get("idle_subscribed"):
                result["server_cpu_ms_per_idle_stream_s"] = round(
                    by_phase["idle_subscribed"] * 1000 / result["clients"], 3
                )
            if by_phase.get("run") and result.get("deliveries_live"):
                a, b = phases["run"]
                result["server_cpu_us_per_delivery"] = round(
                    by_phase["run"] * (b - a) / 1e3 / result["deliveries_live"], 1
                )
    if done.stderr.strip():
        result["stderr"] = done.stderr[-1000:]
    return result


def sse_config(path: Path, step_s: float, gate_s: float, stagger_s: float, tasks: int, pool: int, stream: bool) -> None:
    """Scripted agents s0..s<pool-1> with latencies spread over step_s x 0.75..1.2, and the gates
    gate<i> (latency gate_s + i x stagger_s) for i < tasks.
    Without `stream`, each answers "done." (one text_delta per step); with it, the default offline
    answer (~30 words), which the scripted model streams in ~11 chunks spread over its latency."""
    lines = ["agents:"]
    spread = [round(step_s * (0.75 + 0.45 * i / max(1, pool - 1)), 3) for i in range(pool)]
    gates = [(f"gate{i}", round(gate_s + i * stagger_s, 3)) for i in range(tasks)]
    for ident, latency in [*((f"s{i}", spread[i]) for i in range(pool)), *gates]:
        lines += [
            f"  - id: {ident}",
            "    provider: scripted",
            "    model: scripted",
            "    max_concurrency: 1000",
            "    scripted:",
            f"      latency_s: {latency}",
        ]
        if not stream:
            lines.append('      replies: ["done."]')
    path.write_text("\n".join(lines) + "\n")


def verdicts(results: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    sub = results.get("submit")
    if sub and "latency_ms" in sub:
        lat = sub["latency_ms"]
        clean = not sub["errors"] and sub["achieved_rate_per_s"] >= 0.95 * sub["target_rate_per_s"]
        out["submit_p50_under_5ms"] = {
            "value": lat.get("p50"),
            "met": clean and lat.get("p50", 1e9) < TARGETS["submit_p50_ms"],
        }
        out["submit_p99_under_10ms"] = {
            "value": lat.get("p99"),
            "met": clean and lat.get("p99", 1e9) < TARGETS["submit_p99_ms"],
        }
        out["submit_no_errors_at_rate"] = {
            "value": {"errors": sub["errors"], "rate": sub["achieved_rate_per_s"]},
            "met": clean,
        }
    first = results.get("first-event")
    if first and "submit_to_first_event_ms" in first:
        p50 = first["submit_to_first_event_ms"].get("p50")
        out["first_event_p50_under_15ms"] = {
            "value": p50,
            "met": not first["errors"] and p50 is not None and p50 < TARGETS["first_event_p50_ms"],
        }
    for variant in ("sse", "sse-stream"):
        sse = results.get(variant)
        if not sse or "delay_abs_ms" not in sse:
            continue
        p99 = sse["delay_abs_ms"].get("p99")
        life = sse["delay_abs_lifecycle_ms"].get("p99")
        everything = (
            sse["clients_complete"] == sse["clients"] and not sse["connect_errors"] and not sse["streams_not_finished"]
        )
        tag = variant.replace("-", "_")
        out[f"{tag}_all_delivered"] = {
            "value": f"{sse['clients_complete']}/{sse['clients']} clients complete",
            "met": everything,
        }
        out[f"{tag}_p99_under_100ms"] = {
            "value": {"runtime_events": p99, "lifecycle_events_lower_bound": life},
            "met": p99 is not None
            and p99 < TARGETS["sse_p99_ms"]
            and (life is None or life < TARGETS["sse_p99_ms"])
            and sse["all_subscribed_before_tasks_ran"],
        }
    out["all_met"] = bool(out) and all(v["met"] for v in out.values())
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="loomiq HTTP service benchmark (issue 4)")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--only", action="append", choices=["submit", "first-event", "sse", "sse-stream"])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument(
        "--step-s",
        type=float,
        default=1.0,
        help="sse: mean latency of each of the 3 sequential "
        "steps (the agents' latencies spread over 0.75..1.2 times this)",
    )
    parser.add_argument(
        "--gate-s",
        type=float,
        default=10.0,
        help="sse: the first gate task's latency (time for the clients to connect)",
    )
    parser.add_argument(
        "--stagger-s",
        type=float,
        default=0.05,
        help="sse: the followed tasks start this far apart (0: all at once, a burst)",
    )
    parser.add_argument("--profile", type=Path, metavar="DIR", help="cProfile the servers into DIR")
    parser.add_argument(
        "--pyspy",
        metavar="BIN",
        help="with --profile: sample the servers with this py-spy instead of cProfile (all threads, low overhead)",
    )
    parser.add_argument(
        "--api-workers",
        type=int,
        help="submit/first-event server: LOOMIQ_API_WORKERS (default: "
        "the service's default, 2; 0 = no embedded worker, tasks only queue)",
    )
    parser.add_argument(
        "--experiment",
        action="append",
        default=[],
        help="what-if change in the server: no-gc-tune, follow-poll=S (see _install_experiment); "
        "results then do not describe the shipped service",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (server logs, databases)")
    args = parser.parse_args(argv)
    if args.serve is not None:
        serve(args.serve)
        return

    scenarios = args.only or ["first-event", "submit", "sse", "sse-stream"]
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        args.profile = args.profile.resolve()
    sys.path.insert(0, str(REPO / "src"))
    from loomiq.api import issue_token
    from loomiq.api.settings import Settings

    secret = secrets.token_urlsafe(48)
    env = {**base_env(), "LOOMIQ_JWT_SECRET": secret, "LOOMIQ_RATE_PER_S": "1000000", "LOOMIQ_RATE_BURST": "1000000"}
    if args.experiment:
        env["LOOMIQ_BENCH_EXPERIMENTS"] = ",".join(args.experiment)
    token = issue_token("bench", "operator", ttl_s=3600, settings=Settings.from_env(env))
    load_before = os.getloadavg()
    code = source_state()
    started = time.monotonic()
    results: dict[str, Any] = {}
    servers: dict[str, Any] = {}
    root = Path(tempfile.mkdtemp(prefix="loomiq-bench-api-"))
    try:
        if "submit" in scenarios or "first-event" in scenarios:
            env_a = dict(env)
            if args.api_workers is not None:
                env_a["LOOMIQ_API_WORKERS"] = str(args.api_workers)
            server = Server("a", root, env_a, args.profile, args.pyspy)
            servers["a"] = {"startup_s": round(server.start(), 2)}
            try:
                if "first-event" in scenarios:
                    results["first-event"] = run_load(
                        "first-event", server, token, ["--samples", str(args.samples)], 120
                    )
                if "submit" in scenarios:
                    results["submit"] = run_load(
                        "submit", server, token, ["--rate", str(args.rate), "--duration", str(args.duration)], 120
                    )
            finally:
                servers["a"]["exit"] = server.stop()
        for variant in ("sse", "sse-stream"):
            if variant not in scenarios:
                continue
            name = "b" if variant == "sse" else "c"
            config = root / f"loomiq-{variant}.yaml"
            sse_config(
                config, args.step_s, args.gate_s, args.stagger_s, args.tasks, AGENT_POOL, stream=variant == "sse-stream"
            )
            env_b = {
                **env,
                "LOOMIQ_CONFIG": str(config),
                "LOOMIQ_API_WORKERS": str(2 * args.tasks),
                "LOOMIQ_BENCH_STAMPS": "1",
            }
            server = Server(name, root, env_b, args.profile, args.pyspy)
            servers[name] = {"startup_s": round(server.start(), 2)}
            try:
                results[variant] = run_load(
                    "sse",
                    server,
                    token,
                    [
                        "--clients",
                        str(args.clients),
                        "--tasks",
                        str(args.tasks),
                        "--agent-pool",
                        str(AGENT_POOL),
                        "--gate",
                        str(args.gate_s),
                        "--stagger",
                        str(args.stagger_s),
                    ],
                    180,
                )
                results[variant]["variant"] = variant
            finally:
                servers[name]["exit"] = server.stop()
    finally:
        if args.keep:
            print(f"bench_api: kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)

    out = {
        "bench": "loomiq-http-service",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "code": code,
        "setup": {
            "server": "uvicorn via loomiq.api.server.build_server, 1 process, embedded worker, SQLite, "
            "JWT auth (HS256), rate limit raised to 1e6/s, log level warning",
            "servers": servers,
            "api_workers_a": args.api_workers,
            "experiments": args.experiment or None,
        },
        "results": results,
        "targets": verdicts(results),
        "thresholds_ms": TARGETS,
        "wall_s": round(time.monotonic() - started, 1),
    }
    if args.keep:
        out["kept"] = str(root)
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
