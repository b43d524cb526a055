"""Boot several test-bed hosts the way a cloud would: config in a bucket, pointer as user-data."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from flatcar_infra.canonical import canonical_bytes
from flatcar_infra.testbed.bucket import LocalBucket, pointer_config
from flatcar_infra.testbed.vm import STANDIN_FW_CFG, ClientKey, Vm, VmError


def with_core_key(config: dict[str, Any], public_key: str) -> dict[str, Any]:
    """``config`` plus ``public_key`` in ``core``'s ``sshAuthorizedKeys``, merged the way Ignition
    merges configs (so a user's own ``core`` entry keeps its keys and settings)."""
    from flatcar_infra.compiler.merge import merge_configs

    snippet = {"ignition": {"version": config.get("ignition", {}).get("version", "3.3.0")},
               "passwd": {"users": [{"name": "core", "sshAuthorizedKeys": [public_key]}]}}
    merged: dict[str, Any] = merge_configs(config, snippet)
    return merged


class VmFactory:
    """Boots VMs from configs (uploaded to ``bucket`` under ``<name>/config.ign``) and tears every
    one of them down in ``close()``."""

    def __init__(self, *, image: Path, bucket: LocalBucket, client_key: ClientKey, workdir: Path) -> None:
        self.image = image
        self.bucket = bucket
        self.client_key = client_key
        self.workdir = workdir
        self.vms: list[Vm] = []

    @staticmethod
    def object_key(name: str) -> str:
        return f"{name}/config.ign"

    def upload(self, name: str, config: bytes | dict[str, Any], *, add_key: bool = True) -> str:
        """Put a config into the VM's bucket object; returns the guest URL (stable per name)."""
        if isinstance(config, dict):
            data = canonical_bytes(with_core_key(config, self.client_key.public_line) if add_key else config)
        else:
            data = config
            if add_key:
                data = canonical_bytes(with_core_key(json.loads(data), self.client_key.public_line))
        return self.bucket.put(self.object_key(name), data)

    def boot(self, name: str, *, config: bytes | dict[str, Any] | None = None,
             user_data: bytes | None = None, add_key: bool = True, wait: bool = True,
             timeout: float = 600.0, image: Path | None = None, fw_cfg_name: str = STANDIN_FW_CFG,
             memory_mib: int = 1024) -> Vm:
        """Boot ``name``. With ``config``: upload it and pass the pointer config as user-data
        (``core`` gets the session's client key unless ``add_key=False``). With ``user_data``:
        pass those bytes as they are. ``wait``: return once SSH answers (host key pinned)."""
        if config is not None:
            if user_data is not None:
                raise ValueError("give config or user_data, not both")
            user_data = pointer_config(self.upload(name, config, add_key=add_key))
        vm = Vm.create(name, image=image or self.image, workdir=self.workdir, user_data=user_data,
                       client_key=self.client_key, bucket_port=self.bucket.port,
                       fw_cfg_name=fw_cfg_name, memory_mib=memory_mib)
        self.vms.append(vm)
        vm.start()
        if wait:
            vm.wait_ssh(timeout)
        return vm

    def close(self) -> None:
        errors: list[str] = []
        for vm in reversed(self.vms):
            try:
                vm.stop()
            except (VmError, OSError) as exc:  # keep tearing the others down
                errors.append(f"{vm.spec.name}: {exc}")
        self.vms.clear()
        if errors:
            raise VmError("some VMs did not stop cleanly: " + "; ".join(errors))

    def __enter__(self) -> VmFactory:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(VmError):
            self.close()
