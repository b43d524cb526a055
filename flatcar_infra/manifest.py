"""The manifest: one short digest per thing a config puts on a host.

Keys name what a reviewer recognizes (``file:/etc/x``, ``unit:app.service``,
``dropin:docker.service/10-x.conf``, ``user:core``, ``kernel-arg:+quiet``); values change exactly
when that thing changes. ``pulumi preview --diff`` on the ``Reprovision`` resource and
``flatcar-infra plan`` both show changes in these terms. Digests are truncated SHA-256 of the
canonical JSON of the entry: enough to see a change, not enough to leak a secret's value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from flatcar_infra.canonical import canonical_bytes

DIGEST_LEN = 12


def digest(value: Any) -> str:
    return hashlib.sha256(canonical_bytes(value)).hexdigest()[:DIGEST_LEN]


def _strip(entry: Mapping[str, Any], *drop: str) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k not in drop}


def manifest_entries(ignition: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
    """``(key, entry)`` for every managed object, in a stable order; the entry is the raw JSON."""
    ign = ignition.get("ignition", {})
    for k in ("config", "security", "proxy", "timeouts"):
        if ign.get(k):
            yield f"ignition:{k}", ign[k]
    storage = ignition.get("storage", {})
    for d in storage.get("disks", []):
        yield f"disk:{d['device']}", d
    for r in storage.get("raid", []):
        yield f"raid:{r['name']}", r
    for lk in storage.get("luks", []):
        yield f"luks:{lk['name']}", lk
    for fs in storage.get("filesystems", []):
        yield f"filesystem:{fs['device']}", fs
    for kind, section in (("file", "files"), ("dir", "directories"), ("link", "links")):
        for e in storage.get(section, []):
            yield f"{kind}:{e['path']}", _strip(e, "path")
    for u in ignition.get("systemd", {}).get("units", []):
        body = _strip(u, "name", "dropins")
        if body:
            yield f"unit:{u['name']}", body
        for d in u.get("dropins", []):
            yield f"dropin:{u['name']}/{d['name']}", _strip(d, "name")
    passwd = ignition.get("passwd", {})
    for usr in passwd.get("users", []):
        yield f"user:{usr['name']}", _strip(usr, "name")
    for grp in passwd.get("groups", []):
        yield f"group:{grp['name']}", _strip(grp, "name")
    kargs = ignition.get("kernelArguments", {})
    for a in kargs.get("shouldExist", []):
        yield f"kernel-arg:+{a}", a
    for a in kargs.get("shouldNotExist", []):
        yield f"kernel-arg:-{a}", a


def build_manifest(ignition: Mapping[str, Any]) -> dict[str, str]:
    """Map of entry key → short digest, sorted by key. Later duplicates of a key win (as in Ignition)."""
    out: dict[str, str] = {}
    for key, entry in manifest_entries(ignition):
        out[key] = digest(entry)
    return dict(sorted(out.items()))
