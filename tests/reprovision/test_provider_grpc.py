"""The dynamic provider through the REAL gRPC server (``python -m pulumi.dynamic``), driven as the
engine drives it (see ``engine.py``), against a real sshd on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from pulumi.runtime.proto import provider_pb2

from flatcar_infra.provider import Reprovision, ReprovisionProvider
from flatcar_infra.reprovision.policy import Policy
from flatcar_infra.reprovision.propdiff import INPUT_KEYS
from flatcar_infra.ssh import normalize_host_key
from tests.reprovision.engine import UNKNOWN, ProviderEngine, plaintext_strings, secret_keys
from tests.reprovision.helpers import compiled
from tests.support.sshd import Sshd, free_port, run_sshd


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with run_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture(scope="module")
def engine() -> Iterator[ProviderEngine]:
    with ProviderEngine(ReprovisionProvider()) as eng:
        eng.configure({})
        yield eng


def inputs(sshd: Sshd, files: dict[str, str] | None = None, **kw: Any) -> dict[str, Any]:
    c = compiled(files or {"/etc/app.conf": "v1\n"})
    from flatcar_infra.manifest import build_manifest

    base: dict[str, Any] = {
        "host": "127.0.0.1", "port": sshd.port, "user": sshd.user,
        "private_key": Path(sshd.identity_file).read_text(), "host_key": None,
        "config": c.canonical.decode(), "config_hash": c.hash, "manifest": build_manifest(c.ignition),
        "policy": Policy(strategy="ignore").to_dict(), "delivery": "file", "config_url": None,
    }
    base.update(kw)
    return base


def test_type_token_is_stable() -> None:
    assert Reprovision._resource_type_name == "dynamic/flatcar-infra:Reprovision"


def test_check_names_the_bad_input(engine: ProviderEngine, sshd: Sshd) -> None:
    step = engine.register("bad", inputs(sshd, policy={"strategy": "in-place", "keep_pathz": []}))
    assert step.op == "check-failed"
    assert [p for p, _ in step.check_failures] == ["policy"] and "keep_pathz" in step.check_failures[0][1]
    step = engine.register("bad2", inputs(sshd, port=70000, delivery="smoke"))
    assert {p for p, _ in step.check_failures} == {"port", "delivery"}
    from flatcar_infra.compiler.api import compile_config
    plain = compile_config('{"ignition":{"version":"3.3.0"}}')
    step = engine.register("bad3", inputs(sshd, config=plain.canonical.decode(), config_hash=plain.hash,
                                          policy=Policy().to_dict()))
    assert step.check_failures[0][0] == "config" and "stamp" in step.check_failures[0][1]
    assert "Create" not in engine.calls


def test_create_refresh_update_diff_preview_delete(engine: ProviderEngine, sshd: Sshd) -> None:
    key_text = Path(sshd.identity_file).read_text()
    first = inputs(sshd)
    step = engine.register("m1", first, secret_inputs=("private_key",))
    assert step.op == "create"
    outs = step.state.outputs
    # trust on first use: the host key is captured and becomes an output
    assert outs["host_key"] == normalize_host_key(sshd.host_key)
    assert outs.get("applied_hash") is None and outs["boot_id"]  # nothing applied (strategy ignore)
    # every input (null ones are absent on the wire): they are the olds of the next diff
    assert {k for k in INPUT_KEYS if first.get(k) is not None} <= set(outs)
    raw = engine.last_raw
    assert raw is not None and {"private_key", "config"} <= secret_keys(raw)
    assert all(key_text.strip() not in s and "PRIVATE KEY" not in s for s in plaintext_strings(raw))
    assert not any("PRIVATE KEY" in line for line in engine.stderr_lines)

    # the same inputs again: no change
    same = engine.register("m1", first, state=step.state)
    assert same.op == "same" and same.diff is not None
    assert same.diff.changes == provider_pb2.DiffResponse.DIFF_NONE

    # preview of a config change with unknown values: Check + Diff only, never Create/Update
    n = len(engine.calls)
    pv = engine.register("m1", {**inputs(sshd, {"/etc/app.conf": "v2\n"}), "config": UNKNOWN,
                                "config_hash": UNKNOWN, "manifest": UNKNOWN}, state=step.state, preview=True)
    assert pv.op == "preview-update" and pv.diff is not None and not pv.diff.replaces
    assert engine.calls[n:] == ["Check", "Diff"]

    # the real update under "ignore": nothing applied, drift stays visible
    second = inputs(sshd, {"/etc/app.conf": "v2\n"})
    up = engine.register("m1", second, state=step.state)
    assert up.op == "update" and up.diff is not None and list(up.diff.replaces) == []
    assert up.state.outputs["config_hash"] == second["config_hash"]
    assert up.state.outputs.get("applied_hash") != up.state.outputs["config_hash"]
    assert up.state.outputs["last_action"] == "ignored"
    assert up.state.outputs["host_key"] == outs["host_key"]  # pinned from create on

    # refresh reads from the host
    fresh = engine.refresh(up.state)
    assert fresh.outputs["boot_id"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert fresh.outputs["host_key"] == outs["host_key"]
    assert engine.last_raw is not None and "private_key" in secret_keys(engine.last_raw)

    # delete does nothing on the host: it succeeds even when the host is gone
    gone = {**up.state.outputs, "port": free_port()}
    engine.delete(up.state.urn, up.state.id, engine.with_provider(gone))


def test_diff_is_offline_and_fast(engine: ProviderEngine, sshd: Sshd) -> None:
    """Diff against a host that does not exist: it must answer without dialing."""
    olds = {**inputs(sshd, port=free_port(), policy=Policy().to_dict()), "host_key": "ssh-ed25519 AAAA",
            "applied_hash": None}
    olds["applied_hash"] = olds["config_hash"]
    urn = engine.urn("offline")
    news = engine.with_provider(inputs(sshd, {"/etc/app.conf": "v9\n"}, port=olds["port"],
                                       policy=Policy().to_dict()))
    t0 = time.monotonic()
    d = engine.diff(urn, "id", engine.with_provider(olds), news)
    assert time.monotonic() - t0 < 5
    assert d.changes == provider_pb2.DiffResponse.DIFF_SOME and list(d.replaces) == []
    # connection-only: still an update (reconnect), no replace
    d2 = engine.diff(urn, "id", engine.with_provider(olds),
                     engine.with_provider({**{k: olds.get(k) for k in INPUT_KEYS}, "port": olds["port"] + 1}))
    assert d2.changes == provider_pb2.DiffResponse.DIFF_SOME and list(d2.replaces) == []
    # replace strategy: the machine is replaced, so is this resource
    rep = Policy(strategy="replace").to_dict()
    d3 = engine.diff(urn, "id", engine.with_provider({**olds, "policy": rep}),
                     engine.with_provider({**news, "policy": rep}))
    assert list(d3.replaces) == ["config_hash"]


def test_in_place_on_a_non_flatcar_host_is_refused_with_host_state(engine: ProviderEngine,
                                                                  sshd: Sshd) -> None:
    key_text = Path(sshd.identity_file).read_text()
    with pytest.raises(grpc.RpcError) as exc:
        engine.register("m2", inputs(sshd, policy=Policy().to_dict()))
    msg = exc.value.details() or ""  # type: ignore[attr-defined]
    assert "not Flatcar" in msg and "host state: the host was not changed" in msg
    assert key_text.strip() not in msg and "PRIVATE KEY" not in msg


def test_key_rotation_logs_in_with_the_old_key_until_the_new_one_is_authorized(
        engine: ProviderEngine, sshd: Sshd, tmp_path: Path) -> None:
    """``private_key`` is the key from now on; while the host accepts only the old one, preflight
    logs in with the old state's key (here it then refuses a non-Flatcar host: the refusal proves
    the login worked), and the lock-out check is about the NEW key."""
    from tests.support.sshd import keygen

    keygen(tmp_path / "new")
    new_key = (tmp_path / "new").read_text()
    old = inputs(sshd, policy=Policy().to_dict())
    olds = {**old, "host_key": normalize_host_key(sshd.host_key), "applied_hash": "sha512-" + "0" * 128}
    news = {**inputs(sshd, {"/etc/app.conf": "v2\n"}, policy=Policy().to_dict()), "private_key": new_key,
            "host_key": normalize_host_key(sshd.host_key)}
    with pytest.raises(grpc.RpcError) as exc:
        engine.update(engine.urn("rot"), "id", engine.with_provider(olds), engine.with_provider(news))
    msg = exc.value.details() or ""  # type: ignore[attr-defined]
    assert "not Flatcar" in msg and "refused our key" not in msg
    # without the old key to fall back on, the new one is refused: final, at once
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as exc:
        engine.update(engine.urn("rot"), "id", engine.with_provider({**olds, "private_key": new_key}),
                      engine.with_provider(news))
    assert "refused our key" in (exc.value.details() or "") and time.monotonic() - t0 < 30  # type: ignore[attr-defined]
