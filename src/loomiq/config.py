"""`loomiq.yaml`: the agents a process runs with, the settings of the built-in tools, and the MCP
servers whose tools agents may use (``mcp_servers:``). Validated
here, at the edge, with pydantic; the core only ever sees `AgentConfig` dataclasses, built `Agent`s
and a `ToolRegistry`.

Any problem stops loading with one `ConfigError` line naming the file, the agent or tool, and the field.
With no file at all, `default_agents()` decides: a provider whose key (or server) is configured in
the environment, else the offline scripted agents.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .agents import Agent, AgentConfig, RetryPolicy
from .models import PROVIDERS, ModelSpec, Pricing, create_model
from .models.providers import BASE_URL_ENV
from .tools import ToolRegistry, ToolSettingsError, check_settings
from .tools.mcp import DEFAULT_REDIRECT_URI, EnvValue, McpServerSpec, OAuthSpec
from .tools.registry import builtin_classes

_TOOL_ENTRY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

CONFIG_ENV = "LOOMIQ_CONFIG"
DEFAULT_FILE = "loomiq.yaml"


class ConfigError(Exception):
    """A configuration problem, in one line: file, agent, field, and what is wrong."""


class _Strict(BaseModel):
    # Every number is finite and bounded: a config (or an agent registered over the API) cannot
    # carry 10^23 or Infinity into a semaphore, a sleep, a provider request or a stored row.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


DAY_S = 86_400.0
"""The upper bound of every duration in the config, in seconds."""

# The bounded numbers of an agent, shared with the API's agent PATCH body (one source of limits).
TimeoutS = Annotated[float, Field(gt=0, le=DAY_S, description="Seconds one model call may take.")]
MaxConcurrency = Annotated[int, Field(ge=1, le=10_000, description="Calls the agent runs at once.")]
Temperature = Annotated[float, Field(ge=0, le=2)]
MaxTokens = Annotated[int, Field(ge=1, le=10_000_000)]
BreakerThreshold = Annotated[int, Field(ge=1, le=10_000, description="Failures in a row that open the circuit.")]
BreakerCooldownS = Annotated[float, Field(ge=0, le=DAY_S, description="Seconds an open circuit waits to probe.")]


class RetrySection(_Strict):
    """`retry:` of an agent."""

    max_attempts: int = Field(3, ge=1, le=20)
    base_delay_s: float = Field(0.25, ge=0, le=3600)
    max_delay_s: float = Field(8.0, ge=0, le=3600)
    max_retry_after_s: float = Field(30.0, ge=0, le=3600)


CallIndex = Annotated[int, Field(ge=0, le=1_000_000)]


class ScriptedSection(_Strict):
    """`scripted:` options of a scripted agent: replies, latency, failures by call index."""

    replies: list[str] | None = None
    latency_s: float = Field(0.0, ge=0, le=3600)
    failures: dict[CallIndex, Literal["timeout", "rate_limit", "server_error", "malformed_tool_call"]] = {}
    persona: str = ""


class AgentSection(_Strict):
    """One entry of `agents:` in loomiq.yaml."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"id": "fast", "provider": "groq", "model": "llama-3.1-8b-instant", "capabilities": ["analysis", "general"]},
        {"id": "offline", "provider": "scripted", "model": "scripted", "capabilities": ["general"]},
    ]})

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    name: str = ""
    provider: str = Field(json_schema_extra={"enum": list(PROVIDERS)})
    model: str = Field(min_length=1)
    base_url: str | None = None
    api_key_env: str | None = None
    capabilities: list[str] = []
    input_price_per_token: float | None = Field(None, ge=0, le=1)
    output_price_per_token: float | None = Field(None, ge=0, le=1)
    timeout_s: TimeoutS = 60.0
    max_concurrency: MaxConcurrency = 4
    system_prompt: str = ""
    temperature: Temperature | None = None
    max_tokens: MaxTokens | None = None
    retry: RetrySection = RetrySection()
    breaker_threshold: BreakerThreshold = 5
    breaker_cooldown_s: BreakerCooldownS = 30.0
    scripted: ScriptedSection | None = None
    tools: list[str] = []
    max_tool_rounds: int = Field(8, ge=0, le=100)

    @field_validator("tools")
    @classmethod
    def _tool_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _TOOL_ENTRY.match(name):
                raise ValueError(f"{name!r} is not a tool or provider name (letters, digits, '_' or '-', 1 to 64)")
        return value

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        problem = None if value is None else url_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        if value not in PROVIDERS:
            raise ValueError(f"unknown provider {value!r} (known: {', '.join(PROVIDERS)})")
        return value


