"""What every translator (Butane, CLC) returns: the document, its problems, and where each output
path came from (a translation set, as Butane keeps one), so that problems found later on the
output — by Ignition's rules, or after merging snippets — still name the user's file, line and
own path (``$.storage.files.0.contents.inline``, not the output's ``...contents.source``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from flatcar_infra.compiler.yamlsrc import Mark
from flatcar_infra.errors import Diagnostic

_CAMEL = re.compile(r"(MiB|[A-Z])")


def snake(path: str) -> str:
    """Ignition's camelCase keys as Butane's snake_case (``sizeMiB`` → ``size_mib``)."""
    return _CAMEL.sub(lambda m: "_" + m[1].lower(), path)


class Origin(NamedTuple):
    path: str | None  # the source path that produced the output value (None: same shape as output)
    mark: Mark


NOWHERE = Mark(0, 0)


@dataclass
class Translated:
    document: dict[str, Any] | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    # output JSON path ("$.storage.files.0.mode") -> its origin in the source
    origins: dict[str, Origin] = field(default_factory=dict)

    def locate(self, path: str) -> tuple[str, Mark]:
        """The source path and position of output ``path``, from it or its nearest known ancestor
        (the rest of the path is appended in snake_case, as Butane does for untracked paths)."""
        mark: Mark | None = None
        p, suffix = path, ""
        while True:
            origin = self.origins.get(p)
            if origin is not None:
                if mark is None:
                    mark = origin.mark
                if origin.path is not None:
                    return origin.path + snake(suffix), mark
            if "." not in p:
                return path, mark or NOWHERE
            p, last = p.rsplit(".", 1)
            suffix = f".{last}{suffix}"

    def mark_for(self, path: str) -> Mark:
        return self.locate(path)[1]
