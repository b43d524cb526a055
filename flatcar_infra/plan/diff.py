"""Two Ignition documents in, the changes a reviewer reads out. Pure: no I/O, no rendering.

Changes are keyed exactly like the manifest (``flatcar_infra.manifest``): one ``Change`` per key
whose manifest digest differs, never more, never fewer. That is what makes ``flatcar-infra plan``
and ``pulumi preview --diff`` of the ``Reprovision`` resource (whose ``manifest`` input is that
map) list the same entries; the plan only adds the detail a digest hides.

Secrets never leave this module as text: password hashes, HTTP header values, URL credentials and
query strings (presigned URLs), contents of secret-looking paths, contents that look secret
(``flatcar_infra.secrets``: keys, passwords, tokens, auth JSON) and anything carrying the
secret-variable marker are reduced to "(secret, changed)". A secret's own digest is not shown
either: only the manifest digest of its whole entry, which ``pulumi preview`` shows anyway.
"""

from __future__ import annotations

import binascii
import difflib
import hashlib
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Literal

from flatcar_infra.compiler.api import STAMP_PATH
from flatcar_infra.compiler.dataurl import decode_data_url
from flatcar_infra.limits import LimitExceeded, gunzip
from flatcar_infra.manifest import digest, manifest_entries
from flatcar_infra.plan.display import abbreviate_key, human_size, mask_url, short_hash
from flatcar_infra.secrets import (
    SECRET_MARKER,
    SecretRules,
    content_reason,
    decoded,
    marked,
    secret_header,
    value_reason,
)

HIDDEN: Final = "(hidden)"
MAX_DIFF_BYTES: Final = 64 * 1024
MAX_DIFF_LINES: Final = 400
SAME_BYTES: Final = "same bytes, encoding changed"

_SECRET_FIELDS: Final = frozenset({"passwordHash"})
_SECRET_RESOURCES: Final = frozenset({"keyFile"})  # luks key files


