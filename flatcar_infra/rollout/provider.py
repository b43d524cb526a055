"""The fleet's Pulumi dynamic resources: ``Rollout`` (does the work) and ``RolloutVerdict``.

Stable import path: stacks store references to ``RolloutProvider`` and ``RolloutVerdictProvider``
(dill pickles importable classes by reference): never move or rename them.

Why one resource for the whole fleet, and not a ``Reprovision`` per machine chained by
``depends_on``: the Python dynamic provider serves every dynamic resource of a stack from ONE
process with 4 worker threads, so per-machine resources can never have more than 4 machines in
flight whatever ``max_unavailable`` says, and the engine's own rules (the first failure stops new
steps) know nothing about failure budgets, gates or bake times. ``Rollout`` drives all machines
from one asyncio event loop inside one provider call (``rollout.runner``), so ``max_unavailable``
12 means 12.

Its inputs are nested by wave (``waves.wave-02.web-3.config_hash``), so ``pulumi preview --diff``
shows which machines change and in which wave; ``order`` keeps the fleet's order (maps have none
on the wire). A machine whose inputs did not change and that already runs its config is not
contacted. ``update`` never fails for a machine: it returns every machine's outcome (``hosts``:
result, applied hash, times), so the state says exactly which machine runs which hash even after
a halt. The Python dynamic provider cannot report a partial failure (an error discards the
update's outputs), so the failure is reported by ``RolloutVerdict``, which depends on the
rollout's outputs and fails ``pulumi up`` unless every machine runs its desired config. Running
``pulumi up`` again resumes: ``diff`` sees machines whose applied hash is not the desired one, and
machines already on it are only verified.

Secrets: configs and private keys travel in the top-level ``configs`` / ``private_keys`` maps,
returned as secrets. No client lives on ``self``. Deadlines are the machines' own (reboot,
health) and the gates' timeouts: the engine passes no timeouts and cannot cancel.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi.dynamic as dyn
from pulumi.runtime import rpc

from flatcar_infra.errors import UserError
from flatcar_infra.provider import (
    RESULT_KEYS,
    _log,
    _plain,
    check_inputs,
    converge,
    desired_of,
    is_unknown,
    procedure_context,
    target_of,
)
from flatcar_infra.reprovision.propdiff import INPUT_KEYS, diff_props
from flatcar_infra.rollout.policy import RolloutPolicy, RolloutPolicyError
from flatcar_infra.rollout.results import Done, iso
from flatcar_infra.rollout.runner import Preflight, Report, RolloutHost

SECRET_INPUTS = ("configs", "private_keys")
PER_MACHINE_SECRETS = {"configs": "config", "private_keys": "private_key"}
MACHINE_KEYS = (*(k for k in INPUT_KEYS if k not in ("config", "private_key")), "hooks")
HOST_KEYS = (*RESULT_KEYS, "host_key", "desired_hash", "result", "wave", "started_at", "finished_at",
             "message")
ROLLOUT_INPUTS = ("waves", "order", "rollout", *SECRET_INPUTS)


class RolloutFailed(Exception):
    """Raised by the verdict: the rollout did not bring every machine to its desired config."""


# --- the inputs' shape --------------------------------------------------------------------------

def machine_names(props: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(wave key, machine)`` in rollout order: waves by key, machines by ``order``."""
    waves = props.get("waves") or {}
    order = {n: i for i, n in enumerate(props.get("order") or [])}
    out: list[tuple[str, str]] = []
    for wkey in sorted(waves):
        for name in sorted(waves[wkey] or {}, key=lambda n: (order.get(n, len(order)), n)):
            out.append((wkey, name))
    return out


def machine_news(props: Mapping[str, Any], wkey: str, name: str) -> dict[str, Any]:
    """One machine's inputs, as the ``Reprovision`` resource would get them."""
    m = dict(props["waves"][wkey][name])
    for top, key in PER_MACHINE_SECRETS.items():
        values = _plain(props.get(top))
        if isinstance(values, Mapping):
            m[key] = values.get(name)
        else:  # the whole map unknown (preview) or absent
            m[key] = rpc.UNKNOWN if is_unknown(values) else None
    return m


def machine_olds(outs: Mapping[str, Any] | None, name: str) -> dict[str, Any] | None:
    """One machine's previous outputs (its inputs plus what the last run established)."""
    if not outs:
        return None
    for wkey, n in machine_names(outs):
        if n == name:
            host = dict((outs.get("hosts") or {}).get(name) or {})
            return {**machine_news(outs, wkey, name), **{k: host.get(k) for k in HOST_KEYS}}
    return None


