"""Who may log in to a machine and which host key it presents, merged into its compiled config.

SSH access travels in the config, never in cloud fields that force a new machine (EC2
``key_name``, a droplet's ``ssh_keys``, an image): rotating the operator's key is then a config
change, applied in place by a reprovision like any other. The same function serves the stack
program and ``flatcar-infra plan``, so both compute the same config, hash and manifest.

Host keys generated at deploy time (AWS) are written to ``/etc/ssh`` by the config, so the
machine's key is known before its first boot and pinned from the first connection. They are kept
across reprovisions (``flatcar-reset`` keeps ``/etc/ssh/ssh_host_.*``) and rewritten with the
same content, hence ``overwrite: true``.

Pure: no Pulumi, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from flatcar_infra.canonical import canonical_bytes, config_hash
from flatcar_infra.compiler.api import CompiledConfig, stamp
from flatcar_infra.compiler.dataurl import data_url
from flatcar_infra.compiler.merge import merge_configs
from flatcar_infra.errors import UserError

HOST_KEY_DIR: Final = "/etc/ssh"
KEY_TYPES: Final = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)


@dataclass(frozen=True)
class HostKey:
    """An SSH host key the config installs: ``/etc/ssh/ssh_host_<algorithm>_key`` (0600) and
    its ``.pub`` (0644). ``private_openssh`` is secret; it never reaches a log or a repr."""

    algorithm: str  # ed25519 | ecdsa | rsa: the file name sshd and ssh-keygen -A use
    private_openssh: str = field(repr=False)
    public_line: str

    @property
    def private_path(self) -> str:
        return f"{HOST_KEY_DIR}/ssh_host_{self.algorithm}_key"

    @property
    def public_path(self) -> str:
        return self.private_path + ".pub"


@dataclass(frozen=True)
class Access:
    """The login side of a machine: ``user`` gets ``authorized_keys`` (the reprovisioner's key
    first, then any others, e.g. the next key during a rotation); ``host_keys`` are installed."""

    user: str = "core"
    authorized_keys: tuple[str, ...] = ()
    host_keys: tuple[HostKey, ...] = ()

    def snippet(self, version: str) -> dict[str, Any]:
        """The Ignition fragment merged over the user's config."""
        doc: dict[str, Any] = {"ignition": {"version": version}}
        if self.authorized_keys:
            doc["passwd"] = {"users": [{"name": self.user, "sshAuthorizedKeys": list(self.authorized_keys)}]}
        files = []
        for hk in self.host_keys:
            files.append(_file(hk.private_path, hk.private_openssh.strip() + "\n", 0o600))
            files.append(_file(hk.public_path, hk.public_line.strip() + "\n", 0o644))
        if files:
            doc["storage"] = {"files": files}
        return doc

    def apply(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        """``doc`` with this access merged the way Ignition merges configs: the user's own entry
        for ``user`` keeps its settings and keys, ours are added (duplicates dropped)."""
        if not self.authorized_keys and not self.host_keys:
            return json.loads(canonical_bytes(doc))  # type: ignore[no-any-return]
        version = str((doc.get("ignition") or {}).get("version") or "3.3.0")
        merged: dict[str, Any] = merge_configs(dict(doc), self.snippet(version))
        return merged


def _file(path: str, text: str, mode: int) -> dict[str, Any]:
    return {"path": path, "mode": mode, "overwrite": True, "contents": {"source": data_url(text.encode())[0]}}


def check_public_key(line: str, where: str) -> str:
    """An OpenSSH public key line (``TYPE BASE64 [comment]``), stripped; a clear error otherwise.

    Checked here because a typo in an authorized key is a lock-out waiting for the next reset."""
    import base64
    import binascii

    text = line.strip()
    parts = text.split()
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        raise UserError(
            f"{where}: not an OpenSSH public key line: {text[:40]!r}",
            "expected 'TYPE BASE64 [comment]', e.g. the contents of ~/.ssh/id_ed25519.pub",
        )
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise UserError(f"{where}: the key of {parts[0]} is not base64") from None
    name_len = int.from_bytes(blob[:4], "big") if len(blob) >= 4 else -1
    if blob[4 : 4 + name_len].decode("ascii", "replace") != parts[0]:
        raise UserError(f"{where}: the key data does not match its type {parts[0]} (a truncated copy?)")
    return text


def authorized_keys(keys: Sequence[str], where: str) -> tuple[str, ...]:
    """Checked, stripped and de-duplicated (by type and key, first one wins), in order."""
    out: list[str] = []
    seen: set[tuple[str, str]] = set()
    for i, k in enumerate(keys):
        line = check_public_key(k, f"{where}[{i}]")
        kind, blob = line.split()[:2]
        if (kind, blob) not in seen:
            seen.add((kind, blob))
            out.append(line)
    return tuple(out)


def finish(
    doc: Mapping[str, Any], *, source_kind: str = "ignition", warnings: Sequence[Any] = ()
) -> CompiledConfig:
    """The delivered form: canonical bytes with the hash stamp, exactly as ``compile_config``
    stamps (the hash is over the unstamped canonical bytes)."""
    body = canonical_bytes(doc)
    identity = config_hash(body)
    return CompiledConfig(
        canonical=canonical_bytes(stamp(dict(doc), identity)),
        hash=identity,
        version=str(doc["ignition"]["version"]),
        source_kind=source_kind,  # type: ignore[arg-type]
        stamped=True,
        warnings=tuple(warnings),
    )