_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_SECRET_KEY = re.compile(r"(?i)(token|secret|password|passwd|api[_-]?key|credential|auth)")


class FromEnv(_Strict):
    """A value read from an environment variable when the server starts: ``{env: NAME, prefix: "Bearer "}``."""

    env: str = Field(pattern=_ENV_NAME)
    prefix: str = ""


class OAuthSection(_Strict):
    """`oauth:` of an HTTP MCP server: ``oauth: {}`` (register dynamically) or a pre-registered client."""

    client_id: str | None = Field(None, min_length=1)
    client_secret: FromEnv | None = None
    scope: str | None = None
    redirect_uri: str = Field(DEFAULT_REDIRECT_URI, pattern=r"^http://(127\.0\.0\.1|localhost|\[::1\]):\d+/")
    client_metadata_url: str | None = Field(None, pattern=r"^https://[^/]+/.+")

    def spec(self) -> OAuthSpec:
        """The inert spec."""
        secret = EnvValue(self.client_secret.env, self.client_secret.prefix) if self.client_secret else None
        return OAuthSpec(self.client_id, secret, self.scope, self.redirect_uri, self.client_metadata_url)


class McpServerSection(_Strict):
    """One entry of `mcp_servers:` in loomiq.yaml: a stdio command or a streamable-HTTP URL."""

    name: str = Field(pattern=r"^[A-Za-z0-9-]+(_[A-Za-z0-9-]+)*$", max_length=40)
    command: str | None = Field(None, min_length=1)
    args: list[str] = []
    env: dict[str, str | FromEnv] = {}
    cwd: str | None = None
    url: str | None = Field(None, pattern=r"^https?://")
    headers: dict[str, FromEnv | str] = {}
    timeout_s: float = Field(30.0, gt=0, le=3600)
    start_timeout_s: float = Field(60.0, gt=0, le=3600)
    required: bool = True
    oauth: OAuthSection | None = None

    @field_validator("headers")
    @classmethod
    def _headers_from_env(cls, value: dict[str, FromEnv | str]) -> dict[str, FromEnv | str]:
        for key, item in value.items():
            if not isinstance(item, FromEnv):
                raise ValueError(
                    f"header {key!r}: write {{env: VARIABLE, prefix: \"...\"}}; header values come from "
                    "environment variables, never from this file"
                )
        return value

    @field_validator("env")
    @classmethod
    def _no_literal_secret(cls, value: dict[str, str | FromEnv]) -> dict[str, str | FromEnv]:
        for key, item in value.items():
            if isinstance(item, str) and _SECRET_KEY.search(key):
                raise ValueError(
                    f"env {key!r} looks like a secret: write {{env: VARIABLE}} to read it from the environment "
                    "instead of this file"
                )
        return value

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerSection:
        if (self.command is None) == (self.url is None):
            raise ValueError("give either 'command' (a stdio server) or 'url' (a streamable-HTTP server)")
        if self.url is not None and (self.args or self.env or self.cwd):
            raise ValueError("'args', 'env' and 'cwd' are for stdio servers ('command'), not 'url'")
        if self.command is not None and (self.headers or self.oauth):
            raise ValueError("'headers' and 'oauth' are for HTTP servers ('url'), not 'command'")
        return self

    def spec(self, base: Path) -> McpServerSpec:
        """The inert spec; a relative `cwd` is relative to the config file's folder (`base`)."""
        env = {k: EnvValue(v.env, v.prefix) if isinstance(v, FromEnv) else v for k, v in self.env.items()}
        headers = {k: EnvValue(v.env, v.prefix) for k, v in self.headers.items() if isinstance(v, FromEnv)}
        cwd = (base / self.cwd) if self.cwd is not None else None
        return McpServerSpec(self.name, self.command, tuple(self.args), env, cwd, self.url, headers, self.timeout_s,
                             self.required, self.start_timeout_s, self.oauth.spec() if self.oauth else None)


