"""Fixtures of the tools suite: whether a bubblewrap sandbox can start here.

Without one the sandbox tests are skipped, unless ``$CI`` is set: then they fail (CI installs
bubblewrap through ``scripts/test.sh``).
"""

from __future__ import annotations

import os

import pytest

from loomiq.tools import ToolUnavailable
from loomiq.tools.builtin import Sandbox

_reason: str | None | bool = False


async def sandbox_unavailable() -> str | None:
    """Why no sandbox can start on this machine, or None (probed once per session)."""
    global _reason
    if _reason is False:
        try:
            await Sandbox(warm=0).check()
            _reason = None
        except ToolUnavailable as exc:
            _reason = str(exc)
    return _reason or None


@pytest.fixture
async def need_sandbox() -> None:
    """Skip (fail in CI) when bubblewrap cannot start a sandbox here."""
    reason = await sandbox_unavailable()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"the sandbox is required in CI: {reason}")
        pytest.skip(reason)
