"""Butane ``variant: flatcar`` to Ignition, deciding what coreos/butane decides.

Every version is one shared, table-driven translation (``butane_spec``); the version registry
(``versions``) says which Ignition spec a version emits, which fields it added and which it
forbids. Sugar is handled by small hooks: ``inline``/``local`` contents become ``data:`` URLs,
``contents_local``/``ssh_authorized_keys_local`` read files, ``trees`` expand a local directory,
``with_mount_unit`` generates a unit.

Butane's own checks happen here, on the source, at the paths Butane reports them: only one of
``source``/``inline``/``local``, the mount-unit requirements, the decimal-mode heuristic, forbidden
fields, local files. Ignition's checks run later on the output (``validate``) and are reported at
the source through the translation set this module records (``Translated.origins``).

YAML scalars are typed by the field, as Butane's YAML library (go-yaml v3) types them: a boolean
field takes ``true``/``false`` in three spellings and the YAML 1.1 ``yes``/``no``/``on``/``off``
family; an integer field takes decimal, ``0o``/``0x``/``0b`` and YAML 1.1 ``0644`` octal; a string
field takes any scalar's text.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Collection
from pathlib import Path
from typing import Any

from flatcar_infra.compiler.butane_spec import (
    BOOL,
    CUSTOM,
    INT,
    MODE,
    ROOT,
    STR,
    STRLIST,
    ListOf,
    Obj,
)
from flatcar_infra.compiler.dataurl import data_url
from flatcar_infra.compiler.translated import Origin, Translated
from flatcar_infra.compiler.units import mount_unit
from flatcar_infra.compiler.versions import (
    BUTANE_VERSIONS,
    ButaneVersion,
    describe_butane_versions,
    since,
)
from flatcar_infra.compiler.yamlsrc import (
    BINARY_TAG,
    Mark,
    SourceDoc,
    TypeMismatch,
    YMap,
    YNode,
    YScalar,
    YSeq,
    as_bytes,
    as_str,
    describe,
)
from flatcar_infra.errors import Diagnostic, Severity
from flatcar_infra.limits import LimitExceeded, LocalFiles

_MISSING: Any = object()
_TRUE_11 = frozenset({"y", "Y", "yes", "Yes", "YES", "on", "On", "ON"})
_FALSE_11 = frozenset({"n", "N", "no", "No", "NO", "off", "Off", "OFF"})
_TRUE = _TRUE_11 | {"true", "True", "TRUE"}
_FALSE = _FALSE_11 | {"false", "False", "FALSE"}
_GO_INT = re.compile(r"^[-+]?(0[bB][01]+|0[oO]?[0-7]+|0[xX][0-9a-fA-F]+|[1-9][0-9]*|0)$")
_INT_TAG = "tag:yaml.org,2002:int"


def butane_bool(node: YNode) -> bool:
    """A boolean field as go-yaml v3 decodes it: ``true``/``True``/``TRUE`` (and ``false``) as
    YAML 1.2 booleans, plus, for a field that is a boolean, the YAML 1.1 words ``y``/``yes``/``on``
    (``n``/``no``/``off``, in three spellings) — those even quoted, as they are strings to it."""
    if isinstance(node, YScalar) and node.tag != BINARY_TAG:
        words = (_TRUE, _FALSE) if node.plain else (_TRUE_11, _FALSE_11)
        if node.value in words[0]:
            return True
        if node.value in words[1]:
            return False
    raise TypeMismatch(f"expected a boolean (true/false), found {describe(node)}")


def butane_int(node: YNode) -> int:
    """An integer field as go-yaml v3 decodes it: ``644``, ``0644`` (octal), ``0o644``, ``0x1a4``,
    ``0b1``, with ``_`` separators; a quoted number is a string, not an integer."""
    if isinstance(node, YScalar) and (node.plain or node.tag == _INT_TAG):
        text = node.value.replace("_", "")
        if _GO_INT.match(text):
            sign = -1 if text.startswith("-") else 1
            digits = text.lstrip("+-")
            low = digits.lower()
            if low.startswith("0x"):
                value = int(digits[2:], 16)
            elif low.startswith("0b"):
                value = int(digits[2:], 2)
            elif low.startswith("0o"):
                value = int(digits[2:], 8)
            elif len(digits) > 1 and digits.startswith("0"):
                value = int(digits[1:], 8)
            else:
                value = int(digits)
            value *= sign
            if not -(2**63) <= value < 2**63:
                raise TypeMismatch(f"{node.value} does not fit in a 64-bit integer")
            return value
    raise TypeMismatch(f"expected an integer, found {describe(node)}")


class _Ctx:
    """State of one translation: where diagnostics and origins go, and how to read local files."""

    def __init__(self, filename: str, version: ButaneVersion, files_dir: Path | None) -> None:
        self.filename = filename
        self.version = version
        self.files_dir = files_dir
        self.local = LocalFiles()
        self._files_root: Path | None = None
        self.diags: list[Diagnostic] = []
        self.origins: dict[str, Origin] = {}
        self.mounts: list[tuple[dict[str, Any], YNode, str]] = []
        self.luks_tang: set[str] = set()

    def report(self, severity: Severity, where: Mark, message: str, path: str) -> None:
        self.diags.append(Diagnostic(self.filename, where.line, where.col, severity, message, path))

    def error(self, where: Mark, message: str, path: str) -> None:
        self.report(Severity.ERROR, where, message, path)

    def warn(self, where: Mark, message: str, path: str) -> None:
        self.report(Severity.WARNING, where, message, path)

    def origin(self, opath: str, ipath: str, where: Mark) -> None:
        self.origins[opath] = Origin(ipath, where)

    def files_root(self, where: Mark, path: str) -> Path | None:
        if self.files_dir is None:
            self.error(
                where,
                "local file paths are relative to a files directory that must be specified "
                "with -d/--files-dir",
                path,
            )
            return None
        if self._files_root is None:
            self._files_root = self.files_dir.resolve()
        return self._files_root

    def local_path(self, node: YNode, ipath: str, where: Mark | None = None) -> Path | None:
        """Resolve a ``local`` reference inside the files directory (symlinks too), or report why not."""
        at = where or node.mark
        try:
            rel = as_str(node)
        except (TypeMismatch, UnicodeDecodeError) as exc:
            self.error(node.mark, str(exc), ipath)
            return None
        root = self.files_root(at, ipath)
        if root is None:
            return None
        target = (root / rel.lstrip("/")).resolve()
        if target != root and not target.is_relative_to(root):
            self.error(at, f"local file path {rel!r} traverses outside the files directory", ipath)
            return None
        return target

    def read_local(self, node: YNode, ipath: str) -> bytes | None:
        target = self.local_path(node, ipath)
        if target is None:
            return None
        name = as_str(node)
        try:
            return self.local.read(target)  # a directory, FIFO or device is refused, never blocks
        except LimitExceeded as exc:
            self.error(node.mark, f"local file {name!r} is {exc}", ipath)
        except OSError as exc:
            self.error(node.mark, f"cannot read local file {name!r}: {exc.strerror}", ipath)
        return None


def translate_butane(doc: SourceDoc, *, files_dir: Path | None) -> Translated:
    """Translate a parsed Butane flatcar document; never raises on bad input."""
    root = doc.root
    out = Translated(None, list(doc.diagnostics))
    fname = doc.filename
    if not isinstance(root, YMap):
        where = root.mark if root is not None else Mark(1, 1)
        out.diagnostics.append(
            Diagnostic(fname, where.line, where.col, Severity.ERROR, "a Butane config must be a mapping", "$")
        )
        return out
    variant = _header(root, "variant", fname, out.diagnostics)
    version_text = _header(root, "version", fname, out.diagnostics)
    if variant is None or version_text is None:
        return out
    if variant != "flatcar":
        _at(
            out,
            fname,
            root,
            "variant",
            f"unsupported variant {variant!r}: this compiler handles 'variant: flatcar' "
            f"(versions {describe_butane_versions()})",
        )
        return out
    version = BUTANE_VERSIONS.get(version_text)
    if version is None:
        _at(
            out,
            fname,
            root,
            "version",
            f"No translator exists for variant flatcar with version {version_text}: use "
            f"{describe_butane_versions()}",
        )
        return out
    ctx = _Ctx(fname, version, files_dir)
    body = _obj(ctx, root, ROOT, "$", "$", "")
    document: dict[str, Any] = {}
    ignition = body.get("ignition", {})
    ignition["version"] = version.ignition
    ctx.origin("$.ignition.version", "$.version", root.items["version"].mark)
    document["ignition"] = ignition
    for key in ("storage", "systemd", "passwd", "kernelArguments"):
        if key in body:
            document[key] = body[key]
    _add_mount_units(ctx, document)
    storage_node = root.get("storage")
    trees = storage_node.get("trees") if isinstance(storage_node, YMap) else None
    if isinstance(trees, YSeq):
        _expand_trees(ctx, trees, document)
    _prune(document)
    out.document = document
    out.diagnostics.extend(ctx.diags)
    out.origins = ctx.origins
    return out


def _header(root: YMap, key: str, fname: str, diags: list[Diagnostic]) -> str | None:
    node = root.get(key)
    if node is None or (isinstance(node, YScalar) and node.is_null):
        diags.append(
            Diagnostic(
                fname,
                root.mark.line,
                root.mark.col,
                Severity.ERROR,
                f"missing {key!r} (a flatcar config starts with 'variant: flatcar' and 'version: "
                f"{next(iter(BUTANE_VERSIONS))}')",
                f"$.{key}",
            )
        )
        return None
    try:
        return as_str(node)
    except (TypeMismatch, UnicodeDecodeError) as exc:
        diags.append(Diagnostic(fname, node.mark.line, node.mark.col, Severity.ERROR, str(exc), f"$.{key}"))
        return None


def _at(out: Translated, fname: str, root: YMap, key: str, message: str) -> None:
    m = root.items[key].mark
    out.diagnostics.append(Diagnostic(fname, m.line, m.col, Severity.ERROR, message, f"$.{key}"))


# --- the generic, table-driven walk ----------------------------------------------------------


def _obj(ctx: _Ctx, node: YNode, spec: Obj, ipath: str, opath: str, spath: str) -> dict[str, Any]:
    """``spath``: the field path without list indices (``storage.luks``), as the registry names it."""
    if not isinstance(node, YMap):
        ctx.error(node.mark, f"expected a mapping, found {describe(node)}", ipath)
        return {}
    out: dict[str, Any] = {}
    for key, child in node.items.items():
        kpath = f"{ipath}.{key}"
        field = spec.fields.get(key)
        fpath = f"{spath}.{key}" if spath else key
        if field is None:
            hint = spec.hints.get(key)
            if hint is not None:
                ctx.error(node.keys[key], hint, kpath)
            else:
                ctx.warn(
                    node.keys[key], f"unused key {key!r} (not part of flatcar {ctx.version.version})", kpath
                )
            continue
        if fpath in ctx.version.unavailable:
            first = since(fpath)
            ctx.error(
                node.keys[key],
                f"{key!r} is not supported in flatcar {ctx.version.version}; it needs version "
                f"{first.version if first else '?'} or newer",
                kpath,
            )
            continue
        if field.type is CUSTOM:
            continue
        value = _value(ctx, field.type, child, kpath, f"{opath}.{field.out or '~' + key}", fpath)
        if value is _MISSING or field.out is None:
            continue
        forbidden = ctx.version.forbidden.get(fpath)
        if forbidden is not None and not _is_zero(value):
            ctx.error(node.keys[key], forbidden, kpath)
            continue
        out[field.out] = value
    ctx.origin(opath, ipath, node.mark)
    if spec.hook is not None:
        _HOOKS[spec.hook](ctx, node, out, ipath, opath)
    return out


def _is_zero(value: Any) -> bool:
    """Go's ``IsZero`` on what the field decoded to: only an empty object is unset."""
    return isinstance(value, dict) and not value


