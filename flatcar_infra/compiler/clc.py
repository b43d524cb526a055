"""Legacy Container Linux Config (what ``ct`` read) → Ignition 3.3.0, with the meaning Flatcar gives it.

``ct`` produced Ignition 2.3.0 and Flatcar converts 2.x configs to 3.x at boot with its fork of
``ign-converter`` (``config/ign-converter/translate/v24tov31``). We translate in one step to what
that pair produces, so a CLC compiled here configures the machine the way it does on Flatcar today:

- files, directories and links on ``filesystem: root`` (or none: ct defaulted to root) keep their
  path; on another named filesystem they move under its mount point, which Flatcar's converter
  gives as ``/oem`` for ``oem`` and ``/tmp/<name>-ign<N>`` for any other name (Ignition mounts the
  filesystem there while it writes, under the root's ``/tmp``, which is a tmpfs at runtime so the
  directory never shadows anything). A ``root`` filesystem entry is dropped, as the converter does
  (root is mounted by the initramfs; a warning says so). An unnamed filesystem is only formatted.
- files are ``overwrite: true`` unless they say otherwise, because spec 2 overwrote files by
  default; ``append: true`` turns the contents into an ``append`` entry with ``overwrite: false``.
- ``networkd`` units become files under ``/etc/systemd/network`` (mode 0644, overwrite).
- legacy ``enable: true`` means ``enabled: true``; an explicit ``enabled: false`` wins.
- ``etcd``/``flannel``/``docker``/``update``/``locksmith``: see ``clc_services``.

Every output value is recorded in ``origins`` with the position (and, for entries, the CLC path)
of the input that produced it, so problems found later by Ignition's rules point at the CLC line.
Problems are reported all at once: one bad entry never hides the others, nor the output checks.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from flatcar_infra.compiler import clc_services as svc
from flatcar_infra.compiler.butane import decimal_mode_as_octal, typical_mode
from flatcar_infra.compiler.clc_read import Ctx, child, join_path, key_mark, prune
from flatcar_infra.compiler.dataurl import data_url
from flatcar_infra.compiler.translated import Translated
from flatcar_infra.compiler.unitfile import UnitSyntaxError, parse_unit
from flatcar_infra.compiler.versions import CLC_IGNITION
from flatcar_infra.compiler.yamlsrc import Mark, SourceDoc, YMap, YScalar, is_decimal_literal
from flatcar_infra.limits import LimitExceeded

VERSION = CLC_IGNITION

_TOP = (
    "version",
    "ignition",
    "storage",
    "systemd",
    "networkd",
    "passwd",
    "etcd",
    "flannel",
    "update",
    "docker",
    "locksmith",
)


def translate_clc(doc: SourceDoc, *, files_dir: Path | None, platform: str | None) -> Translated:
    """Translate a parsed CLC document; problems become diagnostics, never exceptions."""
    ctx = Ctx(doc.filename, files_dir, platform)
    ctx.diagnostics.extend(doc.diagnostics)
    if any(d.is_error for d in doc.diagnostics):
        return Translated(None, ctx.diagnostics)
    out: dict[str, Any] = {"ignition": {"version": VERSION}}
    if platform is not None and platform not in svc.PLATFORMS:
        # located at the config's first line: every error names a line, even one about an option
        ctx.error(
            Mark(1, 1), f"unsupported platform {platform!r} (ct knows: {', '.join(svc.PLATFORMS)})", "$"
        )
    if doc.root is None or (isinstance(doc.root, YScalar) and doc.root.is_null):
        # ct: an empty (or null) document is an empty config, with a warning
        ctx.warn(doc.root.mark if doc.root is not None else Mark(1, 1), "Configuration is empty", "$")
        return Translated(out, ctx.diagnostics, dict(ctx.origins))
    root = ctx.mapping(doc.root, "$", _TOP)
    if root is None:
        return Translated(None, ctx.diagnostics)
    ctx.mark("$", root.mark, "$")
    version = ctx.int_(root, "version", "$", minimum=None)
    if version not in (None, 0):
        ctx.error(key_mark(root, "version"), "invalid version: only version 0 is supported", "$.version")

    _ignition(
        ctx, ctx.mapping(child(root, "ignition"), "$.ignition", ("config", "timeouts", "security")), out
    )
    storage: dict[str, Any] = {}
    smap = ctx.mapping(
        child(root, "storage"), "$.storage", ("disks", "raid", "filesystems", "files", "directories", "links")
    )
    fs_paths = _filesystems(ctx, smap, storage)
    if smap is not None:
        _disks(ctx, smap, storage)
        _raid(ctx, smap, storage)
        _nodes(ctx, smap, storage, fs_paths)
    _generated_files(ctx, root, storage)
    _networkd(ctx, ctx.mapping(child(root, "networkd"), "$.networkd", ("units",)), storage)
    out["storage"] = storage
    out["systemd"] = {"units": _units(ctx, root)}
    out["passwd"] = _passwd(ctx, ctx.mapping(child(root, "passwd"), "$.passwd", ("users", "groups")))
    document = prune(out)
    document.setdefault("ignition", {"version": VERSION})
    return Translated(document, ctx.diagnostics, ctx.origins)


# --- ignition ------------------------------------------------------------------------------------


def _verification(ctx: Ctx, m: YMap, ipath: str, opath: str) -> dict[str, Any] | None:
    vmap = ctx.mapping(child(m, "verification"), f"{ipath}.verification", ("hash",))
    if vmap is None:
        return None
    hpath = f"{ipath}.verification.hash"
    hmap = ctx.mapping(child(vmap, "hash"), hpath, ("function", "sum"))
    if hmap is None:
        return None
    function = ctx.str_(hmap, "function", hpath)
    digest = ctx.str_(hmap, "sum", hpath)
    if not function or not digest:
        ctx.error(hmap.mark, "verification.hash needs both function and sum", hpath)
        return None
    if function not in ("sha512", "sha256"):
        ctx.error(
            key_mark(hmap, "function"),
            f"unsupported hash function {function!r} (sha512 or sha256)",
            f"{hpath}.function",
        )
        return None
    ctx.mark(f"{opath}.verification.hash", hmap.mark)
    return {"hash": f"{function}-{digest}"}


def _reference(ctx: Ctx, m: YMap, ipath: str, opath: str) -> dict[str, Any] | None:
    source = ctx.str_(m, "source", ipath)
    if not source:
        ctx.error(m.mark, "source is required", f"{ipath}.source")
        return None
    ctx.mark(opath, m.mark)
    ctx.mark(f"{opath}.source", key_mark(m, "source"))
    return {"source": source, "verification": _verification(ctx, m, ipath, opath)}


def _ignition(ctx: Ctx, m: YMap | None, out: dict[str, Any]) -> None:
    if m is None:
        return
    ign = out["ignition"]
    cfg = ctx.mapping(child(m, "config"), "$.ignition.config", ("append", "replace"))
    if cfg is not None:
        merge: list[dict[str, Any]] = []
        for i, ref in ctx.maps(child(cfg, "append"), "$.ignition.config.append", ("source", "verification")):
            r = _reference(ctx, ref, f"$.ignition.config.append.{i}", f"$.ignition.config.merge.{len(merge)}")
            if r is not None:
                merge.append(r)
        replace = ctx.mapping(child(cfg, "replace"), "$.ignition.config.replace", ("source", "verification"))
        ign["config"] = {
            "merge": merge,
            "replace": _reference(ctx, replace, "$.ignition.config.replace", "$.ignition.config.replace")
            if replace is not None
            else None,
        }
    timeouts = ctx.mapping(
        child(m, "timeouts"), "$.ignition.timeouts", ("http_response_headers", "http_total")
    )
    if timeouts is not None:
        ign["timeouts"] = {
            "httpResponseHeaders": ctx.int_(timeouts, "http_response_headers", "$.ignition.timeouts"),
            "httpTotal": ctx.int_(timeouts, "http_total", "$.ignition.timeouts"),
        }
        ctx.mark("$.ignition.timeouts", timeouts.mark)
    security = ctx.mapping(child(m, "security"), "$.ignition.security", ("tls",))
    tls = (
        ctx.mapping(child(security, "tls"), "$.ignition.security.tls", ("certificate_authorities",))
        if security
        else None
    )
    if tls is not None:
        cas: list[dict[str, Any]] = []
        ipath = "$.ignition.security.tls.certificate_authorities"
        for i, ref in ctx.maps(child(tls, "certificate_authorities"), ipath, ("source", "verification")):
            r = _reference(
                ctx, ref, f"{ipath}.{i}", f"$.ignition.security.tls.certificateAuthorities.{len(cas)}"
            )
            if r is not None:
                cas.append(r)
        ign["security"] = {"tls": {"certificateAuthorities": cas}}


# --- storage -------------------------------------------------------------------------------------

_TYPE_GUIDS = {
    "raid_containing_root": "be9067b9-ea49-4f15-b4f6-f36f8c9e1818",
    "linux_filesystem_data": "0fc63daf-8483-4772-8e79-3d69d8477de4",
    "swap_partition": "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f",
    "raid_partition": "a19d880f-05fc-4d3b-a006-743f0f84911e",
}
_SIZE_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(EiB|PiB|TiB|GiB|MiB|KiB|EB|PB|TB|GB|MB|KB|B)")
_SIZE_UNITS = {"B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50, "E": 1 << 60}


def _mib(ctx: Ctx, m: YMap, key: str, ipath: str) -> int | None:
    """ct's partition dimensions: base-2 sizes (``KB`` = ``KiB``), whole MiB only."""
    text = ctx.str_(m, key, ipath)
    if text is None or text == "":
        return None
    where = key_mark(m, key)
    if text == "0":
        return 0
    pos, total = 0, 0.0
    for match in _SIZE_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match[1]) * _SIZE_UNITS[match[2][0]]
        pos = match.end()
    if pos != len(text) or pos == 0:
        ctx.error(where, f"invalid size {text!r}: expected e.g. 512MiB or 4GiB", f"{ipath}.{key}")
        return None
    value = int(total)
    if value % (1 << 20):
        ctx.error(where, f"invalid size {text!r}: the finest granularity is 1MiB", f"{ipath}.{key}")
        return None
    return value >> 20


