"""Structured logs: JSON lines carrying the ids of the run in hand, secrets redacted whatever logs them."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from loomiq.observe import bind_ids, configure_logging, current_ids, redact
from loomiq.observe.logs import REDACTED


@pytest.fixture
def lines(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    monkeypatch.setenv("ACME_OPENAI_API_KEY", "sk-acme-very-secret-value-1234")
    monkeypatch.setenv("DB_PASSWORD", "hunter2hunter2")
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure_logging("json", "debug", stream=stream)
    yield stream
    root.handlers[:], root.level = saved


def parsed(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_every_line_of_a_run_carries_its_ids(lines: io.StringIO) -> None:
    log = logging.getLogger("loomiq.engine")
    log.info("outside any run")
    with bind_ids(tenant="acme", task_id="t1", run_id="t1"):
        log.warning("inside the run")
        with bind_ids(agent="fast", node="draft"):
            log.info("inside an agent call")
        log.info("back in the run")
    first, run, agent, back = parsed(lines)
    assert "task_id" not in first and first["level"] == "info" and first["logger"] == "loomiq.engine"
    assert run["tenant"] == "acme" and run["task_id"] == "t1" and run["level"] == "warning" and "agent" not in run
    assert agent["agent"] == "fast" and agent["node"] == "draft" and agent["task_id"] == "t1"
    assert "agent" not in back and back["event"] == "back in the run"
    assert all("ts" in line for line in (first, run, agent, back))
    assert current_ids() == {}


def test_secrets_never_reach_a_line(lines: io.StringIO) -> None:
    log = logging.getLogger("loomiq.api")
    log.warning("provider said: invalid key sk-acme-very-secret-value-1234 for %s", "acme")
    log.warning("connecting to postgresql://loomiq:hunter2hunter2@db:5432/loomiq")
    log.warning("header was Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig")
    log.warning("key lq_0123456789abcdefghijklmnop revoked")
    try:
        raise RuntimeError("auth failed with hunter2hunter2")
    except RuntimeError:
        log.exception("call failed")
    text = lines.getvalue()
    for secret in ("sk-acme-very-secret-value-1234", "hunter2hunter2", "eyJhbGciOiJIUzI1NiJ9.payload.sig",
                   "0123456789abcdefghijklmnop"):
        assert secret not in text
    assert text.count(REDACTED) >= 5
    assert "for acme" in text  # the rest of the message stays


def test_structlog_loggers_redact_secret_fields(lines: io.StringIO) -> None:
    import structlog

    structlog.get_logger("loomiq.test").info("registered", api_key="plain-value", agent_count=3,
                                             headers={"authorization": "Basic abc"})
    (line,) = parsed(lines)
    assert line["api_key"] == REDACTED and line["headers"] == {"authorization": REDACTED}
    assert line["agent_count"] == 3


def test_text_format_and_bad_levels() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging("text", "warning", stream=stream)
        logging.getLogger("loomiq.x").info("hidden")
        with bind_ids(task_id="t9"):
            logging.getLogger("loomiq.x").warning("shown")
        out = stream.getvalue()
        assert "hidden" not in out and "shown" in out and "task_id=t9" in out
        with pytest.raises(ValueError, match="LOUD.*DEBUG, INFO"):
            configure_logging("text", "LOUD", stream=stream)
        with pytest.raises(ValueError, match="xml"):
            configure_logging("xml", "info", stream=stream)  # type: ignore[arg-type]
    finally:
        root.handlers[:], root.level = saved


def test_redact_leaves_ordinary_text_alone() -> None:
    assert redact("the task completed in 12 ms") == "the task completed in 12 ms"
