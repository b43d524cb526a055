"""The Fleet component under mocks: what it registers and how it is wired."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from flatcar_infra.components import (
    AwsMachineArgs,
    ExistingMachine,
    ExistingMachineArgs,
    Fleet,
    FleetArgs,
    Hooks,
    Policy,
    RolloutPolicy,
    SshAccess,
    flatcar_config,
)
from tests.components.mockgraph import REPROVISION_TYPE, Graph, ignition_text, run_program

ROLLOUT = "pulumi-python:dynamic/flatcar-infra:Rollout"
VERDICT = "pulumi-python:dynamic/flatcar-infra:RolloutVerdict"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMHJCfmW5q9q8ZMnG1yBsX1kiYbDyx6eJ3o4aLxXW6h2"


def existing(ssh_key: dict[str, str], i: int, **kw: Any) -> ExistingMachineArgs:
    return ExistingMachineArgs(
        config=flatcar_config(text=ignition_text(f"m{i}"), filename=f"m{i}.ign"),
        ssh=SshAccess(private_key=ssh_key["private"]),
        host=f"192.0.2.{i}",
        host_key=KEY,
        **kw,
    )


def fleet_program(
    ssh_key: dict[str, str],
    n: int = 5,
    rollout: RolloutPolicy | None = None,
    opts: pulumi.ResourceOptions | None = None,
    **kw: Any,
) -> Graph:
    def program() -> None:
        Fleet(
            "web",
            FleetArgs(
                machines={f"web-{i}": existing(ssh_key, i, **kw) for i in range(1, n + 1)},
                rollout=rollout or RolloutPolicy(max_unavailable=2, canary=1),
            ),
            opts,
        )

    return run_program(program)


def test_one_rollout_replaces_every_machines_own_reprovision(ssh_key: dict[str, str]) -> None:
    g = fleet_program(ssh_key)
    assert not g.by_type(REPROVISION_TYPE)
    assert len(g.by_type("flatcar-infra:existing:Machine")) == 5
    fleet = g.one("flatcar-infra:fleet:Fleet")
    rollout, verdict = g.one(ROLLOUT), g.one(VERDICT)
    assert g.parent_of(rollout) == fleet and g.parent_of(verdict) == fleet
    assert all(g.parent_of(m) == fleet for m in g.by_type("flatcar-infra:existing:Machine"))
    assert g.depends_on(verdict, rollout)


def test_the_inputs_name_each_machine_under_its_wave(ssh_key: dict[str, str]) -> None:
    """So ``pulumi preview --diff`` shows ``waves.wave-02.web-3.config_hash`` for a change."""
    rollout = fleet_program(ssh_key).one(ROLLOUT)
    waves = rollout.plain("waves")
    assert {w: sorted(m) for w, m in waves.items()} == {
        "wave-01": ["web-1"],
        "wave-02": ["web-2", "web-3"],
        "wave-03": ["web-4", "web-5"],
    }
    assert rollout.plain("order") == ["web-1", "web-2", "web-3", "web-4", "web-5"]
    m = waves["wave-02"]["web-3"]
    assert m["host"] == "192.0.2.3" and m["host_key"] == KEY and m["config_hash"].startswith("sha512-")
    assert m["delivery"] == "file" and m["policy"]["strategy"] == "in-place"
    assert "config" not in m and "private_key" not in m  # secrets live in their own secret maps
    assert rollout.is_secret("configs") and rollout.is_secret("private_keys")
    assert set(rollout.plain("configs")) == {f"web-{i}" for i in range(1, 6)}
    assert set(rollout.additional_secret_outputs) == {"configs", "private_keys"}
    assert rollout.plain("rollout") == RolloutPolicy(max_unavailable=2, canary=1).to_dict()


def test_hooks_run_inside_the_rollout_not_as_commands(ssh_key: dict[str, str]) -> None:
    g = fleet_program(ssh_key, n=2, rollout=RolloutPolicy(), hooks=Hooks(before="drain", after="undrain"))
    assert not g.by_type("command:local:Command")
    hooks = [m["hooks"] for w in g.one(ROLLOUT).plain("waves").values() for m in w.values()]
    assert hooks == [{"before": "drain", "after": "undrain"}] * 2


def test_depends_on_given_to_the_fleet_reaches_the_rollout(ssh_key: dict[str, str]) -> None:
    def program() -> None:
        db = ExistingMachine("db", existing(ssh_key, 9))
        Fleet(
            "web",
            FleetArgs(machines={"web-1": existing(ssh_key, 1)}),
            pulumi.ResourceOptions(depends_on=[db]),
        )

    g = run_program(program)
    assert g.depends_on(g.one(ROLLOUT), g.one(REPROVISION_TYPE, "db-reprovision"))


def test_machine_depends_on_reaches_its_reprovision(ssh_key: dict[str, str]) -> None:
    """Chaining machines by hand works: the second's reprovision waits for the first machine."""

    def program() -> None:
        first = ExistingMachine("first", existing(ssh_key, 1))
        ExistingMachine("second", existing(ssh_key, 2), pulumi.ResourceOptions(depends_on=[first]))

    g = run_program(program)
    second = g.one(REPROVISION_TYPE, "second-reprovision")
    # depending on a component means depending on its children (the SDK expands it)
    assert g.depends_on(second, g.one(REPROVISION_TYPE, "first-reprovision"))


def test_cloud_machines_hosting_objects_come_before_the_rollout(ssh_key: dict[str, str]) -> None:
    def program() -> None:
        args = {
            f"web-{i}": AwsMachineArgs(
                config=flatcar_config(text=ignition_text(f"a{i}"), filename="a.ign"),
                ssh=SshAccess(private_key=ssh_key["private"]),
                ssh_cidrs=["198.51.100.0/24"],
            )
            for i in (1, 2)
        }
        Fleet("web", FleetArgs(machines=args))

    g = run_program(program)
    rollout = g.one(ROLLOUT)
    for obj in g.by_type("aws:s3/bucketObjectv2:BucketObjectv2"):
        assert g.depends_on(rollout, obj)
    for inst in g.by_type("aws:ec2/instance:Instance"):
        assert g.depends_on(rollout, inst)
    m = rollout.plain("waves")["wave-01"]["web-1"]
    assert m["delivery"] == "pointer" and m["host_key"].startswith("ssh-ed25519 ")  # generated at deploy
    assert m["machine_identity"].startswith("i-")  # a replaced instance drops the pinned key
    # the pointer object, checked (and restored on rollback) from the operator's side
    assert m["config_url"].startswith("s3://") and m["config_url"].endswith("/web-1/config.ign")
    assert m["config_source"]["key"] == "flatcar-infra/flatcar-infra/test/web-1/config.ign"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ({"machines": {}}, "at least one machine"),
        ({"machines": {"a": "not args"}}, "expected a machine's args"),
    ],
)
def test_bad_fleet_args_are_named(args: dict[str, Any], needle: str) -> None:
    with pytest.raises(pulumi.RunError, match=needle):
        FleetArgs(**args)


def test_replace_strategy_machines_do_not_belong_in_a_rollout(ssh_key: dict[str, str]) -> None:
    with pytest.raises(pulumi.RunError, match="strategy 'replace'"):
        FleetArgs(machines={"a": existing(ssh_key, 1, policy=Policy(strategy="replace"))})


def test_a_wave_naming_an_unknown_machine_fails_the_program(ssh_key: dict[str, str]) -> None:
    with pytest.raises(Exception, match="no machine named 'web-9'"):
        fleet_program(ssh_key, n=2, rollout=RolloutPolicy(waves=(("web-9",),)))