def _disks(ctx: Ctx, smap: YMap, storage: dict[str, Any]) -> None:
    disks: list[dict[str, Any]] = []
    for i, d in ctx.maps(child(smap, "disks"), "$.storage.disks", ("device", "wipe_table", "partitions")):
        ipath, opath = f"$.storage.disks.{i}", f"$.storage.disks.{len(disks)}"
        ctx.mark(opath, d.mark)
        parts: list[dict[str, Any]] = []
        for j, p in ctx.maps(
            child(d, "partitions"),
            f"{ipath}.partitions",
            ("label", "number", "size", "start", "guid", "type_guid"),
        ):
            ppath = f"{ipath}.partitions.{j}"
            ctx.mark(f"{opath}.partitions.{len(parts)}", p.mark)
            type_guid = ctx.str_(p, "type_guid", ppath)
            parts.append(
                {
                    "label": ctx.str_(p, "label", ppath),
                    "number": ctx.int_(p, "number", ppath) or None,
                    "sizeMiB": _mib(ctx, p, "size", ppath),
                    "startMiB": _mib(ctx, p, "start", ppath),
                    "guid": ctx.str_(p, "guid", ppath) or None,
                    "typeGuid": _TYPE_GUIDS.get(type_guid or "", type_guid) or None,
                }
            )
        disks.append(
            {
                "device": ctx.abs_path(d, "device", ipath),
                "wipeTable": ctx.bool_(d, "wipe_table", ipath) or None,
                "partitions": parts,
            }
        )
    storage["disks"] = disks


