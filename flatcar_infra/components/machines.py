"""What every machine component shares: SSH access in the config, the ``Reprovision`` resource,
hooks and the common outputs. The components themselves live with their target
(``flatcar_infra.targets.<name>``); ``flatcar_infra.components`` re-exports them.

The instance never sees the config itself: cloud user-data is the hosting's pointer, which does not
change with the config, so a config change updates the bucket object and then the ``Reprovision``
resource (which depends on that object) applies it in place over SSH. Only the ``replace``
strategy ties the instance to the config hash, and then replaces it create-before-delete.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncssh
import pulumi
import pulumi_command as command

from flatcar_infra.access import Access, HostKey, authorized_keys
from flatcar_infra.components.args import Delivery, Hooks, MachineCommon, SshAccess
from flatcar_infra.components.config import ConfigOutput
from flatcar_infra.components.hookrun import ENV_PREFIX, HOOK_COMMAND
from flatcar_infra.errors import UserError


def public_key_of(private_key: str) -> str:
    """The OpenSSH public key line of a private key (what the config authorizes for the user)."""
    try:
        key = asyncssh.import_private_key(private_key)
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise pulumi.RunError(f"ssh.private_key: not a private key: {exc}") from None
    return key.export_public_key("openssh").decode().strip()


def ssh_public_key(ssh: SshAccess) -> pulumi.Output[str]:
    """``ssh.public_key``, else derived from the private key (not secret: a public key is not one)."""
    if ssh.public_key is not None:
        return pulumi.Output.from_input(ssh.public_key)
    return pulumi.Output.unsecret(pulumi.Output.from_input(ssh.private_key).apply(public_key_of))


def access_of(
    ssh: SshAccess, host_keys: pulumi.Input[Sequence[HostKey]] | None = None
) -> pulumi.Output[Access]:
    """The operator's keys (the login key first) and any generated host keys, checked."""
    keys = pulumi.Output.all(ssh_public_key(ssh), *ssh.authorized_keys)

    def build(args: list[Any]) -> Access:
        found, hks = args
        try:
            checked = authorized_keys([str(k) for k in found], "ssh.public_key/authorized_keys")
        except UserError as exc:
            raise pulumi.RunError(str(exc)) from None
        return Access(user=ssh.user, authorized_keys=checked, host_keys=tuple(hks or ()))

    return pulumi.Output.all(keys, host_keys if host_keys is not None else []).apply(build)


def depends_on_of(opts: pulumi.ResourceOptions | None) -> list[pulumi.Resource]:
    """The resources in ``opts.depends_on`` (one resource or a list)."""
    deps = opts.depends_on if opts is not None else None
    if isinstance(deps, pulumi.Resource):
        return [deps]
    if isinstance(deps, Sequence):
        return [d for d in deps if isinstance(d, pulumi.Resource)]
    return []