def explicit_policy(props: Mapping[str, Any]) -> RolloutPolicy:
    """The policy with the waves exactly as the inputs group them (what the preview showed)."""
    policy = RolloutPolicy.from_dict(props.get("rollout"))
    groups: dict[str, list[str]] = {}
    for wkey, name in machine_names(props):
        groups.setdefault(wkey, []).append(name)
    spec = {**policy.to_dict(), "canary": 0, "waves": [groups[k] for k in sorted(groups)]}
    return RolloutPolicy.from_dict(spec)


def needs_work(olds_m: Mapping[str, Any] | None, news_m: Mapping[str, Any], is_unknown_: Any = is_unknown
               ) -> bool:
    """A machine needs the rollout when its inputs changed (``diff_props``), or when the last run
    did not bring it to its config (failed, rolled back, not started: its state is not proven)."""
    if olds_m is None:
        return True
    if diff_props(olds_m, news_m, is_unknown_).has_changes:
        return True
    return olds_m.get("result") not in (None, "reprovisioned", "unchanged")


def check_rollout(news: Mapping[str, Any]) -> list[tuple[str, str]]:
    failures: list[tuple[str, str]] = []
    if not is_unknown(news.get("rollout")):
        try:
            RolloutPolicy.from_dict(news.get("rollout"))
        except RolloutPolicyError as exc:
            failures.append(("rollout", exc.message))
    if any(is_unknown(news.get(k)) for k in ("waves", "order")):
        return failures
    seen: set[str] = set()
    for wkey, name in machine_names(news):
        if name in seen:
            failures.append(("waves", f"{name}: in more than one wave"))
        seen.add(name)
        if is_unknown(news["waves"][wkey][name]):
            continue
        m = machine_news(news, wkey, name)
        failures += [("waves", f"{wkey}.{name}.{prop}: {reason}") for prop, reason in check_inputs(m)]
    if not seen:
        failures.append(("waves", "a rollout needs at least one machine"))
    return failures


# --- the work -------------------------------------------------------------------------------------

async def _hook(news: Mapping[str, Any], host_key: str, when: str, command: str, report: Report) -> None:
    from flatcar_infra.reprovision import messages
    from flatcar_infra.ssh import connect

    report(f"hook {when}", command, None)
    async with await connect(target_of(news, host_key)) as s:
        res = await s.run(command, timeout=600)
    if not res.ok:
        err = res.stderr.decode(errors="replace").strip()[-300:]
        state = messages.UNCHANGED if when == "before" else messages.APPLIED
        raise messages.ReprovisionError(
            f"hooks.{when} exited {res.exit_status}" + (f": {err}" if err else ""), state,
            f"fix the hook ({command!r}) and run again")


def _host(props: Mapping[str, Any], olds: Mapping[str, Any] | None, wkey: str, name: str) -> RolloutHost:
    from flatcar_infra.rollout.hosts import preflight

    news_m = machine_news(props, wkey, name)
    olds_m = machine_olds(olds, name)
    desired = desired_of(news_m)
    d = diff_props(olds_m, news_m) if olds_m is not None else None
    known = (olds_m or {}).get("applied_hash")
    if not needs_work(olds_m, news_m):
        return RolloutHost(name, desired.config_hash, None, known_hash=known)
    # an unfinished machine (failed, rolled back, not started) runs the whole procedure again
    reboots = d is None or d.action in ("reprovision", "new-machine", "replace", "none")
    op = "create" if olds_m is None else "update"
    hooks = news_m.get("hooks") or {}
    pinned = news_m.get("host_key") or (
        (olds_m or {}).get("host_key") if d is not None and d.action != "new-machine" else None)

    async def work(report: Report) -> Done:
        if hooks.get("before") and pinned and reboots:
            await _hook(news_m, pinned, "before", hooks["before"], report)
        host_key, result = await converge(news_m, olds_m, op, report)
        if hooks.get("after") and host_key and (result.get("rebooted") or op == "create"):
            await _hook(news_m, host_key, "after", hooks["after"], report)
        return Done(result.get("applied_hash"), bool(result.get("rebooted")),
                    {**result, "host_key": host_key})

    check = None
    if reboots and pinned and desired.policy.uses_ssh:
        target = target_of(news_m, pinned)

        new_machine = op == "create" or (d is not None and d.action == "new-machine")
        context = procedure_context(news_m, olds_m, desired, new_machine)

        async def check_fn() -> Preflight:
            return await preflight(target, desired, **context)
        check = check_fn
    return RolloutHost(name, desired.config_hash, work, check, known_hash=known, takes_slot=reboots)


