"""What the command-line tests share: the environment of a key-free `loomiq` subprocess, running one,
and the check that a usage error is one line on stderr with exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys

PROMPT = "Should we move our billing service to event sourcing?"

#: Variables that would point a `loomiq` process at a real provider, a config file or a database.
PROVIDER_ENV = (
    "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GROQ_API_KEY", "MISTRAL_API_KEY", "OLLAMA_BASE_URL",
    "OPENROUTER_API_KEY", "TOGETHER_API_KEY", "DEEPSEEK_API_KEY", "VLLM_BASE_URL", "LLAMACPP_BASE_URL",
    "LOOMIQ_CONFIG", "LOOMIQ_DEFAULT_MODEL", "LOOMIQ_DATABASE_URL", "FORCE_COLOR", "TTY_COMPATIBLE",
    "TTY_INTERACTIVE",
)


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of every `loomiq` subprocess: no provider key, no config, no database URL,
    no colour, real model calls forbidden, warnings as errors; plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in PROVIDER_ENV}
    env.update(NO_COLOR="1", LOOMIQ_ALLOW_MODEL_REQUESTS="0", PYTHONWARNINGS="error", **extra)
    return env


def cli(*args: str, timeout: float = 60, **extra_env: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m loomiq.cli ARGS` in the cwd with `cli_env(**extra_env)` and wait for it."""
    return subprocess.run([sys.executable, "-m", "loomiq.cli", *args], capture_output=True, text=True,
                          env=cli_env(**extra_env), timeout=timeout, check=False)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit 2, nothing on stdout, exactly one ``loomiq: error:`` line on stderr containing `fragments`;
    that line."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("loomiq: error: ")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]
