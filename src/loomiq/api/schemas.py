"""The JSON bodies the service answers, as pydantic models: what ``/openapi.json`` documents.

Routes declare these as their response models, so FastAPI validates every answer against the very
schema it publishes. Bodies built by this code forbid unknown members: a field added to a route's
answer without being documented here fails the API's tests (schemathesis checks every answer
against the document) instead of silently changing the contract. A task's stored run result is
read back from the database, so its models allow members they do not list and give every field a
default (results stored by earlier versions stay readable); they are still listed as always present,
which is what this version writes.

Errors are RFC 9457 problem documents (`ProblemDocument`, or `OpenAIProblemDocument` under ``/v1``),
built by `problems`; request bodies are declared by the routes that take them.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from ..agents import AgentState
from ..engine import LifecycleEvent, Priority, TaskStatus
from ..runtime import RunEvent, RunStatus, type_of
from .auth import Role


class _Body(BaseModel):
    """A body this code builds: unknown members are a bug, and every field is always present."""

    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)


class _Stored(BaseModel):
    """A body read back from the database: lenient about what older versions wrote."""

    model_config = ConfigDict(extra="allow", json_schema_serialization_defaults_required=True)


# --- shared -------------------------------------------------------------------------------------


class Usage(_Body):
    """Tokens, summed over every model call."""

    input_tokens: int
    output_tokens: int
    total_tokens: int


class StoredUsage(_Stored):
    """Tokens, as stored with a run result."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0


# --- tasks --------------------------------------------------------------------------------------


class TaskLinks(_Body):
    """Where to read, follow and cancel a task (paths on this server)."""

    self: str = Field(description="GET: the task.")
    events: str = Field(description="GET: its events as SSE.")
    ws: str = Field(description="WebSocket: its events as JSON text frames (not in this document: OpenAPI has no "
                                "WebSockets; see the API description).")
    cancel: str = Field(description="POST: cancel it.")


class FailedOver(_Stored):
    """An agent tried before the one that answered, and why it failed."""

    agent: str = ""
    error: str = ""


class ToolCallBody(_Stored):
    """One tool call an agent made in a step."""

    key: str = Field("", description="Its key: <step>/turn/<t>/call/<i>.")
    name: str = Field("", description="The tool asked for.")
    arguments: dict[str, Any] = Field({}, description="The arguments as the model sent them.")
    result: str = Field("", description="The start of what the model read back.")
    error: str | None = Field(None, description="What went wrong, if anything.")
    error_kind: str | None = Field(None, description="refused, malformed_arguments, invalid_arguments, tool_error, "
                                                     "unavailable, timeout or exception.")
    duration_ms: float = 0.0
    waited_for: list[int] = Field([], description="Earlier calls of its turn it waited for (same resource).")
    status: Literal["finished", "refused"] = Field("finished", description="refused: not allowed, never run.")


class StepBody(_Stored):
    """One agent call of a run, after retries and failover."""

    key: str = Field("", description="The step's key in its strategy (seq/1, par/0, lead...).")
    agent: str = Field("", description="The agent that answered (or was tried last).")
    role: str = ""
    model: str = ""
    output: str = ""
    usage: StoredUsage = StoredUsage()
    cost_usd: float = 0.0
    duration_ms: float = 0.0
    error: str | None = Field(None, description="Set when no agent answered this step.")
    attempts: int = 1
    failed_over_from: list[FailedOver] = Field([], description="Agents tried before, with their errors.")
    offline: bool = False
    tool_calls: list[ToolCallBody] = Field([], description="The tool calls the agent made, in order.")


