"""A Flatcar web server on DigitalOcean whose config changes are applied without a new droplet.

The droplet's user-data is a pointer to a Spaces object; editing ``web.bu`` (or the greeting)
updates the object, then the ``Reprovision`` resource resets the droplet in place, keeping
``/var/lib/app``, its machine-id, SSH host keys and reserved IP. The operator's SSH key is
authorized by the config itself (no account key, so rotating it never replaces the droplet),
and the droplet's firewall admits SSH from ``sshCidrs`` only.
"""

from pathlib import Path

import pulumi
import pulumi_digitalocean as digitalocean

from flatcar_infra.components import (
    DigitalOceanMachine,
    DigitalOceanMachineArgs,
    InboundRule,
    Policy,
    SshAccess,
    flatcar_config,
)

HERE = Path(__file__).resolve().parent
cfg = pulumi.Config()
region = cfg.get("region") or "fra1"

# The bucket itself is private; only the config object is public-read, at a random key.
bucket = digitalocean.SpacesBucket("configs", region=region, acl="private", force_destroy=True)

web = DigitalOceanMachine(
    "web",
    DigitalOceanMachineArgs(
        config=flatcar_config(HERE / "web.bu", variables={"greeting": cfg.get("greeting") or "Hello"}),
        ssh=SshAccess(private_key=cfg.require_secret("sshPrivateKey")),
        policy=Policy(keep_paths=("/var/lib/app",)),
        region=region,
        size=cfg.get("size") or "s-1vcpu-1gb",
        spaces_bucket=bucket.name,
        # your network: required, SSH is never open to the world by default
        ssh_cidrs=cfg.require_object("sshCidrs"),
        inbound=[InboundRule(ports=80, cidrs=["0.0.0.0/0", "::/0"])],
        tags=["flatcar-infra-example"],
        reserved_ip=True,
    ),
)

pulumi.export("url", web.public_ip.apply(lambda ip: f"http://{ip}/"))
pulumi.export("config_url", web.hosting.url)
pulumi.export("config_hash", web.config_hash)
pulumi.export("applied_hash", web.applied_hash)
pulumi.export("host_key", web.host_key)
