"""Diagnostics: migration problems as data (never exceptions), each with file:line."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Level(enum.Enum):
    """Severity of a diagnostic, most severe first."""

    ERROR = "error"
    """The configuration is invalid (nginx would refuse it): exit code 2."""
    UNSUPPORTED = "unsupported"
    """Valid for nginx, changes behaviour, and Tern does not implement it."""
    PARTIAL = "partial"
    """Tern runs it with a stated difference."""
    WARNING = "warning"
    """Suspicious but valid (lint)."""
    INFO = "info"
    """For the record."""


LEVEL_ORDER = {lvl: i for i, lvl in enumerate(Level)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Diagnostic:
    """One finding about one place in the configuration."""

    file: str
    """File path as loaded."""
    line: int
    """1-based line (0 when the whole file is concerned)."""
    level: Level
    """Severity."""
    code: str
    """Stable machine-readable code (``syntax``, ``unknown-directive``, ``context``, ``arity``...)."""
    message: str
    """What is wrong and, where useful, what to do."""
    directive: str = ""
    """Directive name, when one is concerned."""

    def format(self) -> str:
        """``file:line: level: message``."""
        return f"{self.file}:{self.line}: {self.level.value}: {self.message}"

    def to_json(self) -> dict[str, object]:
        """Stable JSON form (documented in docs/cli.md)."""
        return {
            "file": self.file,
            "line": self.line,
            "level": self.level.value,
            "code": self.code,
            "directive": self.directive,
            "message": self.message,
        }
