"""The ``local`` stack end to end: the project's ``__main__.py`` under Pulumi mocks, with every
dynamic resource (the config object on the local bucket, ``Reprovision``) executed the way the
engine would (Check → Diff → Create/Update) by the REAL provider gRPC server
(``python -m pulumi.dynamic``) against a REAL local VM started by ``flatcar-infra local up``.

ONE VM boot and ONE reprovision: the VM boots with the stack's config (the first ``pulumi up``
writes the same bytes to its object and verifies it, without a reboot), then a changed variable
is previewed (an update, no replace) and applied in place through the pointer: the object is
rewritten first, then the reset reboots into Ignition fetching it (kept data and identity,
removed scratch, new config proven by its hash).
"""

from __future__ import annotations

import json
import os
import runpy
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi.runtime import mocks, rpc
from pulumi.runtime.proto import provider_pb2

from flatcar_infra.provider import ReprovisionProvider
from flatcar_infra.ssh import SshTarget, connect, run_sync
from tests.components.mockgraph import REPROVISION_TYPE, Graph, run_program
from tests.reprovision.engine import ProviderEngine, State, Step

pytestmark = [pytest.mark.vm, pytest.mark.timeout(3600)]

ROOT = Path(__file__).resolve().parents[2]
VM = "e2e"


class EngineBridge:
    """Mocks' ``new_resource`` for dynamic resources: hand the registration to the real provider
    server, keeping the state between program runs like the engine's checkpoint."""

    def __init__(self, engine: ProviderEngine) -> None:
        self.engine = engine
        self.states: dict[str, State] = {}
        self.steps: list[Step] = []
        self.preview = False

    def __call__(self, args: mocks.MockResourceArgs) -> dict[str, Any]:
        plain = {k: rpc.unwrap_rpc_secret(v) if rpc.is_rpc_secret(v) else v for k, v in args.inputs.items()}
        # the provider the program pickled, not one built here
        self.engine.provider_blob = plain.pop("__provider")
        state = self.states.get(args.name)
        step = self.engine.register(
            args.name, plain, state=state, preview=self.preview, secret_inputs=("private_key",)
        )
        self.steps.append(step)
        if step.check_failures:
            raise RuntimeError(f"Check failed: {step.check_failures}")
        if not self.preview:
            self.states[args.name] = step.state
        outputs = dict((state or step.state).outputs if self.preview else step.state.outputs)
        if self.preview and state is None:
            outputs = dict(plain)
        outputs["__id"] = step.state.id or f"{args.name}-preview"
        return outputs


def step_of(bridge: EngineBridge, name: str) -> Step:
    """The last step of the resource ``name`` (registration order between resources varies)."""
    return next(s for s in reversed(bridge.steps) if s.state.urn.endswith("::" + name))


def cli(*argv: str, env: dict[str, str]) -> str:
    res = subprocess.run(
        [sys.executable, "-m", "flatcar_infra.cli.main", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert res.returncode == 0, f"flatcar-infra {' '.join(argv)} failed:\n{res.stderr[-4000:]}"
    return res.stdout


def stack_config(greeting: str) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "stacks" / "Pulumi.local.yaml").read_text())
    config: dict[str, Any] = dict(doc["config"])
    (machine,) = config["flatcar-infra:machines"]
    config["flatcar-infra:machines"] = [{**machine, "local_name": VM, "variables": {"greeting": greeting}}]
    # software emulation on a shared machine: a reset boot can take several minutes
    config["flatcar-infra:policy"] = {**config["flatcar-infra:policy"], "reboot_timeout": 1500}
    return config


def pulumi_up(bridge: EngineBridge, greeting: str, *, preview: bool = False) -> Graph:
    bridge.preview = preview
    return run_program(
        lambda: runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__"),
        stack="local",
        config=stack_config(greeting),
        preview=preview,
        dynamic=bridge,
    )