def _raid(ctx: Ctx, smap: YMap, storage: dict[str, Any]) -> None:
    arrays: list[dict[str, Any]] = []
    for i, r in ctx.maps(
        child(smap, "raid"), "$.storage.raid", ("name", "level", "devices", "spares", "options")
    ):
        ipath = f"$.storage.raid.{i}"
        ctx.mark(f"$.storage.raid.{len(arrays)}", r.mark)
        arrays.append(
            {
                "name": ctx.str_(r, "name", ipath),
                "level": ctx.str_(r, "level", ipath),
                "devices": ctx.strs(r, "devices", ipath),
                "spares": ctx.int_(r, "spares", ipath) or None,
                "options": ctx.strs(r, "options", ipath),
            }
        )
    storage["raid"] = arrays


def _filesystems(ctx: Ctx, smap: YMap | None, storage: dict[str, Any]) -> dict[str, str]:
    """Translate filesystems; return the name → mount point map files/dirs/links are placed by."""
    paths = {"root": "/"}
    if smap is None:
        return paths
    out: list[dict[str, Any]] = []
    counter = 0
    mount_keys = ("device", "format", "create", "wipe_filesystem", "label", "uuid", "options")
    for i, f in ctx.maps(child(smap, "filesystems"), "$.storage.filesystems", ("name", "mount", "path")):
        ipath = f"$.storage.filesystems.{i}"
        name = ctx.str_(f, "name", ipath) or ""
        if name and name not in paths:
            counter += 1
            paths[name] = "/oem" if name == "oem" else f"/tmp/{name}-ign{counter}"
        elif not name:
            counter += 1  # Flatcar's converter numbers unnamed filesystems too, but mounts them nowhere
        if child(f, "path") is not None:
            ctx.error(
                key_mark(f, "path"),
                "a filesystem given by path (already mounted in the "
                "initramfs) has no Ignition 3 equivalent: describe it with mount",
                f"{ipath}.path",
            )
            continue
        mount = ctx.mapping(child(f, "mount"), f"{ipath}.mount", mount_keys)
        if name == "root":
            ctx.warn(
                f.mark,
                "the root filesystem entry is ignored, as Flatcar does when it converts "
                "CLC output: the initramfs mounts root itself (files on filesystem root keep "
                "their paths)",
                ipath,
            )
            continue
        if mount is None:
            ctx.error(f.mark, "filesystem needs mount (with device and format)", f"{ipath}.mount")
            continue
        mpath = f"{ipath}.mount"
        opath = f"$.storage.filesystems.{len(out)}"
        wipe = ctx.bool_(mount, "wipe_filesystem", mpath) or False
        options = ctx.strs(mount, "options", mpath) or []
        create = ctx.mapping(child(mount, "create"), f"{mpath}.create", ("force", "options"))
        if create is not None:
            if not ctx.bool_(create, "force", f"{mpath}.create"):
                ctx.error(
                    create.mark,
                    "mount.create must set force: true (Ignition 3 can only create "
                    "a filesystem by wiping the old one)",
                    f"{mpath}.create",
                )
                continue
            ctx.warn(
                create.mark, "mount.create is deprecated: use wipe_filesystem and options", f"{mpath}.create"
            )
            for key, field in (("wipe_filesystem", "wipeFilesystem"), ("options", "mount-level options")):
                if child(mount, key) is not None:  # Ignition 2.3 validation, which ct ran on its output
                    ctx.error(
                        key_mark(mount, key),
                        f"cannot use both create object and {field} field",
                        f"{mpath}.{key}",
                    )
            wipe = True
            options += ctx.strs(create, "options", f"{mpath}.create") or []
        fs_format = ctx.str_(mount, "format", mpath)
        if name == "oem" and not wipe:
            fs_format = "btrfs"  # Flatcar's converter: the existing OEM partition is btrfs
        ctx.mark(opath, f.mark)
        for key, okey in (
            ("device", "device"),
            ("format", "format"),
            ("wipe_filesystem", "wipeFilesystem"),
            ("label", "label"),
            ("uuid", "uuid"),
            ("options", "options"),
        ):
            if key in mount.items:
                ctx.mark(f"{opath}.{okey}", key_mark(mount, key))
        if name:
            ctx.mark(f"{opath}.path", key_mark(f, "name"))
        out.append(
            {
                "device": ctx.abs_path(mount, "device", mpath),
                "format": fs_format or None,
                "wipeFilesystem": wipe or None,
                "label": ctx.str_(mount, "label", mpath),
                "uuid": ctx.str_(mount, "uuid", mpath),
                "options": options,
                "path": paths.get(name) if name else None,
            }
        )
    storage["filesystems"] = out
    return paths