def run(props: Mapping[str, Any], olds: Mapping[str, Any] | None) -> dict[str, Any]:
    """The rollout: every machine per the policy; the outputs say what each machine runs."""
    from flatcar_infra.rollout.runner import run_rollout
    from flatcar_infra.ssh import run_sync

    plain = {k: _plain(v) for k, v in props.items()}
    policy = explicit_policy(plain)
    order = machine_names(plain)
    hosts = [_host(plain, olds, wkey, name) for wkey, name in order]

    def report(phase: str, message: str, elapsed: float | None = None) -> None:
        _log(f"[{phase}{f' {elapsed:.1f}s' if elapsed is not None else ''}] {message}")

    rep = run_sync(lambda: run_rollout(hosts, policy, report=report))
    old_hosts = dict(_plain((olds or {}).get("hosts")) or {})
    out_hosts: dict[str, Any] = {}
    for (wkey, name), hr in zip(order, rep.hosts, strict=True):
        base = {k: v for k, v in dict(old_hosts.get(name) or {}).items() if k in HOST_KEYS}
        if "rebooted" in hr.detail:  # the machine's work finished: its outputs
            base.update({k: v for k, v in hr.detail.items() if k in HOST_KEYS})
        else:
            # failed, rolled back (None: unknown), not started (what its preflight found), or not
            # contacted (the recorded hash)
            base["applied_hash"] = hr.applied_hash
            if hr.result != "unchanged":
                base["last_action"] = hr.result
        base.update({"result": hr.result, "wave": wkey, "desired_hash": hr.desired_hash,
                     "started_at": iso(hr.started_at), "finished_at": iso(hr.finished_at),
                     "message": hr.message[:2000]})
        out_hosts[name] = {k: base.get(k) for k in HOST_KEYS}
    outs: dict[str, Any] = {k: plain.get(k) for k in ROLLOUT_INPUTS}
    outs["rollout"] = RolloutPolicy.from_dict(plain.get("rollout")).to_dict()
    outs.update({"hosts": out_hosts, "result": rep.result, "halt_reason": rep.halt_reason,
                 "finished_at": iso(rep.finished_at)})
    for k in SECRET_INPUTS:
        outs[k] = rpc.wrap_rpc_secret(outs.get(k) or {})
    return outs


class RolloutProvider(dyn.ResourceProvider):
    """See the module docstring. Plain data only on ``self`` (it is pickled into the state)."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> dyn.CheckResult:
        return dyn.CheckResult(news, [dyn.CheckFailure(p, r) for p, r in check_rollout(news)])

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        """Pure and offline: any machine that needs work, or a changed policy or wave plan."""
        news = {k: _plain(v) for k, v in news.items()}
        olds = {k: _plain(v) for k, v in olds.items()}
        if any(is_unknown(news.get(k)) for k in ("waves", "order", "rollout")):
            return dyn.DiffResult(changes=True, replaces=[], stables=[], delete_before_replace=False)
        old_policy = RolloutPolicy.from_dict(olds.get("rollout"))
        changes = (RolloutPolicy.from_dict(news.get("rollout")) != old_policy
                   or machine_names(news) != machine_names(olds))
        for wkey, name in machine_names(news):
            if changes:
                break
            changes = needs_work(machine_olds(olds, name), machine_news(news, wkey, name))
        return dyn.DiffResult(changes=changes, replaces=[], stables=[], delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        return dyn.CreateResult(f"rollout-{uuid.uuid4().hex[:12]}", run(props, None))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.UpdateResult:
        return dyn.UpdateResult(run(news, olds))

    def read(self, id_: str, props: dict[str, Any]) -> dyn.ReadResult:
        """``pulumi refresh``: every machine's applied hash and boot, read from the machines."""
        import asyncio

        from flatcar_infra.reprovision.procedure import read_applied
        from flatcar_infra.ssh import run_sync

        plain = {k: _plain(v) for k, v in props.items()}
        hosts = {n: dict(h) for n, h in dict(plain.get("hosts") or {}).items()}

        async def one(wkey: str, name: str) -> None:
            key = hosts.get(name, {}).get("host_key") or plain["waves"][wkey][name].get("host_key")
            if not key:
                return
            try:
                state = await read_applied(target_of(machine_news(plain, wkey, name), key))
            except UserError as exc:
                hosts.setdefault(name, {})["message"] = f"refresh: {exc.message}"
                return
            hosts.setdefault(name, {}).update(state)

        async def all_() -> None:
            await asyncio.gather(*(one(w, n) for w, n in machine_names(plain)))

        run_sync(all_)
        outs = {**plain, "hosts": hosts}
        for k in SECRET_INPUTS:
            outs[k] = rpc.wrap_rpc_secret(outs.get(k) or {})
        return dyn.ReadResult(id_, outs)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """No host action: the machine resources own the machines."""


