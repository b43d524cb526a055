"""The project's stack program: machines built from stack config (``stacks/Pulumi.<stack>.yaml``).

``__main__.py`` at the project root only calls ``main()``. The config is read with the Pulumi
SDK, then validated by ``flatcar_infra.stackconfig.parse_stack_config``, the same function
``flatcar-infra plan --stack-dir`` uses, so both report a mistake with the same message. The
stack's target (``flatcar_infra.targets.<name>``) builds the machines from a ``StackContext``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi

from flatcar_infra import targets
from flatcar_infra.components.args import InboundRule, SshAccess
from flatcar_infra.components.config import ConfigOutput, flatcar_config
from flatcar_infra.components.machines import FlatcarMachine, ssh_public_key
from flatcar_infra.errors import UserError
from flatcar_infra.reprovision.policy import Policy
from flatcar_infra.stackconfig import (
    PREFIX,
    SSH_PUBLIC_KEY_VARIABLE,
    MachineSpec,
    StackSpec,
    machine_variables,
    parse_stack_config,
    resolve_path,
    top_keys,
)


@dataclass(frozen=True)
class StackInput:
    """The validated spec plus which top-level keys Pulumi holds as secrets."""

    spec: StackSpec
    secret_keys: frozenset[str]


def read_stack_config() -> StackInput:
    """Read ``flatcar-infra:*`` through the SDK and validate it; errors name the key."""
    raw: dict[str, Any] = {}
    secret: set[str] = set()
    source = f"stacks/Pulumi.{pulumi.get_stack()}.yaml"
    for key in top_keys():
        full = PREFIX + key
        # The raw getter: Config.get_object warns on every secret read and offers only an Output.
        value = pulumi.runtime.get_config(full)
        if value is None:
            continue
        if pulumi.runtime.is_config_secret(full):
            secret.add(key)
        if key == "target":
            raw[key] = value
            continue
        try:
            raw[key] = json.loads(value)
        except ValueError:
            raise UserError(f"{source}: {full}: expected a structured value (a mapping or a list)") from None
    return StackInput(parse_stack_config(raw, source), frozenset(secret))


class StackContext:
    """What a target needs to build a stack's machines: the spec, the policy, and one way to
    read the SSH settings and compile a machine's config (the same for every target)."""

    def __init__(self, inp: StackInput, project_dir: str | Path) -> None:
        self.spec = inp.spec
        self.secret_keys = inp.secret_keys
        self.project_dir = Path(project_dir)
        self.policy = Policy.from_dict(inp.spec.policy)

    def options(self, machine: MachineSpec) -> dict[str, Any]:
        return self.spec.machine_options(machine)

    def _read(self, where: str, path: str) -> str:
        p = resolve_path(self.project_dir, path)
        try:
            return p.read_text(encoding="utf-8")
        except OSError as exc:
            raise UserError(f"{where}: cannot read {p}: {exc.strerror}") from None

    def ssh_access(self, *, identity_file: str | None = None, user: str | None = None) -> SshAccess:
        """The stack's ``ssh`` settings; ``identity_file``/``user`` stand in for a missing key
        and user (the local VM's own)."""
        ssh = self.spec.ssh
        where = f"{self.spec.source}: {PREFIX}ssh"
        private: pulumi.Input[str]
        if "private_key" in ssh:
            private = pulumi.Output.secret(str(ssh["private_key"]))
        elif "private_key_file" in ssh:
            private = pulumi.Output.secret(
                self._read(f"{where}.private_key_file", str(ssh["private_key_file"]))
            )
        elif identity_file is not None:
            private = pulumi.Output.secret(self._read(f"{where} (local VM)", identity_file))
        else:  # parse_stack_config requires a key for every target that has no other
            raise UserError(f"{where}.private_key_file: required")
        public: pulumi.Input[str] | None = None
        if "public_key" in ssh:
            public = str(ssh["public_key"])
        elif "public_key_file" in ssh:
            public = self._read(f"{where}.public_key_file", str(ssh["public_key_file"])).strip()
        return SshAccess(
            private_key=private,
            user=str(ssh.get("user") or user or "core"),
            public_key=public,
            authorized_keys=tuple(ssh.get("authorized_keys", ())),
        )

    def config_of(self, m: MachineSpec, ssh: SshAccess) -> ConfigOutput:
        """Compile one machine's config. With ``variables`` it is a Jinja2 template, which also
        sees ``ssh_public_key`` (the key the reprovisioner logs in with). The machine component
        merges the SSH access into the result itself."""
        variables: dict[str, pulumi.Input[str]] = {}
        for k, v in machine_variables(m, ssh_public_key(ssh)).items():
            # A secret `machines` key is decrypted as a whole: treat its variables as secrets.
            secret = "machines" in self.secret_keys and k != SSH_PUBLIC_KEY_VARIABLE
            variables[k] = pulumi.Output.secret(str(v)) if secret else v
        return flatcar_config(
            resolve_path(self.project_dir, m.config),
            variables=variables or None,
            files_dir=resolve_path(self.project_dir, m.files_dir) if m.files_dir else None,
            snippets=[resolve_path(self.project_dir, s) for s in m.snippets],
            platform=m.platform,
        )

    @staticmethod
    def inbound(options: Mapping[str, Any]) -> list[InboundRule]:
        return [
            InboundRule(ports=r["ports"], cidrs=tuple(r["cidrs"]), protocol=str(r.get("protocol", "tcp")))  # type: ignore[arg-type]
            for r in options.get("inbound", ())
        ]


def build(inp: StackInput, project_dir: str | Path) -> dict[str, FlatcarMachine]:
    """Register the stack's machines through its target; export their outputs; return them."""
    machines = targets.get(inp.spec.target).build(StackContext(inp, project_dir))
    for name, machine in machines.items():
        pulumi.export(f"{name}.public_ip", machine.public_ip)
        pulumi.export(f"{name}.config_hash", machine.config_hash)
        pulumi.export(f"{name}.applied_hash", machine.applied_hash)
        pulumi.export(f"{name}.host_key", machine.host_key)
    return machines


def main(project_dir: str | Path | None = None) -> dict[str, FlatcarMachine]:
    """Entry point of ``__main__.py``: user mistakes end the program with a message, no traceback."""
    try:
        return build(read_stack_config(), project_dir if project_dir is not None else Path.cwd())
    except UserError as exc:
        raise pulumi.RunError(str(exc)) from None
