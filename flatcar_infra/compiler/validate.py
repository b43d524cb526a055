"""Validation of any Ignition document (Butane or CLC output, or raw JSON): the spec's JSON Schema
plus the semantic rules a schema cannot say (absolute, unique paths; unit suffixes; hash syntax;
URL schemes per spec version; ...). Problems are located in the source through ``mark_for``.

Ignition itself ignores unknown keys with a warning; so do we (fatal only with ``--strict``).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from flatcar_infra.compiler.dataurl import decode_data_url
from flatcar_infra.compiler.schema import SUPPORTED_VERSIONS, quick_check, validator
from flatcar_infra.compiler.yamlsrc import Mark
from flatcar_infra.errors import Diagnostic, Severity

if TYPE_CHECKING:  # jsonschema loads only when a document has a problem (CLI start-up time)
    from jsonschema.exceptions import ValidationError  # type: ignore[import-untyped]

MarkFor = Callable[[str], Mark]

UNIT_SUFFIXES = (
    ".service",
    ".socket",
    ".device",
    ".mount",
    ".automount",
    ".swap",
    ".target",
    ".path",
    ".timer",
    ".snapshot",
    ".slice",
    ".scope",
)
FS_FORMATS = ("ext4", "btrfs", "xfs", "vfat", "swap", "none")
SCHEMES = {
    "3.3.0": frozenset({"http", "https", "tftp", "s3", "gs", "data"}),
    "3.4.0": frozenset({"http", "https", "tftp", "s3", "gs", "data", "arn"}),
}
_HASH = re.compile(r"^(sha512-[0-9a-f]{128}|sha256-[0-9a-f]{64})$")
_ACCOUNT = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*\$?$")
_UNIT_NAME = re.compile(r"^[A-Za-z0-9:_.\\@-]+$")


def _no_marks(_: str) -> Mark:
    return Mark(0, 0)


def validate_document(doc: Any, *, filename: str, mark_for: MarkFor | None = None) -> list[Diagnostic]:
    """Every problem of ``doc`` as diagnostics (errors and warnings); never raises."""
    where = mark_for or _no_marks
    out: list[Diagnostic] = []

    def report(severity: Severity, path: str, message: str) -> None:
        m = where(path)
        out.append(Diagnostic(filename, m.line, m.col, severity, message, path))

    if not isinstance(doc, dict):
        report(Severity.ERROR, "$", "an Ignition config must be a JSON object")
        return out
    ign = doc.get("ignition")
    version = ign.get("version") if isinstance(ign, dict) else None
    if not isinstance(version, str):
        report(Severity.ERROR, "$.ignition.version", "missing ignition.version")
        return out
    if version not in SUPPORTED_VERSIONS:
        advice = (
            "spec 2.x configs are not supported: write Butane (variant: flatcar) or a "
            "Container Linux Config instead"
            if version.startswith("2.")
            else "use Ignition spec 3.3.0 or 3.4.0"
        )
        report(
            Severity.ERROR, "$.ignition.version", f"unsupported Ignition spec version {version!r}: {advice}"
        )
        return out
    schema_ok = True
    errors = () if quick_check(version)(doc) else validator(version).iter_errors(doc)
    for err in errors:
        for severity, path, message in _schema_problem(err):
            schema_ok = schema_ok and severity is not Severity.ERROR
            report(severity, path, message)
    if schema_ok:
        # the semantic rules assume the shapes the schema guarantees
        for severity, path, message in _semantic(doc, version):
            report(severity, path, message)
    return out


def json_path(parts: Any) -> str:
    return "$" + "".join(f".{p}" for p in parts)


def _schema_problem(err: ValidationError) -> Iterator[tuple[Severity, str, str]]:
    path = json_path(err.absolute_path)
    if err.validator == "additionalProperties":
        schema = err.schema if isinstance(err.schema, Mapping) else {}
        allowed = set(schema.get("properties", {}))
        instance = err.instance if isinstance(err.instance, dict) else {}
        for key in sorted(k for k in instance if k not in allowed):
            yield Severity.WARNING, f"{path}.{key}", f"unknown key {key!r}"
        return
    if err.validator == "required":
        yield Severity.ERROR, path, f"missing required field: {err.message}"
        return
    if err.validator == "type":
        expected = err.validator_value
        names = [str(t) for t in (expected if isinstance(expected, list) else [expected]) if t != "null"]
        yield Severity.ERROR, path, f"expected {' or '.join(names)}, found {_json_type(err.instance)}"
        return
    yield Severity.ERROR, path, err.message


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return f"string {value[:40]!r}"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return "null"


# --- semantic rules -------------------------------------------------------------------------

Problem = tuple[Severity, str, str]
E = Severity.ERROR
W = Severity.WARNING


def _items(doc: dict[str, Any], section: str, key: str) -> list[tuple[int, dict[str, Any]]]:
    sec = doc.get(section) or {}
    return [(i, x) for i, x in enumerate(sec.get(key) or []) if isinstance(x, dict)]


def _semantic(doc: dict[str, Any], version: str) -> Iterator[Problem]:
    yield from _floats(doc, "$")
    yield from _resources(doc, version)
    yield from _nodes(doc, version)
    yield from _storage_devices(doc)
    yield from _units(doc)
    yield from _passwd(doc)
    proxy = (doc.get("ignition") or {}).get("proxy") or {}
    if str(proxy.get("httpsProxy") or "").lower().startswith("http://"):
        yield W, "$.ignition.proxy.httpsProxy", "plaintext HTTP proxy used for HTTPS resources"
    kargs = doc.get("kernelArguments") or {}
    both = set(kargs.get("shouldExist") or []) & set(kargs.get("shouldNotExist") or [])
    for arg in sorted(both):
        yield E, "$.kernelArguments", f"kernel argument {arg!r} is both in shouldExist and shouldNotExist"


def _floats(node: Any, path: str) -> Iterator[Problem]:
    """JSON Schema calls 1.0 an integer; Ignition (Go) refuses to read it into one."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _floats(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _floats(v, f"{path}.{i}")
    elif isinstance(node, float):
        yield E, path, f"expected an integer, found {node!r}"


