"""What goes wrong with a workflow definition: one `ValidationIssue` per problem, and `WorkflowError`
carrying all of them when a definition cannot be used."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

__all__ = ["Path", "ValidationIssue", "WorkflowError"]

Path = tuple[str | int, ...]
"""Where a value sits in a definition: mapping keys and list indexes (``("nodes", "draft", "prompt")``)."""


@dataclass(frozen=True, slots=True)
class ValidationIssue:
    """One problem: its message (which starts with the dotted key path), where it is, and how bad.

    `line` and `column` are 1-based, 0 when unknown (a definition built in Python). `offset`, when not
    None, is the character inside the string value at `path` the problem points at (an expression's
    error); the loader turns it into a line and column.
    """

    message: str
    path: Path = ()
    line: int = 0
    column: int = 0
    offset: int | None = None
    severity: Literal["error", "warning"] = "error"
    file: str = ""
    at_key: bool = False
    """Point at the mapping key at `path` rather than at its value (a duplicate or misnamed key)."""

    def located(self, file: str, line: int, column: int) -> ValidationIssue:
        """The same issue placed in `file` at `line`:`column`."""
        return replace(self, file=file, line=line, column=column)

    def __str__(self) -> str:
        where = self.file or "<workflow>"
        if self.line:
            where = f"{where}:{self.line}:{self.column}"
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{where}: {prefix}{self.message}"


class WorkflowError(ValueError):
    """A definition that cannot be used: every error found, each with its place. `str()` is one line per
    error, as ``FILE:LINE:COLUMN: message``."""

    def __init__(self, issues: list[ValidationIssue] | tuple[ValidationIssue, ...]) -> None:
        self.issues = tuple(issues)
        super().__init__("\n".join(str(i) for i in self.issues) or "invalid workflow")
