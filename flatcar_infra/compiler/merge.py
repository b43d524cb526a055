"""Ignition 3.x config merging, on plain JSON documents.

These are the rules Ignition applies to ``ignition.config.merge`` (``config/merge/merge.go``) and
that terraform-provider-ct applies to ``snippets``, so a snippet means the same whether it is merged
here at compile time or by Ignition at boot:

- objects merge field by field, recursively; a scalar set in the child replaces the parent's; a
  field absent (or null) in the child keeps the parent's;
- lists of keyed objects merge by key: an entry whose key is in both is merged recursively (in the
  parent's position), child-only entries are appended in order. Keys: files/directories/links by
  ``path`` *across the three lists* (a child directory at a parent file's path replaces the file),
  units/dropins/users/groups/raid/luks by ``name``, disks/filesystems by ``device``, partitions by
  ``number`` else ``label``, merge/certificateAuthorities by ``source``, httpHeaders by ``name``
  (a child header with a null ``value`` deletes the parent's), tang by ``url``;
- lists of strings are sets keyed by value, keeping order (sshAuthorizedKeys, user groups, raid
  devices, kernelArguments; ``shouldExist``/``shouldNotExist`` share one key space, so a child's
  ``shouldNotExist`` removes a parent's ``shouldExist`` of the same argument);
- lists Ignition exempts from duplicate handling are concatenated: ``files[].append``, and the
  ``options``/``mountOptions`` of filesystems, raid and luks.

Simplification: Go's non-pointer scalars (e.g. ``raid.level``) are replaced by the child's even when
the child leaves them empty; here an absent child field keeps the parent's. The two differ only for
child entries that are invalid on their own.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

KeyFn = Callable[[Any], str]


def _field(name: str) -> KeyFn:
    def key(item: Any) -> str:
        value = item.get(name) if isinstance(item, dict) else None
        return "" if value is None else str(value)

    return key


def _partition_key(item: Any) -> str:
    if not isinstance(item, dict):
        return ""
    number = item.get("number")
    if number:
        return f"number:{number}"
    label = item.get("label")
    return f"label:{label}" if label is not None else ""


# field name -> key of its entries (object lists); string lists are keyed by value.
_KEYS: dict[str, KeyFn] = {
    "merge": _field("source"),
    "certificateAuthorities": _field("source"),
    "httpHeaders": _field("name"),
    "disks": _field("device"),
    "partitions": _partition_key,
    "raid": _field("name"),
    "filesystems": _field("device"),
    "files": _field("path"),
    "directories": _field("path"),
    "links": _field("path"),
    "luks": _field("name"),
    "tang": _field("url"),
    "units": _field("name"),
    "dropins": _field("name"),
    "users": _field("name"),
    "groups": _field("name"),
}

# Lists concatenated without duplicate handling (Ignition's IgnoreDuplicates).
_APPEND_ONLY = frozenset({"append", "options", "mountOptions"})

# Sibling lists that share one key space (Ignition's MergedKeys).
_SHARED_HANDLES: dict[str, str] = {
    "files": "node",
    "directories": "node",
    "links": "node",
    "shouldExist": "karg",
    "shouldNotExist": "karg",
}


# merged output path -> (0: from the parent, 1: from the child; the path there)
Trace = dict[str, tuple[int, str]]


def merge_configs(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``child`` merged over it; neither input is modified."""
    return _merge_object(base, child, None, "$", "$", "$")


def merge_traced(base: dict[str, Any], child: dict[str, Any]) -> tuple[dict[str, Any], Trace]:
    """``merge_configs`` plus where each merged value came from (Ignition's merge also returns a
    translation set): every object field and list entry is traced; a copied subtree is traced
    at its root, so a path below it is found by its nearest traced ancestor."""
    trace: Trace = {"$": (1, "$")}
    return _merge_object(base, child, trace, "$", "$", "$"), trace


def trace_back(trace: Trace, path: str) -> tuple[int, str]:
    """Which side ``path`` of the merged document came from, and its path there."""
    p, suffix = path, ""
    while p not in trace:
        if "." not in p:
            return 0, path
        p, last = p.rsplit(".", 1)
        suffix = f".{last}{suffix}"
    side, there = trace[p]
    return side, there + suffix