_NODE_KEYS = ("filesystem", "path", "user", "group", "overwrite")


def _nodes(ctx: Ctx, smap: YMap, storage: dict[str, Any], fs_paths: dict[str, str]) -> None:
    files: list[dict[str, Any]] = []
    dirs: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []
    for i, f in ctx.maps(
        child(smap, "files"), "$.storage.files", (*_NODE_KEYS, "mode", "contents", "append")
    ):
        entry = _file(ctx, f, f"$.storage.files.{i}", f"$.storage.files.{len(files)}", fs_paths)
        if entry is not None:
            files.append(entry)
    for i, d in ctx.maps(child(smap, "directories"), "$.storage.directories", (*_NODE_KEYS, "mode")):
        opath = f"$.storage.directories.{len(dirs)}"
        node = _node(ctx, d, f"$.storage.directories.{i}", opath, fs_paths)
        node["mode"] = _mode(ctx, d, f"$.storage.directories.{i}", opath, 0o755, "directory")
        dirs.append(node)
    for i, link in ctx.maps(child(smap, "links"), "$.storage.links", (*_NODE_KEYS, "hard", "target")):
        ipath, opath = f"$.storage.links.{i}", f"$.storage.links.{len(links)}"
        node = _node(ctx, link, ipath, opath, fs_paths)
        target = ctx.str_(link, "target", ipath)
        if not target:
            ctx.error(link.mark, "link needs a target", f"{ipath}.target")
            continue
        node["target"] = target
        node["hard"] = ctx.bool_(link, "hard", ipath) or None
        ctx.mark(f"{opath}.target", key_mark(link, "target"), f"{ipath}.target")
        links.append(node)
    storage["files"] = files
    storage["directories"] = dirs
    storage["links"] = links