class Action(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


# Display groups, in display order, and which manifest kind belongs to which.
CATEGORIES: Final = (
    ("ignition", "Ignition settings"),
    ("storage", "Disks and filesystems"),
    ("file", "Files"),
    ("dir", "Directories"),
    ("link", "Links"),
    ("unit", "Systemd units"),
    ("user", "Users"),
    ("group", "Groups"),
    ("kernel-arg", "Kernel arguments"),
)
_KIND_CATEGORY: Final = {
    "ignition": "ignition",
    "disk": "storage",
    "raid": "storage",
    "luks": "storage",
    "filesystem": "storage",
    "file": "file",
    "dir": "dir",
    "link": "link",
    "unit": "unit",
    "dropin": "unit",
    "user": "user",
    "group": "group",
    "kernel-arg": "kernel-arg",
}
_CATEGORY_ORDER: Final = {c: i for i, (c, _) in enumerate(CATEGORIES)}


@dataclass(frozen=True)
class FieldChange:
    """One attribute that differs. ``old``/``new`` are display strings, ``None`` when absent;
    for a member of a set-like list (groups, SSH keys) ``item`` is set and one side is ``None``."""

    field: str
    old: str | None
    new: str | None
    item: bool = False
    secret: bool = False

    def describe(self) -> str:
        if self.secret:
            state = "added" if self.old is None else "removed" if self.new is None else "changed"
            return f"{self.field} (secret, {state})"
        if self.item:
            return f"{self.field} +{self.new}" if self.old is None else f"{self.field} -{self.old}"
        return f"{self.field} {_unset(self.old)} → {_unset(self.new)}"

    def describe_value(self) -> str:
        """The new value alone, for an entry that is added."""
        if self.secret:
            return f"{self.field} (secret)"
        if self.item:
            return f"{self.field} +{self.new}"
        return f"{self.field} {_unset(self.new)}"


@dataclass(frozen=True)
class ContentSide:
    """One side of a file's contents as a reviewer may see it: never the secret bytes."""

    source: str  # "inline", or the URL with credentials and query string masked
    size: int | None = None  # decoded bytes (inline, not secret)
    sha256: str | None = None  # 12 hex of the decoded bytes (inline, not secret)
    compression: str | None = None
    verification: str | None = None
    headers: tuple[str, ...] = ()  # header names; values are never kept
    text: bool = False
    error: str | None = None

    def describe(self) -> str:
        if self.source != "inline":
            parts = [self.source]
            if self.compression:
                parts.append(self.compression)
            parts.append(f"verify {short_hash(self.verification)}" if self.verification else "unverified")
            if self.headers:
                parts.append("headers " + ", ".join(self.headers))
            return " ".join(parts)
        if self.error:
            return f"inline, undecodable ({self.error})"
        if self.size is None:
            return "inline"
        kind = "text" if self.text else "binary"
        return f"{human_size(self.size)} {kind} sha256:{self.sha256}"


ContentMode = Literal["diff", "digest", "secret", "remote", "stamp"]


@dataclass(frozen=True)
class ContentChange:
    """How a file's (or unit's) contents change. ``diff`` holds unified-diff lines only in
    ``diff`` mode; ``note`` says why there is none otherwise."""

    label: str  # "contents" or "append"
    mode: ContentMode
    old: ContentSide | None
    new: ContentSide | None
    diff: tuple[str, ...] = ()
    added_lines: int = 0
    removed_lines: int = 0
    note: str = ""

    def describe(self, action: Action) -> str:
        if self.mode == "secret":
            return f"{self.label} (secret, {action.value})"
        if action is Action.ADDED and self.new is not None:
            return f"{self.label} {self.new.describe()}"
        if self.mode == "diff":
            return f"{self.label} changed (+{self.added_lines} -{self.removed_lines} lines)"
        if self.mode == "stamp":
            return self.note
        if self.note == SAME_BYTES:
            return f"{self.label} {SAME_BYTES}"
        if (
            self.mode == "remote"
            and self.old
            and self.new
            and "inline" not in (self.old.source, self.new.source)
        ):
            return self._describe_remote(self.old, self.new)
        old = self.old.describe() if self.old else "(none)"
        new = self.new.describe() if self.new else "(none)"
        text = f"{self.label} {old} → {new}"
        return f"{text} ({self.note})" if self.note else text

    def _describe_remote(self, old: ContentSide, new: ContentSide) -> str:
        parts = []
        if old.source != new.source:
            parts.append(f"source {old.source} → {new.source}")
        if old.verification != new.verification:
            parts.append(f"verify {short_hash(old.verification)} → {short_hash(new.verification)}")
        if old.compression != new.compression:
            parts.append(f"compression {_unset(old.compression)} → {_unset(new.compression)}")
        if old.headers != new.headers:
            before, after = ", ".join(old.headers) or "(none)", ", ".join(new.headers) or "(none)"
            parts.append(f"headers {before} → {after}")
        if not parts:  # only what is never shown differs: a signed query string or a header value
            parts.append("credentials (secret, changed)")
        return f"{self.label} from {new.source} (not fetched): " + "; ".join(parts)


@dataclass(frozen=True)
class Change:
    """One manifest entry that is added, removed or changed."""

    key: str  # the manifest key, e.g. "file:/etc/motd"
    action: Action
    old_digest: str | None
    new_digest: str | None
    fields: tuple[FieldChange, ...] = ()
    contents: tuple[ContentChange, ...] = ()
    secret: bool = False

    @property
    def kind(self) -> str:
        return self.key.split(":", 1)[0]

    @property
    def name(self) -> str:
        return self.key.split(":", 1)[1]

    @property
    def category(self) -> str:
        return _KIND_CATEGORY.get(self.kind, "ignition")

    @property
    def shown_key(self) -> str:
        """The key as the plan may print it: a kernel argument that holds a secret is the secret."""
        if self.kind == "kernel-arg" and self.secret:
            return f"kernel-arg:{self.name[:1]}(secret)"
        return self.key

    @property
    def shown_name(self) -> str:
        return self.shown_key.split(":", 1)[1]

    @property
    def unit(self) -> str | None:
        """The unit a drop-in belongs to (shown under it)."""
        return self.name.split("/", 1)[0] if self.kind == "dropin" else None

    @property
    def summary(self) -> str:
        """One line for a table: what happened, then what differs."""
        if self.kind == "kernel-arg":
            what = "should exist" if self.name.startswith("+") else "should not exist"
            return f"{self.action.value} ({what})"
        if self.action is Action.REMOVED:
            return "removed"
        if self.action is Action.ADDED:
            parts = [c.describe(self.action) for c in self.contents]
            parts += _join_items([f.describe_value() for f in self.fields], self.fields)
            return "; ".join(["added", *parts])
        described = [_unit_flag(f) if self.kind == "unit" else f.describe() for f in self.fields]
        parts = _join_items(described, self.fields)
        parts += [c.describe(self.action) for c in self.contents]
        return "; ".join(parts) if parts else "changed"


def _join_items(described: list[str], fields: Sequence[FieldChange]) -> list[str]:
    """``groups +a; groups -b`` → ``groups +a -b``: set members of one field on one line."""
    out: list[str] = []
    prev: FieldChange | None = None
    for text, f in zip(described, fields, strict=True):
        if f.item and prev is not None and prev.item and prev.field == f.field:
            out[-1] += text[len(f.field) :]
        else:
            out.append(text)
        prev = f
    return out


@dataclass(frozen=True)
class ConfigDiff:
    changes: tuple[Change, ...]
    old_hash: str | None = None
    new_hash: str | None = None

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    def counts(self) -> dict[str, int]:
        out = {a.value: 0 for a in Action}
        for c in self.changes:
            out[c.action.value] += 1
        return out

    def by_category(self) -> list[tuple[str, str, list[Change]]]:
        """``(category, title, changes)`` for non-empty categories, in display order."""
        groups: list[tuple[str, str, list[Change]]] = []
        for cat, title in CATEGORIES:
            members = [c for c in self.changes if c.category == cat]
            if members:
                groups.append((cat, title, members))
        return groups


# ---------------------------------------------------------------------------------------------
# Entry point


def diff_ignition(
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any] | None,
    *,
    secrets: SecretRules | None = None,
    old_hash: str | None = None,
    new_hash: str | None = None,
) -> ConfigDiff:
    """Compare two Ignition documents (``None``: the machine does not exist on that side)."""
    rules = secrets or SecretRules()
    olds = _entries(old)
    news = _entries(new)
    changes: list[Change] = []
    for key in sorted(set(olds) | set(news)):
        o, n = olds.get(key), news.get(key)
        od = digest(o) if key in olds else None
        nd = digest(n) if key in news else None
        if od == nd:
            continue
        action = Action.ADDED if od is None else Action.REMOVED if nd is None else Action.CHANGED
        changes.append(_change(key, action, o, n, od, nd, rules))
    changes.sort(key=_sort_key)
    return ConfigDiff(tuple(changes), old_hash, new_hash)


