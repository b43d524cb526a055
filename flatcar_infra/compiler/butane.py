"""Butane ``variant: flatcar`` (1.0.0 → Ignition 3.3.0, 1.1.0 → 3.4.0) to Ignition, like coreos/butane.

Both spec versions are one shared translation driven by a table of fields (``butane_spec``); each
field names the spec version that introduced it, so a newer field in an older config is an error,
and a key that no version knows is a warning. Sugar is handled by small hooks: ``inline``/``local``
contents become ``data:`` URLs, ``contents_local``/``ssh_authorized_keys_local`` read files,
``trees`` expand a local directory, ``with_mount_unit`` generates a unit.

Every output JSON path is recorded with the source position that produced it (``Translated.marks``)
so that validation of the *output* can still point at the user's YAML line.
"""

from __future__ import annotations

import json
import os
import re
import stat
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
    parse_version,
)
from flatcar_infra.compiler.dataurl import data_url
from flatcar_infra.compiler.translated import Translated
from flatcar_infra.compiler.units import mount_unit
from flatcar_infra.compiler.yamlsrc import (
    Mark,
    SourceDoc,
    TypeMismatch,
    YMap,
    YNode,
    YScalar,
    YSeq,
    as_bool,
    as_bytes,
    as_int,
    as_str,
    describe,
    is_decimal_literal,
)
from flatcar_infra.errors import Diagnostic, Severity
from flatcar_infra.limits import LimitExceeded, LocalFiles

# Butane flatcar version → Ignition spec version it emits.
IGNITION_FOR = {"1.0.0": "3.3.0", "1.1.0": "3.4.0"}

_MISSING: Any = object()


class _Ctx:
    """State of one translation: where diagnostics and marks go, and how to read local files."""

    def __init__(self, filename: str, version: str, files_dir: Path | None) -> None:
        self.filename = filename
        self.version = version
        self.version_key = parse_version(version)
        self.files_dir = files_dir
        self.local = LocalFiles()
        self._files_root: Path | None = None
        self.diags: list[Diagnostic] = []
        self.marks: dict[str, Mark] = {}
        self.mounts: list[tuple[dict[str, Any], YNode, str]] = []
        self.luks_tang: set[str] = set()

    def report(self, severity: Severity, where: Mark, message: str, path: str) -> None:
        self.diags.append(Diagnostic(self.filename, where.line, where.col, severity, message, path))

    def error(self, where: Mark, message: str, path: str) -> None:
        self.report(Severity.ERROR, where, message, path)

    def warn(self, where: Mark, message: str, path: str) -> None:
        self.report(Severity.WARNING, where, message, path)

    def files_root(self, where: Mark, path: str) -> Path | None:
        if self.files_dir is None:
            self.error(
                where, "a local file is referenced but no files directory was given (use --files-dir)", path
            )
            return None
        if self._files_root is None:
            self._files_root = self.files_dir.resolve()
        return self._files_root

    def local_path(self, node: YNode, ipath: str) -> Path | None:
        """Resolve a ``local`` reference inside the files directory (symlinks too), or report why not."""
        try:
            rel = as_str(node)
        except TypeMismatch as exc:
            self.error(node.mark, str(exc), ipath)
            return None
        root = self.files_root(node.mark, ipath)
        if root is None:
            return None
        target = (root / rel.lstrip("/")).resolve()
        if target != root and not target.is_relative_to(root):
            self.error(node.mark, f"local path {rel!r} is outside the files directory", ipath)
            return None
        return target

    def read_local(self, node: YNode, ipath: str) -> bytes | None:
        target = self.local_path(node, ipath)
        if target is None:
            return None
        try:
            return self.local.read(target)  # a directory, FIFO or device is refused, never blocks
        except LimitExceeded as exc:
            self.error(node.mark, f"local path {as_str(node)!r} is {exc}", ipath)
        except OSError as exc:
            self.error(node.mark, f"cannot read local file {as_str(node)!r}: {exc.strerror}", ipath)
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
    version = _header(root, "version", fname, out.diagnostics)
    if variant is None or version is None:
        return out
    if variant != "flatcar":
        _at(
            out,
            fname,
            root,
            "variant",
            f"unsupported variant {variant!r}: this compiler handles "
            "'variant: flatcar' (versions 1.0.0 and 1.1.0)",
        )
        return out
    if version not in IGNITION_FOR:
        _at(
            out,
            fname,
            root,
            "version",
            f"unsupported flatcar version {version!r}: use 1.0.0 (Ignition 3.3.0) or 1.1.0 (Ignition 3.4.0)",
        )
        return out
    ctx = _Ctx(fname, version, files_dir)
    body = _obj(ctx, root, ROOT, "$", "$")
    document: dict[str, Any] = {}
    ignition = body.get("ignition", {})
    ignition["version"] = IGNITION_FOR[version]
    ctx.marks["$.ignition.version"] = root.items["version"].mark
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
    out.marks = ctx.marks
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
                f"missing {key!r} (a flatcar config starts with 'variant: flatcar' "
                "and 'version: 1.0.0' or '1.1.0')",
                f"$.{key}",
            )
        )
        return None
    try:
        return as_str(node)
    except TypeMismatch as exc:
        diags.append(Diagnostic(fname, node.mark.line, node.mark.col, Severity.ERROR, str(exc), f"$.{key}"))
        return None


