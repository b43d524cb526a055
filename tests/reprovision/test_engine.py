"""The test engine (engine.py ``deploy``) schedules like the Pulumi engine, over the REAL provider
server: parallel steps limited by the provider's 4 workers, ``depends_on`` honoured, no new step
after a failure, ``--continue-on-error`` skipping only dependents, failed updates keeping the old
state, preview calling Check and Diff only."""

from __future__ import annotations

import os
from pathlib import Path

import pulumi

from tests.reprovision.engine import Stack, deploy
from tests.support.probe_provider import Probe, intervals, peak

ROOT = str(Path(__file__).resolve().parents[2])
ENV = {"PYTHONPATH": os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH", "")) if p)}


def test_twelve_resources_run_four_at_a_time_in_the_provider(tmp_path: Path) -> None:
    """The engine starts all 12 updates at once; the provider process serves 4 at a time: the
    issue's starting point (12 machines, 4 at a time, whatever the rollout wanted)."""
    log = str(tmp_path / "log")
    stack = Stack()

    def program(version: str) -> None:
        for i in range(12):
            Probe(f"p{i}", version=version, log=log, seconds=0.4)

    assert deploy(lambda: program("v1"), stack, env=ENV).ok
    os.unlink(log)
    dep = deploy(lambda: program("v2"), stack, env=ENV)
    assert dep.ok and {s.op for s in dep.steps} == {"update"}
    spans = [s for v in intervals(log).values() for s in v]
    assert len(spans) == 12 and peak(spans) == 4
    assert dep.peak_parallel() == 12  # the engine itself had them all in flight


def test_depends_on_orders_steps_and_a_failure_stops_new_ones(tmp_path: Path) -> None:
    log = str(tmp_path / "log")
    stack = Stack()

    def program(fail_a: bool, version: str) -> None:
        a = Probe("a", version=version, log=log, seconds=0.1, fail=fail_a)
        slow = Probe("slow", version=version, log=log, seconds=1.0)
        Probe("after-slow", version=version, log=log, opts=pulumi.ResourceOptions(depends_on=[slow]))
        Probe("after-a", version=version, log=log, opts=pulumi.ResourceOptions(depends_on=[a]))

    first = deploy(lambda: program(False, "v1"), stack, env=ENV)
    assert first.ok
    spans = intervals(log)
    assert spans["after-slow"][0][0] >= spans["slow"][0][1]  # started only after its dependency ended
    before = {n: stack.by_name(n).outputs["done"] for n in ("a", "slow", "after-slow", "after-a")}
    dep = deploy(lambda: program(True, "v2"), stack, env=ENV)
    ops = {s.name: s.op for s in dep.steps}
    assert ops["a"] == "failed" and "failed on purpose" in (dep.step("a").error or "")
    assert ops["slow"] == "update"  # already running: it finishes
    # never stepped: either refused by the engine, or never registered because the program
    # stopped at the failure (the SDK raises the first failed registration)
    assert ops.get("after-slow", "not-started") == "not-started"
    assert ops.get("after-a", "not-started") == "not-started"
    assert dep.error is not None
    # a failed update keeps the old state; the resources never started keep theirs
    assert stack.by_name("a").outputs["done"] == before["a"] == "v1"
    assert stack.by_name("after-slow").outputs["done"] == "v1"
    assert stack.by_name("slow").outputs["done"] == "v2"


def test_continue_on_error_skips_only_dependents(tmp_path: Path) -> None:
    log = str(tmp_path / "log")
    stack = Stack()

    def program(version: str) -> None:
        a = Probe("a", version=version, log=log, fail=version == "v2")
        slow = Probe("slow", version=version, log=log, seconds=0.5)
        Probe("after-slow", version=version, log=log, opts=pulumi.ResourceOptions(depends_on=[slow]))
        b = Probe("after-a", version=version, log=log, opts=pulumi.ResourceOptions(depends_on=[a]))
        Probe("after-after-a", version=version, log=log, opts=pulumi.ResourceOptions(depends_on=[b]))

    assert deploy(lambda: program("v1"), stack, env=ENV).ok
    dep = deploy(lambda: program("v2"), stack, env=ENV, continue_on_error=True)
    ops = {s.name: s.op for s in dep.steps}
    assert ops == {"a": "failed", "slow": "update", "after-slow": "update", "after-a": "skipped",
                   "after-after-a": "skipped"}


def test_preview_runs_check_and_diff_only(tmp_path: Path) -> None:
    log = str(tmp_path / "log")
    stack = Stack()

    def program(version: str) -> None:
        Probe("a", version=version, log=log)

    pv = deploy(lambda: program("v1"), stack, env=ENV, preview=True)
    assert [s.op for s in pv.steps] == ["preview-create"] and not stack.resources
    assert not Path(log).exists()
    assert deploy(lambda: program("v1"), stack, env=ENV).ok
    pv2 = deploy(lambda: program("v2"), stack, env=ENV, preview=True)
    assert [s.op for s in pv2.steps] == ["preview-update"]
    assert stack.by_name("a").outputs["done"] == "v1"
    assert len(intervals(log)["a"]) == 1


def test_parallel_one_runs_one_step_at_a_time(tmp_path: Path) -> None:
    log = str(tmp_path / "log")

    def program() -> None:
        for i in range(3):
            Probe(f"p{i}", version="v1", log=log, seconds=0.2)

    dep = deploy(program, Stack(), env=ENV, parallel=1)
    assert dep.ok and dep.peak_parallel() == 1
    assert peak([s for v in intervals(log).values() for s in v]) == 1


def test_configure_receives_the_whole_stack_config(tmp_path: Path) -> None:
    """Configure comes first, with every key of the stack config (this project's and others')."""
    import json

    log = str(tmp_path / "log")
    seen = tmp_path / "config.json"
    stack = Stack(config={"flatcar-infra:target": "local", "other:key": "v"})
    dep = deploy(lambda: Probe("a", version="v1", log=log) and None, stack,
                 env={**ENV, "PROBE_CONFIG_LOG": str(seen)})
    assert dep.ok
    got = json.loads(seen.read_text())
    assert got["other:key"] == "v"
    assert got["all"] == {"flatcar-infra:target": "local", "other:key": "v"}
