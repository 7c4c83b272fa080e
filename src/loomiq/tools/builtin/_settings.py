"""What every built-in tool shares: validated settings (``tools: {name: {...}}`` in loomiq.yaml) and
the `configure` classmethod that builds a tool from them.

Each built-in declares a pydantic model of its settings (extra keys forbidden, so a typo is an error,
not a silently ignored key) and is built with ``ToolClass.configure(mapping)``; an invalid mapping
raises `ToolConfigError` naming the tool and the field.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from ..base import Tool

DATA_DIR_ENV = "LOOMIQ_DATA_DIR"
"""Where loomiq keeps the files of its tools (workspaces): default ``.loomiq`` in the working directory."""


def data_dir() -> Path:
    """``$LOOMIQ_DATA_DIR``, else ``./.loomiq`` (beside the default ``loomiq.db``)."""
    return Path(os.environ.get(DATA_DIR_ENV) or ".loomiq")


class ToolConfigError(ValueError):
    """A built-in tool's settings are invalid; the message names the tool and the field."""


class ToolSettings(BaseModel):
    """Base of every built-in's settings: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def describe_validation(tool: str, exc: ValidationError) -> str:
    """One line naming the tool, the first invalid field and what is wrong with it."""
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err.get("loc", ())) or "(settings)"
    message = str(err.get("msg", "invalid"))
    if err.get("type") == "extra_forbidden":
        message = "unknown setting"
    return f"tool {tool!r}: setting {field!r}: {message}"


class ConfigurableTool(Tool):
    """A built-in tool built from validated settings (see `configure`)."""

    Settings: ClassVar[type[ToolSettings]] = ToolSettings

    @classmethod
    def parse_settings(cls, settings: Mapping[str, Any] | None) -> Any:
        """`settings` validated by the tool's `Settings` model; `ToolConfigError` when invalid."""
        try:
            return cls.Settings.model_validate(dict(settings or {}))
        except ValidationError as exc:
            raise ToolConfigError(describe_validation(cls.name, exc)) from None

    @classmethod
    def configure(cls, settings: Mapping[str, Any] | None = None) -> Self:
        """The tool with these settings (``tools: {<name>: {...}}`` in loomiq.yaml; None = defaults)."""
        return cls(cls.parse_settings(settings))

    def __init__(self, settings: Any = None) -> None:
        self.settings = settings if settings is not None else self.Settings()

    def unavailable_reason(self) -> str | None:
        """Why the tool cannot run in this deployment (what to install or configure), or None.

        Cheap and synchronous: listing tools calls it. A check that needs a subprocess runs at the
        first call instead and raises `ToolUnavailable` there.
        """
        return None


__all__ = ["DATA_DIR_ENV", "ConfigurableTool", "ToolConfigError", "ToolSettings", "data_dir", "describe_validation"]