def _value(ctx: _Ctx, ftype: Any, node: YNode, ipath: str, opath: str, spath: str) -> Any:
    if isinstance(node, YScalar) and node.is_null:
        return _MISSING
    ctx.origin(opath, ipath, node.mark)
    try:
        if ftype is STR:
            return as_str(node)
        if ftype is BOOL:
            return butane_bool(node)
        if ftype is INT:
            return butane_int(node)
        if ftype is MODE:
            return _mode(ctx, node, ipath)
        if ftype is STRLIST:
            if not isinstance(node, YSeq):
                raise TypeMismatch(f"expected a list of strings, found {describe(node)}")
            items = []
            for i, item in enumerate(node.items):
                ctx.origin(f"{opath}.{i}", f"{ipath}.{i}", item.mark)
                items.append(as_str(item))
            return items
        if isinstance(ftype, Obj):
            return _obj(ctx, node, ftype, ipath, opath, spath)
        if isinstance(ftype, ListOf):
            if not isinstance(node, YSeq):
                raise TypeMismatch(f"expected a list, found {describe(node)}")
            return [
                _obj(ctx, item, ftype.item, f"{ipath}.{i}", f"{opath}.{i}", spath)
                for i, item in enumerate(node.items)
            ]
    except (TypeMismatch, UnicodeDecodeError) as exc:
        ctx.error(
            node.mark, str(exc) if isinstance(exc, TypeMismatch) else "!!binary data is not UTF-8", ipath
        )
        return _MISSING
    raise AssertionError(f"unknown field type {ftype!r}")  # pragma: no cover - table bug


