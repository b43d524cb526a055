"""What every translator (Butane, CLC) returns: the document, its problems, and where each output
path came from, so that problems found later on the output can still blame a source line."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flatcar_infra.compiler.yamlsrc import Mark
from flatcar_infra.errors import Diagnostic


@dataclass
class Translated:
    document: dict[str, Any] | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    # output JSON path ("$.storage.files.0.mode") -> position of the input that produced it
    marks: dict[str, Mark] = field(default_factory=dict)

    def mark_for(self, path: str) -> Mark:
        """The position of ``path`` or of its nearest ancestor that has one."""
        p = path
        while True:
            if p in self.marks:
                return self.marks[p]
            if "." not in p:
                return Mark(0, 0)
            p = p.rsplit(".", 1)[0]
