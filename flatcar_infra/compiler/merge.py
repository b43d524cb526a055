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


def merge_configs(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``child`` merged over it; neither input is modified."""
    return _merge_object(base, child)


def _key_of(field: str, item: Any) -> str:
    if isinstance(item, dict):
        return _KEYS.get(field, _field("\0"))(item)
    return repr(item) if not isinstance(item, str) else item


def _merge_object(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
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
        if isinstance(p, list) and (c is None or isinstance(c, list)):
            # Run even without a child list: a child entry in a sibling list (a directory at a
            # parent file's path) still removes the parent's entry.
            merged = _merge_list(field, p, c or [], child, child_index)
            if merged or c is not None:
                result[field] = merged
        elif c is None:
            if p is not None:
                result[field] = copy.deepcopy(p)
        elif isinstance(p, dict) and isinstance(c, dict):
            result[field] = _merge_object(p, c)
        else:
            result[field] = copy.deepcopy(c)
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
) -> list[Any]:
    if field in _APPEND_ONLY:
        return copy.deepcopy(parent) + copy.deepcopy(child)
    handle = _SHARED_HANDLES.get(field, field)
    out: list[Any] = []
    parent_keys = {_key_of(field, item) for item in parent}
    for item in parent:
        hit = child_index.get((handle, _key_of(field, item)))
        if hit is None:
            out.append(copy.deepcopy(item))
            continue
        child_field, index = hit
        if child_field != field:
            continue  # replaced by an entry of a sibling list (e.g. a file by a directory)
        child_item = child_obj[child_field][index]
        if isinstance(item, dict) and isinstance(child_item, dict):
            if field == "httpHeaders" and child_item.get("value") is None:
                continue  # a header with a null value removes the parent's header
            out.append(_merge_object(item, child_item))
        else:
            out.append(copy.deepcopy(child_item))
    for item in child:
        if _key_of(field, item) not in parent_keys:
            out.append(copy.deepcopy(item))
    return out
