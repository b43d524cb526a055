"""A Flatcar config as a Pulumi value: compiled when its variables resolve, secret when they are.

Variables may be Pulumi Outputs (a database address, a generated password): the compile runs in
``apply`` once they are known, and during a preview with unknown inputs the results stay unknown
rather than guessed. Always stamped, so the host can prove which config it applied. The machine
components merge their SSH access (authorized keys, generated host keys) into the unstamped
compile before stamping, so the delivered config, its hash and its manifest include them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import pulumi

from flatcar_infra.access import Access, finish
from flatcar_infra.canonical import canonical_bytes
from flatcar_infra.compiler import CompiledConfig, compile_config
from flatcar_infra.errors import UserError
from flatcar_infra.manifest import build_manifest
from flatcar_infra.secrets import SECRET_MARKER, SecretFinding, decoded, find_secrets

T = TypeVar("T")


@dataclass(frozen=True)
class CompiledParts:
    """One compile of a config before its stamp: what the machine merges its SSH access into.

    ``marked`` is the same config compiled with every secret variable replaced by
    ``SECRET_MARKER + name`` (the plan's stand-in), so the entries that hold a secret can be named
    without knowing its value; ``None`` when that compile failed (a secret used where a marker
    cannot stand, e.g. a number field). Both are canonical JSON and may hold secrets.
    """

    document: str = field(repr=False)
    marked: str | None = field(repr=False)
    secret_variables: tuple[str, ...]
    filename: str
    source_kind: str

    def with_access(self, access: Access) -> CompiledParts:
        def merge(text: str) -> str:
            return canonical_bytes(access.apply(json.loads(text))).decode("utf-8")

        return replace(
            self,
            document=merge(self.document),
            marked=merge(self.marked) if self.marked is not None else None,
        )

    def finished(self) -> CompiledConfig:
        """Stamped, as delivered: ``hash`` is what the host proves in its stamp file."""
        return finish(json.loads(self.document), source_kind=self.source_kind)

    def secret_findings(self) -> list[SecretFinding]:
        """What would be exposed by publishing this config: every entry ``find_secrets`` flags
        (by content, by name, or holding a secret variable's marker), plus ``variable:NAME`` for a
        secret variable whose value cannot be traced to an entry."""
        if self.marked is None:
            findings = find_secrets(json.loads(self.document))
            untraced = self.secret_variables
        else:
            doc = json.loads(self.marked)
            findings = find_secrets(doc)
            untraced = tuple(k for k in self.secret_variables if not _mentions(doc, SECRET_MARKER + k))
        for k in untraced:
            findings.append(
                SecretFinding(
                    f"variable:{k}",
                    "value",
                    "a Pulumi secret variable whose use could not be traced to one entry",
                )
            )
        return findings


def _secret_like(value: pulumi.Output[T], like: pulumi.Output[Any]) -> pulumi.Output[T]:
    """``value``, secret exactly when ``like`` is."""
    flag: pulumi.Output[bool] = pulumi.Output.from_input(like.is_secret())  # type: ignore[arg-type]
    return pulumi.Output.all(pulumi.Output.unsecret(value), flag).apply(
        lambda a: pulumi.Output.secret(a[0]) if a[1] else a[0]
    )


def _mentions(value: Any, needle: str) -> bool:
    """Whether ``needle`` occurs in any string of ``value``, data URLs decoded."""
    if isinstance(value, dict):
        return any(_mentions(v, needle) for v in value.values())
    if isinstance(value, list):
        return any(_mentions(v, needle) for v in value)
    if isinstance(value, str):
        if value.startswith("data:"):
            data = decoded({"source": value})
            return data is not None and needle.encode() in data
        return needle in value
    return False


@dataclass(frozen=True)
class ConfigOutput:
    """The compiled config as Outputs.

    ``canonical``: the stamped canonical Ignition JSON that is delivered (secret when any variable
    is); ``hash``: the identity hash the host stamps in ``/etc/flatcar-infra/config-hash``;
    ``manifest``: one short digest per managed object, what a reviewer reads in a diff. ``hash``
    and ``manifest`` are derived from the secret content too, so they inherit its secrecy.
    ``parts``: the unstamped compile the machine components merge SSH access into.
    """

    canonical: pulumi.Output[str]
    hash: pulumi.Output[str]
    manifest: pulumi.Output[dict[str, str]]
    version: pulumi.Output[str]
    parts: pulumi.Output[CompiledParts] = field(repr=False)

    @classmethod
    def from_parts(cls, parts: pulumi.Output[CompiledParts]) -> ConfigOutput:
        final = parts.apply(lambda p: p.finished())
        return cls(
            canonical=final.apply(lambda c: c.canonical.decode("utf-8")),
            hash=final.apply(lambda c: c.hash),
            manifest=final.apply(lambda c: build_manifest(c.ignition)),
            version=final.apply(lambda c: c.version),
            parts=parts,
        )

    def with_access(self, access: pulumi.Input[Access]) -> ConfigOutput:
        """This config with ``access`` merged in: secret when the access holds a host key.

        ``hash`` and ``manifest`` stay exactly as secret as this config's own: what the access
        adds is public keys and generated (high-entropy) host keys, and a digest of those reveals
        nothing, while a digest of a user's short secret could be guessed back (so theirs stay
        secret). A reviewer keeps reading the manifest in ``pulumi preview --diff``.
        """
        merged = ConfigOutput.from_parts(
            pulumi.Output.all(self.parts, access).apply(lambda a: a[0].with_access(a[1]))
        )
        return replace(
            merged,
            hash=_secret_like(merged.hash, self.hash),
            manifest=_secret_like(merged.manifest, self.manifest),
            version=_secret_like(merged.version, self.version),
        )

    def secret_findings(self) -> pulumi.Output[list[SecretFinding]]:
        return self.parts.apply(lambda p: p.secret_findings())


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
    stamp: bool = True,
    warn: bool = True,
) -> CompiledConfig:
    """Compile (stamped unless ``stamp=False``); a user mistake becomes a ``RunError`` (a
    message, no traceback)."""
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
            stamp_config=stamp,
        )
    except UserError as exc:
        raise pulumi.RunError(f"flatcar config {filename}: {exc}") from None
    if warn:
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
    before any resource is registered. Which variables are secret is recorded, so a component
    that would publish the config can name the entries holding them.
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
    # Whether each variable is secret: known even while its value is not (preview).
    secret_flags = pulumi.Output.all(**{k: v.is_secret() for k, v in var_outputs.items()})  # type: ignore[arg-type]

    def build(args: dict[str, Any]) -> CompiledParts:
        src = args.pop("__source")
        flags: dict[str, bool] = args.pop("__secret") or {}

        def compile_with(values: Mapping[str, Any] | None, *, warn: bool) -> CompiledConfig:
            return compile_now(
                src,
                filename=name,
                files_dir=base,
                variables=values,
                snippets=snips,
                platform=platform,
                strict=strict,
                template=template,
                stamp=False,
                warn=warn,
            )

        compiled = compile_with(args if variables is not None else None, warn=True)
        secret = tuple(sorted(k for k, f in flags.items() if f))
        marked: str | None = compiled.canonical.decode("utf-8")
        if secret:
            try:
                probe = compile_with({**args, **{k: SECRET_MARKER + k for k in secret}}, warn=False)
                marked = probe.canonical.decode("utf-8")
            except pulumi.RunError:
                marked = None  # a marker cannot stand where the secret goes: treat it as untraced
        return CompiledParts(compiled.canonical.decode("utf-8"), marked, secret, name, compiled.source_kind)

    # Output.all carries secretness: one secret variable makes every derived value secret.
    parts = pulumi.Output.all(
        __source=pulumi.Output.from_input(source), __secret=secret_flags, **var_outputs
    ).apply(build)
    return ConfigOutput.from_parts(parts)
