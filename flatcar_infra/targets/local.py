"""The local target: a VM from ``flatcar-infra local up``, its config in the local bucket.

The machine is the one ``local up`` booted under QEMU, with the never-changing pointer to its
object on the local S3 server as user-data. Like a cloud, the stack writes the config to that
object (``LocalConfigObject``) and reprovisions with pointer delivery: the VM's Ignition fetches
the object on the next boot. The address, login key and host key come from the VM's saved state
(``local up`` pinned the host key on first boot), so no ``ssh:`` settings are needed.

This module is the only bridge to ``flatcar_infra.testbed``: the stack program, the stack config
and the ``flatcar-infra local`` commands reach the VMs through the functions here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pulumi
import pulumi.dynamic as dyn

from flatcar_infra.access import Access, finish
from flatcar_infra.compiler.api import CompiledConfig
from flatcar_infra.components.args import MachineCommon
from flatcar_infra.components.machines import FlatcarMachine
from flatcar_infra.errors import UserError
from flatcar_infra.targets import Kind, Target

if TYPE_CHECKING:
    from flatcar_infra.components.stack import StackContext
    from flatcar_infra.stackconfig import MachineSpec, StackSpec

OBJECT_KEYS = ("machine", "content")
Progress = Callable[[str, str], None]


# --- the VMs (``flatcar-infra local`` and the stack reach the test bed only through these) --------


def load_vm(name: str) -> dict[str, Any]:
    """What ``flatcar-infra local up --name NAME`` recorded (address, keys, bucket object)."""
    from flatcar_infra.testbed.local import load_machine

    return load_machine(name)


def login_config(compiled: CompiledConfig, public_key: str) -> CompiledConfig:
    """A compiled (unstamped) config plus the VM's login key for ``core``, stamped: the same
    merge the stack's machine components make, so ``local up`` and ``pulumi up`` deliver the
    same bytes."""
    doc = Access(user="core", authorized_keys=(public_key,)).apply(compiled.ignition)
    return finish(doc, source_kind=compiled.source_kind, warnings=compiled.warnings)


def vm_up(
    name: str, config: CompiledConfig, *, image: Path | None, progress: Progress, timeout: float
) -> Any:
    """Boot (or reuse) the VM ``name`` with ``config`` in its bucket object (``UpResult``)."""
    from flatcar_infra.testbed import local

    return local.up(name, config, image=image, progress=progress, timeout=timeout)


def vm_down(name: str, progress: Progress) -> bool:
    from flatcar_infra.testbed import local

    return local.down(name, progress)


def vm_list() -> list[dict[str, Any]]:
    from flatcar_infra.testbed import local

    return local.list_machines()


def vm_view(state: dict[str, Any]) -> dict[str, Any]:
    """The fields ``local up`` prints (no pid or file paths beyond the identity file)."""
    from flatcar_infra.testbed import local

    return local.public_view(state)


def vm_name(name: str) -> str:
    """``name`` checked as a VM name (a clear error otherwise)."""
    from flatcar_infra.testbed import local

    return local.check_name(name)


def vm_login_key(name: str) -> str:
    """The VM's login public key (created once, kept with its state)."""
    from flatcar_infra.testbed import local

    return local.machine_key(name).public_line


def stop_bucket_server() -> bool:
    from flatcar_infra.testbed import local

    return local.stop_bucket_server()


def build_image(progress: Progress, *, force: bool = False) -> Path:
    """The cached stand-in image (built when missing)."""
    from flatcar_infra.testbed.image import build_image as build

    return build(progress, force=force)


def _upload(machine: str, content: str) -> str:
    """Write the config to the machine's object on the local bucket; returns the guest URL."""
    from flatcar_infra.testbed.local import machine_bucket

    vm = load_vm(machine)
    port = int(vm["bucket_port"])
    try:
        bucket = machine_bucket(vm)  # signed with the bucket server's credentials: writes need them
        return bucket.put(str(vm["object_key"]), content.encode("utf-8"))
    except Exception as exc:  # botocore's connection errors have no common base worth naming
        raise UserError(
            f"local bucket server on 127.0.0.1:{port} did not take {machine}'s config: {exc}",
            f"run `flatcar-infra local up --name {machine}` again (it restarts the bucket and the VM)",
        ) from None