def verdict_of(result: str | None, hosts: Mapping[str, Any], halt_reason: str | None) -> str | None:
    """``None`` when every machine runs its desired config, else the message ``pulumi up`` fails with."""
    if result == "succeeded":
        return None
    from flatcar_infra.reprovision.decide import short

    lines = [f"the rollout {result or 'did not run'}" + (f": {halt_reason}" if halt_reason else "")]
    for name, h in sorted(hosts.items(), key=lambda kv: (str((kv[1] or {}).get("wave")), kv[0])):
        h = h or {}
        line = f"  {name} ({h.get('wave')}): {h.get('result')}, runs {short(h.get('applied_hash'))}"
        if h.get("result") not in ("reprovisioned", "unchanged"):
            line += f", desired {short(h.get('desired_hash'))}"
            if h.get("message"):
                line += f": {str(h['message']).splitlines()[0][:300]}"
        lines.append(line)
    lines.append("fix the cause and run 'pulumi up' again: machines already on their config are only "
                 "verified, the others resume")
    return "\n".join(lines)


class RolloutVerdictProvider(dyn.ResourceProvider):
    """Fails the deployment unless the rollout brought every machine to its desired config."""

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        keys = ("result", "hosts", "halt_reason")
        changed = any(_plain(olds.get(k)) != _plain(news.get(k)) for k in keys)
        return dyn.DiffResult(changes=changed or _plain(news.get("result")) != "succeeded", replaces=[],
                              stables=[], delete_before_replace=False)

    def _judge(self, props: dict[str, Any]) -> dict[str, Any]:
        plain = {k: _plain(v) for k, v in props.items()}
        problem = verdict_of(plain.get("result"), dict(plain.get("hosts") or {}), plain.get("halt_reason"))
        if problem:
            raise RolloutFailed(problem)
        return {k: plain.get(k) for k in ("fleet", "result", "hosts", "halt_reason")}

    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        return dyn.CreateResult(f"verdict-{uuid.uuid4().hex[:12]}", self._judge(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> dyn.UpdateResult:
        return dyn.UpdateResult(self._judge(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        pass


class Rollout(dyn.Resource, module="flatcar-infra", name="Rollout"):
    """A fleet's config change applied in waves. Outputs: every input plus ``hosts`` (per machine:
    ``result``, ``applied_hash``, ``desired_hash``, ``host_key``, ``boot_id``, ``wave``,
    ``started_at``, ``finished_at``, ``message``, ...), ``result`` (``succeeded``, ``failed``,
    ``halted``) and ``halt_reason``. Built by the ``Fleet`` component."""

    hosts: pulumi.Output[dict[str, Any]]
    result: pulumi.Output[str]
    halt_reason: pulumi.Output[str]

    def __init__(self, resource_name: str, *, waves: pulumi.Input[Mapping[str, Any]],
                 order: pulumi.Input[list[str]], rollout: RolloutPolicy,
                 configs: pulumi.Input[Mapping[str, pulumi.Input[str]]],
                 private_keys: pulumi.Input[Mapping[str, pulumi.Input[str]]],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props: dict[str, Any] = {
            "waves": waves, "order": order, "rollout": rollout.to_dict(),
            "configs": pulumi.Output.secret(configs), "private_keys": pulumi.Output.secret(private_keys),
            "hosts": None, "result": None, "halt_reason": None, "finished_at": None,
        }
        secret_opts = pulumi.ResourceOptions(additional_secret_outputs=list(SECRET_INPUTS))
        super().__init__(RolloutProvider(), resource_name, props,
                         pulumi.ResourceOptions.merge(secret_opts, opts))


class RolloutVerdict(dyn.Resource, module="flatcar-infra", name="RolloutVerdict"):
    """Fails ``pulumi up`` (after the rollout's outcome is in the state) unless every machine of
    the rollout runs its desired config; its message lists each machine's result and hash."""

    def __init__(self, resource_name: str, *, rollout: Rollout, fleet: str,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        def summary(hosts: Mapping[str, Any] | None) -> dict[str, Any]:
            keep = ("result", "applied_hash", "desired_hash", "wave", "message")
            return {n: {k: (h or {}).get(k) for k in keep} for n, h in (hosts or {}).items()}

        props = {"fleet": fleet, "result": rollout.result, "halt_reason": rollout.halt_reason,
                 "hosts": rollout.hosts.apply(summary)}
        super().__init__(RolloutVerdictProvider(), resource_name, props,
                         pulumi.ResourceOptions.merge(pulumi.ResourceOptions(depends_on=[rollout]), opts))
