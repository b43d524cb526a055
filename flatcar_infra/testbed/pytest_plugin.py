"""pytest fixtures for booting test-bed VMs (loaded by tests/conftest.py).

- ``vm_image`` (session): the cached stand-in image, built on first use (needs root). When it
  cannot be built the VM tests FAIL with the reason; they are skipped only when
  ``FLATCAR_INFRA_SKIP_VM=1`` is set explicitly (developers without root).
- ``local_bucket`` (session): a moto S3 server on 127.0.0.1 with one bucket (``LocalBucket``).
- ``vm_client_key`` (session): an ed25519 key for ``core``; put ``.public_line`` in your configs
  (``with_core_key`` does it).
- ``vm_factory`` (function) / ``vm_factory_module`` (module): ``factory.boot(name, config=...)``
  uploads the config, boots a VM with the pointer user-data and waits for SSH;
  ``factory.restore(snapshot, name)`` resumes a saved VM instead (seconds, not a boot). Every VM is
  torn down at the end of the scope, even on failure; a failing test's report carries the tail of
  each live VM's serial log (the full logs stay in the test's tmp dir).
- ``vm_snapshot`` (session): one VM booted once per session from ``BASE_CONFIG`` (through the
  bucket, with the session's client key), saved; ``booted_vm`` (function) and ``booted_vm_module``
  (module) hand out a fresh VM restored from it: a booted, provisioned host in a known state,
  without a boot. Use them whenever a scenario does not test the first boot itself.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from flatcar_infra.errors import UserError
from flatcar_infra.testbed.bucket import LocalBucket
from flatcar_infra.testbed.image import build_image
from flatcar_infra.testbed.machines import VmFactory
from flatcar_infra.testbed.vm import ClientKey, Vm, VmSnapshot, generate_client_key

_LIVE_FACTORIES: list[VmFactory] = []

#: What ``vm_snapshot``'s VM was provisioned with (plus ``core``'s key): a marker file and an
#: enabled unit, so that a test can tell the provisioned state from a later one.
BASE_CONFIG = {
    "ignition": {"version": "3.3.0"},
    "storage": {"files": [{"path": "/etc/flatcar-infra-testbed/base", "mode": 0o644, "overwrite": True,
                           "contents": {"source": "data:,base%0A"}}]},
    "systemd": {"units": [{"name": "testbed-base.service", "enabled": True,
                           "contents": "[Unit]\nDescription=test bed base marker\n[Service]\nType=oneshot\n"
                                       "RemainAfterExit=yes\nExecStart=/bin/true\n"
                                       "[Install]\nWantedBy=multi-user.target\n"}]},
}


def _skip_vm() -> bool:
    return os.environ.get("FLATCAR_INFRA_SKIP_VM") == "1"


@pytest.fixture(scope="session")
def vm_image(request: pytest.FixtureRequest) -> Path:
    if _skip_vm():
        pytest.skip("FLATCAR_INFRA_SKIP_VM=1: VM tests skipped on request")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")

    def progress(phase: str, message: str) -> None:
        if reporter is not None:
            reporter.write_line(f"[{phase}] {message}")

    try:
        return build_image(progress)
    except UserError as exc:
        pytest.fail(f"the VM test bed image is not available: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def local_bucket() -> Iterator[LocalBucket]:
    bucket = LocalBucket().start()
    try:
        yield bucket
    finally:
        bucket.stop()


@pytest.fixture(scope="session")
def vm_client_key(tmp_path_factory: pytest.TempPathFactory) -> ClientKey:
    return generate_client_key(tmp_path_factory.mktemp("vm-keys"))


def _factory(image: Path, bucket: LocalBucket, key: ClientKey, workdir: Path) -> Iterator[VmFactory]:
    factory = VmFactory(image=image, bucket=bucket, client_key=key, workdir=workdir)
    _LIVE_FACTORIES.append(factory)
    try:
        yield factory
    finally:
        _LIVE_FACTORIES.remove(factory)
        factory.close()


@pytest.fixture
def vm_factory(vm_image: Path, local_bucket: LocalBucket, vm_client_key: ClientKey,
               tmp_path: Path) -> Iterator[VmFactory]:
    yield from _factory(vm_image, local_bucket, vm_client_key, tmp_path / "vms")


@pytest.fixture(scope="module")
def vm_factory_module(vm_image: Path, local_bucket: LocalBucket, vm_client_key: ClientKey,
                      tmp_path_factory: pytest.TempPathFactory,
                      request: pytest.FixtureRequest) -> Iterator[VmFactory]:
    name = request.module.__name__.rsplit(".", 1)[-1]
    yield from _factory(vm_image, local_bucket, vm_client_key, tmp_path_factory.mktemp(f"vms-{name}"))


@pytest.fixture(scope="session")
def vm_snapshot(vm_image: Path, local_bucket: LocalBucket, vm_client_key: ClientKey,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[VmSnapshot]:
    """A VM booted once from ``BASE_CONFIG`` and saved (its source VM is stopped)."""
    for factory in _factory(vm_image, local_bucket, vm_client_key, tmp_path_factory.mktemp("vm-snapshot")):
        vm = factory.boot("snapshot-base", config=BASE_CONFIG)
        yield factory.snapshot(vm, resume=False)


def vm_name(node_name: str) -> str:
    """A short, unique VM name (files, bucket object) for a test."""
    slug = re.sub(r"[^a-z0-9]+", "-", node_name.lower()).strip("-")[:28]
    return f"{slug}-{hashlib.sha256(node_name.encode()).hexdigest()[:6]}"


@pytest.fixture
def booted_vm(vm_factory: VmFactory, vm_snapshot: VmSnapshot, request: pytest.FixtureRequest) -> Vm:
    """A fresh VM in the ``vm_snapshot`` state, for this test only."""
    return vm_factory.restore(vm_snapshot, vm_name(request.node.name))


@pytest.fixture(scope="module")
def booted_vm_module(vm_factory_module: VmFactory, vm_snapshot: VmSnapshot,
                     request: pytest.FixtureRequest) -> Vm:
    """A fresh VM in the ``vm_snapshot`` state, shared by the tests of a module."""
    return vm_factory_module.restore(vm_snapshot, vm_name(request.module.__name__))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and _LIVE_FACTORIES:
        for factory in _LIVE_FACTORIES:
            for vm in factory.vms:
                report.sections.append(
                    (f"serial console of {vm.spec.name} (last 60 lines; full: {vm.serial_log})",
                     vm.serial_tail(60)))
