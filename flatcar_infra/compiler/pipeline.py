"""Dispatch a source text to its translator and validate the result.

Owned by the compiler work: templates → parse → (butane | clc | ignition) → merge snippets →
schema + semantic validation. Returns the Ignition document and all diagnostics.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flatcar_infra.compiler.api import SourceKind, detect_kind
from flatcar_infra.errors import Diagnostic, Severity


@dataclass
class TranslateResult:
    document: dict[str, Any] | None
    kind: SourceKind
    diagnostics: list[Diagnostic] = field(default_factory=list)


def translate(
    text: str,
    *,
    filename: str,
    files_dir: Path | None,
    variables: Mapping[str, Any] | None,
    template: bool | None,
    snippets: Sequence[tuple[str, str]],
    platform: str | None,
) -> TranslateResult:
    kind = detect_kind(text)
    if kind == "ignition":
        doc = json.loads(text)
        return TranslateResult(doc, kind)
    return TranslateResult(None, kind, [Diagnostic(filename, 0, 0, Severity.ERROR,
                                                   f"{kind} translation not available yet", "$")])
