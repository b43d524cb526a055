"""A bare-metal Flatcar host: no cloud, only an SSH connection with a pinned host key.

The config is delivered over SSH (``flatcar-reset -F``) on every change; nothing is hosted.
"""

from pathlib import Path

import pulumi

from flatcar_infra.components import (
    ExistingMachine,
    ExistingMachineArgs,
    Hooks,
    Policy,
    SshAccess,
    flatcar_config,
)

HERE = Path(__file__).resolve().parent
cfg = pulumi.Config()
hostname = cfg.get("hostname") or "metal1"

host = ExistingMachine(
    hostname,
    ExistingMachineArgs(
        config=flatcar_config(HERE / "host.bu", variables={"hostname": hostname}),
        # the config authorizes this key (and any authorized_keys) for core
        ssh=SshAccess(private_key=cfg.require_secret("sshPrivateKey")),
        policy=Policy(keep_paths=("/var/lib/app", "/var/lib/docker")),
        host=cfg.require("host"),
        port=cfg.get_int("port") or 22,
        # `ssh-keyscan -t ed25519 HOST`, checked out of band; without it the first contact is trusted.
        host_key=cfg.get("hostKey"),
        delivery="file",
        hooks=Hooks(before=cfg.get("drainCommand"), after="systemctl is-active app.service"),
    ),
)

pulumi.export("config_hash", host.config_hash)
pulumi.export("applied_hash", host.applied_hash)
pulumi.export("host_key", host.host_key)