def _node(ctx: Ctx, m: YMap, ipath: str, opath: str, fs_paths: dict[str, str]) -> dict[str, Any]:
    """The common fields of a file, directory or link. A bad path is reported and kept as written,
    so the rest of the entry is still checked (the config fails anyway)."""
    fs_name = ctx.str_(m, "filesystem", ipath) or "root"
    path = ctx.abs_path(m, "path", ipath)
    ctx.mark(opath, m.mark, ipath)
    ctx.mark(f"{opath}.path", key_mark(m, "path"), f"{ipath}.path")
    if fs_name not in fs_paths:
        ctx.error(
            key_mark(m, "filesystem"),
            f"filesystem {fs_name!r} is not defined in storage.filesystems (only root is predefined)",
            f"{ipath}.filesystem",
        )
    if path is not None and fs_name in fs_paths:
        full = join_path(fs_paths[fs_name], path)
    else:
        full = ctx.str_(m, "path", ipath) or ""
    node: dict[str, Any] = {"path": full}
    for key in ("user", "group"):
        owner = ctx.mapping(child(m, key), f"{ipath}.{key}", ("id", "name"))
        if owner is not None:
            node[key] = {
                "id": ctx.int_(owner, "id", f"{ipath}.{key}"),
                "name": ctx.str_(owner, "name", f"{ipath}.{key}") or None,
            }
            ctx.mark(f"{opath}.{key}", owner.mark, f"{ipath}.{key}")
    overwrite = ctx.bool_(m, "overwrite", ipath)
    if overwrite is not None:
        node["overwrite"] = overwrite
        ctx.mark(f"{opath}.overwrite", key_mark(m, "overwrite"), f"{ipath}.overwrite")
    return node


def _mode(ctx: Ctx, m: YMap, ipath: str, opath: str, default: int, what: str) -> int:
    node = child(m, "mode")
    value = ctx.int_(m, "mode", ipath)
    if node is None:
        ctx.warn(m.mark, f"mode unspecified for {what}, defaulting to 0{default:o}", f"{ipath}.mode")
        return default
    ctx.mark(f"{opath}.mode", node.mark, f"{ipath}.mode")
    if value is None:
        return default
    octal = decimal_mode_as_octal(value)
    directory = what == "directory"
    if (
        is_decimal_literal(node)
        and octal is not None
        and not typical_mode(value, directory)
        and typical_mode(octal, directory)
    ):
        ctx.warn(
            node.mark,
            f"mode {value} is decimal (= 0{value:o}); did you mean 0{value}? It is an unreasonable "
            "mode that would be reasonable in octal: write modes with a leading zero",
            f"{ipath}.mode",
        )
    if value > 0o7777:
        ctx.error(node.mark, f"mode 0{value:o} is not a valid file mode", f"{ipath}.mode")
    return value


def _file(ctx: Ctx, f: YMap, ipath: str, opath: str, fs_paths: dict[str, str]) -> dict[str, Any] | None:
    node = _node(ctx, f, ipath, opath, fs_paths)
    node["mode"] = _mode(ctx, f, ipath, opath, 0o644, "file")
    append = ctx.bool_(f, "append", ipath) or False
    if append and node.get("overwrite") is True:
        # Ignition 2.3 validation, which ct ran on its output
        ctx.error(
            key_mark(f, "overwrite"), "cannot set both append and overwrite to true", f"{ipath}.overwrite"
        )
    contents = _contents(ctx, f, ipath, f"{opath}.append.0" if append else f"{opath}.contents")
    if contents is None:
        return None
    if append:
        # spec 3: an append entry may not overwrite (ign-converter sets overwrite false)
        node["overwrite"] = False
        node["append"] = [contents]
    else:
        # spec 2 overwrote files unless told otherwise; spec 3 does not, so say it explicitly
        node.setdefault("overwrite", True)
        node["contents"] = contents
    return node