def _all_resources(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], bool]]:
    """(path, resource, source_required) for every fetchable thing in the config."""
    ign = doc.get("ignition") or {}
    cfg = ign.get("config") or {}
    for i, r in enumerate(cfg.get("merge") or []):
        yield f"$.ignition.config.merge.{i}", r, True
    if cfg.get("replace"):
        yield "$.ignition.config.replace", cfg["replace"], False
    tls = (ign.get("security") or {}).get("tls") or {}
    for i, r in enumerate(tls.get("certificateAuthorities") or []):
        yield f"$.ignition.security.tls.certificateAuthorities.{i}", r, True
    for i, f in _items(doc, "storage", "files"):
        if f.get("contents"):
            yield f"$.storage.files.{i}.contents", f["contents"], False
        for j, a in enumerate(f.get("append") or []):
            yield f"$.storage.files.{i}.append.{j}", a, False
    for i, lk in _items(doc, "storage", "luks"):
        if lk.get("keyFile"):
            yield f"$.storage.luks.{i}.keyFile", lk["keyFile"], False


def _resources(doc: dict[str, Any], version: str) -> Iterator[Problem]:
    schemes = SCHEMES[version]
    for path, res, required in _all_resources(doc):
        source = res.get("source")
        compression = res.get("compression")
        if compression not in (None, "", "gzip"):
            yield E, f"{path}.compression", f"unsupported compression {compression!r} (use gzip or omit)"
        vhash = (res.get("verification") or {}).get("hash")
        if vhash is not None and not _HASH.match(vhash):
            yield (
                E,
                f"{path}.verification.hash",
                ("hash must be sha512-<128 hex digits> or sha256-<64 hex digits>"),
            )
        if source is None:
            if required:
                yield E, path, "missing source"
            elif ".append." in path:
                yield W, path, "an append entry without a source appends nothing"
            if res.get("httpHeaders") or vhash or compression:
                yield E, path, "httpHeaders, verification and compression need a source"
            continue
        scheme = urlsplit(source).scheme.lower()
        if scheme not in schemes:
            if scheme == "arn":
                yield E, f"{path}.source", "arn: URLs need Ignition spec 3.4.0 (Butane flatcar 1.1.0)"
            else:
                yield (
                    E,
                    f"{path}.source",
                    (
                        f"unsupported URL scheme {scheme or '(none)'!r}: use one of "
                        f"{', '.join(sorted(schemes))}"
                    ),
                )
            continue
        if scheme == "data":
            try:
                decode_data_url(source)
            except ValueError as exc:
                yield E, f"{path}.source", f"invalid data URL: {exc}"
        if scheme == "s3" and compression:
            yield W, f"{path}.compression", "the spec says compression cannot be used with s3 sources"
        if res.get("httpHeaders") and scheme not in ("http", "https"):
            yield E, f"{path}.httpHeaders", "httpHeaders only work with http and https sources"
        names = [h.get("name") for h in res.get("httpHeaders") or [] if isinstance(h, dict)]
        for name in sorted({n for n in names if names.count(n) > 1 and n}):
            yield E, f"{path}.httpHeaders", f"duplicate HTTP header {name!r}"