def _key_of(field: str, item: Any) -> str:
    if isinstance(item, dict):
        return _KEYS.get(field, _field("\0"))(item)
    return repr(item) if not isinstance(item, str) else item


def _merge_object(
    parent: dict[str, Any], child: dict[str, Any], trace: Trace | None, pp: str, cp: str, rp: str
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    # Every (handle, key) present in any child list of this object, with the list it is in.
    child_index: dict[tuple[str, str], tuple[str, int]] = {}
    for field, value in child.items():
        if isinstance(value, list) and field not in _APPEND_ONLY:
            handle = _SHARED_HANDLES.get(field, field)
            for i, item in enumerate(value):
                child_index[(handle, _key_of(field, item))] = (field, i)

    for field in _ordered_fields(parent, child):
        p = parent.get(field)
        c = child.get(field)
        fp, fc, fr = f"{pp}.{field}", f"{cp}.{field}", f"{rp}.{field}"
        if isinstance(p, list) and (c is None or isinstance(c, list)):
            # Run even without a child list: a child entry in a sibling list (a directory at a
            # parent file's path) still removes the parent's entry.
            merged = _merge_list(field, p, c or [], child, child_index, trace, (fp, cp, fr))
            if merged or c is not None:
                result[field] = merged
                if trace is not None:
                    trace[fr] = (1, fc) if c is not None else (0, fp)
        elif c is None:
            if p is not None:
                result[field] = copy.deepcopy(p)
                if trace is not None:
                    trace[fr] = (0, fp)
        elif isinstance(p, dict) and isinstance(c, dict):
            result[field] = _merge_object(p, c, trace, fp, fc, fr)
            if trace is not None:
                trace[fr] = (1, fc)
        else:
            result[field] = copy.deepcopy(c)
            if trace is not None:
                trace[fr] = (1, fc)
    return result


def _ordered_fields(parent: dict[str, Any], child: dict[str, Any]) -> list[str]:
    fields = list(parent)
    fields.extend(k for k in child if k not in parent)
    return fields


def _merge_list(
    field: str,
    parent: list[Any],
    child: list[Any],
    child_obj: dict[str, Any],
    child_index: dict[tuple[str, str], tuple[str, int]],
    trace: Trace | None,
    paths: tuple[str, str, str],
) -> list[Any]:
    pp, cobj, rp = paths  # the parent list's path, the child *object's* path, the result list's path

    def traced(side: int, there: str) -> None:
        if trace is not None:
            trace[f"{rp}.{len(out)}"] = (side, there)

    out: list[Any] = []
    if field in _APPEND_ONLY:
        for i, item in enumerate(parent):
            traced(0, f"{pp}.{i}")
            out.append(copy.deepcopy(item))
        for j, item in enumerate(child):
            traced(1, f"{cobj}.{field}.{j}")
            out.append(copy.deepcopy(item))
        return out
    handle = _SHARED_HANDLES.get(field, field)
    parent_keys = {_key_of(field, item) for item in parent}
    for i, item in enumerate(parent):
        hit = child_index.get((handle, _key_of(field, item)))
        if hit is None:
            traced(0, f"{pp}.{i}")
            out.append(copy.deepcopy(item))
            continue
        child_field, index = hit
        if child_field != field:
            continue  # replaced by an entry of a sibling list (e.g. a file by a directory)
        child_item = child_obj[child_field][index]
        cpath = f"{cobj}.{child_field}.{index}"
        if isinstance(item, dict) and isinstance(child_item, dict):
            if field == "httpHeaders" and child_item.get("value") is None:
                continue  # a header with a null value removes the parent's header
            traced(1, cpath)
            out.append(_merge_object(item, child_item, trace, f"{pp}.{i}", cpath, f"{rp}.{len(out)}"))
        else:
            traced(1, cpath)
            out.append(copy.deepcopy(child_item))
    for j, item in enumerate(child):
        if _key_of(field, item) not in parent_keys:
            traced(1, f"{cobj}.{field}.{j}")
            out.append(copy.deepcopy(item))
    return out
