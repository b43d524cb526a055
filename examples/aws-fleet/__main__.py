"""A small Flatcar fleet on EC2: N instances, one private config bucket, one object per node.

Every node reads ``s3://bucket/flatcar-infra/<project>/<stack>/<node>/config.ign`` with its own instance
role (allowed ``s3:GetObject`` on that one object). Config changes roll out in place through each
node's ``Reprovision`` resource; ``after`` hooks check the worker came back. Each node's SSH host
key is generated at deploy time and delivered in its (private) config, so the first connection
is already pinned.
"""

from pathlib import Path

import pulumi

from flatcar_infra.components import (
    AwsConfigBucket,
    AwsMachine,
    AwsMachineArgs,
    Hooks,
    Policy,
    SshAccess,
    flatcar_config,
)

HERE = Path(__file__).resolve().parent
cfg = pulumi.Config()
size = cfg.get_int("size") or 3
fleet = pulumi.get_stack()

bucket = AwsConfigBucket("fleet-configs")
# No EC2 key pair: the config authorizes the key for core (rotating it is a reprovision).
ssh = SshAccess(private_key=cfg.require_secret("sshPrivateKey"))
policy = Policy(keep_paths=("/var/lib/app",), health_checks=("systemctl is-active worker.service",))

nodes: dict[str, AwsMachine] = {}
for i in range(size):
    name = f"node{i + 1}"
    nodes[name] = AwsMachine(
        name,
        AwsMachineArgs(
            config=flatcar_config(HERE / "node.bu", variables={"node": name, "fleet": fleet}),
            ssh=ssh,
            policy=policy,
            ssh_cidrs=cfg.require_object("sshCidrs"),
            instance_type=cfg.get("instanceType") or "t3.small",
            channel="stable",
            bucket=bucket.bucket,
            tags={"fleet": fleet},
            hooks=Hooks(after="systemctl is-active worker.service"),
        ),
    )

pulumi.export("bucket", bucket.bucket)
pulumi.export("nodes", {name: node.public_ip for name, node in nodes.items()})
pulumi.export("applied", {name: node.applied_hash for name, node in nodes.items()})