def _check_path(path: str, value: Any) -> Iterator[Problem]:
    if not isinstance(value, str):
        return
    if not value.startswith("/"):
        yield E, path, f"path {value!r} must be absolute"
    elif posixpath.normpath(value) != value or value.startswith("//"):
        # normpath keeps a leading "//" (POSIX allows it a meaning); Ignition does not
        clean = posixpath.normpath("/" + value.lstrip("/"))
        yield E, path, f"path {value!r} is not normalized (use {clean!r})"


def _nodes(doc: dict[str, Any], version: str) -> Iterator[Problem]:
    seen: dict[str, str] = {}
    kinds: dict[str, str] = {}
    for section, kind in (("files", "file"), ("directories", "directory"), ("links", "link")):
        for i, node in _items(doc, "storage", section):
            base = f"$.storage.{section}.{i}"
            p = node.get("path")
            yield from _check_path(f"{base}.path", p)
            if isinstance(p, str):
                if p in seen:
                    yield E, f"{base}.path", f"duplicate path {p!r} (also at {seen[p]})"
                else:
                    seen[p] = f"{base}.path"
                    kinds[p] = kind
            for owner in ("user", "group"):
                o = node.get(owner) or {}
                if o.get("id") is not None and o.get("name") is not None:
                    yield E, f"{base}.{owner}", f"{owner} has both id and name; give one"
            mode = node.get("mode")
            if isinstance(mode, int) and not 0 <= mode <= 0o7777:
                yield E, f"{base}.mode", f"mode {mode} is outside 0..07777"
            elif isinstance(mode, int) and mode & 0o7000 and version == "3.3.0":
                yield (
                    W,
                    f"{base}.mode",
                    (
                        "setuid/setgid/sticky bits need Ignition spec 3.4.0 (Butane "
                        "flatcar 1.1.0); spec 3.3.0 may not apply them"
                    ),
                )
            if kind == "file":
                contents = node.get("contents") or {}
                if node.get("overwrite") and contents.get("source") is None:
                    yield E, f"{base}.overwrite", "overwrite: true needs contents with a source"
            if kind == "link":
                target = node.get("target")
                if node.get("hard") and isinstance(target, str) and not target.startswith("/"):
                    yield W, f"{base}.target", "a hard link's target should be an absolute path"
    for p, where in seen.items():
        parent = posixpath.dirname(p)
        while parent.strip("/"):  # dirname("//") is "//": stop at any root, not only "/"
            if kinds.get(parent) in ("file", "link"):
                yield E, where, f"{p!r} is inside {parent!r}, which is a {kinds[parent]}"
                break
            parent = posixpath.dirname(parent)


