"""The edge: plain data (from YAML, JSON or the builder) -> pydantic models -> the frozen definition.

Pydantic checks shapes and types; each of its errors becomes one `Issue` whose path is the data's
(the discriminator tag pydantic adds to locations is dropped), so the loader can give it a line and
column. Short forms are normalised before pydantic sees them (``needs: a`` is ``needs: [a]``,
``retry: 3`` is ``retry: {max_attempts: 3}``, an input ``version: string`` is ``{type: string}``), so
every field has one type and one clear message. Expressions are parsed here, once.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import Path
from .errors import ValidationIssue as Issue
from .expressions import ExpressionError, Template, parse_condition, parse_template
from .model import (
    NODE_KINDS,
    AnyNode,
    ApprovalNode,
    Approvers,
    DecisionCase,
    DecisionNode,
    ErrorHandlerNode,
    Escalation,
    InputSpec,
    NodeId,
    ParallelNode,
    RetrySpec,
    SubworkflowNode,
    TaskNode,
    TaskOptions,
    WorkflowDefinition,
    parse_duration,
)

__all__ = ["definition_from_data"]

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
WORKFLOW_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
InputTypeName = Literal["string", "integer", "number", "boolean", "list", "object"]


def _duration(value: Any) -> float | None:
    if value is None:
        return None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError(f"a duration is text like 72h, 30m or 45s, not {type(value).__name__}")
    return parse_duration(value)


def _names(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class RetryModel(_Strict):
    max_attempts: int = Field(3, ge=1, le=1000)
    backoff: float = 1.0
    factor: float = Field(2.0, ge=1.0, le=10.0)
    max_backoff: float = 300.0

    _durations = field_validator("backoff", "max_backoff", mode="before")(_duration)


def _retry_short(value: Any) -> Any:
    return {"max_attempts": value} if isinstance(value, int) and not isinstance(value, bool) else value


class TaskFields(_Strict):
    prompt: str
    strategy: str = "auto"
    agents: list[str] = Field(default_factory=list)
    capabilities: list[str] = Field(default_factory=list)
    tools: list[str] = Field(default_factory=list)
    timeout: float | None = None
    retry: RetryModel | None = None
    output_schema: dict[str, Any] | None = None

    _timeout = field_validator("timeout", mode="before")(_duration)
    _retry = field_validator("retry", mode="before")(_retry_short)
    _lists = field_validator("agents", "capabilities", "tools", mode="before")(_names)


class NodeCommon(_Strict):
    needs: list[str] = Field(default_factory=list)
    if_: str | None = Field(None, alias="if")
    on: Literal["success", "failure", "always"] = "success"
    description: str = ""

    _needs = field_validator("needs", mode="before")(_names)

    @field_validator("if_", mode="before")
    @classmethod
    def _bool_condition(cls, value: Any) -> Any:
        return ("true" if value else "false") if isinstance(value, bool) else value


class TaskNodeModel(NodeCommon, TaskFields):
    kind: Literal["task"]


class CaseModel(_Strict):
    when: str
    value: str | None = None
    then: list[str] = Field(default_factory=list)

    _then = field_validator("then", mode="before")(_names)

    @field_validator("when", mode="before")
    @classmethod
    def _bool_condition(cls, value: Any) -> Any:
        return ("true" if value else "false") if isinstance(value, bool) else value


class DefaultCaseModel(_Strict):
    value: str | None = None
    then: list[str] = Field(default_factory=list)

    _then = field_validator("then", mode="before")(_names)


class DecisionNodeModel(NodeCommon):
    kind: Literal["decision"]
    cases: list[CaseModel] = Field(min_length=1)
    default: DefaultCaseModel | None = None

    @field_validator("default", mode="before")
    @classmethod
    def _default_short(cls, value: Any) -> Any:
        return {"value": value} if isinstance(value, str) else value


class ParallelNodeModel(NodeCommon):
    kind: Literal["parallel"]
    for_each: str | list[Any] | None = None
    matrix: dict[str, str | list[Any]] | None = None
    task: TaskFields
    join: Literal["all", "any"] = "all"
    max_parallel: int | None = Field(None, ge=1)


def _require(value: Any) -> Any:
    if value in ("any", "all"):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ValueError("require is 'any', 'all' or a number of approvers (1 or more)")


class EscalationModel(_Strict):
    roles: list[str] = Field(default_factory=list)
    subjects: list[str] = Field(default_factory=list)
    require: Any = "any"
    timeout: float | None = None
    on_timeout: Literal["reject", "fail"] = "reject"

    _timeout = field_validator("timeout", mode="before")(_duration)
    _require = field_validator("require")(_require)
    _lists = field_validator("roles", "subjects", mode="before")(_names)


class ApproversModel(_Strict):
    roles: list[str] = Field(default_factory=list)
    subjects: list[str] = Field(default_factory=list)

    _lists = field_validator("roles", "subjects", mode="before")(_names)


class ApprovalNodeModel(NodeCommon):
    kind: Literal["approval"]
    message: str
    approvers: ApproversModel
    require: Any = "any"
    timeout: float | None = None
    on_timeout: Literal["reject", "escalate", "fail"] = "reject"
    escalate_to: EscalationModel | None = None

    _timeout = field_validator("timeout", mode="before")(_duration)
    _require = field_validator("require")(_require)


class ErrorHandlerNodeModel(NodeCommon):
    kind: Literal["error_handler"]
    handles: list[str] = Field(default_factory=list)
    action: Literal["retry", "compensate", "route", "fail"]
    retry: RetryModel | None = None
    prompt: str | None = None
    strategy: str = "auto"
    agents: list[str] = Field(default_factory=list)
    capabilities: list[str] = Field(default_factory=list)
    tools: list[str] = Field(default_factory=list)
    timeout: float | None = None
    output_schema: dict[str, Any] | None = None
    message: str | None = None

    _timeout = field_validator("timeout", mode="before")(_duration)
    _retry = field_validator("retry", mode="before")(_retry_short)
    _lists = field_validator("handles", "agents", "capabilities", "tools", mode="before")(_names)


class SubworkflowNodeModel(NodeCommon):
    kind: Literal["subworkflow"]
    workflow: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    timeout: float | None = None
    retry: RetryModel | None = None

    _timeout = field_validator("timeout", mode="before")(_duration)
    _retry = field_validator("retry", mode="before")(_retry_short)


NodeModel = Annotated[
    TaskNodeModel | DecisionNodeModel | ParallelNodeModel | ApprovalNodeModel | ErrorHandlerNodeModel
    | SubworkflowNodeModel,
    Field(discriminator="kind"),
]


class InputModel(_Strict):
    type: InputTypeName = "string"
    default: Any = None
    required: bool | None = None
    description: str = ""
    enum: list[Any] | None = None
    items: InputTypeName | None = None


class WorkflowModel(_Strict):
    name: str = Field(pattern=WORKFLOW_NAME_PATTERN)
    description: str = ""
    inputs: dict[str, InputModel] = Field(default_factory=dict)
    vars: dict[str, Any] = Field(default_factory=dict)
    nodes: dict[str, NodeModel] = Field(min_length=1)
    outputs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("inputs", mode="before")
    @classmethod
    def _input_short(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: {"type": v} if isinstance(v, str) else {} if v is None else v for k, v in value.items()}
        return value


_MODELS: dict[str, type[BaseModel]] = {
    "task": TaskNodeModel, "decision": DecisionNodeModel, "parallel": ParallelNodeModel,
    "approval": ApprovalNodeModel, "error_handler": ErrorHandlerNodeModel, "subworkflow": SubworkflowNodeModel,
}


def _model_at(loc: Path) -> type[BaseModel] | None:
    """The pydantic model whose field the location ends in (for 'did you mean' suggestions)."""
    if len(loc) >= 3 and loc[0] == "nodes":
        model = _MODELS.get(str(loc[2])) if len(loc) > 3 else None
        if model is not None and len(loc) == 5 and loc[3] in ("task", "approvers", "escalate_to", "retry"):
            sub: dict[str, type[BaseModel]] = {"task": TaskFields, "approvers": ApproversModel,
                                               "escalate_to": EscalationModel, "retry": RetryModel}
            return sub[str(loc[3])]
        return model if len(loc) == 4 else None
    if len(loc) == 1:
        return WorkflowModel
    if len(loc) == 3 and loc[0] == "inputs":
        return InputModel
    return None


def _issue_from_error(error: Any) -> Issue:
    loc: Path = tuple(error["loc"])
    model = _model_at(loc)
    # Pydantic puts the discriminator's tag in a node's location; the data has no such key.
    path = loc[:2] + loc[3:] if len(loc) > 2 and loc[0] == "nodes" and loc[2] in NODE_KINDS else loc
    kind, msg = error["type"], str(error["msg"])
    where = ".".join(str(p) for p in path)
    if kind == "missing":
        return Issue(f"{'.'.join(map(str, path[:-1])) or 'workflow'}: missing key '{path[-1]}'", path[:-1])
    if kind == "extra_forbidden":
        known = [f.alias or name for name, f in model.model_fields.items()] if model else []
        close = difflib.get_close_matches(str(path[-1]), known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return Issue(f"{where}: unknown key '{path[-1]}'{hint}", path, at_key=True)
    if kind == "union_tag_invalid":
        tag = error.get("ctx", {}).get("tag")
        return Issue(f"{where}: unknown node kind '{tag}' (kinds: {', '.join(NODE_KINDS)})", (*path, "kind"))
    if kind == "union_tag_not_found":
        return Issue(f"{where}: missing key 'kind' (one of {', '.join(NODE_KINDS)})", path)
    if kind == "string_pattern_mismatch" and path == ("name",):
        msg = "a workflow name is letters, digits, '.', '_' and '-', starting with a letter or digit"
    msg = re.sub(r"^(Value error|Assertion failed), ", "", msg)
    msg = msg.replace("Input should be", "should be").replace("Dictionary", "a mapping")
    return Issue(f"{where}: {msg}", path)


class _Converter:
    """Turns validated pydantic models into the frozen definition, parsing every expression."""

    def __init__(self) -> None:
        self.issues: list[Issue] = []

    def template(self, text: str, path: Path) -> Template:
        try:
            return parse_template(text)
        except ExpressionError as exc:
            self.issues.append(Issue(f"{_dotted(path)}: bad expression: {exc.message}", path, offset=exc.pos))
            return Template(text, (text,))

    def condition(self, text: str | None, path: Path) -> Any:
        if text is None:
            return None
        try:
            return parse_condition(text)
        except ExpressionError as exc:
            self.issues.append(Issue(f"{_dotted(path)}: bad expression: {exc.message}", path, offset=exc.pos))
            return None

    def value(self, raw: Any, path: Path) -> Any:
        if isinstance(raw, str):
            return self.template(raw, path) if "${{" in raw else raw
        if isinstance(raw, list | tuple):
            return tuple(self.value(v, (*path, i)) for i, v in enumerate(raw))
        if isinstance(raw, dict):
            return {k: self.value(v, (*path, k)) for k, v in raw.items()}
        return raw

    def retry(self, model: RetryModel | None) -> RetrySpec | None:
        if model is None:
            return None
        return RetrySpec(max_attempts=model.max_attempts, backoff_s=model.backoff, factor=model.factor,
                         max_backoff_s=model.max_backoff)

    def task(self, m: TaskFields | ErrorHandlerNodeModel, path: Path, retry: RetryModel | None) -> TaskOptions:
        assert m.prompt is not None
        return TaskOptions(
            prompt=self.template(m.prompt, (*path, "prompt")), strategy=m.strategy, agents=tuple(m.agents),
            capabilities=tuple(m.capabilities), tools=tuple(m.tools), timeout_s=m.timeout,
            retry=self.retry(retry), output_schema=m.output_schema,
        )

    def node(self, node_id: str, m: Any) -> AnyNode:
        path: Path = ("nodes", node_id)
        common = {"id": NodeId(node_id), "needs": tuple(NodeId(n) for n in m.needs),
                  "if_": self.condition(m.if_, (*path, "if")), "on": m.on, "description": m.description}
        if isinstance(m, TaskNodeModel):
            return TaskNode(**common, task=self.task(m, path, m.retry))
        if isinstance(m, DecisionNodeModel):
            cases = tuple(
                DecisionCase(when=self.condition(c.when, (*path, "cases", i, "when")),
                             value=c.value if c.value is not None else (c.then[0] if c.then else f"case{i + 1}"),
                             then=tuple(NodeId(t) for t in c.then))
                for i, c in enumerate(m.cases))
            default = None
            if m.default is not None:
                d = m.default
                default = DecisionCase(when=None, value=d.value if d.value is not None else (
                    d.then[0] if d.then else "default"), then=tuple(NodeId(t) for t in d.then))
            return DecisionNode(**common, cases=cases, default=default)
        if isinstance(m, ParallelNodeModel):
            matrix = None if m.matrix is None else {
                k: self.value(v, (*path, "matrix", k)) for k, v in m.matrix.items()}
            return ParallelNode(**common, for_each=self.value(m.for_each, (*path, "for_each")), matrix=matrix,
                                task=self.task(m.task, (*path, "task"), m.task.retry), join=m.join,
                                max_parallel=m.max_parallel)
        if isinstance(m, ApprovalNodeModel):
            escalation = None
            if m.escalate_to is not None:
                e = m.escalate_to
                escalation = Escalation(approvers=Approvers(roles=tuple(e.roles), subjects=tuple(e.subjects)),
                                        require=e.require, timeout_s=e.timeout, on_timeout=e.on_timeout)
            return ApprovalNode(
                **common, message=self.template(m.message, (*path, "message")),
                approvers=Approvers(roles=tuple(m.approvers.roles), subjects=tuple(m.approvers.subjects)),
                require=m.require, timeout_s=m.timeout, on_timeout=m.on_timeout, escalate_to=escalation)
        if isinstance(m, ErrorHandlerNodeModel):
            task = self.task(m, path, None) if m.prompt is not None else None
            message = self.template(m.message, (*path, "message")) if m.message is not None else None
            return ErrorHandlerNode(**common, handles=tuple(NodeId(h) for h in m.handles), action=m.action,
                                    retry=self.retry(m.retry), task=task, message=message)
        assert isinstance(m, SubworkflowNodeModel)
        return SubworkflowNode(**common, workflow=m.workflow,
                               inputs={k: self.value(v, (*path, "inputs", k)) for k, v in m.inputs.items()},
                               timeout_s=m.timeout, retry=self.retry(m.retry))


def _dotted(path: Path) -> str:
    return ".".join(str(p) for p in path)


def definition_from_data(data: Any) -> tuple[WorkflowDefinition | None, list[Issue]]:
    """Build the definition from plain data; (None, issues) when its shape is wrong.

    Issues carry the data path (and an expression's, its offset in the string); the loader turns them
    into lines and columns.
    """
    if not isinstance(data, dict):
        return None, [Issue("a workflow is a mapping with 'name' and 'nodes'", ())]
    try:
        model = WorkflowModel.model_validate(data)
    except ValidationError as exc:
        return None, [_issue_from_error(e) for e in exc.errors()]
    conv = _Converter()
    inputs = tuple(
        InputSpec(name=name, type=spec.type,
                  required=spec.required if spec.required is not None else "default" not in spec.model_fields_set,
                  default=spec.default, description=spec.description,
                  enum=tuple(spec.enum) if spec.enum is not None else None, items=spec.items)
        for name, spec in model.inputs.items())
    definition = WorkflowDefinition(
        name=model.name, description=model.description, inputs=inputs,
        vars={k: conv.value(v, ("vars", k)) for k, v in model.vars.items()},
        nodes=tuple(conv.node(node_id, m) for node_id, m in model.nodes.items()),
        outputs={k: conv.value(v, ("outputs", k)) for k, v in model.outputs.items()},
    )
    return definition, conv.issues
