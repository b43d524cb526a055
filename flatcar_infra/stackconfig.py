"""Stack config → typed specs, validated the same way for ``pulumi up`` and ``flatcar-infra plan``.

The stack program reads its values with ``pulumi.Config`` and the CLI reads the stack file
directly; both hand the raw mapping to ``parse_stack_config`` so a mistake earns the same message
(``stacks/Pulumi.aws.yaml: flatcar-infra:machines[1].config: required``) on either path. Each
target's options come from its module (``flatcar_infra.targets``). No I/O except
``load_stack_file`` reading the one YAML file and, for the SSH access a plan shows,
``machine_access`` reading the key files the stack names.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from flatcar_infra import targets
from flatcar_infra.access import Access, HostKey, authorized_keys
from flatcar_infra.errors import UserError
from flatcar_infra.reprovision.policy import Policy
from flatcar_infra.secrets import SECRET_MARKER
from flatcar_infra.targets import ItemSchema, Kind

PROJECT: Final = "flatcar-infra"
PREFIX: Final = PROJECT + ":"

CHANNELS: Final = ("stable", "beta", "alpha", "lts")

# Machine names become Pulumi resource names, hostnames and bucket keys: keep them DNS-label-like.
_NAME_RE: Final = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_SSH_KEYS: Final = (
    "user",
    "private_key",
    "private_key_file",
    "public_key",
    "public_key_file",
    "authorized_keys",
)
_MACHINE_KEYS: Final = ("name", "config", "files_dir", "variables", "snippets", "platform")
_CIDR_OPTIONS: Final = ("ssh_cidrs",)


def top_keys() -> tuple[str, ...]:
    """The ``flatcar-infra:*`` keys: the common ones and one section per target."""
    return ("target", "policy", "ssh", "machines", *targets.names())


@dataclass(frozen=True)
class SecureValue:
    """A Pulumi ``secure:`` value as stored in a stack file: ciphertext only Pulumi can decrypt.

    Kept opaque so a plan can say "secret" without ever holding the plaintext.
    """

    ciphertext: str = field(repr=False)

    def __repr__(self) -> str:
        return "SecureValue(<secret>)"


@dataclass(frozen=True)
class MachineSpec:
    """One machine of a stack. ``config``/``files_dir``/``snippets`` are as written (relative to the
    project directory); ``options`` are the validated target-specific overrides."""

    name: str
    config: str
    files_dir: str | None = None
    variables: Mapping[str, str | SecureValue] = field(default_factory=dict)
    snippets: tuple[str, ...] = ()
    platform: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StackSpec:
    """A validated stack: which target, how to log in, what policy, which machines."""

    target: str
    policy: Mapping[str, Any]
    ssh: Mapping[str, Any]
    target_defaults: Mapping[str, Any]
    machines: tuple[MachineSpec, ...]
    source: str = "<stack config>"

    def machine_options(self, machine: MachineSpec) -> dict[str, Any]:
        """The target defaults overlaid with the machine's own overrides."""
        return {**self.target_defaults, **machine.options}

    def machine(self, name: str) -> MachineSpec:
        for m in self.machines:
            if m.name == name:
                return m
        raise UserError(
            f"{self.source}: no machine named {name!r}",
            advice="machines: " + ", ".join(m.name for m in self.machines),
        )


