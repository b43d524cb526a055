"""Validation of any Ignition document (Butane or CLC output, or raw JSON), rule for rule as the
machine's Ignition validates it (``coreos/ignition`` ``config/v3_x/types`` ``Validate`` methods,
``config/validate`` duplicate checks, go-systemd's unit parser), so a config we accept is one
Ignition accepts at first boot.

The JSON Schema of the spec version says which keys and types exist (unknown keys are warnings, as
Ignition gives them); the rules below say what a schema cannot. Problems carry the output JSON path
(``$.storage.files.0.mode``, Ignition's own paths); ``locate`` maps each to the source that
produced it (a Butane/CLC path and line), so the user sees their own file.

Where Ignition's wording is terse we keep its phrase and add the value and a hint.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from flatcar_infra.compiler.dataurl import check_data_url
from flatcar_infra.compiler.schema import SUPPORTED_VERSIONS, quick_check, validator
from flatcar_infra.compiler.unitfile import UnitSyntaxError, parse_unit
from flatcar_infra.compiler.urls import URLError, parse_url, query_values
from flatcar_infra.compiler.versions import IGNITION_SPECS, IgnitionSpec, describe_butane_versions
from flatcar_infra.compiler.yamlsrc import Mark
from flatcar_infra.errors import Diagnostic, Severity

if TYPE_CHECKING:  # jsonschema loads only when a document has a problem (CLI start-up time)
    from jsonschema.exceptions import ValidationError  # type: ignore[import-untyped]

# output JSON path -> (the source path to report, where in the source file)
Locate = Callable[[str], tuple[str, Mark]]
Problem = tuple[Severity, str, str]
E = Severity.ERROR
W = Severity.WARNING

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
FS_FORMATS = ("ext4", "btrfs", "xfs", "swap", "vfat", "none")
# mkfs limits on labels (bytes), as Ignition enforces them
FS_LABEL_MAX = {"ext4": 16, "btrfs": 256, "xfs": 12, "swap": 15, "vfat": 11}
RAID_LEVELS = {
    "linear": 0, "raid0": 0, "0": 0, "stripe": 0,
    "raid1": 1, "1": 1, "mirror": 1, "raid4": 4, "4": 4, "raid5": 5, "5": 5,
    "raid6": 6, "6": 6, "raid10": 10, "10": 10,
}  # fmt: skip
CLEVIS_PINS = ("tpm2", "tang", "sss")
_GUID = re.compile(r"^(|[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})$")
_HASH_SIZES = {"sha512": 128, "sha256": 64}
_INSTANCE = re.compile(r"^(.+?)@(.+?)\.service$")
INT64 = (-(2**63), 2**63 - 1)


def _no_location(path: str) -> tuple[str, Mark]:
    return path, Mark(0, 0)


def validate_document(doc: Any, *, filename: str, locate: Locate | None = None) -> list[Diagnostic]:
    """Every problem of ``doc`` as diagnostics (errors and warnings); never raises."""
    where = locate or _no_location
    out = []
    for severity, path, message in check_document(doc):
        src, mark = where(path)
        out.append(Diagnostic(filename, mark.line, mark.col, severity, message, src))
    return out


def check_document(doc: Any) -> list[Problem]:
    """The problems of ``doc`` with Ignition's JSON paths."""
    if not isinstance(doc, dict):
        return [(E, "$", "an Ignition config must be a JSON object")]
    ign = doc.get("ignition")
    version = ign.get("version") if isinstance(ign, dict) else None
    if not isinstance(version, str):
        return [(E, "$.ignition.version", "missing ignition.version")]
    if version not in SUPPORTED_VERSIONS:
        advice = (
            "spec 2.x configs are not supported: write Butane (variant: flatcar) or a "
            "Container Linux Config instead"
            if version.startswith("2.")
            else f"use Ignition spec {', '.join(SUPPORTED_VERSIONS)} (Butane flatcar "
            f"{describe_butane_versions()})"
        )
        return [(E, "$.ignition.version", f"unsupported Ignition spec version {version!r}: {advice}")]
    problems: list[Problem] = []
    schema_ok = True
    if not quick_check(version)(doc):
        for err in validator(version).iter_errors(doc):
            for problem in _schema_problem(err):
                schema_ok = schema_ok and problem[0] is not E
                problems.append(problem)
    problems.extend(_numbers(doc, "$"))
    if schema_ok:  # the rules below assume the shapes the schema guarantees
        problems.extend(_Rules(IGNITION_SPECS[version]).run(doc))
    return problems