SERIES_SELECTOR = r'\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{\s*(?:[a-zA-Z_][a-zA-Z0-9_]*\s*=\s*"[^"]*"\s*,?\s*)*\})?\s*'
"""A series and optional exact label matchers: ``loomiq_runs_total{status="failed"}``."""


def parse_duration(text: str | float) -> float:
    """Seconds of ``90``, ``90s``, ``5m``, ``2h``, ``1d`` or ``250ms``. Raises ValueError."""
    if isinstance(text, int | float):
        return float(text)
    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$", text)
    if m is None:
        raise ValueError(f"{text!r} is not a duration like 30s, 5m, 2h or 1d")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


class AlertRuleSection(_Strict):
    """One rule of `alerts.rules`: fires while `aggregation(metric[/per]) over window  operator  threshold`."""

    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")
    metric: str = Field(min_length=1, max_length=500, description="a loomiq_* series, optionally {label=\"v\",...}")
    per: str | None = Field(None, max_length=500, description="a denominator series: the rule reads metric/per")
    aggregation: Literal["increase", "rate", "avg", "min", "max", "last"] = "last"
    window: str | float = "5m"
    operator: Literal[">", ">=", "<", "<=", "==", "!="] = ">"
    threshold: float
    severity: Literal["info", "warning", "critical"] = "warning"
    description: str = Field("", max_length=2000)

    @field_validator("metric", "per")
    @classmethod
    def _series(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(SERIES_SELECTOR, v):
            raise ValueError(f'{v!r} is not a series like loomiq_runs_total or loomiq_runs_total{{status="failed"}}')
        return v

    @field_validator("window")
    @classmethod
    def _window(cls, v: str | float) -> str | float:
        seconds = parse_duration(v)
        if not 0 < seconds <= 7 * 86400:
            raise ValueError("the window must be between 1s and 7d")
        return v


class AlertWebhookSection(_Strict):
    """Where firing and resolved alerts are POSTed (JSON), retried with backoff until a 2xx."""

    url: str = Field(min_length=1, max_length=2000, pattern=r"^https?://")
    headers_env: dict[str, str] = Field({}, description="header name -> environment variable holding its value")
    max_attempts: int = Field(5, ge=1, le=20)
    timeout_s: float = Field(5.0, gt=0, le=120)


class AlertsSection(_Strict):
    """`alerts:` in loomiq.yaml: rules the server evaluates, and webhooks that hear about them."""

    evaluate_every: str | float = "15s"
    rules: list[AlertRuleSection] = []
    webhooks: list[AlertWebhookSection] = []

    @field_validator("evaluate_every")
    @classmethod
    def _every(cls, v: str | float) -> str | float:
        if not 0.05 <= parse_duration(v) <= 3600:
            raise ValueError("evaluate_every must be between 50ms and 1h")
        return v


class SecretsSection(_Strict):
    """Which environment variables agents registered over the API may use as ``api_key_env``, per
    tenant (``secrets: {tenants: {acme: [ACME_OPENAI_KEY]}}``). Nothing else is reachable: not the
    deployment's own provider keys, not any other variable of the server."""

    tenants: dict[str, list[Annotated[str, Field(pattern=_ENV_NAME)]]] = {}


class ApiAgentsSection(_Strict):
    """Where agents registered over the API may connect: their ``base_url`` must pass the SSRF guard
    (`loomiq.tools.ssrf`: no loopback, private, link-local or metadata address) unless its host is in
    `allowed_hosts` or its address in `allowed_networks`."""

    allowed_hosts: list[str] = []
    allowed_networks: list[str] = []

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        from .tools.ssrf import AddressPolicy

        AddressPolicy.from_strings(allowed_networks=value)  # ValueError naming a bad network
        return value


class ConfigFile(_Strict):
    """The whole loomiq.yaml."""

    agents: list[AgentSection] = Field(min_length=1)
    tools: dict[str, dict[str, Any] | None] = {}
    """Settings of the built-in tools by name (``enabled`` and the tool's own); checked by the tools."""
    mcp_servers: list[McpServerSection] = []
    """MCP servers whose tools join the registry as ``<name>__<tool>``."""
    alerts: AlertsSection | None = None
    """Alert rules evaluated by `loomiq serve`, and their webhooks."""
    secrets: SecretsSection = SecretsSection()
    """The key variables each tenant's API-registered agents may use."""
    api_agents: ApiAgentsSection = ApiAgentsSection()
    """Private hosts and networks API-registered agents may nevertheless reach."""


def find_config(path: Path | None = None) -> Path | None:
    """The config file to use: `path`, else `$LOOMIQ_CONFIG`, else `./loomiq.yaml` if it exists."""
    if path is not None:
        return path
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    local = Path.cwd() / DEFAULT_FILE
    return local if local.exists() else None


def load_agents(path: Path | None = None) -> list[Agent]:
    """Build the agents from the config file, or `default_agents()` if there is none."""
    found = find_config(path)
    if found is None:
        return default_agents()
    return [build_agent(section, found.name) for section in parse_config(found).agents]


def parse_config(path: Path) -> ConfigFile:
    """Read and validate a config file. Raises `ConfigError` in one line."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path.name}: bad YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path.name}: expected a mapping with an 'agents' list at the top")
    try:
        config = ConfigFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(path.name, data, exc)) from None
    seen: set[str] = set()
    for agent in config.agents:
        if agent.id in seen:
            raise ConfigError(f"{path.name}: agent {agent.id!r}: field 'id': duplicate id (another agent has it): "
                              "give each agent its own id")
        seen.add(agent.id)
    names: set[str] = set()
    builtins = builtin_classes()
    for server in config.mcp_servers:
        if server.name in names:
            raise ConfigError(f"{path.name}: MCP server {server.name!r}: field 'name': duplicate name (another "
                              "server has it): give each server its own name")
        if server.name in builtins:
            raise ConfigError(f"{path.name}: MCP server {server.name!r}: field 'name': a built-in tool has that name")
        names.add(server.name)
    if config.tools:
        try:
            check_settings(tool_settings(config))
        except ToolSettingsError as exc:
            message = str(exc).removeprefix(f"tool {exc.tool!r}: ").replace("setting '", "field '", 1)
            raise ConfigError(f"{path.name}: tool {exc.tool!r}: {message}") from None
    return config


def load_alerts(path: Path | None = None) -> AlertsSection | None:
    """The `alerts:` section of the config file (`find_config`), or None. Raises `ConfigError`."""
    found = find_config(path)
    return parse_config(found).alerts if found is not None else None


def load_tenant_agent_policy(path: Path | None = None) -> tuple[SecretsSection, ApiAgentsSection]:
    """The ``secrets:`` and ``api_agents:`` sections of the config file (`find_config`); empty ones
    (no secret allowed, no private host) when there is no file. Raises `ConfigError`."""
    found = find_config(path)
    if found is None:
        return SecretsSection(), ApiAgentsSection()
    config = parse_config(found)
    return config.secrets, config.api_agents


def tool_settings(config: ConfigFile) -> dict[str, dict[str, Any]]:
    """The ``tools:`` section, an empty mapping for a tool listed without settings."""
    return {name: dict(entry or {}) for name, entry in config.tools.items()}


def load_tools(path: Path | None = None) -> ToolRegistry:
    """The `ToolRegistry` of the config file (built-ins configured by its ``tools:`` section, its MCP
    servers as sources, not started yet), or of the built-ins' defaults when there is no file.
    Close it (`ToolRegistry.aclose`) to stop the MCP servers it started."""
    found = find_config(path)
    if found is None:
        return ToolRegistry()
    config = parse_config(found)
    registry = ToolRegistry(settings=tool_settings(config))
    if config.mcp_servers:
        from .tools.mcp.source import McpToolSource  # the mcp SDK: only where a server is configured

        for spec in mcp_servers(config, found):
            registry.add_source(McpToolSource(spec))
    return registry


def mcp_servers(config: ConfigFile, path: Path) -> list[McpServerSpec]:
    """The MCP servers of a parsed config file."""
    base = path.resolve().parent
    return [server.spec(base) for server in config.mcp_servers]


def _describe(file: str, data: dict[str, Any], exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = list(err["loc"])
    where = ""
    if len(loc) >= 2 and loc[0] == "agents" and isinstance(loc[1], int):
        agents = data.get("agents") or []
        entry = agents[loc[1]] if loc[1] < len(agents) else {}
        ident = entry.get("id") if isinstance(entry, dict) else None
        where = f"agent {ident!r}: " if ident else f"agent #{loc[1] + 1}: "
        loc = loc[2:]
    elif len(loc) >= 2 and loc[0] == "mcp_servers" and isinstance(loc[1], int):
        servers = data.get("mcp_servers") or []
        entry = servers[loc[1]] if loc[1] < len(servers) else {}
        ident = entry.get("name") if isinstance(entry, dict) else None
        where = f"MCP server {ident!r}: " if ident else f"MCP server #{loc[1] + 1}: "
        loc = [p for p in loc[2:] if p not in ("FromEnv", "str")][:2]
        if not loc:
            return f"{file}: {where}{err['msg'].removeprefix('Value error, ')}"
    elif len(loc) >= 2 and loc[0] == "tools":
        where = f"tool {loc[1]!r}: "
        loc = loc[2:]
        if not loc:
            return f"{file}: {where}expected a mapping of settings"
    field = ".".join(str(p) for p in loc) or "agents"
    message = err["msg"].removeprefix("Value error, ")
    if field == "agents" and not where and err["type"] in ("missing", "too_short"):
        message = ("the file lists no agent: add at least one under 'agents:' (or remove the file to use the "
                   "built-in agents)")
    return f"{file}: {where}field '{field}': {message}"


def url_problem(value: str) -> str | None:
    """What is wrong with `value` as a provider's base URL (an http(s) URL with a host), or None."""
    if any(c.isspace() or not c.isprintable() for c in value):
        return "must be an http:// or https:// URL without spaces or control characters"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not 0-65535
    except ValueError as exc:
        return f"is not a URL ({exc}); use one like http://127.0.0.1:11434/v1"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL with a host, like http://127.0.0.1:11434/v1"
    return None


# The variables a provider's base URL comes from when the config names none (the openai SDK itself
# reads OPENAI_BASE_URL).
_BASE_URL_VARIABLES = {**BASE_URL_ENV, "openai": "OPENAI_BASE_URL"}

AGENT_FIELDS_CHANGED_IN_PLACE = frozenset({
    "name", "capabilities", "timeout_s", "max_concurrency", "system_prompt", "temperature", "max_tokens", "retry",
    "breaker_threshold", "breaker_cooldown_s",
})
"""The fields of an `AgentSection` an agent can change without a new model connection (what
``PATCH /api/agents/{id}`` takes, besides ``enabled``); the others (provider, model, endpoint, key
variable, prices, tools...) are bound to the connection."""


def reconfigured(agent: Agent, section: AgentSection) -> AgentConfig:
    """`agent`'s config with the `AGENT_FIELDS_CHANGED_IN_PLACE` of `section` (its model connection as is)."""
    fields = {k: getattr(section, k) for k in AGENT_FIELDS_CHANGED_IN_PLACE - {"capabilities", "retry"}}
    return replace(agent.config, **fields, capabilities=frozenset(section.capabilities),
                   retry=RetryPolicy(**section.retry.model_dump()))


def build_agent(section: AgentSection, file: str = DEFAULT_FILE) -> Agent:
    """An `Agent` from one validated config entry; its key is read from the environment here."""
    preset = PROVIDERS[section.provider]
    if preset.needs_base_url and not section.base_url:
        raise ConfigError(
            f"{file}: agent {section.id!r}: field 'base_url': required for provider {section.provider!r}"
        )
    variable = _BASE_URL_VARIABLES.get(section.provider)
    if not section.base_url and variable and os.environ.get(variable):
        problem = url_problem(os.environ[variable])
        if problem is not None:
            raise ConfigError(f"{file}: agent {section.id!r}: environment variable {variable} (its base URL): "
                              f"{problem}; fix or unset {variable}, or set base_url in the config")
    key_env = section.api_key_env or preset.key_env
    api_key = os.environ.get(key_env) if key_env else None
    if key_env and preset.needs_key and not api_key:
        raise ConfigError(
            f"{file}: agent {section.id!r}: field 'api_key_env': environment variable {key_env} is not set"
        )
    if section.api_key_env and not api_key:
        raise ConfigError(
            f"{file}: agent {section.id!r}: field 'api_key_env': environment variable {key_env} is not set"
        )
    priced = section.input_price_per_token is not None or section.output_price_per_token is not None
    pricing = Pricing(section.input_price_per_token, section.output_price_per_token) if priced else None
    scripted = None
    if section.scripted is not None:
        scripted = section.scripted.model_dump(exclude_none=True)
        if not scripted.get("persona"):
            scripted["persona"] = section.name or section.id
    model = create_model(ModelSpec(section.provider, section.model, section.base_url, api_key, pricing, scripted))
    config = AgentConfig(
        id=section.id,
        name=section.name,
        provider=section.provider,
        model=section.model,
        base_url=section.base_url,
        api_key_env=key_env,
        capabilities=frozenset(section.capabilities),
        input_price_per_token=section.input_price_per_token,
        output_price_per_token=section.output_price_per_token,
        timeout_s=section.timeout_s,
        max_concurrency=section.max_concurrency,
        system_prompt=section.system_prompt,
        temperature=section.temperature,
        max_tokens=section.max_tokens,
        retry=RetryPolicy(**section.retry.model_dump()),
        breaker_threshold=section.breaker_threshold,
        breaker_cooldown_s=section.breaker_cooldown_s,
        tools=tuple(section.tools),
        max_tool_rounds=section.max_tool_rounds,
    )
    return Agent(config, model)


# The default team: three analysts with different angles and a lead who synthesises.
_TEAM = (
    ("analyst", "Analyst", ("analysis", "general", "writing"),
     "You are a careful analyst. Answer with the key facts and your reasoning."),
    ("critic", "Critic", ("analysis", "general", "review"),
     "You are a critic. Look for risks, gaps and counter-arguments, then answer."),
    ("pragmatist", "Pragmatist", ("analysis", "general", "coding"),
     "You are a pragmatic engineer. Answer with what to do and what it costs."),
    ("lead", "Lead", ("analysis", "general", "synthesis", "review"),
     "You are the lead. Weigh the analyses you are given and decide."),
)

DEFAULT_AGENT_TOOLS = ("python", "shell", "javascript", "files", "knowledge", "web_search", "http_fetch")
"""The default agents' allow-list: the built-ins (named, not imported: they load on first use)."""

# Provider chosen when no config file exists, first match wins: (provider, key variable, model).
_DEFAULT_PROVIDERS = (
    ("openai", "OPENAI_API_KEY", "gpt-4o-mini"),
    ("anthropic", "ANTHROPIC_API_KEY", "claude-3-5-haiku-latest"),
    ("groq", "GROQ_API_KEY", "llama-3.1-8b-instant"),
    ("mistral", "MISTRAL_API_KEY", "mistral-small-latest"),
    ("ollama", "OLLAMA_BASE_URL", "llama3.2"),
)


def default_provider() -> tuple[str, str]:
    """(provider, model) for the default agents: the first configured provider, else scripted."""
    for provider, env, model in _DEFAULT_PROVIDERS:
        if os.environ.get(env):
            return provider, os.environ.get("LOOMIQ_DEFAULT_MODEL", model)
    return "scripted", "scripted"


def default_agents() -> list[Agent]:
    """The built-in team of four, on the configured provider or, with none, offline scripted."""
    provider, model = default_provider()
    agents = []
    for ident, name, caps, system in _TEAM:
        section = AgentSection(
            id=ident, name=name, provider=provider, model=model, capabilities=list(caps), system_prompt=system,
            scripted=ScriptedSection(persona=name) if provider == "scripted" else None,
        )
        agent = build_agent(section, "default agents")
        # Offered only to runs that name tools (`--tools python`): a plain run stays tool-free.
        config = replace(agent.config, tools=DEFAULT_AGENT_TOOLS, tools_on_request=True)
        agents.append(Agent(config, agent.model))
    return agents