def _contents(ctx: Ctx, f: YMap, ipath: str, opath: str) -> dict[str, Any] | None:
    cmap = ctx.mapping(child(f, "contents"), f"{ipath}.contents", ("inline", "local", "remote"))
    if cmap is None:
        return {"source": "data:,"}  # ct: a file without contents is empty
    cpath = f"{ipath}.contents"
    remote = ctx.mapping(child(cmap, "remote"), f"{cpath}.remote", ("url", "compression", "verification"))
    url = ctx.str_(remote, "url", f"{cpath}.remote") if remote is not None else None
    inline = ctx.bytes_(cmap, "inline", cpath)
    local = ctx.str_(cmap, "local", cpath)
    given = [k for k, v in (("inline", inline), ("local", local), ("remote.url", url)) if v]
    if len(given) > 1:
        ctx.error(
            cmap.mark,
            f"only one of inline, local and remote.url may be given (found {', '.join(given)})",
            cpath,
        )
        return None
    ctx.mark(opath, cmap.mark)
    out: dict[str, Any] = {}
    data: bytes | None = None
    if inline:
        data = inline
        ctx.mark(f"{opath}.source", key_mark(cmap, "inline"))
    elif local:
        data = _read_local(ctx, local, key_mark(cmap, "local"), f"{cpath}.local")
        if data is None:
            return None
        ctx.mark(f"{opath}.source", key_mark(cmap, "local"))
    if remote is not None:
        compression = ctx.str_(remote, "compression", f"{cpath}.remote")
        if compression:
            out["compression"] = compression
            ctx.mark(f"{opath}.compression", key_mark(remote, "compression"))
        out["verification"] = _verification(ctx, remote, f"{cpath}.remote", opath)
    if url:
        out["source"] = url
        ctx.mark(f"{opath}.source", key_mark(remote, "url") if remote is not None else cmap.mark)
    elif data is not None:
        if out.get("compression"):
            out["source"] = data_url(data, allow_compression=False)[0]
        else:
            # encoded as Butane encodes inline contents (gzip when smaller, else an explicit ""),
            # so a CLC and a Butane config with the same meaning hash equal
            out["source"], compression = data_url(data, allow_compression=True)
            out["compression"] = compression or ""
    else:
        out["source"] = "data:,"
    return out


def _read_local(ctx: Ctx, name: str, where: Mark, ipath: str) -> bytes | None:
    if ctx.files_dir is None:
        ctx.error(where, "local contents need a files directory (--files-dir)", ipath)
        return None
    base = ctx.files_dir.resolve()
    target = (base / name).resolve()
    if base != target and base not in target.parents:
        ctx.error(where, f"local file {name!r} is outside the files directory {str(ctx.files_dir)!r}", ipath)
        return None
    try:
        return ctx.local.read(target)  # a directory, FIFO or device is refused, never blocks
    except (OSError, LimitExceeded) as exc:
        why = exc.strerror if isinstance(exc, OSError) else exc
        ctx.error(where, f"cannot read local file {name!r} in {str(ctx.files_dir)!r}: {why}", ipath)
        return None


def _generated_files(ctx: Ctx, root: YMap, storage: dict[str, Any]) -> None:
    update = ctx.mapping(child(root, "update"), "$.update", svc.UPDATE_ALLOWED)
    locksmith = ctx.mapping(child(root, "locksmith"), "$.locksmith", svc.LOCKSMITH_ALLOWED)
    text = svc.update_conf(ctx, update, locksmith, "$.update", "$.locksmith")
    if text is None:
        return
    files = storage.setdefault("files", [])
    opath = f"$.storage.files.{len(files)}"
    source = update if update is not None else locksmith
    assert source is not None
    ctx.mark(opath, source.mark)
    files.append(
        {"path": svc.UPDATE_CONF, "mode": 0o644, "overwrite": True, "contents": _generated_contents(text)}
    )


def _generated_contents(text: str) -> dict[str, Any]:
    url, compression = data_url(text.encode("utf-8"), allow_compression=True)
    return {"source": url, "compression": compression or ""}


_NETWORKD_EXT = (".network", ".netdev", ".link")


def _networkd(ctx: Ctx, m: YMap | None, storage: dict[str, Any]) -> None:
    """networkd units and drop-ins become files; their text is parsed as ct parsed it (go-systemd's
    unit reader), so a unit systemd-networkd cannot read is refused here, not at boot."""
    if m is None:
        return
    files = storage.setdefault("files", [])
    for i, u in ctx.maps(child(m, "units"), "$.networkd.units", ("name", "contents", "dropins")):
        ipath = f"$.networkd.units.{i}"
        name = ctx.str_(u, "name", ipath)
        if not name or "/" in name or not name.endswith(_NETWORKD_EXT):
            ctx.error(
                key_mark(u, "name"),
                f"invalid networkd unit extension in {name!r}: "
                "expected NAME.network, NAME.netdev or NAME.link",
                f"{ipath}.name",
            )
            continue
        contents = ctx.str_(u, "contents", ipath)
        if contents:
            _check_unit_text(ctx, contents, u.mark, f"{ipath}.contents")  # ct reports at the unit
            opath = f"$.storage.files.{len(files)}"
            ctx.mark(opath, u.mark, ipath)
            ctx.mark(f"{opath}.contents.source", key_mark(u, "contents"), f"{ipath}.contents")
            files.append(
                {
                    "path": f"/etc/systemd/network/{name}",
                    "mode": 0o644,
                    "overwrite": True,
                    "contents": _generated_contents(contents),
                }
            )
        for j, d in ctx.maps(child(u, "dropins"), f"{ipath}.dropins", ("name", "contents")):
            dpath = f"{ipath}.dropins.{j}"
            dname = ctx.str_(d, "name", dpath)
            if not dname or "/" in dname or not dname.endswith(".conf"):
                ctx.error(
                    key_mark(d, "name"),
                    f"invalid networkd drop-in extension in {dname!r}: expected NAME.conf",
                    f"{dpath}.name",
                )
                continue
            text = ctx.str_(d, "contents", dpath) or ""
            _check_unit_text(ctx, text, d.mark, f"{dpath}.contents")
            ctx.mark(f"$.storage.files.{len(files)}", d.mark, dpath)
            files.append(
                {
                    "path": f"/etc/systemd/network/{name}.d/{dname}",
                    "mode": 0o644,
                    "overwrite": True,
                    "contents": _generated_contents(text),
                }
            )