def _mode(ctx: _Ctx, node: YNode, ipath: str) -> int:
    value = butane_int(node)
    directory = ".directories." in ipath
    octal = decimal_mode_as_octal(value)
    if octal is not None and not typical_mode(value, directory) and typical_mode(octal, directory):
        ctx.warn(
            node.mark,
            f"mode {value} is decimal (= 0{value:o}); did you mean 0{value}? It is an unreasonable "
            "mode that would be reasonable in octal: write modes with a leading zero",
            ipath,
        )
    return value


def decimal_mode_as_octal(mode: int) -> int | None:
    """``755`` read as the octal it was probably meant to be (``0o755``); ``None`` if it cannot be."""
    if not 0 <= mode <= 7777:
        return None
    digits = f"{mode:04d}"
    if any(d > "7" for d in digits):
        return None
    return int(digits, 8)


def typical_mode(mode: int, directory: bool) -> bool:
    """Butane's ``isTypicalMode``: a mode a person plausibly means (readable by someone, no odd
    permission holes, executable directories, no setuid directory or sticky file, ...)."""
    if mode == 0:
        return True
    had_r = had_w = had_x = False
    for perm in (mode & 0o7, (mode >> 3) & 0o7, (mode >> 6) & 0o7):  # other, group, user
        r, w, x = bool(perm & 4), bool(perm & 2), bool(perm & 1)
        if (not r and had_r) or (not w and had_w) or (not x and had_x):
            return False
        if x and had_r and not had_x:
            return False
        if (w or x) and not r:
            return False
        had_r, had_w, had_x = had_r or r, had_w or w, had_x or x
    if not had_r:
        return False
    if directory:
        if not had_x or mode & 0o4000:
            return False
        if mode & 0o3000 and not had_w:
            return False
    else:
        if mode & 0o6000 and (not had_x or mode & 0o2):
            return False
        if mode & 0o1000:
            return False
    return True