def resolve_path(project_dir: str | Path, path: str) -> Path:
    """A stack-config path, relative to the project directory unless absolute; ``~`` expanded."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(project_dir) / p


class _Checker:
    """Raises ``UserError`` naming the source file and the full key path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, message: str, advice: str | None = None) -> UserError:
        return UserError(f"{self.source}: {PREFIX}{where}: {message}", advice=advice)

    def str_(
        self, where: str, value: Any, *, allow_secure: bool = False, allow_number: bool = False
    ) -> str | SecureValue:
        """A non-empty string; template variables also take numbers (YAML ``port: 8080``)."""
        if allow_secure:
            secure = _as_secure(value)
            if secure is not None:
                return secure
        accepted: tuple[type, ...] = (str, int, float) if allow_number else (str,)
        if isinstance(value, bool) or value is None or not isinstance(value, accepted):
            raise self.fail(where, f"must be a string, got {_describe(value)}")
        text = str(value)
        if not text:
            raise self.fail(where, "must not be empty")
        return text

    def plain_str(self, where: str, value: Any) -> str:
        text = self.str_(where, value)
        assert isinstance(text, str)
        return text

    def check(self, where: str, value: Any, kind: Kind) -> Any:
        if kind == "str":
            return self.plain_str(where, value)
        if kind == "str_or_int":
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            return self.plain_str(where, value)
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, str) and value.isdigit():
                    return int(value)
                raise self.fail(where, f"must be an integer, got {_describe(value)}")
            return value
        if kind == "bool":
            if isinstance(value, str) and value in ("true", "false"):
                return value == "true"
            if not isinstance(value, bool):
                raise self.fail(where, f"must be true or false, got {_describe(value)}")
            return value
        if kind == "str_list":
            if not isinstance(value, list):
                raise self.fail(where, f"must be a list of strings, got {_describe(value)}")
            return tuple(self.plain_str(f"{where}[{i}]", v) for i, v in enumerate(value))
        if kind == "str_map":
            mapping = self.mapping(where, value)
            return {k: self.plain_str(f"{where}.{k}", v) for k, v in mapping.items()}
        if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
            raise self.fail(where, f"must be a list of mappings, got {_describe(value)}")
        return tuple(dict(v) for v in value)

    def mapping(self, where: str, value: Any) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(where, f"must be a mapping, got {_describe(value)}")
        for k in value:
            if not isinstance(k, str):
                raise self.fail(where, f"keys must be strings, got {_describe(k)}")
        return value

    def known_keys(self, where: str, value: Mapping[str, Any], allowed: Sequence[str]) -> None:
        for k in value:
            if k not in allowed:
                raise self.fail(f"{where}.{k}", "unknown key", advice="known keys: " + ", ".join(allowed))


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def _as_secure(value: Any) -> SecureValue | None:
    if isinstance(value, SecureValue):
        return value
    if isinstance(value, Mapping) and set(value) == {"secure"} and isinstance(value["secure"], str):
        return SecureValue(value["secure"])
    return None


def _strip_prefix(raw: Mapping[str, Any], chk: _Checker) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            raise UserError(f"{chk.source}: config key {key!r} is not a string")
        if ":" in key:
            ns, _, short = key.partition(":")
            if ns != PROJECT:
                continue  # another provider's or project's config (aws:region, ...), not ours
        else:
            short = key
        if short not in top_keys():
            raise chk.fail(
                short, "unknown key", advice="known keys: " + ", ".join(PREFIX + k for k in top_keys())
            )
        if short in out:
            raise chk.fail(short, "given twice (with and without the namespace)")
        out[short] = value
    return out


