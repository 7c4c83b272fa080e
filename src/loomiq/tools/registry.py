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

A provider may also be a `ToolSource` whose tools are only known once it runs (an MCP server):
`ToolRegistry.prepare(allow_list)` loads the sources an allow-list names (starting them), before
`select`; a source that cannot load raises `ToolSourceError` when it is required, and is skipped
(and reported) when it is not.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

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


class ToolSourceError(ToolError):
    """A required tool source (an MCP server) could not give its tools; the message names it."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(message)
        self.source = source


class ToolSource(Protocol):
    """A provider whose tools are known once it runs (an MCP server). Its tools carry their full
    names (``<name>__<tool>``)."""

    name: str
    required: bool
    """Whether a run must stop when the source cannot load (else it goes on without its tools)."""

    async def load(self) -> Sequence[Tool]:
        """Start the provider if needed and return its tools; raise with a message naming it."""
        ...

    def subscribe(self, listener: Any) -> None:
        """Call `listener(tools)` whenever the provider's tools change."""
        ...

    async def aclose(self) -> None:
        """Stop the provider."""
        ...


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
        self._sources: dict[str, ToolSource] = {}
        self._loaded: set[str] = set()
        self._loading: dict[str, asyncio.Future[None]] = {}
        self.version = 0
        """Bumped whenever the set of tools changes (a tool added, a provider's tools replaced or
        closed): what was selected under an older version may be stale."""
        for t in tools:
            self.add(t)

    def set_default(self, tool: str, key: str, value: Any) -> None:
        """Give the built-in `tool` the setting `key` unless its ``tools:`` entry sets it (takes effect
        when the tool is built: call it before first use). The service and workers use it to point
        the knowledge base at their own database."""
        entry = dict(self.settings.get(tool) or {})
        entry.setdefault(key, value)
        self.settings[tool] = entry

    def add(self, tool: Tool) -> Tool:
        """Register `tool` under its own name; `ValueError` if the name is taken or not a valid name."""
        if not TOOL_NAME.match(tool.name):
            raise ValueError(f"tool name {tool.name!r}: use 1 to 64 letters, digits, '_' or '-'")
        if tool.name in self._tools or tool.name in self._builtins():
            raise ValueError(f"a tool named {tool.name!r} is already registered")
        self._tools[tool.name] = tool
        self.version += 1
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

    def replace_provider(self, namespace: str, tools: Iterable[Tool]) -> list[str]:
        """Replace a provider's tools with `tools` (its tool list changed); returns their names."""
        for name in self._providers.pop(namespace, []):
            self._tools.pop(name, None)
        self.version += 1
        return self.add_provider(namespace, tools)

    def add_source(self, source: ToolSource) -> None:
        """Register a provider whose tools `prepare` loads on first use; `ValueError` if the name is
        taken by a tool or another source."""
        if source.name in self._sources or source.name in self._tools or source.name in self._builtins():
            raise ValueError(f"a tool or provider named {source.name!r} is already registered")
        if NAMESPACE_SEPARATOR in source.name:
            raise ValueError(f"provider name {source.name!r} may not contain '__'")
        self._sources[source.name] = source
        source.subscribe(lambda tools, name=source.name: self.replace_provider(name, tools))

    def sources(self) -> dict[str, ToolSource]:
        """The registered sources by name."""
        return dict(self._sources)

    def loaded(self, name: str) -> bool:
        """Whether source `name` has given its tools."""
        return name in self._loaded

    async def prepare(self, allow_list: Iterable[str] | None = None) -> dict[str, str]:
        """Load the sources `allow_list` names (every source when None), starting them, so that
        their tools are in `names` and `select`. Sources load concurrently, each once.

        Returns the problems of the optional sources that could not load, by source name; raises
        `ToolSourceError` when a required one could not.
        """
        if allow_list is None:
            wanted = list(self._sources)
        else:
            entries = list(allow_list)
            wanted = [n for n in self._sources if any(e == n or e.startswith(n + NAMESPACE_SEPARATOR) for e in entries)]
        pending = [n for n in wanted if n not in self._loaded]
        if not pending:
            return {}
        outcomes = await asyncio.gather(*(self._load(n) for n in pending), return_exceptions=True)
        problems: dict[str, str] = {}
        for name, outcome in zip(pending, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if isinstance(outcome, asyncio.CancelledError):
                    raise outcome
                message = str(outcome) or type(outcome).__name__
                if self._sources[name].required:
                    raise ToolSourceError(name, message)
                problems[name] = message
        return problems

    async def _load(self, name: str) -> None:
        running = self._loading.get(name)
        if running is not None:
            await asyncio.shield(running)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._loading[name] = future
        try:
            tools = await self._sources[name].load()
            self.replace_provider(name, tools)
            self._loaded.add(name)
            future.set_result(None)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: a failure is reported to the caller, not as "never retrieved"
            raise
        finally:
            del self._loading[name]

    async def aclose(self) -> None:
        """Stop every source (MCP servers end); their tools leave the registry."""
        for name, source in list(self._sources.items()):
            await source.aclose()
            for tool_name in self._providers.pop(name, []):
                self._tools.pop(tool_name, None)
            self._loaded.discard(name)
            self.version += 1

    async def aclose_tools(self) -> None:
        """Release what the tools built so far hold (the knowledge tool's database connection)."""
        provided = {n for names in self._providers.values() for n in names}  # their sources close them
        for name, t in list(self._tools.items()):
            close = getattr(t, "aclose", None) if name not in provided else None
            if close is not None:
                await close()

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
        """Allow-list entries that admit no available tool (a typo, a disabled built-in). A source not
        loaded yet counts as matching its name and ``<name>__...`` entries."""
        names = self.names()
        pending = [n for n in self._sources if n not in self._loaded]
        return [
            e for e in allow_list
            if not any(allows([e], n) for n in names)
            and not any(e == p or e.startswith(p + NAMESPACE_SEPARATOR) for p in pending)
        ]
