"""Loading a workflow from YAML or JSON: read with places kept, build through the edge model, validate,
and give every issue its file, line and column.

`check_workflow_text` / `check_workflow_file` return a `LoadResult` with every issue (for
``loomiq workflow validate``); `load_workflow` and `loads_workflow` return the definition or raise
`WorkflowError`; `workflow_from_data` does the same for data already parsed (an HTTP body).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Any

from ._edge import definition_from_data
from ._source import SourceMap, compose
from .errors import Path, ValidationIssue, WorkflowError
from .model import WorkflowDefinition
from .validation import Resolver, validate

__all__ = [
    "LoadResult",
    "check_workflow_file",
    "check_workflow_text",
    "directory_resolver",
    "load_workflow",
    "loads_workflow",
    "read_workflow_source",
    "workflow_from_data",
]

TEMPLATE_PREFIX = "template:"
_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class LoadResult:
    """A checked workflow: the definition (None when its shape was too wrong to build one) and every
    issue, located and sorted by place."""

    definition: WorkflowDefinition | None
    issues: tuple[ValidationIssue, ...]

    @property
    def errors(self) -> tuple[ValidationIssue, ...]:
        """The issues that make the workflow unusable."""
        return tuple(i for i in self.issues if i.severity == "error")

    @property
    def warnings(self) -> tuple[ValidationIssue, ...]:
        """The issues worth a look that do not stop the workflow."""
        return tuple(i for i in self.issues if i.severity == "warning")

    @property
    def ok(self) -> bool:
        """True when there is a definition and no error."""
        return self.definition is not None and not self.errors

    def definition_or_raise(self) -> WorkflowDefinition:
        """The definition, or `WorkflowError` with the errors."""
        if self.definition is None or self.errors:
            raise WorkflowError(self.errors)
        return self.definition


def _value_at(data: Any, path: Path) -> Any:
    for key in path:
        in_mapping = isinstance(data, Mapping) and key in data
        in_list = isinstance(data, list) and isinstance(key, int) and 0 <= key < len(data)
        if in_mapping or in_list:
            data = data[key]
        else:
            return None
    return data


def _locate(issue: ValidationIssue, data: Any, source: SourceMap, filename: str) -> ValidationIssue:
    if issue.line:
        return issue.located(filename, issue.line, issue.column)
    if issue.offset is not None:
        value = _value_at(data, issue.path)
        if isinstance(value, str):
            line, column = source.locate_in_string(issue.path, value, issue.offset)
            return issue.located(filename, line, column)
    line, column = source.locate(issue.path, key=issue.at_key)
    return issue.located(filename, line, column)


def _check(data: Any, source: SourceMap, filename: str, first: list[ValidationIssue], resolver: Resolver | None,
           strict_subworkflows: bool) -> LoadResult:
    issues = list(first)
    definition = None
    if data is not None or not issues:
        definition, shape_issues = definition_from_data(data)
        issues.extend(shape_issues)
        if definition is not None:
            issues.extend(validate(definition, resolver=resolver, strict_subworkflows=strict_subworkflows))
    located = [_locate(i, data, source, filename) for i in issues]
    located.sort(key=lambda i: (i.line or 1 << 30, i.column, i.message))
    return LoadResult(definition, tuple(dict.fromkeys(located)))


def check_workflow_text(text: str, filename: str = "<string>", *, resolver: Resolver | None = None,
                        strict_subworkflows: bool = True) -> LoadResult:
    """Read, build and validate a workflow from YAML or JSON text; never raises for a bad workflow."""
    # Reading a file allocates tens of thousands of short-lived objects (YAML nodes and marks, paths,
    # models) and none of them in a cycle the reference counts cannot free; the cyclic collector would
    # run a few times over the whole heap meanwhile (a fifth of the time of a 200-node file).
    paused = gc.isenabled()
    gc.disable()
    try:
        composed = compose(text, filename)
        return _check(composed.data, composed.source, filename, composed.issues, resolver, strict_subworkflows)
    finally:
        if paused:
            gc.enable()


def check_workflow_file(path: str | os.PathLike[str], *, resolver: Resolver | None = None,
                        strict_subworkflows: bool = True) -> LoadResult:
    """`check_workflow_text` on a file's content. Raises `OSError` if it cannot be read."""
    file = FilePath(path)
    return check_workflow_text(file.read_text(encoding="utf-8"), str(path), resolver=resolver,
                               strict_subworkflows=strict_subworkflows)


def loads_workflow(text: str, filename: str = "<string>", *, resolver: Resolver | None = None) -> WorkflowDefinition:
    """The definition in YAML or JSON text. Raises `WorkflowError` listing every error."""
    return check_workflow_text(text, filename, resolver=resolver).definition_or_raise()


def load_workflow(path: str | os.PathLike[str], *, resolver: Resolver | None = None) -> WorkflowDefinition:
    """The definition in a YAML or JSON file. Raises `WorkflowError`, or `OSError` if unreadable."""
    return check_workflow_file(path, resolver=resolver).definition_or_raise()


def workflow_from_data(data: Any, *, resolver: Resolver | None = None, source: str = "<data>") -> WorkflowDefinition:
    """The definition in already-parsed data (a JSON body). Raises `WorkflowError` with key paths."""
    return _check(data, SourceMap(), source, [], resolver, True).definition_or_raise()


def read_workflow_source(ref: str) -> tuple[str, str]:
    """The text of ``FILE`` or ``template:NAME``, and the name to show in messages.

    Raises `FileNotFoundError` (no such file) or `KeyError` (no such template).
    """
    if ref.startswith(TEMPLATE_PREFIX):
        from .templates import template_text

        name = ref[len(TEMPLATE_PREFIX):]
        return template_text(name), ref
    return FilePath(ref).read_text(encoding="utf-8"), ref


def directory_resolver(directory: str | os.PathLike[str]) -> Resolver:
    """A resolver for subworkflows: ``NAME.yaml``, ``.yml`` or ``.json`` in `directory`, else the shipped
    template of that name. A file that is not a valid workflow resolves to None."""
    from .templates import template_names, template_text

    base = FilePath(directory)
    cache: dict[str, WorkflowDefinition | None] = {}

    def resolve(name: str) -> WorkflowDefinition | None:
        if name in cache:
            return cache[name]
        cache[name] = None  # a cycle through files resolves to "unknown" instead of recursing
        result = None
        for suffix in _SUFFIXES:
            candidate = base / f"{name}{suffix}"
            if candidate.is_file():
                result = check_workflow_file(candidate).definition
                break
        else:
            if name in template_names():
                result = check_workflow_text(template_text(name), f"template:{name}").definition
        cache[name] = result
        return result

    return resolve
