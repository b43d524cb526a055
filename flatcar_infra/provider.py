"""The ``Reprovision`` Pulumi dynamic resource: a machine's config, applied in place over SSH.

Stable import path: stacks store a reference to ``flatcar_infra.provider.ReprovisionProvider``
(dill pickles importable classes by reference), so this module and class must never move.

Lifecycle:
- ``create``: wait for the first boot, capture the host key when none was given (trust on first
  use; its SHA256 fingerprint is logged; it is an output and pinned from then on), verify the
  applied stamp equals the desired hash (and save the config on the host as its rollback target),
  else reprovision.
- ``diff``: pure and offline (``plan.diff_props``): a config change is an update, never a replace
  (except under the ``replace`` strategy); a connection-only change updates without a reboot.
- ``update``: the procedure (``reprovision.procedure.ensure``); returns every output, since the
  outputs are the ``olds`` of the next diff. A failed update (refused, or rolled back: the host
  runs the previous config again) raises, so the engine keeps the old state, whose
  ``applied_hash`` is what the host runs, and the next ``pulumi up`` retries the new config.
  Key rotation: ``private_key`` is the key from now on; while the new config is not applied yet,
  preflight and staging may log in with the old state's key.
- Deadline: ``customTimeouts`` never reach a dynamic provider, so every operation is bounded by
  ``policy.deadline`` (seconds, rollback included).
- ``read`` (``pulumi refresh``): reads the applied hash from the host, so drift shows.
- ``delete``: does nothing on the host. The machine resource owns the machine's lifecycle;
  forgetting this resource only stops reprovisioning it.

Secrets: the private key and the config are returned as secrets (and listed in
``additional_secret_outputs``); they never reach a log line. No client lives on ``self``.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
import pulumi.dynamic as dyn
from pulumi.output import Unknown
from pulumi.runtime import rpc

from flatcar_infra.errors import UserError
from flatcar_infra.reprovision.desired import DELIVERIES, Desired
from flatcar_infra.reprovision.policy import Policy, PolicyError
from flatcar_infra.reprovision.propdiff import INPUT_KEYS, diff_props
from flatcar_infra.reprovision.source import ConfigSource
from flatcar_infra.ssh import SshTarget, fingerprint

SECRET_OUTPUTS = ("private_key", "config")
RESULT_KEYS = ("applied_hash", "boot_id", "machine_id", "system_state", "rebooted", "phases",
               "warnings", "last_action")


def is_unknown(value: Any) -> bool:
    """Preview sends values that are not known yet (an object or the engine's sentinel)."""
    if isinstance(value, Unknown) or value == rpc.UNKNOWN:
        return True
    if isinstance(value, dict):
        return any(is_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(is_unknown(v) for v in value)
    return False


def _plain(value: Any) -> Any:
    """Inputs may arrive wrapped as RPC secrets; the provider works on plain values."""
    return rpc.unwrap_rpc_secret(value) if rpc.is_rpc_secret(value) else value


def _log(message: str) -> None:
    try:
        pulumi.log.info(message)
    except Exception:  # no engine and no stderr: progress is best effort
        print(message, file=sys.stderr)


def target_of(props: Mapping[str, Any], host_key: str | None = None) -> SshTarget:
    return SshTarget(
        host=str(props["host"]),
        port=int(props.get("port") or 22),
        user=str(props.get("user") or "core"),
        private_key=_plain(props.get("private_key")),
        host_key=host_key if host_key is not None else (props.get("host_key") or None),
    )


def desired_of(props: Mapping[str, Any]) -> Desired:
    return Desired.from_config(
        _plain(props["config"]), str(props["config_hash"]), Policy.from_dict(_plain(props.get("policy"))),
        str(props.get("delivery") or "file"), props.get("config_url") or None)


def check_inputs(news: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(property, reason)`` for each invalid input; unknown values (preview) are not judged."""
    failures: list[tuple[str, str]] = []

    def known(key: str) -> bool:
        return key in news and not is_unknown(news[key])

    if known("host") and not str(news.get("host") or "").strip():
        failures.append(("host", "must not be empty"))
    if known("port"):
        port = news["port"]
        if isinstance(port, bool) or not isinstance(port, int | float) or not 0 < int(port) < 65536:
            failures.append(("port", f"not a TCP port: {port!r}"))
    if known("private_key") and not _plain(news.get("private_key")):
        failures.append(("private_key", "required (the SSH private key text, as a secret)"))
    if known("delivery") and news.get("delivery", "file") not in DELIVERIES:
        failures.append(("delivery", f"unknown {news.get('delivery')!r}; use one of {', '.join(DELIVERIES)}"))
    if known("host_key") and news.get("host_key"):
        from flatcar_infra.ssh import normalize_host_key
        try:
            normalize_host_key(str(news["host_key"]))
        except UserError as exc:
            failures.append(("host_key", exc.message))
    if known("policy"):
        try:
            Policy.from_dict(_plain(news.get("policy")))
        except PolicyError as exc:
            failures.append(("policy", exc.message))
    if known("platform_keys"):
        keys = news.get("platform_keys") or []
        if not isinstance(keys, list) or not all(isinstance(k, str) and len(k.split()) >= 2 for k in keys):
            failures.append(("platform_keys", "expected a list of OpenSSH public key lines"))
    if known("config_source") and news.get("config_source"):
        try:
            ConfigSource.from_spec(news["config_source"])
        except UserError as exc:
            failures.append(("config_source", exc.message))
    if known("manifest") and not isinstance(news.get("manifest") or {}, dict):
        failures.append(("manifest", "expected a map of entry → digest"))
    if all(known(k) for k in ("config", "config_hash", "policy", "delivery")) and not failures:
        try:
            desired_of(news)
        except ValueError as exc:
            prop, _, reason = str(exc).partition(": ")
            failures.append((prop if prop in INPUT_KEYS else "config", reason or str(exc)))
        except PolicyError as exc:
            failures.append(("policy", exc.message))
    return failures


class ReprovisionProvider(dyn.ResourceProvider):
    """See the module docstring. Plain data only on ``self`` (it is pickled into the state)."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> dyn.CheckResult:
        failures = [dyn.CheckFailure(p, r) for p, r in check_inputs(news)]
        return dyn.CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        d = diff_props({k: _plain(v) for k, v in olds.items()},
                       {k: _plain(v) for k, v in news.items()}, is_unknown)
        return dyn.DiffResult(changes=d.has_changes, replaces=list(d.replaces),
                              stables=[], delete_before_replace=bool(d.replaces))

    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        outs = _apply(props, None, "create")
        return dyn.CreateResult(f"reprovision-{uuid.uuid4().hex[:12]}", outs)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.UpdateResult:
        return dyn.UpdateResult(_apply(news, olds, "update"))

    def read(self, id_: str, props: dict[str, Any]) -> dyn.ReadResult:
        from flatcar_infra.reprovision.procedure import read_applied
        from flatcar_infra.ssh import run_sync

        host_key = props.get("host_key") or None
        state = run_sync(lambda: read_applied(target_of(props, host_key)))
        outs = _outputs(props, host_key, {**{k: props.get(k) for k in RESULT_KEYS}, **state})
        return dyn.ReadResult(id_, outs)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """No host action: the machine resource owns the machine's lifecycle."""


def _apply(news: Mapping[str, Any], olds: Mapping[str, Any] | None, op: str) -> dict[str, Any]:
    from flatcar_infra.ssh import run_sync

    plain = {k: _plain(v) for k, v in news.items()}
    host = f"{plain['host']}:{int(plain.get('port') or 22)}"
    t0 = time.monotonic()

    def report(phase: str, message: str, elapsed: float | None = None) -> None:
        stamp = f" {elapsed:.1f}s" if elapsed is not None else ""
        _log(f"[{host} {phase}{stamp}] {message}")

    host_key, result = run_sync(lambda: converge(plain, olds, op, report))
    report("done", result["last_action"], time.monotonic() - t0)
    return _outputs(plain, host_key, result)


async def converge(news: Mapping[str, Any], olds: Mapping[str, Any] | None, op: str,
                   report: Any) -> tuple[str | None, dict[str, Any]]:
    """One machine brought to its desired state: ``(host key, RESULT_KEYS values)``.

    ``olds``: the previous outputs (``None`` for a new machine). Shared by the ``Reprovision``
    resource and the fleet rollout (which runs many of these in one event loop). Bounded by
    ``policy.deadline`` (plus a minute for the rollback's own bounded steps): Pulumi's
    ``customTimeouts`` never reach a dynamic provider, so the provider enforces its own."""
    import asyncio

    from flatcar_infra.reprovision import messages

    plain_news = {k: _plain(v) for k, v in news.items()}
    plain_olds = {k: _plain(v) for k, v in olds.items()} if olds is not None else None
    policy = desired_of(plain_news).policy
    try:
        return await asyncio.wait_for(_converge(plain_news, plain_olds, op, report), policy.deadline + 60)
    except TimeoutError:
        raise messages.deadline(str(plain_news["host"]), policy.deadline, "the run", messages.UNKNOWN,
                                None) from None


async def _converge(news: dict[str, Any], olds: dict[str, Any] | None, op: str,
                    report: Any) -> tuple[str | None, dict[str, Any]]:
    from flatcar_infra.reprovision.procedure import Outcome, connect_only, ensure, read_applied
    from flatcar_infra.ssh import dial

    desired = desired_of(news)
    d = diff_props(olds, news) if olds is not None else None
    new_machine = op == "create" or (d is not None and d.action == "new-machine")
    # A pin belongs to one machine: a replaced machine (new identity) never inherits the old key.
    host_key = news.get("host_key") or (None if new_machine else (olds or {}).get("host_key")) or None
    policy = desired.policy
    if not host_key:
        report("connect", "no host key given: waiting for SSH and capturing it (trust on first use)")
        s = await dial(target_of(news, None), timeout=policy.reboot_timeout, tofu=True, first_delay=1.0,
                       max_delay=10.0,
                       on_attempt=lambda _n, el, exc: report("connect", f"waiting for SSH: {exc.message}",
                                                             el))
        host_key = s.target.host_key or ""
        await s.close()
        report("connect", f"host key captured on first use: {fingerprint(host_key)}; pinned from now on")
    target = target_of(news, host_key)
    result: dict[str, Any]
    if policy.strategy in ("ignore", "replace"):
        state = await read_applied(target, wait=policy.reboot_timeout if op == "create" else 0)
        action = "ignored" if policy.strategy == "ignore" else "verified-replacement"
        result = {**state, "rebooted": False, "phases": {}, "warnings": [], "last_action": action}
        if policy.strategy == "ignore" and state.get("applied_hash") != desired.config_hash:
            report("ignore", "strategy 'ignore': the new config is NOT applied; the host keeps "
                   f"{state.get('applied_hash') or 'its config'} (drift stays visible)")
    elif d is not None and d.action in ("connect", "record"):
        outcome: Outcome = await connect_only(target, desired, report)
        result = outcome.to_outputs("reconnected")
    else:
        old_key = (olds or {}).get("private_key") if not new_machine else None
        outcome = await ensure(
            target, desired, report=report, first_boot_wait=policy.reboot_timeout if new_machine else 0,
            fallback_keys=[old_key] if old_key and old_key != news.get("private_key") else [],
            **procedure_context(news, olds, desired, new_machine))
        host_key = outcome.host_key or host_key
        result = outcome.to_outputs("reprovisioned" if outcome.rebooted else "verified")
    return host_key, result


def procedure_context(news: Mapping[str, Any], olds: Mapping[str, Any] | None, desired: Desired,
                      new_machine: bool) -> dict[str, Any]:
    """What the procedure (run and read-only preflight alike) knows beyond the config: the
    previous config (the rollback target), the keys the cloud installs, the config's source.
    ``desired``: ``desired_of(news)``, which the caller has already built."""
    previous = (olds or {}).get("config") if not new_machine else None
    return {
        "previous": previous.encode() if isinstance(previous, str) else None,
        "platform_keys": [str(k) for k in news.get("platform_keys") or ()],
        "source": ConfigSource.for_url(desired.config_url, news.get("config_source") or None)
        if desired.delivery != "file" else None,
    }


def _outputs(news: Mapping[str, Any], host_key: str | None, result: Mapping[str, Any]) -> dict[str, Any]:
    """Every input (the next diff's ``olds``) plus the results; secrets wrapped as secrets."""
    outs: dict[str, Any] = {k: _plain(news.get(k)) for k in INPUT_KEYS}
    outs["policy"] = Policy.from_dict(outs.get("policy")).to_dict()
    outs["port"] = int(outs.get("port") or 22)
    outs["user"] = outs.get("user") or "core"
    outs["delivery"] = outs.get("delivery") or "file"
    outs["manifest"] = dict(outs.get("manifest") or {})
    outs["platform_keys"] = [str(k) for k in outs.get("platform_keys") or ()]
    outs["host_key"] = host_key
    for k in RESULT_KEYS:
        outs[k] = result.get(k)
    for k in SECRET_OUTPUTS:
        if outs.get(k) is not None:
            outs[k] = rpc.wrap_rpc_secret(outs[k])
    return outs


class Reprovision(dyn.Resource, module="flatcar-infra", name="Reprovision"):
    """A machine's config applied in place. Outputs: every input plus ``host_key`` (captured on
    first use when not given), ``applied_hash`` (the stamp the host proved), ``boot_id``,
    ``machine_id``, ``system_state``, ``rebooted``, ``phases`` (seconds per phase), ``warnings``.

    ``machine_identity``: the cloud's id of the machine (instance/droplet id); when it changes the
    machine was replaced, so the old host key pin is dropped and the new machine's first boot is
    awaited. ``platform_keys``: SSH public keys the platform installs on every boot (cloud
    metadata), which count as authorized when checking that a config cannot lock the operator out.
    ``config_source``: where the operator side reads and restores the hosted config
    (``{"bucket", "key", "endpoint"?, "region"?, "public"?}``, S3 API with the operator's
    credentials); derived from ``config_url`` for ``s3://`` and DigitalOcean Spaces URLs. It lets
    a pointer/URL reprovision check the object and restore the previous config when the new one
    fails in the initramfs.

    ``delete`` does nothing on the host: the machine resource owns the machine.
    """

    host: pulumi.Output[str]
    port: pulumi.Output[int]
    user: pulumi.Output[str]
    host_key: pulumi.Output[str]
    config_hash: pulumi.Output[str]
    manifest: pulumi.Output[dict[str, str]]
    policy: pulumi.Output[dict[str, Any]]
    delivery: pulumi.Output[str]
    applied_hash: pulumi.Output[str]
    boot_id: pulumi.Output[str]
    machine_id: pulumi.Output[str]
    system_state: pulumi.Output[str]
    rebooted: pulumi.Output[bool]
    phases: pulumi.Output[dict[str, float]]

    def __init__(
        self,
        resource_name: str,
        *,
        host: pulumi.Input[str],
        port: pulumi.Input[int] = 22,
        user: pulumi.Input[str] = "core",
        private_key: pulumi.Input[str],
        host_key: pulumi.Input[str] | None = None,
        config: pulumi.Input[str],
        config_hash: pulumi.Input[str],
        manifest: pulumi.Input[dict[str, str]] | None = None,
        policy: Policy | pulumi.Input[dict[str, Any]] | None = None,
        delivery: pulumi.Input[str] = "file",
        config_url: pulumi.Input[str] | None = None,
        machine_identity: pulumi.Input[str] | None = None,
        platform_keys: pulumi.Input[Sequence[pulumi.Input[str]]] | None = None,
        config_source: pulumi.Input[Mapping[str, Any]] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        if isinstance(policy, Policy):
            policy = policy.to_dict()
        elif policy is None:
            policy = Policy().to_dict()
        elif isinstance(policy, Mapping):
            policy = Policy.from_dict(policy).to_dict()  # fail early, naming the bad key
        props: dict[str, Any] = {
            "host": host, "port": port, "user": user,
            "private_key": pulumi.Output.secret(private_key),
            "host_key": host_key, "config": config, "config_hash": config_hash,
            "manifest": manifest or {}, "policy": policy, "delivery": delivery,
            "config_url": config_url, "machine_identity": machine_identity,
            "platform_keys": platform_keys or [],
            "config_source": config_source,
        }
        for k in RESULT_KEYS:
            props[k] = None
        secret_opts = pulumi.ResourceOptions(additional_secret_outputs=list(SECRET_OUTPUTS))
        super().__init__(ReprovisionProvider(), resource_name, props,
                         pulumi.ResourceOptions.merge(secret_opts, opts))


def describe_outputs(outs: Mapping[str, Any]) -> str:
    """A short JSON summary of outputs without secrets (for logs and the CLI)."""
    safe = {k: v for k, v in outs.items() if k not in (*SECRET_OUTPUTS, "__provider")}
    return json.dumps(safe, sort_keys=True, default=str)