def json_path(parts: Iterable[Any]) -> str:
    return "$" + "".join(f".{p}" for p in parts)


def _schema_problem(err: ValidationError) -> Iterator[Problem]:
    path = json_path(err.absolute_path)
    if err.validator == "additionalProperties":
        schema = err.schema if isinstance(err.schema, Mapping) else {}
        allowed = set(schema.get("properties", {}))
        instance = err.instance if isinstance(err.instance, dict) else {}
        for key in sorted(k for k in instance if k not in allowed):
            yield W, f"{path}.{key}", f"unused key {key!r} (Ignition ignores it)"
        return
    if err.validator == "required":
        yield E, path, f"missing required field: {err.message}"
        return
    if err.validator == "type":
        expected = err.validator_value
        names = [str(t) for t in (expected if isinstance(expected, list) else [expected]) if t != "null"]
        yield E, path, f"expected {' or '.join(names)}, found {_json_type(err.instance)}"
        return
    yield E, path, err.message


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


def _numbers(doc: Any, root: str) -> Iterator[Problem]:
    """Ignition reads integers into Go ints: ``1.0`` and anything beyond 64 bits fail to load."""
    stack: list[tuple[Any, str]] = [(doc, root)]
    lo, hi = INT64
    while stack:
        node, path = stack.pop()
        items = node.items() if type(node) is dict else enumerate(node)
        for k, v in items:
            t = type(v)
            if t is dict or t is list:
                stack.append((v, f"{path}.{k}"))
            elif t is float:
                yield E, f"{path}.{k}", f"expected an integer, found {v!r}"
            elif t is int and not lo <= v <= hi:
                yield E, f"{path}.{k}", f"{v} does not fit in a 64-bit integer"


# --- path and URL rules (shared by many types) ---------------------------------------------------


def path_error(value: Any) -> str | None:
    """Ignition's ``validatePath``: set, absolute and already clean (``path.Clean(p) == p``)."""
    if not isinstance(value, str):
        return None
    if value == "":
        return "path not specified"
    if not value.startswith("/"):
        return f"path {value!r} must be absolute"
    clean = go_clean(value)
    if clean != value:
        return f"path {value!r} is not fully simplified (use {clean!r})"
    return None


def go_clean(path: str) -> str:
    """Go's ``path.Clean`` for an absolute path (posixpath keeps a leading ``//``)."""
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def url_error(source: str, spec: IgnitionSpec) -> str | None:
    """Ignition's ``validateURL`` for a resource ``source``."""
    if source.startswith("data:"):
        # url.Parse accepts what the data URL reader accepts (it refuses control characters and
        # "#" too): the reader alone decides, without a second pass over a long payload
        try:
            check_data_url(source)
        except ValueError as exc:
            return f"invalid data URL: {exc}"
        return None
    try:
        url = parse_url(source)
    except URLError as exc:
        return f"unable to parse url {source[:80]!r}: {exc}"
    scheme = url.scheme
    if scheme not in spec.url_schemes:
        if scheme in {s for v in IGNITION_SPECS.values() for s in v.url_schemes}:
            newer = [v for v, s in IGNITION_SPECS.items() if scheme in s.url_schemes]
            return f"invalid url scheme {scheme!r}: it needs Ignition spec {newer[0]} or newer"
        allowed = ", ".join(sorted(spec.url_schemes))
        return f"invalid url scheme {scheme or '(none)'!r} (use one of {allowed})"
    if scheme in ("s3", "arn"):
        if scheme == "arn":
            problem = _arn_error(url.opaque)
            if problem:
                return problem
        version_id = query_values(url.raw_query).get("versionId")
        if version_id is not None and (not version_id or version_id[0] == ""):
            return "invalid S3 object VersionId (empty versionId)"
    if scheme == "data":
        try:
            check_data_url(source)
        except ValueError as exc:
            return f"invalid data URL: {exc}"
    return None