def _unique(items: list[tuple[int, dict[str, Any]]], key: str, base: str, what: str) -> Iterator[Problem]:
    seen: dict[Any, int] = {}
    for i, x in items:
        v = x.get(key)
        if v is None or v == "":
            continue
        if v in seen:
            yield E, f"{base}.{i}.{key}", f"duplicate {what} {v!r} (also at {base}.{seen[v]})"
        else:
            seen[v] = i


def _storage_devices(doc: dict[str, Any]) -> Iterator[Problem]:
    disks = _items(doc, "storage", "disks")
    yield from _unique(disks, "device", "$.storage.disks", "disk device")
    for i, d in disks:
        yield from _device(f"$.storage.disks.{i}.device", d.get("device"))
        parts = [(j, p) for j, p in enumerate(d.get("partitions") or []) if isinstance(p, dict)]
        numbered = [(j, p) for j, p in parts if p.get("number")]
        yield from _unique(numbered, "number", f"$.storage.disks.{i}.partitions", "partition number")
        unnumbered = [(j, p) for j, p in parts if not p.get("number")]
        yield from _unique(unnumbered, "label", f"$.storage.disks.{i}.partitions", "partition label")
        for j, p in parts:
            if p.get("shouldExist") is False:
                extra = [
                    k for k in ("label", "startMiB", "sizeMiB", "guid", "typeGuid") if p.get(k) is not None
                ]
                if not p.get("number") or extra:
                    yield (
                        E,
                        f"$.storage.disks.{i}.partitions.{j}",
                        (
                            "shouldExist: false needs a "
                            "non-zero number and no label, "
                            "start, size, guid or typeGuid"
                        ),
                    )
    raid = _items(doc, "storage", "raid")
    yield from _unique(raid, "name", "$.storage.raid", "RAID name")
    for i, r in raid:
        for j, dev in enumerate(r.get("devices") or []):
            yield from _device(f"$.storage.raid.{i}.devices.{j}", dev)
    fss = _items(doc, "storage", "filesystems")
    yield from _unique(fss, "device", "$.storage.filesystems", "filesystem device")
    for i, fs in fss:
        base = f"$.storage.filesystems.{i}"
        yield from _device(f"{base}.device", fs.get("device"))
        fmt = fs.get("format")
        if fmt is not None and fmt != "" and fmt not in FS_FORMATS:
            yield E, f"{base}.format", f"unsupported format {fmt!r} (use {', '.join(FS_FORMATS)})"
        if fs.get("path") is not None:
            yield from _check_path(f"{base}.path", fs["path"])
            if not fmt:
                yield E, f"{base}.format", "a filesystem with a path needs a format"
    luks = _items(doc, "storage", "luks")
    yield from _unique(luks, "name", "$.storage.luks", "LUKS name")
    for i, lk in luks:
        yield from _device(f"$.storage.luks.{i}.device", lk.get("device"))
        clevis = lk.get("clevis") or {}
        for j, t in enumerate(clevis.get("tang") or []):
            if isinstance(t, dict) and not t.get("thumbprint"):
                yield E, f"$.storage.luks.{i}.clevis.tang.{j}", "a tang server needs a thumbprint"
        if clevis.get("custom") and (clevis.get("tang") or clevis.get("tpm2") or clevis.get("threshold")):
            yield E, f"$.storage.luks.{i}.clevis.custom", "clevis.custom excludes tang, tpm2 and threshold"
        pin = (clevis.get("custom") or {}).get("pin")
        if isinstance(pin, str) and pin not in ("tpm2", "tang", "sss"):
            yield (
                E,
                f"$.storage.luks.{i}.clevis.custom.pin",
                f"unsupported clevis pin {pin!r} (use tpm2, tang or sss)",
            )