def _at(out: Translated, fname: str, root: YMap, key: str, message: str) -> None:
    m = root.items[key].mark
    out.diagnostics.append(Diagnostic(fname, m.line, m.col, Severity.ERROR, message, f"$.{key}"))


# --- the generic, table-driven walk ----------------------------------------------------------


def _obj(ctx: _Ctx, node: YNode, spec: Obj, ipath: str, opath: str) -> dict[str, Any]:
    if not isinstance(node, YMap):
        ctx.error(node.mark, f"expected a mapping, found {describe(node)}", ipath)
        return {}
    out: dict[str, Any] = {}
    for key, child in node.items.items():
        kpath = f"{ipath}.{key}"
        field = spec.fields.get(key)
        if field is None:
            hint = spec.hints.get(key)
            if hint is not None:
                ctx.error(node.keys[key], hint, kpath)
            else:
                ctx.warn(node.keys[key], f"unknown key {key!r}", kpath)
            continue
        if field.since_key > ctx.version_key:
            ctx.error(
                node.keys[key],
                f"{key!r} is not supported in flatcar {ctx.version}; it needs version {field.since} or newer",
                kpath,
            )
            continue
        if field.type is CUSTOM:
            continue
        value = _value(ctx, field.type, child, kpath, f"{opath}.{field.out or '~' + key}")
        if value is not _MISSING and field.out is not None:
            out[field.out] = value
    ctx.marks[opath] = node.mark
    if spec.hook is not None:
        _HOOKS[spec.hook](ctx, node, out, ipath, opath)
    return out


def _value(ctx: _Ctx, ftype: Any, node: YNode, ipath: str, opath: str) -> Any:
    if isinstance(node, YScalar) and node.is_null:
        return _MISSING
    ctx.marks[opath] = node.mark
    try:
        if ftype is STR:
            return as_str(node)
        if ftype is BOOL:
            return as_bool(node)
        if ftype is INT:
            return as_int(node)
        if ftype is MODE:
            return _mode(ctx, node, ipath)
        if ftype is STRLIST:
            if not isinstance(node, YSeq):
                raise TypeMismatch(f"expected a list of strings, found {describe(node)}")
            items = []
            for i, item in enumerate(node.items):
                ctx.marks[f"{opath}.{i}"] = item.mark
                items.append(as_str(item))
            return items
        if isinstance(ftype, Obj):
            return _obj(ctx, node, ftype, ipath, opath)
        if isinstance(ftype, ListOf):
            if not isinstance(node, YSeq):
                raise TypeMismatch(f"expected a list, found {describe(node)}")
            return [
                _obj(ctx, item, ftype.item, f"{ipath}.{i}", f"{opath}.{i}")
                for i, item in enumerate(node.items)
            ]
    except TypeMismatch as exc:
        ctx.error(node.mark, str(exc), ipath)
        return _MISSING
    raise AssertionError(f"unknown field type {ftype!r}")  # pragma: no cover - table bug


def _mode(ctx: _Ctx, node: YNode, ipath: str) -> int:
    value = as_int(node)
    if is_decimal_literal(node) and set(str(value)) <= set("01234567") and value > 7:
        ctx.warn(
            node.mark,
            f"mode {value} is decimal (= 0{value:o}); did you mean 0{value}? "
            "Write modes in octal with a leading 0",
            ipath,
        )
    return value


# --- hooks: the sugar Butane adds on top of Ignition -------------------------------------------


def _is_null(node: YNode) -> bool:
    return isinstance(node, YScalar) and node.is_null


