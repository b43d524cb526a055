"""Which parts of an Ignition config are secret: one answer for every place that must know.

The plan masks them (a PR comment must never show a key), the hosting refuses to put them into a
public object (a DigitalOcean Spaces object is world-readable), and both ask this module, so the two
can never disagree. Secrets are found three ways:

- by Pulumi secretness: a compiled config carries ``SECRET_MARKER`` where a secret stack value went
  (the plan's stand-in), or the whole config is a secret Output (the components check that);
- by content: private keys, ``*PASSWORD*=``-style assignments, tokens of well-known formats, registry
  auth JSON, credentials in URLs, password hashes, LUKS key files, secret-looking HTTP headers;
- by name: files and units whose name says secret (``*.key``, ``*token*``, ...) unless their inline
  contents prove them public (only certificates or public keys).

Pure: no I/O. A finding names the manifest entry (``file:/etc/app/env``) and why, never the value.
"""

from __future__ import annotations

import binascii
import fnmatch
import re
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from flatcar_infra.compiler.dataurl import decode_data_url
from flatcar_infra.limits import LimitExceeded, gunzip

SECRET_MARKER: Final = "@@flatcar-infra-secret@@"
"""Put into a compiled config in place of a value the plan must not know (a Pulumi ``secure:``
stack variable); anything that contains it is secret."""

DEFAULT_SECRET_NAMES: Final = (
    "*.key",
    "*.pem",
    "*.p12",
    "*.pfx",
    "*.keytab",
    "*secret*",
    "*token*",
    "*password*",
    "*credential*",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    "shadow",
    "gshadow",
    ".netrc",
)
"""Matched (case-insensitively) against the last path component of files, directories and links,
and against unit and drop-in names."""


@dataclass(frozen=True)
class SecretRules:
    """What counts as secret beyond the built-in rules: ``globs`` match the whole path or unit
    name with ``fnmatch`` (``*`` also crosses ``/``), e.g. ``/etc/app/*`` or ``*.env``."""

    globs: tuple[str, ...] = ()
    names: tuple[str, ...] = DEFAULT_SECRET_NAMES

    def matches(self, name: str) -> bool:
        return self.name_reason(name) is not None

    def name_reason(self, name: str) -> str | None:
        base = name.rstrip("/").rsplit("/", 1)[-1].lower()
        for pat in self.names:
            if fnmatch.fnmatchcase(base, pat):
                return f"its name matches {pat}"
        for g in self.globs:
            if fnmatch.fnmatchcase(name, g):
                return f"it matches the secret glob {g}"
        return None


@dataclass(frozen=True)
class SecretFinding:
    """One secret in a config: the manifest entry, where in it, and why (never the value)."""

    entry: str  # manifest key: file:/etc/app/env, user:core, unit:app.service, ignition:config
    where: str  # the field inside the entry: contents, append, passwordHash, httpHeaders, source
    reason: str
    by_name_only: bool = False  # found by its name; its contents did not show a secret

    def describe(self) -> str:
        return f"{self.entry} ({self.where}: {self.reason})"


# --- content ------------------------------------------------------------------------------------

_ASSIGNMENT = re.compile(
    r"""(?x)
    (?<![\w.-])(?P<name>-{0,2}[A-Za-z_][\w.-]*)         # a key (or a --flag)
    ["']?\s*(?:=|:(?!//))\s*                            # = or : (not a URL's ://)
    (?P<q>["']?)(?P<value>[^\s"'`]+)                   # a literal value
    """)
_SECRET_SUFFIXES = ("password", "passwd", "passphrase", "passwordhash", "secret", "token", "apikey",
                    "accesskey", "privatekey", "secretkey", "authkey", "credential", "credentials")
"""A key names a secret when, lower-cased without separators, it ENDS in one of these:
``DB_PASSWORD``, ``api-key``, ``clientSecret`` do; ``password_file``, ``token_ttl`` and
``configMapAndSecretChangeDetectionStrategy`` name something about a secret and do not."""
_NOT_VALUES = frozenset({"true", "false", "yes", "no", "on", "off", "none", "null", "nil", "0", "1",
                         "required", "optional", "disabled", "enabled", "prompt"})
_REFERENCE = re.compile(r"^(?:\$|%|\{\{|<|\*+$|x+$|\.\.\.|changeme$|redacted$)", re.I)

