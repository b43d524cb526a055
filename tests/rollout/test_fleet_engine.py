"""The Fleet program under the test engine (tests/reprovision/engine.py ``deploy``), with its
Rollout and RolloutVerdict resources served by the REAL provider server, against a real sshd.

No reboot here (the sshd host is Debian: an in-place change is refused by the procedure's
preflight, which is the point of the second test); rollouts that reboot run on the test-bed VMs
(tests/vm/test_fleet_rollout.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pulumi.runtime.proto import provider_pb2

from flatcar_infra.components import (
    ExistingMachineArgs,
    Fleet,
    FleetArgs,
    Hooks,
    Policy,
    RolloutPolicy,
    SshAccess,
    flatcar_config,
)
from tests.reprovision.engine import UNKNOWN, ProviderEngine, Stack, deploy
from tests.reprovision.helpers import ignition
from tests.support.sshd import Sshd

ROOT = str(Path(__file__).resolve().parents[2])
ENV = {"PYTHONPATH": os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH", "")) if p)}
NAMES = ("web-1", "web-2", "web-3")


def program(
    sshd: Sshd, versions: dict[str, str], policy: Policy, rollout: RolloutPolicy, hook_log: Path | None = None
) -> Any:
    key = Path(sshd.identity_file).read_text()

    def hooks(n: str) -> Hooks:
        if hook_log is None:
            return Hooks()
        return Hooks(before=f"echo before {n} >> {hook_log}", after=f"echo after {n} >> {hook_log}")

    def run() -> None:
        machines = {
            n: ExistingMachineArgs(
                config=flatcar_config(text=ignition({"/etc/app.conf": versions[n]}), filename=f"{n}.ign"),
                ssh=SshAccess(private_key=key, user=sshd.user),
                host="127.0.0.1",
                port=sshd.port,
                host_key=sshd.host_key,
                policy=policy,
                hooks=hooks(n),
            )
            for n in NAMES
        }
        Fleet("web", FleetArgs(machines=machines, rollout=rollout))

    return run


def changed_paths(old: Any, new: Any, path: str = "") -> set[str]:
    """The leaf paths where two input trees differ (what ``pulumi preview --diff`` prints)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: set[str] = set()
        for k in set(old) | set(new):
            out |= changed_paths(old.get(k), new.get(k), f"{path}.{k}" if path else k)
        return out
    return set() if old == new else {path}


def test_preview_shows_machines_by_wave_and_up_records_each_machine(sshd: Sshd, tmp_path: Path) -> None:
    stack = Stack()
    v1 = dict.fromkeys(NAMES, "v1\n")
    policy = Policy(strategy="ignore")  # nothing applied: connection and state only
    rollout = RolloutPolicy(max_unavailable=1, canary=1)
    hook_log = tmp_path / "hooks.log"
    pv = deploy(program(sshd, v1, policy, rollout, hook_log), stack, preview=True, env=ENV)
    assert pv.ok and pv.step("web-rollout").op == "preview-create" and not stack.resources
    up = deploy(program(sshd, v1, policy, rollout, hook_log), stack, env=ENV)
    assert up.ok, (up.error, [(s.name, s.op, s.error) for s in up.steps])
    assert up.step("web-rollout").op == "create" and up.step("web-verdict").op == "create"
    hosts = stack.by_name("web-rollout").outputs["hosts"]
    assert {n: (h["result"], h["wave"]) for n, h in hosts.items()} == {
        "web-1": ("unchanged", "wave-01"),
        "web-2": ("unchanged", "wave-02"),
        "web-3": ("unchanged", "wave-03"),
    }
    assert all(h["host_key"] for h in hosts.values()) and all(h["started_at"] for h in hosts.values())
    assert stack.by_name("web-rollout").outputs["result"] == "succeeded"
    # each machine's hooks ran around ITS turn, one machine at a time (not all drains at once)
    assert hook_log.read_text().split("\n")[:-1] == [f"{w} {n}" for n in NAMES for w in ("before", "after")]
    # refresh reads every machine from the host
    with ProviderEngine(env=ENV) as eng:
        eng.configure({})
        fresh = eng.refresh(stack.by_name("web-rollout"))
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert all(fresh.outputs["hosts"][n]["boot_id"] == boot for n in NAMES)
    again = deploy(program(sshd, v1, policy, rollout, hook_log), stack, env=ENV)
    assert again.ok and again.step("web-rollout").op == "same" and again.step("web-verdict").op == "same"
    # a change to web-2 only: the preview names that machine under its wave
    v2 = {**v1, "web-2": "v2\n"}
    pv2 = deploy(program(sshd, v2, policy, rollout, hook_log), stack, preview=True, env=ENV)
    step = pv2.step("web-rollout")
    assert step.op == "preview-update" and step.inputs is not None
    old = stack.by_name("web-rollout").inputs
    paths = changed_paths({k: old[k] for k in ("waves",)}, {k: step.inputs[k] for k in ("waves",)})
    assert paths and all(p.startswith("waves.wave-02.web-2.") for p in paths)
    assert "waves.wave-02.web-2.config_hash" in paths
    assert any(p.startswith("waves.wave-02.web-2.manifest.file:/etc/app.conf") for p in paths)


