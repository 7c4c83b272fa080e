"""The workflow templates shipped in the package (``templates/*.yaml``, inside the wheel).

``loomiq workflow templates`` lists them; ``template:NAME`` names one wherever a workflow file is
accepted. Each uses only task prompts and strategies, so it runs offline on the scripted agents.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

from ._source import compose
from .loader import loads_workflow
from .model import WorkflowDefinition

__all__ = ["TemplateInfo", "list_templates", "load_template", "template_names", "template_text"]


@dataclass(frozen=True, slots=True)
class TemplateInfo:
    """A shipped template: its name, what it does, and the inputs it takes."""

    name: str
    description: str
    inputs: tuple[str, ...]


def _files() -> dict[str, str]:
    folder = resources.files(__package__ or "loomiq.workflows") / "templates"
    return {entry.name.rsplit(".", 1)[0]: entry.name for entry in folder.iterdir()
            if entry.name.endswith(".yaml")}


@cache
def template_names() -> tuple[str, ...]:
    """The names of the shipped templates, sorted."""
    return tuple(sorted(_files()))


def template_text(name: str) -> str:
    """The YAML of a shipped template. Raises `KeyError` naming the templates there are."""
    files = _files()
    if name not in files:
        raise KeyError(f"no template '{name}' (templates: {', '.join(sorted(files))})")
    folder = resources.files(__package__ or "loomiq.workflows") / "templates"
    return (folder / files[name]).read_text(encoding="utf-8")


def load_template(name: str) -> WorkflowDefinition:
    """A shipped template's definition. Raises `KeyError` for an unknown name."""
    return loads_workflow(template_text(name), f"template:{name}")


def list_templates() -> list[TemplateInfo]:
    """Every shipped template with its description and inputs, by name."""
    out = []
    for name in template_names():
        data = compose(template_text(name)).data or {}
        inputs = tuple((data.get("inputs") or {}).keys())
        out.append(TemplateInfo(name=name, description=str(data.get("description", "")).strip(), inputs=inputs))
    return out
