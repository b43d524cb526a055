"""Boot several test-bed hosts the way a cloud would: config in a bucket, pointer as user-data."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from flatcar_infra.canonical import canonical_bytes
from flatcar_infra.testbed.bucket import LocalBucket, pointer_config
from flatcar_infra.testbed.vm import (
    FLATCAR_EMERGENCY_TIMEOUT,
    STANDIN_FW_CFG,
    ClientKey,
    Vm,
    VmError,
    VmSnapshot,
)

#: The factory's pointer user-data is padded with JSON whitespace to this size, so that every VM's
#: user-data has the same size and a snapshot of one VM can be restored with another's (QEMU's
#: fw_cfg file sizes are part of what the guest has already read).
USER_DATA_SLOT = 4096


def padded_pointer(url: str) -> bytes:
    """The pointer config for ``url``, padded with spaces to ``USER_DATA_SLOT`` bytes."""
    data = pointer_config(url)
    if len(data) > USER_DATA_SLOT:
        raise VmError(f"pointer config for {url} is longer than {USER_DATA_SLOT} bytes")
    return data + b" " * (USER_DATA_SLOT - len(data))


def with_core_key(config: dict[str, Any], public_key: str) -> dict[str, Any]:
    """``config`` plus ``public_key`` in ``core``'s ``sshAuthorizedKeys``, merged the way Ignition
    merges configs (so a user's own ``core`` entry keeps its keys and settings)."""
    from flatcar_infra.compiler.merge import merge_configs

    snippet = {"ignition": {"version": config.get("ignition", {}).get("version", "3.3.0")},
               "passwd": {"users": [{"name": "core", "sshAuthorizedKeys": [public_key]}]}}
    merged: dict[str, Any] = merge_configs(config, snippet)
    return merged


class VmFactory:
    """Boots VMs from configs (uploaded to ``bucket`` under ``<name>/config.ign``), saves and
    restores snapshots of them, and tears every VM and snapshot it made down in ``close()``."""

    def __init__(self, *, image: Path, bucket: LocalBucket, client_key: ClientKey, workdir: Path) -> None:
        self.image = image
        self.bucket = bucket
        self.client_key = client_key
        self.workdir = workdir
        self.vms: list[Vm] = []
        self.snapshots: list[VmSnapshot] = []
        self._configs: dict[str, bytes] = {}

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
        self._configs[name] = data
        return self.bucket.put(self.object_key(name), data)

    def boot(self, name: str, *, config: bytes | dict[str, Any] | None = None,
             user_data: bytes | None = None, add_key: bool = True, wait: bool = True,
             timeout: float = 600.0, image: Path | None = None, fw_cfg_name: str = STANDIN_FW_CFG,
             memory_mib: int = 1024, emergency_timeout: int = FLATCAR_EMERGENCY_TIMEOUT) -> Vm:
        """Boot ``name``. With ``config``: upload it and pass the pointer config as user-data
        (``core`` gets the session's client key unless ``add_key=False``). With ``user_data``:
        pass those bytes as they are. ``wait``: return once SSH answers (host key pinned).

        ``emergency_timeout``: seconds after which the stand-in's initramfs reboots when the boot
        failed (e.g. Ignition did), instead of Flatcar's 300 (the test bed's one documented
        deviation; wait with ``expect_emergency_reboot=True``).
        """
        if config is not None:
            if user_data is not None:
                raise ValueError("give config or user_data, not both")
            user_data = padded_pointer(self.upload(name, config, add_key=add_key))
        vm = Vm.create(name, image=image or self.image, workdir=self.workdir, user_data=user_data,
                       client_key=self.client_key, bucket_port=self.bucket.port,
                       fw_cfg_name=fw_cfg_name, memory_mib=memory_mib, emergency_timeout=emergency_timeout)
        self.vms.append(vm)
        vm.start()
        if wait:
            vm.wait_ssh(timeout)
        return vm

    def snapshot(self, vm: Vm, label: str | None = None, *, resume: bool = True) -> VmSnapshot:
        """Save ``vm`` (booted by this factory, SSH up) for ``restore``; the VM carries on from
        the snapshot (or, with ``resume=False``, stays stopped)."""
        snap = vm.snapshot(self.workdir / "snapshots" / (label or vm.spec.name),
                           config=self._configs.get(vm.spec.name), resume=resume)
        self.snapshots.append(snap)
        if not resume:
            vm.stop()
            self.vms.remove(vm)
        return snap

    def restore(self, snap: VmSnapshot, name: str, *,
                emergency_timeout: int = FLATCAR_EMERGENCY_TIMEOUT) -> Vm:
        """A new VM ``name`` resumed from ``snap`` in seconds, instead of a boot: the snapshot's
        guest as it was saved (same disk contents, machine-id, host keys and boot_id; its clock set
        to now), on its own overlay, SSH port and console log. When the snapshot VM was booted from
        a config through the bucket, that config is copied to ``name``'s object and ``name``'s
        user-data points there, exactly as if ``boot(name, config=...)`` had booted it."""
        user_data = snap.user_data
        if snap.config is not None:
            user_data = padded_pointer(self.upload(name, snap.config, add_key=False))
        vm = Vm.create(name, image=snap.disk, workdir=self.workdir, user_data=user_data,
                       client_key=self.client_key, bucket_port=self.bucket.port,
                       fw_cfg_name=snap.fw_cfg_name, memory_mib=snap.memory_mib, cpus=snap.cpus,
                       accel=snap.accel, emergency_timeout=emergency_timeout, incoming=snap.state)
        vm.host_key = snap.host_key
        self.vms.append(vm)
        vm.start()
        return vm

    def close(self) -> None:
        errors: list[str] = []
        for vm in reversed(self.vms):
            try:
                vm.stop()
            except (VmError, OSError) as exc:  # keep tearing the others down
                errors.append(f"{vm.spec.name}: {exc}")
        self.vms.clear()
        for snap in self.snapshots:
            snap.remove()
        self.snapshots.clear()
        if errors:
            raise VmError("some VMs did not stop cleanly: " + "; ".join(errors))

    def __enter__(self) -> VmFactory:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(VmError):
            self.close()