def test_a_halted_rollout_is_recorded_per_machine_and_fails_the_deployment(sshd: Sshd) -> None:
    """In place on a host that is not Flatcar: every host's read-only preflight refuses, so the
    rollout halts before touching any; the state records each machine; the verdict fails the
    deployment naming them; a rerun tries again (nothing is recorded as done)."""
    stack = Stack()
    v1 = dict.fromkeys(NAMES, "v1\n")
    dep = deploy(program(sshd, v1, Policy(), RolloutPolicy(max_unavailable=1)), stack, env=ENV)
    assert not dep.ok and dep.step("web-rollout").op == "create"
    verdict = dep.step("web-verdict")
    assert verdict.op == "failed"
    assert "the rollout halted" in (verdict.error or "") and "web-1 (wave-01): failed" in (
        verdict.error or ""
    )
    assert "not Flatcar" in (verdict.error or "")
    out = stack.by_name("web-rollout").outputs
    assert out["result"] == "halted"
    assert [out["hosts"][n]["result"] for n in NAMES] == ["failed", "failed", "failed"]
    assert all("refused" in out["hosts"][n]["message"] for n in NAMES)
    assert all(out["hosts"][n].get("started_at") is None for n in NAMES)  # nothing was started
    assert "web-verdict" not in {urn.rsplit("::", 1)[-1] for urn in stack.resources}
    # secrets are secret in the state
    assert {"configs", "private_keys"} <= stack.by_name("web-rollout").secret_outputs
    again = deploy(
        program(sshd, v1, Policy(), RolloutPolicy(max_unavailable=1, failure_budget=1)), stack, env=ENV
    )
    assert again.step("web-rollout").op == "update" and again.step("web-verdict").op == "failed"


def test_check_and_diff_are_offline_and_take_unknowns(sshd: Sshd) -> None:
    """Through the real provider server: a preview with values not known yet (configs computed
    from other resources' outputs) is checked and diffed without contacting any host."""
    stack = Stack()
    v1 = dict.fromkeys(NAMES, "v1\n")
    assert deploy(program(sshd, v1, Policy(strategy="ignore"), RolloutPolicy()), stack, env=ENV).ok
    state = stack.by_name("web-rollout")
    with ProviderEngine(env=ENV) as eng:
        eng.configure({})
        news = {k: v for k, v in state.inputs.items()}
        same = eng.diff(state.urn, state.id, state.outputs, news)
        assert same.changes == provider_pb2.DiffResponse.DIFF_NONE
        unknown = {
            **news,
            "configs": UNKNOWN,
            "waves": {
                **news["waves"],
                "wave-02": {"web-2": {**news["waves"]["wave-02"]["web-2"], "config_hash": UNKNOWN}},
            },
        }
        checked, failures = eng.check(state.urn, state.inputs, unknown)
        assert not failures
        d = eng.diff(state.urn, state.id, state.outputs, checked)
        assert d.changes == provider_pb2.DiffResponse.DIFF_SOME and not list(d.replaces)
        bad = {**news, "rollout": {**news["rollout"], "max_unavailable": 0}}
        _, failures = eng.check(state.urn, state.inputs, bad)
        assert failures and failures[0][0] == "rollout" and "at least 1" in failures[0][1]
