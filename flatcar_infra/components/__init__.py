"""Pulumi components for Flatcar machines: reuse them in any Pulumi project.

``flatcar_config`` compiles a config into Outputs; ``AwsMachine``, ``DigitalOceanMachine`` and
``ExistingMachine`` host it (a stable pointer in user-data, the config in a bucket object) and wire
the ``Reprovision`` resource that applies config changes in place.

The machine components live with their target (``flatcar_infra.targets.<name>``) and are loaded
on first use, so importing this package does not import every cloud SDK (and the target modules,
which build on the shared pieces here, can import them without a cycle).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from flatcar_infra.components.args import Hooks, InboundRule, SshAccess
from flatcar_infra.components.config import ConfigOutput, flatcar_config
from flatcar_infra.components.hosting import pointer_config
from flatcar_infra.reprovision.policy import Policy
from flatcar_infra.rollout.policy import RolloutPolicy

if TYPE_CHECKING:
    from flatcar_infra.components.fleet import Fleet, FleetArgs
    from flatcar_infra.targets.aws import (
        AwsConfigBucket,
        AwsConfigHosting,
        AwsMachine,
        AwsMachineArgs,
        AwsVolume,
        flatcar_ami,
    )
    from flatcar_infra.targets.digitalocean import (
        DigitalOceanConfigHosting,
        DigitalOceanMachine,
        DigitalOceanMachineArgs,
        DigitalOceanVolume,
        FlatcarDigitalOceanImage,
    )
    from flatcar_infra.targets.existing import ExistingMachine, ExistingMachineArgs

_LAZY: dict[str, str] = {
    **dict.fromkeys(
        ("AwsConfigBucket", "AwsConfigHosting", "AwsMachine", "AwsMachineArgs", "AwsVolume", "flatcar_ami"),
        "flatcar_infra.targets.aws",
    ),
    **dict.fromkeys(
        (
            "DigitalOceanConfigHosting",
            "DigitalOceanMachine",
            "DigitalOceanMachineArgs",
            "DigitalOceanVolume",
            "FlatcarDigitalOceanImage",
    "Fleet",
    "FleetArgs",
        ),
        "flatcar_infra.targets.digitalocean",
    ),
    **dict.fromkeys(("ExistingMachine", "ExistingMachineArgs"), "flatcar_infra.targets.existing"),
    **dict.fromkeys(("Fleet", "FleetArgs"), "flatcar_infra.components.fleet"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


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
    "InboundRule",
    "Policy",
    "RolloutPolicy",
    "SshAccess",
    "flatcar_ami",
    "flatcar_config",
    "pointer_config",
]