def _arn_error(opaque: str) -> str | None:
    full = "arn:" + opaque
    sections = full.split(":", 5)
    if len(sections) < 6:
        return "invalid S3 ARN format (arn:PARTITION:s3:REGION:ACCOUNT:RESOURCE)"
    if sections[2] != "s3":
        return f"invalid S3 ARN format: service {sections[2]!r} is not s3"
    slashes = full.count("/")
    if (sections[5].startswith("accesspoint/") and slashes < 2) or slashes < 1:
        return "invalid S3 ARN format: the resource names no object"
    return None


# --- the rules, type by type, as Ignition's Validate methods -------------------------------------


def _dicts(value: Any) -> list[tuple[int, dict[str, Any]]]:
    return [(i, x) for i, x in enumerate(value or []) if isinstance(x, dict)]


class _Rules:
    def __init__(self, spec: IgnitionSpec) -> None:
        self.spec = spec
        self.out: list[Problem] = []

    def e(self, path: str, message: str) -> None:
        self.out.append((E, path, message))

    def w(self, path: str, message: str) -> None:
        self.out.append((W, path, message))

    def run(self, doc: dict[str, Any]) -> list[Problem]:
        ign = doc.get("ignition") or {}
        self.ignition(ign)
        self.storage(doc.get("storage") or {})
        self.systemd(doc.get("systemd") or {})
        self.passwd(doc.get("passwd") or {})
        kargs = doc.get("kernelArguments") or {}
        self.dups(
            [("shouldExist", kargs.get("shouldExist")), ("shouldNotExist", kargs.get("shouldNotExist"))],
            "$.kernelArguments",
            None,
            "kernel argument",
        )
        self.path_conflicts(doc)
        return self.out

    # duplicates (config/validate ValidateDups): one key space per (merged) list of a struct
    def dups(
        self,
        lists: list[tuple[str, Any]],
        base: str,
        key: Callable[[Any], str] | None,
        what: str,
    ) -> None:
        seen: dict[str, str] = {}
        for name, items in lists:
            for i, item in enumerate(items or []):
                k = key(item) if key is not None else str(item)
                here = f"{base}.{name}.{i}"
                if k in seen:
                    self.e(here, f"duplicate entry defined: {what} {k!r} (also at {seen[k]})")
                else:
                    seen[k] = here

    def resource(self, res: dict[str, Any], path: str, *, required: bool = False) -> None:
        source = res.get("source")
        if required and not source:
            self.e(path, "source is required")
        elif isinstance(source, str) and source:
            problem = url_error(source, self.spec)
            if problem:
                self.e(f"{path}.source", problem)
        compression = res.get("compression")
        if compression not in (None, "", "gzip"):
            self.e(
                f"{path}.compression",
                f"invalid compression method {compression!r} (use gzip or leave it out)",
            )
        vhash = (res.get("verification") or {}).get("hash")
        if vhash is not None:
            if source is None:
                self.e(f"{path}.verification.hash", "source must be specified if verification is specified")
            function, dash, digest = vhash.partition("-")
            if not dash:
                self.e(f"{path}.verification.hash", f"malformed hash specifier {vhash!r} (use sha512-<hex>)")
            elif function not in _HASH_SIZES:
                self.e(
                    f"{path}.verification.hash", f"unrecognized hash function {function!r} (sha512 or sha256)"
                )
            elif len(digest) != _HASH_SIZES[function]:
                self.e(
                    f"{path}.verification.hash",
                    f"incorrect size for hash sum: {function} needs {_HASH_SIZES[function]} hex digits",
                )
        headers = res.get("httpHeaders")
        if headers:
            if not source:
                self.e(f"{path}.httpHeaders", "unable to parse url: httpHeaders need a source")
            else:
                try:
                    scheme = parse_url(source).scheme
                except URLError:
                    self.e(f"{path}.httpHeaders", "unable to parse url")
                else:
                    if scheme not in ("http", "https"):
                        self.e(
                            f"{path}.httpHeaders",
                            f"cannot use HTTP headers with this source scheme ({scheme})",
                        )
            for i, h in _dicts(headers):
                if h.get("name", "") == "":
                    self.e(f"{path}.httpHeaders.{i}.name", "HTTP header name can't be empty")
                if h.get("value") == "":
                    self.e(f"{path}.httpHeaders.{i}.value", "unable to parse HTTP header: empty value")
            self.dups([("httpHeaders", headers)], path, _field("name"), "HTTP header")

    def ignition(self, ign: dict[str, Any]) -> None:
        cfg = ign.get("config") or {}
        merge = cfg.get("merge")
        for i, r in _dicts(merge):
            self.resource(r, f"$.ignition.config.merge.{i}", required=True)
        self.dups([("merge", merge)], "$.ignition.config", _field("source"), "config")
        if isinstance(cfg.get("replace"), dict):
            self.resource(cfg["replace"], "$.ignition.config.replace")
        tls = (ign.get("security") or {}).get("tls") or {}
        cas = tls.get("certificateAuthorities")
        for i, r in _dicts(cas):
            self.resource(r, f"$.ignition.security.tls.certificateAuthorities.{i}", required=True)
        self.dups(
            [("certificateAuthorities", cas)],
            "$.ignition.security.tls",
            _field("source"),
            "certificate authority",
        )
        proxy = ign.get("proxy") or {}
        for key, http_ok in (("httpProxy", True), ("httpsProxy", False)):
            value = proxy.get(key)
            if value is None:
                continue
            try:
                scheme = parse_url(value).scheme
            except URLError as exc:
                self.e(f"$.ignition.proxy.{key}", f"unable to parse url: {exc}")
                continue
            if scheme not in ("http", "https"):
                self.e(f"$.ignition.proxy.{key}", f"proxies must be http(s), not {value[:60]!r}")
            elif scheme == "http" and not http_ok:
                self.w(
                    f"$.ignition.proxy.{key}", "insecure plaintext HTTP proxy specified for HTTPS resources"
                )
        self.dups([("noProxy", proxy.get("noProxy"))], "$.ignition.proxy", None, "no_proxy entry")

    # --- storage ---

    def storage(self, st: dict[str, Any]) -> None:
        base = "$.storage"
        self.dups(
            [("directories", st.get("directories")), ("files", st.get("files")), ("links", st.get("links"))],
            base,
            _field("path"),
            "path",
        )
        for name, key, what in (
            ("disks", "device", "disk"),
            ("filesystems", "device", "filesystem device"),
            ("luks", "name", "LUKS volume"),
            ("raid", "name", "RAID array"),
        ):
            self.dups([(name, st.get(name))], base, _field(key), what)
        files, dirs, links = _dicts(st.get("files")), _dicts(st.get("directories")), _dicts(st.get("links"))
        for i, f in files:
            self.node(f, f"{base}.files.{i}")
            self.mode(f.get("mode"), f"{base}.files.{i}.mode")
            contents = f.get("contents") or {}
            if f.get("overwrite") is True and contents.get("source") is None:
                self.e(f"{base}.files.{i}.overwrite", "overwrite must be false if source is unspecified")
            if isinstance(f.get("contents"), dict):
                self.resource(contents, f"{base}.files.{i}.contents")
            for j, a in _dicts(f.get("append")):
                self.resource(a, f"{base}.files.{i}.append.{j}")
        for i, d in dirs:
            self.node(d, f"{base}.directories.{i}")
            self.mode(d.get("mode"), f"{base}.directories.{i}.mode")
        for i, lk in links:
            self.node(lk, f"{base}.links.{i}")
            if not lk.get("target"):
                self.e(f"{base}.links.{i}.target", "link target is required")
        self.links(files, dirs, links)
        disks = _dicts(st.get("disks"))
        for i, d in disks:
            self.disk(d, f"{base}.disks.{i}")
        for i, r in _dicts(st.get("raid")):
            self.raid(r, f"{base}.raid.{i}")
        by_device = {d.get("device"): d for _, d in disks}
        for i, fs in _dicts(st.get("filesystems")):
            path = f"{base}.filesystems.{i}"
            self.filesystem(fs, path)
            disk = by_device.get(fs.get("device"))
            if disk is not None:
                if disk.get("partitions"):
                    self.w(f"{path}.device", "filesystem overwrites partitioned device")
                elif fs.get("wipeFilesystem") is not True and disk.get("wipeTable") is True:
                    self.w(
                        f"{path}.device",
                        "device matches disk with wipeTable enabled; filesystem will be wiped",
                    )
        for i, lk in _dicts(st.get("luks")):
            self.luks(lk, f"{base}.luks.{i}")

    def node(self, n: dict[str, Any], path: str) -> None:
        problem = path_error(n.get("path") or "")
        if problem:
            self.e(f"{path}.path", problem)
        for owner in ("user", "group"):
            o = n.get(owner) or {}
            if o.get("id") is not None and o.get("name"):
                self.e(f"{path}.{owner}", f"cannot set both id and name of the {owner}")

    def mode(self, mode: Any, path: str) -> None:
        if not isinstance(mode, int) or isinstance(mode, bool):
            return
        if not 0 <= mode <= 0o7777:
            self.e(path, f"illegal file mode {mode} (0{mode:o}): it must be between 0 and 07777")
        elif mode & 0o7000 and not self.spec.special_mode_bits_work:
            self.w(
                path,
                "setuid/setgid/sticky bits are not supported or functional in spec versions older "
                f"than 3.6.0 (mode 0{mode:o}): Ignition may not apply them",
            )

    def links(
        self,
        files: list[tuple[int, dict[str, Any]]],
        dirs: list[tuple[int, dict[str, Any]]],
        links: list[tuple[int, dict[str, Any]]],
    ) -> None:
        link_paths = [p for _, lk in links if isinstance(p := lk.get("path"), str)]
        if link_paths:
            for kind, items in (("directories", dirs), ("files", files), ("links", links)):
                for i, n in items:
                    p = n.get("path")
                    if not isinstance(p, str):
                        continue
                    for lp in link_paths:
                        if p.startswith(lp + "/"):
                            what = {"directories": "directory", "files": "file", "links": "link"}[kind]
                            self.e(
                                f"$.storage.{kind}.{i}", f"{what} path {p!r} includes link {lp!r} in config"
                            )
        dir_paths = {d.get("path") for _, d in dirs}
        for i, lk in links:
            if lk.get("hard") is not True:
                continue
            target = lk.get("target")
            if isinstance(target, str) and target:
                full = (
                    go_clean(target) if target.startswith("/") else go_clean(f"{lk.get('path', '')}/{target}")
                )
                if full in dir_paths:
                    self.e(f"$.storage.links.{i}", f"hard link target {target!r} is a directory")
            for owner in ("user", "group"):
                for k in ("id", "name"):
                    if (lk.get(owner) or {}).get(k) is not None:
                        self.w(f"$.storage.links.{i}.{owner}.{k}", "user/group ignored for hard link")

    def disk(self, d: dict[str, Any], path: str) -> None:
        device = d.get("device")
        if not device:
            self.e(f"{path}.device", "disk device is required")
            return
        problem = path_error(device)
        if problem:
            self.e(f"{path}.device", problem)
        parts = _dicts(d.get("partitions"))
        numbers: dict[int, list[int]] = {}
        labels: dict[str, int] = {}
        for j, p in parts:
            pp = f"{path}.partitions.{j}"
            number = p.get("number") or 0
            if p.get("shouldExist") is False and any(
                p.get(k) not in (None, "") if k in ("guid", "typeGuid") else p.get(k) is not None
                for k in ("label", "typeGuid", "guid", "startMiB", "sizeMiB")
            ):
                self.e(pp, "shouldExist specified false with other options also specified")
            label = p.get("label")
            if number == 0 and label is None:
                self.e(pp, "a partition number >= 1 or a label must be specified")
            if isinstance(label, str):
                if len(label.encode("utf-8")) > 36:
                    self.e(f"{pp}.label", f"partition labels may not exceed 36 characters ({label!r})")
                if ":" in label:
                    self.e(
                        f"{pp}.label", f"partition label {label!r} will be truncated to text before the colon"
                    )
                if label in labels:
                    self.e(pp, f"cannot use the same partition label twice ({label!r})")
                labels.setdefault(label, j)
            for k in ("guid", "typeGuid"):
                v = p.get(k)
                if isinstance(v, str) and not _GUID.match(v):
                    self.e(
                        f"{pp}.{k}", f'{v!r} doesn\'t match the form "01234567-89AB-CDEF-EDCB-A98765432101"'
                    )
            if number:
                numbers.setdefault(number, []).append(j)
        for number, where in numbers.items():
            if len(where) > 1:
                self.e(f"{path}.partitions.{where[1]}", f"partition numbers collide (number {number})")
                break
        overlap = _overlap(parts)
        if overlap is not None:
            self.e(f"{path}.partitions.{overlap}", "partitions overlap")
        if any(p.get("shouldExist") is False for _, p in parts) and any(
            not p.get("number") for _, p in parts
        ):
            self.e(
                f"{path}.partitions",
                "shouldExist is false for a partition and other partition(s) has start or size 0",
            )
        self.dups([("partitions", d.get("partitions"))], path, _partition_key, "partition")

    def raid(self, r: dict[str, Any], path: str) -> None:
        level = r.get("level")
        if not level:
            self.e(f"{path}.level", "raid level is required")
        elif level not in RAID_LEVELS:
            self.e(
                f"{path}.level",
                f"unrecognized raid level {level!r} (linear, raid0, raid1, raid4, raid5, raid6 or raid10)",
            )
        elif RAID_LEVELS[level] == 0 and r.get("spares"):
            self.e(f"{path}.level", "spares unsupported for linear and raid0 arrays")
        devices = r.get("devices") or []
        if not devices:
            self.e(f"{path}.devices", "raid devices required")
        for j, dev in enumerate(devices):
            problem = path_error(dev)
            if problem:
                self.e(f"{path}.devices.{j}", problem)
        self.dups([("devices", devices)], path, None, "device")

    def filesystem(self, fs: dict[str, Any], path: str) -> None:
        if fs.get("path") is not None:
            problem = path_error(fs["path"])
            if problem:
                self.e(f"{path}.path", problem)
        problem = path_error(fs.get("device") or "")
        if problem:
            self.e(f"{path}.device", problem)
        fmt = fs.get("format")
        if not fmt:
            if (
                fs.get("path")
                or fs.get("label")
                or fs.get("uuid")
                or fs.get("wipeFilesystem") is True
                or fs.get("mountOptions")
                or fs.get("options")
            ):
                self.e(
                    f"{path}.format",
                    "format cannot be empty when path, label, uuid, wipeFilesystem, options, or "
                    "mountOptions is specified",
                )
        elif fmt not in FS_FORMATS:
            self.e(f"{path}.format", f"invalid filesystem format {fmt!r} (one of {', '.join(FS_FORMATS)})")
        label = fs.get("label")
        if label:
            if not fmt:
                self.e(f"{path}.label", "filesystem must specify format if label is specified")
            elif fmt in FS_LABEL_MAX and len(label.encode("utf-8")) > FS_LABEL_MAX[fmt]:
                self.e(
                    f"{path}.label",
                    f"filesystem labels cannot be longer than {FS_LABEL_MAX[fmt]} characters when "
                    f"using {fmt} ({label!r})",
                )

    def luks(self, lk: dict[str, Any], path: str) -> None:
        name = lk.get("name")
        if isinstance(name, str) and "/" in name:
            self.e(f"{path}.name", f"device names cannot contain slashes ({name!r})")
        label = lk.get("label")
        if isinstance(label, str) and len(label.encode("utf-8")) > 47:
            self.e(f"{path}.label", "luks device labels cannot be longer than 47 characters")
        device = lk.get("device")
        if not device:
            self.e(f"{path}.device", "disk device is required")
        else:
            problem = path_error(device)
            if problem:
                self.e(f"{path}.device", problem)
        if isinstance(lk.get("keyFile"), dict):
            self.resource(lk["keyFile"], f"{path}.keyFile")
        clevis = lk.get("clevis")
        if not isinstance(clevis, dict):
            return
        custom = clevis.get("custom")
        if isinstance(custom, dict) and (
            clevis.get("tang") or clevis.get("tpm2") is True or clevis.get("threshold")
        ):
            self.e(f"{path}.clevis", "cannot use custom clevis config with tpm2, tang, or threshold")
        if isinstance(custom, dict) and any(
            custom.get(k) is not None for k in ("pin", "config", "needsNetwork")
        ):
            pin = custom.get("pin")
            if not pin:
                self.e(f"{path}.clevis.custom.pin", "missing required custom clevis pin")
            elif pin not in CLEVIS_PINS:
                self.e(f"{path}.clevis.custom.pin", f"unsupported clevis pin {pin!r} (tpm2, tang or sss)")
            if not custom.get("config"):
                self.e(f"{path}.clevis.custom.config", "missing required custom clevis config")
        tang = clevis.get("tang")
        for j, t in _dicts(tang):
            tp = f"{path}.clevis.tang.{j}"
            problem = url_error(t.get("url") or "", self.spec)
            if problem:
                self.e(f"{tp}.url", problem)
            if not t.get("thumbprint"):
                self.e(f"{tp}.thumbprint", "thumbprint is required")
            adv = t.get("advertisement")
            if adv:
                try:
                    json.loads(adv)
                except ValueError:
                    self.e(f"{tp}.advertisement", "advertisement is not valid JSON")
        self.dups([("tang", tang)], f"{path}.clevis", _field("url"), "tang server")
        self.dups([("openOptions", lk.get("openOptions"))], path, None, "open option")

    # --- systemd, passwd ---

    def systemd(self, sd: dict[str, Any]) -> None:
        units = _dicts(sd.get("units"))
        self.dups([("units", sd.get("units"))], "$.systemd", _field("name"), "unit")
        by_name = {u.get("name"): u for _, u in units}
        for i, u in units:
            path = f"$.systemd.units.{i}"
            name = u.get("name", "")
            if go_ext(name) not in UNIT_SUFFIXES:
                self.e(
                    f"{path}.name",
                    f"invalid systemd unit extension in {name!r} (.service, .socket, .timer, .mount, ...)",
                )
            contents = u.get("contents")
            sections = self.unit_text(contents, f"{path}.contents")
            if u.get("enabled") is True and contents and sections is not None and "Install" not in sections:
                self.w(
                    f"{path}.contents",
                    f"unit {name!r} is enabled, but has no install section so enable does nothing",
                )
            m = _INSTANCE.match(name) if isinstance(name, str) else None
            if m and u.get("enabled") is True:
                template = by_name.get(f"{m[1]}@.service")
                if template is not None and template.get("contents"):
                    t_sections = _sections(template["contents"])
                    if t_sections is not None and "Install" not in t_sections:
                        self.w(
                            f"{path}.contents",
                            f"template unit {m[1] + '@.service'!r} for {name!r} doesn't have Install section",
                        )
            dropins = u.get("dropins")
            for j, d in _dicts(dropins):
                dp = f"{path}.dropins.{j}"
                self.unit_text(d.get("contents"), f"{dp}.contents")
                if go_ext(d.get("name", "")) != ".conf":
                    self.e(
                        f"{dp}.name", f"invalid systemd drop-in extension in {d.get('name')!r} (use .conf)"
                    )
            self.dups([("dropins", dropins)], path, _field("name"), "drop-in")

    def unit_text(self, contents: Any, path: str) -> list[str] | None:
        if not isinstance(contents, str):
            return None
        try:
            return parse_unit(contents).sections
        except UnitSyntaxError as exc:
            self.e(path, f"invalid unit content: {exc}")
            return None

    def passwd(self, pw: dict[str, Any]) -> None:
        self.dups([("users", pw.get("users"))], "$.passwd", _field("name"), "user")
        self.dups([("groups", pw.get("groups"))], "$.passwd", _field("name"), "group")
        for i, u in _dicts(pw.get("users")):
            base = f"$.passwd.users.{i}"
            self.dups([("groups", u.get("groups"))], base, None, "group")
            self.dups([("sshAuthorizedKeys", u.get("sshAuthorizedKeys"))], base, None, "SSH key")

    def path_conflicts(self, doc: dict[str, Any]) -> None:
        """Config.Validate: a node at the path of a unit or drop-in Ignition writes."""
        unit_paths = set()
        for _, u in _dicts((doc.get("systemd") or {}).get("units")):
            name = u.get("name", "")
            if u.get("contents"):
                unit_paths.add(f"/etc/systemd/system/{name}")
            for _, d in _dicts(u.get("dropins")):
                if d.get("contents"):
                    unit_paths.add(f"/etc/systemd/system/{name}.d/{d.get('name', '')}")
        if not unit_paths:
            return
        st = doc.get("storage") or {}
        for kind in ("files", "directories", "links"):
            for i, n in _dicts(st.get(kind)):
                if n.get("path") in unit_paths:
                    self.e(
                        f"$.storage.{kind}.{i}.path",
                        f"path {n['path']!r} conflicts with systemd unit or dropin "
                        "(use systemd.units instead)",
                    )