def _parse_policy(chk: _Checker, raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    policy = dict(chk.mapping("policy", raw))
    try:
        Policy.from_dict(policy)
    except UserError as exc:  # PolicyError messages start with the key path ("policy.strategy: ...")
        raise UserError(f"{chk.source}: {PREFIX}{exc.message}", advice=exc.advice) from None
    return policy


def _parse_ssh(chk: _Checker, raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    ssh = chk.mapping("ssh", raw)
    chk.known_keys("ssh", ssh, _SSH_KEYS)
    out: dict[str, Any] = {}
    for k, v in ssh.items():
        if k == "authorized_keys":
            keys = chk.check("ssh.authorized_keys", v, "str_list")
            try:
                out[k] = authorized_keys(keys, f"{PREFIX}ssh.authorized_keys")
            except UserError as exc:
                raise UserError(f"{chk.source}: {exc.message}", advice=exc.advice) from None
            continue
        out[k] = chk.str_(f"ssh.{k}", v, allow_secure=(k == "private_key"))
    if "private_key" in out and "private_key_file" in out:
        raise chk.fail("ssh.private_key", "give either private_key or private_key_file, not both")
    if "public_key" in out and "public_key_file" in out:
        raise chk.fail("ssh.public_key", "give either public_key or public_key_file, not both")
    return out


def _check_options(
    chk: _Checker, where: str, target: targets.Target, opts: Mapping[str, Any], *, stack_level: bool
) -> dict[str, Any]:
    schema = target.options
    allowed = [k for k in schema if stack_level or k not in target.stack_only]
    out: dict[str, Any] = {}
    for k, v in opts.items():
        if k not in allowed:
            hint = (
                f"{k} is set once per stack under {PREFIX}{target.name}"
                if k in schema
                else "known keys: " + ", ".join(allowed)
            )
            raise chk.fail(f"{where}.{k}", f"not a {target.name} option here", advice=hint)
        out[k] = chk.check(f"{where}.{k}", v, schema[k])
    if "channel" in out and out["channel"] not in CHANNELS:
        raise chk.fail(f"{where}.channel", f"must be one of {', '.join(CHANNELS)}, got {out['channel']!r}")
    for k in _CIDR_OPTIONS:
        if k in out:
            _check_cidrs(chk, f"{where}.{k}", out[k])
    for k, item in target.items.items():
        if k in out:
            out[k] = tuple(_check_item(chk, f"{where}.{k}[{i}]", k, e, item) for i, e in enumerate(out[k]))
    return out


def _check_item(
    chk: _Checker, where: str, option: str, entry: Mapping[str, Any], item: ItemSchema
) -> dict[str, Any]:
    chk.known_keys(where, entry, list(item.keys))
    for req in item.required:
        if req not in entry:
            raise chk.fail(f"{where}.{req}", "required")
    out = {k: chk.check(f"{where}.{k}", v, item.keys[k]) for k, v in entry.items()}
    if option == "inbound":
        _check_cidrs(chk, f"{where}.cidrs", out["cidrs"])
        lo, _, hi = str(out["ports"]).partition("-")
        if not (lo.isdigit() and (not hi or hi.isdigit()) and 0 < int(lo) <= int(hi or lo) < 65536):
            raise chk.fail(
                f"{where}.ports", f"must be a port or a range like 8000-8100, got {out['ports']!r}"
            )
        if out.get("protocol", "tcp") not in ("tcp", "udp"):
            raise chk.fail(f"{where}.protocol", f"must be tcp or udp, got {out['protocol']!r}")
    return out


def _check_cidrs(chk: _Checker, where: str, cidrs: Sequence[str]) -> None:
    if not cidrs:
        raise chk.fail(where, "must not be empty: name the networks allowed (nothing is open by default)")
    for i, c in enumerate(cidrs):
        try:
            ipaddress.ip_network(c, strict=True)
        except ValueError as exc:
            raise chk.fail(f"{where}[{i}]", f"{c!r} is not a network in CIDR notation ({exc})") from None


def _parse_machine(chk: _Checker, i: int, raw: Any, target: targets.Target) -> MachineSpec:
    where = f"machines[{i}]"
    m = chk.mapping(where, raw)
    for req in ("name", "config"):
        if m.get(req) in (None, ""):
            raise chk.fail(f"{where}.{req}", "required")
    name = chk.plain_str(f"{where}.name", m["name"])
    if not _NAME_RE.match(name):
        raise chk.fail(
            f"{where}.name",
            f"{name!r} must be lowercase letters, digits and dashes (a DNS label, at most 63 characters)",
        )
    config = chk.plain_str(f"{where}.config", m["config"])
    files_dir = (
        chk.plain_str(f"{where}.files_dir", m["files_dir"]) if m.get("files_dir") is not None else None
    )
    variables: dict[str, str | SecureValue] = {}
    if m.get("variables") is not None:
        for k, v in chk.mapping(f"{where}.variables", m["variables"]).items():
            if isinstance(v, bool):
                v = "true" if v else "false"
            variables[k] = chk.str_(f"{where}.variables.{k}", v, allow_secure=True, allow_number=True)
    snippets: tuple[str, ...] = ()
    if m.get("snippets") is not None:
        snippets = chk.check(f"{where}.snippets", m["snippets"], "str_list")
    platform = chk.plain_str(f"{where}.platform", m["platform"]) if m.get("platform") is not None else None
    extra = {k: v for k, v in m.items() if k not in _MACHINE_KEYS}
    options = _check_options(chk, where, target, extra, stack_level=False)
    return MachineSpec(
        name=name,
        config=config,
        files_dir=files_dir,
        variables=variables,
        snippets=snippets,
        platform=platform,
        options=options,
    )


def parse_stack_config(mapping: Mapping[str, Any], source: str = "<stack config>") -> StackSpec:
    """Validate a stack's config (keys with or without ``flatcar-infra:``) into a ``StackSpec``.

    Raises ``UserError`` naming ``source`` and the key path of the first problem.
    """
    chk = _Checker(source)
    if not isinstance(mapping, Mapping):
        raise UserError(f"{source}: config must be a mapping, got {_describe(mapping)}")
    raw = _strip_prefix(mapping, chk)
    if raw.get("target") in (None, ""):
        raise chk.fail("target", "required", advice="one of " + ", ".join(targets.names()))
    if raw["target"] not in targets.names():
        raise chk.fail("target", f"must be one of {', '.join(targets.names())}, got {raw['target']!r}")
    target = targets.get(raw["target"])
    policy = _parse_policy(chk, raw.get("policy"))
    ssh = _parse_ssh(chk, raw.get("ssh"))
    for other in targets.names():
        if other != target.name and raw.get(other) is not None:
            raise chk.fail(
                other,
                f"set, but the target is {target.name}",
                advice=f"remove it or set {PREFIX}target: {other}",
            )
    defaults: dict[str, Any] = {}
    if raw.get(target.name) is not None:
        defaults = _check_options(
            chk, target.name, target, chk.mapping(target.name, raw[target.name]), stack_level=True
        )
    machines_raw = raw.get("machines")
    if machines_raw is None:
        raise chk.fail("machines", "required", advice="a list of machines, each with a name and a config")
    if not isinstance(machines_raw, list):
        raise chk.fail("machines", f"must be a list, got {_describe(machines_raw)}")
    machines: list[MachineSpec] = []
    seen: dict[str, int] = {}
    for i, m in enumerate(machines_raw):
        spec = _parse_machine(chk, i, m, target)
        if spec.name in seen:
            raise chk.fail(
                f"machines[{i}].name", f"{spec.name!r} is already the name of machines[{seen[spec.name]}]"
            )
        seen[spec.name] = i
        machines.append(spec)
    target.check(defaults, machines, chk.fail)
    if target.needs_private_key and not ("private_key" in ssh or "private_key_file" in ssh):
        raise chk.fail(
            "ssh.private_key_file",
            f"required for target {target.name} (or a secret ssh.private_key)",
            advice="the reprovisioner logs in over SSH with this key",
        )
    return StackSpec(
        target=target.name,
        policy=policy,
        ssh=ssh,
        target_defaults=defaults,
        machines=tuple(machines),
        source=source,
    )


def load_stack_file(path: str | Path) -> StackSpec:
    """Read ``stacks/Pulumi.<stack>.yaml`` and validate its ``config:``."""
    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"{p}: cannot read stack file: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{p}: not valid YAML: {exc}") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, Mapping):
        raise UserError(f"{p}: a stack file is a mapping with a config: key")
    config = doc.get("config")
    if not isinstance(config, Mapping):
        raise UserError(f"{p}: config: required (a mapping of {PREFIX}* keys)")
    return parse_stack_config(config, str(p))


