"""The desired state: the exact config bytes, their identity hash, how they reach the host, and
what the config says that a reprovision must check (its stamp, its SSH keys, its remote resources,
the files Ignition will refuse to overwrite). Pure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from flatcar_infra.compiler.api import STAMP_PATH
from flatcar_infra.compiler.dataurl import decode_data_url
from flatcar_infra.reprovision.policy import Policy

Delivery = Literal["file", "pointer", "url"]
DELIVERIES: tuple[str, ...] = ("file", "pointer", "url")


def stamp_in(ignition: Mapping[str, Any]) -> str | None:
    """The hash the config stamps into ``STAMP_PATH`` (its proof of application), if any."""
    for f in ignition.get("storage", {}).get("files", []) or []:
        if f.get("path") == STAMP_PATH:
            src = (f.get("contents") or {}).get("source") or ""
            if src.startswith("data:") and not (f.get("contents") or {}).get("compression"):
                try:
                    return decode_data_url(src).decode("utf-8").strip()
                except (ValueError, UnicodeDecodeError):
                    return None
    return None


def stamp_of(config: bytes | None) -> str | None:
    """``stamp_in`` of raw config bytes; None for anything that is not a stamped config."""
    try:
        doc = json.loads(config) if config else None
    except ValueError:
        return None
    return stamp_in(doc) if isinstance(doc, dict) else None


def enabled_units(ignition: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(
        sorted(
            u["name"]
            for u in ignition.get("systemd", {}).get("units", []) or []
            if u.get("enabled") is True and not u.get("mask")
        )
    )


def wipes_root(ignition: Mapping[str, Any]) -> bool:
    """Does the config reformat the ROOT filesystem (the ``wipe-root`` strategy's premise)?"""
    for fs in ignition.get("storage", {}).get("filesystems", []) or []:
        dev = str(fs.get("device", ""))
        if fs.get("wipeFilesystem") is True and (fs.get("label") == "ROOT" or dev.endswith("by-label/ROOT")):
            return True
    return False


def key_id(line: str) -> str:
    """``TYPE BASE64`` of an OpenSSH public key line (options and comment dropped)."""
    parts = line.split()
    for i, p in enumerate(parts):
        if re.fullmatch(r"(ssh-|ecdsa-|sk-)[\w@.-]+", p) and i + 1 < len(parts):
            return f"{p} {parts[i + 1]}"
    return " ".join(parts[:2])


def authorized_keys(ignition: Mapping[str, Any], user: str) -> tuple[str, ...]:
    """The public keys (``TYPE BASE64``) the config authorizes for ``user``."""
    out: list[str] = []
    for u in (ignition.get("passwd") or {}).get("users") or []:
        if u.get("name") == user:
            out += [key_id(k) for k in u.get("sshAuthorizedKeys") or [] if isinstance(k, str)]
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True)
class Remote:
    """A resource Ignition fetches at boot (not a ``data:`` URL)."""

    where: str  # JSON path in the config, e.g. $.storage.files.3.contents
    url: str
    hash: str | None  # verification.hash: sha512-<hex> | sha256-<hex>
    headers: tuple[tuple[str, str], ...] = ()
    is_config: bool = False  # ignition.config.merge/replace: a config whose own resources count too

    @property
    def scheme(self) -> str:
        return self.url.split(":", 1)[0].lower()


def remote_resources(ignition: Mapping[str, Any]) -> list[Remote]:
    """Every non-``data:`` source in the config, in document order."""
    out: list[Remote] = []

    def add(res: Any, where: str, is_config: bool = False) -> None:
        if not isinstance(res, Mapping):
            return
        src = res.get("source")
        if not isinstance(src, str) or not src or src.startswith("data:"):
            return
        headers = tuple(
            (str(h.get("name")), str(h.get("value")))
            for h in res.get("httpHeaders") or []
            if isinstance(h, Mapping)
        )
        out.append(Remote(where, src, (res.get("verification") or {}).get("hash"), headers, is_config))

    ign = ignition.get("ignition") or {}
    cfg = ign.get("config") or {}
    for i, m in enumerate(cfg.get("merge") or []):
        add(m, f"$.ignition.config.merge.{i}", True)
    add(cfg.get("replace"), "$.ignition.config.replace", True)
    tls = (ign.get("security") or {}).get("tls") or {}
    for i, ca in enumerate(tls.get("certificateAuthorities") or []):
        add(ca, f"$.ignition.security.tls.certificateAuthorities.{i}")
    for i, f in enumerate((ignition.get("storage") or {}).get("files") or []):
        add(f.get("contents"), f"$.storage.files.{i}.contents")
        for j, a in enumerate(f.get("append") or []):
            add(a, f"$.storage.files.{i}.append.{j}")
    for i, t in enumerate((ignition.get("storage") or {}).get("luks") or []):
        add((t.get("keyFile") or {}), f"$.storage.luks.{i}.keyFile")
    return out


def files_without_overwrite(ignition: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """``(path, json path)`` of files with contents and no ``overwrite: true``: Ignition stops with
    "A file exists there already and overwrite is false" when such a path exists at boot."""
    for i, f in enumerate((ignition.get("storage") or {}).get("files") or []):
        if f.get("contents") is not None and not f.get("overwrite") and isinstance(f.get("path"), str):
            yield f["path"], f"$.storage.files.{i}"


@dataclass(frozen=True)
class Desired:
    """What the host should run: the exact bytes, their identity hash and how to get them there."""

    config: bytes = field(repr=False)  # may hold secrets: never printed
    config_hash: str
    version: str
    policy: Policy
    delivery: Delivery = "file"
    config_url: str | None = None
    enabled_units: tuple[str, ...] = ()
    wipes_root: bool = False

    @property
    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.config)
        return doc

    @classmethod
    def from_config(
        cls,
        config: bytes | str,
        config_hash: str,
        policy: Policy,
        delivery: str = "file",
        config_url: str | None = None,
    ) -> Desired:
        """Validate the pieces against each other; raises ``ValueError`` naming the problem."""
        data = config.encode("utf-8") if isinstance(config, str) else config
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise ValueError(f"config: not JSON: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("ignition"), dict):
            raise ValueError("config: not an Ignition config (no 'ignition' object)")
        version = str(doc["ignition"].get("version", ""))
        if not re.fullmatch(r"sha512-[0-9a-f]{128}", config_hash or ""):
            raise ValueError(f"config_hash: expected 'sha512-<128 hex>', got {config_hash[:20]!r}")
        if delivery not in DELIVERIES:
            raise ValueError(f"delivery: unknown {delivery!r}; use one of {', '.join(DELIVERIES)}")
        if delivery in ("url", "pointer") and not config_url:
            raise ValueError(f"config_url: required with delivery '{delivery}'")
        stamped = stamp_in(doc)
        if policy.uses_ssh and stamped != config_hash:
            raise ValueError(
                "config: "
                + (
                    "it does not stamp " + STAMP_PATH
                    if stamped is None
                    else f"its stamp {STAMP_PATH} holds another hash than config_hash"
                )
                + "; compile it with stamp_config=True so the host can prove which config it runs"
            )
        if policy.strategy == "wipe-root" and not wipes_root(doc):
            raise ValueError(
                "policy.strategy: 'wipe-root' needs a config that reformats ROOT "
                "(a filesystem labeled ROOT with wipeFilesystem: true)"
            )
        return cls(
            data,
            config_hash,
            version,
            policy,
            delivery,  # type: ignore[arg-type]
            config_url,
            enabled_units(doc),
            wipes_root(doc),
        )