class RunResultBody(_Stored):
    """A run's full result: output, every step, totals, who answered and who failed."""

    task_id: str = ""
    status: RunStatus = "completed"
    strategy: str = ""
    strategy_reason: str = Field("", description="Why this strategy: auto's reason, or 'chosen by the caller'.")
    output: str = ""
    steps: list[StepBody] = []
    usage: StoredUsage = StoredUsage()
    cost_usd: float = 0.0
    duration_ms: float = 0.0
    answered: list[str] = []
    failed: dict[str, str] = Field({}, description="Agent -> why it failed (failed-over agents included).")
    degraded: bool = False
    error: str | None = None
    notes: list[str] = []
    offline: bool = Field(False, description="True when scripted (offline) agents answered, not a real model.")


class TaskBody(_Body):
    """A durable task: its request, where it is in its lifecycle, and what it produced."""

    id: str
    tenant_id: str
    status: TaskStatus
    prompt: str
    strategy: str
    agents: list[str]
    capabilities: list[str]
    priority: Priority
    after: list[str] = Field(description="Tasks that must complete before this one runs.")
    timeout_s: float | None
    idempotency_key: str | None
    created_at: float = Field(description="Unix time, seconds.")
    started_at: float | None
    finished_at: float | None
    attempts: int = Field(description="Runs started, crash resumptions included.")
    failures: int = Field(description="Runs that ended failed.")
    dead: bool = Field(description="Failed with no retry left (a dead letter).")
    error: str | None
    output: str
    usage: Usage
    cost_usd: float
    cancel_requested: bool
    tools: list[str] | None = Field(description="The tools the run allows (narrowing each agent's allow-list); "
                                                "null: each agent's own.")
    links: TaskLinks


class TaskDetail(TaskBody):
    """A task with its last run's full result (null until a run ended)."""

    result: RunResultBody | None


class TaskPage(_Body):
    """A page of tasks, newest first."""

    tasks: list[TaskBody]
    next_cursor: str | None = Field(description="Pass it back as `cursor` for the next page; null on the last.")


class StrategyStats(_Body):
    """Tasks of one strategy."""

    count: int
    by_status: dict[str, int]
    cost_usd: float


class TaskStats(_Body):
    """The tenant's tasks in numbers."""

    tenant: str
    total: int
    by_status: dict[str, int]
    by_strategy: dict[str, StrategyStats]
    mean_duration_s: float | None = Field(description="Mean run duration of finished tasks; null when none.")
    usage: Usage
    cost_usd: float


EVENT_TYPES: tuple[str, ...] = tuple(
    sorted({type_of(kind) for kind in (*get_args(RunEvent), *get_args(LifecycleEvent))})
)
"""Every type of task event: a run's events and the engine's lifecycle events."""


class TaskEventData(BaseModel):
    """One task event as JSON: an SSE frame's ``data``, a WebSocket text frame. Its own fields
    depend on its ``type``; every event also has ``task_id`` and ``seq``."""

    model_config = ConfigDict(extra="allow", title="TaskEvent")
    type: str = Field(json_schema_extra={"enum": list(EVENT_TYPES)})
    task_id: str
    seq: int = Field(ge=1, description="Its position in the task's log: 1, 2, 3... without gaps.")


def sse_item(data: dict[str, Any] | None = None, *, events: list[str] | None = None) -> dict[str, Any]:
    """The schema of one event of a ``text/event-stream`` response (OpenAPI 3.1 has a streamed
    media type's ``schema`` describe each event; 3.2 would call it ``itemSchema``), whose ``data``
    is JSON described by `data` (``[DONE]`` and other text where `data` is None)."""
    data_schema: dict[str, Any] = {"type": "string"}
    if data is not None:
        data_schema.update(contentMediaType="application/json", contentSchema=data)
    event: dict[str, Any] = {"type": "string"}
    if events is not None:
        event["enum"] = events
    return {
        "type": "object",
        "properties": {
            "id": {"type": "string", "pattern": "^[0-9]+$"},
            "event": event,
            "data": data_schema,
            "retry": {"type": "integer", "minimum": 0},
        },
    }


# --- agents -------------------------------------------------------------------------------------


