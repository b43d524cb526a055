"""Dispatch a source text to its translator, merge snippets, validate the result.

templates (Jinja2, when asked) → parse once → (butane | clc | raw ignition) → Ignition's
validation of each translated document → merge snippets in order → validation of the merged
document. Every problem is reported at once, located in its own file (a snippet's problem blames
the snippet) through each translator's translation set; bad input never raises.

A problem the output check finds at a source path where the translator already reported an error
is a consequence of that error (a field dropped for its wrong type), so it is not reported twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flatcar_infra.compiler.api import SourceKind
from flatcar_infra.compiler.translated import Origin, Translated
from flatcar_infra.compiler.validate import Problem, check_document
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
    except RecursionError:  # a backstop: the nesting limit (flatcar_infra.limits) refuses this earlier
        diag = Diagnostic(filename, 1, 1, Severity.ERROR, "config is nested too deeply", "$")
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
    parts = [main]
    diags: list[Diagnostic] = []
    for snip_name, snip_text in snippets:
        part = _part(snip_text, snip_name, files_dir, platform, env)
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
    seen: set[tuple[str, str, str]] = set()
    for part in parts:
        diags.extend(part.translated.diagnostics)
        doc = part.translated.document
        if doc is not None:
            diags.extend(_located(check_document(doc), part, part.translated.diagnostics, seen))
    document = main.translated.document
    if len(parts) > 1 and all(p.translated.document is not None for p in parts):
        diags.extend(_merged(parts, seen))
        document = _merge_all(parts)[0]
    if any(d.is_error for d in diags) or document is None:
        return TranslateResult(None, main.kind, diags)
    return TranslateResult(document, main.kind, diags)


def _located(
    problems: list[Problem], part: _Part, earlier: Sequence[Diagnostic], seen: set[tuple[str, str, str]]
) -> list[Diagnostic]:
    """The output problems of one part, at their source, minus consequences of earlier errors and
    warnings the translator already gave (about the source, they are the more useful ones)."""
    errors = [_parts(d.path) for d in earlier if d.is_error]
    warned = {d.path for d in earlier if not d.is_error}
    out = []
    for severity, path, message in problems:
        src, mark = part.translated.locate(path)
        if severity is Severity.WARNING and src in warned:
            continue
        here = _parts(src)
        if any(_related(here, e) for e in errors):
            continue
        seen.add((part.filename, src, message))
        out.append(Diagnostic(part.filename, mark.line, mark.col, severity, message, src))
    return out


def _parts(path: str) -> list[str]:
    return path.split(".")


def _related(a: list[str], b: list[str]) -> bool:
    n = min(len(a), len(b))
    return n > 1 and a[:n] == b[:n]


def _merge_all(parts: list[_Part]) -> tuple[dict[str, Any], list[dict[str, tuple[int, str]]]]:
    from flatcar_infra.compiler.merge import merge_traced

    document = parts[0].translated.document
    assert document is not None
    traces = []
    for part in parts[1:]:
        assert part.translated.document is not None
        document, trace = merge_traced(document, _explicit_compression(part.translated.document))
        traces.append(trace)
    return document, traces


def _merged(parts: list[_Part], seen: set[tuple[str, str, str]]) -> list[Diagnostic]:
    """Problems only the merged document has, blamed on the file (main or snippet) and line that
    contributed the offending value."""
    from flatcar_infra.compiler.merge import trace_back

    document, traces = _merge_all(parts)
    out = []
    for severity, path, message in check_document(document):
        p, owner = path, 0
        for k in range(len(traces) - 1, -1, -1):
            side, p = trace_back(traces[k], p)
            if side == 1:
                owner = k + 1
                break
        part = parts[owner]
        src, mark = part.translated.locate(p)
        if (part.filename, src, message) in seen:
            continue
        seen.add((part.filename, src, message))
        out.append(
            Diagnostic(
                part.filename, mark.line, mark.col, severity, f"after merging snippets: {message}", src
            )
        )
    return out


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
    origins: dict[str, Origin] = {}
    positioned = parse_yaml(text, filename, values=values)
    if positioned.root is not None:
        _collect_origins(positioned.root, "$", origins)
    version = doc["ignition"].get("version")
    return _Part(filename, "ignition", Translated(doc, [], origins), f"ignition {version}")


def _substitute(value: Any, values: Placeholders) -> Any:
    if isinstance(value, str):
        return values.sub(value)
    if isinstance(value, dict):
        return {values.sub(k): _substitute(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, values) for v in value]
    return value


def _collect_origins(node: YNode, path: str, origins: dict[str, Origin]) -> None:
    origins[path] = Origin(path, node.mark)
    if isinstance(node, YMap):
        for key, child in node.items.items():
            _collect_origins(child, f"{path}.{key}", origins)
    elif isinstance(node, YSeq):
        for i, child in enumerate(node.items):
            _collect_origins(child, f"{path}.{i}", origins)


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


__all__ = ["Mark", "TranslateResult", "translate"]
