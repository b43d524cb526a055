"""The compiler's front door: any supported source text in, one ``CompiledConfig`` out.

Data flows one way: text → (template) → YAML nodes → Butane/CLC translation → Ignition document
→ validation → canonical bytes + hash. Everything downstream (hosting, machines, reprovisioning,
plans) consumes a ``CompiledConfig`` and never re-parses user YAML.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from flatcar_infra.canonical import canonical_bytes, config_hash, pretty_bytes
from flatcar_infra.errors import ConfigError, Diagnostic, Severity
from flatcar_infra.limits import LIMITS, LimitExceeded, human, read_text_input

SourceKind = Literal["butane", "clc", "ignition"]

STAMP_PATH = "/etc/flatcar-infra/config-hash"


@dataclass(frozen=True)
class CompiledConfig:
    """A compiled, validated Ignition config. Cannot be wrong once built.

    ``hash`` identifies the config's meaning: the hash of the canonical bytes *without* the stamp
    file, so it equals what a stamped host holds in ``/etc/flatcar-infra/config-hash``.
    ``canonical`` are the bytes to deliver (stamped when ``stamped``).
    """

    canonical: bytes
    hash: str
    version: str
    source_kind: SourceKind
    stamped: bool = False
    warnings: tuple[Diagnostic, ...] = ()

    @cached_property
    def ignition(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.canonical)
        return doc

    @property
    def delivered_hash(self) -> str:
        """Hash of the delivered bytes (for ``verification.hash`` of a fetched config)."""
        return config_hash(self.canonical)

    def pretty(self) -> bytes:
        return pretty_bytes(self.ignition)


def detect_kind(text: str) -> SourceKind:
    """Raw Ignition JSON starts with ``{`` and has ``ignition.version``; YAML with ``variant`` is
    Butane; any other YAML is a legacy Container Linux Config."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            doc = json.loads(stripped)
        except ValueError:
            return "butane" if "variant" in stripped else "clc"
        if isinstance(doc, dict) and isinstance(doc.get("ignition"), dict):
            return "ignition"
    from flatcar_infra.compiler.yamlsrc import YMap, parse_yaml

    parsed = parse_yaml(text, "<detect>")
    if isinstance(parsed.root, YMap) and "variant" in parsed.root:
        return "butane"
    return "clc"


def stamp(doc: dict[str, Any], identity_hash: str) -> dict[str, Any]:
    """Add the stamp file that lets a host prove which config it applied."""
    from flatcar_infra.compiler.dataurl import data_url

    out: dict[str, Any] = json.loads(canonical_bytes(doc))
    storage = out.setdefault("storage", {})
    files = storage.setdefault("files", [])
    files.append(
        {
            "path": STAMP_PATH,
            "mode": 0o644,
            "overwrite": True,
            "contents": {"source": data_url((identity_hash + "\n").encode())[0]},
        }
    )
    return out


def compile_config(
    source: str | bytes,
    *,
    filename: str = "<config>",
    files_dir: str | Path | None = None,
    variables: Mapping[str, Any] | None = None,
    template: bool | None = None,
    snippets: Sequence[tuple[str, str | bytes]] = (),
    platform: str | None = None,
    strict: bool = False,
    stamp_config: bool = False,
) -> CompiledConfig:
    """Compile Butane (flatcar 1.0.0/1.1.0/1.2.0-experimental), Container Linux Config YAML or
    Ignition JSON.

    ``template``: render ``source`` (and snippets) as Jinja2 with ``variables`` first; ``None``
    means: when ``variables`` is given or the filename ends in ``.j2``.
    ``snippets``: ``(filename, text)`` pairs merged into the main config (same variant/version).
    ``platform``: needed by CLC dynamic data (``{PRIVATE_IPV4}``), e.g. ``ec2``.
    Raises ``ConfigError`` carrying every diagnostic; warnings are fatal when ``strict``.
    """
    from flatcar_infra.compiler.pipeline import translate
    from flatcar_infra.compiler.yamlsrc import decode_source

    text = decode_source(source, filename) if isinstance(source, bytes) else source
    try:
        result = translate(
            text,
            filename=filename,
            files_dir=Path(files_dir) if files_dir is not None else None,
            variables=variables,
            template=template,
            snippets=[(n, decode_source(s, n) if isinstance(s, bytes) else s) for n, s in snippets],
            platform=platform,
        )
    except MemoryError:  # the limits (flatcar_infra.limits) should make this unreachable
        raise ConfigError([Diagnostic(filename, 1, 1, Severity.ERROR, "config needs more memory than "
                                      "this machine has", "$")]) from None
    diags = sorted(result.diagnostics)
    fatal = [d for d in diags if d.is_error or (strict and d.severity is Severity.WARNING)]
    if fatal or result.document is None:
        raise ConfigError(diags)
    body = canonical_bytes(result.document)
    if len(body) > LIMITS.output_bytes:
        too_big = f"compiled config is {len(body)} bytes, over the limit of {human(LIMITS.output_bytes)}"
        raise ConfigError([Diagnostic(filename, 1, 1, Severity.ERROR, too_big, "$")])
    identity = config_hash(body)
    if stamp_config:
        body = canonical_bytes(stamp(result.document, identity))
    return CompiledConfig(
        canonical=body,
        hash=identity,
        version=str(result.document["ignition"]["version"]),
        source_kind=result.kind,
        stamped=stamp_config,
        warnings=tuple(d for d in diags if not d.is_error),
    )


def read_config_file(path: str | Path, display: str | None = None) -> str:
    """A config file's text, within the source size limit; a ``ConfigError`` naming the file (and
    the line of a byte that is not UTF-8) when it cannot be read."""
    name = display or str(path)
    try:
        data = read_text_input(path)
    except LimitExceeded as exc:  # the file as a whole: its first line
        raise ConfigError([Diagnostic(name, 1, 1, Severity.ERROR, f"cannot read: {exc}", "$")]) from None
    except OSError as exc:
        raise ConfigError([Diagnostic(name, 0, 0, Severity.ERROR, f"cannot read: {exc.strerror or exc}",
                                      "$")]) from None
    from flatcar_infra.compiler.yamlsrc import decode_source

    return decode_source(data, name)


def compile_file(
    path: str | Path,
    *,
    files_dir: str | Path | None = None,
    variables: Mapping[str, Any] | None = None,
    template: bool | None = None,
    snippets: Sequence[str | Path] = (),
    platform: str | None = None,
    strict: bool = False,
    stamp_config: bool = False,
) -> CompiledConfig:
    """``compile_config`` on a file; ``files_dir`` defaults to the file's own directory."""
    p = Path(path)
    text = read_config_file(p)
    snips = [(str(s), read_config_file(s)) for s in snippets]
    return compile_config(
        text,
        filename=str(p),
        files_dir=files_dir if files_dir is not None else p.parent,
        variables=variables,
        template=template,
        snippets=snips,
        platform=platform,
        strict=strict,
        stamp_config=stamp_config,
    )
