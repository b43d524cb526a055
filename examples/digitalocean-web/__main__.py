"""A Flatcar web server on DigitalOcean whose config changes are applied without a new droplet.

The droplet's user-data is a pointer to a Spaces object; editing ``web.bu`` (or the greeting)
updates the object, then the ``Reprovision`` resource resets the droplet in place, keeping
``/var/lib/app``, its machine-id, SSH host keys and reserved IP.
"""

from pathlib import Path

import pulumi
import pulumi_digitalocean as digitalocean

from flatcar_infra.components import (
    DigitalOceanMachine,
    DigitalOceanMachineArgs,
    Policy,
    SshAccess,
    flatcar_config,
)

HERE = Path(__file__).resolve().parent
cfg = pulumi.Config()
region = cfg.get("region") or "fra1"
ssh_cidrs = cfg.get_object("sshCidrs") or ["0.0.0.0/0"]

# The bucket itself is private; only the config object is public-read, at a random key.
bucket = digitalocean.SpacesBucket("configs", region=region, acl="private", force_destroy=True)
ssh_key = digitalocean.SshKey("operator", public_key=cfg.require("sshPublicKey"))

web = DigitalOceanMachine(
    "web",
    DigitalOceanMachineArgs(
        config=flatcar_config(HERE / "web.bu", variables={"greeting": cfg.get("greeting") or "Hello"}),
        ssh=SshAccess(private_key=cfg.require_secret("sshPrivateKey")),
        policy=Policy(keep_paths=("/var/lib/app",)),
        region=region,
        size=cfg.get("size") or "s-1vcpu-1gb",
        spaces_bucket=bucket.name,
        ssh_keys=[ssh_key.fingerprint],
        tags=["flatcar-infra-example"],
        reserved_ip=True,
    ),
)

digitalocean.Firewall(
    "web",
    droplet_ids=[web.droplet.id.apply(int)],
    inbound_rules=[
        digitalocean.FirewallInboundRuleArgs(protocol="tcp", port_range="22", source_addresses=ssh_cidrs),
        digitalocean.FirewallInboundRuleArgs(
            protocol="tcp", port_range="80", source_addresses=["0.0.0.0/0", "::/0"]
        ),
    ],
    outbound_rules=[
        digitalocean.FirewallOutboundRuleArgs(
            protocol=proto, port_range="1-65535", destination_addresses=["0.0.0.0/0", "::/0"]
        )
        for proto in ("tcp", "udp")
    ],
)

pulumi.export("url", web.public_ip.apply(lambda ip: f"http://{ip}/"))
pulumi.export("config_url", web.hosting.url)
pulumi.export("config_hash", web.config_hash)
pulumi.export("applied_hash", web.applied_hash)
pulumi.export("host_key", web.host_key)