def _resource(ctx: _Ctx, node: YMap, out: dict[str, Any], ipath: str, opath: str) -> None:
    given = [k for k in ("source", "inline", "local") if k in node.items and not _is_null(node.items[k])]
    if len(given) > 1:
        ctx.error(
            node.mark, f"only one of source, inline and local may be given (found {', '.join(given)})", ipath
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
    if ipath.startswith("$.ignition.config"):
        _check_embedded_config(ctx, src, data, f"{ipath}.{key}")
    if out.get("compression"):
        url, _ = data_url(data, allow_compression=False)
    else:
        # An explicit "" (as Butane writes) keeps a merged child from inheriting a parent's gzip.
        url, compression = data_url(data, allow_compression=True)
        out["compression"] = compression or ""
        ctx.marks[f"{opath}.compression"] = src.mark
    out["source"] = url
    ctx.marks[f"{opath}.source"] = src.mark


def _check_embedded_config(ctx: _Ctx, src: YNode, data: bytes, ipath: str) -> None:
    """An inline/local merged or replacing config is ours to check (Butane does too)."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        ctx.error(src.mark, f"embedded Ignition config is not valid JSON: {exc}", ipath)
        return
    from flatcar_infra.compiler.validate import validate_document

    for d in validate_document(doc, filename=ctx.filename):
        if d.is_error:
            ctx.error(src.mark, f"embedded Ignition config: {d.message} [{d.path}]", ipath)


def _contents_local(ctx: _Ctx, node: YMap, out: dict[str, Any], ipath: str, opath: str) -> None:
    local = node.items.get("contents_local")
    if local is None or (isinstance(local, YScalar) and local.is_null):
        return
    if ctx.version_key < (1, 1, 0):
        return  # already reported as a newer field
    if "contents" in out:
        ctx.error(
            node.keys["contents_local"],
            "contents and contents_local are mutually exclusive",
            f"{ipath}.contents_local",
        )
        return
    data = ctx.read_local(local, f"{ipath}.contents_local")
    if data is None:
        return
    try:
        out["contents"] = data.decode("utf-8")
    except UnicodeDecodeError:
        ctx.error(local.mark, "contents_local must be a UTF-8 text file", f"{ipath}.contents_local")
        return
    ctx.marks[f"{opath}.contents"] = local.mark


_LINE_SPLIT = re.compile(r"\r?\n")


def _user(ctx: _Ctx, node: YMap, out: dict[str, Any], ipath: str, opath: str) -> None:
    local = node.items.get("ssh_authorized_keys_local")
    if local is None or ctx.version_key < (1, 1, 0):
        return
    lpath = f"{ipath}.ssh_authorized_keys_local"
    if not isinstance(local, YSeq):
        if not (isinstance(local, YScalar) and local.is_null):
            ctx.error(local.mark, f"expected a list of file names, found {describe(local)}", lpath)
        return
    keys: list[str] = out.setdefault("sshAuthorizedKeys", [])
    for i, item in enumerate(local.items):
        data = ctx.read_local(item, f"{lpath}.{i}")
        if data is None:
            continue
        for line in _LINE_SPLIT.split(data.decode("utf-8", errors="replace")):
            if line:
                ctx.marks[f"{opath}.sshAuthorizedKeys.{len(keys)}"] = item.mark
                keys.append(line)


def _filesystem(ctx: _Ctx, node: YMap, out: dict[str, Any], ipath: str, opath: str) -> None:
    wmu = node.items.get("with_mount_unit")
    if wmu is None or (isinstance(wmu, YScalar) and wmu.is_null):
        return
    try:
        wanted = as_bool(wmu)
    except TypeMismatch as exc:
        ctx.error(wmu.mark, str(exc), f"{ipath}.with_mount_unit")
        return
    if not wanted:
        return
    fmt = out.get("format")
    if fmt is None:
        ctx.error(wmu.mark, "with_mount_unit needs the filesystem's format", f"{ipath}.with_mount_unit")
    elif fmt != "swap" and not out.get("path"):
        ctx.error(
            wmu.mark,
            "with_mount_unit needs the filesystem's path (where to mount it)",
            f"{ipath}.with_mount_unit",
        )
    elif "device" in out:
        ctx.mounts.append((out, wmu, ipath))


def _luks(ctx: _Ctx, node: YMap, out: dict[str, Any], ipath: str, opath: str) -> None:
    clevis = out.get("clevis")
    if clevis is not None:
        ctx.warn(
            node.keys["clevis"],
            "clevis is not part of Butane flatcar 1.0.0/1.1.0 (Butane "
            "accepts it from 1.2.0-experimental) and needs Flatcar >= 3941 with clevis in the "
            "initramfs",
            f"{ipath}.clevis",
        )
        if clevis.get("tang") and "name" in out:
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
    gen_marks: list[Mark] = []
    for fs, wmu, _ in ctx.mounts:
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
        gen_marks.append(wmu.mark)
    systemd = document.setdefault("systemd", {})
    user_units: list[dict[str, Any]] = systemd.get("units", [])
    old_marks = {k: v for k, v in ctx.marks.items() if k.startswith("$.systemd.units.")}
    for k in old_marks:
        del ctx.marks[k]
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
        for k, v in old_marks.items():
            if k == prefix or k.startswith(prefix + "."):
                ctx.marks[f"$.systemd.units.{i}" + k[len(prefix) :]] = v
    for i, m in enumerate(gen_marks):
        for k in ("", ".name", ".enabled", ".contents"):
            ctx.marks.setdefault(f"$.systemd.units.{i}{k}", m)
    systemd["units"] = merged


def _expand_trees(ctx: _Ctx, trees: YSeq, document: dict[str, Any]) -> None:
    """Embed local directory trees as files and links, in sorted order (deterministic output).

    Entries the user lists explicitly (files without contents, links without target) only get
    their contents/target filled in, keeping their own mode and owner.
    """
    storage = document.setdefault("storage", {})
    files: list[dict[str, Any]] = storage.setdefault("files", [])
    links: list[dict[str, Any]] = storage.setdefault("links", [])
    dirs: list[dict[str, Any]] = storage.get("directories", [])
    file_at = {f.get("path"): f for f in files}
    link_at = {lk.get("path"): lk for lk in links}
    file_idx = {id(f): i for i, f in enumerate(files)}
    link_idx = {id(lk): i for i, lk in enumerate(links)}
    dir_paths = {d.get("path") for d in dirs}
    for i, tree in enumerate(trees.items):
        ipath = f"$.storage.trees.{i}"
        if not isinstance(tree, YMap):
            continue
        local = tree.items.get("local")
        if local is None:
            ctx.error(tree.mark, "a tree needs 'local' (a directory in the files directory)", ipath)
            continue
        base = ctx.local_path(local, f"{ipath}.local")
        if base is None:
            continue
        if not base.is_dir():
            ctx.error(local.mark, f"local tree {as_str(local)!r} is not a directory", f"{ipath}.local")
            continue
        dest_node = tree.items.get("path")
        try:
            dest_base = "/" if dest_node is None or _is_null(dest_node) else as_str(dest_node)
        except TypeMismatch as exc:
            ctx.error(dest_node.mark if dest_node else tree.mark, str(exc), f"{ipath}.path")
            continue
        root = ctx.files_root(local.mark, ipath)
        assert root is not None
        for src, rel in _walk(base):
            dest = "/".join([dest_base.rstrip("/"), rel]) if dest_base != "/" else "/" + rel
            st = src.lstat()
            if stat.S_ISLNK(st.st_mode):
                link = link_at.get(dest)
                if link is not None and link.get("target"):
                    ctx.error(tree.mark, f"tree entry {dest} already exists as a link with a target", ipath)
                    continue
                if link is None:
                    if dest in file_at or dest in dir_paths:
                        ctx.error(tree.mark, f"tree entry {dest} already exists in the config", ipath)
                        continue
                    link = {"path": dest}
                    ctx.marks[f"$.storage.links.{len(links)}"] = tree.mark
                    link_idx[id(link)] = len(links)
                    links.append(link)
                    link_at[dest] = link
                link["target"] = os.readlink(src)
                ctx.marks.setdefault(f"$.storage.links.{link_idx[id(link)]}.target", tree.mark)
            elif stat.S_ISREG(st.st_mode):
                entry = file_at.get(dest)
                if entry is not None and (entry.get("contents") or {}).get("source"):
                    ctx.error(tree.mark, f"tree entry {dest} already exists as a file with contents", ipath)
                    continue
                if entry is None:
                    if dest in link_at or dest in dir_paths:
                        ctx.error(tree.mark, f"tree entry {dest} already exists in the config", ipath)
                        continue
                    entry = {"path": dest}
                    ctx.marks[f"$.storage.files.{len(files)}"] = tree.mark
                    file_idx[id(entry)] = len(files)
                    files.append(entry)
                    file_at[dest] = entry
                try:
                    data = ctx.local.read(src)
                except (OSError, LimitExceeded) as exc:
                    why = exc.strerror if isinstance(exc, OSError) else exc
                    ctx.error(tree.mark, f"cannot read {src.relative_to(root)}: {why}", ipath)
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
                idx = file_idx[id(entry)]
                for k in ("contents", "contents.source", "contents.compression", "mode"):
                    ctx.marks.setdefault(f"$.storage.files.{idx}.{k}", tree.mark)
            else:
                ctx.error(
                    tree.mark, f"{src.relative_to(root)} is neither a file, a directory nor a symlink", ipath
                )


def _walk(base: Path) -> list[tuple[Path, str]]:
    """Every non-directory entry below ``base`` (symlinks not followed), sorted by relative path."""
    found: list[tuple[Path, str]] = []
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        d = Path(dirpath)
        # symlinks to directories appear in dirnames: treat them as links, do not descend
        for name in list(dirnames):
            if (d / name).is_symlink():
                dirnames.remove(name)
                filenames.append(name)
        for name in filenames:
            p = d / name
            found.append((p, p.relative_to(base).as_posix()))
    found.sort(key=lambda t: t[1])
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