_PATTERNS: Final = (
    (re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"), "a private key"),
    (re.compile(rb"PuTTY-User-Key-File-\d"), "a PuTTY private key"),
    (re.compile(rb"(?m)^\s*PrivateKey\s*=\s*[A-Za-z0-9+/]{42,43}="), "a WireGuard private key"),
    (re.compile(rb'"auths"\s*:\s*\{.*?"(?:auth|identitytoken|password)"\s*:\s*"[^"]+"', re.S),
     "registry credentials (container auth JSON)"),
    (re.compile(rb"(?m)^\s*(?:client-key-data|token)\s*:\s*\S{16,}"), "kubeconfig credentials"),
    (re.compile(rb"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), "an AWS access key id"),
    (re.compile(rb"(?i)aws_secret_access_key\s*[=:]\s*\S+"), "an AWS secret access key"),
    (re.compile(rb"\bgh[pousr]_[A-Za-z0-9]{36,}\b|\bgithub_pat_[A-Za-z0-9_]{40,}"), "a GitHub token"),
    (re.compile(rb"\bglpat-[A-Za-z0-9_-]{20,}"), "a GitLab token"),
    (re.compile(rb"\bxox[abposr]-[A-Za-z0-9-]{10,}"), "a Slack token"),
    (re.compile(rb"\b[rs]k_live_[A-Za-z0-9]{16,}"), "a Stripe key"),
    (re.compile(rb"\bAIza[0-9A-Za-z_-]{35}\b"), "a Google API key"),
    (re.compile(rb"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), "a JSON web token"),
    (re.compile(rb"(?i)\bauthorization\s*:\s*(?:bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{8,}"),
     "an Authorization header"),
    (re.compile(rb"(?i)\b[a-z][a-z0-9+.-]*://[^/\s:@\"']+:[^/\s@\"']+@"), "credentials in a URL"),
    (re.compile(rb"(?m)^\s*machine\s+\S+\s+login\s+\S+\s+password\s+\S+"), "netrc credentials"),
)
_PUBLIC_ONLY = re.compile(
    rb"-----BEGIN (CERTIFICATE|PUBLIC KEY|RSA PUBLIC KEY|X509 CRL|TRUSTED CERTIFICATE|"
    rb"PGP PUBLIC KEY BLOCK)-----")


_MARKER = re.compile(re.escape(SECRET_MARKER).encode(), re.IGNORECASE)


def marked(data: bytes | str) -> bool:
    """Whether ``data`` holds the secret-value marker (in any letter case: a template may have
    upper-cased it)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    return _MARKER.search(raw) is not None


def content_reason(data: bytes) -> str | None:
    """Why these bytes are secret, or ``None``. Conservative: a false alarm costs a masked diff
    or an explicit opt-in; a miss publishes a key."""
    if marked(data):
        return "it holds a value from a Pulumi secret"
    for rx, why in _PATTERNS:
        if rx.search(data):
            return why
    text = data.decode("utf-8", errors="replace")
    pos = 0
    while m := _ASSIGNMENT.search(text, pos):
        pos = m.start("value")  # the value may itself be an assignment: Environment=API_TOKEN=x
        name, value = m.group("name"), m.group("value").rstrip(",;")
        if not re.sub(r"[^a-z0-9]", "", name.lower()).endswith(_SECRET_SUFFIXES):
            continue
        if value.lower() in _NOT_VALUES or _REFERENCE.match(value) or len(value) < 4:
            continue
        return f"it assigns {name.lstrip('-')}"
    return None


def value_reason(value: str) -> str | None:
    """Why a single config value (a field, a URL, a kernel argument) is secret, or ``None``."""
    why = content_reason(value.encode("utf-8", "surrogatepass"))
    return why or (url_reason(value) if "://" in value else None)


def looks_public(data: bytes) -> bool:
    """Only certificates or public keys (a ``*.pem`` CA bundle is not a secret)."""
    return bool(_PUBLIC_ONLY.search(data)) and content_reason(data) is None


def url_reason(url: str) -> str | None:
    """Credentials or a signature in a resource URL (presigned URLs expire, but leak until then)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme == "data":
        return None
    if parts.password or (parts.username and parts.scheme in ("http", "https", "ftp", "tftp")):
        return "credentials in its URL"
    for key, _ in parse_qsl(parts.query, keep_blank_values=True):
        k = key.lower()
        if k.startswith("x-amz-") or k in ("signature", "sig", "token", "access_token", "se", "sv",
                                           "x-goog-signature", "googleaccessid"):
            return "a signed (presigned) URL"
    return None


_SECRET_HEADER = re.compile(r"(?i)authorization|cookie|token|secret|api-?key|auth|password|session")


def secret_header(name: str) -> bool:
    """An HTTP header whose value is a credential (``Authorization``, ``X-Api-Key``, ...)."""
    return _SECRET_HEADER.search(name) is not None


# --- walking a config ------------------------------------------------------------------------------

def decoded(resource: Any) -> bytes | None:
    """The bytes of an inline (``data:``) resource, decompressed; ``None`` when remote or broken."""
    if not isinstance(resource, Mapping):
        return None
    source = resource.get("source")
    if not isinstance(source, str) or not source.startswith("data:"):
        return None
    try:
        raw = decode_data_url(source)
        if resource.get("compression") == "gzip" or raw[:2] == b"\x1f\x8b":
            raw = gunzip(raw)  # bounded: a gzip bomb in a pull request must not exhaust CI
    except (ValueError, binascii.Error, OSError, zlib.error, EOFError, LimitExceeded):
        return None
    return raw


def _resource_findings(entry: str, where: str, resource: Any) -> Iterator[SecretFinding]:
    if not isinstance(resource, Mapping):
        return
    source = resource.get("source")
    if isinstance(source, str):
        if marked(source):
            yield SecretFinding(entry, where, "it holds a value from a Pulumi secret")
        why = url_reason(source)
        if why:
            yield SecretFinding(entry, where, why)
    for h in resource.get("httpHeaders") or ():
        if isinstance(h, Mapping) and secret_header(str(h.get("name") or "")) and h.get("value"):
            yield SecretFinding(entry, where, f"the HTTP header {h.get('name')} carries credentials")
    data = decoded(resource)
    if data is not None:
        why = content_reason(data)
        if why:
            yield SecretFinding(entry, where, why)


def _name_findings(entry: str, name: str, rules: SecretRules,
                   contents: list[bytes | None]) -> Iterator[SecretFinding]:
    why = rules.name_reason(name)
    if why is None:
        return
    known = [c for c in contents if c is not None]
    if known and len(known) == len(contents) and all(looks_public(c) or not c.strip() for c in known):
        return  # e.g. a CA bundle named *.pem: its inline contents prove it public
    yield SecretFinding(entry, "name", why, by_name_only=True)


def find_secrets(ignition: Mapping[str, Any], rules: SecretRules | None = None) -> list[SecretFinding]:
    """Every secret in an Ignition document, one finding per (entry, where, reason), sorted."""
    rules = rules or SecretRules()
    out: list[SecretFinding] = []
    ign = ignition.get("ignition") or {}
    cfg = ign.get("config") or {}
    for i, res in enumerate([cfg.get("replace"), *(cfg.get("merge") or [])]):
        out += _resource_findings("ignition:config", "replace" if i == 0 else "merge", res)
    tls = (ign.get("security") or {}).get("tls") or {}
    for res in tls.get("certificateAuthorities") or ():
        out += _resource_findings("ignition:security", "certificateAuthorities", res)
    proxy = ign.get("proxy") or {}
    for k in ("httpProxy", "httpsProxy"):
        if isinstance(proxy.get(k), str) and url_reason(proxy[k]):
            out.append(SecretFinding("ignition:proxy", k, "credentials in the proxy URL"))
    storage = ignition.get("storage") or {}
    for f in storage.get("files") or ():
        entry = f"file:{f.get('path')}"
        out += _resource_findings(entry, "contents", f.get("contents"))
        for res in f.get("append") or ():
            out += _resource_findings(entry, "append", res)
        contents = [decoded(f.get("contents")) if f.get("contents") else b"",
                    *(decoded(a) for a in f.get("append") or ())]
        out += _name_findings(entry, str(f.get("path")), rules, contents)
    for kind, section in (("dir", "directories"), ("link", "links")):
        for e in storage.get(section) or ():
            out += _name_findings(f"{kind}:{e.get('path')}", str(e.get("path")), rules, [b""])
    for lk in storage.get("luks") or ():
        if lk.get("keyFile"):
            out.append(SecretFinding(f"luks:{lk.get('name')}", "keyFile", "a LUKS key file"))
    for u in (ignition.get("systemd") or {}).get("units") or ():
        name = str(u.get("name"))
        if isinstance(u.get("contents"), str):
            why = content_reason(u["contents"].encode())
            if why:
                out.append(SecretFinding(f"unit:{name}", "contents", why))
            out += _name_findings(f"unit:{name}", name, rules, [u["contents"].encode()])
        for d in u.get("dropins") or ():
            key = f"dropin:{name}/{d.get('name')}"
            text = d.get("contents") if isinstance(d.get("contents"), str) else ""
            why = content_reason(text.encode())
            if why:
                out.append(SecretFinding(key, "contents", why))
            out += _name_findings(key, str(d.get("name")), rules, [text.encode()])
    kargs = ignition.get("kernelArguments") or {}
    for where in ("shouldExist", "shouldNotExist"):
        for arg in kargs.get(where) or ():
            why = value_reason(arg) if isinstance(arg, str) else None
            if why:  # the entry names no argument: the argument is the secret
                out.append(SecretFinding("kernel-arg", where, why))
    for usr in (ignition.get("passwd") or {}).get("users") or ():
        if usr.get("passwordHash"):
            out.append(SecretFinding(f"user:{usr.get('name')}", "passwordHash", "a password hash"))
    return sorted(set(out), key=lambda x: (x.entry, x.where, x.reason))


def secret_entries(ignition: Mapping[str, Any], rules: SecretRules | None = None) -> set[str]:
    """The manifest keys that hold a secret (what the plan masks)."""
    return {f.entry for f in find_secrets(ignition, rules)}
