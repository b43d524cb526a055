"""A Flatcar config as a Pulumi value: compiled when its variables resolve, secret when they are.

Variables may be Pulumi Outputs (a database address, a generated password): the compile runs in
``apply`` once they are known, and during a preview with unknown inputs the results stay unknown
rather than guessed. Always stamped, so the host can prove which config it applied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi

from flatcar_infra.compiler import CompiledConfig, compile_config
from flatcar_infra.errors import UserError
from flatcar_infra.manifest import build_manifest


@dataclass(frozen=True)
class ConfigOutput:
    """The compiled config as Outputs.

    ``canonical``: the stamped canonical Ignition JSON that is delivered (secret when any variable
    is); ``hash``: the identity hash the host stamps in ``/etc/flatcar-infra/config-hash``;
    ``manifest``: one short digest per managed object, what a reviewer reads in a diff. ``hash``
    and ``manifest`` are derived from the secret content too, so they inherit its secrecy.
    """

    canonical: pulumi.Output[str]
    hash: pulumi.Output[str]
    manifest: pulumi.Output[dict[str, str]]
    version: pulumi.Output[str]


def compile_now(
    text: str,
    *,
    filename: str,
    files_dir: str | Path | None,
    variables: Mapping[str, Any] | None,
    snippets: Sequence[tuple[str, str]],
    platform: str | None,
    strict: bool,
    template: bool | None,
) -> CompiledConfig:
    """Compile with the stamp; a user mistake becomes a ``RunError`` (a message, no traceback)."""
    try:
        compiled = compile_config(
            text,
            filename=filename,
            files_dir=files_dir,
            variables=variables,
            template=template,
            snippets=snippets,
            platform=platform,
            strict=strict,
            stamp_config=True,
        )
    except UserError as exc:
        raise pulumi.RunError(f"flatcar config {filename}: {exc}") from None
    for warning in compiled.warnings:
        pulumi.log.warn(str(warning))
    return compiled


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise pulumi.RunError(f"flatcar config {path}: cannot read: {exc}") from None


def flatcar_config(
    path: str | Path | None = None,
    *,
    text: pulumi.Input[str] | None = None,
    filename: str | None = None,
    variables: Mapping[str, pulumi.Input[str]] | None = None,
    files_dir: str | Path | None = None,
    snippets: Sequence[str | Path] = (),
    platform: str | None = None,
    strict: bool = False,
    template: bool | None = None,
) -> ConfigOutput:
    """Compile a Butane/CLC/Ignition file (``path``) or source ``text`` into ``ConfigOutput``.

    ``variables`` are Jinja2 template variables and may be Outputs; ``template`` defaults to
    rendering when variables are given. ``files_dir`` (for ``local:`` contents and trees)
    defaults to the file's directory. Files are read now, so a missing file fails the program
    before any resource is registered.
    """
    if (path is None) == (text is None):
        raise pulumi.RunError("flatcar_config: give exactly one of path or text")
    if path is not None:
        p = Path(path)
        source: pulumi.Input[str] = _read(p)
        name = filename or str(p)
        base: str | Path | None = files_dir if files_dir is not None else p.parent
    else:
        assert text is not None
        source = text
        name = filename or "<config>"
        base = files_dir
    snips = [(str(s), _read(Path(s))) for s in snippets]
    var_outputs = {k: pulumi.Output.from_input(v) for k, v in (variables or {}).items()}

    def build(args: dict[str, Any]) -> dict[str, Any]:
        src = args.pop("__source")
        compiled = compile_now(
            src,
            filename=name,
            files_dir=base,
            variables=args if variables is not None else None,
            snippets=snips,
            platform=platform,
            strict=strict,
            template=template,
        )
        return {
            "canonical": compiled.canonical.decode("utf-8"),
            "hash": compiled.hash,
            "manifest": build_manifest(compiled.ignition),
            "version": compiled.version,
        }

    # Output.all carries secretness: one secret variable makes every derived value secret.
    result = pulumi.Output.all(__source=pulumi.Output.from_input(source), **var_outputs).apply(build)
    return ConfigOutput(
        canonical=result.apply(lambda r: str(r["canonical"])),
        hash=result.apply(lambda r: str(r["hash"])),
        manifest=result.apply(lambda r: dict(r["manifest"])),
        version=result.apply(lambda r: str(r["version"])),
    )
