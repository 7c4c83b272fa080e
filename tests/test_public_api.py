"""Each public package's `__all__` lists exactly the loomiq names it exposes, all importable."""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType

import pytest

PACKAGES = ["loomiq", "loomiq.models", "loomiq.agents", "loomiq.strategies", "loomiq.runtime", "loomiq.tools",
            "loomiq.workflows", "loomiq.tools.builtin", "loomiq.tools.mcp", "loomiq.mcp"]


def loomiq_names(module: ModuleType) -> set[str]:
    """Public names bound in `module` to loomiq's own classes and functions (not submodules, not
    names imported from the standard library or third parties)."""
    names = set()
    for name, value in vars(module).items():
        if name.startswith("_") or inspect.ismodule(value):
            continue
        if (inspect.isclass(value) or inspect.isfunction(value)) and value.__module__.startswith("loomiq"):
            names.add(name)
    return names


@pytest.mark.parametrize("package", PACKAGES)
def test_all_names_are_importable(package: str) -> None:
    module = importlib.import_module(package)
    exported = module.__all__
    assert len(exported) == len(set(exported)), "duplicates in __all__"
    missing = [name for name in exported if not hasattr(module, name)]
    assert missing == []
    namespace: dict[str, object] = {}
    exec(f"from {package} import *", namespace)  # noqa: S102 - the star import is what __all__ governs
    assert set(exported) <= set(namespace)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_public_class_or_function_is_left_out_of_all(package: str) -> None:
    module = importlib.import_module(package)
    assert sorted(loomiq_names(module) - set(module.__all__)) == []


def test_top_level_api() -> None:
    import loomiq

    for name in ("Orchestrator", "Agent", "AgentConfig", "ScriptedModel", "RunResult", "StrategyError"):
        assert name in loomiq.__all__
    assert loomiq.__version__ == "0.1.0"
    from loomiq.agents import Agent

    assert loomiq.Agent is Agent