class FlatcarMachine(pulumi.ComponentResource):
    """Shared wiring: the ``Reprovision`` resource, hooks, and the common outputs.

    ``config``: the machine's config with its SSH access merged in (``_access_config``), which is
    what is hosted and what ``Reprovision`` applies.
    """

    public_ip: pulumi.Output[str]
    config_hash: pulumi.Output[str]
    applied_hash: pulumi.Output[str]
    host_key: pulumi.Output[str]
    config: ConfigOutput

    def __init__(
        self, t: str, name: str, props: Any = None, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(t, name, props, opts)
        # Children never inherit ``depends_on`` from their parent: passed on explicitly, so that
        # ``depends_on=[other_machine]`` orders this machine's reprovision after the other's.
        self._user_depends_on = depends_on_of(opts)

    def _access_config(
        self, args: MachineCommon, host_keys: pulumi.Input[Sequence[HostKey]] | None = None
    ) -> ConfigOutput:
        self.config = args.config.with_access(access_of(args.ssh, host_keys))
        return self.config

    def _wire(
        self,
        name: str,
        args: MachineCommon,
        *,
        host: pulumi.Input[str],
        port: pulumi.Input[int],
        host_key: pulumi.Input[str] | None,
        delivery: Delivery,
        config_url: pulumi.Input[str] | None,
        depends_on: Sequence[pulumi.Resource],
        machine_identity: pulumi.Input[str] | None = None,
        platform_keys: pulumi.Input[Sequence[pulumi.Input[str]]] | None = None,
        config_source: pulumi.Input[Mapping[str, Any]] | None = None,
    ) -> None:
        from flatcar_infra.provider import Reprovision

        config = self.config
        depends_on = [*depends_on, *self._user_depends_on]
        before = self._hook(name, "before", args.hooks, args, host, port, host_key, config.hash, depends_on)
        self.reprovision = Reprovision(
            f"{name}-reprovision",
            host=host,
            port=port,
            user=args.ssh.user,
            private_key=pulumi.Output.secret(args.ssh.private_key),
            host_key=host_key,
            config=config.canonical,
            config_hash=config.hash,
            manifest=config.manifest,
            policy=args.policy,
            delivery=delivery,
            config_url=config_url,
            config_source=config_source,
            machine_identity=machine_identity,
            platform_keys=platform_keys,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*depends_on, *([before] if before else [])]),
        )
        self._hook(
            name,
            "after",
            args.hooks,
            args,
            host,
            port,
            self.reprovision.host_key,
            self.reprovision.applied_hash,
            [self.reprovision],
        )
        self.config_hash = config.hash
        self.applied_hash = self.reprovision.applied_hash
        self.host_key = self.reprovision.host_key

    def _hook(
        self,
        name: str,
        when: str,
        hooks: Hooks,
        args: MachineCommon,
        host: pulumi.Input[str],
        port: pulumi.Input[int],
        host_key: pulumi.Input[str] | None,
        trigger: pulumi.Input[str],
        depends_on: Sequence[pulumi.Resource],
    ) -> command.local.Command | None:
        cmd = getattr(hooks, when)
        if not cmd:
            return None
        if host_key is None:
            raise pulumi.RunError(
                f"{name}: hooks.{when} runs before the first contact and needs a pinned host key "
                "(AWS machines have one from the start; give host_key for an existing host); "
                "use hooks.after, which runs with the key recorded on first contact"
            )
        env = {
            f"{ENV_PREFIX}HOST": host,
            f"{ENV_PREFIX}PORT": pulumi.Output.from_input(port).apply(str),
            f"{ENV_PREFIX}USER": args.ssh.user,
            f"{ENV_PREFIX}HOST_KEY": host_key,
            f"{ENV_PREFIX}PRIVATE_KEY": pulumi.Output.secret(args.ssh.private_key),
            f"{ENV_PREFIX}COMMAND": cmd,
            # An input, not a trigger: pulumi-command replaces (reruns ``create``) on a trigger
            # change but runs ``update`` when another input changes.
            f"{ENV_PREFIX}CONFIG_HASH": trigger,
        }
        return command.local.Command(
            f"{name}-{when}-hook",
            # "before" only matters for a change: a new machine has nothing to drain yet.
            create=HOOK_COMMAND if when == "after" else None,
            update=HOOK_COMMAND,
            environment=env,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on)),
        )

    def _machine_options(
        self, args: MachineCommon, *, pinned: Sequence[str], depends_on: Sequence[pulumi.Resource] = ()
    ) -> pulumi.ResourceOptions:
        """Options of the cloud machine resource (instance, droplet).

        ``pinned``: inputs used only when the machine is created (its image, cloud key pairs):
        Flatcar updates itself and SSH keys come through the config, so a new value never
        replaces a running machine. The ``replace`` strategy replaces the machine when its config
        changes (access included), the new one first.
        """
        extra: dict[str, Any] = {}
        if args.policy.strategy == "replace":
            extra = {"replacement_trigger": self.config.hash, "delete_before_replace": False}
        return pulumi.ResourceOptions(
            parent=self, ignore_changes=list(pinned), depends_on=list(depends_on), **extra
        )

    def _finish(self) -> None:
        self.register_outputs(
            {
                "public_ip": self.public_ip,
                "config_hash": self.config_hash,
                "applied_hash": self.applied_hash,
                "host_key": self.host_key,
            }
        )