# --- hooks: the sugar Butane adds on top of Ignition -------------------------------------------


def _is_null(node: YNode | None) -> bool:
    return node is None or (isinstance(node, YScalar) and node.is_null)


def _resource(ctx: _Ctx, node: YMap, out: dict[str, Any], ipath: str, opath: str) -> None:
    given = [k for k in ("local", "inline", "source") if not _is_null(node.items.get(k))]
    if len(given) > 1:
        # Butane reports at the last of local, inline, source that is set
        key = given[-1]
        ctx.error(
            node.items[key].mark,
            f"only one of the following can be set: inline, local, source (found {', '.join(sorted(given))})",
            f"{ipath}.{key}",
        )
        return
    if not given or given[0] == "source":
        return
    key = given[0]
    src = node.items[key]
    data: bytes | None
    if key == "inline":
        try:
            data = as_bytes(src)
        except TypeMismatch as exc:
            ctx.error(src.mark, str(exc), f"{ipath}.inline")
            return
    else:
        data = ctx.read_local(src, f"{ipath}.local")
        if data is None:
            return
    if ipath.startswith("$.ignition.config") and not _check_embedded_config(ctx, src, data, ipath, key):
        return
    if out.get("compression"):
        url, _ = data_url(data, allow_compression=False)
    else:
        # An explicit "" (as Butane writes) keeps a merged child from inheriting a parent's gzip.
        url, compression = data_url(data, allow_compression=True)
        out["compression"] = compression or ""
        ctx.origin(f"{opath}.compression", f"{ipath}.{key}", src.mark)
    out["source"] = url
    ctx.origin(f"{opath}.source", f"{ipath}.{key}", src.mark)


