"""Pulumi components for Flatcar machines: reuse them in any Pulumi project.

``flatcar_config`` compiles a config into Outputs; ``AwsMachine``, ``DigitalOceanMachine`` and
``ExistingMachine`` host it (a stable pointer in user-data, the config in a bucket object) and wire
the ``Reprovision`` resource that applies config changes in place.
"""

from flatcar_infra.components.args import (
    AwsMachineArgs,
    AwsVolume,
    DigitalOceanMachineArgs,
    DigitalOceanVolume,
    ExistingMachineArgs,
    Hooks,
    SshAccess,
)
from flatcar_infra.components.config import ConfigOutput, flatcar_config
from flatcar_infra.components.fleet import Fleet, FleetArgs
from flatcar_infra.components.hosting import (
    AwsConfigBucket,
    AwsConfigHosting,
    DigitalOceanConfigHosting,
    pointer_config,
)
from flatcar_infra.components.machines import (
    AwsMachine,
    DigitalOceanMachine,
    ExistingMachine,
    FlatcarDigitalOceanImage,
    flatcar_ami,
)
from flatcar_infra.reprovision.policy import Policy
from flatcar_infra.rollout.policy import RolloutPolicy

__all__ = [
    "AwsConfigBucket",
    "AwsConfigHosting",
    "AwsMachine",
    "AwsMachineArgs",
    "AwsVolume",
    "ConfigOutput",
    "DigitalOceanConfigHosting",
    "DigitalOceanMachine",
    "DigitalOceanMachineArgs",
    "DigitalOceanVolume",
    "ExistingMachine",
    "ExistingMachineArgs",
    "FlatcarDigitalOceanImage",
    "Fleet",
    "FleetArgs",
    "Hooks",
    "Policy",
    "RolloutPolicy",
    "SshAccess",
    "flatcar_ami",
    "flatcar_config",
    "pointer_config",
]
