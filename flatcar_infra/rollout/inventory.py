"""The rollout inventory: which machines, how to reach them, in which order.

```yaml
defaults: {user: core, port: 22, identity: ~/.ssh/fleet}   # optional
vars: {domain: example.com}                                 # optional, every host's template vars
waves: [[web-1], [web-2, web-3]]                            # optional (else inventory order)
hosts:
  - name: web-1
    host: 10.0.0.11
    host_key: "ssh-ed25519 AAAA..."                          # pinned: required
    vars: {role: canary}                                    # optional, this host's template vars
```

Every problem is reported at once with file, line and column (``inv.yaml:7:5: error: ...``);
a relative ``identity`` is resolved against the inventory file's directory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from flatcar_infra.compiler.yamlsrc import (
    Mark,
    TypeMismatch,
    YMap,
    YNode,
    YScalar,
    YSeq,
    as_int,
    as_str,
    parse_yaml,
)
from flatcar_infra.errors import Diagnostic, Severity, UserError
from flatcar_infra.ssh import normalize_host_key

_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,62})$")
_HOST_KEYS = ("name", "host", "port", "user", "identity", "host_key", "vars")
_TOP_KEYS = ("hosts", "defaults", "vars", "waves")
_DEFAULT_KEYS = ("port", "user", "identity")


class InventoryError(UserError):
    """The inventory cannot be used; every diagnostic is in the message."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = tuple(diagnostics)
        super().__init__("\n".join(str(d) for d in diagnostics)
                         + f"\ninventory invalid: {len(diagnostics)} error(s)")


@dataclass(frozen=True)
class InventoryHost:
    name: str
    host: str
    port: int
    user: str
    identity: str
    host_key: str
    vars: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Inventory:
    path: str
    hosts: tuple[InventoryHost, ...]
    vars: dict[str, str] = field(default_factory=dict)
    waves: tuple[tuple[str, ...], ...] = ()

    def names(self) -> list[str]:
        return [h.name for h in self.hosts]


class _Reader:
    def __init__(self, path: str) -> None:
        self.path = path
        self.diags: list[Diagnostic] = []

    def error(self, mark: Mark, message: str, where: str) -> None:
        self.diags.append(Diagnostic(self.path, mark.line, mark.col, Severity.ERROR, message, where))

    def mapping(self, node: YNode, where: str, keys: tuple[str, ...]) -> YMap | None:
        if not isinstance(node, YMap):
            self.error(node.mark, f"expected a mapping, found a {type(node).__name__[1:].lower()}", where)
            return None
        for key in node:
            if key not in keys:
                self.error(node.keys[key], f"unknown key {key!r} (known: {', '.join(keys)})",
                           f"{where}.{key}")
        return node

    def string(self, node: YNode | None, where: str, *, required: bool = False,
               at: Mark | None = None) -> str | None:
        """A string value; ``at``: where to report a missing required key (its mapping)."""
        if node is None or (isinstance(node, YScalar) and node.is_null):
            if required:
                key = where.rsplit(".", 1)[-1]
                self.error(node.mark if node else (at or Mark(0, 0)),
                           f"required key {key!r} is missing" if node is None else "must not be empty", where)
            return None
        try:
            value = as_str(node).strip()
        except TypeMismatch as exc:
            self.error(node.mark, str(exc), where)
            return None
        if required and not value:
            self.error(node.mark, "must not be empty", where)
            return None
        return value

    def port(self, node: YNode | None, where: str) -> int | None:
        if node is None:
            return None
        try:
            value = as_int(node)
        except TypeMismatch as exc:
            self.error(node.mark, str(exc), where)
            return None
        if not 0 < value < 65536:
            self.error(node.mark, f"not a TCP port: {value}", where)
            return None
        return value

    def vars(self, node: YNode | None, where: str) -> dict[str, str]:
        if node is None:
            return {}
        m = self.mapping(node, where, tuple(node.items) if isinstance(node, YMap) else ())
        out: dict[str, str] = {}
        if m is None:
            return out
        for key, value in m.items.items():
            text = self.string(value, f"{where}.{key}")
            if text is not None:
                out[key] = text
        return out