def _check_embedded_config(ctx: _Ctx, src: YNode, data: bytes, ipath: str, key: str) -> bool:
    """An inline/local merged or replacing config is checked as Butane does: against this
    version's own Ignition spec; another version is only a warning (it is not validated)."""
    from flatcar_infra.compiler.validate import check_document

    try:
        doc = json.loads(data)
    except ValueError as exc:
        ctx.error(
            src.mark, f"config is not valid: embedded Ignition config does not parse: {exc}", f"{ipath}.{key}"
        )
        return False
    version = doc.get("ignition", {}).get("version") if isinstance(doc, dict) else None
    if isinstance(doc, dict) and isinstance(doc.get("ignition"), dict) and version != ctx.version.ignition:
        ctx.warn(
            src.mark,
            f"skipping validation for the merge/replace ignition config due to an unknown version "
            f"{version!r} (flatcar {ctx.version.version} validates Ignition {ctx.version.ignition})",
            f"{ipath}.version",
        )
        return True
    ok = True
    for severity, path, message in check_document(doc):
        if severity is Severity.ERROR:
            ok = False
            ctx.error(src.mark, f"embedded Ignition config: {message} [{path}]", f"{ipath}.{key}")
        else:
            ctx.warn(src.mark, f"embedded Ignition config: {message} [{path}]", f"{ipath}.{key}")
    return ok


def _contents_local(ctx: _Ctx, node: YMap, out: dict[str, Any], ipath: str, opath: str) -> None:
    local = node.items.get("contents_local")
    if _is_null(local):
        return
    assert local is not None
    lpath = f"{ipath}.contents_local"
    if not _is_null(node.items.get("contents")):
        ctx.error(
            node.keys["contents_local"],
            "only one of the following can be set: contents, contents_local",
            lpath,
        )
        return
    data = ctx.read_local(local, lpath)
    if data is None:
        return
    try:
        out["contents"] = data.decode("utf-8")
    except UnicodeDecodeError:
        ctx.error(local.mark, "contents_local must be a UTF-8 text file", lpath)
        return
    ctx.origin(f"{opath}.contents", lpath, local.mark)


_LINE_SPLIT = re.compile(r"\r?\n")


def _user(ctx: _Ctx, node: YMap, out: dict[str, Any], ipath: str, opath: str) -> None:
    local = node.items.get("ssh_authorized_keys_local")
    if _is_null(local):
        return
    assert local is not None
    lpath = f"{ipath}.ssh_authorized_keys_local"
    if not isinstance(local, YSeq):
        ctx.error(local.mark, f"expected a list of file names, found {describe(local)}", lpath)
        return
    if not local.items:
        return
    ctx.origin(f"{opath}.sshAuthorizedKeys", lpath, local.mark)
    if ctx.files_root(node.keys["ssh_authorized_keys_local"], lpath) is None:
        return
    keys: list[str] = out.setdefault("sshAuthorizedKeys", [])
    for i, item in enumerate(local.items):
        data = ctx.read_local(item, f"{lpath}.{i}")
        if data is None:
            continue
        for line in _LINE_SPLIT.split(data.decode("utf-8", errors="replace")):
            if line:
                ctx.origin(f"{opath}.sshAuthorizedKeys.{len(keys)}", f"{lpath}.{i}", item.mark)
                keys.append(line)


def _filesystem(ctx: _Ctx, node: YMap, out: dict[str, Any], ipath: str, opath: str) -> None:
    wmu = node.items.get("with_mount_unit")
    if _is_null(wmu):
        return
    assert wmu is not None
    try:
        wanted = butane_bool(wmu)
    except TypeMismatch as exc:
        ctx.error(wmu.mark, str(exc), f"{ipath}.with_mount_unit")
        return
    if not wanted:
        return
    fmt = out.get("format")
    if not fmt:
        ctx.error(wmu.mark, "format is required if with_mount_unit is true", f"{ipath}.format")
    elif fmt != "swap" and not out.get("path"):
        ctx.error(
            wmu.mark, "path is required if with_mount_unit is true and format is not swap", f"{ipath}.path"
        )
    elif "device" in out:
        ctx.mounts.append((out, wmu, ipath))


def _luks(ctx: _Ctx, node: YMap, out: dict[str, Any], ipath: str, opath: str) -> None:
    clevis = out.get("clevis")
    if clevis and clevis.get("tang") and "name" in out:
        ctx.luks_tang.add(out["name"])