def _outputs(props: Mapping[str, Any], url: str) -> dict[str, Any]:
    content = str(props["content"])
    return {
        "machine": str(props["machine"]),
        "content": content,
        "sha512": hashlib.sha512(content.encode("utf-8")).hexdigest(),
        "url": url,
    }


class LocalConfigObjectProvider(dyn.ResourceProvider):
    """Writes a config to a local VM's bucket object. Stable import path (stacks point at it):
    never move or rename. Plain data only on ``self``; the bucket is found at each call."""

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        changed = [k for k in OBJECT_KEYS if olds.get(k) != news.get(k)]
        return dyn.DiffResult(changes=bool(changed), replaces=[], stables=[], delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        url = _upload(str(props["machine"]), str(props["content"]))
        return dyn.CreateResult(f"local-config-{props['machine']}", _outputs(props, url))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> dyn.UpdateResult:
        return dyn.UpdateResult(_outputs(news, _upload(str(news["machine"]), str(news["content"]))))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing: the VM's pointer keeps naming the object; ``local down`` removes the machine."""


class LocalConfigObject(dyn.Resource, module="flatcar-infra", name="LocalConfigObject"):
    """A local VM's config object on the local bucket (the local target's hosting)."""

    url: pulumi.Output[str]
    sha512: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        *,
        machine: pulumi.Input[str],
        content: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {"machine": machine, "content": content, "sha512": None, "url": None}
        secret = pulumi.ResourceOptions(additional_secret_outputs=["content", "sha512"])
        super().__init__(
            LocalConfigObjectProvider(), resource_name, props, pulumi.ResourceOptions.merge(secret, opts)
        )


@dataclass(frozen=True, kw_only=True)
class LocalMachineArgs(MachineCommon):
    """A VM started by ``flatcar-infra local up --name local_name`` (see ``load_vm``)."""

    local_name: str
    host: str
    port: int
    host_key: str | None


class LocalMachine(FlatcarMachine):
    """The local VM: config written to its bucket object, reprovisioned with pointer delivery."""

    def __init__(self, name: str, args: LocalMachineArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("flatcar-infra:local:Machine", name, None, opts)
        config = self._access_config(args)
        self.hosting = LocalConfigObject(
            f"{name}-config",
            machine=args.local_name,
            content=config.canonical,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.public_ip = pulumi.Output.from_input(args.host)
        self._wire(
            name,
            args,
            host=args.host,
            port=args.port,
            host_key=args.host_key,
            delivery="pointer",
            config_url=self.hosting.url,
            depends_on=[self.hosting],
        )
        self._finish()


class LocalTarget(Target):
    name = "local"
    fetch = ("the local bucket (a moto S3 server on 127.0.0.1 that only signed requests may change, "
             "reached by the VM through QEMU)")
    options: ClassVar[Mapping[str, Kind]] = {"local_name": "str"}
    needs_private_key = False

    def login_public_key(self, spec: StackSpec, machine: MachineSpec, project_dir: str | Path) -> str | None:
        vm = load_vm(self.vm_name(spec, machine))
        if vm.get("client_public_key"):
            return str(vm["client_public_key"]).strip()
        import asyncssh

        private = Path(str(vm["identity_file"])).read_text(encoding="utf-8")
        return str(asyncssh.import_private_key(private).export_public_key("openssh").decode().strip())

    @staticmethod
    def vm_name(spec: StackSpec, machine: MachineSpec) -> str:
        return str(spec.machine_options(machine).get("local_name") or machine.name)

    def build(self, ctx: StackContext) -> dict[str, FlatcarMachine]:
        out: dict[str, FlatcarMachine] = {}
        for m in ctx.spec.machines:
            local_name = self.vm_name(ctx.spec, m)
            vm = load_vm(local_name)
            ssh = ctx.ssh_access(identity_file=str(vm["identity_file"]), user=str(vm.get("user") or "core"))
            out[m.name] = LocalMachine(
                m.name,
                LocalMachineArgs(
                    config=ctx.config_of(m, ssh),
                    ssh=ssh,
                    policy=ctx.policy,
                    local_name=local_name,
                    host=str(vm["host"]),
                    port=int(vm["port"]),
                    host_key=str(vm["host_key"]) if vm.get("host_key") else None,
                ),
            )
        return out


TARGET = LocalTarget()
