"""`ToolRegistry`: every tool a process knows, by the name models see, and the allow-lists over it.

Three sources: tools added in code (`@tool` functions, `Tool` instances), the built-ins (``python``,
``shell``, ``files``, ``knowledge``, ``web_search``, ``http_fetch``... from `loomiq.tools.builtin`,
built on first use from their ``tools:`` settings in loomiq.yaml), and providers' tools (an MCP
server's), which join under the provider's name: ``<provider>__<tool>``.

Names: what every provider accepts as a function name, ``^[A-Za-z0-9_-]{1,64}$`` (OpenAI's rule, the
strictest). A dot is not allowed there, so a provider's tools are named with a double underscore, which
a tool's own name may not contain: ``time__get_current_time``.

Allow-lists (an agent's ``tools: [...]``, a run's ``--tools``): an entry is a tool's full name
(``python``, ``time__get_current_time``) or a provider's name (``time``: every tool of that provider).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from typing import Any

from .base import Tool, ToolError
from .function import TOOL_NAME

NAMESPACE_SEPARATOR = "__"
"""Between a provider's name and its tool's name in the name models see."""

ENABLED_KEY = "enabled"
"""The one setting of ``tools: {<name>: {...}}`` the registry reads itself; the rest is the tool's."""


class UnknownTool(ToolError):
    """No tool of that name is registered (or the built-in is disabled in loomiq.yaml)."""


class ToolSettingsError(ValueError):
    """A ``tools:`` entry of loomiq.yaml is invalid; `tool` names it and the message says why."""

    def __init__(self, tool: str, message: str) -> None:
        super().__init__(message)
        self.tool = tool


def builtin_classes() -> dict[str, type[Tool]]:
    """The built-in tool classes by name, from `loomiq.tools.builtin.builtin_tools()` (empty when
    that package is not installed)."""
    try:
        module = importlib.import_module(f"{__package__}.builtin")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.builtin":
            raise
        return {}
    return dict(module.builtin_tools())


def qualified_name(namespace: str, name: str) -> str:
    """The name models see for a provider's tool: ``<namespace>__<name>``; `ValueError` if it breaks
    the providers' naming rule."""
    full = f"{namespace}{NAMESPACE_SEPARATOR}{name}"
    if NAMESPACE_SEPARATOR in namespace or not TOOL_NAME.match(full):
        raise ValueError(
            f"tool {full!r}: a provider's tool name must be 1 to 64 letters, digits, '_' or '-' in all, "
            "and the provider's name may not contain '__'"
        )
    return full


def allows(allow_list: Iterable[str], name: str) -> bool:
    """Whether an allow-list admits the tool `name`: by its full name, or by its provider's name."""
    namespace, sep, _ = name.partition(NAMESPACE_SEPARATOR)
    return any(entry == name or (bool(sep) and entry == namespace) for entry in allow_list)


def check_settings(settings: Mapping[str, Mapping[str, Any]]) -> None:
    """Check the ``tools:`` section of loomiq.yaml: every entry names a built-in, ``enabled`` is a
    boolean, and the tool accepts the rest (`Tool.configure`). Raises `ToolSettingsError`."""
    classes = builtin_classes()
    for name, entry in settings.items():
        if name not in classes:
            known = ", ".join(sorted(classes)) or "none installed"
            raise ToolSettingsError(name, f"unknown built-in tool (known: {known})")
        if not isinstance(entry, Mapping):
            raise ToolSettingsError(name, "expected a mapping of settings")
        enabled = entry.get(ENABLED_KEY, True)
        if not isinstance(enabled, bool):
            raise ToolSettingsError(name, f"field {ENABLED_KEY!r}: expected true or false")
        try:
            classes[name].configure(_tool_settings(entry))
        except (ValueError, ToolError) as exc:
            raise ToolSettingsError(name, str(exc)) from None


def _tool_settings(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k != ENABLED_KEY}


