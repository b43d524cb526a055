"""Dispatch a source text to its translator, merge snippets, validate the result.

templates (Jinja2, when asked) → parse once → (butane | clc | raw ignition) → merge snippets in
order → schema + semantic validation. Returns the Ignition document and every diagnostic; bad
input never raises.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flatcar_infra.compiler.api import SourceKind
from flatcar_infra.compiler.translated import Translated
from flatcar_infra.compiler.validate import validate_document
from flatcar_infra.compiler.yamlsrc import (
    Mark,
    Placeholders,
    SourceDoc,
    YMap,
    YNode,
    YScalar,
    YSeq,
    json_depth_problem,
    parse_yaml,
    size_problem,
)
from flatcar_infra.errors import ConfigError, Diagnostic, Severity


@dataclass
class TranslateResult:
    document: dict[str, Any] | None
    kind: SourceKind
    diagnostics: list[Diagnostic] = field(default_factory=list)


@dataclass
class _Part:
    """One translated source (the main config or a snippet)."""

    filename: str
    kind: SourceKind
    translated: Translated
    flavor: str  # "flatcar 1.0.0", "ignition 3.3.0", "clc": what snippets must match


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
    try:
        return _translate(
            text,
            filename=filename,
            files_dir=files_dir,
            variables=variables,
            template=template,
            snippets=snippets,
            platform=platform,
        )
    except RecursionError:
        diag = Diagnostic(filename, 0, 0, Severity.ERROR, "config is nested too deeply", "$")
        return TranslateResult(None, "ignition" if text.lstrip().startswith("{") else "butane", [diag])


def _translate(
    text: str,
    *,
    filename: str,
    files_dir: Path | None,
    variables: Mapping[str, Any] | None,
    template: bool | None,
    snippets: Sequence[tuple[str, str]],
    platform: str | None,
) -> TranslateResult:
    use_template = template if template is not None else (variables is not None or filename.endswith(".j2"))
    env = dict(variables or {}) if use_template else None  # None: no template rendering
    main = _part(text, filename, files_dir, platform, env)
    diags = list(main.translated.diagnostics)
    parts = [main]
    for snip_name, snip_text in snippets:
        part = _part(snip_text, snip_name, files_dir, platform, env)
        diags.extend(part.translated.diagnostics)
        if part.translated.document is not None and part.flavor != main.flavor:
            diags.append(
                Diagnostic(
                    snip_name,
                    1,
                    1,
                    Severity.ERROR,
                    f"snippet is {part.flavor} but "
                    f"the main config is {main.flavor}; snippets must use the same "
                    "kind, variant and version",
                    "$",
                )
            )
        parts.append(part)
    if any(d.is_error for d in diags) or any(p.translated.document is None for p in parts):
        return TranslateResult(None, main.kind, diags)
    for part in parts:
        doc = part.translated.document
        assert doc is not None
        # one warning per path: the translator's (about the source, e.g. "644 is decimal") is the
        # more useful one, so an output-level warning at the same path is dropped
        warned = {d.path for d in part.translated.diagnostics if not d.is_error}
        for d in validate_document(doc, filename=part.filename, mark_for=part.translated.mark_for):
            if d.is_error or d.path not in warned:
                diags.append(d)
    document = main.translated.document
    assert document is not None
    if len(parts) > 1:
        from flatcar_infra.compiler.merge import merge_configs

        for part in parts[1:]:
            assert part.translated.document is not None
            document = merge_configs(document, _explicit_compression(part.translated.document))
        seen = {(d.path, d.message) for d in diags}
        for d in validate_document(document, filename=filename, mark_for=main.translated.mark_for):
            if (d.path, d.message) not in seen:
                diags.append(
                    Diagnostic(
                        d.file, d.line, d.col, d.severity, f"after merging snippets: {d.message}", d.path
                    )
                )
    if any(d.is_error for d in diags):
        return TranslateResult(None, main.kind, diags)
    return TranslateResult(document, main.kind, diags)


def _part(
    text: str,
    filename: str,
    files_dir: Path | None,
    platform: str | None,
    variables: Mapping[str, Any] | None,
) -> _Part:
    too_big = size_problem(text, filename)
    if too_big is not None:
        return _Part(filename, _guess_kind(text), Translated(None, [too_big]), "?")
    values: Placeholders | None = None
    if variables is not None:
        from flatcar_infra.compiler.templates import render_template

        try:
            rendered = render_template(text, filename, variables)
        except ConfigError as exc:
            return _Part(filename, _guess_kind(text), Translated(None, list(exc.diagnostics)), "?")
        text, values = rendered.text, rendered.placeholders
    stripped = text.lstrip()
    if stripped.startswith("{"):
        raw = _raw_ignition(text, filename, values)
        if raw is not None:
            return raw
    doc = parse_yaml(text, filename, values=values)
    if isinstance(doc.root, YMap) and "variant" in doc.root:
        from flatcar_infra.compiler.butane import translate_butane

        tr = translate_butane(doc, files_dir=files_dir)
        return _Part(filename, "butane", tr, _butane_flavor(doc))
    if doc.root is None and not doc.diagnostics:
        empty = Diagnostic(filename, 1, 1, Severity.ERROR, "empty config", "$")
        return _Part(filename, "clc", Translated(None, [empty]), "clc")
    from flatcar_infra.compiler.clc import translate_clc

    return _Part(filename, "clc", translate_clc(doc, files_dir=files_dir, platform=platform), "clc")


def _guess_kind(text: str) -> SourceKind:
    s = text.lstrip()
    if s.startswith("{"):
        return "ignition"
    return "butane" if "variant:" in text else "clc"


def _butane_flavor(doc: SourceDoc) -> str:
    assert isinstance(doc.root, YMap)
    parts = []
    for key in ("variant", "version"):
        node = doc.root.get(key)
        parts.append(node.value if isinstance(node, YScalar) else "?")
    return " ".join(parts)


def _raw_ignition(text: str, filename: str, values: Placeholders | None = None) -> _Part | None:
    """Raw Ignition JSON passes through unchanged; positions come from reading the JSON as YAML
    (JSON is YAML), so problems still point at a line. ``None``: not an Ignition document.
    Template values (``values``) go into the JSON strings after parsing, like into YAML scalars."""
    too_deep = json_depth_problem(text, filename)
    if too_deep is not None:
        return _Part(filename, "ignition", Translated(None, [too_deep]), "?")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        if '"ignition"' not in text:
            return None  # a YAML flow mapping, perhaps: let the YAML path decide
        msg = f"invalid JSON: {exc.msg}"
        if values is not None and text[exc.pos : exc.pos + 1] == values.open:
            msg += " (a template value outside a JSON string: quote it, or use | tojson)"
        d = Diagnostic(filename, exc.lineno, exc.colno, Severity.ERROR, msg, "$")
        return _Part(filename, "ignition", Translated(None, [d]), "?")
    if not (isinstance(doc, dict) and isinstance(doc.get("ignition"), dict)):
        return None
    if values is not None:
        doc = _substitute(doc, values)
    marks: dict[str, Mark] = {}
    positioned = parse_yaml(text, filename, values=values)
    if positioned.root is not None:
        _collect_marks(positioned.root, "$", marks)
    version = doc["ignition"].get("version")
    return _Part(filename, "ignition", Translated(doc, [], marks), f"ignition {version}")


def _substitute(value: Any, values: Placeholders) -> Any:
    if isinstance(value, str):
        return values.sub(value)
    if isinstance(value, dict):
        return {values.sub(k): _substitute(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, values) for v in value]
    return value


def _collect_marks(node: YNode, path: str, marks: dict[str, Mark]) -> None:
    marks[path] = node.mark
    if isinstance(node, YMap):
        for key, child in node.items.items():
            _collect_marks(child, f"{path}.{key}", marks)
    elif isinstance(node, YSeq):
        for i, child in enumerate(node.items):
            _collect_marks(child, f"{path}.{i}", marks)


def _explicit_compression(doc: Any) -> Any:
    """A copy where every resource states its compression (``""`` for none).

    Ignition's merge keeps a parent's field when the child leaves it out, so a snippet's plain
    contents merged over gzip contents would otherwise be decoded as gzip. Our translators already
    write ``compression: ""`` (as Butane does); raw Ignition snippets may not.
    """
    if isinstance(doc, dict):
        out = {k: _explicit_compression(v) for k, v in doc.items()}
        if "source" in out and out.get("compression") is None:
            out["compression"] = ""
        return out
    if isinstance(doc, list):
        return [_explicit_compression(v) for v in doc]
    return doc
