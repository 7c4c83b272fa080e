"""Shared pieces of the CLI: the one-line error exit, option parsing, and number formatting."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import typer

from ..agents import Agent

USAGE_ERROR = 2
"""Exit code for anything the user asked that cannot run: bad config, strategy or agent."""

OFFLINE_DEFAULT = (
    "offline: no provider key or server configured; these answers come from loomiq's built-in "
    "scripted agents, not a real model"
)


def fail(message: str, code: int = USAGE_ERROR) -> NoReturn:
    """Print ``loomiq: error: <message>`` as one line on stderr and exit with `code`."""
    line = " ".join(str(message).split())
    sys.stderr.write(f"loomiq: error: {line}\n")
    sys.stderr.flush()
    raise typer.Exit(code)


def read_prompt(prompt: str | None, prompt_file: Path | None) -> str:
    """The task text: the PROMPT argument, stdin when it is ``-``, or the file of ``--prompt-file``
    (argv cannot carry a large prompt). A missing, empty or unreadable prompt is a one-line error."""
    if prompt is not None and prompt_file is not None:
        fail("give the prompt either as the PROMPT argument or with --prompt-file, not both")
    if prompt_file is not None:
        source = f"--prompt-file {prompt_file}"
        try:
            text = prompt_file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            fail(f"{source}: the file is not UTF-8 text")
        except OSError as exc:
            fail(f"{source}: cannot read it: {exc.strerror or exc}")
    elif prompt == "-":
        source = "stdin"
        try:
            text = sys.stdin.buffer.read().decode("utf-8")
        except UnicodeDecodeError:
            fail("the prompt read from stdin is not UTF-8 text")
    elif prompt is None:
        fail("no prompt: give it as the PROMPT argument, '-' to read it from stdin, or --prompt-file PATH")
    else:
        return prompt
    if not text.strip():
        fail(f"the prompt from {source} is empty: write the task for the agents there")
    return text


def strategy_options(strategy: str, allow_fewer: bool) -> dict[str, bool] | None:
    """The strategy options the run's flags ask for (``--allow-fewer``), or a one-line error when
    the strategy does not take them."""
    if not allow_fewer:
        return None
    if strategy != "consensus":
        fail(f"--allow-fewer only applies to --strategy consensus, not {strategy}")
    return {"allow_fewer": True}


def split_list(value: str | None) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``; None or blank -> ``[]``."""
    if not value:
        return []
    return [part.strip() for part in value.split(",") if part.strip()]


def offline_notice(agents: Sequence[Agent], config: Path | None) -> str | None:
    """The line that tells a person the answers are scripted, or None when every agent is real.

    `config` is the config file in use (None for the built-in default agents).
    """
    offline = [a.id for a in agents if a.offline]
    if not offline:
        return None
    if len(offline) == len(agents) and config is None:
        return OFFLINE_DEFAULT
    who = ", ".join(offline)
    return (
        f"offline: agent(s) {who} are scripted; their answers come from loomiq's built-in scripted "
        "agents, not a real model"
    )


def fmt_cost(cost: float) -> str:
    """Dollars with enough digits to see a fraction of a cent."""
    if cost == 0:
        return "$0.00"
    return f"${cost:.6f}" if cost < 0.01 else f"${cost:.4f}"


def fmt_ms(ms: float) -> str:
    """Milliseconds (a decimal under ten), switching to seconds past ten seconds."""
    if ms >= 10_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms:.1f} ms" if ms < 10 else f"{ms:,.0f} ms"


def fmt_tokens(n: int) -> str:
    """A token count with thousands separators."""
    return f"{n:,}"


LOG_FORMATS = ("text", "json")


def setup_observability(log_format: str, log_level: str | None, service: str) -> None:
    """Logs (`--log-format`, `--log-level` or ``$LOOMIQ_LOG_LEVEL``) and traces (on when
    ``$OTEL_EXPORTER_OTLP_ENDPOINT`` is set) of a long-running command (serve, worker)."""
    from ..observe import configure_logging, tracing

    if log_format not in LOG_FORMATS:
        fail(f"--log-format must be text or json, not {log_format!r}")
    try:
        configure_logging(log_format, log_level)  # type: ignore[arg-type]  # checked just above
    except ValueError as exc:
        fail(str(exc))
    tracing(service)