def _entries(doc: Mapping[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if doc is not None:
        for key, entry in manifest_entries(doc):
            out[key] = entry  # later duplicates win, as in build_manifest
    return out


def _sort_key(c: Change) -> tuple[int, str, int, str]:
    if c.kind in ("unit", "dropin"):
        unit, _, dropin = c.name.partition("/")
        return (_CATEGORY_ORDER[c.category], unit, 1 if dropin else 0, dropin)
    if c.kind == "kernel-arg":
        return (_CATEGORY_ORDER[c.category], c.name[1:], 0, c.name[0])
    return (_CATEGORY_ORDER[c.category], c.name, 0, c.kind)


def _change(
    key: str, action: Action, old: Any, new: Any, od: str | None, nd: str | None, rules: SecretRules
) -> Change:
    kind, _, name = key.partition(":")
    secret = False
    if kind in ("file", "dir", "link", "unit", "dropin"):
        secret = rules.matches(name) or (kind == "dropin" and rules.matches(name.split("/", 1)[1]))
    secret = secret or _has_marker(old) or _has_marker(new)
    if kind == "kernel-arg":
        return Change(key, action, od, nd, secret=secret or value_reason(name[1:]) is not None)
    content_keys: tuple[str, ...] = ()
    contents: list[ContentChange] = []
    if kind == "file":
        content_keys = ("contents", "append")
        contents += _file_contents(name, old, new, secret)
    elif kind in ("unit", "dropin"):
        content_keys = ("contents",)
        cc = _text_contents("contents", name, _get(old, "contents"), _get(new, "contents"), secret)
        if cc is not None:
            contents.append(cc)
    fields = _field_changes(_strip(old, content_keys), _strip(new, content_keys), secret_resources=secret)
    return Change(key, action, od, nd, tuple(fields), tuple(contents), secret)


def _get(entry: Any, key: str) -> Any:
    return entry.get(key) if isinstance(entry, Mapping) else None


def _strip(entry: Any, drop: Sequence[str]) -> Mapping[str, Any]:
    if not isinstance(entry, Mapping):
        return {}
    return {k: v for k, v in entry.items() if k not in drop}


def _has_marker(value: Any) -> bool:
    if isinstance(value, str):
        if marked(value):
            return True
        if value.startswith("data:"):
            data = decoded({"source": value})
            return data is not None and marked(data)
        return False
    if isinstance(value, Mapping):
        return any(_has_marker(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_marker(v) for v in value)
    return False


# ---------------------------------------------------------------------------------------------
# Contents


def _file_contents(name: str, old: Any, new: Any, secret: bool) -> list[ContentChange]:
    out: list[ContentChange] = []
    for label in ("contents", "append"):
        o, n = _get(old, label), _get(new, label)
        if _same(o, n):
            continue
        o_side = _append_side(o) if label == "append" else _resource_side(o)
        n_side = _append_side(n) if label == "append" else _resource_side(n)
        if name == STAMP_PATH and label == "contents":
            out.append(_stamp(o_side, n_side))
        else:
            out.append(_compare(label, name, o_side, n_side, secret))
    return out


def _stamp(o: _Side, n: _Side) -> ContentChange:
    """The stamp holds the config hash: show it as such, not as a diff of two hex strings."""

    def text(side: _Side) -> str:
        data = side[1] if side is not None else None
        return short_hash(data.decode("utf-8", "replace").strip()) if data is not None else "(none)"

    return ContentChange(
        "contents",
        "stamp",
        o[0] if o else None,
        n[0] if n else None,
        note=f"config hash {text(o)} → {text(n)}",
    )


def _text_contents(label: str, name: str, old: Any, new: Any, secret: bool) -> ContentChange | None:
    if _same(old, new):
        return None
    o = _inline_side(old.encode("utf-8")) if isinstance(old, str) else None
    n = _inline_side(new.encode("utf-8")) if isinstance(new, str) else None
    return _compare(label, name, o, n, secret)


def _same(a: Any, b: Any) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and digest(a) == digest(b))


# A side is the display info plus the decoded bytes when known (inline); the bytes never leave.
_Side = tuple[ContentSide, bytes | None] | None


def _inline_side(data: bytes, compression: str | None = None) -> tuple[ContentSide, bytes]:
    digest12 = hashlib.sha256(data).hexdigest()[:12]
    return ContentSide("inline", len(data), digest12, compression, text=_is_text(data)), data


def _resource_side(res: Any) -> _Side:
    if not isinstance(res, Mapping):
        return None
    source = res.get("source")
    compression = res.get("compression") or None
    verification = _get(res.get("verification"), "hash")
    if not source:
        return _inline_side(b"")
    if isinstance(source, str) and source.startswith("data:"):
        try:
            raw = decode_data_url(source)
            data = gunzip(raw) if compression == "gzip" else raw  # bounded: a gzip bomb stays shut
        except (ValueError, binascii.Error, OSError, zlib.error, EOFError, LimitExceeded) as exc:
            return ContentSide("inline", error=type(exc).__name__), None
        return _inline_side(data, compression)
    headers = tuple(str(h.get("name")) for h in res.get("httpHeaders") or () if isinstance(h, Mapping))
    shown = mask_url(str(source))
    if verification and _resource_secret(res):
        verification = HIDDEN  # fetched with credentials: its hash could confirm a guessed secret
    return (
        ContentSide(
            "(a URL holding a secret)" if content_reason(shown.encode()) else shown,
            compression=compression,
            verification=verification,
            headers=headers,
        ),
        None,
    )


def _append_side(items: Any) -> _Side:
    if not isinstance(items, list) or not items:
        return None
    sides = [_resource_side(i) for i in items]
    if all(s is not None and s[1] is not None for s in sides):
        return _inline_side(b"".join(s[1] for s in sides if s is not None and s[1] is not None))
    return ContentSide(" + ".join(s[0].describe() for s in sides if s is not None)), None


def _compare(label: str, name: str, o: _Side, n: _Side, secret: bool) -> ContentChange:
    old_side, old_data = o if o is not None else (None, None)
    new_side, new_data = n if n is not None else (None, None)
    if secret or _bytes_marked(old_data) or _bytes_marked(new_data):
        return ContentChange(label, "secret", _redact(old_side), _redact(new_side), note="secret")
    if (old_side and old_side.source != "inline") or (new_side and new_side.source != "inline"):
        return ContentChange(label, "remote", old_side, new_side, note="remote source, not fetched")
    if old_data is not None and old_data == new_data:
        return ContentChange(label, "digest", old_side, new_side, note=SAME_BYTES)
    texts = [d for d in (old_data, new_data) if d is not None]
    if (old_side and old_side.error) or (new_side and new_side.error):
        return ContentChange(label, "digest", old_side, new_side, note="undecodable data URL")
    if not all(_is_text(d) for d in texts):
        return ContentChange(label, "digest", old_side, new_side)
    if any(len(d) > MAX_DIFF_BYTES or d.count(b"\n") > MAX_DIFF_LINES for d in texts):
        return ContentChange(
            label,
            "digest",
            old_side,
            new_side,
            note=f"larger than {MAX_DIFF_BYTES // 1024} KiB or {MAX_DIFF_LINES} lines",
        )
    lines, plus, minus = unified_diff(name, old_data, new_data)
    return ContentChange(label, "diff", old_side, new_side, tuple(lines), plus, minus)


def _bytes_marked(data: bytes | None) -> bool:
    """Secret by content (a private key, ``DB_PASSWORD=``, a token, a Pulumi secret's marker):
    decided by ``flatcar_infra.secrets``, the same rules that keep secrets out of public objects."""
    return data is not None and content_reason(data) is not None


def _redact(side: ContentSide | None) -> ContentSide | None:
    if side is None:
        return None
    # no size, digest or verification hash: a hash of a short secret can be guessed offline
    return ContentSide(side.source, compression=side.compression, headers=side.headers)


def _is_text(data: bytes) -> bool:
    if b"\x00" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def unified_diff(name: str, old: bytes | None, new: bytes | None) -> tuple[list[str], int, int]:
    """Git-style unified diff lines (no trailing newlines), with ``+``/``-`` line counts."""
    a = (old or b"").decode("utf-8").splitlines(keepends=True)
    b = (new or b"").decode("utf-8").splitlines(keepends=True)
    label = name if name.startswith("/") else "/" + name
    fromfile = "/dev/null" if old is None else "a" + label
    tofile = "/dev/null" if new is None else "b" + label
    out: list[str] = []
    plus = minus = 0
    for line in difflib.unified_diff(a, b, fromfile, tofile, n=3, lineterm="\n"):
        if line.startswith("+") and not line.startswith("+++"):
            plus += 1
        elif line.startswith("-") and not line.startswith("---"):
            minus += 1
        if line.endswith("\n"):
            out.append(line[:-1])
        else:
            out += [line, "\\ No newline at end of file"]
    return out, plus, minus


# ---------------------------------------------------------------------------------------------
# Attributes


@dataclass(frozen=True)
class _Leaf:
    kind: Literal["scalar", "set", "secret"]
    value: str | frozenset[str]
    raw: str = ""  # digest of what the display hides (a resource's masked query or headers)


def _field_changes(
    old: Mapping[str, Any], new: Mapping[str, Any], *, secret_resources: bool
) -> list[FieldChange]:
    lo: dict[str, _Leaf] = {}
    ln: dict[str, _Leaf] = {}
    _flatten(old, "", lo, secret_resources)
    _flatten(new, "", ln, secret_resources)
    out: list[FieldChange] = []
    for path in sorted(set(lo) | set(ln), key=_field_order):
        a, b = lo.get(path), ln.get(path)
        if a == b:
            continue
        if (a and a.kind == "secret") or (b and b.kind == "secret"):
            out.append(FieldChange(path, "•" if a else None, "•" if b else None, secret=True))
        elif (a and a.kind == "set") or (b and b.kind == "set"):
            av = a.value if a and isinstance(a.value, frozenset) else frozenset()
            bv = b.value if b and isinstance(b.value, frozenset) else frozenset()
            out += [FieldChange(path, m, None, item=True) for m in sorted(av - bv)]
            out += [FieldChange(path, None, m, item=True) for m in sorted(bv - av)]
            ar, br = (a.raw if a else ""), (b.raw if b else "")
            if ar != br:  # members holding a secret: that they changed, never what they are
                out.append(FieldChange(path, "•" if ar else None, "•" if br else None, secret=True))
        elif a and b and a.value == b.value:  # only the masked part differs
            out.append(FieldChange(path, "•", "•", secret=True))
        else:
            out.append(FieldChange(path, _leaf_str(a), _leaf_str(b)))
    return out


_FIRST: Final = ("enabled", "mask", "mode", "user", "group", "target", "hard", "overwrite")


def _field_order(path: str) -> tuple[int, str]:
    head = re.split(r"[.\[]", path, maxsplit=1)[0]
    return (_FIRST.index(head) if head in _FIRST else len(_FIRST), path)


def _leaf_str(leaf: _Leaf | None) -> str | None:
    return None if leaf is None else str(leaf.value)


def _flatten(value: Any, path: str, out: dict[str, _Leaf], secret: bool) -> None:
    if value is None:
        return
    last = re.split(r"[.\]]", path.rstrip("]"))[-1] if path else ""
    if isinstance(value, Mapping):
        if "source" in value and path:  # a resource: merge, CA, luks key file, ...
            if secret or last in _SECRET_RESOURCES or _has_marker(value) or _resource_secret(value):
                out[path] = _Leaf("secret", digest(value))
            else:
                side = _resource_side(value)
                out[path] = _Leaf("scalar", side[0].describe() if side else "(none)", digest(value))
            return
        for k in sorted(value):
            sub = f"{path}.{k}" if path else k
            if k in _SECRET_FIELDS:
                if value[k] is not None:
                    out[sub] = _Leaf("secret", digest(value[k]))
            elif k == "httpHeaders" and isinstance(value[k], list):
                for h in value[k]:
                    if isinstance(h, Mapping):
                        out[f"{sub}[{h.get('name')}]"] = _Leaf("secret", digest(h.get("value")))
            else:
                _flatten(value[k], sub, out, secret)
        return
    if isinstance(value, list):
        if all(not isinstance(v, Mapping | list) for v in value):
            hidden = [v for v in value if isinstance(v, str) and _value_secret(v)]
            shown = frozenset(_scalar(v, last) for v in value if v is not None and v not in hidden)
            out[path] = _Leaf("set", shown, digest(sorted(hidden)) if hidden else "")
            return
        for i, v in enumerate(value):
            _flatten(v, f"{path}[{_item_id(v, i)}]", out, secret)
        return
    if isinstance(value, str) and _value_secret(value):
        out[path] = _Leaf("secret", digest(value))
        return
    out[path] = _Leaf("scalar", _scalar(value, last))


def _value_secret(value: str) -> bool:
    """A field value the plan must not print: a Pulumi secret's marker, a key, a token, a
    password assignment, credentials in a URL (``flatcar_infra.secrets``)."""
    return marked(value) or value_reason(value) is not None


def _resource_secret(resource: Mapping[str, Any]) -> bool:
    """Contents that are secret, or private: fetched with credentials or a signature in the URL or
    a credentials header. Then not even their verification hash is shown."""
    data = decoded(resource)
    source = resource.get("source")
    if data is not None and content_reason(data) is not None:
        return True
    if isinstance(source, str) and (marked(source) or value_reason(source) is not None):
        return True
    return any(isinstance(h, Mapping) and secret_header(str(h.get("name") or ""))
               for h in resource.get("httpHeaders") or ())


def _item_id(item: Any, index: int) -> str:
    if isinstance(item, Mapping):
        for k in ("name", "label", "number", "device", "url"):
            if item.get(k) not in (None, ""):
                return str(item[k])
    return str(index)


def _scalar(value: Any, field_name: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and field_name == "mode":
        return f"{value:04o}"
    if isinstance(value, str):
        if field_name == "sshAuthorizedKeys":
            return abbreviate_key(value)
        if "://" in value:
            return mask_url(value)
        return value if value.strip() == value and value else repr(value)
    return str(value)


def _unit_flag(f: FieldChange) -> str:
    if f.field == "enabled":
        label = {"true": "enabled", "false": "disabled", None: "no preset"}
        return f"{label.get(f.old, f.old)} → {label.get(f.new, f.new)}"
    if f.field == "mask":
        label = {"true": "masked", "false": "unmasked", None: "unmasked"}
        return f"{label.get(f.old, f.old)} → {label.get(f.new, f.new)}"
    return f.describe()


def _unset(value: str | None) -> str:
    return "(unset)" if value is None else value


__all__ = [
    "CATEGORIES",
    "MAX_DIFF_BYTES",
    "MAX_DIFF_LINES",
    "SECRET_MARKER",
    "Action",
    "Change",
    "ConfigDiff",
    "ContentChange",
    "ContentSide",
    "FieldChange",
    "SecretRules",
    "diff_ignition",
    "unified_diff",
]