def go_ext(name: str) -> str:
    """Go's ``path.Ext``: from the last dot of the last path element."""
    dot = name.rfind(".")
    return name[dot:] if dot > name.rfind("/") else ""


def _field(name: str) -> Callable[[Any], str]:
    def key(item: Any) -> str:
        value = item.get(name) if isinstance(item, dict) else None
        return "" if value is None else str(value)

    return key


def _sections(contents: str) -> list[str] | None:
    try:
        return parse_unit(contents).sections
    except UnitSyntaxError:
        return None


def _partition_key(p: Any) -> str:
    if not isinstance(p, dict):
        return ""
    if p.get("number"):
        return f"number:{p['number']}"
    if p.get("label") is not None:
        return f"label:{p['label']}"
    return ""


def _overlap(parts: list[tuple[int, dict[str, Any]]]) -> int | None:
    """Ignition's ``partitionsOverlap``: the index of a partition an explicit one overlaps."""

    def dims(p: dict[str, Any]) -> tuple[int, int] | None:
        start, size = p.get("startMiB"), p.get("sizeMiB")
        if not isinstance(start, int) or not isinstance(size, int) or start == 0:
            return None
        return start, start if size == 0 else start + size - 1

    sized = [(j, d) for j, p in parts if (d := dims(p)) is not None]
    for j, (ps, pe) in sized:
        for k, (os_, oe) in sized:
            if j == k:
                continue
            if os_ <= ps <= oe or os_ <= pe <= oe or (ps < os_ and pe > oe):
                return k
    return None
