"""The project's stack program: machines built from stack config (``stacks/Pulumi.<stack>.yaml``).

``__main__.py`` at the project root only calls ``main()``. The config is read with the Pulumi
SDK, then validated by ``flatcar_infra.stackconfig.parse_stack_config``, the same function
``flatcar-infra plan --stack-dir`` uses, so both report a mistake with the same message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_digitalocean as digitalocean

from flatcar_infra.components.args import (
    AwsMachineArgs,
    AwsVolume,
    DigitalOceanMachineArgs,
    DigitalOceanVolume,
    ExistingMachineArgs,
    SshAccess,
)
from flatcar_infra.components.config import ConfigOutput, flatcar_config
from flatcar_infra.components.hosting import AwsConfigBucket
from flatcar_infra.components.machines import (
    AwsMachine,
    DigitalOceanMachine,
    ExistingMachine,
    FlatcarDigitalOceanImage,
    FlatcarMachine,
    ssh_public_key,
)
from flatcar_infra.errors import UserError
from flatcar_infra.reprovision.policy import Policy
from flatcar_infra.stackconfig import (
    _TOP_KEYS,
    PREFIX,
    SSH_PUBLIC_KEY_VARIABLE,
    MachineSpec,
    StackSpec,
    machine_variables,
    parse_stack_config,
    resolve_path,
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
    for key in _TOP_KEYS:
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


def _read_text(where: str, path: str, project_dir: Path) -> str:
    p = resolve_path(project_dir, path)
    try:
        return p.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{where}: cannot read {p}: {exc.strerror}") from None


def _ssh_access(inp: StackInput, project_dir: Path, local: Mapping[str, Any] | None) -> SshAccess:
    ssh = inp.spec.ssh
    where = f"{inp.spec.source}: {PREFIX}ssh"
    private: pulumi.Input[str]
    if "private_key" in ssh:
        private = pulumi.Output.secret(str(ssh["private_key"]))
    elif "private_key_file" in ssh:
        private = pulumi.Output.secret(
            _read_text(f"{where}.private_key_file", str(ssh["private_key_file"]), project_dir)
        )
    elif local is not None:
        private = pulumi.Output.secret(
            _read_text(f"{where} (local VM)", str(local["identity_file"]), project_dir)
        )
    else:  # parse_stack_config requires a key for every other target
        raise UserError(f"{where}.private_key_file: required")
    public: pulumi.Input[str] | None = None
    if "public_key" in ssh:
        public = str(ssh["public_key"])
    elif "public_key_file" in ssh:
        public = _read_text(f"{where}.public_key_file", str(ssh["public_key_file"]), project_dir).strip()
    user = str(ssh.get("user") or (local or {}).get("user") or "core")
    return SshAccess(private_key=private, user=user, public_key=public)


def _config_of(m: MachineSpec, inp: StackInput, project_dir: Path, ssh: SshAccess) -> ConfigOutput:
    """Compile one machine's config. With ``variables`` it is a Jinja2 template, which also sees
    ``ssh_public_key`` (the key the reprovisioner logs in with), so a config can authorize it
    for ``core``: after a reset only what the config writes is left of ``/home``."""
    variables: dict[str, pulumi.Input[str]] = {}
    for k, v in machine_variables(m, ssh_public_key(ssh)).items():
        # A secret `machines` key is decrypted as a whole: treat its variables as secrets.
        secret = "machines" in inp.secret_keys and k != SSH_PUBLIC_KEY_VARIABLE
        variables[k] = pulumi.Output.secret(str(v)) if secret else v
    return flatcar_config(
        resolve_path(project_dir, m.config),
        variables=variables or None,
        files_dir=resolve_path(project_dir, m.files_dir) if m.files_dir else None,
        snippets=[resolve_path(project_dir, s) for s in m.snippets],
        platform=m.platform,
    )


def build(inp: StackInput, project_dir: str | Path) -> dict[str, FlatcarMachine]:
    """Register one machine component per configured machine; return them by name."""
    spec = inp.spec
    base = Path(project_dir)
    policy = Policy.from_dict(spec.policy)
    machines: dict[str, FlatcarMachine] = {}
    if spec.target in ("local", "existing"):
        for m in spec.machines:
            opts = spec.machine_options(m)
            if spec.target == "local":
                from flatcar_infra.testbed.local import load_machine

                vm = load_machine(str(opts.get("local_name") or m.name))
                host, port = str(vm["host"]), int(vm["port"])
                host_key: str | None = str(vm["host_key"]) if vm.get("host_key") else None
                ssh = _ssh_access(inp, base, vm)
            else:
                host, port = str(opts["host"]), int(opts.get("port", 22))
                host_key = opts.get("host_key")
                ssh = _ssh_access(inp, base, None)
                if "user" in opts:
                    ssh = SshAccess(
                        private_key=ssh.private_key, user=str(opts["user"]), public_key=ssh.public_key
                    )
            machines[m.name] = ExistingMachine(
                m.name,
                ExistingMachineArgs(
                    config=_config_of(m, inp, base, ssh),
                    ssh=ssh,
                    policy=policy,
                    host=host,
                    port=port,
                    host_key=host_key,
                    delivery="file",
                ),
            )
    elif spec.target == "digitalocean":
        machines.update(_digitalocean(inp, base, policy))
    else:
        machines.update(_aws(inp, base, policy))
    for name, machine in machines.items():
        pulumi.export(f"{name}.public_ip", machine.public_ip)
        pulumi.export(f"{name}.config_hash", machine.config_hash)
        pulumi.export(f"{name}.applied_hash", machine.applied_hash)
        pulumi.export(f"{name}.host_key", machine.host_key)
    return machines


def _digitalocean(inp: StackInput, base: Path, policy: Policy) -> dict[str, FlatcarMachine]:
    spec = inp.spec
    ssh = _ssh_access(inp, base, None)
    defaults = spec.target_defaults
    stack_keys: list[pulumi.Input[str]] = []
    if not any("ssh_keys" in spec.machine_options(m) for m in spec.machines):
        # One account key for the stack (DigitalOcean refuses the same key twice in an account).
        key = digitalocean.SshKey(
            "ssh-key", name=f"flatcar-infra-{pulumi.get_stack()}", public_key=ssh_public_key(ssh)
        )
        stack_keys = [key.fingerprint]
    images: dict[str, FlatcarDigitalOceanImage] = {}
    for channel in sorted(
        {
            str(spec.machine_options(m).get("channel", "stable"))
            for m in spec.machines
            if "image" not in spec.machine_options(m)
        }
    ):
        regions = sorted(
            {
                str(spec.machine_options(m)["region"])
                for m in spec.machines
                if spec.machine_options(m).get("channel", "stable") == channel
            }
        )
        images[channel] = FlatcarDigitalOceanImage(f"flatcar-{channel}", channel=channel, regions=regions)
    out: dict[str, FlatcarMachine] = {}
    for m in spec.machines:
        o = spec.machine_options(m)
        channel = str(o.get("channel", "stable"))
        out[m.name] = DigitalOceanMachine(
            m.name,
            DigitalOceanMachineArgs(
                config=_config_of(m, inp, base, ssh),
                ssh=ssh,
                policy=policy,
                region=str(o["region"]),
                size=str(o["size"]),
                spaces_bucket=str(defaults["spaces_bucket"]),
                spaces_region=str(defaults.get("spaces_region") or o["region"]),
                channel=channel,  # type: ignore[arg-type]  # checked by parse_stack_config
                image=str(o["image"]) if "image" in o else images[channel].image_id,
                ssh_keys=list(o.get("ssh_keys", ())) or stack_keys,
                tags=list(o.get("tags", ())),
                volumes=[DigitalOceanVolume(str(v["name"]), int(v["size_gb"])) for v in o.get("volumes", ())],
                reserved_ip=bool(o.get("reserved_ip", False)),
                vpc_uuid=o.get("vpc_uuid"),
            ),
        )
    return out


def _aws(inp: StackInput, base: Path, policy: Policy) -> dict[str, FlatcarMachine]:
    spec = inp.spec
    ssh = _ssh_access(inp, base, None)
    defaults = spec.target_defaults
    provider_opts: pulumi.ResourceOptions | None = None
    if "region" in defaults:
        provider = aws.Provider("aws", region=str(defaults["region"]))
        provider_opts = pulumi.ResourceOptions(providers=[provider])
    bucket: pulumi.Input[str] = (
        str(defaults["bucket"])
        if "bucket" in defaults
        else AwsConfigBucket("configs", opts=provider_opts).bucket
    )
    key_name = aws.ec2.KeyPair("ssh-key", public_key=ssh_public_key(ssh), opts=provider_opts).key_name
    out: dict[str, FlatcarMachine] = {}
    for m in spec.machines:
        o = spec.machine_options(m)
        out[m.name] = AwsMachine(
            m.name,
            AwsMachineArgs(
                config=_config_of(m, inp, base, ssh),
                ssh=ssh,
                policy=policy,
                ssh_cidrs=list(o["ssh_cidrs"]),
                instance_type=str(o.get("instance_type", "t3.small")),
                channel=str(o.get("channel", "stable")),  # type: ignore[arg-type]
                architecture=str(o.get("architecture", "x86_64")),  # type: ignore[arg-type]
                bucket=bucket,
                key_name=key_name,
                vpc_id=o.get("vpc_id"),
                subnet_id=o.get("subnet_id"),
                root_volume_size=o.get("root_volume_size"),
                volumes=[
                    AwsVolume(str(v["device_name"]), int(v["size_gb"]), str(v.get("type", "gp3")))
                    for v in o.get("volumes", ())
                ],
                elastic_ip=bool(o.get("elastic_ip", False)),
                tags=dict(o.get("tags", {})),
            ),
            opts=provider_opts,
        )
    return out


def main(project_dir: str | Path | None = None) -> dict[str, FlatcarMachine]:
    """Entry point of ``__main__.py``: user mistakes end the program with a message, no traceback."""
    try:
        return build(read_stack_config(), project_dir if project_dir is not None else Path.cwd())
    except UserError as exc:
        raise pulumi.RunError(str(exc)) from None
