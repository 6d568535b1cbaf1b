"""Leaf types shared by every model node: where a node came from, and the model's own error."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceSpan:
    """A place in the nginx configuration: the file and the 1-based line of a directive."""

    file: str
    """Path of the file as Tern resolved it (absolute for files on disk, as named in an ``nginx -T`` dump)."""
    line: int
    """1-based line of the directive's name token."""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


NOWHERE = SourceSpan(file="<none>", line=0)
"""Span for nodes that nginx creates implicitly (defaults), never written in a file."""


class ModelError(ValueError):
    """A model node was built with a value nginx would reject; carries where it was written."""

    def __init__(self, message: str, source: SourceSpan) -> None:
        super().__init__(f"{source}: {message}")
        self.message = message
        self.source = source
