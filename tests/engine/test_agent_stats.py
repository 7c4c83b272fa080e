"""Agent statistics come from the database shared by every process (issue 10, item 15): each engine
writes its agents' deltas behind the group commit, a fresh process reads the sums, and no call means
no rate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loomiq import Orchestrator
from loomiq.engine import open_store, read_agent_stats
from tests.factories import NO_RETRY, make_agent

from .conftest import database


def team() -> Orchestrator:
    """A fresh process's view: the same agent ids, new in-memory statistics."""
    bad = make_agent("bad", ["bad-only"], retry=NO_RETRY, failures={i: "server_error" for i in range(9)})
    return Orchestrator([make_agent("good", ["general"]), bad])


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_two_processes_add_up_and_a_fresh_reader_sees_the_sums(kind: str, tmp_path: Path) -> None:
    async with database(kind, tmp_path) as url:
        for _ in range(2):  # two "processes", one after the other, each with its own registry
            orch = team()
            await orch.open_engine(url)
            try:
                for _ in range(3):
                    done = await orch.run("Say hi.", strategy="single", agents=["good"], durable=True)
                    assert done.status == "completed"
                failed = await orch.run("Say hi.", strategy="single", agents=["bad"], durable=True)
                assert failed.status == "failed"
            finally:
                await orch.aclose()  # the last deltas are written at close
        store = await open_store(url)
        try:
            totals = await read_agent_stats(store)
        finally:
            await store.close()
        good, bad = totals["good"], totals["bad"]
        assert (good["calls"], good["successes"], good["failures"]) == (6, 6, 0)
        assert good["output_tokens"] > 0 and good["total_latency_s"] >= 0
        assert (bad["calls"], bad["successes"], bad["failures"]) == (2, 0, 2)
        assert "provider_unavailable" in bad["last_error"]
        # The library shows the database's totals through `snapshot`, with the rate computed from them.
        orch = team()
        await orch.open_engine(url)
        try:
            live = await orch.engine.agent_stats()
            snap = orch.registry.get("good").snapshot(live["good"])
            assert snap["calls"] == 6 and snap["success_rate"] == 1.0
            assert orch.registry.get("bad").snapshot(live["bad"])["success_rate"] == 0.0
        finally:
            await orch.aclose()


async def test_no_call_means_no_rate() -> None:
    snap = make_agent("idle").snapshot()
    assert snap["calls"] == 0 and snap["success_rate"] is None
    assert make_agent("idle").snapshot({})["success_rate"] is None


async def test_writes_only_what_changed(tmp_path: Path) -> None:
    async with database("sqlite", tmp_path) as url:
        orch = team()
        engine = await orch.open_engine(url)
        try:
            recorder = engine.agent_stats_recorder
            assert recorder._rows(orch.registry) == []  # noqa: SLF001 - nothing happened yet
            await orch.run("Say hi.", strategy="single", agents=["good"])
            rows = recorder._rows(orch.registry)  # noqa: SLF001
            assert [r[0] for r in rows] == ["good"] and rows[0][1] == 1
            assert recorder._rows(orch.registry) == []  # noqa: SLF001 - written: no delta left
        finally:
            await orch.aclose()


def test_loomiq_agents_in_a_fresh_process_shows_what_a_durable_run_did(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.cli.conftest import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "loomiq.yaml").write_text(
        "agents:\n  - {id: solo, provider: scripted, model: scripted, capabilities: [general]}\n", encoding="utf-8")
    before = cli("agents", "--json")
    assert before.returncode == 0, before.stderr
    assert json.loads(before.stdout)[0]["success_rate"] is None
    assert not (tmp_path / "loomiq.db").exists()  # reading statistics creates no database
    table = cli("agents")
    assert "—" in table.stdout and "100%" not in table.stdout
    ran = cli("run", "Say hi.", "--durable", "--json")
    assert ran.returncode == 0, ran.stderr
    after = json.loads(cli("agents", "--json").stdout)[0]
    assert after["calls"] == 1 and after["success_rate"] == 1.0 and after["output_tokens"] > 0