SSH_PUBLIC_KEY_VARIABLE: Final = "ssh_public_key"


def machine_variables(machine: MachineSpec, ssh_public_key: Any) -> dict[str, Any]:
    """The template variables a machine's config is rendered with: its own ``variables`` plus
    ``ssh_public_key`` (the key the reprovisioner logs in with), so a config can authorize it for
    ``core`` (a reset keeps only what the config writes). Empty when the machine has no variables:
    then its config is not a template. ``ssh_public_key`` may be a Pulumi Output; ``None`` leaves
    it out (a template that needs it then fails with a clear undefined-variable error)."""
    if not machine.variables:
        return {}
    base: dict[str, Any] = {} if ssh_public_key is None else {SSH_PUBLIC_KEY_VARIABLE: ssh_public_key}
    return {**base, **machine.variables}


def login_public_key(spec: StackSpec, machine: MachineSpec, project_dir: str | Path) -> str | None:
    """The public key line the reprovisioner logs in to ``machine`` with: from the stack's ``ssh``
    settings, else from its target (the local VM's key); ``None`` when only an encrypted key is
    given."""
    import asyncssh

    ssh = spec.ssh
    try:
        if isinstance(ssh.get("public_key"), str):
            return str(ssh["public_key"]).strip()
        if "public_key_file" in ssh:
            return resolve_path(project_dir, str(ssh["public_key_file"])).read_text(encoding="utf-8").strip()
        private: str | None = None
        if isinstance(ssh.get("private_key"), str):
            private = str(ssh["private_key"])
        elif "private_key_file" in ssh:
            private = resolve_path(project_dir, str(ssh["private_key_file"])).read_text(encoding="utf-8")
        else:
            return targets.get(spec.target).login_public_key(spec, machine, project_dir)
        if private is None:
            return None
        return asyncssh.import_private_key(private).export_public_key("openssh").decode().strip()
    except OSError as exc:
        raise UserError(f"{spec.source}: {PREFIX}ssh: cannot read the SSH key: {exc}") from None
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise UserError(f"{spec.source}: {PREFIX}ssh: not a usable SSH key: {exc}") from None


PLACEHOLDER_HOST_KEY: Final = HostKey(
    "ed25519", SECRET_MARKER + "host-key", "ssh-ed25519 (generated at deploy time, kept in the stack state)"
)
"""Stands in for a host key generated at deploy time: a plan shows the files (as secret, and
unchanged between two revisions) without knowing the key."""


def machine_access(spec: StackSpec, machine: MachineSpec, login_key: str) -> Access:
    """The SSH access a machine component merges into ``machine``'s config, as a plan computes it:
    ``login_key`` (see ``login_public_key``) and ``ssh.authorized_keys`` for the SSH user, and a
    placeholder for host keys its target generates at deploy time."""
    ssh = spec.ssh
    user = str(spec.machine_options(machine).get("user") or ssh.get("user") or "core")
    others = tuple(ssh.get("authorized_keys", ()))
    try:
        keys = authorized_keys([login_key, *others], f"{PREFIX}ssh.authorized_keys")
    except UserError:  # a placeholder for a login key this machine cannot read: kept as it is
        keys = (login_key, *others)
    host_keys = (PLACEHOLDER_HOST_KEY,) if targets.get(spec.target).delivers_host_keys else ()
    return Access(user=user, authorized_keys=keys, host_keys=host_keys)