_HOOKS = {
    "resource": _resource,
    "contents_local": _contents_local,
    "user": _user,
    "filesystem": _filesystem,
    "luks": _luks,
}


# --- whole-document passes ---------------------------------------------------------------------


def _add_mount_units(ctx: _Ctx, document: dict[str, Any]) -> None:
    """Generated units come first; a user unit of the same name is merged over it (Butane does
    the same through an Ignition merge of the generated config and the user's)."""
    if not ctx.mounts:
        return
    generated: list[dict[str, Any]] = []
    gen_from: list[tuple[str, Mark]] = []
    for fs, wmu, ipath in ctx.mounts:
        device = fs["device"]
        remote = any(device in (f"/dev/mapper/{n}", f"/dev/disk/by-id/dm-name-{n}") for n in ctx.luks_tang)
        unit = mount_unit(
            device=device,
            fs_format=fs["format"],
            path=fs.get("path"),
            mount_options=fs.get("mountOptions") or (),
            remote=remote,
        )
        generated.append({"name": unit.name, "enabled": True, "contents": unit.contents})
        gen_from.append((f"{ipath}.with_mount_unit", wmu.mark))
    systemd = document.setdefault("systemd", {})
    user_units: list[dict[str, Any]] = systemd.get("units", [])
    old = {k: v for k, v in ctx.origins.items() if k.startswith("$.systemd.units.")}
    for k in old:
        del ctx.origins[k]
    merged = list(generated)
    by_name = {u["name"]: i for i, u in enumerate(generated)}
    for j, user_unit in enumerate(user_units):
        name = user_unit.get("name")
        if name in by_name:
            i = by_name[name]
            merged[i] = {**merged[i], **user_unit}
        else:
            i = len(merged)
            merged.append(user_unit)
        prefix = f"$.systemd.units.{j}"
        for k, v in old.items():
            if k == prefix or k.startswith(prefix + "."):
                ctx.origins[f"$.systemd.units.{i}" + k[len(prefix) :]] = v
    for i, (src, mark) in enumerate(gen_from):
        for k in ("", ".name", ".enabled", ".contents"):
            ctx.origins.setdefault(f"$.systemd.units.{i}{k}", Origin(src, mark))
    ctx.origins.setdefault("$.systemd.units", Origin("$.storage.filesystems", gen_from[0][1]))
    systemd["units"] = merged


def _expand_trees(ctx: _Ctx, trees: YSeq, document: dict[str, Any]) -> None:
    """Embed local directory trees as files and links, walked as Go's ``filepath.Walk`` walks
    (names in byte order, depth first), so the output order is Butane's.

    Entries the user lists explicitly (files without contents, links without target) only get
    their contents/target filled in, keeping their own mode and owner.
    """
    storage = document.setdefault("storage", {})
    files: list[dict[str, Any]] = storage.setdefault("files", [])
    links: list[dict[str, Any]] = storage.setdefault("links", [])
    file_at = {f.get("path"): i for i, f in enumerate(files)}
    link_at = {lk.get("path"): i for i, lk in enumerate(links)}
    dir_paths = {d.get("path") for d in storage.get("directories", [])}
    for i, tree in enumerate(trees.items):
        ipath = f"$.storage.trees.{i}"
        if not isinstance(tree, YMap):
            continue
        local = tree.items.get("local")
        if _is_null(local) or (isinstance(local, YScalar) and local.value == ""):
            ctx.error(tree.mark, "local is required", ipath)
            continue
        assert local is not None
        if ctx.files_dir is None:
            ctx.files_root(tree.mark, ipath)
            return  # Butane stops at the first tree without a files directory
        base = ctx.local_path(local, ipath, tree.mark)
        if base is None:
            continue
        if not base.is_dir():
            what = (
                "root of tree must be a directory"
                if base.exists()
                else f"stat {as_str(local)}: no such file or directory"
            )
            ctx.error(tree.mark, what, ipath)
            continue
        dest_node = tree.items.get("path")
        try:
            dest_base = "/" if _is_null(dest_node) else as_str(dest_node)  # type: ignore[arg-type]
        except TypeMismatch as exc:
            ctx.error(tree.mark, str(exc), f"{ipath}.path")
            continue
        for src, rel in _walk(base):
            dest = _go_join(dest_base or "/", rel)
            try:
                st = src.lstat()
            except OSError as exc:
                ctx.error(tree.mark, f"cannot read {rel}: {exc.strerror}", ipath)
                continue
            if stat.S_ISREG(st.st_mode):
                idx = _tree_entry(ctx, tree, ipath, dest, "files", files, file_at, (link_at, dir_paths))
                if idx is None:
                    continue
                entry = files[idx]
                try:
                    data = ctx.local.read(src)
                except (OSError, LimitExceeded) as exc:
                    why = exc.strerror if isinstance(exc, OSError) else exc
                    ctx.error(tree.mark, f"cannot read {rel}: {why}", ipath)
                    continue
                contents = entry.setdefault("contents", {})
                if contents.get("compression"):
                    contents["source"] = data_url(data, allow_compression=False)[0]
                else:
                    url, compression = data_url(data, allow_compression=True)
                    contents["source"] = url
                    contents["compression"] = compression or ""
                if "mode" not in entry:
                    entry["mode"] = 0o755 if st.st_mode & 0o111 else 0o644
                _tree_origins(
                    ctx,
                    f"$.storage.files.{idx}",
                    ipath,
                    tree.mark,
                    (".contents", ".contents.source", ".contents.compression", ".mode"),
                )
            elif stat.S_ISLNK(st.st_mode):
                idx = _tree_entry(ctx, tree, ipath, dest, "links", links, link_at, (file_at, dir_paths))
                if idx is None:
                    continue
                links[idx]["target"] = os.readlink(src)
                _tree_origins(ctx, f"$.storage.links.{idx}", ipath, tree.mark, (".target",))
            else:
                ctx.error(
                    tree.mark, f"trees may only contain files, directories, and symlinks ({rel})", ipath
                )