def load_inventory(path: str | Path) -> Inventory:
    """Parse and check an inventory file; raises ``InventoryError`` listing every problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{p}: cannot read the inventory: {exc}") from None
    return parse_inventory(text, str(p), base_dir=p.parent)


def parse_inventory(text: str, filename: str, *, base_dir: Path | None = None) -> Inventory:
    doc = parse_yaml(text, filename)
    r = _Reader(filename)
    r.diags.extend(doc.diagnostics)
    if doc.root is None and not r.diags:
        r.error(Mark(1, 1), "the inventory is empty (expected 'hosts:')", "$")
    root = r.mapping(doc.root, "$", _TOP_KEYS) if doc.root is not None and not r.diags else None
    if root is None:
        raise InventoryError(r.diags)
    defaults = r.mapping(root.items["defaults"], "$.defaults", _DEFAULT_KEYS) if "defaults" in root else None
    d_port = r.port(defaults.get("port"), "$.defaults.port") if defaults else None
    d_user = r.string(defaults.get("user"), "$.defaults.user") if defaults else None
    d_ident = r.string(defaults.get("identity"), "$.defaults.identity") if defaults else None
    common = r.vars(root.get("vars"), "$.vars")
    hosts_node = root.get("hosts")
    hosts: list[InventoryHost] = []
    if not isinstance(hosts_node, YSeq) or not hosts_node.items:
        r.error(hosts_node.mark if hosts_node is not None else root.mark,
                "expected a non-empty list of hosts", "$.hosts")
        hosts_node = YSeq([], root.mark)
    seen: dict[str, Mark] = {}
    for i, node in enumerate(hosts_node.items):
        where = f"$.hosts.{i}"
        m = r.mapping(node, where, _HOST_KEYS)
        if m is None:
            continue
        name = r.string(m.get("name"), f"{where}.name", required=True, at=m.mark)
        if name is not None:
            if not _NAME.match(name):
                r.error(m.items["name"].mark, f"{name!r} is not a valid machine name (letters, digits, "
                        "'.', '_', '-'; at most 63)", f"{where}.name")
            elif name in seen:
                r.error(m.items["name"].mark, f"duplicate host name {name!r} (first at line "
                        f"{seen[name].line})", f"{where}.name")
            else:
                seen[name] = m.items["name"].mark
        host = r.string(m.get("host"), f"{where}.host", required=True, at=m.mark)
        port = r.port(m.get("port"), f"{where}.port") or d_port or 22
        user = r.string(m.get("user"), f"{where}.user") or d_user or "core"
        ident = r.string(m.get("identity"), f"{where}.identity") or d_ident
        if ident is None:
            r.error(m.mark, "no SSH identity: give 'identity' here or in 'defaults'", f"{where}.identity")
        else:
            ipath = Path(ident).expanduser()
            if not ipath.is_absolute() and base_dir is not None:
                ipath = base_dir / ipath
            if not ipath.is_file():
                r.error((m.get("identity") or m).mark, f"identity file {str(ipath)!r} does not exist",
                        f"{where}.identity")
            ident = str(ipath)
        key = r.string(m.get("host_key"), f"{where}.host_key", required=True, at=m.mark)
        if key is not None:
            try:
                key = normalize_host_key(key)
            except UserError as exc:
                r.error(m.items["host_key"].mark, exc.message, f"{where}.host_key")
                key = None
        hvars = r.vars(m.get("vars"), f"{where}.vars")
        if name and host and ident and key:
            hosts.append(InventoryHost(name, host, port, user, ident, key, hvars))
    waves: list[tuple[str, ...]] = []
    wnode = root.get("waves")
    if wnode is not None:
        if not isinstance(wnode, YSeq):
            r.error(wnode.mark, "expected a list of waves, each a list of host names", "$.waves")
        else:
            for i, w in enumerate(wnode.items):
                if not isinstance(w, YSeq) or not w.items:
                    r.error(w.mark, "expected a non-empty list of host names", f"$.waves.{i}")
                    continue
                names = [r.string(x, f"$.waves.{i}.{j}", required=True) for j, x in enumerate(w.items)]
                for j, (x, n) in enumerate(zip(w.items, names, strict=True)):
                    if n is not None and n not in seen:
                        r.error(x.mark, f"no host named {n!r} in the inventory", f"$.waves.{i}.{j}")
                waves.append(tuple(n for n in names if n))
    if r.diags:
        raise InventoryError(r.diags)
    return Inventory(filename, tuple(hosts), common, tuple(waves))