def _check_unit_text(ctx: Ctx, text: str, where: Mark, ipath: str) -> None:
    try:
        parse_unit(text)
    except UnitSyntaxError as exc:
        ctx.error(where, f"invalid unit content: {exc}", ipath)


# --- systemd -------------------------------------------------------------------------------------


def _units(ctx: Ctx, root: YMap) -> list[dict[str, Any]]:
    """Generated units first (ct's order: platform, docker, etcd, flannel), then the user's."""
    units: list[dict[str, Any]] = []
    generated: dict[str, int] = {}

    def add_generated(unit: dict[str, Any] | None, where: Mark) -> None:
        if unit is None:
            return
        ctx.mark(f"$.systemd.units.{len(units)}", where)
        generated[unit["name"]] = len(units)
        units.append(unit)

    if ctx.platform in svc.PLATFORMS:
        for unit in svc.platform_units(ctx.platform):
            add_generated(unit, root.mark)
    for key, make in (("docker", svc.docker_unit), ("etcd", svc.etcd_unit), ("flannel", svc.flannel_unit)):
        allowed = ("flags",) if key == "docker" else ()
        section = ctx.mapping(child(root, key), f"$.{key}", allowed)
        if section is not None:
            add_generated(make(ctx, section, f"$.{key}"), key_mark(root, key))

    sysd = ctx.mapping(child(root, "systemd"), "$.systemd", ("units",))
    if sysd is None:
        return units
    index_of = dict(generated)
    unit_keys = ("name", "enable", "enabled", "mask", "contents", "dropins")
    for i, u in ctx.maps(child(sysd, "units"), "$.systemd.units", unit_keys):
        ipath = f"$.systemd.units.{i}"
        name = ctx.str_(u, "name", ipath)
        if not name:
            ctx.error(u.mark, "unit needs a name", f"{ipath}.name")
            continue
        unit, dropin_marks = _unit(ctx, u, name, ipath)
        index = index_of.get(name)
        if index is None:
            index = index_of[name] = len(units)
            units.append(unit)
        else:
            # a unit given twice (by a section and the user, or twice by the user) is one entry,
            # as Flatcar's converter makes it: later fields win, drop-ins accumulate
            _merge_unit(units[index], unit)
        opath = f"$.systemd.units.{index}"
        ctx.mark(opath, u.mark, ipath)
        first = len(units[index].get("dropins", [])) - len(dropin_marks)
        for j, (where, dpath) in enumerate(dropin_marks):
            ctx.mark(f"{opath}.dropins.{first + j}", where, dpath)
        for key, okey in (
            ("name", "name"),
            ("contents", "contents"),
            ("mask", "mask"),
            ("enabled", "enabled"),
            ("enable", "enabled"),
        ):
            if key in u.items:
                ctx.mark(f"{opath}.{okey}", key_mark(u, key), f"{ipath}.{key}")
    return units


def _unit(ctx: Ctx, u: YMap, name: str, ipath: str) -> tuple[dict[str, Any], list[tuple[Mark, str]]]:
    """A user unit, and where each of its drop-ins was written."""
    enable = ctx.bool_(u, "enable", ipath)
    enabled = ctx.bool_(u, "enabled", ipath)
    if enable is not None:
        ctx.warn(key_mark(u, "enable"), "enable is deprecated: use enabled", f"{ipath}.enable")
    unit: dict[str, Any] = {"name": name}
    if enabled is False:  # an explicit enabled: false wins over the legacy enable (ign-converter)
        unit["enabled"] = False
    elif enabled or enable:
        unit["enabled"] = True
    if ctx.bool_(u, "mask", ipath):
        unit["mask"] = True
    contents = ctx.str_(u, "contents", ipath)
    if contents:
        unit["contents"] = contents
    dropins = []
    marks: list[tuple[Mark, str]] = []
    for j, d in ctx.maps(child(u, "dropins"), f"{ipath}.dropins", ("name", "contents")):
        dpath = f"{ipath}.dropins.{j}"
        dname = ctx.str_(d, "name", dpath)
        if not dname:
            ctx.error(d.mark, "drop-in needs a name", f"{dpath}.name")
            continue
        dropins.append({"name": dname, "contents": ctx.str_(d, "contents", dpath) or None})
        marks.append((d.mark, dpath))
    unit["dropins"] = dropins
    return unit, marks