def _filled(kind: str, entry: dict[str, Any]) -> bool:
    """Whether the user's entry already has what a tree would give it."""
    return bool((entry.get("contents") or {}).get("source") if kind == "files" else entry.get("target"))


def _tree_entry(
    ctx: _Ctx,
    tree: YMap,
    ipath: str,
    dest: str,
    kind: str,
    entries: list[dict[str, Any]],
    at: dict[Any, int],
    others: tuple[Collection[Any], ...],
) -> int | None:
    """The index of the ``kind`` entry a tree fills at ``dest``: the user's own entry when it has
    no contents/target yet, else a new one; ``None`` (reported, as Butane does) when the path is
    taken by a filled entry or a node of another kind."""
    idx = at.get(dest)
    if (idx is not None and _filled(kind, entries[idx])) or (idx is None and any(dest in o for o in others)):
        ctx.error(
            tree.mark, f"matching filesystem node has existing contents or different type: {dest}", ipath
        )
        return None
    if idx is None:
        idx = at[dest] = len(entries)
        entries.append({"path": dest})
        _tree_origins(ctx, f"$.storage.{kind}.{idx}", ipath, tree.mark, ("", ".path"))
    return idx


def _tree_origins(ctx: _Ctx, opath: str, ipath: str, mark: Mark, suffixes: tuple[str, ...]) -> None:
    for s in suffixes:
        ctx.origins.setdefault(opath + s, Origin(ipath, mark))


def _go_join(base: str, rel: str) -> str:
    """Go's ``path.Join(base, rel)``: joined and cleaned."""
    from flatcar_infra.compiler.validate import go_clean

    joined = f"{base}/{rel}" if base else rel
    return go_clean(joined) if joined.startswith("/") else os.path.normpath(joined)


def _walk(base: Path) -> list[tuple[Path, str]]:
    """Every non-directory entry below ``base`` (symlinks not followed), in ``filepath.Walk`` order:
    each directory's names sorted by their bytes, a subdirectory's entries where its name sorts."""
    found: list[tuple[Path, str]] = []

    def visit(d: Path, rel: str) -> None:
        for name in sorted(os.listdir(d), key=os.fsencode):
            p = d / name
            r = f"{rel}/{name}" if rel else name
            if p.is_dir() and not p.is_symlink():
                visit(p, r)
            else:
                found.append((p, r))

    visit(base, "")
    return found


def _prune(doc: dict[str, Any]) -> None:
    """Drop empty objects and lists the way Butane's output omits them."""
    for key in list(doc):
        value = doc[key]
        if isinstance(value, dict):
            _prune(value)
            if not value:
                del doc[key]
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    _prune(item)
            if not value:
                del doc[key]
