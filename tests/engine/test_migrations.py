"""Schema migrations: from an empty database, from each earlier version, and a newer one refused."""

from __future__ import annotations

import pytest

from loomiq.engine import SchemaError, Store, open_store
from loomiq.engine._ops import Stmt
from loomiq.engine._schema import LATEST

from .conftest import FAST, running, team


async def _tables(store: Store) -> set[str]:
    if store.dialect.name == "sqlite":
        rows = await store.fetch(Stmt("SELECT name FROM sqlite_master WHERE type = 'table'", (), "all"))
    else:
        rows = await store.fetch(Stmt("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()", (),
                                      "all"))
    return {r[0] for r in rows}


async def test_from_empty(db_url: str) -> None:
    store = await open_store(db_url)
    try:
        assert await store.schema_version() == LATEST
        assert {"tasks", "task_dependencies", "steps", "events", "attempts", "workers", "agent_slots",
                "schema_migrations"} <= await _tables(store)
    finally:
        await store.close()
    # Opening again applies nothing.
    store = await open_store(db_url)
    await store.close()


@pytest.mark.parametrize("previous", range(1, LATEST))
async def test_from_previous_version(db_url: str, previous: int) -> None:
    from loomiq import Orchestrator

    orch = Orchestrator(team())
    engine = await orch.open_engine(db_url, config=FAST, store_options={"schema_version": previous})
    assert await engine.store.schema_version() == previous
    assert "workers" not in await _tables(engine.store) or previous >= 2
    task_id = (await orch.submit("kept across the upgrade", strategy="single", agents=["a0"])).id
    await orch.aclose()

    orch = Orchestrator(team())
    engine = await orch.open_engine(db_url, config=FAST)
    try:
        assert await engine.store.schema_version() == LATEST
        assert (await orch.get_task(task_id)).status == "queued"
        async with running(engine):
            task = await orch.wait(task_id, timeout_s=10)
        assert task.status == "completed"
        assert len(await engine.workers()) == 1
    finally:
        await orch.aclose()


async def test_newer_schema_is_refused(db_url: str) -> None:
    store = await open_store(db_url)
    await store.run_op(_insert_version(LATEST + 1))
    await store.close()
    with pytest.raises(SchemaError, match="schema version"):
        await open_store(db_url)


def _insert_version(version: int):  # type: ignore[no-untyped-def]
    from loomiq.engine._ops import Outcome

    yield Stmt("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", (version, 0.0))
    return Outcome()


def test_unknown_url_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported database URL"):
        Store.from_url("mysql://x/y")