class AgentBody(_Body):
    """An agent: identity, health, statistics and limits."""

    id: str
    name: str
    provider: str
    model: str
    capabilities: list[str]
    state: AgentState
    offline: bool = Field(description="A scripted agent: its answers do not come from a real model.")
    calls: int
    success_rate: float | None = Field(description="Share of calls that succeeded (null before any call).")
    mean_latency_ms: float
    input_tokens: int
    output_tokens: int
    cost_usd: float
    in_flight: int
    last_error: str | None
    tenant: str | None = Field(description="The tenant that registered the agent over the API (only its runs see "
                                           "it); null: a deployment agent shared by every tenant.")
    enabled: bool
    timeout_s: float
    max_concurrency: int


class AgentList(_Body):
    """Every agent."""

    agents: list[AgentBody]


# --- keys ---------------------------------------------------------------------------------------


class ApiKeyBody(_Body):
    """An API key, without its secret."""

    key_id: str
    tenant: str
    role: Role
    name: str
    created_at: str
    revoked_at: str | None
    active: bool


class NewApiKeyBody(ApiKeyBody):
    """A key just created: `key` is the secret, shown only this once."""

    key: str = Field(description="Send it as X-API-Key or 'Authorization: Bearer <key>'. It is stored hashed.")


class ApiKeyList(_Body):
    """The tenant's keys."""

    keys: list[ApiKeyBody]


# --- health -------------------------------------------------------------------------------------


class Component(_Body):
    """One component's health."""

    status: Literal["ok", "degraded", "failing", "disabled"] = Field(
        description="ok; degraded (works, with a problem); failing (does not work); disabled (not configured).")
    reason: str = Field(description="Why, in words.")
    details: dict[str, Any] | None = Field(description="What was measured (per provider, per MCP server...).")


class Components(_Body):
    """Every component the service depends on."""

    agents: Component = Field(description="Agents per provider: usable ones, open circuit breakers, disabled ones.")
    database: Component = Field(description="The task database answers.")
    workers: Component = Field(description="Workers (embedded or `loomiq worker`) with a recent heartbeat.")
    mcp_servers: Component = Field(description="Each configured MCP server.")
    sandbox: Component = Field(description="bubblewrap can start a sandbox for the code tools.")


class Health(_Body):
    """The process answers; `components` says how each part is."""

    status: Literal["ok", "degraded"] = Field(description="degraded when some component is not ok (still 200).")
    components: Components


class WorkerCheck(_Body):
    """Workers that would run submitted tasks."""

    embedded: bool = Field(description="This process runs a worker.")
    live: int = Field(description="Workers whose heartbeat is recent, in any process.")


class ReadyChecks(_Body):
    """What readiness looked at (database and workers only when tasks are enabled)."""

    orchestrator: str
    agents: int
    usable_agents: int
    database: str | None = Field(None, description="'ok (schema N)', or 'failing: <error type>'.")
    workers: WorkerCheck | None = None


class Ready(_Body):
    """The server can take work."""

    status: Literal["ready"]
    checks: ReadyChecks
    components: Components


class AlertRule(_Body):
    """One alert rule and its state."""

    rule: str
    state: Literal["firing", "inactive"]
    firing_since: float | None = Field(description="Unix time it started firing, or null.")
    severity: Literal["info", "warning", "critical"]
    value: float | None = Field(description="The aggregate at the last evaluation (null: no data in the window).")
    operator: str
    threshold: float
    metric: str
    aggregation: str
    window_s: float
    description: str


class AlertTransition(_Body):
    """A rule started (`alert_firing`) or stopped (`alert_resolved`) firing."""

    id: str
    type: Literal["alert_firing", "alert_resolved"]
    rule: str
    severity: str
    value: float
    threshold: float
    operator: str
    metric: str
    window_s: float
    at: float
    description: str


class Alerts(_Body):
    """The alert rules of loomiq.yaml (`alerts:`) and recent transitions, newest first."""

    configured: bool = Field(description="False when loomiq.yaml has no alert rules.")
    alerts: list[AlertRule]
    events: list[AlertTransition]