@pytest.fixture
def local_vm(vm_image: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """``flatcar-infra local up`` with the stack's own config, in a private state dir (short: the
    VM's QMP socket lives there and a UNIX socket path must stay under 108 bytes)."""
    from flatcar_infra.testbed.local import load_machine

    home = Path(tempfile.mkdtemp(prefix="fi-e2e-", dir="/tmp"))
    monkeypatch.setenv("FLATCAR_INFRA_HOME", str(home))
    env = {**os.environ, "FLATCAR_INFRA_HOME": str(home)}
    try:
        out = cli(
            "local",
            "up",
            "--name",
            VM,
            "--config",
            str(ROOT / "stacks/configs/local.bu"),
            "--var",
            "greeting=hello",
            env=env,
        )
        printed = json.loads(out)
        machine = load_machine(VM)
        assert printed["host_key"] == machine["host_key"]
        yield machine
    finally:
        cli("local", "down", "--all", env=env)
        shutil.rmtree(home, ignore_errors=True)


def on_host(vm: dict[str, Any], command: str) -> str:
    target = SshTarget(
        host=vm["host"],
        port=int(vm["port"]),
        user=vm["user"],
        identity_file=vm["identity_file"],
        host_key=vm["host_key"],
    )

    async def go() -> str:
        async with await connect(target) as session:
            return (await session.run(command, check=True)).text

    return run_sync(go)


def test_local_stack_provisions_then_reprovisions_in_place(local_vm: dict[str, Any]) -> None:
    try:
        run_scenario(local_vm)
    except BaseException:
        console = Path(str(local_vm["serial_log"]))
        tail = console.read_text(errors="replace")[-6000:] if console.is_file() else "(no serial log)"
        print(f"--- {VM}'s console, last 6000 characters ---\n{tail}")
        raise


def run_scenario(vm: dict[str, Any]) -> None:
    with ProviderEngine(ReprovisionProvider()) as engine:
        engine.configure({})
        bridge = EngineBridge(engine)

        # first `pulumi up`: the VM already runs this config → create verifies, no reboot
        boot1 = on_host(vm, "cat /proc/sys/kernel/random/boot_id").strip()
        g1 = pulumi_up(bridge, "hello")
        assert step_of(bridge, "dev-config").op == "create", "the same bytes `local up` uploaded"
        created = step_of(bridge, "dev-reprovision")
        assert created.op == "create"
        outs = created.state.outputs
        assert outs["rebooted"] is False and outs["last_action"] == "verified"
        assert outs["applied_hash"] == g1.one(REPROVISION_TYPE).plain("config_hash") == vm["config_hash"]
        assert outs["host_key"].split()[:2] == vm["host_key"].split()[:2]
        assert on_host(vm, "cat /proc/sys/kernel/random/boot_id").strip() == boot1

        # state the reset must keep (policy keep_paths) and state it must remove
        on_host(vm, "sudo sh -c 'echo precious > /var/lib/app/marker && echo scratch > /etc/scratch'")
        machine_id = on_host(vm, "cat /etc/machine-id")

        # `pulumi preview --diff` after changing a variable: an update of the Reprovision only
        pulumi_up(bridge, "bonjour", preview=True)
        preview = step_of(bridge, "dev-reprovision")
        assert preview.op == "preview-update" and preview.diff is not None
        assert preview.diff.changes == provider_pb2.DiffResponse.DIFF_SOME and not list(preview.diff.replaces)

        # `pulumi up`: reprovisioned in place
        g2 = pulumi_up(bridge, "bonjour")
        assert step_of(bridge, "dev-config").op == "update", "the object is rewritten first"
        updated = step_of(bridge, "dev-reprovision")
        assert updated.op == "update" and updated.state.outputs["delivery"] == "pointer"
        outs = updated.state.outputs
        desired = g2.one(REPROVISION_TYPE).plain("config_hash")
        assert desired != vm["config_hash"]
        assert outs["rebooted"] is True and outs["last_action"] == "reprovisioned"
        assert outs["applied_hash"] == desired and outs["boot_id"] != boot1
        print(f"reprovision phases (s): {outs['phases']}")  # reported, never asserted
        assert g2.one(REPROVISION_TYPE).outputs["applied_hash"] == desired

        # the host, over the same pinned host key
        assert on_host(vm, "cat /etc/flatcar-infra/config-hash").strip() == desired
        assert on_host(vm, "cat /etc/flatcar-infra/greeting") == "bonjour\n"
        assert on_host(vm, "cat /var/lib/app/marker") == "precious\n"
        assert on_host(vm, "test -e /etc/scratch && echo present || echo gone").strip() == "gone"
        assert on_host(vm, "cat /etc/machine-id") == machine_id
        assert vm["user"] == "core"

        # an unchanged rerun is a no-op
        pulumi_up(bridge, "bonjour")
        assert step_of(bridge, "dev-config").op == step_of(bridge, "dev-reprovision").op == "same"
        secret_text = Path(vm["identity_file"]).read_text().strip()
        assert secret_text not in "".join(engine.stderr_lines), "the private key never reaches a log"
