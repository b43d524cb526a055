"""The user-mistake family: exceptions that carry location and advice, never a traceback.

The CLI turns every ``UserError`` into a message and an exit code in one place
(``flatcar_infra.cli.main``); library callers catch ``UserError`` to do the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One problem in a config, located in the source file and in the output JSON."""

    file: str
    line: int  # 1-based; 0 when unknown
    col: int  # 1-based; 0 when unknown
    severity: Severity = field(compare=False)
    message: str = field(compare=False)
    path: str = field(default="$", compare=False)  # JSON path in the Ignition output or the input

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}" if self.line else self.file
        return f"{where}: {self.severity.value}: {self.message} [{self.path}]"

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR


class UserError(Exception):
    """A mistake the user can fix: bad input, refused operation, unreachable host.

    ``advice`` says what to do next; the CLI prints it after the message.
    """

    exit_code = 1

    def __init__(self, message: str, advice: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.advice = advice

    def __str__(self) -> str:
        return self.message if not self.advice else f"{self.message}\n  hint: {self.advice}"


class UsageError(UserError):
    """Wrong command-line usage (exit code 2)."""

    exit_code = 2


class ConfigError(UserError):
    """A config that does not compile: carries every diagnostic found, errors and warnings."""

    def __init__(self, diagnostics: list[Diagnostic] | tuple[Diagnostic, ...]) -> None:
        self.diagnostics = tuple(diagnostics)
        errors = sum(1 for d in self.diagnostics if d.is_error)
        warnings = len(self.diagnostics) - errors
        summary = f"config invalid: {errors} error(s), {warnings} warning(s)"
        super().__init__("\n".join([*(str(d) for d in self.diagnostics), summary]))
