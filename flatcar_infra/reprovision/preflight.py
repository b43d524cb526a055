"""Preflight: read-only checks that refuse, BEFORE the reset, what would leave a host wiped and
unreachable. Each refusal names the entry and what to do.

- the config as the real Ignition reads it (``ignition-validate`` where installed);
- everything the plan calls dangerous, and a config that would lock the operator out
  (``decide.config_refusals``);
- every keep entry compiled by the host's own regex engine, the kept files listed as flatcar-reset
  sees them, and the config's files without ``overwrite`` on kept paths ("file exists" at boot);
- every remote resource of the config (and the pointer object) fetched FROM THE HOST, with its
  verification hash checked; ``s3://`` objects from the operator side (boto3), since the host's
  curl cannot use the instance role Ignition uses.

``script_for`` builds the one host script (``scripts.preflight``), ``interpret`` turns its answers
into findings; ``local_refusals`` and ``operator_side`` need no host.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from flatcar_infra.compiler.dataurl import decode_data_url
from flatcar_infra.reprovision import scripts
from flatcar_infra.reprovision.decide import Refusal, config_refusals, short
from flatcar_infra.reprovision.desired import (
    Desired,
    Remote,
    authorized_keys,
    files_without_overwrite,
    remote_resources,
)
from flatcar_infra.reprovision.facts import parse_facts
from flatcar_infra.reprovision.hoststate import DEADMAN_KEEP, HostFacts
from flatcar_infra.reprovision.kept import KeptEntry, keep_regex, parse_listing
from flatcar_infra.reprovision.policy import STATE_DIR
from flatcar_infra.reprovision.source import ConfigSource, SourceError


@dataclass(frozen=True)
class Request:
    """What the preflight script is asked to check (and how to read its answers)."""

    script: scripts.Script
    keep_entries: tuple[str, ...]
    candidates: tuple[tuple[str, str], ...]  # (path, json path) of files without overwrite
    fetches: tuple[tuple[str, Remote, str | None], ...]  # (name, resource, expected sha512 hex)


def keep_entries(d: Desired, *, deadman: bool) -> tuple[str, ...]:
    """The ``--keep-paths`` entries of a reset for ``d`` (wipe-root: ROOT is reformatted, none)."""
    if d.policy.strategy == "wipe-root":
        return ()
    return (*d.policy.all_keep_paths, *(DEADMAN_KEEP if deadman else ()))


def _ca_bundle(doc: dict[str, Any]) -> bytes:
    out = b""
    tls = ((doc.get("ignition") or {}).get("security") or {}).get("tls") or {}
    for ca in tls.get("certificateAuthorities") or []:
        src = ca.get("source") or ""
        if src.startswith("data:"):
            data = decode_data_url(src)
            out += gzip.decompress(data) if ca.get("compression") == "gzip" else data
            out += b"\n"
    return out


def _proxy(doc: dict[str, Any]) -> dict[str, str]:
    p = (doc.get("ignition") or {}).get("proxy") or {}
    out: dict[str, str] = {}
    if p.get("httpProxy"):
        out["http_proxy"] = str(p["httpProxy"])
    if p.get("httpsProxy"):
        out["https_proxy"] = str(p["httpsProxy"])
    if p.get("noProxy"):
        out["no_proxy"] = ",".join(str(x) for x in p["noProxy"])
    return out


def script_for(
    d: Desired,
    *,
    root: str,
    owner_json: str,
    take_lock: bool,
    stale: str | None,
    user: str,
    login_key: str | None,
) -> Request:
    doc = d.document
    entries = keep_entries(d, deadman=d.policy.rollback)
    candidates = tuple(files_without_overwrite(doc))
    fetches: list[tuple[str, Remote, str | None]] = []
    for i, r in enumerate(remote_resources(doc)):
        if scripts.fetchable(r):
            fetches.append((f"res{i}", r, None))
    if d.delivery in ("pointer", "url") and d.config_url:
        pointer = Remote("the hosted config (config_url)", d.config_url, None, (), False)
        if scripts.fetchable(pointer):
            fetches.append(("pointer", pointer, hashlib.sha512(d.config).hexdigest()))
    key_b64 = login_key.split()[1] if login_key and len(login_key.split()) > 1 else ""
    script = scripts.preflight(
        root,
        owner_json=owner_json,
        take_lock=take_lock,
        stale=stale,
        keep_entries=entries,
        keep_rx=keep_regex(entries) if entries else "(/selective-os-reset)",
        candidates=[p for p, _ in candidates],
        fetches=[(n, r) for n, r, _ in fetches],
        proxy=_proxy(doc),
        ca_bundle=_ca_bundle(doc),
        user=user,
        key_b64=key_b64,
    )
    return Request(script, entries, candidates, tuple(fetches))


@dataclass
class Findings:
    facts: HostFacts
    kept: list[KeptEntry]
    refusals: list[Refusal] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    key_kept: bool = False  # a kept authorized_keys file of the user holds the login key
    more_keys: tuple[str, ...] = ()  # keys that remote merge/replace configs authorize
    pointer_sha512: str | None = None  # what the hosted object holds, fetched from the host


def _text(v: bytes | None) -> str:
    return (v or b"").decode("utf-8", errors="replace").strip()


def interpret(req: Request, kv: dict[str, bytes | None], d: Desired, *, root: str, user: str) -> Findings:
    facts = parse_facts(kv)
    kept = [e for e in parse_listing(kv.get("kept_listing") or b"")]
    if root:
        kept = [
            KeptEntry(e.path[len(root) :], e.kind, e.size, e.mtime) for e in kept if e.path.startswith(root)
        ]
    out = Findings(
        facts,
        [
            e
            for e in kept
            if not e.path.startswith(STATE_DIR + "/") and e.path.replace(".", "\\.") not in DEADMAN_KEEP
        ],
    )
    for i, entry in enumerate(req.keep_entries):
        err = _text(kv.get(f"rx_err_{i}"))
        if err:
            out.refusals.append(
                Refusal(
                    f"keep path {entry!r} is rejected by the host's regex engine (find -regextype egrep, "
                    f"the one the reset applies): {err}",
                    "write it as a POSIX extended regex",
                )
            )
    if _text(kv.get("kept_rc")) not in ("", "0"):
        out.refusals.append(
            Refusal(
                f"cannot list the kept files the way flatcar-reset sees them: {_text(kv.get('kept_err'))}",
                "run again; if it repeats, check that unshare and umount work for root on the host",
            )
        )
    existing = {e.path for e in kept}
    for i, (path, where) in enumerate(req.candidates):
        if not kv.get(f"cand_{i}"):
            continue
        now = (
            'it exists on the host now, so Ignition stops at this boot with "A file exists there '
            'already and overwrite is false"'
            if path in existing
            else "once written it stays across resets, so the next reprovision or a rollback stops "
            'Ignition with "file exists"'
        )
        out.refusals.append(
            Refusal(
                f"{path} ({where}) has contents without overwrite: true and is under a kept path: {now}; "
                "the host would be left in the initramfs emergency shell",
                f"set overwrite: true on {path}, or stop keeping it",
            )
        )
    key_files = [p for p in (kv.get("key_files") or b"").decode("utf-8", "replace").split("\0") if p]
    out.key_kept = any(p in existing for p in key_files)
    more: list[str] = []
    for name, r, want in req.fetches:
        problem, body = _fetch_problem(name, r, want, kv)
        if name == "pointer":
            out.pointer_sha512 = _text(kv.get("pointer_sha512")) or None
        if problem:
            out.refusals.append(problem)
        elif body is not None:
            try:
                more += authorized_keys(json.loads(body), user)
            except ValueError:
                out.refusals.append(
                    Refusal(
                        f"{r.where}: {r.url} is not JSON (an Ignition config was expected)",
                        "fix the referenced config",
                    )
                )
    out.more_keys = tuple(more)
    return out


def _fetch_problem(
    name: str, r: Remote, want_hex: str | None, kv: dict[str, bytes | None]
) -> tuple[Refusal | None, bytes | None]:
    rc = _text(kv.get(f"{name}_rc"))
    code = _text(kv.get(f"{name}_code"))
    err = _text(kv.get(f"{name}_err"))
    what = "the hosted config" if name == "pointer" else f"{r.where} ({r.url})"
    if rc != "0" or (r.scheme in ("http", "https") and not code.startswith("2")):
        detail = f"HTTP {code}" if rc == "0" else f"curl exit {rc}: {err or 'no message'}"
        return Refusal(
            f"fetching {what} from the host failed: {detail}; Ignition fetches it from the same "
            f"network at boot and would fail the same way" + (f" ({r.url})" if name == "pointer" else ""),
            "make it reachable from the host (URL, DNS, firewall, credentials in httpHeaders)"
            + (" and upload the new config there" if name == "pointer" else ""),
        ), None
    sha512 = _text(kv.get(f"{name}_sha512"))
    sha256 = _text(kv.get(f"{name}_sha256"))
    if want_hex is not None and sha512 != want_hex:
        return Refusal(
            f"the hosted config at {r.url} does not hold the new config yet (sha512 {sha512[:12]}… != "
            f"{want_hex[:12]}…)",
            "upload the new config there first, then run again",
        ), None
    if r.hash:
        algo, _, hexd = r.hash.partition("-")
        got = {"sha512": sha512, "sha256": sha256}.get(algo)
        if got is None:
            return Refusal(f"{what}: unknown verification hash {algo!r}", "use sha512- or sha256-"), None
        if got != hexd.lower():
            return Refusal(
                f"{what}: the bytes fetched from the host do not match verification.hash ({algo} "
                f"{got[:12]}… != {hexd[:12]}…): Ignition would refuse them at boot",
                "fix the hash in the config, or the object",
            ), None
    return None, kv.get(f"{name}_body")


async def operator_side(
    d: Desired, source: ConfigSource | None
) -> tuple[list[Refusal], list[str], str | None]:
    """Resources the host's curl cannot fetch as Ignition would: ``s3://`` (Ignition uses the
    instance role) and ``arn:`` objects, read with the operator's credentials, and the pointer
    object when it is one of them. ``gs://`` cannot be checked here. Returns (refusals,
    warnings, sha512 hex of the pointer object when read here)."""
    refusals: list[Refusal] = []
    warnings: list[str] = []
    pointer_hex: str | None = None
    items = [r for r in remote_resources(d.document) if not scripts.fetchable(r)]
    if d.delivery in ("pointer", "url") and d.config_url:
        pointer = Remote("the hosted config (config_url)", d.config_url, None)
        if not scripts.fetchable(pointer):
            items.append(pointer)
    for r in items:
        is_pointer = r.where.startswith("the hosted config")
        src = ConfigSource.for_url(r.url, source.to_spec() if (is_pointer and source) else None)
        if src is None:
            msg = (f"{r.where}: {r.url} cannot be checked from here (scheme {r.scheme}); Ignition "
                   "fetches it at boot")
            if d.delivery == "file":
                refusals.append(
                    Refusal(
                        msg + ": with file delivery a failed fetch at boot cannot be rolled back",
                        "host it on https/http, or use pointer delivery",
                    )
                )
            else:
                warnings.append(msg)
            continue
        try:
            data = await src.read()
        except SourceError as exc:
            if exc.kind in ("no-credentials", "denied") and not is_pointer and d.delivery != "file":
                warnings.append(
                    f"{r.where}: {exc.message}: Ignition reads it with the instance role "
                    "at boot; not checked here"
                )
            elif exc.kind in ("no-credentials", "denied") and is_pointer:
                warnings.append(
                    f"the hosted config: {exc.message}: the stamp proves after the reboot "
                    "which config Ignition applied"
                )
            else:
                refusals.append(Refusal(f"{r.where}: {exc.message}", exc.advice or "fix the object"))
            continue
        digest = hashlib.sha512(data).hexdigest()
        if is_pointer:
            pointer_hex = digest
            if data != d.config:
                refusals.append(
                    Refusal(
                        f"the hosted config at {r.url} does not hold the new config yet "
                        f"(sha512 {digest[:12]}… "
                        f"!= {hashlib.sha512(d.config).hexdigest()[:12]}…)",
                        "upload the new config there first, then run again",
                    )
                )
        elif r.hash:
            algo, _, hexd = r.hash.partition("-")
            got = hashlib.new(algo, data).hexdigest() if algo in ("sha512", "sha256") else None
            if got != hexd.lower():
                refusals.append(
                    Refusal(
                        f"{r.where} ({r.url}): the object does not match verification.hash",
                        "fix the hash in the config, or the object",
                    )
                )
    return refusals, warnings, pointer_hex


def local_refusals(
    d: Desired,
    findings: Findings,
    *,
    user: str,
    login_key: str | None,
    platform_keys: Sequence[str],
    previous: bytes | None,
) -> list[Refusal]:
    """Checks on the config itself: the real Ignition validator, the plan's dangers, lock-out,
    and whether the rollback target would itself fail on this host."""
    out, warnings = ignition_refusals(d.config)
    findings.warnings += warnings
    out += config_refusals(
        d,
        user=user,
        login_key=login_key,
        platform_keys=platform_keys,
        more_keys=findings.more_keys,
        key_kept=findings.key_kept,
    )
    if previous is not None and d.policy.rollback:
        try:
            prev_doc = json.loads(previous)
        except ValueError:
            prev_doc = {}
        existing = {e.path for e in findings.kept}
        for path, where in files_without_overwrite(prev_doc):
            if path in existing:
                out.append(
                    Refusal(
                        f"a rollback would fail: the previous config ({short(findings.facts.stamp)}) "
                        f"writes {path} "
                        f"({where}) without overwrite: true, and it exists on a kept path",
                        "turn rollback off for this run (--no-rollback / policy rollback: false)",
                    )
                )
    return out


def ignition_refusals(config: bytes) -> tuple[list[Refusal], list[str]]:
    """The real ``ignition-validate`` (Debian's 2.14: specs up to 3.3.0, 3.4.0 as experimental),
    where installed; a newer spec is left to the host's own Ignition (its version is checked)."""
    from flatcar_infra import ignition_tool

    if not ignition_tool.available():
        return [], []
    try:
        version = str(json.loads(config).get("ignition", {}).get("version", ""))
    except ValueError:
        return [Refusal("the config is not JSON", "compile it with flatcar-infra render")], []
    if version not in ("3.0.0", "3.1.0", "3.2.0", "3.3.0", "3.4.0"):
        return [], [
            f"ignition-validate {ignition_tool.VALIDATOR_VERSION} does not know spec {version}: "
            "left to the host's Ignition"
        ]
    try:
        res = ignition_tool.ignition_validate(config, allow_warnings=True)
    except ignition_tool.IgnitionFailed as exc:
        return [
            Refusal(
                f"the real Ignition rejects the config ({exc.what}):\n{exc.log.strip()}",
                "fix the config; 'flatcar-infra validate --ignition FILE' shows the same",
            )
        ], []
    return [], [f"ignition-validate: {w}" for w in res.unexpected]
