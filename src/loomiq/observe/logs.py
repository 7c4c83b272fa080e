"""Structured logs: JSON (or text) lines through structlog, with the ids of the run in hand on every line.

`configure_logging` routes the standard library's loggers (``loomiq.*``, uvicorn's) through one structlog
formatter, so every line of a process has the same shape::

    {"ts": "2026-12-04T12:00:00.123Z", "level": "warning", "logger": "loomiq.engine",
     "event": "task failed after 3 attempts", "tenant": "acme", "task_id": "t_...", "run_id": "...",
     "agent": "fast", "trace_id": "4bf9..."}

The ids come from context variables bound with `bind_ids` where a run, a task, a workflow node or an agent
call begins (`tenant`, `project`, `task_id`, `run_id`, `workflow`, `workflow_run_id`, `node`, `agent`,
`trace_id`); a line logged anywhere below carries them without passing them along.

Secrets never reach a line: every string in an event is passed through `redact`, which replaces the values of
secret-looking environment variables (names ending in KEY, TOKEN, SECRET, PASSWORD, ...), bearer tokens,
loomiq API keys and the passwords of URLs, and values of secret-looking fields are replaced whole.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping, MutableMapping
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, Literal

LogFormat = Literal["text", "json"]

_IDS: ContextVar[Mapping[str, str] | None] = ContextVar("loomiq_log_ids", default=None)

ID_FIELDS = ("tenant", "project", "task_id", "run_id", "workflow", "workflow_run_id", "node", "agent", "trace_id")
"""The correlation ids a line may carry, in the order they are printed."""


class Scope:
    """Binds log ids for a block and, when tracing is on, opens a span around it (`as` gives the span, or
    None)."""

    __slots__ = ("_ids", "_span", "_token")

    def __init__(self, ids: dict[str, str], span: Any) -> None:
        self._ids = ids
        self._span = span
        self._token: Token[Any] | None = None

    def __enter__(self) -> Any:
        outer = _IDS.get()
        self._token = _IDS.set({**outer, **self._ids} if outer else self._ids)
        return self._span.__enter__() if self._span is not None else None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if self._span is not None:
                self._span.__exit__(kind, exc, tb)
        finally:
            if self._token is not None:
                _IDS.reset(self._token)


def bind_ids(**ids: str | None) -> Scope:
    """Within the block (``with bind_ids(...)``), every log line carries these ids (added to those bound outside
    it; None values are left out). One context-variable set and reset: cheap enough for every run."""
    return Scope({k: v for k, v in ids.items() if v is not None}, None)


def current_ids() -> Mapping[str, str]:
    """The ids bound in this context (empty outside any run)."""
    return _IDS.get() or {}


# -- redaction -------------------------------------------------------------------------------------------

_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?|AUTH)$", re.IGNORECASE)
_SECRET_FIELD = re.compile(r"(api[_-]?key|token|secret|password|passwd|authorization|credential|cookie)",
                           re.IGNORECASE)
_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"\b(lq_)[A-Za-z0-9_-]{16,}"),                       # loomiq API keys
    re.compile(r"\b(sk-)[A-Za-z0-9_-]{16,}"),                        # OpenAI-style keys
    re.compile(r"(://[^/\s:@]+:)[^@\s/]+(@)"),                       # passwords in URLs
)
REDACTED = "[redacted]"
_secret_values: tuple[str, ...] | None = None


def _env_secrets() -> tuple[str, ...]:
    global _secret_values
    if _secret_values is None:
        found = {v for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v) >= 6}
        _secret_values = tuple(sorted(found, key=len, reverse=True))
    return _secret_values


def redact(text: str) -> str:
    """`text` with every secret it contains replaced by ``[redacted]``."""
    for value in _env_secrets():
        if value in text:
            text = text.replace(value, REDACTED)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED + (m.group(2) if m.lastindex and m.lastindex > 1
                                                               else ""), text)
    return text


def _redact_value(key: str, value: Any) -> Any:
    if isinstance(value, str):
        return REDACTED if _SECRET_FIELD.search(key) and value else redact(value)
    if isinstance(value, Mapping):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(key, v) for v in value]
    return value


def _redact_processor(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        if key in ID_FIELDS or key in ("level", "logger", "ts"):
            continue
        event[key] = _redact_value(key, value)
    return event


def _ids_processor(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    ids = _IDS.get()
    if ids:
        for key, value in ids.items():
            event.setdefault(key, value)
    return event


def _level(level: str | None) -> int:
    name = (level or os.environ.get("LOOMIQ_LOG_LEVEL") or "INFO").strip().upper()
    value = logging.getLevelName(name)
    if not isinstance(value, int):
        raise ValueError(f"log level {level or os.environ.get('LOOMIQ_LOG_LEVEL')!r} is not one of "
                         "DEBUG, INFO, WARNING, ERROR, CRITICAL (from --log-level or LOOMIQ_LOG_LEVEL)")
    return value


def configure_logging(fmt: LogFormat = "text", level: str | None = None, *, stream: Any = None) -> int:
    """Send every log line of this process (loomiq's, uvicorn's, the libraries') to `stream` (stderr)
    as JSON lines or as text, at `level` (else ``$LOOMIQ_LOG_LEVEL``, else INFO). Returns the level.

    Raises ValueError naming the bad level or format."""
    import structlog

    if fmt not in ("text", "json"):
        raise ValueError(f"log format {fmt!r} is not 'text' or 'json'")
    numeric = _level(level)
    global _secret_values
    _secret_values = None  # the environment may have changed since the last call (tests, reloads)
    shared: list[Any] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
        _ids_processor,
        structlog.processors.format_exc_info,
        _redact_processor,
    ]
    renderer: Any = (structlog.processors.JSONRenderer() if fmt == "json"
                     else structlog.dev.ConsoleRenderer(colors=False, pad_event_to=0))
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_loomiq", False):
            root.removeHandler(old)
    handler._loomiq = True  # type: ignore[attr-defined]  # marks the handler this function owns
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    return numeric