class ToolRegistry:
    """The tools of a process by name: added in code, built-ins on demand, providers' tools.

    Args:
        tools: tools to add now (`@tool` functions or `Tool` instances).
        settings: the ``tools:`` section of loomiq.yaml, by tool name (checked with `check_settings`
            when the config is loaded); a built-in is built from its entry on first use, and an entry
            with ``enabled: false`` hides it.
        builtins: whether the built-ins are offered at all.
    """

    def __init__(
        self,
        tools: Iterable[Tool] = (),
        *,
        settings: Mapping[str, Mapping[str, Any]] | None = None,
        builtins: bool = True,
    ) -> None:
        self.settings: dict[str, Mapping[str, Any]] = dict(settings or {})
        self._tools: dict[str, Tool] = {}
        self._providers: dict[str, list[str]] = {}
        self._builtin_classes: dict[str, type[Tool]] | None = None if builtins else {}
        for t in tools:
            self.add(t)

    def add(self, tool: Tool) -> Tool:
        """Register `tool` under its own name; `ValueError` if the name is taken or not a valid name."""
        if not TOOL_NAME.match(tool.name):
            raise ValueError(f"tool name {tool.name!r}: use 1 to 64 letters, digits, '_' or '-'")
        if tool.name in self._tools or tool.name in self._builtins():
            raise ValueError(f"a tool named {tool.name!r} is already registered")
        self._tools[tool.name] = tool
        return tool

    def add_provider(self, namespace: str, tools: Iterable[Tool]) -> list[str]:
        """Register a provider's tools (an MCP server's) as ``<namespace>__<tool>``; returns their
        names. The tools must already carry those names (see `qualified_name`)."""
        names: list[str] = []
        for t in tools:
            if not t.name.startswith(namespace + NAMESPACE_SEPARATOR):
                raise ValueError(f"tool {t.name!r} of provider {namespace!r} must be named {namespace}__<tool>")
            self.add(t)
            names.append(t.name)
        self._providers.setdefault(namespace, []).extend(names)
        return names

    def _builtins(self) -> dict[str, type[Tool]]:
        if self._builtin_classes is None:
            self._builtin_classes = builtin_classes()
        return self._builtin_classes

    def _enabled(self, name: str) -> bool:
        return bool(self.settings.get(name, {}).get(ENABLED_KEY, True))

    def names(self) -> list[str]:
        """Every available tool's name, sorted: added ones and enabled built-ins."""
        builtin = [n for n in self._builtins() if self._enabled(n)]
        return sorted({*self._tools, *builtin})

    def providers(self) -> dict[str, list[str]]:
        """Each provider's name and its tools' names."""
        return {ns: list(names) for ns, names in self._providers.items()}

    def get(self, name: str) -> Tool:
        """The tool called `name` (a built-in is built on first use); `UnknownTool` if there is none."""
        found = self._tools.get(name)
        if found is not None:
            return found
        cls = self._builtins().get(name)
        if cls is None:
            raise UnknownTool(f"no tool named {name!r}")
        if not self._enabled(name):
            raise UnknownTool(f"tool {name!r} is disabled (tools: {name}: enabled: false)")
        try:
            built = cls.configure(_tool_settings(self.settings.get(name, {})))
        except ValueError as exc:
            raise ToolSettingsError(name, str(exc)) from None
        self._tools[name] = built
        return built

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def select(self, allow_list: Iterable[str]) -> list[Tool]:
        """The available tools an allow-list admits, in name order (entries naming nothing are skipped)."""
        entries = list(allow_list)
        return [self.get(n) for n in self.names() if allows(entries, n)]

    def unmatched(self, allow_list: Iterable[str]) -> list[str]:
        """Allow-list entries that admit no available tool (a typo, a disabled built-in)."""
        names = self.names()
        return [e for e in allow_list if not any(allows([e], n) for n in names)]