def _merge_unit(first: dict[str, Any], later: dict[str, Any]) -> None:
    first.setdefault("dropins", []).extend(later.get("dropins", []))
    for key in ("enabled", "mask", "contents"):
        if key in later:
            first[key] = later[key]


# --- passwd --------------------------------------------------------------------------------------

_USER_FIELDS = (
    ("uid", "uid", "i"),
    ("gecos", "gecos", "s"),
    ("home_dir", "homeDir", "s"),
    ("no_create_home", "noCreateHome", "b"),
    ("primary_group", "primaryGroup", "s"),
    ("groups", "groups", "l"),
    ("no_user_group", "noUserGroup", "b"),
    ("system", "system", "b"),
    ("no_log_init", "noLogInit", "b"),
    ("shell", "shell", "s"),
)


def _passwd(ctx: Ctx, m: YMap | None) -> dict[str, Any]:
    if m is None:
        return {}
    users: list[dict[str, Any]] = []
    allowed = ("name", "password_hash", "ssh_authorized_keys", "create", *(k for k, _, _ in _USER_FIELDS))
    for i, u in ctx.maps(child(m, "users"), "$.passwd.users", allowed):
        ipath, opath = f"$.passwd.users.{i}", f"$.passwd.users.{len(users)}"
        name = ctx.str_(u, "name", ipath)
        if not name:
            ctx.error(u.mark, "user needs a name", f"{ipath}.name")
            continue
        ctx.mark(opath, u.mark)
        user: dict[str, Any] = {
            "name": name,
            "passwordHash": ctx.str_(u, "password_hash", ipath),
            "sshAuthorizedKeys": ctx.strs(u, "ssh_authorized_keys", ipath),
        }
        for key, okey in (
            ("name", "name"),
            ("password_hash", "passwordHash"),
            ("ssh_authorized_keys", "sshAuthorizedKeys"),
        ):
            if key in u.items:
                ctx.mark(f"{opath}.{okey}", key_mark(u, key))
        source, spath = u, ipath
        create = ctx.mapping(child(u, "create"), f"{ipath}.create", tuple(k for k, _, _ in _USER_FIELDS))
        if create is not None:
            # Flatcar's converter: the deprecated create block replaces the user's own fields
            ctx.warn(create.mark, "create is deprecated: put its fields on the user", f"{ipath}.create")
            source, spath = create, f"{ipath}.create"
            for key, _, _ in _USER_FIELDS:  # Ignition 2.3 validation, which ct ran on its output
                if child(u, key) is not None:
                    ctx.error(
                        key_mark(u, key),
                        f"cannot use both the create object and the user-level {key} field",
                        f"{ipath}.{key}",
                    )
        for key, okey, typ in _USER_FIELDS:
            if typ == "i":
                value: Any = ctx.int_(source, key, spath)
            elif typ == "b":
                value = ctx.bool_(source, key, spath) or None
            elif typ == "l":
                value = ctx.strs(source, key, spath)
            else:
                value = ctx.str_(source, key, spath) or None
            user[okey] = value
            if key in source.items:
                ctx.mark(f"{opath}.{okey}", key_mark(source, key))
        users.append(user)
    groups: list[dict[str, Any]] = []
    for i, g in ctx.maps(child(m, "groups"), "$.passwd.groups", ("name", "gid", "password_hash", "system")):
        ipath = f"$.passwd.groups.{i}"
        name = ctx.str_(g, "name", ipath)
        if not name:
            ctx.error(g.mark, "group needs a name", f"{ipath}.name")
            continue
        ctx.mark(f"$.passwd.groups.{len(groups)}", g.mark)
        groups.append(
            {
                "name": name,
                "gid": ctx.int_(g, "gid", ipath),
                "passwordHash": ctx.str_(g, "password_hash", ipath) or None,
                "system": ctx.bool_(g, "system", ipath) or None,
            }
        )
    return {"users": users, "groups": groups}