def _device(path: str, dev: Any) -> Iterator[Problem]:
    if isinstance(dev, str) and not dev.startswith("/"):
        yield E, path, f"device {dev!r} must be an absolute path"


def _units(doc: dict[str, Any]) -> Iterator[Problem]:
    units = _items(doc, "systemd", "units")
    yield from _unique(units, "name", "$.systemd.units", "unit")
    for i, u in units:
        base = f"$.systemd.units.{i}"
        name = u.get("name")
        if isinstance(name, str) and (not name.endswith(UNIT_SUFFIXES) or not _UNIT_NAME.match(name)):
            yield (
                E,
                f"{base}.name",
                (
                    f"invalid unit name {name!r}: it needs a unit type suffix "
                    "(.service, .timer, .mount, ...) and no '/' or spaces"
                ),
            )
        if u.get("enabled") and isinstance(u.get("contents"), str) and not _has_install(u["contents"]):
            yield (
                W,
                f"{base}.contents",
                (f"unit {name!r} is enabled, but has no [Install] section, so enabling it does nothing"),
            )
        if u.get("mask") and u.get("enabled"):
            yield W, base, "unit is both masked and enabled"
        contents = u.get("contents")
        if isinstance(contents, str):
            yield from _unit_text(f"{base}.contents", contents)
        dropins = [(j, d) for j, d in enumerate(u.get("dropins") or []) if isinstance(d, dict)]
        yield from _unique(dropins, "name", f"{base}.dropins", "drop-in")
        for j, d in dropins:
            dname = d.get("name")
            if isinstance(dname, str) and (not dname.endswith(".conf") or "/" in dname):
                yield E, f"{base}.dropins.{j}.name", f"invalid drop-in name {dname!r}: it must end in .conf"
            if isinstance(d.get("contents"), str):
                yield from _unit_text(f"{base}.dropins.{j}.contents", d["contents"])


def _has_install(text: str) -> bool:
    return any(line.strip() == "[Install]" for line in text.splitlines())


def _unit_text(path: str, text: str) -> Iterator[Problem]:
    """The checks Ignition's unit parser makes: sections before keys, ``key=value`` lines."""
    section = False
    continued = False
    warned = False
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if continued:
            continued = line.endswith("\\")
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                yield E, path, f"line {n} of the unit: unterminated section header {line!r}"
            section = True
            continue
        if not section:
            if not warned:
                message = f"line {n} of the unit: {line[:40]!r} is outside any [Section]; systemd ignores it"
                yield W, path, message
                warned = True
            continue
        if "=" not in line:
            yield E, path, f"line {n} of the unit: {line[:40]!r} is not KEY=VALUE"
        continued = line.endswith("\\")


def _passwd(doc: dict[str, Any]) -> Iterator[Problem]:
    users = _items(doc, "passwd", "users")
    groups = _items(doc, "passwd", "groups")
    yield from _unique(users, "name", "$.passwd.users", "user")
    yield from _unique(groups, "name", "$.passwd.groups", "group")
    for kind, items in (("users", users), ("groups", groups)):
        for i, x in items:
            name = x.get("name")
            if isinstance(name, str) and (not _ACCOUNT.match(name) or len(name) > 32):
                yield E, f"$.passwd.{kind}.{i}.name", f"invalid account name {name!r}"
    for i, u in users:
        keys = [k for k in u.get("sshAuthorizedKeys") or [] if isinstance(k, str)]
        seen: set[str] = set()
        for j, k in enumerate(keys):
            if k in seen:
                yield E, f"$.passwd.users.{i}.sshAuthorizedKeys.{j}", "duplicate SSH key"
            seen.add(k)
            if "\n" in k:
                yield E, f"$.passwd.users.{i}.sshAuthorizedKeys.{j}", "an SSH key must be one line"
        home = u.get("homeDir")
        if isinstance(home, str):
            yield from _check_path(f"$.passwd.users.{i}.homeDir", home)