# --- problems (RFC 9457) --------------------------------------------------------------------------


class InvalidField(BaseModel):
    """One invalid field of a request."""

    model_config = ConfigDict(populate_by_name=True)
    field: str = Field(description="The field, e.g. `messages[0].role`, `Last-Event-ID`, `cursor`.")
    in_: Literal["body", "query", "path", "header", "cookie"] = Field(alias="in")
    message: str


class ProblemDocument(BaseModel):
    """An RFC 9457 problem document (``application/problem+json``): every error this API answers.

    Extension members appear where they apply; clients must ignore members they do not know."""

    model_config = ConfigDict(extra="allow", title="Problem")
    type: str = Field(description="urn:loomiq:problem:<kind>, e.g. urn:loomiq:problem:not-found.")
    title: str
    status: int
    detail: str = Field(description="What went wrong and what to do about it.")
    instance: str = Field(description="The request's path.")
    errors: list[InvalidField] | None = Field(None, description="422: every invalid field.")
    retry_after_s: int | None = Field(None, description="429: seconds to wait (also in Retry-After).")
    limit_bytes: int | None = Field(None, description="413: the body size limit.")
    error_id: str | None = Field(None, description="500: the id the error was logged under.")
    checks: ReadyChecks | None = Field(None, description="503 from /api/ready: what readiness looked at.")


class OpenAIError(BaseModel):
    """OpenAI's error object, so OpenAI SDKs raise their usual exceptions."""

    message: str
    type: str
    param: str | None
    code: str


class OpenAIProblemDocument(ProblemDocument):
    """A problem document under ``/v1``: also carries OpenAI's ``error`` object."""

    model_config = ConfigDict(title="OpenAIProblem")
    error: OpenAIError
    loomiq: dict[str, Any] | None = Field(None, description="502/504: what ran, who answered, what it cost.")


# --- /v1 (OpenAI-compatible) ------------------------------------------------------------------


class ModelInfo(_Body):
    """An agent or a strategy, usable as ``model``."""

    id: str
    object: Literal["model"]
    created: int
    owned_by: str = Field(description="'loomiq-agent:<provider>' or 'loomiq-strategy'.")


class ModelList(_Body):
    """Every agent id and strategy name."""

    object: Literal["list"]
    data: list[ModelInfo]


class CompletionUsage(_Body):
    """Tokens of the whole run, every agent's steps summed."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class FunctionCallOut(_Body):
    """The function a tool call asks for, with its arguments as JSON text."""

    name: str
    arguments: str


class ToolCallOut(_Body):
    """A tool call the agent's model asks the client to run."""

    id: str
    type: Literal["function"]
    function: FunctionCallOut


class AssistantMessage(_Body):
    """The answer."""

    # `tool_calls` is present only when the model asked for some, as in OpenAI's answers.
    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=False)
    role: Literal["assistant"]
    content: str | None = Field(description="Null when the model only asks for tool calls.")
    refusal: None
    tool_calls: list[ToolCallOut] | None = Field(None, description="With an agent as the model and `tools`: the "
                                                 "calls for the client to run, answered in `tool` messages.")


class Choice(_Body):
    """The only choice (``n`` is 1)."""

    index: int
    message: AssistantMessage
    logprobs: None
    finish_reason: Literal["stop", "length", "tool_calls", "content_filter"]


class LoomiqDetails(_Body):
    """The ``loomiq`` member: what ran, who answered, what it cost, and whether it was offline."""

    task_id: str
    status: str
    strategy: str
    strategy_reason: str
    answered: list[str]
    failed: dict[str, str]
    degraded: bool
    cost_usd: float
    duration_ms: float
    offline: bool


class ChatCompletion(_Body):
    """OpenAI's ``chat.completion`` object, plus the ``loomiq`` member."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    system_fingerprint: None
    choices: list[Choice]
    usage: CompletionUsage
    loomiq: LoomiqDetails
