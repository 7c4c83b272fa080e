"""The layering of docs/architecture.md holds: import-linter's contracts in pyproject.toml pass, and the
faces (api, cli, mcp) use only public names of the engine."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import loomiq

ROOT = Path(__file__).resolve().parents[1]
SRC = Path(loomiq.__file__).resolve().parent


def _contracts() -> dict[str, dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {c["id"]: c for c in config["tool"]["importlinter"]["contracts"]}


def test_import_linter_contracts_are_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint), "--config", str(ROOT / "pyproject.toml"), "--no-cache", "--no-logo"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for contract in _contracts().values():
        assert f"{contract['name']} KEPT" in done.stdout, done.stdout


def test_the_layers_name_every_top_level_module() -> None:
    """`exhaustive` makes import-linter refuse a package that has no layer; this pins the order the
    architecture document describes, lowest last."""
    layers = [layer.strip("()") for layer in _contracts()["layers"]["layers"]]  # type: ignore[union-attr]
    assert layers == ["cli", "api", "mcp", "orchestrator", "engine", "config", "workflows", "strategies", "runtime",
                      "agents", "tools", "models", "observe"]


def test_the_faces_contract_forbids_every_private_engine_module() -> None:
    """A private module added to the engine must be added to the contract, or the faces could import it."""
    private = {f"loomiq.engine.{p.stem}" for p in (SRC / "engine").glob("_*.py") if p.stem != "__init__"}
    forbidden = set(_contracts()["faces-public-engine"]["forbidden_modules"])  # type: ignore[arg-type]
    assert forbidden == private


def _engine_imports(path: Path) -> list[tuple[str, str, int]]:
    """(module, name, line) of every name `path` imports from loomiq.engine or its modules."""
    package = "loomiq." + ".".join(path.relative_to(SRC).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            module = f"{base}.{node.module}" if node.module else base
        else:
            module = node.module or ""
        if module == "loomiq.engine" or module.startswith("loomiq.engine."):
            found += [(module, alias.name, node.lineno) for alias in node.names]
    return found


def test_the_faces_import_no_private_name_of_the_engine() -> None:
    offending = [
        f"{path.relative_to(SRC)}:{line}: {name} from {module}"
        for face in ("api", "cli", "mcp")
        for path in sorted((SRC / face).rglob("*.py"))
        for module, name, line in _engine_imports(path)
        if name.startswith("_") and path.name != "keys.py"  # api/keys.py: see the contract's ignore_imports
    ]
    assert offending == []
